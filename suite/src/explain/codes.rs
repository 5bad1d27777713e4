//! The tables Cilium's monitor decodes with: observation points, trace reasons,
//! drop reasons, BPF source file ids, reserved identities, and the kernel's drop
//! reasons. Each table names the file it follows.

/// Trace observation points: `enum trace_point` in `bpf/lib/notify.h` (earlier
/// `bpf/lib/trace.h`), names in `TraceObservationPoints` (`pkg/monitor/api/types.go`),
/// the default-format summaries in `traceSummary()` (`pkg/monitor/datapath_trace.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObsPoint {
    ToEndpoint,
    ToProxy,
    ToHost,
    ToStack,
    ToOverlay,
    FromEndpoint,
    FromProxy,
    FromHost,
    FromStack,
    FromOverlay,
    FromNetwork,
    ToNetwork,
    FromCrypto,
    ToCrypto,
    /// Not in the line (a fragment) or a number monitor did not know.
    Unknown,
}

impl ObsPoint {
    pub const ALL: [ObsPoint; 14] = [
        ObsPoint::ToEndpoint,
        ObsPoint::ToProxy,
        ObsPoint::ToHost,
        ObsPoint::ToStack,
        ObsPoint::ToOverlay,
        ObsPoint::FromEndpoint,
        ObsPoint::FromProxy,
        ObsPoint::FromHost,
        ObsPoint::FromStack,
        ObsPoint::FromOverlay,
        ObsPoint::FromNetwork,
        ObsPoint::ToNetwork,
        ObsPoint::FromCrypto,
        ObsPoint::ToCrypto,
    ];

    /// The `TRACE_*` value (the notification's subtype).
    pub fn code(self) -> Option<u8> {
        ObsPoint::ALL
            .iter()
            .position(|p| *p == self)
            .map(|i| i as u8)
    }

