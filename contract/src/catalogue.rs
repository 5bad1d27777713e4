//! Every check the suite knows, by stable id. Ids are never renamed once released:
//! add new ones, deprecate old ones.

/// One documented question the suite asks of a datapath, with what every
/// environment expects of it: a matrix holds only deviations from this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckSpec {
    /// Dotted, lower-case, kebab within a segment.
    pub id: &'static str,
    /// One line for tables.
    pub title: &'static str,
    /// What passing means (the README's table, reports).
    pub passes_when: &'static str,
    /// The negative control: the decisive step broken, and how the check's own
    /// test must then fail.
    pub control: &'static str,
    /// Ways the check runs; each is its own observation and verdict.
    pub variants: &'static [&'static str],
    /// Boolean facts that must hold for a variant to run at all, as
    /// `(variant or "*", fact key)`. A missing one makes the observation `unsupported`.
    pub requires: &'static [(&'static str, &'static str)],
    /// The failures this check can name in a `fail` observation. A matrix that
    /// expects the check to fail must say which one; any other is a regression.
    pub failures: &'static [Failure],
    /// Upstream reference (CVE, commit, docs).
    pub reference: &'static str,
    /// Why every environment expects it to pass, where no expected failure
    /// below and no matrix entry says otherwise.
    pub pass_because: &'static str,
    /// Where it is expected to fail everywhere, first that applies wins.
    pub expected_failures: &'static [ExpectedFailure],
    /// Faults (`probe --fault ID=KIND`, one of [`FAULT_KINDS`]) that must turn
    /// every variant expected to pass into a regression, and nothing else: the
    /// e2e fault table runs each, so every check is shown able to go red.
    pub faults: &'static [&'static str],
}

/// The faults the probe can inject: `drop`, a program dropping the check's
/// traffic on pod A's eth0 (egress; ingress when the host sends), before any of
/// the check's hooks; `no-route`, the route that traffic needs removed. A check
/// may give either its own meaning (`env.bpffs.propagation`'s `drop` unlinks
/// its pin); `no-scrub`, the scrub checks' peer redirect replaced by their
/// control's path, which keeps the state the scrub resets.
pub const FAULT_KINDS: &[&str] = &["drop", "no-route", "no-scrub"];

/// A failure every environment expects under a condition on facts, unless its
/// matrix has an entry of its own for the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedFailure {
    /// `None`: every variant.
    pub variant: Option<&'static str>,
    /// A matrix condition on facts (`kernel.upstream < 6.1.139`); `None`: always.
    pub when: Option<&'static str>,
    /// Where, in a phrase for tables: "on kernels without the CVE-2025-37959 fix".
    pub scope: &'static str,
    pub failure: &'static Failure,
    pub reason: &'static str,
    pub reference: &'static str,
}

/// Where a boolean precondition fact is expected, for every environment whose
/// matrix has no `[[fact]]` entry for it. A fact with no entry anywhere is
/// expected everywhere, so its absence is a regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedFact {
    pub fact: &'static str,
    /// A matrix condition on other facts: the fact must be present wherever it holds.
    pub expected: &'static str,
    pub reason: &'static str,
    pub reference: &'static str,
}

/// One way a check can fail, with a stable kebab-case code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub code: &'static str,
    /// What it means, for matrix errors, reports and the README.
    pub meaning: &'static str,
}

/// Traffic was lost on the path: the reason names the last hop where it was seen
/// and the first where it was missing.
pub const NOT_DELIVERED: Failure = Failure {
    code: "not-delivered",
    meaning: "the traffic did not arrive where the check sends it; the reason names the last hop where it was seen and the first where it was missing",
};

/// The check's program never counted the traffic: the attach did not take effect.
pub const HOOK_NOT_RUN: Failure = Failure {
    code: "hook-not-run",
    meaning: "the check's program did not see the traffic it was attached for: the attach did not take effect, or the traffic never reached the hook",
};

/// `datapath.redirect-peer`: delivered, but not by a peer redirect.
pub const NOT_BYPASSED: Failure = Failure {
    code: "not-bypassed",
    meaning: "delivered, but through the host namespace's forwarding or out of the target's host-side veth: not a peer redirect",
};

/// `datapath.redirect-peer.scrub`: the CVE-2025-37959 signature.
pub const NOT_SCRUBBED: Failure = Failure {
    code: "not-scrubbed",
    meaning: "every frame reached pod B still marked OTHERHOST and none was delivered: bpf_redirect_peer did not scrub the packet (CVE-2025-37959 unfixed)",
};

/// `datapath.redirect-peer.scrub`: pkt_type wrong in pod B, but not the way an
/// unfixed kernel shows it, so it is never mistaken for CVE-2025-37959.
pub const PARTLY_SCRUBBED: Failure = Failure {
    code: "partly-scrubbed",
    meaning: "some frames reached pod B with a pkt_type other than HOST, but not as an unfixed kernel shows it (every frame OTHERHOST in pod B, none delivered): a partial or different reset, not the CVE-2025-37959 signature",
};

/// `datapath.redirect-peer.scrub`: state the fix keeps on purpose went missing.
pub const METADATA_LOST: Failure = Failure {
    code: "metadata-lost",
    meaning: "the mark or tstamp set before bpf_redirect_peer was gone in pod B, which the upstream fix keeps by design",
};

/// `datapath.redirect-peer.scrub.conntrack`: the CVE-2025-37959 signature on conntrack.
pub const CT_CARRIED: Failure = Failure {
    code: "conntrack-carried",
    meaning: "packets reached the pod namespace still carrying a conntrack entry (the host's ct mark, or any entry, seen before the pod's own conntrack ran, or skb->_nfct set at the pod's ingress): bpf_redirect_peer did not reset conntrack (CVE-2025-37959 unfixed)",
};

/// `datapath.redirect-peer.scrub.dst`: the CVE-2025-37959 signature on the route.
pub const DST_CARRIED: Failure = Failure {
    code: "dst-carried",
    meaning: "packets to an address that only the source namespace has were delivered in the pod namespace: the source's route (skb dst) came along, so the pod never routed them itself (CVE-2025-37959 unfixed)",
};

/// `datapath.redirect-peer.scrub.skb-ext`: the CVE-2025-37959 signature on skb
/// extensions, the reset that removes an IPsec secpath.
pub const EXT_CARRIED: Failure = Failure {
    code: "ext-carried",
    meaning: "packets reached the pod namespace with skb->active_extensions non-zero (the bridge-netfilter extension attached in the host): bpf_redirect_peer did not reset skb extensions, the reset that removes the IPsec secpath Cilium saw dropped as XfrmInNoPols (CVE-2025-37959 unfixed)",
};

/// `datapath.redirect-peer.scrub.xfrm`: the Cilium case of CVE-2025-37959.
pub const SECPATH_CARRIED: Failure = Failure {
    code: "secpath-carried",
    meaning: "ESP packets decrypted in the host namespace and peer-redirected into a pod without XFRM policy were dropped there as XfrmInNoPols (or reached its ingress with the secpath extension still set): the host's XFRM secpath came along, so the pod's policy check saw tunnel-mode IPsec it has no policy for (CVE-2025-37959 unfixed, the drop Cilium's IPsec saw)",
};

/// `socket-lb.connect`: the programs did not rewrite the service address.
pub const NOT_TRANSLATED: Failure = Failure {
    code: "not-translated",
    meaning: "connect4/sendmsg4 did not rewrite the service address to the backend for every connect or datagram: the programs did not run for the client's sockets (not attached to its cgroup) or found no entry for the service",
};

/// `socket-lb.connect`: the backend was reached, the client saw it instead of the service.
pub const PEER_NOT_SERVICE: Failure = Failure {
    code: "peer-not-service",
    meaning: "replies came back, but the client saw the backend (or another address) as their source or as its peer, not the service it asked for: recvmsg4/getpeername4 did not reverse the translation",
};

/// `socket-lb.connect`: the backend saw another source than the client's own.
pub const SOURCE_NOT_KEPT: Failure = Failure {
    code: "source-not-kept",
    meaning: "the backend saw the requests come from another address than the client's own: something translated the source (SNAT), which socket LB never does",
};

/// `datapath.redirect-neigh`, `datapath.fib-lookup`, `datapath.redirect-egress`:
/// delivered, but the host namespace's IP forwarding moved the packets.
pub const FORWARDED: Failure = Failure {
    code: "forwarded",
    meaning: "delivered, but the host namespace forwarded the packets (IpForwDatagrams moved): its stack moved them, not the program's redirect",
};

/// `datapath.redirect-neigh`: the packets did not get the neighbour's L2 header.
pub const NOT_RESOLVED: Failure = Failure {
    code: "not-resolved",
    meaning: "the frames reached pod B without the L2 header the neighbour subsystem gives (destination pod B's eth0 MAC, source the target device's MAC, pkt_type HOST), or no neighbour entry for pod B was resolved: bpf_redirect_neigh did not fill in L2 from the neighbour table",
};

