//! Debug captures and debug messages (`pkg/monitor/datapath_debug.go`): what
//! `cilium_dbg_capture()` / `cilium_dbg()` send from the datapath when endpoints run
//! with debug on.
//!
//! Captures, default format (`DebugCapture.infoPrefix`): `-> 0: 10.60.0.182:41510 -> 104.198.14.52:80 tcp SYN`
//! (`DBG_CAPTURE_DELIVERY` to ifindex 0, which bpf_lxc sends right after `-> stack`),
//! `-> lxc_health: …`, `<- load-balancer eth0: …`, `== v4->v6 N: …`, `-> proxy port N: …`.
//! Verbose: `CPU 01: MARK 0x0 FROM 3349 DEBUG: 98 bytes, Delivery to ifindex 0`.
//! Messages: `CPU 03: MARK 0x0 FROM 3349 DEBUG: Conntrack lookup 1/2: src=10.0.0.90:0 dst=10.0.1.218:5632`.

use super::checks::{
    HOST_TO_POD, POD_TO_HOST, REDIRECT_PEER, STACK_DELIVERY, STACK_DELIVERY_REDIRECT,
};
use super::fields::{self, BPF_LXC_C, DEBUG_GO, field};
use super::lex::Verbose;
use super::{
    CheckLink, ExplainError, Explanation, Field, Judgement, LineKind, Relation, malformed,
};
use regex::Regex;
use std::sync::LazyLock;

/// The capture subtypes (`DbgCapture*`, in sync with `bpf/lib/dbg.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    Delivery,
    FromLb,
    AfterV46,
    AfterV64,
    ProxyPre,
    ProxyPost,
    SnatPre,
    SnatPost,
    Unknown,
}

impl Capture {
    fn name(self) -> &'static str {
        match self {
            Capture::Delivery => "DBG_CAPTURE_DELIVERY",
            Capture::FromLb => "DBG_CAPTURE_FROM_LB",
            Capture::AfterV46 => "DBG_CAPTURE_AFTER_V46",
            Capture::AfterV64 => "DBG_CAPTURE_AFTER_V64",
            Capture::ProxyPre => "DBG_CAPTURE_PROXY_PRE",
            Capture::ProxyPost => "DBG_CAPTURE_PROXY_POST",
            Capture::SnatPre => "DBG_CAPTURE_SNAT_PRE",
            Capture::SnatPost => "DBG_CAPTURE_SNAT_POST",
            Capture::Unknown => "unknown capture",
        }
    }

    fn meaning(self) -> &'static str {
        match self {
            Capture::Delivery => {
                "the packet as Cilium delivers it: to the ifindex given (0 right after a to-stack trace, where bpf_lxc passes 0; an endpoint's device on local delivery)"
            }
            Capture::FromLb => "the packet entering Cilium's load balancer on the ifindex given",
            Capture::AfterV46 => "the packet after NAT46 translation",
            Capture::AfterV64 => "the packet after NAT64 translation",
            Capture::ProxyPre => "the packet before the redirect to the L7 proxy port",
            Capture::ProxyPost => "the packet after the redirect to the L7 proxy port",
            Capture::SnatPre => "the packet going into the SNAT engine",
            Capture::SnatPost => "the packet coming out of the SNAT engine",
            Capture::Unknown => "a capture subtype this monitor did not know",
        }
    }
}

/// A default-format capture line (`-> IFNAME: …`), or `None` when the line is not one.
pub fn capture_info(text: &str) -> Option<Result<Explanation, ExplainError>> {
    static FORMS: LazyLock<[(Regex, Capture); 5]> = LazyLock::new(|| {
        let r = |p: &str| Regex::new(p).unwrap();
        [
            (
                r(r"^-> proxy port (?P<arg>\d+): (?P<packet>.*)$"),
                Capture::ProxyPost,
            ),
            (
                r(r"^<- load-balancer (?P<arg>\S+): (?P<packet>.*)$"),
                Capture::FromLb,
            ),
            (
                r(r"^== v4->v6 (?P<arg>\d+): (?P<packet>.*)$"),
                Capture::AfterV46,
            ),
            (
                r(r"^== v6->v4 (?P<arg>\d+): (?P<packet>.*)$"),
                Capture::AfterV64,
            ),
            (
                r(r"^-> (?P<arg>[^\s:]+): (?P<packet>.*)$"),
                Capture::Delivery,
            ),
        ]
    });
    let (c, kind) = FORMS
        .iter()
        .find_map(|(re, kind)| re.captures(text).map(|c| (c, *kind)))?;
    let arg = c.name("arg").map(|m| m.as_str()).unwrap_or_default();
    let packet = c.name("packet").map(|m| m.as_str());
    Some(Ok(capture(kind, arg, packet, None, "cilium monitor")))
}