    pub fn name(self) -> &'static str {
        match self {
            ObsPoint::ToEndpoint => "to-endpoint",
            ObsPoint::ToProxy => "to-proxy",
            ObsPoint::ToHost => "to-host",
            ObsPoint::ToStack => "to-stack",
            ObsPoint::ToOverlay => "to-overlay",
            ObsPoint::FromEndpoint => "from-endpoint",
            ObsPoint::FromProxy => "from-proxy",
            ObsPoint::FromHost => "from-host",
            ObsPoint::FromStack => "from-stack",
            ObsPoint::FromOverlay => "from-overlay",
            ObsPoint::FromNetwork => "from-network",
            ObsPoint::ToNetwork => "to-network",
            ObsPoint::FromCrypto => "from-crypto",
            ObsPoint::ToCrypto => "to-crypto",
            ObsPoint::Unknown => "unknown",
        }
    }

    pub fn constant(self) -> &'static str {
        match self {
            ObsPoint::ToEndpoint => "TRACE_TO_LXC",
            ObsPoint::ToProxy => "TRACE_TO_PROXY",
            ObsPoint::ToHost => "TRACE_TO_HOST",
            ObsPoint::ToStack => "TRACE_TO_STACK",
            ObsPoint::ToOverlay => "TRACE_TO_OVERLAY",
            ObsPoint::FromEndpoint => "TRACE_FROM_LXC",
            ObsPoint::FromProxy => "TRACE_FROM_PROXY",
            ObsPoint::FromHost => "TRACE_FROM_HOST",
            ObsPoint::FromStack => "TRACE_FROM_STACK",
            ObsPoint::FromOverlay => "TRACE_FROM_OVERLAY",
            ObsPoint::FromNetwork => "TRACE_FROM_NETWORK",
            ObsPoint::ToNetwork => "TRACE_TO_NETWORK",
            ObsPoint::FromCrypto => "TRACE_FROM_CRYPTO",
            ObsPoint::ToCrypto => "TRACE_TO_CRYPTO",
            ObsPoint::Unknown => "?",
        }
    }

    pub fn by_name(name: &str) -> Option<ObsPoint> {
        ObsPoint::ALL.iter().copied().find(|p| p.name() == name)
    }

    pub fn by_code(code: u8) -> Option<ObsPoint> {
        ObsPoint::ALL.get(code as usize).copied()
    }

    /// The default-format summary without its endpoint or port number.
    pub fn by_summary(arrow: &str, what: &str) -> Option<ObsPoint> {
        Some(match (arrow, what) {
            ("->", "endpoint") => ObsPoint::ToEndpoint,
            ("->", "proxy") => ObsPoint::ToProxy,
            // `traceSummary()` prints TraceToHost as "-> host from".
            ("->", "host") => ObsPoint::ToHost,
            ("->", "stack") => ObsPoint::ToStack,
            ("->", "overlay") => ObsPoint::ToOverlay,
            ("->", "network") => ObsPoint::ToNetwork,
            ("->", "crypto") => ObsPoint::ToCrypto,
            ("<-", "endpoint") => ObsPoint::FromEndpoint,
            ("<-", "proxy") => ObsPoint::FromProxy,
            ("<-", "host") => ObsPoint::FromHost,
            ("<-", "stack") => ObsPoint::FromStack,
            ("<-", "overlay") => ObsPoint::FromOverlay,
            ("<-", "network") => ObsPoint::FromNetwork,
            ("<-", "crypto") => ObsPoint::FromCrypto,
            _ => return None,
        })
    }

    /// `TraceObservationPointHasConnState` (`pkg/monitor/api/types.go`): only these
    /// points fill the reason with a connection-tracking result.
    pub fn has_conn_state(self) -> bool {
        matches!(
            self,
            ObsPoint::ToEndpoint
                | ObsPoint::ToProxy
                | ObsPoint::ToHost
                | ObsPoint::ToStack
                | ObsPoint::ToNetwork
        )
    }

    pub fn is_from(self) -> bool {
        matches!(
            self,
            ObsPoint::FromEndpoint
                | ObsPoint::FromProxy
                | ObsPoint::FromHost
                | ObsPoint::FromStack
                | ObsPoint::FromOverlay
                | ObsPoint::FromNetwork
                | ObsPoint::FromCrypto
        )
    }

    /// What passing this point means for the packet.
    pub fn meaning(self) -> &'static str {
        match self {
            ObsPoint::ToEndpoint => {
                "Cilium's policy for a local endpoint (pod) allowed the packet and Cilium hands it to the pod: it continues by the pod's veth, or straight into the pod's namespace with bpf_redirect_peer when BPF host routing delivers it"
            }
            ObsPoint::ToProxy => {
                "the packet is redirected to Cilium's L7 proxy (Envoy or the DNS proxy); `port N` is the proxy port"
            }
            ObsPoint::ToHost => {
                "the packet is handed to the host namespace through cilium_host (printed `-> host from`)"
            }
            ObsPoint::ToStack => {
                "Cilium's TC program is done with the packet and returns it to the kernel's network stack (TC_ACT_OK) to be routed or delivered there; nothing in this line says whether the stack then delivered it"
            }
            ObsPoint::ToOverlay => {
                "the packet is sent into the tunnel device (cilium_vxlan / cilium_geneve) towards another node"
            }
            ObsPoint::FromEndpoint => {
                "Cilium's program on a pod's host-side veth (bpf_lxc, from-container) saw a packet the pod sent"
            }
            ObsPoint::FromProxy => "a packet from Cilium's L7 proxy",
            ObsPoint::FromHost => {
                "bpf_host on cilium_host saw a packet from the host namespace (towards pods)"
            }
            ObsPoint::FromStack => {
                "bpf_host saw a packet that the kernel stack sent out through a device Cilium manages"
            }
            ObsPoint::FromOverlay => {
                "a packet arrived from the tunnel device (decapsulated traffic from another node)"
            }
            ObsPoint::FromNetwork => {
                "bpf_host on a native device (from-netdev) saw a packet arriving from the network"
            }
            ObsPoint::ToNetwork => {
                "the packet leaves through a native device (bpf_host to-netdev, or a FIB redirect there)"
            }
            ObsPoint::FromCrypto => {
                "a packet came out of WireGuard decryption (cilium_wg0; trace.h: only bpf_wireguard uses it)"
            }
            ObsPoint::ToCrypto => "a packet goes into WireGuard encryption (cilium_wg0)",
            ObsPoint::Unknown => {
                "the line does not say which observation point (the summary before `flow` is missing or unknown)"
            }
        }
    }
}

