//! Trace notifications: `TraceNotify.DumpInfo` / `DumpVerbose` in
//! `pkg/monitor/datapath_trace.go`, filled by `send_trace_notify*` in `bpf/lib/trace.h`.
//!
//! Default format (1.12+; older ones lack ` ,` and `orig-ip`):
//! `-> stack flow 0x3b1e0022 , identity 33807->10530 state new ifindex 0 orig-ip 0.0.0.0: 10.0.1.87:44210 -> 10.0.2.31:80 tcp SYN`
//! Verbose: `CPU 03: MARK 0x0 FROM 3349 to-endpoint: 98 bytes (98 captured), state reply, interface lxcf69c5e689142, identity 6076->49798, orig-ip 10.0.0.90, to endpoint 3349`

use super::checks;
use super::codes::{ObsPoint, trace_reason};
use super::fields::{self, BPF_LXC_C, TRACE_GO, TRACE_H, TYPES_GO, field};
use super::lex::{self, Verbose, Words};
use super::{ExplainError, Explanation, Field, Judgement, LineKind, malformed};
use regex::Regex;
use std::net::IpAddr;
use std::sync::LazyLock;

static INFO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:(?P<arrow>->|<-) (?P<what>endpoint|proxy|host|stack|overlay|network|crypto)|(?P<unknown>unknown trace))(?: port)?(?: (?P<num>\d+))?(?: from)?(?P<enc> encrypted)?,? (?P<rest>flow\b.*)$",
    )
    .unwrap()
});

/// `true` when the line starts with a trace summary followed by `flow`.
pub fn is_info(text: &str) -> bool {
    INFO.is_match(text)
}

/// A line without the summary but with trace fields: `flow 0x0, ifindex 0, orig-ip 0.0.0.0`.
pub fn is_fragment(text: &str) -> bool {
    let mut words = Words::new(text);
    let mut has_flow = false;
    let mut has_trace_field = false;
    while let Some(w) = words.next_word() {
        match w {
            "flow" => has_flow = words.peek().and_then(lex::parse_hex_u32).is_some(),
            "ifindex" | "orig-ip" | "state" | "identity" => has_trace_field = true,
            _ => {}
        }
    }
    has_flow && has_trace_field
}

/// Everything a trace line can say, whichever format it came in.
#[derive(Debug, Default)]
struct TraceEvent<'a> {
    point: Option<ObsPoint>,
    /// `-> endpoint N` / `<- endpoint N` / `-> proxy port N` / `, to endpoint N`.
    number: Option<&'a str>,
    encrypted: bool,
    flow: Option<(&'static str, &'a str)>,
    identity: Option<&'a str>,
    ip_trace_id: Option<&'a str>,
    state: Option<&'a str>,
    /// The `ifindex` field of the default format.
    ifindex: Option<&'a str>,
    /// The `interface` clause of `-v` output (printed only when the ifindex is not 0).
    interface: Option<Option<&'a str>>,
    orig_ip: Option<&'a str>,
    packet: Option<&'a str>,
    cpu: Option<&'a str>,
    source: Option<&'a str>,
    bytes: Option<&'a str>,
    captured: Option<&'a str>,
    ignored: Vec<&'a str>,
    format: &'static str,
}

const DEFAULT_FORMAT: &str = "cilium monitor";

pub fn explain_info(text: &str) -> Result<Explanation, ExplainError> {
    let c = INFO
        .captures(text)
        .ok_or_else(|| malformed(LineKind::Trace, "expected `-> stack flow 0x…`"))?;
    let point = match (c.name("arrow"), c.name("what")) {
        (Some(a), Some(w)) => ObsPoint::by_summary(a.as_str(), w.as_str()),
        _ => Some(ObsPoint::Unknown),
    };
    let mut ev = TraceEvent {
        point,
        number: c.name("num").map(|m| m.as_str()),
        encrypted: c.name("enc").is_some(),
        format: DEFAULT_FORMAT,
        ..TraceEvent::default()
    };
    if ev.point == Some(ObsPoint::ToEndpoint) && ev.number.is_none() {
        return Err(malformed(
            LineKind::Trace,
            "expected `-> endpoint <endpoint id> flow 0x…`",
        ));
    }
    let rest = c.name("rest").map(|m| m.as_str()).unwrap_or_default();
    let (header, packet) = lex::split_summary(rest);
    ev.packet = packet;
    header_words(header, &mut ev)?;
    if ev.flow.is_none() {
        return Err(malformed(
            LineKind::Trace,
            "expected `flow 0x<hex>` after the observation point",
        ));
    }
    explain_event(ev)
}

