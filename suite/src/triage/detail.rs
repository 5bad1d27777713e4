//! The probe's triage evidence (`evidence.triage`, `probe run --triage`) as the
//! text files of a row's folder: one per namespace (links, addresses, routes,
//! neighbours, qdiscs, filters, programs), the BPF programs on the path with the
//! foreign ones flagged, the kernel's drop reasons, and sysctls and kernel config.
//!
//! Each renderer returns `Err` with what was wrong when the evidence does not
//! have the shape the probe documents; the bundle records that and goes on.

use serde_json::{Map, Value};
use std::fmt::Write;

/// A program the suite did not attach.
pub const FOREIGN: &str = "FOREIGN (not attached by this suite)";

fn lines(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|l| match l {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "?".into(),
        Some(other) => other.to_string(),
    }
}

/// A namespace's name as a file name: `host`, `pod-a` (anything odd replaced).
pub fn file_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect();
    match clean.trim_matches('.') {
        "" => "unnamed".into(),
        s => s.to_string(),
    }
}

/// `(name, text)` per namespace in the evidence, in its order.
pub fn namespaces(triage: &Map<String, Value>) -> Result<Vec<(String, String)>, String> {
    let Some(list) = triage.get("namespaces") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or("evidence.triage.namespaces is not a list")?;
    let mut out = Vec::new();
    for (i, ns) in list.iter().enumerate() {
        let ns = ns
            .as_object()
            .ok_or_else(|| format!("evidence.triage.namespaces[{i}] is not an object"))?;
        let name = ns
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(|| format!("namespace-{i}"), str::to_string);
        let mut t =
            format!("# network namespace {name} (as the probe saw it while the check ran)\n");
        if let Some(why) = ns.get("unavailable") {
            let _ = writeln!(t, "unavailable: {}", text(Some(why)));
        }
        for (key, title) in [
            ("links", "links"),
            ("addresses", "addresses"),
            ("routes", "routes"),
            ("neighbours", "neighbours"),
            ("qdiscs", "qdiscs"),
            ("filters", "filters"),
        ] {
            if ns.get(key).is_none() {
                continue;
            }
            let entries = lines(ns.get(key));
            let _ = writeln!(t, "\n## {title} ({})", entries.len());
            for l in entries {
                let _ = writeln!(t, "{l}");
            }
        }
        if let Some(bpf) = ns.get("bpf").and_then(Value::as_array) {
            let _ = writeln!(t, "\n## bpf programs ({})", bpf.len());
            for p in bpf {
                let _ = writeln!(t, "{}", device_program(&name, p));
            }
        }
        out.push((file_name(&name), t));
    }
    Ok(out)
}

fn ours(p: &Value) -> &'static str {
    match p.get("ours").and_then(Value::as_bool) {
        Some(true) => "ours",
        Some(false) => FOREIGN,
        None => "owner unknown",
    }
}

fn program_id(p: &Value) -> String {
    let mut s = format!(
        "prog {} {}",
        text(p.get("prog_id")),
        p.get("name").and_then(Value::as_str).unwrap_or("(no name)")
    );
    if let Some(tag) = p.get("tag").and_then(Value::as_str) {
        let _ = write!(s, " tag {tag}");
    }
    s
}

fn device_program(ns: &str, p: &Value) -> String {
    format!(
        "ns {ns}  dev {} (ifindex {})  {}  {}  {}",
        text(p.get("device")),
        text(p.get("ifindex")),
        text(p.get("attach")),
        program_id(p),
        ours(p)
    )
}