pub fn explain_verbose(v: &Verbose<'_>) -> Result<Explanation, ExplainError> {
    static CAPTURE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^(?P<bytes>\d+) bytes, (?P<what>.*)$").unwrap());
    let mut head = vec![fields::cpu(v.cpu), fields::source(v.source)];
    let bad = |e: String| malformed(LineKind::DebugMessage, e);
    head.push(fields::flow("MARK", v.mark).map_err(bad)?);
    if let Some(c) = CAPTURE.captures(v.tail) {
        let what = c.name("what").map(|m| m.as_str()).unwrap_or_default();
        let (kind, arg) = capture_subtype(what);
        let mut e = capture(
            kind,
            arg.unwrap_or(""),
            None,
            Some(what),
            "cilium monitor -v",
        );
        let bytes = c.name("bytes").map(|m| m.as_str()).unwrap_or_default();
        head.push(field(
            "bytes",
            bytes,
            "the packet's length",
            Judgement::Informative,
            format!("the packet is {bytes} bytes long"),
            DEBUG_GO,
        ));
        head.append(&mut e.fields);
        e.fields = head;
        return Ok(e);
    }
    if v.tail.is_empty() {
        return Err(malformed(
            LineKind::DebugMessage,
            "expected a message after `DEBUG:`",
        ));
    }
    Ok(message(v.tail, head))
}

fn capture_subtype(what: &str) -> (Capture, Option<&str>) {
    static SUBTYPES: LazyLock<Vec<(Regex, Capture)>> = LazyLock::new(|| {
        let r = |p: &str| Regex::new(p).unwrap();
        vec![
            (r(r"^Delivery to ifindex (\d+)$"), Capture::Delivery),
            (
                r(r"^Incoming packet to load balancer on ifindex (\d+)$"),
                Capture::FromLb,
            ),
            (r(r"^Packet after nat46 ifindex (\d+)$"), Capture::AfterV46),
            (r(r"^Packet after nat64 ifindex (\d+)$"), Capture::AfterV64),
            (
                r(r"^Packet to proxy port (\d+) \(Pre\)$"),
                Capture::ProxyPre,
            ),
            (
                r(r"^Packet to proxy port (\d+) \(Post\)$"),
                Capture::ProxyPost,
            ),
            (
                r(r"^Packet going into snat engine on ifindex (\d+)$"),
                Capture::SnatPre,
            ),
            (
                r(r"^Packet coming from snat engine on ifindex (\d+)$"),
                Capture::SnatPost,
            ),
        ]
    });
    SUBTYPES
        .iter()
        .find_map(|(re, kind)| {
            re.captures(what)
                .map(|c| (*kind, c.get(1).map(|m| m.as_str())))
        })
        .unwrap_or((Capture::Unknown, None))
}

