//! Which check of the catalogue (`contract/src/catalogue.rs`) tests the step a line
//! shows. Every id here is a `CATALOGUE` id; a unit test holds them to it.

use super::codes::{DropClass, DropReason, ObsPoint};
use super::{CheckLink, Relation};

pub const STACK_DELIVERY: &str = "datapath.stack-delivery";
pub const STACK_DELIVERY_REDIRECT: &str = "datapath.stack-delivery.redirect";
pub const REDIRECT_PEER: &str = "datapath.redirect-peer";
pub const SCRUB: &str = "datapath.redirect-peer.scrub";
pub const POD_TO_HOST: &str = "datapath.pod-to-host";
pub const HOST_TO_POD: &str = "datapath.host-to-pod";
pub const TCX: &str = "tc.attach.tcx";
pub const LEGACY: &str = "tc.attach.legacy";

/// Every id this module links, for the test that they exist.
#[cfg(test)]
pub const LINKED: &[&str] = &[
    STACK_DELIVERY,
    STACK_DELIVERY_REDIRECT,
    REDIRECT_PEER,
    SCRUB,
    POD_TO_HOST,
    HOST_TO_POD,
    TCX,
    LEGACY,
];

/// The checks for a step, or why none matches.
pub type Links = (Vec<CheckLink>, Option<String>);

fn link(id: &'static str, relation: Relation, why: impl Into<String>) -> CheckLink {
    CheckLink {
        id,
        relation,
        why: why.into(),
    }
}

fn none(why: impl Into<String>) -> Links {
    (Vec::new(), Some(why.into()))
}

fn attach_checks(relation: Relation, why: &str) -> Vec<CheckLink> {
    vec![
        link(TCX, relation, format!("{why} (attached as a TCX link)")),
        link(
            LEGACY,
            relation,
            format!("{why} (attached with clsact + cls_bpf)"),
        ),
    ]
}

/// What a trace's observation point is tested by. `dst_host`: the destination
/// identity is `host`; `encrypted`: the trace reason carries the encrypt bit.
pub fn for_trace(point: ObsPoint, dst_host: bool, encrypted: bool) -> Links {
    match point {
        ObsPoint::ToStack => {
            let mut links = vec![link(
                STACK_DELIVERY,
                Relation::Tests,
                "`-> stack` is a TC program returning TC_ACT_OK to hand the packet to the kernel stack; this check runs exactly that on a pod's host-side veth and counts, hop by hop, where the packets went after the hook, which this line cannot show",
            )];
            links.extend(attach_checks(
                Relation::Related,
                "the line proves Cilium's program ran; the attach checks confirm that a program attached the same way sees the traffic and that it still reaches the host socket (a field report of `-> stack` with nothing delivered was resolved by bpf.enableTCX=false)",
            ));
            if dst_host {
                links.push(link(
                    POD_TO_HOST,
                    Relation::Related,
                    "the destination identity is the host itself: the pod-to-host round trip over the pod's route",
                ));
            }
            (links, None)
        }
        ObsPoint::ToHost => (
            vec![
                link(
                    STACK_DELIVERY_REDIRECT,
                    Relation::Tests,
                    "Cilium hands host-bound traffic to cilium_host/cilium_net with a redirect; this check does bpf_redirect to a host device's ingress and counts delivery to a host socket",
                ),
                link(
                    POD_TO_HOST,
                    Relation::Related,
                    "a pod reaching an address of the host and getting the reply",
                ),
            ],
            None,
        ),
        ObsPoint::ToEndpoint => {
            let mut links = vec![
                link(
                    REDIRECT_PEER,
                    Relation::Related,
                    "with BPF host routing Cilium delivers into the pod's namespace with bpf_redirect_peer; this check tests that helper hop by hop (without it, the packet continues by the pod's veth)",
                ),
                link(
                    HOST_TO_POD,
                    Relation::Related,
                    "the route from the host into a pod's namespace and back",
                ),
            ];
            if encrypted {
                links.push(link(
                    SCRUB,
                    Relation::Related,
                    "decrypted (IPsec) traffic peer-redirected into a pod is the case CVE-2025-37959 broke: without the scrub the packet keeps its state from the host",
                ));
            }
            (links, None)
        }
        ObsPoint::FromEndpoint => (
            attach_checks(
                Relation::Tests,
                "Cilium's program on the pod's host-side veth sees what the pod sends: the attach checks count a pod's datagrams at exactly that hook",
            ),
            None,
        ),
        ObsPoint::FromHost => (
            vec![link(
                HOST_TO_POD,
                Relation::Related,
                "traffic from the host namespace towards a pod",
            )],
            None,
        ),
        ObsPoint::ToOverlay | ObsPoint::FromOverlay => {
            none("no check of this suite tests tunnel encapsulation (cilium_vxlan/cilium_geneve)")
        }
        ObsPoint::ToNetwork | ObsPoint::FromNetwork => none(
            "no check of this suite tests native-device ingress/egress or FIB redirects towards other nodes",
        ),
        ObsPoint::ToProxy | ObsPoint::FromProxy => {
            none("no check of this suite tests the L7 proxy redirect")
        }
        ObsPoint::FromStack => {
            none("no check of this suite tests bpf_host on traffic the stack sends out")
        }
        ObsPoint::ToCrypto | ObsPoint::FromCrypto => {
            none("no check of this suite tests WireGuard encryption")
        }
        ObsPoint::Unknown => none(
            "the line does not say which observation point it is, so no step (and no check) can be named",
        ),
    }
}