/// `datapath.fib-lookup`: the helper's answer is not what the routes say.
pub const FIB_MISMATCH: Failure = Failure {
    code: "fib-mismatch",
    meaning: "bpf_fib_lookup answered differently from the namespace's routes and neighbours read over netlink (return code, output device, source or destination MAC)",
};

/// `env.bpffs.propagation`: a bpffs mounted in a sibling mount namespace never
/// reached the node's.
pub const NOT_PROPAGATED: Failure = Failure {
    code: "not-propagated",
    meaning: "the bpffs a sibling mount namespace (Cilium's mount-bpf-fs init container) mounted at /sys/fs/bpf, or the map it pinned there, was not seen from the node's mount namespace: the node's /sys/fs/bpf is not a shared mount",
};

/// `env.bpffs.propagation`: the agent's bpffs reached the node, its pin did not.
pub const PIN_NOT_SEEN: Failure = Failure {
    code: "pin-not-seen",
    meaning: "the node's mount namespace sees a bpffs at /sys/fs/bpf, but not the map the agent pinned there: another bpffs instance, or the pin was removed",
};

/// `device.netkit[scrub]`: the pod's mark survived into the peer's program.
pub const MARK_LEAKED: Failure = Failure {
    code: "mark-leaked",
    meaning: "a mark the pod set (SO_MARK) was still on its packets when the netkit peer's program ran, although the pair's peer scrub is the default: netkit did not scrub skb->mark on the way out of the pod's namespace",
};

/// `device.netkit[scrub]`: HaveNetkitScrub's failure, live.
pub const MARK_NOT_KEPT: Failure = Failure {
    code: "mark-not-kept",
    meaning: "the host's mark was gone when the netkit primary's program ran, although the pair was created with IFLA_NETKIT_SCRUB none (as Cilium creates it): the kernel lacks netkit's scrub attributes (6.13, 6.12.4), so Cilium's HaveNetkitScrub fails and netkit with endpoint routes is refused",
};

/// `tunnel.vxlan`, `tunnel.geneve`: the packets never left the node encapsulated.
pub const NOT_ENCAPSULATED: Failure = Failure {
    code: "not-encapsulated",
    meaning: "the encapsulation step lost the packets: bpf_skb_set_tunnel_key refused the key, the redirect to the collect-metadata tunnel device failed, the device sent nothing, or nothing left the node on the underlay; or the receiving program found no tunnel key on them",
};

/// `tunnel.vxlan`, `tunnel.geneve`: decapsulated with a key other than the one set.
pub const WRONG_TUNNEL_KEY: Failure = Failure {
    code: "wrong-tunnel-key",
    meaning: "the receiving node's program read a tunnel key (bpf_skb_get_tunnel_key) other than the sending program set: a different remote (outer source) address or tunnel id (VNI, Cilium's source identity), or none for some packet",
};

/// `tunnel.vxlan[no-frag]`, `tunnel.geneve[no-frag]`: pod-to-pod-no-frag's failure.
pub const FRAGMENTED: Failure = Failure {
    code: "fragmented",
    meaning: "datagrams that fit the pod MTU were fragmented on the way (IP FragCreates in the sending pod or node, ReasmReqds on the receiving node) or did not arrive whole: the pod MTU does not leave room for the tunnel overhead, cilium-cli's pod-to-pod-no-frag failure",
};

impl CheckSpec {
    /// The named failure with this code, if the check has it.
    pub fn failure(&self, code: &str) -> Option<&'static Failure> {
        self.failures.iter().find(|f| f.code == code)
    }
}

impl CheckSpec {
    /// Fact keys that must be true for `variant` to run.
    pub fn requirements<'a>(&'a self, variant: &'a str) -> impl Iterator<Item = &'static str> + 'a {
        self.requires
            .iter()
            .filter(move |(v, _)| *v == "*" || *v == variant)
            .map(|(_, fact)| *fact)
    }
}

/// Attach modes for TC programs: TCX links (kernel 6.6+) and legacy clsact + cls_bpf.
pub const ATTACH_MODES: &[&str] = &["tcx", "legacy"];

/// The IPv6 variant of a delivery or redirect check: the same traffic over IPv6 on
/// a dual-stack node, attached as Cilium attaches where it runs (TCX where the
/// kernel has it, legacy tc otherwise), so it has the same precondition facts on
/// every kernel but one: [`IPV6_FACT`], which every such variant requires. A
/// Cilium setting's bare need of such a check covers its IPv4 variants only; the
/// IPv6 one is needed by name (the `ipv6` setting).
pub const IPV6_VARIANT: &str = "ipv6";

/// The precondition fact of every [`IPV6_VARIANT`]: a fresh network namespace
/// here can do IPv6 (the kernel has it and it is not disabled at boot).
pub const IPV6_FACT: &str = "ipv6";

/// [`ATTACH_MODES`] over IPv4, then [`IPV6_VARIANT`].
pub const ATTACH_MODES_AND_IPV6: &[&str] = &["tcx", "legacy", IPV6_VARIANT];

/// The CVE-2025-37959 fix: stable 6.1.139, 6.6.91, 6.12.29, 6.14.7, mainline
/// 6.15-rc6; 5.10.y and 5.15.y have none. Judged on `kernel.upstream`, the
/// upstream version a distribution kernel is built from.
const SCRUB_UNFIXED: &str = "(kernel.upstream >= 5.10-rc1 and kernel.upstream < 6.1.139) \
or (kernel.upstream >= 6.2-rc1 and kernel.upstream < 6.6.91) \
or (kernel.upstream >= 6.7-rc1 and kernel.upstream < 6.12.29) \
or (kernel.upstream >= 6.13-rc1 and kernel.upstream < 6.14.7) \
or (kernel.upstream >= 6.15-rc1 and kernel.upstream < 6.15-rc6)";

const HELPERS_REF: &str =
    "https://github.com/iovisor/bcc/blob/master/docs/kernel-versions.md#helpers";
const REQUIREMENTS_REF: &str = "https://docs.cilium.io/en/stable/operations/system_requirements/";

