//! Evidence that moved between two observations of one (check, variant): hop
//! counts (`pod B socket: 5/5 → 0/5`), per-hook counters and skb metadata
//! fields (`observer on eth0 ingress (tcx) in ns pod-b, pkt_type: 0 ×5 → 3 ×5`),
//! the control's outcome and its own evidence, and any other value that differs.
//!
//! Evidence is free-form JSON per check; three shapes are recognised anywhere
//! in it and everything else is compared value by value under its dotted path:
//!
//! - a *labelled list*: an array of objects each with an `at` (hops, astray
//!   hops, bpffs steps). Entries are paired by label, so one lost hop is one
//!   line, not a shifted list;
//! - a *hook record*: an object with an `events` array (what one of the probe's
//!   hooks captured per packet, with its `counters`). Events are summarised per
//!   field (`pkt_type: 3 ×5`) except the probe's own sequence number;
//! - anything else: a leaf compared as JSON.
//!
//! Device and pin names carry the run id (`lxc37e8c0a`), so every label and
//! value is compared with its run's id (and the 6-character prefix devices use)
//! replaced by a placeholder, and digit runs in labels are ignored when pairing
//! (`agent: map 696 pinned` is the same step as `agent: map 698 pinned`). What
//! is shown is the current run's own text.

use conformance_contract::{Control, ControlOutcome, Observation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One value that differs; `(absent)` stands for a side that does not have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceChange {
    /// `pod B socket`, `control: outcome`, `hook on lxc…a ingress (tcx) in ns host, counters.matched`.
    pub what: String,
    pub baseline: String,
    pub current: String,
}

impl EvidenceChange {
    /// `pod B socket: 5/5 → 0/5`.
    pub fn line(&self) -> String {
        format!("{}: {} → {}", self.what, self.baseline, self.current)
    }
}

const ABSENT: &str = "(absent)";
/// Entries of an unlabelled array compared one by one; the rest is summarised.
const MAX_INDEXED: usize = 32;
const MAX_DEPTH: usize = 8;
const MAX_VALUE_CHARS: usize = 80;
/// Event fields that differ between any two runs by design.
const EVENT_FIELDS_IGNORED: &[&str] = &["seq"];

/// Replaces a run's id in device and pin names, for comparing across runs.
#[derive(Debug, Clone)]
pub struct RunIdMask {
    full: String,
    short: String,
}

impl RunIdMask {
    pub fn new(run_id: &str) -> RunIdMask {
        // As the probe names devices: the first 6 alphanumerics (`lxc{short}a`).
        let short: String = run_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(6)
            .collect();
        RunIdMask {
            full: run_id.to_string(),
            short,
        }
    }

    pub fn apply<'s>(&self, s: &'s str) -> Cow<'s, str> {
        // The short id is a prefix of the full one: no short, no full.
        if self.short.len() < 4 || !s.contains(&self.short) {
            return Cow::Borrowed(s);
        }
        let out = if self.full.len() > self.short.len() {
            s.replace(&self.full, "{run}")
        } else {
            s.to_string()
        };
        Cow::Owned(out.replace(&self.short, "{run}"))
    }
}

/// Both legs of two observations: evidence, then the control's outcome and evidence.
pub fn evidence_changes(
    baseline: &Observation,
    baseline_run: &RunIdMask,
    current: &Observation,
    current_run: &RunIdMask,
) -> Vec<EvidenceChange> {
    let mut d = Differ {
        b: baseline_run,
        c: current_run,
        out: Vec::new(),
    };
    d.map("", &baseline.evidence, &current.evidence, 0);
    match (&baseline.control, &current.control) {
        (Some(b), Some(c)) => {
            if b.outcome != c.outcome {
                d.push(
                    "control: outcome".into(),
                    control_outcome(b.outcome).into(),
                    control_outcome(c.outcome).into(),
                );
            }
            d.map("control: ", &b.evidence, &c.evidence, 0);
        }
        (None, None) => {}
        (b, c) => {
            let ran = |c: &Option<Control>| {
                c.as_ref().map_or("did not run".to_string(), |c| {
                    format!("ran ({})", control_outcome(c.outcome))
                })
            };
            d.push("control".into(), ran(b), ran(c));
        }
    }
    d.out
}