pub fn explain_fragment(text: &str) -> Result<Explanation, ExplainError> {
    let (header, packet) = lex::split_summary(text);
    let mut ev = TraceEvent {
        point: Some(ObsPoint::Unknown),
        packet,
        format: "fragment of a cilium monitor trace line",
        ..TraceEvent::default()
    };
    header_words(header, &mut ev)?;
    explain_event(ev)
}

/// `flow X identity A->B [ ip-trace-id = N ] state S ifindex I orig-ip IP`, in any
/// order, commas or not.
fn header_words<'a>(header: &'a str, ev: &mut TraceEvent<'a>) -> Result<(), ExplainError> {
    let bad = |e: String| malformed(LineKind::Trace, e);
    let mut words = Words::new(header);
    while let Some(w) = words.peek() {
        if w == "[" {
            ev.ip_trace_id = words.ip_trace_id().map_err(bad)?;
            continue;
        }
        words.next_word();
        match w {
            "flow" => ev.flow = Some(("flow", words.value("flow", "0x<hash>").map_err(bad)?)),
            "identity" => {
                ev.identity = Some(
                    words
                        .value("identity", "<source>-><destination>")
                        .map_err(bad)?,
                )
            }
            "state" => ev.state = Some(words.value("state", "a connection state").map_err(bad)?),
            "ifindex" => ev.ifindex = Some(words.value("ifindex", "an interface").map_err(bad)?),
            "orig-ip" => ev.orig_ip = Some(words.value("orig-ip", "an address").map_err(bad)?),
            "encrypted" => ev.encrypted = true,
            other => ev.ignored.push(other),
        }
    }
    Ok(())
}

pub fn explain_verbose(v: &Verbose<'_>) -> Result<Explanation, ExplainError> {
    let point = ObsPoint::by_name(v.point).or_else(|| {
        v.point
            .parse::<u8>()
            .ok()
            .map(|n| ObsPoint::by_code(n).unwrap_or(ObsPoint::Unknown))
    });
    let Some(point) = point else {
        return Err(malformed(
            LineKind::Trace,
            format!(
                "expected an observation point (to-stack, to-endpoint, from-endpoint, …), DROP or DEBUG after `FROM {}`, found `{}`",
                v.source, v.point
            ),
        ));
    };
    static LEN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?P<bytes>\d+) bytes(?: \((?P<cap>\d+) captured\))?$").unwrap()
    });
    let mut ev = TraceEvent {
        point: Some(point),
        flow: Some(("MARK", v.mark)),
        ip_trace_id: v.trace_id,
        cpu: Some(v.cpu),
        source: Some(v.source),
        interface: Some(None),
        format: "cilium monitor -v",
        ..TraceEvent::default()
    };
    let bad = |what: &str| malformed(LineKind::Trace, what.to_string());
    for clause in v.tail.split(", ").map(str::trim).filter(|c| !c.is_empty()) {
        if let Some(c) = LEN.captures(clause) {
            ev.bytes = c.name("bytes").map(|m| m.as_str());
            ev.captured = c.name("cap").map(|m| m.as_str());
        } else if let Some(s) = clause.strip_prefix("state ") {
            ev.state = Some(s);
        } else if let Some(s) = clause.strip_prefix("interface ") {
            ev.interface = Some(Some(s));
        } else if let Some(s) = clause.strip_prefix("identity ") {
            ev.identity = Some(s);
        } else if let Some(s) = clause.strip_prefix("orig-ip ") {
            ev.orig_ip = Some(s);
        } else if let Some(s) = clause
            .strip_prefix("to endpoint ")
            .or_else(|| clause.strip_prefix("to proxy-port "))
        {
            ev.number = Some(s);
        } else if clause.starts_with("orig-ip") || clause.starts_with("state") {
            return Err(bad("expected a value after `state` / `orig-ip`"));
        } else {
            ev.ignored.push(clause);
        }
    }
    if ev.bytes.is_none() {
        return Err(bad(
            "expected `<N> bytes (<N> captured)` after the observation point",
        ));
    }
    explain_event(ev)
}