/// Every BPF program on the path: on the namespaces' devices, on the probe's
/// cgroup, as netfilter links; the foreign ones flagged. `(text, foreign count)`.
pub fn programs(triage: &Map<String, Value>) -> Result<(String, usize), String> {
    let mut t = String::from(
        "# BPF programs where the check's packets pass: tc/TCX/XDP on the path's devices,\n\
         # the probe cgroup's effective programs, netfilter BPF links.\n\
         # `ours` were attached by this suite; anything else is flagged FOREIGN.\n",
    );
    let mut foreign = 0;
    let mut count = |p: &Value| {
        if p.get("ours").and_then(Value::as_bool) == Some(false) {
            foreign += 1;
        }
    };
    let _ = writeln!(t, "\n## devices");
    let mut any = false;
    if let Some(list) = triage.get("namespaces") {
        let list = list
            .as_array()
            .ok_or("evidence.triage.namespaces is not a list")?;
        for ns in list {
            let name = ns.get("name").and_then(Value::as_str).unwrap_or("?");
            for p in ns
                .get("bpf")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                count(p);
                any = true;
                let _ = writeln!(t, "{}", device_program(name, p));
            }
        }
    }
    if !any {
        let _ = writeln!(t, "(none)");
    }
    let _ = writeln!(t, "\n## cgroup");
    match triage.get("cgroup") {
        None => {
            let _ = writeln!(t, "(not collected)");
        }
        Some(cg) => {
            let path = text(cg.get("path"));
            if let Some(why) = cg.get("unavailable") {
                let _ = writeln!(t, "cgroup {path}: unavailable: {}", text(Some(why)));
            }
            let progs = cg.get("programs").and_then(Value::as_array);
            for p in progs.into_iter().flatten() {
                count(p);
                let _ = writeln!(
                    t,
                    "cgroup {path}  {}  {}  {}",
                    text(p.get("attach")),
                    program_id(p),
                    ours(p)
                );
            }
            if progs.is_some_and(|p| p.is_empty()) {
                let _ = writeln!(t, "cgroup {path}: no programs");
            }
            for e in lines(cg.get("errors")) {
                let _ = writeln!(t, "error: {e}");
            }
        }
    }
    let _ = writeln!(t, "\n## netfilter links");
    match triage.get("netfilter_links").and_then(Value::as_array) {
        None => {
            let _ = writeln!(t, "(not collected)");
        }
        Some(list) if list.is_empty() => {
            let _ = writeln!(t, "(none)");
        }
        Some(list) => {
            for p in list {
                count(p);
                let _ = writeln!(
                    t,
                    "netfilter link {} pf {} hooknum {} priority {}  {}  {}",
                    text(p.get("link_id")),
                    text(p.get("pf")),
                    text(p.get("hooknum")),
                    text(p.get("priority")),
                    program_id(p),
                    ours(p)
                );
            }
        }
    }
    Ok((t, foreign))
}

/// Programs with `ours: false`, one phrase each: `prog 77 cil_xdp on eth0 (xdp) in ns host`.
pub fn foreign_programs(triage: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    let not_ours = |p: &Value| p.get("ours").and_then(Value::as_bool) == Some(false);
    for ns in triage
        .get("namespaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = ns.get("name").and_then(Value::as_str).unwrap_or("?");
        for p in ns
            .get("bpf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|p| not_ours(p))
        {
            out.push(format!(
                "{} on {} ({}) in ns {name}",
                program_id(p),
                text(p.get("device")),
                text(p.get("attach"))
            ));
        }
    }
    if let Some(cg) = triage.get("cgroup") {
        for p in cg
            .get("programs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|p| not_ours(p))
        {
            out.push(format!(
                "{} on cgroup {} ({})",
                program_id(p),
                text(cg.get("path")),
                text(p.get("attach"))
            ));
        }
    }
    for p in triage
        .get("netfilter_links")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| not_ours(p))
    {
        out.push(format!(
            "{} as netfilter link {} (pf {}, hooknum {})",
            program_id(p),
            text(p.get("link_id")),
            text(p.get("pf")),
            text(p.get("hooknum"))
        ));
    }
    out
}

/// The kernel's drop reasons while the check ran, most frequent first.
pub fn drops(triage: &Map<String, Value>) -> Result<String, String> {
    let mut t = String::from("# kernel drop reasons (skb:kfree_skb) while the check ran\n");
    let unavailable = triage
        .get("unavailable")
        .and_then(|u| u.get("drops"))
        .or_else(|| triage.get("drops").and_then(|d| d.get("unavailable")));
    if let Some(why) = unavailable {
        let _ = writeln!(t, "unavailable: {}", text(Some(why)));
    }
    let Some(drops) = triage.get("drops") else {
        if unavailable.is_none() {
            let _ = writeln!(t, "not collected (no evidence.triage.drops)");
        }
        return Ok(t);
    };
    if let Some(source) = drops.get("source") {
        let _ = writeln!(t, "source: {}", text(Some(source)));
    }
    let Some(list) = drops.get("by_reason") else {
        return Ok(t);
    };
    let list = list
        .as_array()
        .ok_or("evidence.triage.drops.by_reason is not a list")?;
    let mut rows: Vec<(u64, String, String)> = list
        .iter()
        .map(|d| {
            (
                d.get("count").and_then(Value::as_u64).unwrap_or(0),
                text(d.get("reason")),
                text(d.get("location")),
            )
        })
        .collect();
    rows.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| a.1.cmp(&b.1))
            .then_with(|| a.2.cmp(&b.2))
    });
    if rows.is_empty() {
        let _ = writeln!(t, "no drops recorded");
        return Ok(t);
    }
    let width = rows.iter().map(|r| r.1.len()).max().unwrap_or(6).max(6);
    let _ = writeln!(t, "{:>7}  {:<width$}  location", "count", "reason");
    for (count, reason, location) in rows {
        let _ = writeln!(t, "{count:>7}  {reason:<width$}  {location}");
    }
    Ok(t)
}

