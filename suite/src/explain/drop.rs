//! Drop notifications: `DropNotify.DumpInfo` / `DumpVerbose` in
//! `pkg/monitor/datapath_drop.go`, filled by `__send_drop_notify` in `bpf/lib/drop.h`.
//!
//! Default format (1.15+; 1.12–1.14 print `to endpoint N, , identity`, older ones
//! `xx drop (REASON) to endpoint N, identity A->B: …`):
//! `xx drop (Policy denied) flow 0x8f2a1c3d to endpoint 1204, ifindex 24, file bpf_lxc.c:2004, , identity 25478->31902: 10.20.1.113:44120 -> 10.20.1.88:8080 tcp SYN`
//! Verbose: `CPU 01: MARK 0x0 FROM 1204 DROP: 74 bytes, reason Policy denied, identity 25478->31902, to endpoint 1204`

use super::checks;
use super::codes::{self, DropClass, DropReason, fib_result};
use super::fields::{self, DROP_API_GO, DROP_GO, DROP_H, DROP_REASONS_H, FILES_GO, field};
use super::lex::{self, Verbose, Words};
use super::{ExplainError, Explanation, Field, Judgement, LineKind, malformed};
use regex::Regex;
use std::sync::LazyLock;

#[derive(Debug, Default)]
struct DropEvent<'a> {
    reason: &'a str,
    flow: Option<(&'static str, &'a str)>,
    to_endpoint: Option<&'a str>,
    ifindex: Option<&'a str>,
    file: Option<&'a str>,
    identity: Option<&'a str>,
    ip_trace_id: Option<&'a str>,
    packet: Option<&'a str>,
    cpu: Option<&'a str>,
    source: Option<&'a str>,
    bytes: Option<&'a str>,
    ignored: Vec<&'a str>,
    format: &'static str,
}

/// `rest` follows `xx drop`.
pub fn explain_info(rest: &str) -> Result<Explanation, ExplainError> {
    static DROP: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^ ?\((?P<reason>.+?)\),? (?P<rest>(?:flow|to|ifindex|file|identity) .*)$")
            .unwrap()
    });
    let c = DROP.captures(rest).ok_or_else(|| {
        malformed(
            LineKind::Drop,
            "expected `xx drop (<reason>) flow 0x… to endpoint N, ifindex N, file F:L, , identity A->B: <packet>`",
        )
    })?;
    let bad = |e: String| malformed(LineKind::Drop, e);
    let mut ev = DropEvent {
        reason: c.name("reason").map(|m| m.as_str()).unwrap_or_default(),
        format: "cilium monitor",
        ..DropEvent::default()
    };
    let (header, packet) =
        lex::split_summary(c.name("rest").map(|m| m.as_str()).unwrap_or_default());
    ev.packet = packet;
    let mut words = Words::new(header);
    while let Some(w) = words.peek() {
        if w == "[" {
            ev.ip_trace_id = words.ip_trace_id().map_err(bad)?;
            continue;
        }
        words.next_word();
        match w {
            "flow" => ev.flow = Some(("flow", words.value("flow", "0x<hash>").map_err(bad)?)),
            "to" => {
                words.eat("endpoint");
                ev.to_endpoint = Some(words.value("to endpoint", "an endpoint id").map_err(bad)?);
            }
            "ifindex" => ev.ifindex = Some(words.value("ifindex", "a number").map_err(bad)?),
            "file" => ev.file = Some(words.value("file", "<file>:<line>").map_err(bad)?),
            "identity" => {
                ev.identity = Some(
                    words
                        .value("identity", "<source>-><destination>")
                        .map_err(bad)?,
                )
            }
            other => ev.ignored.push(other),
        }
    }
    explain_event(ev)
}

pub fn explain_verbose(v: &Verbose<'_>) -> Result<Explanation, ExplainError> {
    static TAIL: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^(?P<bytes>\d+) bytes, reason (?P<rest>.+)$").unwrap());
    let c = TAIL.captures(v.tail).ok_or_else(|| {
        malformed(
            LineKind::Drop,
            "expected `CPU NN: MARK 0x… FROM N DROP: <N> bytes, reason <reason>[, identity A->B][, to endpoint N]`",
        )
    })?;
    let rest = c.name("rest").map(|m| m.as_str()).unwrap_or_default();
    // The reason may contain ", " itself ("LB, sock cgroup: …", "FIB lookup failed, 4"):
    // it ends where the identity or endpoint clause begins.
    let end = [", identity ", ", to endpoint "]
        .iter()
        .filter_map(|m| rest.find(m))
        .min()
        .unwrap_or(rest.len());
    let mut ev = DropEvent {
        reason: &rest[..end],
        flow: Some(("MARK", v.mark)),
        cpu: Some(v.cpu),
        source: Some(v.source),
        bytes: c.name("bytes").map(|m| m.as_str()),
        ip_trace_id: v.trace_id,
        format: "cilium monitor -v",
        ..DropEvent::default()
    };
    for clause in rest[end..].split(", ").filter(|c| !c.is_empty()) {
        if let Some(id) = clause.strip_prefix("identity ") {
            ev.identity = Some(id);
        } else if let Some(n) = clause.strip_prefix("to endpoint ") {
            ev.to_endpoint = Some(n);
        } else {
            ev.ignored.push(clause);
        }
    }
    explain_event(ev)
}