fn explain_event(ev: TraceEvent<'_>) -> Result<Explanation, ExplainError> {
    let bad = |e: String| malformed(LineKind::Trace, e);
    let point = ev.point.unwrap_or(ObsPoint::Unknown);
    let mut fields: Vec<Field> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    if let Some(cpu) = ev.cpu {
        fields.push(fields::cpu(cpu));
    }
    let point_value = match point {
        ObsPoint::Unknown => "not given".to_string(),
        p => format!(
            "{} ({} = {})",
            p.name(),
            p.constant(),
            p.code().unwrap_or_default()
        ),
    };
    fields.push(field(
        "observation point",
        point_value,
        "where in Cilium's datapath the trace was emitted: the notification's subtype, printed as the summary before `flow` (`traceSummary()`) or by name in `-v` output",
        if point == ObsPoint::Unknown {
            Judgement::Normal
        } else {
            Judgement::Informative
        },
        point.meaning(),
        TYPES_GO,
    ));
    if let Some(source) = ev.source {
        fields.push(fields::source(source));
    }
    if let Some(n) = ev.number {
        fields.push(match point {
            ObsPoint::ToProxy => field(
                "proxy port",
                n,
                "the proxy port the packet is redirected to (the notification's dst_id)",
                Judgement::Informative,
                format!("the L7 proxy listens on port {n} for this flow"),
                TRACE_GO,
            ),
            ObsPoint::FromEndpoint => field(
                "endpoint",
                n,
                "`<- endpoint N`: the notification's source, the endpoint whose bpf_lxc program emitted it",
                Judgement::Informative,
                format!("the packet came from endpoint {n} (`cilium-dbg endpoint get {n}`)"),
                TRACE_GO,
            ),
            _ => field(
                "endpoint",
                n,
                "the destination endpoint ID (the notification's dst_id)",
                Judgement::Informative,
                format!("the packet is for local endpoint {n} (`cilium-dbg endpoint get {n}`)"),
                TRACE_GO,
            ),
        });
    }
    if ev.encrypted {
        fields.push(field(
            "encrypted",
            "encrypted",
            "bit 0x80 of the trace reason (TRACE_REASON_ENCRYPTED)",
            Judgement::Informative,
            "the packet is, or was before this point, IPsec/WireGuard encrypted",
            TRACE_H,
        ));
    }
    if let Some((label, value)) = ev.flow {
        fields.push(fields::flow(label, value).map_err(bad)?);
    }
    let mut dst_host = false;
    if let Some(identity) = ev.identity {
        let fs = fields::identities(identity, Some(point)).map_err(bad)?;
        dst_host = fs
            .get(1)
            .is_some_and(|f| f.value == "host" || f.value == "1");
        fields.extend(fs);
    } else if ev.format == "cilium monitor -v" {
        notes.push(
            "no identity clause: `-v` output prints `identity A->B` only when either identity is not 0".into(),
        );
    }
    if let Some(id) = ev.ip_trace_id {
        fields.push(fields::ip_trace_id(id));
    }
    if let Some(state) = ev.state {
        fields.push(state_field(state, point));
    }
    if let Some(ifindex) = ev.ifindex {
        fields.push(ifindex_field("ifindex", ifindex, point));
    }
    if let Some(interface) = ev.interface {
        fields.push(match interface {
            Some(name) => ifindex_field("interface", name, point),
            None => field(
                "interface",
                "(not printed)",
                "`-v` output prints `interface <name>` only when the ifindex the program passed is not 0",
                Judgement::Normal,
                interface_absent_reading(point),
                TRACE_GO,
            ),
        });
    }
    if let Some(bytes) = ev.bytes {
        fields.push(field(
            "bytes",
            bytes,
            "the packet's length (the notification's len_orig)",
            Judgement::Informative,
            format!("the packet is {bytes} bytes long"),
            TRACE_H,
        ));
    }
    if let Some(cap) = ev.captured {
        fields.push(field(
            "captured",
            cap,
            "how many of its bytes came with the event (len_cap, at most the monitor capture length)",
            Judgement::Normal,
            "a capture length, not a property of the packet",
            TRACE_H,
        ));
    }
    let packet = ev.packet.map(fields::packet);
    if let Some(orig) = ev.orig_ip {
        let src = packet.as_ref().and_then(|(_, p)| p.src_ip);
        fields.push(orig_ip_field(orig, src).map_err(bad)?);
    } else if ev.format == DEFAULT_FORMAT {
        notes.push(
            "no `orig-ip`: a Cilium older than trace notification v1 (it prints `ifindex I: packet`)".into(),
        );
    }
    if let Some((f, _)) = &packet {
        fields.push(f.clone());
    }
    if !ev.ignored.is_empty() {
        notes.push(format!(
            "ignored (not a field of a trace line): `{}`",
            ev.ignored.join(" ")
        ));
    }

    let (mut checks, mut no_check) = checks::for_trace(point, dst_host, ev.encrypted);
    if point == ObsPoint::Unknown {
        notes.push(
            "the observation point is not in the pasted text: the full line starts with it (`-> stack flow …`, `-> endpoint N flow …`)".into(),
        );
        let zero_ifindex = ev.ifindex == Some("0");
        let zero_orig = ev
            .orig_ip
            .and_then(lex::parse_ip)
            .is_some_and(|ip| ip.is_unspecified());
        if zero_ifindex && zero_orig {
            notes.push(
                "`ifindex 0` with `orig-ip 0.0.0.0` is what Cilium prints for an ordinary `-> stack` event from bpf_lxc (the nix-2hd incident's line): its normal encoding, not evidence of broken metadata; what such a line cannot show is whether the stack delivered the packet".into(),
            );
            let (stack, _) = checks::for_trace(ObsPoint::ToStack, false, false);
            checks = stack
                .into_iter()
                .take(1)
                .map(|mut c| {
                    c.relation = super::Relation::Related;
                    c.why = format!("if the full line is `-> stack …`: {}", c.why);
                    c
                })
                .collect();
            no_check = None;
        }
    }
    let summary = summary(point, &ev, packet.as_ref().map(|(_, p)| p.text.as_str()));
    let mut sources = vec![TRACE_GO, TYPES_GO, TRACE_H, fields::NOTIFY_H, fields::SKB_H];
    if point == ObsPoint::ToStack || point == ObsPoint::Unknown {
        sources.push(BPF_LXC_C);
    }
    sources.push(fields::IDENTITY_GO);
    sources.push(fields::DISSECT_GO);
    Ok(Explanation {
        kind: LineKind::Trace,
        format: ev.format,
        line: String::new(),
        summary,
        fields,
        checks,
        no_check,
        notes,
        sources,
    })
}