fn control_outcome(o: ControlOutcome) -> &'static str {
    match o {
        ControlOutcome::Blocked => "blocked",
        ControlOutcome::Leaked => "leaked",
        ControlOutcome::Error => "error",
    }
}

struct Differ<'a> {
    b: &'a RunIdMask,
    c: &'a RunIdMask,
    out: Vec<EvidenceChange>,
}

impl Differ<'_> {
    fn push(&mut self, what: String, baseline: String, current: String) {
        self.out.push(EvidenceChange {
            what,
            baseline,
            current,
        });
    }

    /// Keys of two objects: labelled lists first (hops say the most), then
    /// hook records, then the rest, each in key order. `depth` 0 is a leg's
    /// evidence, whose `prefix` is the leg (`""`, `"control: "`).
    fn map(&mut self, prefix: &str, b: &Map<String, Value>, c: &Map<String, Value>, depth: usize) {
        let keys: BTreeSet<&String> = b.keys().chain(c.keys()).collect();
        let rank = |k: &String| {
            let sides = [b.get(k), c.get(k)];
            let any = |f: &dyn Fn(&Value) -> bool| sides.iter().flatten().any(|v| f(v));
            if any(&|v| labelled(v).is_some_and(|l| !l.is_empty())) {
                0
            } else if any(&|v| hook_record(v).is_some()) {
                1
            } else {
                2
            }
        };
        let mut keys: Vec<&String> = keys.into_iter().collect();
        keys.sort_by_cached_key(|k| rank(k));
        for k in keys {
            let (bv, cv) = (b.get(k), c.get(k));
            let path = if depth > 0 {
                format!("{prefix}.{k}")
            } else if k == "hops"
                && [bv, cv]
                    .iter()
                    .all(|v| v.is_none_or(|v| labelled(v).is_some()))
            {
                // A leg's own hops are named by their labels alone: `pod B socket`.
                prefix.to_string()
            } else {
                format!("{prefix}{k}")
            };
            self.value(&path, bv, cv, depth + 1);
        }
    }

    fn value(&mut self, path: &str, b: Option<&Value>, c: Option<&Value>, depth: usize) {
        if depth > MAX_DEPTH {
            return self.leaf(path, b, c);
        }
        if let (Some(bl), Some(cl)) = (list_or_empty(b), list_or_empty(c)) {
            return self.labelled(path, &bl, &cl);
        }
        let (Some(bv), Some(cv)) = (b, c) else {
            return self.leaf(path, b, c);
        };
        if let (Some(bh), Some(ch)) = (hook_record(bv), hook_record(cv)) {
            return self.hook(path, bh, ch);
        }
        match (bv, cv) {
            (Value::Object(bo), Value::Object(co)) => self.map(path, bo, co, depth),
            (Value::Array(ba), Value::Array(ca))
                if ba.iter().chain(ca).any(|v| v.is_object() || v.is_array()) =>
            {
                self.indexed(path, ba, ca, depth)
            }
            _ => self.leaf(path, b, c),
        }
    }

    fn leaf(&mut self, path: &str, b: Option<&Value>, c: Option<&Value>) {
        if b == c {
            return;
        }
        let norm =
            |v: Option<&Value>, mask: &RunIdMask| v.map(|v| mask.apply(&compact(v)).into_owned());
        if norm(b, self.b) != norm(c, self.c) {
            self.push(
                trim_path(path),
                b.map_or(ABSENT.to_string(), shown),
                c.map_or(ABSENT.to_string(), shown),
            );
        }
    }

    fn indexed(&mut self, path: &str, b: &[Value], c: &[Value], depth: usize) {
        if b.len() != c.len() {
            self.push(
                format!("{}: entries", trim_path(path)),
                b.len().to_string(),
                c.len().to_string(),
            );
        }
        for i in 0..b.len().max(c.len()).min(MAX_INDEXED) {
            self.value(&format!("{path}[{i}]"), b.get(i), c.get(i), depth + 1);
        }
    }

    /// Entries paired by label (digits and the run id masked, then by
    /// occurrence), shown in the current run's order, then entries only the
    /// baseline has.
    fn labelled(&mut self, path: &str, b: &[Entry<'_>], c: &[Entry<'_>]) {
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{}: ", trim_path(path))
        };
        let keys = |list: &[Entry<'_>], mask: &RunIdMask| -> Vec<(String, usize)> {
            let mut seen: HashMap<String, usize> = HashMap::new();
            list.iter()
                .map(|e| {
                    let k = pairing_key(&mask.apply(e.at));
                    let n = seen.entry(k.clone()).or_default();
                    *n += 1;
                    (k, *n)
                })
                .collect()
        };
        let bk = keys(b, self.b);
        let ck = keys(c, self.c);
        let b_at: HashMap<&(String, usize), usize> =
            bk.iter().enumerate().map(|(i, k)| (k, i)).collect();
        let mut matched = vec![false; b.len()];
        for (ci, key) in ck.iter().enumerate() {
            let ce = &c[ci];
            match b_at.get(key) {
                Some(&bi) => {
                    matched[bi] = true;
                    if b[bi].same_values(ce) {
                        continue;
                    }
                    let (bs, cs) = (b[bi].summary(self.b), ce.summary(self.c));
                    if bs != cs {
                        self.push(format!("{prefix}{}", ce.at), b[bi].shown(), ce.shown());
                    }
                }
                None => self.push(format!("{prefix}{}", ce.at), ABSENT.into(), ce.shown()),
            }
        }
        for (bi, e) in b.iter().enumerate() {
            if !matched[bi] {
                self.push(format!("{prefix}{}", e.at), e.shown(), ABSENT.into());
            }
        }
    }

    fn hook(&mut self, path: &str, b: Hook<'_>, c: Hook<'_>) {
        let name = match c.at {
            Some(at) => format!("{} on {at}", trim_path(path)),
            None => trim_path(path),
        };
        let at = |h: &Hook<'_>, mask: &RunIdMask| h.at.map(|a| mask.apply(a).into_owned());
        if at(&b, self.b) != at(&c, self.c) {
            self.push(
                format!("{name}, attached at"),
                b.at.unwrap_or(ABSENT).to_string(),
                c.at.unwrap_or(ABSENT).to_string(),
            );
        }
        let empty = Map::new();
        let (bc, cc) = (b.counters.unwrap_or(&empty), c.counters.unwrap_or(&empty));
        let counters: BTreeSet<&String> = bc.keys().chain(cc.keys()).collect();
        for k in counters {
            self.leaf(&format!("{name}, counters.{k}"), bc.get(k), cc.get(k));
        }
        if b.events.len() != c.events.len() {
            self.push(
                format!("{name}, events"),
                b.events.len().to_string(),
                c.events.len().to_string(),
            );
        }
        if b.events.is_empty() || c.events.is_empty() {
            return;
        }
        let fields: BTreeSet<&String> = b
            .events
            .iter()
            .chain(c.events)
            .filter_map(Value::as_object)
            .flat_map(Map::keys)
            .filter(|k| !EVENT_FIELDS_IGNORED.contains(&k.as_str()))
            .collect();
        for field in fields {
            let same = b.events.len() == c.events.len()
                && b.events
                    .iter()
                    .zip(c.events)
                    .all(|(x, y)| x.get(field) == y.get(field));
            if same {
                continue;
            }
            let (bh, ch) = (
                histogram(b.events, field, self.b),
                histogram(c.events, field, self.c),
            );
            if bh != ch {
                self.push(
                    format!("{name}, {field}"),
                    histogram_text(&histogram(b.events, field, &RunIdMask::new(""))),
                    histogram_text(&histogram(c.events, field, &RunIdMask::new(""))),
                );
            }
        }
    }
}