/// Trace reasons (`enum trace_reason` in `bpf/lib/trace.h`, names in
/// `traceReasons` of `pkg/monitor/datapath_trace.go`); bit 0x80 is "encrypted".
pub fn trace_reason(name: &str) -> Option<(u8, &'static str)> {
    Some(match name {
        "new" => (
            0,
            "new connection: connection tracking had no entry, so policy was evaluated for this packet",
        ),
        "established" => (
            1,
            "an established connection: connection tracking matched a forward entry",
        ),
        "reply" => (2, "a reply of a tracked connection"),
        "related" => (
            3,
            "related to a tracked connection (e.g. an ICMP error for it)",
        ),
        "reopened" => (
            4,
            "a connection-tracking entry was reopened (deprecated reason, older Cilium)",
        ),
        "unknown" => (5, "the program had no connection-tracking result to report"),
        "srv6-encap" => (6, "SRv6 encapsulation"),
        "srv6-decap" => (7, "SRv6 decapsulation"),
        "encrypt-overlay" => (8, "encrypted overlay (deprecated reason)"),
        _ => return None,
    })
}

/// One of Cilium's drop reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropReason {
    pub code: u8,
    pub text: &'static str,
    pub class: DropClass,
}

/// What kind of cause a drop reason names, for what to say and which check to link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropClass {
    /// A policy decision (deny, auth required): working as configured.
    Policy,
    /// A tail call into another Cilium program failed: that program is missing.
    TailCall,
    /// Routing or address resolution failed.
    Routing,
    /// Cilium (agent or endpoint program) not ready yet.
    NotReady,
    /// Not a drop: a success code or Cilium handled the packet elsewhere.
    NotADrop,
    Other,
}