/// Precondition facts that arrived with a kernel version. Every other fact a
/// check requires (`helper.redirect`, `helper.skb_store_bytes`, ...) predates
/// any kernel Cilium supports: expected everywhere, its absence a regression.
pub const EXPECTED_FACTS: &[ExpectedFact] = &[
    ExpectedFact {
        fact: "tcx",
        expected: "kernel >= 6.6",
        reason: "TCX links (BPF_LINK_CREATE with BPF_TCX_INGRESS) landed in kernel 6.6, and Cilium attaches through them from there on; a 6.6+ kernel without TCX is a regression, an older one (Debian 12's 6.1) is unsupported for the [tcx] variants.",
        reference: REQUIREMENTS_REF,
    },
    ExpectedFact {
        fact: "helper.redirect_peer",
        expected: "kernel >= 5.10",
        reason: "bpf_redirect_peer arrived in 5.10 (Cilium's eBPF host routing needs it); older kernels cannot run the redirect-peer checks.",
        reference: HELPERS_REF,
    },
    ExpectedFact {
        fact: "helper.redirect_neigh",
        expected: "kernel >= 5.10",
        reason: "bpf_redirect_neigh arrived in 5.10 (Cilium's eBPF host routing needs it).",
        reference: HELPERS_REF,
    },
    ExpectedFact {
        fact: "helper.ringbuf_output",
        expected: "kernel >= 5.8",
        reason: "BPF ring buffers arrived in 5.8; the checks' hook program reports skb metadata through one.",
        reference: HELPERS_REF,
    },
    ExpectedFact {
        fact: "helper.csum_level",
        expected: "kernel >= 5.7",
        reason: "bpf_csum_level arrived in 5.7; Cilium's agent probes for it.",
        reference: HELPERS_REF,
    },
    ExpectedFact {
        fact: "cgroup.sock_addr",
        expected: "kernel >= 5.8 and cgroup2",
        reason: "Socket LB (kube-proxy replacement's connect/sendmsg/recvmsg/getpeername hooks) needs cgroup v2 sock_addr programs: connect4 arrived in 4.17, sendmsg4 in 4.18, recvmsg4 in 5.2, getpeername4 in 5.8. They attach to a cgroup v2 tree, so where the place has none mounted (a container on a cgroup v1 Docker host: Cilium's agent cannot attach its socket LB there either) the variants are unsupported; with cgroup v2 mounted, a fact that is missing (a read-only tree, a refused attach; its note says which) is a regression.",
        reference: "https://docs.cilium.io/en/stable/network/kubernetes/kubeproxy-free/",
    },
    ExpectedFact {
        fact: "netkit",
        expected: "kernel >= 6.7 and kernel.package != \"\"",
        reason: "netkit arrived in 6.7 and is a build option (CONFIG_NETKIT): distribution kernels from 6.7 on carry it (Debian's 6.12 kernels have NETKIT=y), so a distribution kernel without it is a regression; a kernel that names no distribution package (a micro-VM's, Firecracker's, some container hosts') may be built without it, and there the netkit variants are unsupported. Cilium's HaveNetkit: 'netkit device probe failed, requires kernel 6.7.0+ and CONFIG_NETKIT'.",
        reference: "https://docs.cilium.io/en/stable/operations/performance/tuning/#netkit-device-mode",
    },
    ExpectedFact {
        fact: "vxlan",
        expected: "kernel.package != \"\"",
        reason: "Collect-metadata VXLAN devices (CONFIG_VXLAN, 4.3) are in every distribution kernel (Debian builds vxlan as a module), so a distribution kernel that cannot create one is a regression; a kernel that names no distribution package (a micro-VM's, Firecracker's) may be built without it, and there tunnel.vxlan is unsupported. Cilium's routingMode: tunnel with tunnelProtocol: vxlan (the default) needs it.",
        reference: "https://docs.cilium.io/en/stable/operations/system_requirements/#linux-kernel",
    },
    ExpectedFact {
        fact: IPV6_FACT,
        expected: "kernel.package != \"\"",
        reason: "IPv6 (CONFIG_IPV6, built in on every distribution kernel: Debian and Ubuntu have IPV6=y) is what Cilium's dual-stack (ipv6.enabled) runs on, so a distribution kernel whose fresh network namespaces cannot do IPv6 is a regression: it was disabled at boot (ipv6.disable=1; the fact's note says so), and such a node cannot run Cilium dual-stack. A kernel that names no distribution package (a micro-VM's, Firecracker's) may be built without IPv6, and there the [ipv6] variants are unsupported. A node meant to stay single-stack says so with a [[fact]] entry in its matrix.",
        reference: "https://docs.cilium.io/en/stable/network/concepts/ipam/ (ipv6.enabled, dual-stack)",
    },
    ExpectedFact {
        fact: "xfrm.esp",
        expected: "kernel.package != \"\"",
        reason: "ESP (CONFIG_INET_ESP) with the XFRM netlink interface (CONFIG_XFRM_USER) and the rfc4106(gcm(aes)) AEAD is what Cilium's IPsec encryption runs on; every distribution kernel ships them (Debian builds esp4, xfrm_user, gcm and ghash as modules), so a distribution kernel that cannot add an ESP state is a regression (the fact's note has the kernel's answer: a module that did not load, a missing crypto piece). A kernel that names no distribution package (a micro-VM's, Firecracker's, this kind of CI host's) may be built without ESP, and there the XFRM scrub check is unsupported.",
        reference: "https://docs.cilium.io/en/stable/security/network/encryption-ipsec/",
    },
    ExpectedFact {
        fact: "geneve",
        expected: "kernel.package != \"\"",
        reason: "Collect-metadata Geneve devices (CONFIG_GENEVE, 4.6) are in every distribution kernel (Debian builds geneve as a module), so a distribution kernel that cannot create one is a regression; a kernel that names no distribution package (a micro-VM's, Firecracker's) may be built without it, and there tunnel.geneve is unsupported. Cilium's tunnelProtocol: geneve needs it.",
        reference: "https://docs.cilium.io/en/stable/operations/system_requirements/#linux-kernel",
    },
];

