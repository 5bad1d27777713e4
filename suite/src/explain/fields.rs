//! Fields several kinds of line share: the flow hash, identities, the CPU and
//! source endpoint of `-v` output, and the packet summary.

use super::codes::{ObsPoint, identity_meaning};
use super::lex::{self, Packet};
use super::{Field, Judgement};

pub const TRACE_GO: &str = "pkg/monitor/datapath_trace.go";
pub const TRACE_H: &str = "bpf/lib/trace.h";
pub const NOTIFY_H: &str = "bpf/lib/notify.h";
pub const SKB_H: &str = "bpf/include/bpf/ctx/skb.h";
pub const TYPES_GO: &str = "pkg/monitor/api/types.go";
pub const DROP_GO: &str = "pkg/monitor/datapath_drop.go";
pub const DROP_H: &str = "bpf/lib/drop.h";
pub const DROP_API_GO: &str = "pkg/monitor/api/drop.go";
pub const DROP_REASONS_H: &str = "bpf/lib/drop_reasons.h";
pub const FILES_GO: &str = "pkg/monitor/api/files.go";
pub const DEBUG_GO: &str = "pkg/monitor/datapath_debug.go";
pub const POLICY_GO: &str = "pkg/monitor/datapath_policy.go";
pub const IDENTITY_GO: &str = "pkg/identity/numericidentity.go";
pub const DISSECT_GO: &str = "pkg/monitor/dissect.go";
pub const BPF_LXC_C: &str = "bpf/bpf_lxc.c";
pub const FORMAT_GO: &str = "pkg/monitor/format/format.go";

pub fn field(
    name: &str,
    value: impl Into<String>,
    meaning: impl Into<String>,
    judgement: Judgement,
    reading: impl Into<String>,
    source: &'static str,
) -> Field {
    Field {
        name: name.to_string(),
        value: value.into(),
        meaning: meaning.into(),
        judgement,
        reading: reading.into(),
        source,
    }
}

/// The notification's `hash` (`flow %#x`, or `MARK %#x` in `-v` output).
pub fn flow(label: &str, value: &str) -> Result<Field, String> {
    let hash = lex::parse_hex_u32(value).ok_or_else(|| {
        format!(
            "expected `{label} 0x<hex>` (skb->hash as Go's %#x prints it), found `{label} {value}`"
        )
    })?;
    let mut meaning = String::new();
    if label == "MARK" {
        meaning.push_str(
            "`MARK` in `cilium monitor -v` output is the notification's hash, not skb->mark: ",
        );
    }
    meaning.push_str(
        "skb->hash, copied by `__notify_common_hdr` from `get_hash(ctx)`, which for TC programs is plain `ctx->hash`, never recalculated (\"we currently only use the hash for debugging\"); XDP programs always report 0",
    );
    Ok(if hash == 0 {
        field(
            label,
            value,
            meaning,
            Judgement::Normal,
            "0: nothing has computed a flow hash for this packet yet; a datagram from a veth usually has none (this suite's own hook records hash 0x0 on every healthy packet). Evidence of nothing",
            SKB_H,
        )
    } else {
        field(
            label,
            value,
            meaning,
            Judgement::Informative,
            "a hash the kernel, the driver (RSS) or the sending socket set: lines with the same value belong to the same flow; it says nothing about delivery",
            SKB_H,
        )
    })
}