/// `errors` in `pkg/monitor/api/drop.go` (codes 0–198, as Cilium prints them);
/// 199–205 are `DROP_IGMP_HANDLED` … `DROP_PUNT_PROXY` of `bpf/lib/drop_reasons.h`
/// with the strings later monitor versions print for them.
pub const DROP_REASONS: &[DropReason] = {
    use DropClass::*;
    const fn r(code: u8, text: &'static str, class: DropClass) -> DropReason {
        DropReason { code, text, class }
    }
    &[
        r(0, "Success", NotADrop),
        r(2, "Invalid packet", Other),
        r(3, "Interface", NotADrop),
        r(4, "Interface Decrypted", NotADrop),
        r(5, "LB, sock cgroup: No backend slot entry found", Other),
        r(6, "LB, sock cgroup: No backend entry found", Other),
        r(7, "LB, sock cgroup: Reverse entry update failed", Other),
        r(8, "LB, sock cgroup: Reverse entry stale", Other),
        r(9, "Fragmented packet", Other),
        r(10, "Fragmented packet entry update failed", Other),
        r(11, "Missed tail call to custom program", TailCall),
        r(130, "Invalid source mac", Other),
        r(131, "Invalid destination mac", Other),
        r(132, "Invalid source ip", Other),
        r(133, "Policy denied", Policy),
        r(134, "Invalid packet", Other),
        r(135, "CT: Truncated or invalid header", Other),
        r(136, "Fragmentation needed", Routing),
        r(137, "CT: Unknown L4 protocol", Other),
        r(138, "CT: Can't create entry from packet", Other),
        r(139, "Unsupported L3 protocol", Other),
        r(140, "Missed tail call", TailCall),
        r(141, "Error writing to packet", Other),
        r(142, "Unknown L4 protocol", Other),
        r(143, "Unknown ICMPv4 code", Other),
        r(144, "Unknown ICMPv4 type", Other),
        r(145, "Unknown ICMPv6 code", Other),
        r(146, "Unknown ICMPv6 type", Other),
        r(147, "Error retrieving tunnel key", Other),
        r(148, "Error retrieving tunnel options", Other),
        r(149, "Invalid Geneve option", Other),
        r(150, "Unknown L3 target address", Routing),
        r(151, "Stale or unroutable IP", Routing),
        r(152, "No matching local container found", Routing),
        r(153, "Error while correcting L3 checksum", Other),
        r(154, "Error while correcting L4 checksum", Other),
        r(155, "CT: Map insertion failed", Other),
        r(156, "Invalid IPv6 extension header", Other),
        r(157, "IP fragmentation not supported", Other),
        r(158, "Service backend not found", Other),
        r(
            160,
            "No tunnel/encapsulation endpoint (datapath BUG!)",
            Routing,
        ),
        r(161, "NAT 46/64 not enabled", Other),
        r(162, "Reached EDT rate-limiting drop horizon", Other),
        r(163, "Unknown connection tracking state", Other),
        r(164, "Local host is unreachable", Routing),
        r(
            165,
            "No configuration available to perform policy decision",
            NotReady,
        ),
        r(166, "Unsupported L2 protocol", Other),
        r(167, "No mapping for NAT masquerade", Other),
        r(168, "Unsupported protocol for NAT masquerade", Other),
        r(169, "FIB lookup failed", Routing),
        r(170, "Encapsulation traffic is prohibited", Other),
        r(171, "Invalid identity", Other),
        r(172, "Unknown sender", Other),
        r(173, "NAT not needed", NotADrop),
        r(174, "Is a ClusterIP", Other),
        r(175, "First logical datagram fragment not found", Other),
        r(176, "Forbidden ICMPv6 message", Other),
        r(177, "Denied by LB src range check", Policy),
        r(178, "Socket lookup failed", Other),
        r(179, "Socket assign failed", Other),
        r(180, "Proxy redirection not supported for protocol", Other),
        r(181, "Policy denied by denylist", Policy),
        r(182, "VLAN traffic disallowed by VLAN filter", Policy),
        r(183, "Incorrect VNI from VTEP", Other),
        r(184, "Failed to update or lookup TC buffer", Other),
        r(185, "No SID was found for the IP address", Routing),
        r(186, "SRv6 state was removed during tail call", Other),
        r(
            187,
            "L3 translation from IPv4 to IPv6 failed (NAT46)",
            Other,
        ),
        r(
            188,
            "L3 translation from IPv6 to IPv4 failed (NAT64)",
            Other,
        ),
        r(189, "Authentication required", Policy),
        r(190, "No conntrack map found", NotReady),
        r(191, "No nat map found", NotReady),
        r(192, "Invalid ClusterID", Other),
        r(
            193,
            "Unsupported packet protocol for DSR encapsulation",
            Other,
        ),
        r(194, "No egress gateway found", Routing),
        r(195, "Traffic is unencrypted", Policy),
        r(196, "TTL exceeded", Routing),
        r(197, "No node ID found", Routing),
        r(198, "Rate limited", Policy),
        r(199, "IGMP handled", NotADrop),
        r(200, "IGMP subscribed", NotADrop),
        r(201, "Multicast handled", NotADrop),
        r(202, "Host datapath not ready", NotReady),
        r(203, "Endpoint policy program not available", NotReady),
        r(204, "No Egress IP configured", Routing),
        r(205, "Punt to proxy", NotADrop),
    ]
};

pub fn drop_reason_by_text(text: &str) -> Option<&'static DropReason> {
    // "Invalid packet" is both 2 and 134; the datapath's drops use 134.
    DROP_REASONS
        .iter()
        .rev()
        .find(|r| r.text.eq_ignore_ascii_case(text))
}

pub fn drop_reason_by_code(code: u8) -> Option<&'static DropReason> {
    DROP_REASONS.iter().find(|r| r.code == code)
}