pub const CATALOGUE: &[CheckSpec] = &[
    CheckSpec {
        id: "tc.attach.tcx",
        title: "TC program attached through TCX sees traffic",
        passes_when: "a program attached as a TCX ingress link on a pod's host-side veth counts all 5 datagrams and they reach the host socket; a failure names the last hop that counted them",
        control: "the same attach, the program returns `TC_ACT_SHOT`: the hook counts the burst, none reaches the socket",
        variants: &["tcx"],
        requires: &[("*", "tcx")],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN],
        reference: "https://docs.cilium.io/en/stable/operations/system_requirements/ (TCX, kernel 6.6)",
        pass_because: "TCX (6.6+) is Cilium's default attach mode where the kernel has it; where it does not, the variant is unsupported, as the expected-fact entry for tcx says.",
        expected_failures: &[],
        faults: &["drop", "no-route"],
    },
    CheckSpec {
        id: "tc.attach.legacy",
        title: "TC program attached through clsact sees traffic",
        passes_when: "the same through a clsact qdisc + cls_bpf filter (netlink)",
        control: "the same, `TC_ACT_SHOT`",
        variants: &["legacy"],
        requires: &[],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN],
        reference: "https://docs.cilium.io/en/stable/operations/system_requirements/ (bpf.enableTCX=false)",
        pass_because: "clsact + cls_bpf is Cilium's attach mode without TCX (and with bpf.enableTCX=false); it needs NET_SCH_INGRESS and NET_CLS_BPF, which every kernel Cilium supports has.",
        expected_failures: &[],
        faults: &["drop", "no-route"],
    },
    CheckSpec {
        id: "datapath.stack-delivery",
        title: "TC ingress hands packets to the host stack (TC_ACT_OK)",
        passes_when: "a program on the host-side veth records each packet's skb metadata (ifindex, ingress ifindex, mark, hash, protocol, pkt_type, addresses) and returns `TC_ACT_OK` (\"-> stack\"); all datagrams reach a socket in the host namespace, counted hop by hop (veth, hook, the host's IP and UDP counters, the socket), so a failure says where after the hook they went missing. `ipv6`: the same over IPv6 on a dual-stack node (pod `fd00:42::11` to the node IP `fd00:198:18::10`, `Ip6`/`Udp6` counters), attached with TCX where the kernel has it, legacy tc otherwise",
        control: "the program returns `TC_ACT_SHOT`",
        variants: ATTACH_MODES_AND_IPV6,
        requires: &[("tcx", "tcx"), (IPV6_VARIANT, IPV6_FACT)],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN],
        reference: "https://docs.cilium.io/en/stable/network/ebpf/intro/",
        pass_because: "The nix-2hd primitive: every packet Cilium passes up (\"-> stack\") takes this path, with TCX and with legacy attach; nothing about a container, a VM or a cloud prevents it, so a failure here is a regression. The incident's trace (flow 0x0, ifindex 0, orig-ip 0.0.0.0) is how Cilium prints a healthy -> stack event; what was lost was delivery after the hook, which this check accounts for hop by hop.",
        expected_failures: &[],
        faults: &["drop", "no-route"],
    },
    CheckSpec {
        id: "datapath.stack-delivery.redirect",
        title: "bpf_redirect to a host device's ingress reaches the host stack",
        passes_when: "the program rewrites the destination MAC and calls `bpf_redirect(cilium_net, BPF_F_INGRESS)`; the datagrams are seen by a hook on `cilium_net` ingress and reach the host socket. `ipv6`: the same IPv6 frames, into the host's IPv6 stack",
        control: "`TC_ACT_OK` instead of the redirect: delivered, but `cilium_net`'s ingress must not see it, so the redirect witness is shown able to fail",
        variants: ATTACH_MODES_AND_IPV6,
        requires: &[
            ("tcx", "tcx"),
            (IPV6_VARIANT, IPV6_FACT),
            ("*", "helper.redirect"),
            ("*", "helper.skb_store_bytes"),
        ],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN],
        reference: "https://docs.cilium.io/en/stable/network/ebpf/intro/",
        pass_because: "bpf_redirect to cilium_net's ingress is how Cilium hands host-bound traffic to the host; the helper exists since 4.x and stays inside the node's namespaces, so it must deliver everywhere.",
        expected_failures: &[],
        faults: &["drop", "no-route"],
    },
    CheckSpec {
        id: "datapath.redirect-peer",
        title: "bpf_redirect_peer delivers into another pod namespace",
        passes_when: "`bpf_redirect_peer` from pod A's host-side veth delivers into pod B's socket while the host forwards nothing (`IpForwDatagrams` +0) and pod B's host-side veth transmits nothing. `ipv6`: pod A `fd00:42::11` to pod B `fd00:42::12`, the host's `Ip6OutForwDatagrams` +0",
        control: "the peer flag cleared (plain `bpf_redirect` to pod B's host-side veth): delivered, but that veth transmits 5, so the \"tx +0\" witness is shown able to fail",
        variants: ATTACH_MODES_AND_IPV6,
        // The control's plain bpf_redirect needs `helper.redirect` too.
        requires: &[
            ("tcx", "tcx"),
            (IPV6_VARIANT, IPV6_FACT),
            ("*", "helper.redirect_peer"),
            ("*", "helper.redirect"),
            ("*", "helper.skb_store_bytes"),
        ],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN, NOT_BYPASSED],
        reference: "https://github.com/torvalds/linux/blob/master/tools/testing/selftests/bpf/prog_tests/tc_redirect.c",
        pass_because: "bpf_redirect_peer (kernel 5.10, Cilium's eBPF host routing) must deliver into the peer namespace without the host forwarding, in a container as in a VM; a verifier that refuses the helper is a regression, not an environment limit.",
        expected_failures: &[],
        faults: &["drop", "no-route"],
    },
    CheckSpec {
        id: "datapath.redirect-peer.scrub",
        title: "bpf_redirect_peer scrubs the packet (CVE-2025-37959)",
        passes_when: "CVE-2025-37959: a frame with a foreign destination MAC (OTHERHOST at the source hook, else the probe reports an error) is marked and peer-redirected; in pod B its pkt_type is HOST and it is delivered, while mark and tstamp are kept, as the upstream fix intends",
        control: "the same frames by a path that does not scrub (plain `bpf_redirect` to pod B's host-side veth): pod B's observer sees them OTHERHOST and they are not delivered, which is what an unfixed kernel shows on the peer path",
        variants: &["default"],
        requires: &[("*", "helper.redirect_peer"), ("*", "helper.redirect")],
        failures: &[
            NOT_DELIVERED,
            HOOK_NOT_RUN,
            NOT_SCRUBBED,
            PARTLY_SCRUBBED,
            METADATA_LOST,
        ],
        reference: "https://nvd.nist.gov/vuln/detail/CVE-2025-37959 (upstream c4327229948879814229b46aa26a750718888503)",
        pass_because: "Fixed kernels scrub the skb in bpf_redirect_peer (skb_scrub_packet): pkt_type is reset to PACKET_HOST, so a frame with a foreign destination MAC is delivered; mark and tstamp are kept by design. In a container the kernel is the Docker host's (OrbStack's or Docker Desktop's VM on a Mac).",
        expected_failures: &[ExpectedFailure {
            variant: None,
            when: Some(SCRUB_UNFIXED),
            scope: "on kernels without the CVE-2025-37959 fix",
            failure: &NOT_SCRUBBED,
            reason: "CVE-2025-37959: before the fix bpf_redirect_peer does not scrub, the frame keeps pkt_type OTHERHOST and the peer drops it (for Cilium: IPsec traffic decrypted on the host kept its XFRM secpath and was dropped as XfrmInNoPols). Fixed in stable 6.1.139, 6.6.91, 6.12.29, 6.14.7 and mainline 6.15-rc6; no 5.10.y/5.15.y fix. Distribution kernels are judged by the upstream version their package is built from (`kernel.upstream`: Debian's 6.1.0-NN kernels are package 6.1.NNN-1, fixed from 6.1.139-1), `uname -r` elsewhere; a vendor kernel with the backport at another number shows as unexpected-pass. In a container, updating OrbStack or Docker Desktop updates this kernel.",
            reference: "https://nvd.nist.gov/vuln/detail/CVE-2025-37959",
        }],
        // Raw frames need no route: only `drop` breaks it.
        faults: &["drop"],
    },
    CheckSpec {
        id: "datapath.redirect-peer.scrub.conntrack",
        title: "bpf_redirect_peer resets conntrack (CVE-2025-37959)",
        passes_when: "bridged packets that the host tracked and tagged (br_netfilter, nftables `ct mark set`) are peer-redirected from br0's ingress into the pod: all are delivered, none has the host's conntrack entry before the pod's conntrack (nftables `ct state invalid` counts every one, `ct mark <host's>` none; skb->_nfct is 0 at the pod's ingress where the kernel's BTF lets the probe read it), and the pod tracks them with its own entry",
        control: "the same packets handed to the pod by a passthru macvlan on br0, which does not scrub: they arrive with the host's ct mark, so the check's test fails",
        variants: &["default"],
        requires: &[("*", "helper.redirect_peer")],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN, CT_CARRIED],
        reference: "https://nvd.nist.gov/vuln/detail/CVE-2025-37959 (upstream c4327229948879814229b46aa26a750718888503: skb_scrub_packet calls nf_reset_ct)",
        pass_because: "Fixed kernels scrub the skb in bpf_redirect_peer, and skb_scrub_packet resets conntrack (nf_reset_ct): the pod namespace tracks the flow itself, as it would any packet from outside.",
        expected_failures: &[ExpectedFailure {
            variant: None,
            when: Some(SCRUB_UNFIXED),
            scope: "on kernels without the CVE-2025-37959 fix",
            failure: &CT_CARRIED,
            reason: "CVE-2025-37959: before the fix bpf_redirect_peer hands the skb over with only skb->dev changed, so the host namespace's conntrack entry comes along and the pod's conntrack skips the packet. Fixed in stable 6.1.139, 6.6.91, 6.12.29, 6.14.7 and mainline 6.15-rc6; no 5.10.y/5.15.y fix.",
            reference: "https://nvd.nist.gov/vuln/detail/CVE-2025-37959",
        }],
        faults: &["drop", "no-scrub"],
    },
    CheckSpec {
        id: "datapath.redirect-peer.scrub.dst",
        title: "bpf_redirect_peer drops the source's route (CVE-2025-37959)",
        passes_when: "the host sends to an address only it has (on its lo); lo's ingress hook peer-redirects the packets into the pod, which has no such address: the pod routes them itself and drops every one (IpExt InNoRoutes + Ip InAddrErrors +N), none is delivered (skb->_skb_refdst is 0 at the pod's ingress where the kernel's BTF lets the probe read it)",
        control: "the same packets handed on by `mirred` (lo ingress to br0 ingress, which keeps the route) and the passthru macvlan into the pod: the host's route delivers them to the pod's socket, so the check's test fails",
        variants: &["default"],
        requires: &[("*", "helper.redirect_peer")],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN, DST_CARRIED],
        reference: "https://nvd.nist.gov/vuln/detail/CVE-2025-37959 (upstream c4327229948879814229b46aa26a750718888503: skb_scrub_packet calls skb_dst_drop)",
        pass_because: "Fixed kernels scrub the skb in bpf_redirect_peer, and skb_scrub_packet drops its dst: the pod namespace routes the packet with its own table (ip_rcv_finish_core routes only an skb without a valid dst).",
        expected_failures: &[ExpectedFailure {
            variant: None,
            when: Some(SCRUB_UNFIXED),
            scope: "on kernels without the CVE-2025-37959 fix",
            failure: &DST_CARRIED,
            reason: "CVE-2025-37959: before the fix the skb keeps the source namespace's route into the pod, which then delivers it by that route instead of its own. Fixed in stable 6.1.139, 6.6.91, 6.12.29, 6.14.7 and mainline 6.15-rc6; no 5.10.y/5.15.y fix.",
            reference: "https://nvd.nist.gov/vuln/detail/CVE-2025-37959",
        }],
        faults: &["drop", "no-scrub"],
    },
    CheckSpec {
        id: "datapath.redirect-peer.scrub.skb-ext",
        title: "bpf_redirect_peer resets skb extensions (CVE-2025-37959)",
        passes_when: "bridged packets that carry the bridge-netfilter skb extension at br0's ingress (skb->active_extensions non-zero, read at the kernel's BTF offset) are peer-redirected into the pod: all are delivered and none has an extension at the pod's ingress; the same reset removes an IPsec secpath",
        control: "the same packets handed to the pod by a passthru macvlan on br0: they arrive with the extension, so the check's test fails",
        variants: &["default"],
        requires: &[("*", "helper.redirect_peer")],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN, EXT_CARRIED],
        reference: "https://nvd.nist.gov/vuln/detail/CVE-2025-37959 (upstream c4327229948879814229b46aa26a750718888503: skb_scrub_packet calls skb_ext_reset)",
        pass_because: "Fixed kernels scrub the skb in bpf_redirect_peer, and skb_scrub_packet resets skb extensions (skb_ext_reset): for Cilium, IPsec traffic decrypted on the host no longer carries its secpath into the pod.",
        expected_failures: &[ExpectedFailure {
            variant: None,
            when: Some(SCRUB_UNFIXED),
            scope: "on kernels without the CVE-2025-37959 fix",
            failure: &EXT_CARRIED,
            reason: "CVE-2025-37959: before the fix skb extensions come along into the pod; for Cilium the XFRM secpath of decrypted IPsec traffic made the pod drop it (XfrmInNoPols). Fixed in stable 6.1.139, 6.6.91, 6.12.29, 6.14.7 and mainline 6.15-rc6; no 5.10.y/5.15.y fix.",
            reference: "https://nvd.nist.gov/vuln/detail/CVE-2025-37959",
        }],
        faults: &["drop", "no-scrub"],
    },
    CheckSpec {
        id: "datapath.redirect-peer.scrub.mark",
        title: "bpf_redirect_peer keeps skb->mark, as upstream intends",
        passes_when: "bridged packets marked by br0's ingress hook and peer-redirected into the pod all arrive with the mark (skb_scrub_packet(skb, false) keeps it; Cilium relies on it); the marks seen are evidence, so a kernel that changes this shows up in `compare`",
        control: "the same marked packets by a plain `bpf_redirect` through the pod's veth, whose cross-namespace scrub clears the mark: the check's test fails",
        variants: &["default"],
        requires: &[("*", "helper.redirect_peer"), ("*", "helper.redirect")],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN, METADATA_LOST],
        reference: "https://nvd.nist.gov/vuln/detail/CVE-2025-37959 (upstream c4327229948879814229b46aa26a750718888503)",
        pass_because: "skb_scrub_packet(skb, false), the fix's call, keeps mark and tstamp on purpose; unfixed kernels do not scrub at all and keep them too, so this holds on every kernel.",
        expected_failures: &[],
        faults: &["drop"],
    },
    CheckSpec {
        id: "datapath.redirect-peer.scrub.xfrm",
        title: "bpf_redirect_peer drops the XFRM secpath of decrypted IPsec traffic (CVE-2025-37959)",
        passes_when: "three namespaces: a remote, a host and a pod (veth remote–host, the wire; veth host–pod). The remote sends UDP to the pod's address through an ESP tunnel to the host (a static `rfc4106(gcm(aes))` key, an `out` policy with an ESP tunnel template on the remote, the state alone on the host, which decapsulates without a policy). A program on the host's wire device ingress passes the ESP packets (`TC_ACT_OK`) and `bpf_redirect_peer`s the decrypted inner packets, which re-enter that ingress carrying their secpath (the active_extensions secpath bit, read at the kernel's BTF offset where it can be), into the pod. The pod has no XFRM policy: all 5 are delivered, counted hop by hop (the remote's state encrypted 5, the host's decrypted 5), and the pod's `XfrmInNoPols` stays +0",
        control: "the pod gets a `dir in` policy for its address that requires an ESP tunnel transform (`level required`) of an SA none of the packets was decrypted by (reqid 2): whether or not the secpath came along, the pod's policy check rejects every packet (`XfrmInTmplMismatch` +5, the witness that they reached it) and none is delivered, so the check's delivery test fails",
        variants: &["default"],
        requires: &[("*", "helper.redirect_peer"), ("*", "xfrm.esp")],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN, SECPATH_CARRIED],
        reference: "https://nvd.nist.gov/vuln/detail/CVE-2025-37959 (upstream c4327229948879814229b46aa26a750718888503: skb_scrub_packet calls skb_ext_reset, which drops the secpath)",
        pass_because: "Fixed kernels scrub the skb in bpf_redirect_peer, and skb_scrub_packet resets skb extensions: the secpath of traffic the host decrypted stays in the host, and the pod's __xfrm_policy_check sees a packet that never was IPsec, which a pod without policy accepts. This is the Cilium case the fix was made for (IPsec with eBPF host routing).",
        expected_failures: &[ExpectedFailure {
            variant: None,
            when: Some(SCRUB_UNFIXED),
            scope: "on kernels without the CVE-2025-37959 fix",
            failure: &SECPATH_CARRIED,
            reason: "CVE-2025-37959: before the fix bpf_redirect_peer hands the skb into the pod with its XFRM secpath, and the pod's policy check drops tunnel-mode IPsec it has no policy for (XfrmInNoPols): Cilium's IPsec traffic decrypted on the host never reached its pods. Fixed in stable 6.1.139, 6.6.91, 6.12.29, 6.14.7 and mainline 6.15-rc6; no 5.10.y/5.15.y fix.",
            reference: "https://nvd.nist.gov/vuln/detail/CVE-2025-37959",
        }],
        // The plaintext exists only between the host's decryption and the pod:
        // `drop` is a program on the pod's eth0 ingress.
        faults: &["drop"],
    },
    CheckSpec {
        id: "datapath.pod-to-host",
        title: "A pod reaches a host address and gets the reply",
        passes_when: "pod A → node IP → pod A round trips over the pod's default route and the host's `/32` route, both directions counted hop by hop",
        control: "the host's `/32` route to pod A points at pod B's veth: pod B's eth0 receives the replies, pod A none",
        variants: &["default"],
        requires: &[],
        failures: &[NOT_DELIVERED],
        reference: "https://docs.cilium.io/en/stable/network/concepts/routing/",
        pass_because: "Plain routing between a pod namespace (/32 address, default route via its gateway) and the node, as Cilium sets pods up; no eBPF involved, so a failure means the namespaces or veths are broken.",
        expected_failures: &[],
        faults: &["drop", "no-route"],
    },
    CheckSpec {
        id: "datapath.host-to-pod",
        title: "The host reaches a pod and gets the reply",
        passes_when: "host → pod A → host round trips",
        control: "the same misrouted `/32`: pod B's eth0 receives the requests",
        variants: &["default"],
        requires: &[],
        failures: &[NOT_DELIVERED],
        reference: "https://docs.cilium.io/en/stable/network/concepts/routing/",
        pass_because: "The node reaches a pod over its /32 route via the host-side veth (health checks, kubelet probes), as Cilium routes pods; no eBPF involved.",
        expected_failures: &[],
        faults: &["drop", "no-route"],
    },
    CheckSpec {
        id: "env.bpffs.propagation",
        title: "A bpffs mounted beside the node reaches the node (the k3d mount problem)",
        passes_when: "an \"agent\" mount namespace, copied from the node's as a runtime copies one for a pod, mounts a bpffs at `/sys/fs/bpf` (what Cilium's `mount-bpf-fs` init container does through a Bidirectional hostPath) and pins a map; the node's namespace sees a bpffs there and opens the pin to the same map id. `rshared`: the node's `/sys/fs/bpf` is shared (what `mount --make-rshared /`, k3d's `K3D_FIX_MOUNTS`, gives); `private`: Docker's default for a container's mounts, the k3d problem shown live with the fix in its reason. The node is a slave copy of the probe's mount namespace, so nothing propagates back to the host; fault `drop` unlinks the pin",
        control: "the agent's copy made a slave before it mounts (a HostToContainer hostPath): its mount must not reach the node",
        variants: &["rshared", "private"],
        requires: &[],
        failures: &[NOT_PROPAGATED, PIN_NOT_SEEN],
        reference: "https://github.com/k3d-io/k3d/pull/1268 (K3D_FIX_MOUNTS); https://docs.cilium.io/en/stable/operations/system_requirements/#mounted-ebpf-filesystem",
        pass_because: "A mount made in a sibling mount namespace reaches a shared one: kernel mount propagation (shared subtrees, 2.6.15), which Cilium's mount-bpf-fs init container relies on. A node's systemd (or k3d's K3D_FIX_MOUNTS, on by default since k3d 5.6.1) makes / shared; a failure means propagation itself is broken.",
        expected_failures: &[ExpectedFailure {
            variant: Some("private"),
            when: None,
            scope: "everywhere, by design",
            failure: &NOT_PROPAGATED,
            reason: "Docker's default for a container's mounts is private, and without K3D_FIX_MOUNTS (k3d before 5.6.1, K3D_FIX_MOUNTS=0, k3d #363 on macOS) Cilium's agent fails with '/sys/fs/bpf is not a shared or slave mount': expected to fail (not-propagated) everywhere, as the live demonstration of the k3d problem, with the fix in the reason. Whether the place itself is such a node is the bpffs.propagation fact.",
            reference: "https://github.com/k3d-io/k3d/pull/1268",
        }],
        // `drop` unlinks the agent's pin: no traffic, no route.
        faults: &["drop"],
    },
    CheckSpec {
        id: "socket-lb.connect",
        title: "Socket LB: cgroup connect4/sendmsg4/recvmsg4 translate a service to a backend",
        passes_when: "programs on the client's cgroup (a run-scoped child of the probe's, whose member creates pod A's sockets) rewrite the service 10.43.0.10:80, which nothing routes to, to a backend on the node IP, as Cilium's kube-proxy replacement does in `bpf_sock.c`: `tcp`: 5 connections, each translated by `connect4`, accepted from pod A's own address (no SNAT), one request echoed each, `getpeername` says the service (`getpeername4`); `udp`: 5 datagrams by `sendto` (`sendmsg4`) and 5 on a socket connected to the service (`connect4`), received from pod A's own address, every reply's source the service (`recvmsg4`), `getpeername` too; the programs' counters count each translation, the rest is counted hop by hop",
        control: "the same programs stay attached, the service's entry is removed from their map: they still run (their call counters move) but translate nothing, the host drops the traffic to the unrouted service, and the backend receives none, so the check's \"backend received, peer is the service\" test fails",
        variants: &["tcp", "udp"],
        requires: &[("*", "cgroup.sock_addr")],
        failures: &[
            NOT_TRANSLATED,
            NOT_DELIVERED,
            SOURCE_NOT_KEPT,
            PEER_NOT_SERVICE,
        ],
        reference: "https://docs.cilium.io/en/stable/network/kubernetes/kubeproxy-free/ (socket LB: kubeProxyReplacement, socketLB.enabled)",
        pass_because: "cgroup v2 sock_addr hooks (connect4 4.17, sendmsg4 4.18, recvmsg4 5.2, getpeername4 5.8) are how Cilium's kube-proxy replacement balances services at the socket; where they can be attached (the cgroup.sock_addr fact) nothing about a container or a VM changes what they do, so a failure is a regression.",
        expected_failures: &[],
        // `drop`: a cgroup_skb egress program on the client's cgroup drops every
        // packet after the translation (the TC drop hook parses UDP only).
        faults: &["drop", "no-route"],
    },
    CheckSpec {
        id: "xdp.veth",
        title: "XDP on a veth passes traffic to the host stack",
        passes_when: "an XDP program on pod A's host-side veth, attached native (`XDP_FLAGS_DRV_MODE`: the veth driver runs it in its NAPI poll, what `loadBalancer.acceleration=native` relies on) or generic (`XDP_FLAGS_SKB_MODE`), counts pod A's 5 datagrams and returns `XDP_PASS`; they reach the host socket, counted hop by hop (pod A eth0, the program, the veth, the host's IP and UDP counters, the socket)",
        control: "the program returns `XDP_DROP`: it counts the burst, none reaches the socket",
        variants: &["native", "generic"],
        requires: &[],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN],
        reference: "https://docs.cilium.io/en/stable/network/kubernetes/kubeproxy-free/#loadbalancer-nodeport-xdp-acceleration",
        pass_because: "veth runs XDP natively since 4.19 and generic XDP works on any device, below Cilium's 5.10 minimum; nothing about a container or a VM changes that for a veth, so a failure is a regression. Whether the node's NIC driver supports native XDP is not checked.",
        expected_failures: &[],
        faults: &["drop", "no-route"],
    },
    CheckSpec {
        id: "device.netkit",
        title: "A netkit pair carries pod traffic through its BPF program (and scrubs as Cilium needs)",
        passes_when: "a netkit pair (primary in the host namespace, peer as the pod's `eth0`, routed like a veth pod) in L3 mode (`l3`, Cilium's `netkit`) or L2 (`l2`, `netkit-l2`) with the `hook` program linked as the peer's program (`BPF_NETKIT_PEER`, where Cilium puts `cil_from_container`; netkit runs the transmitting side's programs) passes (`NETKIT_PASS`) the pod's 5 datagrams to the host socket, hop by hop. `scrub`: the pair as Cilium creates it (`IFLA_NETKIT_SCRUB` none, `IFLA_NETKIT_PEER_SCRUB` default): the pod's `SO_MARK` is 0 when the peer's program runs, a host socket's `SO_MARK` is kept when the primary's program (`BPF_NETKIT_PRIMARY`, `cil_to_container` with endpoint routes) runs, both directions delivered: Cilium's HaveNetkitScrub, live",
        control: "`l3`/`l2`: the peer's program returns `TC_ACT_SHOT` (`NETKIT_DROP`): counted, none delivered. `scrub`: the inverse pair (scrub default, peer scrub none) in its own pod: the host's mark is gone at the primary's program and the pod's kept at the peer's, so the test fails",
        variants: &["l3", "l2", "scrub"],
        requires: &[("*", "netkit")],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN, MARK_LEAKED, MARK_NOT_KEPT],
        reference: "https://github.com/torvalds/linux/blob/master/drivers/net/netkit.c (scrub: 83134ef4609388f6b9ca31a384f531155196c2a7)",
        pass_because: "netkit (6.7, CONFIG_NETKIT) is Cilium's pod device in bpf.datapathMode=netkit/netkit-l2: where the device exists it must carry traffic through its program in either mode, and since netkit's scrub attributes (6.13, stable 6.12.4) the primary keeps a mark set before it while what leaves the pod is scrubbed. Where netkit is absent the variants are unsupported (the netkit expected-fact entry).",
        expected_failures: &[ExpectedFailure {
            variant: Some("scrub"),
            when: Some("kernel.upstream >= 6.7-rc1 and kernel.upstream < 6.12.4"),
            scope: "on kernels before netkit's scrub attributes (6.7 to 6.12.3)",
            failure: &MARK_NOT_KEPT,
            reason: "netkit before 83134ef46093 ('netkit: Add option for scrubbing skb meta data', mainline 6.13, stable 6.12.4) scrubs skb->mark before every program when the pair spans namespaces and ignores IFLA_NETKIT_SCRUB: the mark a host-side program (Cilium's from-netdev with endpoint routes) stored is gone when cil_to_container runs, policy misclassifies (cilium/cilium#34042), and Cilium refuses netkit with endpoint routes ('netkit driver missing scrub attributes'). Judged on kernel.upstream; a vendor kernel with the backport elsewhere shows as unexpected-pass.",
            reference: "https://github.com/cilium/cilium/issues/34042",
        }],
        faults: &["drop", "no-route"],
    },
    CheckSpec {
        id: "datapath.redirect-neigh",
        title: "bpf_redirect_neigh fills in L2 from the neighbour table and delivers into another pod",
        passes_when: "a program on pod A's host-side veth ingress calls `bpf_redirect_neigh(lxc B, NULL, 0, 0)` on frames addressed to the gateway (lxc A's MAC); the kernel routes them out of lxc B and writes their L2 header from its neighbour table: pod B's eth0 observer sees destination pod B's MAC, source lxc B's, pkt_type HOST, and pod B's socket receives all 5, counted hop by hop, with the host's `IpForwDatagrams` +0 (forwarding is off). `known`: pod B's neighbour entry exists (permanent); `resolve`: it is deleted first, and the kernel must resolve it by ARP, queue the burst and deliver it: the entry that appeared is in the evidence; `ipv6`: `known` over IPv6 on a dual-stack node (pod A `fd00:42::11` to pod B `fd00:42::12`): the kernel's IPv6 route lookup gives the nexthop pod B's address and its permanent IPv6 neighbour (ND) entry the L2 header, pod B's `Ip6`/`Udp6` counters on the path, the host's `Ip6OutForwDatagrams` +0",
        control: "the neighbour step removed and nothing else: a plain `bpf_redirect` to lxc B's egress (the same device, direction and frames; in `resolve` the entry deleted again), so the frames keep the gateway's MAC; pod B sees them OTHERHOST and drops them, and the check's \"L2 from the neighbour table\" witness fails",
        variants: &["known", "resolve", IPV6_VARIANT],
        // The control's plain bpf_redirect needs `helper.redirect` too.
        requires: &[
            (IPV6_VARIANT, IPV6_FACT),
            ("*", "helper.redirect_neigh"),
            ("*", "helper.redirect"),
        ],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN, NOT_RESOLVED, FORWARDED],
        reference: "https://github.com/torvalds/linux/commit/b4ab31414970 (bpf: Add redirect_neigh helper as redirect drop-in); https://docs.cilium.io/en/stable/operations/performance/tuning/#ebpf-host-routing",
        pass_because: "bpf_redirect_neigh (5.10; the nexthop form 5.11) is how Cilium's eBPF host routing sends traffic whose L2 it does not know: the kernel's own route and neighbour lookup, ARP included, and for IPv6 the same through ip6_route_output and the ND table (bpf_out_neigh_v6). It stays inside the node's namespaces, so it must work wherever the helper exists; where it does not, the expected-fact entry for helper.redirect_neigh says so, and where the kernel has no IPv6 the ipv6 fact's.",
        expected_failures: &[],
        faults: &["drop", "no-route"],
    },
    CheckSpec {
        id: "datapath.fib-lookup",
        title: "bpf_fib_lookup answers what the routes and neighbours say, and its answer forwards",
        passes_when: "a program on pod A's host-side veth ingress calls `bpf_fib_lookup` (flags 0: rules and tables, as the stack forwards) for every packet, pod A → pod B and pod A → the node IP, and records the answer; it must equal what the host namespace's routes and neighbours, read over netlink, give: pod B → `SUCCESS` via lxc B with source lxc B's MAC and destination pod B's neighbour MAC, the node IP → `NOT_FWDED` (a local route). The program then does what Cilium's FIB path does: on `SUCCESS` it rewrites both MACs and `bpf_redirect`s to the answer's device, otherwise it hands the packet to the stack; both bursts arrive (pod B's socket, the host's), counted hop by hop, with `IpForwDatagrams` +0. The lookup answers `FWD_DISABLED` on a device without IPv4 forwarding, so forwarding is turned on for lxc A alone in this check's own host namespace, as a Cilium node has it (the +0 shows the redirect, not the stack, moved the packets). `ipv6`: the same with `AF_INET6` on a dual-stack node (pod A `fd00:42::11`, pod B `fd00:42::12` via its `/128`, the node IP `fd00:198:18::10` a local route), IPv6 forwarding on for lxc A alone, `Ip6`/`Udp6` counters on the path, `Ip6OutForwDatagrams` +0",
        control: "pod B's `/32` route (`ipv6`: `/128`) removed before the same traffic: the lookup must answer `NOT_FWDED` (no route), which is not the forwarding answer pod B's route gives, so the check's \"answer matches the routes\" test fails; the stack drops the packets (`InNoRoutes`)",
        variants: &["default", IPV6_VARIANT],
        requires: &[
            (IPV6_VARIANT, IPV6_FACT),
            ("*", "helper.fib_lookup"),
            ("*", "helper.redirect"),
            ("*", "helper.skb_store_bytes"),
        ],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN, FIB_MISMATCH, FORWARDED],
        reference: "https://github.com/torvalds/linux/commit/87f5fc7e48dd (bpf: Provide helper to do forwarding lookups in kernel FIB table); https://docs.cilium.io/en/stable/operations/performance/tuning/#ebpf-host-routing",
        pass_because: "bpf_fib_lookup (4.18, AF_INET and AF_INET6 alike) is how Cilium's eBPF host routing and NodePort find the next hop and its MACs without the stack; a kernel whose answer disagrees with its own routes, or whose answer does not forward, breaks that everywhere, over IPv4 as over IPv6.",
        expected_failures: &[],
        faults: &["drop", "no-route"],
    },
    CheckSpec {
        id: "datapath.redirect-egress",
        title: "bpf_redirect to another device's egress transmits out of it",
        passes_when: "a program on pod A's host-side veth ingress rewrites the destination MAC to pod B's and calls `bpf_redirect(lxc B, 0)`, the way Cilium sends out of a native device; lxc B transmits all 5 and pod B's eth0 receives them (the veth's own counters), pod B's socket gets them, `IpForwDatagrams` +0. Unlike `datapath.redirect-peer`, whose control takes this path only to show its own tx +0 witness can fail, the egress redirect is the subject here, judged hop by hop, and its control flips only the direction",
        control: "the same redirect with `BPF_F_INGRESS`: the frames land on lxc B's ingress in the host namespace (an observer there counts them) instead of leaving through it, so lxc B transmits 0 and the check's \"lxc B transmitted 5\" witness fails; the host stack drops them",
        variants: &["default"],
        requires: &[("*", "helper.redirect"), ("*", "helper.skb_store_bytes")],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN, FORWARDED],
        reference: "https://docs.cilium.io/en/stable/network/ebpf/intro/; https://man7.org/linux/man-pages/man7/bpf-helpers.7.html (bpf_redirect)",
        pass_because: "bpf_redirect to a device's egress (3.19/4.4) is Cilium's way out of the node through its native device; it stays inside the node's namespaces, so it must work everywhere.",
        expected_failures: &[],
        faults: &["drop", "no-route"],
    },
    CheckSpec {
        id: "tunnel.vxlan",
        title: "VXLAN collect-metadata tunnel: bpf_skb_set_tunnel_key carries pod traffic between nodes unfragmented",
        passes_when: "two nodes (host namespaces) joined by an underlay veth (192.0.2.1/24 and .2/24, MTU 1500), each with `cilium_vxlan` in external (collect-metadata) mode on UDP 8472: a program on pod A's host-side veth (node 1) sets the tunnel key (`bpf_skb_set_tunnel_key`: remote node 2's underlay address, VNI 4242, ttl 64, `BPF_F_ZERO_CSUM_TX` as Cilium passes) and redirects to `cilium_vxlan`; a program on node 2's `cilium_vxlan` ingress reads the key (`bpf_skb_get_tunnel_key`) and redirects to pod B's host-side veth. Pod B's socket receives all 5 datagrams whole, the receiving program saw remote 192.0.2.1 and VNI 4242 for each, hop by hop (pod A eth0, the encap program, node 1's tunnel device and underlay tx, node 2's underlay rx and tunnel UDP socket, its tunnel device, the decap program, pod B), and no hop fragmented (IP FragCreates / ReasmReqds +0 in every namespace). `small`: 8-byte datagrams; `no-frag` (cilium-cli's pod-to-pod-no-frag): the pod MTU is Cilium's (underlay 1500 − 50 = 1450 on both ends of both pods' veths) and each datagram fills it (1422 bytes of payload, 1450-byte IP packet, 1500 bytes on the underlay)",
        control: "`small`: the encap program sets VNI 4243 instead (only the key changes): the packets still cross the tunnel and are delivered, but the receiving program reads the wrong VNI, so the check's tunnel-key test fails; `no-frag`: the pod MTU is the underlay's (1500, the overhead forgotten) and the datagrams fill it: they arrive whole but the underlay carries each as two fragments, so the check's no-fragments test fails",
        variants: &["small", "no-frag"],
        requires: &[
            ("*", "vxlan"),
            ("*", "helper.skb_set_tunnel_key"),
            ("*", "helper.skb_get_tunnel_key"),
            ("*", "helper.redirect"),
            ("*", "helper.skb_store_bytes"),
        ],
        failures: &[
            NOT_DELIVERED,
            HOOK_NOT_RUN,
            NOT_ENCAPSULATED,
            WRONG_TUNNEL_KEY,
            FRAGMENTED,
        ],
        reference: "https://docs.cilium.io/en/stable/network/concepts/routing/#encapsulation (routingMode: tunnel, tunnelProtocol: vxlan); cilium-cli connectivity test pod-to-pod-no-frag",
        pass_because: "Collect-metadata VXLAN devices (4.3, `ip link ... type vxlan external`) with bpf_skb_set_tunnel_key / bpf_skb_get_tunnel_key (4.3) are Cilium's default routing mode; with the pod MTU it computes (underlay minus 50) a full-size pod packet fits the underlay whole. Nothing about a container or a VM changes that; a failure is a regression. Where the kernel cannot create the device at all, the check is unsupported (the vxlan fact and its expected-fact entry).",
        expected_failures: &[],
        // `drop`: the dropping program on pod A's eth0 egress; `no-route`: pod A's
        // default route removed (`Ctx::apply_pod_fault`).
        faults: &["drop", "no-route"],
    },
    CheckSpec {
        id: "tunnel.geneve",
        title: "Geneve collect-metadata tunnel: bpf_skb_set_tunnel_key carries pod traffic between nodes unfragmented",
        passes_when: "the same as `tunnel.vxlan` with `cilium_geneve` in external (collect-metadata) mode on UDP 6081 (`tunnelProtocol: geneve`), no Geneve options (overhead 50: the pod MTU 1450 on a 1500 underlay)",
        control: "the same as `tunnel.vxlan`: `small` a wrong VNI (4243) set by the encap program, the receiving program reads it and the tunnel-key test fails; `no-frag` the pod MTU 1500, the underlay fragments every datagram and the no-fragments test fails",
        variants: &["small", "no-frag"],
        requires: &[
            ("*", "geneve"),
            ("*", "helper.skb_set_tunnel_key"),
            ("*", "helper.skb_get_tunnel_key"),
            ("*", "helper.redirect"),
            ("*", "helper.skb_store_bytes"),
        ],
        failures: &[
            NOT_DELIVERED,
            HOOK_NOT_RUN,
            NOT_ENCAPSULATED,
            WRONG_TUNNEL_KEY,
            FRAGMENTED,
        ],
        reference: "https://docs.cilium.io/en/stable/network/concepts/routing/#encapsulation (tunnelProtocol: geneve); cilium-cli connectivity test pod-to-pod-no-frag",
        pass_because: "Collect-metadata Geneve devices (4.6 for collect_md, `ip link ... type geneve external`) with the tunnel-key helpers are Cilium's `tunnelProtocol: geneve`; without options Geneve adds the same 50 bytes as VXLAN, so Cilium's pod MTU fits. A failure is a regression; where the kernel cannot create the device, the check is unsupported (the geneve fact).",
        expected_failures: &[],
        faults: &["drop", "no-route"],
    },
    CheckSpec {
        id: "cluster.pod-to-pod",
        title: "A pod reaches another pod's IP, on its node and across nodes",
        passes_when: "client pod `client-i` on node i sends 3 attempts (a TCP connection each, carrying a token) to echo pod `echo-j`'s pod IP; every one is answered by `echo-j` with its token. `same-node`: j = i; `cross-node`: echo-j on the next node (multi-node clusters only). The source address the echo saw is evidence (pod-to-pod traffic is not masqueraded)",
        control: "the same client, the same pod IP, a port nothing serves: no attempt may be answered",
        variants: &["same-node", "cross-node"],
        requires: &[],
        failures: &[NOT_DELIVERED, crate::pods::WRONG_SERVER],
        reference: "https://docs.cilium.io/en/stable/network/concepts/routing/; cilium-cli connectivity test pod-to-pod",
        pass_because: "Pod-to-pod reachability on one node and across nodes (tunnel or native routing) is what any Cilium install provides; a failure is a regression.",
        expected_failures: &[],
        faults: &[],
    },
    CheckSpec {
        id: "cluster.pod-to-host",
        title: "A pod reaches its node's InternalIP",
        passes_when: "client pod `client-i` connects 3 times to node i's InternalIP, where the run's probe pod (host network) serves the echo after its checks; each attempt is answered by that node's echo",
        control: "the same node IP, a port nothing serves: no attempt may be answered",
        variants: &["default"],
        requires: &[],
        failures: &[NOT_DELIVERED, crate::pods::WRONG_SERVER],
        reference: "https://docs.cilium.io/en/stable/network/concepts/routing/; cilium-cli connectivity test pod-to-host",
        pass_because: "Pods reach their node (kubelet, node-local services, the host firewall's defaults allow it) on every Cilium install; a failure is a regression.",
        expected_failures: &[],
        faults: &[],
    },
    CheckSpec {
        id: "cluster.host-to-pod",
        title: "A node reaches a pod on it",
        passes_when: "a client pod on node i's host network connects 3 times to `echo-i`'s pod IP; each attempt is answered by `echo-i`",
        control: "the same pod IP, a port nothing serves: no attempt may be answered",
        variants: &["default"],
        requires: &[],
        failures: &[NOT_DELIVERED, crate::pods::WRONG_SERVER],
        reference: "https://docs.cilium.io/en/stable/network/concepts/routing/; kubelet health probes take this path",
        pass_because: "The node reaches its pods (kubelet's probes depend on it) on every Cilium install; a failure is a regression.",
        expected_failures: &[],
        faults: &[],
    },
    CheckSpec {
        id: "cluster.service",
        title: "A pod reaches the echo service by ClusterIP and by NodePort",
        passes_when: "client pod `client-i` sends 3 attempts to service `echo`: `cluster-ip` TCP to its ClusterIP, `cluster-ip-udp` UDP datagrams to its ClusterIP, `node-port` TCP to the next node's InternalIP at the `echo-nodeport` NodePort; every attempt is answered, with its token, by one of the run's echo pods (kube-proxy replacement: Cilium's socket or tc load balancing)",
        control: "the same address, a port the service does not have: no attempt may be answered",
        variants: &["cluster-ip", "cluster-ip-udp", "node-port"],
        requires: &[],
        failures: &[NOT_DELIVERED, crate::pods::WRONG_SERVER],
        reference: "https://docs.cilium.io/en/stable/network/kubernetes/kubeproxy-free/; cilium-cli connectivity test pod-to-service",
        pass_because: "ClusterIP and NodePort services are load-balanced by Cilium's kube-proxy replacement on every install that runs without kube-proxy (ADR-005's k3s flags); a failure is a regression.",
        expected_failures: &[],
        faults: &[],
    },
    CheckSpec {
        id: "cluster.dns",
        title: "A pod resolves a service name through the cluster's DNS",
        passes_when: "client pod `client-i` sends 3 A queries for `echo.<namespace>.svc.cluster.local` to its resolver (`/etc/resolv.conf`, kube-dns's ClusterIP over UDP); every answer is the `echo` service's ClusterIP. Never a resolver or name outside the cluster",
        control: "the same resolver asked for a name in the run's namespace nobody made: it must not resolve",
        variants: &["default"],
        requires: &[],
        failures: &[NOT_DELIVERED, crate::pods::WRONG_ADDRESS],
        reference: "https://kubernetes.io/docs/concepts/services-networking/dns-pod-service/; cilium-cli connectivity test dns-only",
        pass_because: "Every k3s cluster runs CoreDNS behind the kube-dns service; a pod that cannot resolve a service name through it is a regression.",
        expected_failures: &[],
        faults: &[],
    },
    CheckSpec {
        id: "cluster.stack-delivery",
        title: "Packets Cilium delivers into a pod reach the pod's socket: seen by a hook on the pod's own eth0 ingress, then counted by its stack",
        passes_when: "the observer container of `echo-i` (`probe observe`, in the echo pod's netns) attaches the probe's hook to the pod's own eth0 ingress (TCX where the kernel has it, legacy tc otherwise) and binds a UDP socket; a burst of 5 datagrams from `host-client-i` (`from-host`: node i's network, Cilium's to-container path) or `client-i` (`from-pod`: another pod on the node) must be matched by the hook, counted by the pod's IP and UDP MIBs and received by the socket, hop by hop, so a loss names the last hop that saw the burst (the sender, or the pod's interface) and the first that did not",
        control: "the same burst with the observer's hook returning `TC_ACT_SHOT`: the hook must count it and the socket must receive none",
        variants: &["from-host", "from-pod"],
        requires: &[],
        failures: &[NOT_DELIVERED],
        reference: "https://docs.cilium.io/en/stable/network/ebpf/intro/; https://docs.cilium.io/en/stable/operations/performance/tuning/#ebpf-host-routing (bpf_redirect_peer into the pod's eth0)",
        pass_because: "The pod-side half of stack delivery: whatever Cilium does on the node (bpf_redirect_peer into the pod, or the veth), the packets must arrive at the pod's eth0 and reach its socket on every install; a burst lost between the pod's interface and its socket is the nix-2hd class of failure, inside the pod. A failure is a regression.",
        expected_failures: &[],
        faults: &[],
    },
];

