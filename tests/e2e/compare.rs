//! `cargo xtask compare` on real runs: a clean lab run against one with a real
//! datapath fault (`--fault datapath.redirect-peer=drop`, a program dropping the
//! check's traffic on pod A's eth0) shows exactly that check's variants as new
//! failures, with the hop where the packets stopped, and exits 1; a run
//! compared with itself exits 0; bad input files exit 2 in one line naming them.

use crate::support::{Needs, Test, TestResult, binaries, ensure, repo_root, variants_of, xtask};
use std::path::Path;
use std::process::Command;

pub const TESTS: &[(&str, Needs, Test)] = &[
    (
        "compare::a_redirect_peer_fault_is_exactly_its_new_failures",
        Needs::Root,
        a_redirect_peer_fault_is_exactly_its_new_failures,
    ),
    (
        "compare::bad_input_files_exit_2_naming_them",
        Needs::Nothing,
        bad_input_files_exit_2_naming_them,
    ),
];

const FAULTED: &str = "datapath.redirect-peer";

/// `xtask compare <args>`: (exit code, stdout, stderr).
fn compare(args: &[&str]) -> Result<(Option<i32>, String, String), String> {
    let (_, xtask) = binaries()?;
    let out = Command::new(xtask)
        .current_dir(repo_root())
        .arg("compare")
        .args(args)
        .output()
        .map_err(|e| format!("run xtask compare: {e}"))?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A full lab run with `extra` arguments, its reports in `dir`.
fn lab_run(dir: &Path, extra: &[&str], want: i32) -> TestResult {
    let mut args = vec!["conformance", "--env", "vm"];
    args.extend(extra);
    let (code, stdout, stderr) = xtask(&args, dir)?;
    ensure(code == Some(want), || {
        format!("conformance {extra:?}: exit {code:?}, want {want}\n{stdout}\n{stderr}")
    })
}

fn a_redirect_peer_fault_is_exactly_its_new_failures() -> TestResult {
    let clean = tempfile::tempdir().map_err(|e| e.to_string())?;
    let faulted = tempfile::tempdir().map_err(|e| e.to_string())?;
    lab_run(clean.path(), &[], 0)?;
    let fault = format!("{FAULTED}=drop");
    lab_run(faulted.path(), &["--fault", &fault], 1)?;
    let a = clean.path().join("run.json");
    let b = faulted.path().join("run.json");
    let out = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (json, md, junit) = (
        out.path().join("compare.json"),
        out.path().join("compare.md"),
        out.path().join("compare.xml"),
    );
    let s = |p: &Path| p.display().to_string();
    let (code, stdout, stderr) = compare(&[
        &s(&a),
        &s(&b),
        "--json",
        &s(&json),
        "--markdown",
        &s(&md),
        "--junit",
        &s(&junit),
    ])?;
    ensure(code == Some(1), || {
        format!("compare: exit {code:?}, want 1\n{stdout}\n{stderr}")
    })?;

    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&json).map_err(|e| format!("read {}: {e}", json.display()))?,
    )
    .map_err(|e| format!("compare.json: {e}"))?;
    let rows = doc["rows"].as_array().ok_or("compare.json has no rows")?;
    ensure(
        rows.len() == crate::support::expected_observations(),
        || format!("{} rows, want one per catalogue variant", rows.len()),
    )?;
    let new: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["class"] == "new-failure")
        .collect();
    let names: Vec<String> = new
        .iter()
        .map(|r| {
            format!(
                "{}[{}]",
                r["check"].as_str().unwrap_or(""),
                r["variant"].as_str().unwrap_or("")
            )
        })
        .collect();
    ensure(
        new.len() == variants_of(FAULTED) && new.iter().all(|r| r["check"] == FAULTED),
        || format!("new failures {names:?}, want every variant of {FAULTED} and nothing else"),
    )?;
    for r in &new {
        ensure(r["current"]["failure"] == "not-delivered", || {
            format!("{}: failure {}", r["variant"], r["current"]["failure"])
        })?;
        // The drop sits on pod A's eth0 egress: that hop went from all to none.
        let moved = r["evidence"].as_array().cloned().unwrap_or_default();
        ensure(
            moved.iter().any(|e| {
                e["what"] == "pod A eth0 tx" && e["baseline"] == "5/5" && e["current"] == "0/5"
            }),
            || {
                format!(
                    "{}: no `pod A eth0 tx: 5/5 → 0/5` in the evidence diff: {moved:?}",
                    r["variant"]
                )
            },
        )?;
    }
    ensure(
        rows.iter()
            .filter(|r| r["check"] != FAULTED)
            .all(|r| r["class"] == "unchanged"),
        || "a check other than the faulted one changed its verdict".to_string(),
    )?;
    ensure(stdout.contains("pod A eth0 tx: 5/5 → 0/5"), || {
        format!("the table does not name the hop:\n{stdout}")
    })?;
    ensure(stdout.contains("got worse (exit 1)"), || stdout.clone())?;
    let xml = std::fs::read_to_string(&junit).map_err(|e| e.to_string())?;
    ensure(
        xml.matches("<failure type=\"new-failure\"").count() == variants_of(FAULTED),
        || format!("JUnit failures:\n{xml}"),
    )?;
    let summary = std::fs::read_to_string(&md).map_err(|e| e.to_string())?;
    ensure(
        summary.starts_with("## cilium-conformance compare: got worse (exit 1)")
            && summary.contains("| pod A eth0 tx | 5/5 | 0/5 |")
            && summary.contains("<details><summary>"),
        || format!("Markdown:\n{summary}"),
    )?;

    // The same run on both sides: nothing got worse.
    let (code, stdout, stderr) = compare(&[&s(&a), &s(&a)])?;
    ensure(code == Some(0), || {
        format!("self-compare: exit {code:?}, want 0\n{stdout}\n{stderr}")
    })?;
    ensure(stdout.contains("nothing got worse (exit 0)"), || {
        stdout.clone()
    })?;
    // And the faulted run against itself: still failing is not worse.
    let (code, stdout, _) = compare(&[&s(&b), &s(&b)])?;
    ensure(code == Some(0), || {
        format!("faulted self-compare: exit {code:?}\n{stdout}")
    })
}

