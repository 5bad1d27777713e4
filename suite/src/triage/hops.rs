//! Where the packets went: the hop accounting of a leg (`evidence.hops`, or the
//! held/not-held `steps` of a check without packets), and the probe's own hooks
//! rendered one packet per line, as `pwru` would show them, but from the hooks the
//! probe attached, so no kprobes are needed.

use serde_json::{Map, Value};
use std::fmt::Write;

/// One hop of a leg's accounting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub at: String,
    /// `path` (counts the leg's packets) or `loss` (a drop counter beside the path).
    pub role: String,
    pub count: u64,
    /// How many should have been seen here (path hops).
    pub of: Option<u64>,
    pub note: Option<String>,
}

impl Hop {
    /// `pod A eth0 tx 0/5` (`+3` for a loss counter).
    pub fn show(&self) -> String {
        let counted = match self.of {
            Some(of) => format!("{}/{of}", self.count),
            None => format!("+{}", self.count),
        };
        match &self.note {
            Some(note) => format!("{} {counted} ({note})", self.at),
            None => format!("{} {counted}", self.at),
        }
    }

    fn short(&self) -> bool {
        self.role == "path" && self.of.is_some_and(|of| self.count < of)
    }
}

/// What the hops of one leg say.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Finding {
    /// The last hop before the first short one (`None`: lost at the first hop).
    pub last_seen: Option<String>,
    /// The first path hop that saw fewer than it should (`None`: every hop saw all).
    pub first_missing: Option<String>,
    /// Drop counters that moved.
    pub losses: Vec<String>,
    /// Whether the leg had any accounting at all.
    pub accounted: bool,
}

impl Finding {
    /// `last seen: pod A sent 5/5 · first missing: pod A eth0 tx 0/5`.
    pub fn line(&self) -> String {
        if !self.accounted {
            return "no hop accounting in the evidence".into();
        }
        let mut parts = Vec::new();
        match (&self.last_seen, &self.first_missing) {
            (_, None) => parts.push("every hop saw every packet".to_string()),
            (None, Some(missing)) => {
                parts.push(format!("lost at the first hop: {missing}"));
            }
            (Some(seen), Some(missing)) => {
                parts.push(format!("last seen: {seen}"));
                parts.push(format!("first missing: {missing}"));
            }
        }
        if !self.losses.is_empty() {
            parts.push(format!("drop counters: {}", self.losses.join(", ")));
        }
        parts.join(" · ")
    }
}