fn capture(
    kind: Capture,
    arg: &str,
    packet: Option<&str>,
    verbose_text: Option<&str>,
    format: &'static str,
) -> Explanation {
    let mut fs: Vec<Field> = Vec::new();
    fs.push(field(
        "capture point",
        kind.name(),
        "which debug capture point sent the packet (the capture's subtype)",
        Judgement::Informative,
        kind.meaning(),
        DEBUG_GO,
    ));
    let mut checks: Vec<CheckLink> = Vec::new();
    let mut no_check = None;
    let link = |id, relation, why: &str| CheckLink {
        id,
        relation,
        why: why.to_string(),
    };
    match kind {
        Capture::Delivery => {
            let meaning = "the ifindex the program passed to cilium_dbg_capture (default format: the name monitor resolved, else the number)";
            if arg == "0" {
                fs.push(field(
                    "ifindex",
                    arg,
                    meaning,
                    Judgement::Normal,
                    "a literal 0: bpf_lxc calls cilium_dbg_capture(ctx, DBG_CAPTURE_DELIVERY, 0) right after its to-stack trace, so this is the `-> stack` hand-off again, not a device",
                    BPF_LXC_C,
                ));
                checks.push(link(
                    STACK_DELIVERY,
                    Relation::Tests,
                    "the capture follows bpf_lxc's `-> stack` hand-off (TC_ACT_OK to the stack), which this check runs and follows hop by hop",
                ));
            } else {
                fs.push(field(
                    "ifindex",
                    arg,
                    meaning,
                    Judgement::Informative,
                    format!("delivery to {arg}: a local endpoint's device (local delivery) or the device named"),
                    DEBUG_GO,
                ));
                checks.push(link(
                    REDIRECT_PEER,
                    Relation::Related,
                    "local delivery into an endpoint, which Cilium completes with a redirect (bpf_redirect_peer with BPF host routing)",
                ));
                checks.push(link(
                    HOST_TO_POD,
                    Relation::Related,
                    "the route into a pod's namespace",
                ));
            }
        }
        Capture::FromLb
        | Capture::SnatPre
        | Capture::SnatPost
        | Capture::AfterV46
        | Capture::AfterV64 => {
            if !arg.is_empty() {
                fs.push(field(
                    "ifindex",
                    arg,
                    "the ifindex the capture names",
                    if arg == "0" {
                        Judgement::Normal
                    } else {
                        Judgement::Informative
                    },
                    if arg == "0" {
                        "0: no device given".to_string()
                    } else {
                        format!("device {arg}")
                    },
                    DEBUG_GO,
                ));
            }
            no_check = Some("no check of this suite tests load balancing, NAT46/64 or SNAT".into());
        }
        Capture::ProxyPre | Capture::ProxyPost => {
            fs.push(field(
                "proxy port",
                arg,
                "the L7 proxy port",
                Judgement::Informative,
                format!("proxy port {arg}"),
                DEBUG_GO,
            ));
            no_check = Some("no check of this suite tests the L7 proxy redirect".into());
        }
        Capture::Unknown => {
            no_check = Some("a capture point this decoder does not know".into());
        }
    }
    if let Some(text) = verbose_text {
        fs.push(field(
            "message",
            text,
            "the capture's text in `-v` output (`subTypeString`)",
            Judgement::Informative,
            kind.meaning(),
            DEBUG_GO,
        ));
    }
    let mut summary = match kind {
        Capture::Delivery if arg == "0" => {
            "Debug capture of a packet bpf_lxc hands to the stack (delivery to ifindex 0, after `-> stack`)".to_string()
        }
        Capture::Delivery => format!("Debug capture of a packet delivered to {arg}"),
        _ => format!("Debug capture ({})", kind.name()),
    };
    if let Some(p) = packet {
        let (f, p) = fields::packet(p);
        fs.push(f);
        summary.push_str(&format!(": {}", p.text));
    }
    summary.push('.');
    Explanation {
        kind: LineKind::DebugCapture,
        format,
        line: String::new(),
        summary,
        fields: fs,
        checks,
        no_check,
        notes: Vec::new(),
        sources: vec![DEBUG_GO, BPF_LXC_C, fields::DISSECT_GO],
    }
}

/// What a debug message is about, for its meaning and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topic {
    LocalDelivery,
    ToStack,
    ToHost,
    Conntrack,
    Policy,
    LoadBalancing,
    Tunnel,
    Identity,
    Proxy,
    Icmp6,
    Socket,
    Error,
    Generic,
    Unknown,
}