/// `a.b` for display: no leading separator.
fn trim_path(path: &str) -> String {
    path.trim_start_matches('.')
        .trim_end_matches(": ")
        .to_string()
}

/// An entry of a labelled list.
struct Entry<'a> {
    at: &'a str,
    rest: &'a Map<String, Value>,
}

impl Entry<'_> {
    /// `5/5`, `5`, or the other fields as `key=value` (`held=true`).
    fn shown(&self) -> String {
        let count = self.rest.get("count").map(compact);
        let of = self.rest.get("of").map(compact);
        let mut parts = Vec::new();
        match (count, of) {
            (Some(n), Some(of)) => parts.push(format!("{n}/{of}")),
            (Some(n), None) => parts.push(n),
            _ => {}
        }
        for (k, v) in self.rest {
            if !matches!(k.as_str(), "at" | "count" | "of" | "role") {
                parts.push(format!("{k}={}", shown(v)));
            }
        }
        if parts.is_empty() {
            "present".to_string()
        } else {
            parts.join(", ")
        }
    }

    fn summary(&self, mask: &RunIdMask) -> String {
        mask.apply(&self.shown()).into_owned()
    }

    /// Every field but the label equal: nothing to show, nothing to format.
    fn same_values(&self, other: &Entry<'_>) -> bool {
        let fields = |e: &Entry<'_>| e.rest.iter().filter(|(k, _)| k.as_str() != "at").count();
        fields(self) == fields(other)
            && self
                .rest
                .iter()
                .filter(|(k, _)| k.as_str() != "at")
                .all(|(k, v)| other.rest.get(k) == Some(v))
    }
}