/// The hops of a leg's evidence, in path order; `steps` (held or not) read as
/// hops of one.
pub fn hops(evidence: &Map<String, Value>) -> Vec<Hop> {
    if let Some(list) = evidence.get("hops").and_then(Value::as_array) {
        return list
            .iter()
            .filter_map(|h| {
                Some(Hop {
                    at: h.get("at")?.as_str()?.to_string(),
                    role: h
                        .get("role")
                        .and_then(Value::as_str)
                        .unwrap_or("path")
                        .to_string(),
                    count: h.get("count").and_then(Value::as_u64).unwrap_or(0),
                    of: h.get("of").and_then(Value::as_u64),
                    note: h.get("note").and_then(Value::as_str).map(str::to_string),
                })
            })
            .collect();
    }
    evidence
        .get("steps")
        .and_then(Value::as_array)
        .map(|steps| {
            steps
                .iter()
                .filter_map(|s| {
                    let held = s.get("held")?.as_bool()?;
                    Some(Hop {
                        at: s.get("at")?.as_str()?.to_string(),
                        role: "path".into(),
                        count: u64::from(held),
                        of: Some(1),
                        note: None,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Last seen and first missing over a leg's hops.
pub fn find(hops: &[Hop]) -> Finding {
    let path: Vec<&Hop> = hops.iter().filter(|h| h.role == "path").collect();
    let first_short = path.iter().position(|h| h.short());
    let (last_seen, first_missing) = match first_short {
        Some(0) => (None, Some(path[0].show())),
        Some(i) => (Some(path[i - 1].show()), Some(path[i].show())),
        None => (path.last().map(|h| h.show()), None),
    };
    Finding {
        last_seen,
        first_missing,
        losses: hops
            .iter()
            .filter(|h| h.role == "loss" && h.count > 0)
            .map(Hop::show)
            .collect(),
        accounted: !path.is_empty(),
    }
}

/// A probe hook found in a leg's evidence: an object with `at` and `events`.
#[derive(Debug, Clone)]
pub struct HookView<'a> {
    /// The evidence key it sits under (`hook`, `observer`, `source`, ...).
    pub key: String,
    pub at: &'a str,
    pub counters: Option<&'a Map<String, Value>>,
    pub events: &'a [Value],
}

/// Every hook in a leg's evidence, in path order (by the first hop that names
/// it), then the ones no hop names, by key.
pub fn hooks<'a>(evidence: &'a Map<String, Value>, hops: &[Hop]) -> Vec<HookView<'a>> {
    let mut found = Vec::new();
    for (key, value) in evidence {
        let candidates: Vec<(String, &Value)> = match value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{key}[{i}]"), v))
                .collect(),
            v => vec![(key.clone(), v)],
        };
        for (key, v) in candidates {
            let (Some(at), Some(events)) = (
                v.get("at").and_then(Value::as_str),
                v.get("events").and_then(Value::as_array),
            ) else {
                continue;
            };
            found.push(HookView {
                key,
                at,
                counters: v.get("counters").and_then(Value::as_object),
                events,
            });
        }
    }
    let order = |h: &HookView| hops.iter().position(|hop| hop.at.contains(h.at));
    found.sort_by_key(|h| (order(h).unwrap_or(usize::MAX), h.key.clone()));
    found
}

/// `lxc34842ca ingress (tcx) in ns host` → `ns host · dev lxc34842ca · ingress · tcx`.
pub fn place(at: &str) -> String {
    let parse = || {
        let (head, ns) = at.split_once(" in ns ")?;
        let (dev, rest) = head.split_once(' ')?;
        let (direction, mode) = rest.split_once(" (")?;
        let mode = mode.strip_suffix(')')?;
        Some(format!("ns {ns} · dev {dev} · {direction} · {mode}"))
    };
    parse().unwrap_or_else(|| at.to_string())
}

fn pkt_type(n: u64) -> &'static str {
    match n {
        0 => "HOST",
        1 => "BROADCAST",
        2 => "MULTICAST",
        3 => "OTHERHOST",
        4 => "OUTGOING",
        5 => "LOOPBACK",
        _ => "?",
    }
}

fn tc_result(n: i64) -> &'static str {
    match n {
        -1 => "TC_ACT_UNSPEC",
        0 => "TC_ACT_OK",
        1 => "TC_ACT_RECLASSIFY",
        2 => "TC_ACT_SHOT",
        3 => "TC_ACT_PIPE",
        4 => "TC_ACT_STOLEN",
        5 => "TC_ACT_QUEUED",
        6 => "TC_ACT_REPEAT",
        7 => "TC_ACT_REDIRECT",
        _ => "?",
    }
}

fn protocol(p: &str) -> &'static str {
    match p {
        "0x0800" => "IPv4",
        "0x86dd" => "IPv6",
        "0x0806" => "ARP",
        _ => "",
    }
}

/// One packet event: `seq 0  ifindex 4 (ingress 4)  mark 0x0  hash 0x0  pkt_type
/// OTHERHOST(3)  proto 0x0800 IPv4  len 50  10.42.0.11 → 10.42.0.12  result
/// TC_ACT_REDIRECT(7)  tstamp 0`.
pub fn event_line(e: &Value) -> String {
    let text = |k: &str| match e.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(v) if !v.is_null() => v.to_string(),
        _ => "?".into(),
    };
    let pkt = e
        .get("pkt_type")
        .and_then(Value::as_u64)
        .map_or_else(|| text("pkt_type"), |n| format!("{}({n})", pkt_type(n)));
    let result = e
        .get("result")
        .and_then(Value::as_i64)
        .map_or_else(|| text("result"), |n| format!("{}({n})", tc_result(n)));
    let proto = text("protocol");
    let proto = match protocol(&proto) {
        "" => proto,
        name => format!("{proto} {name}"),
    };
    let mut line = format!(
        "seq {}  ifindex {} (ingress {})  mark {}  hash {}  pkt_type {pkt}  proto {proto}  len {}  {} → {}  result {result}",
        text("seq"),
        text("ifindex"),
        text("ingress_ifindex"),
        text("mark"),
        text("hash"),
        text("len"),
        text("saddr"),
        text("daddr"),
    );
    if e.get("tstamp").is_some() {
        let _ = write!(line, "  tstamp {}", text("tstamp"));
    }
    line
}