/// Message prefixes of `DebugMsg.Message()` and what they are.
const MESSAGES: &[(&str, Topic, &str)] = &[
    (
        "No message",
        Topic::Generic,
        "a generic debug message with two raw arguments",
    ),
    (
        "Attempting local delivery for container id",
        Topic::LocalDelivery,
        "Cilium looked up a local endpoint for the destination and is delivering to it (container id = endpoint ID, seclabel = source identity)",
    ),
    (
        "Local container found ifindex",
        Topic::LocalDelivery,
        "the destination is a local endpoint on the device given",
    ),
    (
        "Going to the stack",
        Topic::ToStack,
        "the program passes the packet to the kernel stack (what a to-stack trace then shows)",
    ),
    (
        "Going to host",
        Topic::ToHost,
        "the program hands the packet to the host (cilium_host)",
    ),
    (
        "Encapsulating to node",
        Topic::Tunnel,
        "the packet is encapsulated towards another node (tunnel mode)",
    ),
    (
        "Tunnel decap",
        Topic::Tunnel,
        "a packet from the tunnel was decapsulated (id = source identity from the tunnel key)",
    ),
    (
        "Attempting encapsulation",
        Topic::Tunnel,
        "bpf_host looks up the tunnel endpoint for the destination",
    ),
    (
        "Destination is inside cluster prefix",
        Topic::Tunnel,
        "the destination is inside the cluster's pod CIDR",
    ),
    (
        "Policy evaluation would deny packet",
        Topic::Policy,
        "policy would deny the packet (audit mode or debug)",
    ),
    (
        "Resolved L4 policy to",
        Topic::Policy,
        "the L4 policy lookup result (proxy port / direction)",
    ),
    (
        "Matched L4 policy",
        Topic::Policy,
        "an L4 policy rule matched and a conntrack entry is created",
    ),
    (
        "CT lookup",
        Topic::Conntrack,
        "a connection-tracking lookup",
    ),
    (
        "CT reverse lookup",
        Topic::Conntrack,
        "a reverse connection-tracking lookup",
    ),
    (
        "CT entry found",
        Topic::Conntrack,
        "connection tracking found an entry (lifetime, reverse-NAT index)",
    ),
    (
        "CT created",
        Topic::Conntrack,
        "a connection-tracking entry was created",
    ),
    (
        "CT verdict",
        Topic::Conntrack,
        "the connection-tracking result for the packet (New, Established, Reply, Related)",
    ),
    (
        "Conntrack lookup",
        Topic::Conntrack,
        "a connection-tracking lookup (tuple in two messages)",
    ),
    (
        "Conntrack create",
        Topic::Conntrack,
        "a connection-tracking entry was created",
    ),
    (
        "Successfully mapped addr",
        Topic::Identity,
        "the ipcache resolved the address to a security identity",
    ),
    (
        "Failed to map addr",
        Topic::Identity,
        "the ipcache had no identity for the address",
    ),
    (
        "Inheriting identity",
        Topic::Identity,
        "the identity was taken from the packet's mark, set by the stack or another Cilium program",
    ),
    (
        "Packet hash",
        Topic::LoadBalancing,
        "the hash used to pick a service backend",
    ),
    (
        "RR backend slot selection",
        Topic::LoadBalancing,
        "a service backend slot was chosen",
    ),
    (
        "Frontend service lookup",
        Topic::LoadBalancing,
        "a service frontend lookup",
    ),
    (
        "Service backend slot lookup",
        Topic::LoadBalancing,
        "a service backend slot lookup",
    ),
    (
        "Backend service lookup failed",
        Topic::LoadBalancing,
        "the chosen service backend is missing",
    ),
    (
        "Reverse NAT lookup",
        Topic::LoadBalancing,
        "a reverse-NAT lookup for a service reply",
    ),
    (
        "Performing reverse NAT",
        Topic::LoadBalancing,
        "a service reply's source is rewritten back to the frontend (what a trace's orig-ip then shows)",
    ),
    (
        "Loopback SNAT",
        Topic::LoadBalancing,
        "SNAT for a pod reaching itself through a service",
    ),
    (
        "Loopback reverse SNAT",
        Topic::LoadBalancing,
        "reverse SNAT for a pod reaching itself through a service",
    ),
    (
        "Stale CT entry found",
        Topic::LoadBalancing,
        "a connection-tracking entry points at a service that changed",
    ),
    (
        "Reverse proxy",
        Topic::Proxy,
        "transparent proxy bookkeeping",
    ),
    (
        "Skipping proxy",
        Topic::Proxy,
        "the packet skips the proxy (tc_index flag set)",
    ),
    (
        "L7 LB from",
        Topic::Proxy,
        "an L7 load-balancing redirect to the proxy",
    ),
    ("Handling ICMPv6", Topic::Icmp6, "ICMPv6 handled by Cilium"),
    (
        "ICMPv6 echo request",
        Topic::Icmp6,
        "Cilium answers an ICMPv6 echo request for the router address",
    ),
    (
        "ICMPv6 neighbour",
        Topic::Icmp6,
        "Cilium answers a neighbour solicitation",
    ),
    (
        "Sending ICMPv6 time exceeded",
        Topic::Icmp6,
        "Cilium sends an ICMPv6 time exceeded",
    ),
    ("Mapping port", Topic::LoadBalancing, "a port mapping"),
    (
        "Socket lookup",
        Topic::Socket,
        "a socket lookup (transparent proxy)",
    ),
    (
        "Socket assign",
        Topic::Socket,
        "the result of assigning the packet to a socket (transparent proxy)",
    ),
    (
        "BPF function",
        Topic::Error,
        "a BPF function returned an error",
    ),
    (
        "Unknown message type",
        Topic::Unknown,
        "a debug message this monitor version does not know (datapath and monitor from different versions)",
    ),
];