/// `files` in `pkg/monitor/api/files.go` (kept in sync with
/// `bpf/source_names_to_ids.h`): the file id a drop's `file` field decodes.
pub const BPF_FILES: &[(u8, &str, &str)] = &[
    (
        1,
        "bpf_host.c",
        "the host program: native devices (from-netdev/to-netdev) and cilium_host",
    ),
    (
        2,
        "bpf_lxc.c",
        "the endpoint program on a pod's host-side veth (from-container, to-container)",
    ),
    (
        3,
        "bpf_overlay.c",
        "the tunnel device program (cilium_vxlan / cilium_geneve)",
    ),
    (4, "bpf_xdp.c", "the XDP program on native devices"),
    (
        5,
        "bpf_sock.c",
        "the socket (cgroup) load-balancing programs",
    ),
    (6, "bpf_network.c", "the IPsec network device program"),
    (
        7,
        "bpf_wireguard.c",
        "the WireGuard device program (cilium_wg0)",
    ),
    (101, "arp.h", "ARP handling"),
    (102, "drop.h", "the drop notification itself"),
    (103, "srv6.h", "SRv6"),
    (104, "icmp6.h", "ICMPv6 / neighbour discovery"),
    (105, "nodeport.h", "NodePort / kube-proxy replacement"),
    (106, "lb.h", "service load balancing"),
    (107, "mcast.h", "multicast"),
    (108, "ipv4.h", "IPv4 helpers (fragments)"),
    (109, "conntrack.h", "connection tracking"),
    (110, "l3.h", "local delivery (redirect to an endpoint)"),
    (111, "trace.h", "trace notifications"),
    (112, "encap.h", "tunnel encapsulation"),
    (113, "encrypt.h", "IPsec / encryption"),
    (114, "host_firewall.h", "the host firewall"),
];

pub fn bpf_file(name: &str) -> Option<&'static (u8, &'static str, &'static str)> {
    BPF_FILES.iter().find(|(_, n, _)| *n == name)
}

/// Reserved identities (`pkg/identity/numericidentity.go`: `reservedIdentityNames`).
pub const RESERVED_IDENTITIES: &[(u32, &str, &str)] = &[
    (
        0,
        "unknown",
        "no identity: none was resolved or the program passed 0",
    ),
    (1, "host", "the local node (the host namespace)"),
    (
        2,
        "world",
        "outside the cluster: an address Cilium has no identity for",
    ),
    (3, "unmanaged", "an endpoint Cilium does not manage"),
    (4, "health", "the cilium-health endpoint"),
    (5, "init", "an endpoint whose identity is not resolved yet"),
    (6, "remote-node", "another node of the cluster"),
    (
        7,
        "kube-apiserver",
        "a node or address running the kube-apiserver",
    ),
    (
        8,
        "ingress",
        "the source address of Cilium's Ingress/Gateway proxy",
    ),
    (
        9,
        "world-ipv4",
        "outside the cluster, IPv4 (dual-stack clusters)",
    ),
    (
        10,
        "world-ipv6",
        "outside the cluster, IPv6 (dual-stack clusters)",
    ),
];

pub fn reserved_identity_by_name(name: &str) -> Option<u32> {
    RESERVED_IDENTITIES
        .iter()
        .find(|(_, n, _)| *n == name)
        .map(|(id, _, _)| *id)
}

/// What a numeric identity is, by its value and scope bits
/// (`IdentityScopeLocal = 1 << 24`, `IdentityScopeRemoteNode = 2 << 24`).
pub fn identity_meaning(id: u32) -> String {
    if let Some((_, name, what)) = RESERVED_IDENTITIES.iter().find(|(n, _, _)| *n == id) {
        return format!("reserved identity {id} `{name}`: {what}");
    }
    match id >> 24 {
        0 if id < 256 => format!("reserved identity {id} (unnamed)"),
        0 => format!(
            "cluster-wide identity {id}, allocated for one set of pod labels (`cilium-dbg identity get {id}`)"
        ),
        1 => format!(
            "node-local identity {id} (scope bit 24): a CIDR or FQDN-selected address, not a pod"
        ),
        2 => format!("remote-node-scoped identity {id} (scope 2 << 24)"),
        _ => format!("identity {id} in an unknown scope"),
    }
}

/// `BPF_FIB_LKUP_RET_*` (`include/uapi/linux/bpf.h`): the extended error of a
/// `FIB lookup failed` drop.
pub fn fib_result(code: i32) -> Option<&'static str> {
    Some(match code {
        0 => "BPF_FIB_LKUP_RET_SUCCESS",
        1 => "BPF_FIB_LKUP_RET_BLACKHOLE: the route is a blackhole",
        2 => "BPF_FIB_LKUP_RET_UNREACHABLE: the route is unreachable",
        3 => "BPF_FIB_LKUP_RET_PROHIBIT: the route is prohibit",
        4 => {
            "BPF_FIB_LKUP_RET_NOT_FWDED: the destination is local (not forwarded); Cilium passes such packets to the stack"
        }
        5 => "BPF_FIB_LKUP_RET_FWD_DISABLED: forwarding is disabled on the ingress device",
        6 => "BPF_FIB_LKUP_RET_UNSUPP_LWT: the route uses an unsupported lightweight tunnel",
        7 => "BPF_FIB_LKUP_RET_NO_NEIGH: no neighbour entry for the next hop",
        8 => "BPF_FIB_LKUP_RET_FRAG_NEEDED: the packet is larger than the route's MTU",
        9 => "BPF_FIB_LKUP_RET_NO_SRC_ADDR: no source address for the route",
        _ => return None,
    })
}