/// One leg as text: its hops, one per line with the first missing marked, then
/// each hook with its place, counters and one line per packet.
pub fn render_leg(out: &mut String, evidence: &Map<String, Value>) {
    let hops = hops(evidence);
    let finding = find(&hops);
    let missing = hops.iter().position(|h| h.short());
    let width = hops.iter().map(|h| h.at.chars().count()).max().unwrap_or(0);
    if hops.is_empty() {
        let _ = writeln!(out, "(no hop accounting in this leg's evidence)");
    }
    for (i, h) in hops.iter().enumerate() {
        let counted = match h.of {
            Some(of) => format!("{}/{of}", h.count),
            None => format!("+{}", h.count),
        };
        let mut mark = match (Some(i) == missing, h.role == "loss" && h.count > 0) {
            (true, _) => "  <- first missing".to_string(),
            (false, true) => "  <- dropped here".to_string(),
            _ => String::new(),
        };
        if let Some(note) = &h.note {
            let _ = write!(mark, "  ({note})");
        }
        let _ = writeln!(
            out,
            "{:<4} {:<width$}  {counted}{mark}",
            h.role,
            h.at,
            width = width
        );
    }
    if !hops.is_empty() {
        let _ = writeln!(out, "=> {}", finding.line());
    }
    for hook in hooks(evidence, &hops) {
        let counters = hook
            .counters
            .map(|c| {
                c.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|| "no counters".into());
        let _ = writeln!(out, "hook {}: {} — {counters}", hook.key, place(hook.at));
        if hook.events.is_empty() {
            let _ = writeln!(out, "  (no packet events)");
        }
        for e in hook.events {
            let _ = writeln!(out, "  {}", event_line(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn evidence(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn last_seen_and_first_missing() {
        let e = evidence(json!({"hops": [
            {"at": "pod A sent", "role": "path", "count": 5, "of": 5},
            {"at": "pod A eth0 tx", "role": "path", "count": 0, "of": 5},
            {"at": "host Udp NoPorts", "role": "loss", "count": 2},
            {"at": "host socket", "role": "path", "count": 0, "of": 5},
        ]}));
        let f = find(&hops(&e));
        assert_eq!(
            f.line(),
            "last seen: pod A sent 5/5 · first missing: pod A eth0 tx 0/5 · drop counters: host Udp NoPorts +2"
        );
        let first = evidence(json!({"hops": [
            {"at": "pod A sent", "role": "path", "count": 0, "of": 5, "note": "Network is unreachable"},
        ]}));
        assert_eq!(
            find(&hops(&first)).line(),
            "lost at the first hop: pod A sent 0/5 (Network is unreachable)"
        );
        let all = evidence(json!({"hops": [{"at": "a", "role": "path", "count": 5, "of": 5}]}));
        assert_eq!(find(&hops(&all)).line(), "every hop saw every packet");
        assert_eq!(find(&[]).line(), "no hop accounting in the evidence");
    }

    #[test]
    fn steps_read_as_hops() {
        let e = evidence(json!({"steps": [
            {"at": "agent: map 812 pinned", "held": true},
            {"at": "node: /sys/fs/bpf is tmpfs", "held": false},
        ]}));
        let f = find(&hops(&e));
        assert_eq!(f.last_seen.as_deref(), Some("agent: map 812 pinned 1/1"));
        assert_eq!(
            f.first_missing.as_deref(),
            Some("node: /sys/fs/bpf is tmpfs 0/1")
        );
    }

    #[test]
    fn hooks_in_path_order_with_one_line_per_packet() {
        let event = json!({"seq": 0, "ifindex": 4, "ingress_ifindex": 4, "mark": "0x0", "hash": "0x0",
            "protocol": "0x0800", "pkt_type": 3, "len": 50, "saddr": "10.42.0.11",
            "daddr": "10.42.0.12", "tstamp": 0, "result": 7});
        let e = evidence(json!({
            "destination": {"at": "eth0 ingress (tcx) in ns pod-b", "events": []},
            "source": {"at": "lxc1 ingress (tcx) in ns host", "counters": {"matched": 1}, "events": [event]},
            "hops": [
                {"at": "hook lxc1 ingress (tcx) in ns host matched", "role": "path", "count": 1, "of": 1},
                {"at": "observer eth0 ingress (tcx) in ns pod-b matched", "role": "path", "count": 0, "of": 1},
            ],
        }));
        let mut out = String::new();
        render_leg(&mut out, &e);
        let want = "\
path hook lxc1 ingress (tcx) in ns host matched       1/1
path observer eth0 ingress (tcx) in ns pod-b matched  0/1  <- first missing
=> last seen: hook lxc1 ingress (tcx) in ns host matched 1/1 · first missing: observer eth0 ingress (tcx) in ns pod-b matched 0/1
hook source: ns host · dev lxc1 · ingress · tcx — matched 1
  seq 0  ifindex 4 (ingress 4)  mark 0x0  hash 0x0  pkt_type OTHERHOST(3)  proto 0x0800 IPv4  len 50  10.42.0.11 → 10.42.0.12  result TC_ACT_REDIRECT(7)  tstamp 0
hook destination: ns pod-b · dev eth0 · ingress · tcx — no counters
  (no packet events)
";
        assert_eq!(out, want);
    }
}