/// `identity A->B`, as two fields.
pub fn identities(value: &str, point: Option<ObsPoint>) -> Result<Vec<Field>, String> {
    let (src, dst) = lex::parse_identities(value).ok_or_else(|| {
        format!("expected `identity <source>-><destination>` (numbers or reserved names such as host, world), found `identity {value}`")
    })?;
    let meaning = "the security identity Cilium resolved for the packet's source / destination (numbers, or the name of a reserved identity)";
    let one = |side: &str, id: &lex::IdentityRef| -> Field {
        let name = format!("{side} identity");
        match id.number {
            Some(0) => {
                let why = if side == "destination" && point.is_some_and(ObsPoint::is_from) {
                    "0 (`unknown`): normal at a from-* observation point, where the destination identity is not resolved yet"
                } else if side == "destination" {
                    "0 (`unknown`): the program passed no destination identity (drop errors and several trace calls pass 0)"
                } else {
                    "0 (`unknown`): the program did not know the source identity when it sent the event"
                };
                field(
                    &name,
                    &id.text,
                    meaning,
                    Judgement::Normal,
                    why,
                    IDENTITY_GO,
                )
            }
            Some(n) => field(
                &name,
                &id.text,
                meaning,
                Judgement::Informative,
                identity_meaning(n),
                IDENTITY_GO,
            ),
            None => field(
                &name,
                &id.text,
                meaning,
                Judgement::Informative,
                "not a number or a reserved identity name this decoder knows (a placeholder or a newer name)",
                IDENTITY_GO,
            ),
        }
    };
    Ok(vec![one("source", &src), one("destination", &dst)])
}

/// `CPU NN:` of `-v` output.
pub fn cpu(value: &str) -> Field {
    field(
        "CPU",
        value,
        "the CPU whose perf ring buffer carried the event (`FormatSample` prefixes `CPU %02d:`)",
        Judgement::Normal,
        "which CPU ran the program; says nothing about the packet's path",
        FORMAT_GO,
    )
}

/// `FROM N` of `-v` output: the notification's `source`.
pub fn source(value: &str) -> Field {
    let (judgement, reading) = if value == "0" {
        (
            Judgement::Normal,
            "0: the emitting program is not an endpoint's (bpf_overlay, or before the host endpoint's id is set)".to_string(),
        )
    } else {
        (
            Judgement::Informative,
            format!(
                "endpoint {value} emitted it: its bpf_lxc program, or bpf_host when it is the host endpoint (`cilium-dbg endpoint get {value}`)"
            ),
        )
    };
    field(
        "FROM",
        value,
        "the notification's `source`, EVENT_SOURCE of the emitting program: LXC_ID in bpf_lxc, HOST_EP_ID in bpf_host",
        judgement,
        reading,
        NOTIFY_H,
    )
}

/// The packet summary after the colon.
pub fn packet(text: &str) -> (Field, Packet) {
    let p = lex::parse_packet(text);
    let meaning = "the first captured bytes of the packet, dissected by monitor (`GetConnectionSummary`): source -> destination, protocol, TCP flags or ICMP type";
    let f = match p.undecoded.as_deref() {
        Some("[unknown]") => field(
            "packet",
            text,
            meaning,
            Judgement::Normal,
            "`[unknown]`: no packet bytes were captured with the event (capture length 0)",
            DISSECT_GO,
        ),
        Some(_) => field(
            "packet",
            text,
            meaning,
            Judgement::Informative,
            "`[error]`: monitor could not dissect the captured bytes (e.g. an L3 device's packet without an Ethernet header)",
            DISSECT_GO,
        ),
        None => {
            let mut reading = match (&p.src, &p.dst, &p.proto) {
                (Some(s), Some(d), Some(proto)) => format!("{s} to {d}, {proto}"),
                (Some(s), Some(d), None) => format!("{s} to {d}"),
                _ => "a summary this decoder does not split".to_string(),
            };
            if let Some(detail) = &p.detail {
                reading.push_str(&format!(" ({detail})"));
            }
            if let Some(tunnel) = &p.tunnel {
                reading.push_str(&format!("; outer header: {tunnel}"));
            }
            field(
                "packet",
                text,
                meaning,
                Judgement::Informative,
                reading,
                DISSECT_GO,
            )
        }
    };
    (f, p)
}

/// `[ ip-trace-id = N ]` (Cilium 1.18+).
pub fn ip_trace_id(value: &str) -> Field {
    field(
        "ip-trace-id",
        value,
        "the IP trace ID read from an IP option of the packet (`load_ip_trace_id()`), printed only when non-zero",
        Judgement::Informative,
        "the packet carries a trace ID set by whoever sent it, for following it across nodes",
        TRACE_H,
    )
}