fn summary(point: ObsPoint, ev: &TraceEvent<'_>, packet: Option<&str>) -> String {
    let n = ev.number.unwrap_or("?");
    let what = match point {
        ObsPoint::ToEndpoint => format!("Cilium delivers the packet to local endpoint {n}"),
        ObsPoint::ToProxy => "Cilium redirects the packet to its L7 proxy".into(),
        ObsPoint::ToHost => "Cilium hands the packet to the host namespace (cilium_host)".into(),
        ObsPoint::ToStack => {
            "Cilium's program hands the packet to the kernel stack (TC_ACT_OK); the line shows the hand-off, not a delivery".into()
        }
        ObsPoint::ToOverlay => "Cilium sends the packet into the tunnel".into(),
        ObsPoint::ToNetwork => "Cilium sends the packet out of a native device".into(),
        ObsPoint::FromEndpoint => match ev.number.or(ev.source) {
            Some(n) => format!("Cilium's program saw a packet from endpoint {n}"),
            None => "Cilium's program saw a packet from a local endpoint".into(),
        },
        ObsPoint::FromProxy => "Cilium saw a packet from its L7 proxy".into(),
        ObsPoint::FromHost => "Cilium saw a packet from the host namespace".into(),
        ObsPoint::FromStack => "Cilium saw a packet the kernel stack sent out".into(),
        ObsPoint::FromOverlay => "Cilium received a packet from the tunnel".into(),
        ObsPoint::FromNetwork => "Cilium received a packet from the network".into(),
        ObsPoint::FromCrypto => "A packet came out of WireGuard decryption".into(),
        ObsPoint::ToCrypto => "A packet goes into WireGuard encryption".into(),
        ObsPoint::Unknown => "A trace notification whose observation point is not given".into(),
    };
    match packet {
        Some(p) => format!("{what}: {p}."),
        None => format!("{what}."),
    }
}