/// Sysctls and kernel config lines, and every part the probe could not collect.
pub fn kernel(triage: &Map<String, Value>) -> Result<String, String> {
    let mut t = String::new();
    for (key, title) in [("sysctls", "sysctls"), ("kernel_config", "kernel config")] {
        let _ = writeln!(t, "## {title}");
        match triage.get(key) {
            None => {
                let _ = writeln!(t, "(not collected)");
            }
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let _ = writeln!(t, "{k} = {}", text(Some(v)));
                }
            }
            Some(_) => return Err(format!("evidence.triage.{key} is not an object")),
        }
        t.push('\n');
    }
    let _ = writeln!(t, "## unavailable");
    match triage.get("unavailable").and_then(Value::as_object) {
        Some(m) if !m.is_empty() => {
            for (k, v) in m {
                let _ = writeln!(t, "{k}: {}", text(Some(v)));
            }
        }
        _ => {
            let _ = writeln!(t, "(nothing: every part was collected)");
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn triage() -> Map<String, Value> {
        json!({
            "namespaces": [{"name": "host", "links": ["1: lo"], "addresses": [], "routes": ["r1"],
                "neighbours": [], "qdiscs": [], "filters": [],
                "bpf": [
                    {"device": "lxc1", "ifindex": 4, "attach": "tcx ingress", "prog_id": 1, "name": "hook", "tag": "ab", "ours": true},
                    {"device": "eth0", "ifindex": 2, "attach": "xdp", "prog_id": 77, "name": "cil_xdp_entry", "ours": false},
                ]},
                {"name": "pod/b", "unavailable": "setns: EPERM"}],
            "cgroup": {"path": "/sys/fs/cgroup/x", "programs": [{"attach": "cgroup_inet_egress", "prog_id": 9, "name": "x", "ours": false}]},
            "netfilter_links": [],
            "drops": {"source": "tracefs", "by_reason": [
                {"reason": "NO_SOCKET", "location": "__udp4_lib_rcv", "count": 2},
                {"reason": "TC_EGRESS", "location": "__dev_queue_xmit", "count": 10}]},
            "sysctls": {"net.ipv4.ip_forward": "1"},
            "unavailable": {"kernel_config": "no /proc/config.gz"},
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn namespaces_one_file_each() {
        let ns = namespaces(&triage()).unwrap();
        assert_eq!(ns[0].0, "host");
        assert!(ns[0].1.contains("## routes (1)\nr1\n"), "{}", ns[0].1);
        assert!(
            ns[0]
                .1
                .contains(&format!("prog 77 cil_xdp_entry  {FOREIGN}")),
            "{}",
            ns[0].1
        );
        assert_eq!(ns[1].0, "pod_b");
        assert!(ns[1].1.contains("unavailable: setns: EPERM"));
        let bad = json!({"namespaces": 3}).as_object().unwrap().clone();
        assert!(namespaces(&bad).is_err());
    }

    #[test]
    fn programs_flag_foreign_ones() {
        let (text, foreign) = programs(&triage()).unwrap();
        assert_eq!(foreign, 2);
        assert!(
            text.contains("ns host  dev lxc1 (ifindex 4)  tcx ingress  prog 1 hook tag ab  ours"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "cgroup /sys/fs/cgroup/x  cgroup_inet_egress  prog 9 x  {FOREIGN}"
            )),
            "{text}"
        );
        assert_eq!(
            foreign_programs(&triage()),
            [
                "prog 77 cil_xdp_entry on eth0 (xdp) in ns host",
                "prog 9 x on cgroup /sys/fs/cgroup/x (cgroup_inet_egress)"
            ]
        );
    }

    #[test]
    fn drops_most_frequent_first_and_kernel_parts() {
        let d = drops(&triage()).unwrap();
        let tc = d.find("TC_EGRESS").unwrap();
        assert!(tc < d.find("NO_SOCKET").unwrap(), "{d}");
        let none = json!({"unavailable": {"drops": "tracefs not mounted"}})
            .as_object()
            .unwrap()
            .clone();
        assert!(
            drops(&none)
                .unwrap()
                .contains("unavailable: tracefs not mounted")
        );
        let k = kernel(&triage()).unwrap();
        assert!(k.contains("net.ipv4.ip_forward = 1"));
        assert!(k.contains("## kernel config\n(not collected)"), "{k}");
        assert!(k.contains("kernel_config: no /proc/config.gz"));
    }
}