fn message(text: &str, mut fs: Vec<Field>) -> Explanation {
    static ARG: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"([A-Za-z][A-Za-z0-9_.-]*)=([^\s,]+)").unwrap());
    let (topic, what) = MESSAGES
        .iter()
        .find(|(prefix, _, _)| text.starts_with(prefix))
        .map(|(_, t, w)| (*t, *w))
        .unwrap_or((Topic::Unknown, "a debug message this decoder does not know"));
    fs.push(field(
        "message",
        text,
        "the text `DebugMsg.Message()` renders from the message's subtype and arguments",
        Judgement::Informative,
        what,
        DEBUG_GO,
    ));
    for c in ARG.captures_iter(text) {
        let (k, v) = (&c[1], &c[2]);
        fs.push(field(
            k,
            v,
            format!("argument `{k}` of the debug message"),
            Judgement::Informative,
            format!("{k} = {v}"),
            DEBUG_GO,
        ));
    }
    let link = |id, relation, why: &str| CheckLink {
        id,
        relation,
        why: why.to_string(),
    };
    let (checks, no_check) = match topic {
        Topic::LocalDelivery => (
            vec![
                link(
                    REDIRECT_PEER,
                    Relation::Related,
                    "local delivery into an endpoint, which Cilium completes with a redirect (bpf_redirect_peer with BPF host routing)",
                ),
                link(
                    HOST_TO_POD,
                    Relation::Related,
                    "the route into a pod's namespace",
                ),
            ],
            None,
        ),
        Topic::ToStack => (
            vec![link(
                STACK_DELIVERY,
                Relation::Tests,
                "the program hands the packet to the stack (TC_ACT_OK); this check runs that hand-off and follows the packets hop by hop",
            )],
            None,
        ),
        Topic::ToHost => (
            vec![
                link(
                    STACK_DELIVERY_REDIRECT,
                    Relation::Tests,
                    "host-bound traffic handed to cilium_host with a redirect, which this check does to a host device's ingress",
                ),
                link(POD_TO_HOST, Relation::Related, "a pod reaching the host"),
            ],
            None,
        ),
        Topic::Conntrack => (
            Vec::new(),
            Some("no check of this suite tests Cilium's connection tracking".to_string()),
        ),
        Topic::Policy => (
            Vec::new(),
            Some("a policy step; this suite tests datapath primitives, not policy".to_string()),
        ),
        Topic::LoadBalancing => (
            Vec::new(),
            Some("no check of this suite tests service load balancing".to_string()),
        ),
        Topic::Tunnel => (
            Vec::new(),
            Some("no check of this suite tests tunnel encapsulation".to_string()),
        ),
        Topic::Identity => (
            Vec::new(),
            Some("identity resolution is Cilium's own bookkeeping; no check tests it".to_string()),
        ),
        Topic::Proxy | Topic::Socket => (
            Vec::new(),
            Some("no check of this suite tests the L7 / transparent proxy".to_string()),
        ),
        Topic::Icmp6 => (
            Vec::new(),
            Some("no check of this suite tests ICMPv6 handling".to_string()),
        ),
        Topic::Error | Topic::Generic | Topic::Unknown => (
            Vec::new(),
            Some("the message names no step a check of this suite tests".to_string()),
        ),
    };
    Explanation {
        kind: LineKind::DebugMessage,
        format: "cilium monitor -v",
        line: String::new(),
        summary: format!("Datapath debug message: {text}."),
        fields: fs,
        checks,
        no_check,
        notes: Vec::new(),
        sources: vec![DEBUG_GO, fields::NOTIFY_H, fields::SKB_H],
    }
}
