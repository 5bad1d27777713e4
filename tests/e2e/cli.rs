//! `cargo xtask conformance` as a user meets it: a full run writes reports that
//! validate, a broken datapath exits 1 with the right regression, and bad input exits
//! 2 with one line naming what is wrong.

use crate::support::{
    Needs, Test, TestResult, binaries, ensure, repo_root, report_args, run_xtask,
};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

pub const TESTS: &[(&str, Needs, Test)] = &[
    (
        "cli::full_run_writes_valid_reports",
        Needs::Root,
        full_run_writes_valid_reports,
    ),
    (
        "cli::broken_datapath_is_a_regression",
        Needs::Root,
        broken_datapath_is_a_regression,
    ),
    (
        "cli::malformed_matrix_is_rejected_with_its_line",
        Needs::Nothing,
        malformed_matrix_is_rejected_with_its_line,
    ),
    (
        "cli::unknown_test_pattern_is_rejected",
        Needs::Nothing,
        unknown_test_pattern_is_rejected,
    ),
    (
        "cli::unwritable_report_path_is_rejected",
        Needs::Nothing,
        unwritable_report_path_is_rejected,
    ),
    (
        "cli::unbuilt_target_is_rejected",
        Needs::Nothing,
        unbuilt_target_is_rejected,
    ),
];

fn xtask(args: &[&str], dir: &Path) -> Result<(Option<i32>, String, String), String> {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(report_args(dir));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = run_xtask(&refs)?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn verdicts(dir: &Path) -> Result<Vec<(String, String, String)>, String> {
    let text =
        std::fs::read_to_string(dir.join("run.json")).map_err(|e| format!("read run.json: {e}"))?;
    let run: Value = serde_json::from_str(&text).map_err(|e| format!("parse run.json: {e}"))?;
    let list = run["verdicts"]
        .as_array()
        .ok_or("run.json has no verdicts")?;
    Ok(list
        .iter()
        .map(|v| {
            (
                v["check"].as_str().unwrap_or_default().to_string(),
                v["variant"].as_str().unwrap_or_default().to_string(),
                v["verdict"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// Validates JUnit against ../shared/schemas/junit-10.xsd with xmllint. Where the
/// tool or schema is missing this says so and goes on: schema validation has its own
/// test (suite/tests/xsd.rs), which is counted as ignored there.
fn validate_junit(path: &Path) -> TestResult {
    let xsd = repo_root().join("../shared/schemas/junit-10.xsd");
    if !xsd.exists() || Command::new("xmllint").arg("--version").output().is_err() {
        eprintln!(
            "JUnit of this run not schema-validated: xmllint or {} missing",
            xsd.display()
        );
        return Ok(());
    }
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&xsd)
        .arg(path)
        .output()
        .map_err(|e| e.to_string())?;
    ensure(out.status.success(), || {
        format!(
            "JUnit does not validate: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn full_run_writes_valid_reports() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (code, stdout, stderr) = xtask(&["conformance", "--env", "vm"], dir.path())?;
    ensure(code == Some(0), || {
        format!("exit {code:?}\n{stdout}\n{stderr}")
    })?;
    let v = verdicts(dir.path())?;
    ensure(v.len() == 11, || format!("{} verdicts", v.len()))?;
    for (check, variant, verdict) in &v {
        ensure(verdict == "pass", || {
            format!("{check}[{variant}]: {verdict}")
        })?;
    }
    validate_junit(&dir.path().join("junit.xml"))?;
    let md = std::fs::read_to_string(dir.path().join("summary.md")).map_err(|e| e.to_string())?;
    ensure(md.contains("datapath.redirect-peer.scrub"), || {
        "markdown lacks the scrub check".into()
    })?;
    ensure(stdout.contains("datapath.redirect-peer"), || {
        format!("no table on stdout:\n{stdout}")
    })
}

fn broken_datapath_is_a_regression() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (code, stdout, stderr) = xtask(
        &[
            "conformance",
            "--env",
            "vm",
            "--fault",
            "datapath.redirect-peer=drop",
        ],
        dir.path(),
    )?;
    ensure(code == Some(1), || {
        format!("exit {code:?}\n{stdout}\n{stderr}")
    })?;
    for (check, variant, verdict) in verdicts(dir.path())? {
        let want = if check == "datapath.redirect-peer" {
            "regression"
        } else {
            "pass"
        };
        ensure(verdict == want, || {
            format!("{check}[{variant}]: {verdict}, want {want}")
        })?;
    }
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).map_err(|e| e.to_string())?;
    ensure(junit.matches("<failure").count() == 2, || {
        format!("want 2 failures in JUnit:\n{junit}")
    })?;
    validate_junit(&dir.path().join("junit.xml"))
}

/// Exit 2 with exactly one line on stderr containing each of `needles`, and no report.
fn rejected(args: &[&str], needles: &[&str]) -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (code, _, stderr) = xtask(args, dir.path())?;
    ensure(code == Some(2), || {
        format!("exit {code:?}, stderr: {stderr}")
    })?;
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure(lines.len() == 1, || {
        format!("want one line, got:\n{stderr}")
    })?;
    for n in needles {
        ensure(lines[0].contains(n), || {
            format!("`{n}` not in: {}", lines[0])
        })?;
    }
    ensure(!dir.path().join("run.json").exists(), || {
        "report written for bad input".into()
    })
}

fn malformed_matrix_is_rejected_with_its_line() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let matrix = dir.path().join("bad.toml");
    std::fs::write(
        &matrix,
        "schema = 1\nenvironment = \"vm\"\n\n[[expect]]\ncheck = \"datapath.redirect-per\"\noutcome = \"pass\"\nreason = \"typo\"\n",
    )
    .map_err(|e| e.to_string())?;
    rejected(
        &["conformance", "--matrix", &matrix.display().to_string()],
        &["bad.toml:5", "datapath.redirect-per"],
    )?;
    std::fs::write(
        &matrix,
        "schema = 1\nenvironment = \"vm\"\n\n[[expect]]\ncheck = \"tc.attach.tcx\"\noutcome = \"pass\"\nreason = \"r\"\n[[expect.unless]]\nwhen = \"kernal >= 6.6\"\noutcome = \"fail\"\nreason = \"r\"\n",
    )
    .map_err(|e| e.to_string())?;
    rejected(
        &["conformance", "--matrix", &matrix.display().to_string()],
        &["bad.toml:9", "kernal"],
    )
}

fn unknown_test_pattern_is_rejected() -> TestResult {
    rejected(
        &["conformance", "--test", "datapath.nope"],
        &["datapath.nope"],
    )
}

fn unwritable_report_path_is_rejected() -> TestResult {
    let (probe, xtask) = binaries()?;
    let out = Command::new(xtask)
        .current_dir(repo_root())
        .args(["conformance", "--probe"])
        .arg(probe)
        .args(["--junit-file", "/proc/no-such-dir/junit.xml"])
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(out.status.code() == Some(2), || {
        format!("exit {:?}: {stderr}", out.status.code())
    })?;
    ensure(
        stderr.lines().count() == 1 && stderr.contains("/proc/no-such-dir/junit.xml"),
        || stderr.to_string(),
    )
}

fn unbuilt_target_is_rejected() -> TestResult {
    rejected(&["conformance", "--target", "cluster"], &["cluster"])
}