/// The reason as printed: a known text, `<text>, <ext_error>`, or `<code>, <ext_error>`
/// for a code the monitor had no text for (`DropReasonExt`).
fn parse_reason(text: &str) -> (Option<&'static DropReason>, Option<i32>) {
    if let Some(r) = codes::drop_reason_by_text(text) {
        return (Some(r), None);
    }
    if let Some((head, tail)) = text.rsplit_once(", ")
        && let Ok(ext) = tail.trim().parse::<i32>()
    {
        let reason = codes::drop_reason_by_text(head).or_else(|| {
            head.trim()
                .parse::<u8>()
                .ok()
                .and_then(codes::drop_reason_by_code)
        });
        return (reason, Some(ext));
    }
    // Old monitors: "Policy denied (L3)".
    if let Some((head, _)) = text.rsplit_once(" (")
        && let Some(r) = codes::drop_reason_by_text(head)
    {
        return (Some(r), None);
    }
    (
        text.parse::<u8>().ok().and_then(codes::drop_reason_by_code),
        None,
    )
}

fn reason_reading(r: &DropReason) -> String {
    let what = match r.class {
        DropClass::Policy => "a policy decision: the packet was denied as configured",
        DropClass::TailCall => {
            "a tail call into another Cilium program failed (that program is not in the tail-call map: an endpoint still being regenerated, or a program that failed to load)"
        }
        DropClass::Routing => "routing or address resolution failed in Cilium's datapath",
        DropClass::NotReady => "Cilium (the agent or the endpoint's programs) was not ready",
        DropClass::NotADrop => "not a lost packet: Cilium handled it another way",
        DropClass::Other => "Cilium's datapath refused the packet",
    };
    format!("code {}: {what}", r.code)
}