pub fn find_check(id: &str) -> Option<&'static CheckSpec> {
    CATALOGUE.iter().find(|c| c.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::fact_kind;

    #[test]
    fn ids_are_unique_dotted_kebab() {
        let mut seen = std::collections::HashSet::new();
        for c in CATALOGUE {
            assert!(seen.insert(c.id), "duplicate {}", c.id);
            assert!(
                c.id.split('.').all(|seg| !seg.is_empty()
                    && seg
                        .chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')),
                "bad id {}",
                c.id
            );
            assert!(!c.variants.is_empty());
        }
    }

    #[test]
    fn every_check_names_its_failures_once() {
        for c in CATALOGUE {
            assert!(!c.failures.is_empty(), "{} names no failure", c.id);
            let mut seen = std::collections::HashSet::new();
            for f in c.failures {
                assert!(seen.insert(f.code), "{}: {} twice", c.id, f.code);
                assert!(
                    f.code
                        .chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch == '-'),
                    "{}: bad code {}",
                    c.id,
                    f.code
                );
            }
        }
    }

    #[test]
    fn expected_failures_name_the_checks_own_failures_and_variants() {
        for c in CATALOGUE {
            for e in c.expected_failures {
                assert!(
                    c.failures.contains(e.failure),
                    "{}: {} is not one of its failures",
                    c.id,
                    e.failure.code
                );
                if let Some(v) = e.variant {
                    assert!(c.variants.contains(&v), "{}: no variant {v}", c.id);
                }
                assert!(!e.reason.trim().is_empty() && !e.reference.trim().is_empty());
            }
            assert!(!c.pass_because.trim().is_empty(), "{}", c.id);
        }
    }

    #[test]
    fn every_check_can_be_broken_by_a_known_fault() {
        for c in CATALOGUE {
            // The pod-level checks need a cluster, which no fault test can reach.
            assert!(
                !c.faults.is_empty() || crate::pods::is_pod_level(c.id),
                "{}: no fault turns it red",
                c.id
            );
            for f in c.faults {
                assert!(FAULT_KINDS.contains(f), "{}: unknown fault {f}", c.id);
            }
        }
    }

    #[test]
    fn expected_facts_are_boolean_and_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for f in EXPECTED_FACTS {
            assert!(seen.insert(f.fact), "{} twice", f.fact);
            assert_eq!(fact_kind(f.fact), Some(crate::FactKind::Bool), "{}", f.fact);
        }
    }

    #[test]
    fn every_ipv6_variant_requires_the_ipv6_fact_and_nothing_else_does() {
        for c in CATALOGUE {
            for v in c.variants {
                let needs = c.requirements(v).any(|f| f == IPV6_FACT);
                assert_eq!(needs, *v == IPV6_VARIANT, "{}[{v}]", c.id);
            }
        }
    }

    #[test]
    fn requirements_name_boolean_facts() {
        for c in CATALOGUE {
            for (variant, fact) in c.requires {
                assert!(
                    *variant == "*" || c.variants.contains(variant),
                    "{}: {variant}",
                    c.id
                );
                assert_eq!(
                    fact_kind(fact),
                    Some(crate::FactKind::Bool),
                    "{}: {fact}",
                    c.id
                );
            }
        }
    }
}