fn state_field(state: &str, point: ObsPoint) -> Field {
    let meaning = "the trace reason: for to-* points the connection-tracking result of the packet (`traceReasons`), bit 0x80 meaning encrypted";
    let known = trace_reason(state);
    if !point.has_conn_state() && point != ObsPoint::Unknown {
        return field(
            "state",
            state,
            meaning,
            Judgement::Normal,
            format!(
                "{} does not carry a connection-tracking result (TraceObservationPointHasConnState is false for it): `{state}` here is a default, evidence of nothing",
                point.name()
            ),
            TYPES_GO,
        );
    }
    match known {
        Some((5, what)) => field("state", state, meaning, Judgement::Normal, what, TRACE_H),
        Some((_, what)) => field(
            "state",
            state,
            meaning,
            Judgement::Informative,
            what,
            TRACE_H,
        ),
        None => field(
            "state",
            state,
            meaning,
            Judgement::Informative,
            "a reason number this decoder does not name (monitor prints the number when it has no name for it)",
            TRACE_GO,
        ),
    }
}

fn ifindex_field(label: &str, value: &str, point: ObsPoint) -> Field {
    let meaning = "the ifindex argument the program passed to send_trace_notify, printed through monitor's link cache: a device name when known, else the number";
    if value == "0" {
        let mut reading = String::from(
            "a literal 0, TRACE_IFINDEX_UNKNOWN (trace.h: \"Linux kernel doesn't use ifindex 0\"): the caller had no interface to report",
        );
        if point == ObsPoint::ToStack || point == ObsPoint::Unknown {
            reading.push_str(
                "; bpf_lxc's to-stack calls pass TRACE_IFINDEX_UNKNOWN literally, so this is not a lost or corrupted skb->ifindex (no TC hook sees __sk_buff->ifindex 0)",
            );
        }
        return field(label, value, meaning, Judgement::Normal, reading, TRACE_H);
    }
    if value.parse::<u32>().is_ok() {
        field(
            label,
            value,
            meaning,
            Judgement::Informative,
            format!(
                "ifindex {value}, a device monitor could not name (it is in another network namespace, or gone)"
            ),
            TRACE_GO,
        )
    } else {
        field(
            label,
            value,
            meaning,
            Judgement::Informative,
            format!("the device the event concerns: {value}"),
            TRACE_GO,
        )
    }
}

fn interface_absent_reading(point: ObsPoint) -> String {
    let mut reading = String::from(
        "the program passed ifindex 0 (TRACE_IFINDEX_UNKNOWN): the caller had no interface to report",
    );
    if point == ObsPoint::ToStack {
        reading.push_str("; bpf_lxc's to-stack calls always do");
    }
    reading
}

fn orig_ip_field(value: &str, packet_src: Option<IpAddr>) -> Result<Field, String> {
    let ip = lex::parse_ip(value)
        .ok_or_else(|| format!("expected an address after `orig-ip`, found `{value}`"))?;
    let meaning = "\"the original source IP if reverse NAT was performed on the flow\" (`OriginalIP()`): only send_trace_notify4/6 callers fill it; the generic send_trace_notify zeroes it";
    Ok(if ip.is_unspecified() {
        field(
            "orig-ip",
            value,
            meaning,
            Judgement::Normal,
            "unspecified: no reverse NAT was performed, or the caller is one that zeroes the field (bpf_lxc's to-stack trace is); the normal case without service translation",
            TRACE_H,
        )
    } else if packet_src == Some(ip) {
        field(
            "orig-ip",
            value,
            meaning,
            Judgement::Normal,
            "the same as the packet's source: the caller passed the source address and no reverse NAT changed it",
            TRACE_H,
        )
    } else {
        field(
            "orig-ip",
            value,
            meaning,
            Judgement::Informative,
            match packet_src {
                Some(src) => format!(
                    "the source before reverse NAT: Cilium rewrote it from {ip} to {src} (a service translation)"
                ),
                None => format!("the packet's source before reverse NAT was {ip}"),
            },
            TRACE_H,
        )
    })
}
