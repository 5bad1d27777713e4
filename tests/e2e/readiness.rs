//! Cilium feature readiness from a real lab run, judged for a team's Helm values
//! (`--cilium-values`), and a values file that does not parse.

use crate::support::{Needs, Test, TestResult, ensure, repo_root, xtask};
use serde_json::Value;

pub const TESTS: &[(&str, Needs, Test)] = &[
    (
        "readiness::production_values_are_judged_on_this_kernel",
        Needs::Root,
        production_values_are_judged_on_this_kernel,
    ),
    (
        "readiness::a_bad_values_file_exits_2_with_its_line",
        Needs::Nothing,
        a_bad_values_file_exits_2_with_its_line,
    ),
];

/// Whether a setting's needs name a check this suite version does not have.
fn needs_unplanned(row: &Value) -> bool {
    row["needs"].as_array().is_some_and(|needs| {
        needs.iter().any(|n| {
            let need = n["need"].as_str().unwrap_or_default();
            let check = need.split('[').next().unwrap_or_default();
            conformance_contract::find_check(check).is_none()
        })
    })
}

fn production_values_are_judged_on_this_kernel() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let values = repo_root().join("fixtures/cilium-values/production.yaml");
    let (code, stdout, stderr) = xtask(
        &[
            "conformance",
            "--env",
            "vm",
            "--cilium-values",
            &values.display().to_string(),
        ],
        dir.path(),
    )?;
    let text = std::fs::read_to_string(dir.path().join("run.json"))
        .map_err(|e| format!("read run.json (exit {code:?}): {e}\n{stderr}"))?;
    let run: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    ensure(
        run["cilium_values"]
            .as_str()
            .is_some_and(|f| f.ends_with("production.yaml")),
        || format!("cilium_values: {}", run["cilium_values"]),
    )?;
    let rows = run["instances"][0]["readiness"]
        .as_array()
        .ok_or("run.json has no readiness for the lab")?;
    ensure(rows.len() == conformance_contract::SETTINGS.len(), || {
        format!("{} readiness rows", rows.len())
    })?;
    let row = |id: &str| -> Result<&Value, String> {
        rows.iter()
            .find(|r| r["setting"] == id)
            .ok_or_else(|| format!("no readiness row for {id}"))
    };
    let state = |id: &str| -> Result<(String, String), String> {
        let r = row(id)?;
        Ok((
            r["state"].as_str().unwrap_or_default().to_string(),
            r["wanted"]["outcome"].as_str().unwrap_or("off").to_string(),
        ))
    };
    // What kube-hetzner's values turn on, and what a healthy kernel gives them.
    for id in ["base-datapath", "bpffs-mount", "native-routing"] {
        ensure(state(id)? == ("ready".into(), "supported".into()), || {
            format!(
                "{id}: {:?}, {}",
                state(id),
                row(id).map(|r| r["reason"].clone()).unwrap_or_default()
            )
        })?;
    }
    let tcx = run["instances"][0]["facts"]["tcx"].as_bool() == Some(true);
    let want_tcx = if tcx { "supported" } else { "falls-back" };
    ensure(state("tcx-attach")?.1 == want_tcx, || {
        format!("tcx-attach with tcx={tcx}: {:?}", state("tcx-attach"))
    })?;
    ensure(state("legacy-tc-attach")?.1 == "off", || {
        "legacy-tc-attach is not turned on by TCX's default".into()
    })?;
    // Settings needing checks this suite version does not have are unknown, on or off.
    for r in rows.iter().filter(|r| needs_unplanned(r)) {
        ensure(r["state"] == "unknown", || {
            format!(
                "{}: {} although it needs an unplanned check",
                r["setting"], r["state"]
            )
        })?;
        ensure(
            r["reason"]
                .as_str()
                .is_some_and(|s| s.contains("which this suite version does not check yet")),
            || format!("{}: {}", r["setting"], r["reason"]),
        )?;
    }
    for id in [
        "bpf-host-routing",
        "kube-proxy-replacement",
        "bpf-masquerade",
    ] {
        ensure(row(id)?["wanted"].is_object(), || {
            format!("{id} is not turned on by the production values")
        })?;
    }
    // Exit 1 exactly when the values turn on something that cannot run here.
    let blocked: Vec<&str> = rows
        .iter()
        .filter(|r| r["wanted"]["outcome"] == "not-supported")
        .filter_map(|r| r["setting"].as_str())
        .collect();
    let want = if blocked.is_empty() { 0 } else { 1 };
    ensure(code == Some(want), || {
        format!("exit {code:?}, want {want} (blocked: {blocked:?})\n{stdout}\n{stderr}")
    })?;
    // The other formats carry it too.
    let md = std::fs::read_to_string(dir.path().join("summary.md")).map_err(|e| e.to_string())?;
    ensure(md.contains("### Cilium feature readiness"), || {
        "markdown lacks the readiness section".into()
    })?;
    ensure(md.contains("### Cilium values `"), || {
        "markdown lacks the values section".into()
    })?;
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).map_err(|e| e.to_string())?;
    ensure(
        junit.contains("<testcase name=\"base-datapath\" classname=\"readiness\""),
        || "JUnit lacks the readiness testcases".into(),
    )?;
    ensure(
        stdout.contains("SETTING") && stdout.contains("cilium values "),
        || format!("no readiness block on stdout:\n{stdout}"),
    )
}

fn a_bad_values_file_exits_2_with_its_line() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let values = dir.path().join("bad.yaml");
    std::fs::write(
        &values,
        "ipam:\n  mode: kubernetes\nkubeProxyReplacement: maybe\n",
    )
    .map_err(|e| e.to_string())?;
    let (code, _, stderr) = xtask(
        &[
            "conformance",
            "--cilium-values",
            &values.display().to_string(),
        ],
        dir.path(),
    )?;
    ensure(code == Some(2), || format!("exit {code:?}: {stderr}"))?;
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure(lines.len() == 1, || {
        format!("want one line, got:\n{stderr}")
    })?;
    ensure(
        lines[0].contains("bad.yaml:3: kubeProxyReplacement: expected true or false"),
        || format!("not naming file:line and the key: {}", lines[0]),
    )?;
    ensure(!dir.path().join("run.json").exists(), || {
        "report written for a bad values file".into()
    })?;
    // Not YAML at all: the syntax error's line.
    std::fs::write(&values, "bpf:\n  masquerade: true\n   enableTCX: [\n")
        .map_err(|e| e.to_string())?;
    let (code, _, stderr) = xtask(
        &[
            "conformance",
            "--cilium-values",
            &values.display().to_string(),
        ],
        dir.path(),
    )?;
    ensure(code == Some(2), || format!("exit {code:?}: {stderr}"))?;
    ensure(
        stderr.trim().lines().count() == 1 && stderr.contains("bad.yaml:3: yaml: "),
        || format!("syntax error without its line: {stderr}"),
    )
}