/// `Some(entries)` when every element is an object with a string `at` (an
/// empty array is an empty list).
fn labelled(v: &Value) -> Option<Vec<Entry<'_>>> {
    v.as_array()?
        .iter()
        .map(|e| {
            let o = e.as_object()?;
            Some(Entry {
                at: o.get("at")?.as_str()?,
                rest: o,
            })
        })
        .collect()
}

/// A labelled list, or an empty one for a side that lacks the value.
fn list_or_empty(v: Option<&Value>) -> Option<Vec<Entry<'_>>> {
    match v {
        None => Some(Vec::new()),
        Some(v) => labelled(v),
    }
}

/// The label with digit runs collapsed, so numbered things pair across runs.
fn pairing_key(label: &str) -> String {
    let mut out = String::with_capacity(label.len());
    let mut in_digits = false;
    for ch in label.chars() {
        if ch.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(ch);
            in_digits = false;
        }
    }
    out
}

struct Hook<'a> {
    at: Option<&'a str>,
    counters: Option<&'a Map<String, Value>>,
    events: &'a [Value],
}

fn hook_record(v: &Value) -> Option<Hook<'_>> {
    let o = v.as_object()?;
    Some(Hook {
        events: o.get("events")?.as_array()?,
        at: o.get("at").and_then(Value::as_str),
        counters: o.get("counters").and_then(Value::as_object),
    })
}

/// How often each value of `field` occurs in `events`, masked.
fn histogram(events: &[Value], field: &str, mask: &RunIdMask) -> BTreeMap<String, usize> {
    let mut h = BTreeMap::new();
    for e in events {
        let v = e.get(field).map_or(ABSENT.to_string(), shown);
        *h.entry(mask.apply(&v).into_owned()).or_insert(0) += 1;
    }
    h
}

