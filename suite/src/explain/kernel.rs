//! The kernel's drop line, for the step after Cilium's program: the `skb:kfree_skb`
//! tracepoint (`include/trace/events/skb.h` in Linux: `skbaddr=%p rx_sk=%p
//! protocol=%u location=%pS reason: %s`; before 6.11 without `rx_sk`, before 5.17
//! without `reason`) and a `pwru` line naming `SKB_DROP_REASON_*`. Reasons:
//! `enum skb_drop_reason` in `include/net/dropreason-core.h`.

use super::checks;
use super::codes::kernel_drop_reason;
use super::fields::field;
use super::{ExplainError, Explanation, Judgement, LineKind};
use regex::Regex;
use std::sync::LazyLock;

const SKB_TRACE_H: &str = "include/trace/events/skb.h (Linux)";
const DROPREASON_H: &str = "include/net/dropreason-core.h (Linux)";

/// A kernel drop line, or `None` when the line is not one.
pub fn explain(text: &str) -> Option<Result<Explanation, ExplainError>> {
    static KFREE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"kfree_skb: skbaddr=(?P<skb>\S+)(?: rx_sk=(?P<rxsk>\S+))? protocol=(?P<proto>\d+) location=(?P<loc>\S+)(?: reason: (?P<reason>[A-Z0-9_]+))?",
        )
        .unwrap()
    });
    static PWRU: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"SKB_DROP_REASON_(?P<reason>[A-Z0-9_]+)").unwrap());
    let mut fs = Vec::new();
    let (reason, format) = if let Some(c) = KFREE.captures(text) {
        let skb = &c["skb"];
        fs.push(field(
            "skbaddr",
            skb,
            "the address of the freed sk_buff (hashed by %p unless the kernel prints raw pointers)",
            Judgement::Normal,
            "identifies the buffer, not the packet's path",
            SKB_TRACE_H,
        ));
        if let Some(rx) = c.name("rxsk") {
            let none = rx
                .as_str()
                .trim_start_matches("0x")
                .chars()
                .all(|ch| ch == '0');
            fs.push(field(
                "rx_sk",
                rx.as_str(),
                "the receiving socket, if the packet had reached one",
                if none {
                    Judgement::Normal
                } else {
                    Judgement::Informative
                },
                if none {
                    "no socket: the packet was dropped before any socket took it"
                } else {
                    "a socket had the packet when it was dropped"
                },
                SKB_TRACE_H,
            ));
        }
        let proto = &c["proto"];
        fs.push(field(
            "protocol",
            proto,
            "skb->protocol, the EtherType, in decimal",
            Judgement::Informative,
            match proto {
                "2048" => "IPv4 (0x0800)".to_string(),
                "34525" => "IPv6 (0x86dd)".to_string(),
                "2054" => "ARP (0x0806)".to_string(),
                other => format!("EtherType {other}"),
            },
            SKB_TRACE_H,
        ));
        let loc = &c["loc"];
        let function = loc.split('+').next().unwrap_or(loc);
        fs.push(field(
            "location",
            loc,
            "the kernel function (and offset) that freed the packet",
            Judgement::Informative,
            format!("freed in {function}"),
            SKB_TRACE_H,
        ));
        (
            c.name("reason").map(|m| m.as_str().to_string()),
            "kernel tracepoint skb:kfree_skb",
        )
    } else if let Some(c) = PWRU.captures(text) {
        (Some(c["reason"].to_string()), "pwru (kfree_skb_reason)")
    } else {
        return None;
    };
    let reason = reason.unwrap_or_else(|| "NOT_SPECIFIED".into());
    let meaning = kernel_drop_reason(&reason);
    fs.push(field(
        "reason",
        &reason,
        "the kernel's drop reason (enum skb_drop_reason) passed to kfree_skb_reason()",
        Judgement::Informative,
        meaning.unwrap_or("a drop reason this decoder does not describe; see include/net/dropreason-core.h of the running kernel"),
        DROPREASON_H,
    ));
    let (checks, no_check) = checks::for_kernel_reason(&reason);
    Some(Ok(Explanation {
        kind: LineKind::KernelDrop,
        format,
        line: String::new(),
        summary: format!(
            "The kernel dropped the packet: {reason}{}.",
            meaning.map(|m| format!(" ({m})")).unwrap_or_default()
        ),
        fields: fs,
        checks,
        no_check,
        notes: vec![
            "a kernel line, not Cilium's: it shows the step after Cilium's program, where the packet was freed".into(),
        ],
        sources: vec![SKB_TRACE_H, DROPREASON_H],
    }))
}