fn explain_event(ev: DropEvent<'_>) -> Result<Explanation, ExplainError> {
    let bad = |e: String| malformed(LineKind::Drop, e);
    let mut fields: Vec<Field> = Vec::new();
    let mut notes = Vec::new();
    if let Some(cpu) = ev.cpu {
        fields.push(fields::cpu(cpu));
    }
    if let Some(source) = ev.source {
        fields.push(fields::source(source));
    }
    let (reason, ext) = parse_reason(ev.reason);
    let reason_meaning = "why Cilium's program dropped the packet: the drop reason (the notification's subtype, a DROP_* code of bpf/lib/drop_reasons.h) with its text from pkg/monitor/api/drop.go";
    fields.push(match reason {
        Some(r) => field(
            "reason",
            ev.reason,
            reason_meaning,
            Judgement::Informative,
            reason_reading(r),
            DROP_API_GO,
        ),
        None => field(
            "reason",
            ev.reason,
            reason_meaning,
            Judgement::Informative,
            "a reason this decoder does not know (a newer Cilium?); its text is still the monitor's",
            DROP_REASONS_H,
        ),
    });
    if let Some(ext) = ext {
        let is_fib = reason.is_some_and(|r| r.code == 169);
        let reading = match fib_result(ext) {
            Some(fib) if is_fib => format!("the bpf_fib_lookup() result: {fib}"),
            _ => format!(
                "extended error {ext}: an extra code the program passed with the reason (an errno or a helper's return value)"
            ),
        };
        fields.push(field(
            "extended error",
            ext.to_string(),
            "the notification's ext_error, printed after the reason (`DropReasonExt`)",
            Judgement::Informative,
            reading,
            DROP_H,
        ));
    }
    if let Some((label, value)) = ev.flow {
        fields.push(fields::flow(label, value).map_err(bad)?);
    }
    let mut dst_endpoint = None;
    if let Some(ep) = ev.to_endpoint {
        let n: u64 = ep.parse().map_err(|_| {
            bad(format!(
                "expected `to endpoint <number>`, found `to endpoint {ep}`"
            ))
        })?;
        dst_endpoint = Some(n);
        let meaning = "the notification's dst_id: \"designated destination endpoint ID, if ingress, otherwise 0\" (drop.h)";
        fields.push(if n == 0 {
            field(
                "to endpoint",
                ep,
                meaning,
                Judgement::Normal,
                "0: the drop was not on the way into a local endpoint (egress, or an error drop): Cilium's normal encoding",
                DROP_H,
            )
        } else {
            field(
                "to endpoint",
                ep,
                meaning,
                Judgement::Informative,
                format!("the packet was on its way into local endpoint {n} (`cilium-dbg endpoint get {n}`), dropped at its ingress"),
                DROP_H,
            )
        });
    }
    if let Some(ifindex) = ev.ifindex {
        let n: u32 = ifindex.parse().map_err(|_| {
            bad(format!(
                "expected `ifindex <number>`, found `ifindex {ifindex}`"
            ))
        })?;
        fields.push(field(
            "ifindex",
            ifindex,
            "`ctx_get_ifindex(ctx)` where the program ran: the device whose hook dropped the packet (a number; `ip -o link` resolves it in that namespace)",
            Judgement::Informative,
            if n == 0 {
                "0: no device index recorded (Linux never assigns ifindex 0)".to_string()
            } else {
                format!("the drop happened in the program on ifindex {n}")
            },
            DROP_H,
        ));
    }
    let mut file_name = None;
    if let Some(file) = ev.file {
        let (name, line) = file
            .rsplit_once(':')
            .filter(|(_, l)| l.parse::<u32>().is_ok())
            .ok_or_else(|| {
                bad(format!(
                    "expected `file <file>:<line>`, found `file {file}`"
                ))
            })?;
        file_name = Some(name);
        let reading = match codes::bpf_file(name) {
            Some((id, _, what)) => format!(
                "line {line} of bpf/{}{name} (file id {id}: {what}) in the Cilium release running; that line is the send_drop_notify call that dropped it",
                if name.ends_with(".h") { "lib/" } else { "" }
            ),
            None if name.starts_with("unknown(") => format!(
                "a file id this monitor has no name for: monitor and datapath come from different Cilium versions (line {line})"
            ),
            None => format!("line {line} of {name}"),
        };
        fields.push(field(
            "file",
            file,
            "where in Cilium's BPF source the drop notification was sent (`__MAGIC_FILE__`, `__LINE__`), the file id decoded by `BPFFileName()`",
            Judgement::Informative,
            reading,
            FILES_GO,
        ));
    }
    if let Some(id) = ev.ip_trace_id {
        fields.push(fields::ip_trace_id(id));
    }
    if let Some(identity) = ev.identity {
        fields.extend(fields::identities(identity, None).map_err(bad)?);
    }
    if let Some(bytes) = ev.bytes {
        fields.push(field(
            "bytes",
            bytes,
            "the packet's length (len_orig)",
            Judgement::Informative,
            format!("the dropped packet is {bytes} bytes long"),
            DROP_H,
        ));
    }
    let packet = ev.packet.map(fields::packet);
    if let Some((f, _)) = &packet {
        fields.push(f.clone());
    }
    if ev.ifindex.is_none() && ev.format == "cilium monitor" {
        notes.push(
            "no `ifindex`/`file`: a Cilium older than 1.15 (drop notification v1 without them)"
                .into(),
        );
    }
    if !ev.ignored.is_empty() {
        notes.push(format!(
            "ignored (not a field of a drop line): `{}`",
            ev.ignored.join(" ")
        ));
    }
    let (checks, no_check) = checks::for_drop(reason, file_name, dst_endpoint);
    let mut summary = format!("Cilium's program dropped the packet ({})", ev.reason);
    if let Some(name) = file_name {
        summary.push_str(&format!(" in {name}"));
    }
    if let Some(n) = dst_endpoint.filter(|n| *n != 0) {
        summary.push_str(&format!(" on its way into endpoint {n}"));
    }
    match &packet {
        Some((_, p)) => summary.push_str(&format!(": {}.", p.text)),
        None => summary.push('.'),
    }
    Ok(Explanation {
        kind: LineKind::Drop,
        format: ev.format,
        line: String::new(),
        summary,
        fields,
        checks,
        no_check,
        notes,
        sources: vec![
            DROP_GO,
            DROP_H,
            DROP_API_GO,
            DROP_REASONS_H,
            FILES_GO,
            fields::SKB_H,
            fields::IDENTITY_GO,
            fields::DISSECT_GO,
        ],
    })
}