/// `3 ×5`, `0 ×3, 3 ×2`.
fn histogram_text(h: &BTreeMap<String, usize>) -> String {
    h.iter()
        .map(|(v, n)| format!("{v} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A value for people: strings without quotes, long values cut.
fn shown(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => compact(other),
    };
    if s.chars().count() > MAX_VALUE_CHARS {
        let cut: String = s.chars().take(MAX_VALUE_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conformance_contract::Outcome;
    use serde_json::json;

    fn obs(evidence: Value, control: Option<(ControlOutcome, Value)>) -> Observation {
        Observation {
            check: "datapath.redirect-peer".into(),
            variant: "tcx".into(),
            outcome: Outcome::Pass,
            reason: String::new(),
            evidence: evidence.as_object().cloned().unwrap_or_default(),
            failure: None,
            missing_facts: vec![],
            control: control.map(|(outcome, e)| Control {
                description: "plain redirect".into(),
                outcome,
                reason: String::new(),
                evidence: e.as_object().cloned().unwrap_or_default(),
            }),
            duration_ms: 1.0,
        }
    }

    fn hop(at: &str, count: u64) -> Value {
        json!({"at": at, "count": count, "of": 5, "role": "path"})
    }

    fn event(pkt_type: u64, seq: u64) -> Value {
        json!({"pkt_type": pkt_type, "mark": "0x0", "ifindex": 4, "seq": seq})
    }

    fn lines(b: &Observation, b_id: &str, c: &Observation, c_id: &str) -> Vec<String> {
        evidence_changes(b, &RunIdMask::new(b_id), c, &RunIdMask::new(c_id))
            .iter()
            .map(EvidenceChange::line)
            .collect()
    }

    #[test]
    fn same_evidence_under_other_run_ids_is_no_change() {
        let mk = |id: &str| {
            obs(
                json!({
                    "hops": [hop("pod A sent", 5), hop(&format!("lxc{}a rx", &id[..6]), 5)],
                    "hook": {"at": format!("lxc{}a ingress (tcx) in ns host", &id[..6]),
                             "counters": {"matched": 5}, "events": [event(0, 0), event(0, 1)]},
                    "redirect": {"target": format!("lxc{}b", &id[..6])},
                    "pin": format!("/sys/fs/bpf/cc_{id}"),
                    "steps": [{"at": format!("agent: map {} pinned", id.len() * 87), "held": true}],
                }),
                Some((
                    ControlOutcome::Blocked,
                    json!({"hops": [hop("pod A sent", 5)]}),
                )),
            )
        };
        let (a, b) = (mk("37e8c045"), mk("14953600"));
        assert_eq!(lines(&a, "37e8c045", &b, "14953600"), Vec::<String>::new());
    }

    #[test]
    fn hops_that_moved_are_named_by_their_label() {
        let b = obs(
            json!({"hops": [hop("pod A sent", 5), hop("lxc37e8c0a rx", 5), hop("pod B socket", 5),
                            {"at": "pod B Udp NoPorts", "count": 0, "role": "loss"}]}),
            None,
        );
        let c = obs(
            json!({"hops": [hop("pod A sent", 5), hop("lxc149536a rx", 0), hop("pod B socket", 0),
                            {"at": "pod B Udp NoPorts", "count": 5, "role": "loss"},
                            hop("pod B new counter", 1)]}),
            None,
        );
        assert_eq!(
            lines(&b, "37e8c045", &c, "14953600"),
            [
                "lxc149536a rx: 5/5 → 0/5",
                "pod B socket: 5/5 → 0/5",
                "pod B Udp NoPorts: 0 → 5",
                "pod B new counter: (absent) → 1/5",
            ]
        );
        // A hop only the baseline has.
        assert_eq!(
            lines(&c, "14953600", &b, "37e8c045").last().unwrap(),
            "pod B new counter: 1/5 → (absent)"
        );
    }

    #[test]
    fn hook_counters_and_metadata_fields_that_differ() {
        let b = obs(
            json!({"observer": {"at": "eth0 ingress (tcx) in ns pod-b", "counters": {"matched": 5, "seen": 5},
                                "events": [event(0, 0), event(0, 1), event(0, 2)]}}),
            None,
        );
        let c = obs(
            json!({"observer": {"at": "eth0 ingress (tcx) in ns pod-b", "counters": {"matched": 3, "seen": 5},
                                "events": [event(3, 10), event(3, 11), event(0, 12)]}}),
            None,
        );
        assert_eq!(
            lines(&b, "r1", &c, "r2"),
            [
                "observer on eth0 ingress (tcx) in ns pod-b, counters.matched: 5 → 3",
                "observer on eth0 ingress (tcx) in ns pod-b, pkt_type: 0 ×3 → 0 ×1, 3 ×2",
            ],
            "seq differs by design and is not reported"
        );
        let none = obs(
            json!({"observer": {"at": "eth0 ingress (tcx) in ns pod-b", "counters": {"matched": 5, "seen": 5},
                                "events": []}}),
            None,
        );
        assert_eq!(
            lines(&b, "r1", &none, "r2"),
            ["observer on eth0 ingress (tcx) in ns pod-b, events: 3 → 0"],
            "no field summary against no events"
        );
    }

    #[test]
    fn control_outcome_and_evidence_and_plain_values() {
        let b = obs(
            json!({"delivered": [0, 1, 2], "host_ip_forw_datagrams_delta": 0, "redirect": {"helper": "bpf_redirect_peer"}}),
            Some((
                ControlOutcome::Blocked,
                json!({"hops": [hop("pod A eth0 tx", 5)]}),
            )),
        );
        let c = obs(
            json!({"delivered": [], "host_ip_forw_datagrams_delta": 0, "injected_fault": "Drop",
                   "redirect": {"helper": "bpf_redirect"}}),
            Some((
                ControlOutcome::Error,
                json!({"hops": [hop("pod A eth0 tx", 0)]}),
            )),
        );
        assert_eq!(
            lines(&b, "r1", &c, "r2"),
            [
                "delivered: [0,1,2] → []",
                "injected_fault: (absent) → Drop",
                "redirect.helper: bpf_redirect_peer → bpf_redirect",
                "control: outcome: blocked → error",
                "control: pod A eth0 tx: 5/5 → 0/5",
            ]
        );
        let gone = obs(json!({}), None);
        let had = obs(json!({}), Some((ControlOutcome::Blocked, json!({}))));
        assert_eq!(
            lines(&had, "r1", &gone, "r2"),
            ["control: ran (blocked) → did not run"]
        );
    }

    #[test]
    fn steps_pair_across_numbers_and_named_lists_keep_their_name() {
        let b = obs(
            json!({"steps": [{"at": "agent: map 696 pinned", "held": true},
                             {"at": "node: the pin opens map 696", "held": true}],
                   "astray_hops": [hop("pod B eth0 rx", 0)]}),
            None,
        );
        let c = obs(
            json!({"steps": [{"at": "agent: map 698 pinned", "held": true},
                             {"at": "node: the pin opens map 698", "held": false}],
                   "astray_hops": [hop("pod B eth0 rx", 5)]}),
            None,
        );
        assert_eq!(
            lines(&b, "r1", &c, "r2"),
            [
                "astray_hops: pod B eth0 rx: 0/5 → 5/5",
                "steps: node: the pin opens map 698: held=true → held=false",
            ]
        );
    }

    #[test]
    fn long_values_are_cut_and_unlabelled_arrays_indexed() {
        let long = "x".repeat(200);
        let b = obs(json!({"s": long, "list": [{"a": 1}, {"a": 2}]}), None);
        let c = obs(
            json!({"s": "short", "list": [{"a": 1}, {"a": 3}, {"a": 4}]}),
            None,
        );
        let got = lines(&b, "r1", &c, "r2");
        assert_eq!(got[0], "list: entries: 2 → 3");
        assert_eq!(got[1], "list[1].a: 2 → 3");
        assert_eq!(got[2], "list[2]: (absent) → {\"a\":4}");
        assert!(
            got[3].starts_with("s: xxx") && got[3].ends_with("… → short"),
            "{}",
            got[3]
        );
        assert_eq!(
            got[3].chars().filter(|c| *c == 'x').count(),
            MAX_VALUE_CHARS - 1
        );
    }

    #[test]
    fn masks() {
        let m = RunIdMask::new("37e8c045");
        assert_eq!(m.apply("lxc37e8c0a cc_37e8c045"), "lxc{run}a cc_{run}");
        assert_eq!(RunIdMask::new("").apply("lxc37e8c0a"), "lxc37e8c0a");
        assert_eq!(pairing_key("map 696 at eth0"), "map # at eth#");
    }
}