/// IP protocol numbers a policy verdict prints.
pub fn ip_protocol(proto: u32) -> Option<&'static str> {
    Some(match proto {
        1 => "ICMP",
        6 => "TCP",
        17 => "UDP",
        58 => "ICMPv6",
        132 => "SCTP",
        _ => return None,
    })
}

/// The kernel's drop reasons (`enum skb_drop_reason`, `include/net/dropreason-core.h`),
/// as the `skb:kfree_skb` tracepoint prints them: the ones a datapath path can hit.
pub fn kernel_drop_reason(name: &str) -> Option<&'static str> {
    Some(match name {
        "NOT_SPECIFIED" => "the kernel did not say why (a kfree_skb without a reason)",
        "NO_SOCKET" => "no socket was listening for the packet (UDP NoPorts, TCP RST)",
        "PKT_TOO_SMALL" => "the packet is shorter than its headers say",
        "TCP_CSUM" => "TCP checksum error",
        "SOCKET_FILTER" => "a socket filter dropped it",
        "UDP_CSUM" => "UDP checksum error",
        "NETFILTER_DROP" => "a netfilter (iptables/nftables) rule dropped it",
        "OTHERHOST" => {
            "the frame's pkt_type is PACKET_OTHERHOST: its destination MAC is not this device's, so IP input refuses it"
        }
        "IP_CSUM" => "IP checksum error",
        "IP_INHDR" => "the IP header is invalid (IpInHdrErrors)",
        "IP_RPFILTER" => "reverse-path filtering (rp_filter) rejected the source",
        "UNICAST_IN_L2_MULTICAST" => "an IP unicast packet in an L2 multicast/broadcast frame",
        "XFRM_POLICY" => {
            "an XFRM (IPsec) policy check failed: the packet's secpath did not match the policy of this namespace"
        }
        "IP_NOPROTO" => "no handler for the IP protocol",
        "SOCKET_RCVBUFF" => "the socket's receive buffer is full (Udp RcvbufErrors)",
        "PROTO_MEM" => "the protocol's memory limit was hit",
        "SOCKET_BACKLOG" => "the socket backlog is full",
        "IP_OUTNOROUTES" => "no route for the output path",
        "BPF_CGROUP_EGRESS" => "a cgroup BPF program dropped it on egress",
        "IPV6DISABLED" => "IPv6 is disabled on the device",
        "NEIGH_CREATEFAIL" => "no neighbour entry could be created",
        "NEIGH_FAILED" => "the neighbour entry is in failed state",
        "NEIGH_QUEUEFULL" => "the neighbour's packet queue is full",
        "NEIGH_DEAD" => "the neighbour entry is dead",
        "TC_EGRESS" => "a TC program on egress dropped it (TC_ACT_SHOT)",
        "TC_INGRESS" => "a TC program on ingress dropped it (TC_ACT_SHOT)",
        "QDISC_DROP" => "the qdisc dropped it",
        "CPU_BACKLOG" => "the per-CPU backlog queue is full (netdev_max_backlog)",
        "XDP" => "an XDP program dropped it",
        "UNHANDLED_PROTO" => "protocol not handled",
        "DEV_READY" => "the device is not up/ready",
        "IP_INADDRERRORS" => {
            "host unreachable: the destination is not an address here (Ip InAddrErrors)"
        }
        "IP_INNOROUTES" => "network unreachable: no route for the destination (Ip InNoRoutes)",
        "PKT_TOO_BIG" => "the packet is larger than the MTU",
        _ => return None,
    })
}