/// What a drop is tested by: its reason, the BPF file and the destination endpoint.
pub fn for_drop(
    reason: Option<&DropReason>,
    file: Option<&str>,
    dst_endpoint: Option<u64>,
) -> Links {
    let class = reason.map(|r| r.class).unwrap_or(DropClass::Other);
    let mut links = Vec::new();
    let mut no_check = None;
    match class {
        DropClass::TailCall => links.extend(attach_checks(
            Relation::Related,
            "the drop proves the attached program ran; a missed tail call means a program it jumps to (an endpoint's policy program, a later stage) is not in Cilium's tail-call map: an endpoint still regenerating or a program that failed to load (see the agent log), not a kernel primitive",
        )),
        DropClass::Routing => {
            links.push(link(
                POD_TO_HOST,
                Relation::Related,
                "routing between a pod and the host over /32 routes",
            ));
            links.push(link(
                HOST_TO_POD,
                Relation::Related,
                "routing from the host into a pod",
            ));
        }
        DropClass::Policy => {
            no_check = Some(
                "a policy decision: Cilium denied the packet as configured; this suite tests datapath primitives, not policy".to_string(),
            )
        }
        DropClass::NotReady => {
            no_check = Some(
                "Cilium itself (the agent or the endpoint's program) was not ready; not a kernel primitive".to_string(),
            )
        }
        DropClass::NotADrop => {
            no_check = Some(
                "not a lost packet: the code means Cilium handled the packet another way".to_string(),
            )
        }
        DropClass::Other => {}
    }
    let to_peer = dst_endpoint.is_some_and(|id| id != 0);
    if to_peer && (file == Some("bpf_lxc.c") || file == Some("l3.h")) && class != DropClass::Policy
    {
        links.push(link(
            REDIRECT_PEER,
            Relation::Related,
            "the drop happened on the way into a local endpoint, the step Cilium completes with a redirect into the pod (bpf_redirect_peer with BPF host routing)",
        ));
    }
    if links.is_empty() && no_check.is_none() {
        no_check = Some(match reason {
            Some(r) => format!("no check of this suite tests what `{}` is about", r.text),
            None => "the reason is not one this decoder knows, so no check can be named".into(),
        });
    }
    (links, no_check)
}

/// What a kernel drop reason is tested by.
pub fn for_kernel_reason(reason: &str) -> Links {
    match reason {
        "OTHERHOST" => (
            vec![
                link(
                    SCRUB,
                    Relation::Tests,
                    "a frame still marked OTHERHOST dropped by IP input after bpf_redirect_peer is the CVE-2025-37959 signature (the helper did not scrub pkt_type); this check sends such frames and fails with not-scrubbed",
                ),
                link(REDIRECT_PEER, Relation::Related, "the peer redirect itself"),
            ],
            None,
        ),
        "XFRM_POLICY" => (
            vec![link(
                SCRUB,
                Relation::Related,
                "decrypted IPsec traffic that kept its secpath into a pod namespace is dropped by the XFRM policy check there: the Cilium case of CVE-2025-37959; this check tests the scrub through pkt_type",
            )],
            None,
        ),
        "TC_INGRESS" | "TC_EGRESS" => (
            attach_checks(
                Relation::Related,
                "a TC program returned TC_ACT_SHOT, which is what the negative controls of the attach and stack-delivery checks do on purpose",
            ),
            None,
        ),
        "NO_SOCKET" | "SOCKET_RCVBUFF" | "IP_INADDRERRORS" | "IP_INNOROUTES" | "UDP_CSUM"
        | "IP_CSUM" | "IP_INHDR" | "NETFILTER_DROP" | "IP_RPFILTER" | "PROTO_MEM" => (
            vec![link(
                STACK_DELIVERY,
                Relation::Tests,
                "a drop in the stack after a TC program passed the packet: this check's hop accounting counts this step (Ip InAddrErrors/InNoRoutes, Udp NoPorts/RcvbufErrors/InErrors, the socket)",
            )],
            None,
        ),
        "NEIGH_CREATEFAIL" | "NEIGH_FAILED" | "NEIGH_QUEUEFULL" | "NEIGH_DEAD"
        | "IP_OUTNOROUTES" => (
            vec![
                link(
                    POD_TO_HOST,
                    Relation::Related,
                    "routes and neighbours between a pod and the host",
                ),
                link(
                    HOST_TO_POD,
                    Relation::Related,
                    "routes and neighbours from the host into a pod",
                ),
            ],
            None,
        ),
        _ => none(format!(
            "no check of this suite tests the step where the kernel drops with {reason}"
        )),
    }
}
