//! Every check the suite knows, by stable id. Ids are never renamed once released:
//! add new ones, deprecate old ones.

/// One documented question the suite asks of a datapath.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckSpec {
    /// Dotted, lower-case, kebab within a segment.
    pub id: &'static str,
    /// One line for tables.
    pub title: &'static str,
    /// What passing means and what the negative control breaks (README, reports).
    pub summary: &'static str,
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

pub const CATALOGUE: &[CheckSpec] = &[
    CheckSpec {
        id: "tc.attach.tcx",
        title: "TC program attached through TCX sees traffic",
        summary: "A counting program attached as a TCX ingress link on the host side of a pod's veth counts every datagram the pod sends, and the datagrams still reach the host socket; a failure names the last hop that counted them (pod A eth0 tx, the veth's rx, the hook, the host's IP/UDP counters, the socket). Control: the same attach with a program that returns TC_ACT_SHOT: the hook counts the burst and none reaches the socket.",
        variants: &["tcx"],
        requires: &[("*", "tcx")],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN],
        reference: "https://docs.cilium.io/en/stable/operations/system_requirements/ (TCX, kernel 6.6)",
    },
    CheckSpec {
        id: "tc.attach.legacy",
        title: "TC program attached through clsact sees traffic",
        summary: "A counting program attached with a clsact qdisc and a cls_bpf filter (netlink) on the host side of a pod's veth counts every datagram and the datagrams still reach the host socket; a failure names the last hop that counted them. Control: a TC_ACT_SHOT program in the same place: the hook counts the burst and none reaches the socket.",
        variants: &["legacy"],
        requires: &[],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN],
        reference: "https://docs.cilium.io/en/stable/operations/system_requirements/ (bpf.enableTCX=false)",
    },
    CheckSpec {
        id: "datapath.stack-delivery",
        title: "TC ingress hands packets to the host stack (TC_ACT_OK)",
        summary: "A program on the host-side veth's ingress records each packet's skb metadata (ifindex, ingress ifindex, mark, hash, protocol, pkt_type) and returns TC_ACT_OK, Cilium's \"-> stack\"; the datagrams must reach a socket in the host namespace. Each burst is counted hop by hop (pod A eth0 tx, the veth's rx, the hook, the host's Ip InReceives/InAddrErrors/InNoRoutes, Udp InErrors/NoPorts/RcvbufErrors/InDatagrams, the socket), so a failure says where after the hook the packets went missing, which is what the nix-2hd incident lacked (its `flow 0x0, ifindex 0, orig-ip 0.0.0.0` trace is Cilium's normal \"-> stack\" line). Control: the program returns TC_ACT_SHOT: the hook counts the burst and none reaches the socket.",
        variants: ATTACH_MODES,
        requires: &[("tcx", "tcx")],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN],
        reference: "https://docs.cilium.io/en/stable/network/ebpf/intro/",
    },
    CheckSpec {
        id: "datapath.stack-delivery.redirect",
        title: "bpf_redirect to a host device's ingress reaches the host stack",
        summary: "A program on the host-side veth's ingress rewrites the destination MAC and calls bpf_redirect(cilium_net, BPF_F_INGRESS), the way Cilium hands host-bound traffic to cilium_host/cilium_net; the datagrams must reach a socket in the host namespace and be seen at cilium_net's ingress hook, counted hop by hop. Control: the same traffic handed to the stack with TC_ACT_OK instead of the redirect: it is delivered, but cilium_net's ingress must not see it, so the check's redirect witness is shown able to fail.",
        variants: ATTACH_MODES,
        requires: &[
            ("tcx", "tcx"),
            ("*", "helper.redirect"),
            ("*", "helper.skb_store_bytes"),
        ],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN],
        reference: "https://docs.cilium.io/en/stable/network/ebpf/intro/",
    },
    CheckSpec {
        id: "datapath.redirect-peer",
        title: "bpf_redirect_peer delivers into another pod namespace",
        summary: "A program on pod A's host-side veth ingress calls bpf_redirect_peer(pod B's host-side veth); the datagrams must reach a socket in pod B, counted hop by hop, while the host namespace forwards nothing (IpForwDatagrams unchanged, forwarding off) and pod B's host-side veth transmits nothing. Control: the same traffic with the peer flag cleared (plain bpf_redirect to pod B's host-side veth): it is delivered, but that veth transmits it, so the check's tx +0 witness is shown able to fail.",
        variants: ATTACH_MODES,
        // The control's plain bpf_redirect needs `helper.redirect` too.
        requires: &[
            ("tcx", "tcx"),
            ("*", "helper.redirect_peer"),
            ("*", "helper.redirect"),
            ("*", "helper.skb_store_bytes"),
        ],
        failures: &[NOT_DELIVERED, HOOK_NOT_RUN, NOT_BYPASSED],
        reference: "https://github.com/torvalds/linux/blob/master/tools/testing/selftests/bpf/prog_tests/tc_redirect.c",
    },
    CheckSpec {
        id: "datapath.redirect-peer.scrub",
        title: "bpf_redirect_peer scrubs the packet (CVE-2025-37959)",
        summary: "Pod A sends a frame with a foreign destination MAC (pkt_type OTHERHOST at the source hook; otherwise the probe reports an error, as the premise failed); a program marks it and calls bpf_redirect_peer into pod B. On a fixed kernel the scrub resets pkt_type to HOST so the frame is delivered, while mark and tstamp are kept by design. An unfixed kernel fails with not-scrubbed: OTHERHOST at pod B's eth0 ingress, not delivered. Control: the same frames by a path that does not scrub, a plain bpf_redirect to pod B's host-side veth (egress): they must reach pod B's observer as OTHERHOST and not be delivered, which is what an unfixed kernel shows on the peer path.",
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
    },
    CheckSpec {
        id: "datapath.pod-to-host",
        title: "A pod reaches a host address and gets the reply",
        summary: "A pod with a /32 address and a default route via its gateway sends to an address of the host namespace; the host answers over its /32 route via the pod's host-side veth, as Cilium routes pods. Both directions are counted hop by hop (veth tx/rx, IP/UDP counters, sockets, the echo). Control: the host's /32 route points at another pod's veth: pod B's eth0 receives the replies and pod A none.",
        variants: &["default"],
        requires: &[],
        failures: &[NOT_DELIVERED],
        reference: "https://docs.cilium.io/en/stable/network/concepts/routing/",
    },
    CheckSpec {
        id: "datapath.host-to-pod",
        title: "The host reaches a pod and gets the reply",
        summary: "The host namespace sends to a pod's /32 address over the route via the pod's host-side veth; the pod answers via its gateway; both directions are counted hop by hop. Control: the host's /32 route points at another pod's veth: pod B's eth0 receives the requests and pod A none.",
        variants: &["default"],
        requires: &[],
        failures: &[NOT_DELIVERED],
        reference: "https://docs.cilium.io/en/stable/network/concepts/routing/",
    },
    CheckSpec {
        id: "env.bpffs.propagation",
        title: "A bpffs mounted beside the node reaches the node (the k3d mount problem)",
        summary: "An agent mount namespace, copied from the node's as a container runtime copies one for a pod, mounts a bpffs at /sys/fs/bpf (as Cilium's mount-bpf-fs init container does through a Bidirectional hostPath) and pins a map there; the node's namespace must see a bpffs at /sys/fs/bpf and open the pin to the same map id. Variant rshared: the node's /sys/fs/bpf is a shared mount (what `mount --make-rshared /`, k3d's K3D_FIX_MOUNTS, gives); variant private: Docker's default for a container's mounts, where the agent's mount stays in its own namespace (failure not-propagated, the reason says the fix). The node is a slave copy of the probe's mount namespace, so nothing propagates back to the place or the host. Fault `drop` unlinks the agent's pin before the node looks (pin-not-seen). Control: the agent's copy is made a slave before it mounts (a HostToContainer hostPath): its mount must not reach the node.",
        variants: &["rshared", "private"],
        requires: &[],
        failures: &[NOT_PROPAGATED, PIN_NOT_SEEN],
        reference: "https://github.com/k3d-io/k3d/pull/1268 (K3D_FIX_MOUNTS); https://docs.cilium.io/en/stable/operations/system_requirements/#mounted-ebpf-filesystem",
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