fn bad_input_files_exit_2_naming_them() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let good = repo_root().join("fixtures/compare/baseline.json");
    let text = std::fs::read_to_string(&good).map_err(|e| e.to_string())?;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "truncated.json",
            text[..text.floor_char_boundary(text.len() / 3)].to_string(),
            "truncated: the JSON ends at line ",
        ),
        (
            "syntax.json",
            "{\n  \"schema\": 2,\n  oops\n}\n".into(),
            "invalid JSON at line 3 column 3",
        ),
        (
            "missing.json",
            text.replacen("\"run_id\"", "\"run_idx\"", 1),
            "run_id: missing field",
        ),
        ("empty.json", String::new(), "empty file, not a run report"),
    ];
    let outputs = dir.path().join("out.md");
    for (name, body, want) in &cases {
        let path = dir.path().join(name);
        std::fs::write(&path, body).map_err(|e| e.to_string())?;
        let shown = path.display().to_string();
        let (code, stdout, stderr) = compare(&[
            good.to_str().unwrap_or_default(),
            &shown,
            "--markdown",
            outputs.to_str().unwrap_or_default(),
        ])?;
        let lines: Vec<&str> = stderr.lines().collect();
        ensure(code == Some(2), || {
            format!("{name}: exit {code:?}, want 2\n{stderr}")
        })?;
        ensure(
            lines.len() == 1
                && lines[0].starts_with(&format!("error: {shown}: "))
                && lines[0].contains(want),
            || format!("{name}: want one line naming the file with `{want}`, got:\n{stderr}"),
        )?;
        ensure(stdout.is_empty() && !outputs.exists(), || {
            format!("{name}: a report was written for a bad input\n{stdout}")
        })?;
    }
    let (code, _, stderr) = compare(&[good.to_str().unwrap_or_default()])?;
    ensure(
        code == Some(2) && stderr.starts_with("error: no current run"),
        || format!("one side only: exit {code:?}\n{stderr}"),
    )
}
