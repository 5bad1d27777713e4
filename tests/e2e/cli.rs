//! `cargo xtask conformance` as a user meets it: a full run writes reports that
//! validate, a broken datapath exits 1 with the right regression, and bad input exits
//! 2 with one line naming what is wrong.

use crate::support::{
    Needs, Test, TestResult, binaries, ensure, expected_observations, repo_root, variants_of,
    verdicts, xtask,
};
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
        "cli::an_expected_failure_accepts_only_its_own_failure",
        Needs::Root,
        an_expected_failure_accepts_only_its_own_failure,
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
        "cli::a_cluster_run_without_its_kubeconfig_is_one_line_exit_3",
        Needs::Nothing,
        a_cluster_run_without_its_kubeconfig_is_one_line_exit_3,
    ),
    (
        "cli::target_lists_are_checked_before_anything_runs",
        Needs::Nothing,
        target_lists_are_checked_before_anything_runs,
    ),
];

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
    ensure(v.len() == expected_observations(), || {
        format!("{} verdicts, want {}", v.len(), expected_observations())
    })?;
    for (check, variant, verdict) in &v {
        let want = crate::support::clean_verdict(check, variant);
        ensure(verdict == want, || {
            format!("{check}[{variant}]: {verdict}, want {want}")
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
    let v = verdicts(dir.path())?;
    ensure(v.len() == expected_observations(), || {
        format!("{} verdicts, want {}", v.len(), expected_observations())
    })?;
    for (check, variant, verdict) in v {
        let want = if check == "datapath.redirect-peer" {
            "regression"
        } else {
            crate::support::clean_verdict(&check, &variant)
        };
        ensure(verdict == want, || {
            format!("{check}[{variant}]: {verdict}, want {want}")
        })?;
    }
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).map_err(|e| e.to_string())?;
    let failures = variants_of("datapath.redirect-peer");
    ensure(junit.matches("<failure").count() == failures, || {
        format!("want {failures} failures in JUnit:\n{junit}")
    })?;
    validate_junit(&dir.path().join("junit.xml"))
}

/// A matrix that expects the scrub check to fail here the CVE-2025-37959 way
/// (`not-scrubbed`): the check failing any other way is a regression that names
/// both failures, and the check passing is an unexpected pass.
fn an_expected_failure_accepts_only_its_own_failure() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let matrix = dir.path().join("expects-unfixed.toml");
    std::fs::write(
        &matrix,
        "schema = 1\nenvironment = \"vm\"\n\n[[expect]]\ncheck = \"datapath.redirect-peer.scrub\"\noutcome = \"fail\"\nfailure = \"not-scrubbed\"\nreason = \"test: pretend this kernel lacks the fix\"\nreference = \"https://nvd.nist.gov/vuln/detail/CVE-2025-37959\"\n",
    )
    .map_err(|e| e.to_string())?;
    let matrix = matrix.display().to_string();
    let base = [
        "conformance",
        "--env",
        "vm",
        "--matrix",
        &matrix,
        "--test",
        "redirect-peer\\.scrub$",
    ];
    let reason_of = |dir: &Path| -> Result<String, String> {
        let text = std::fs::read_to_string(dir.join("run.json")).map_err(|e| e.to_string())?;
        let run: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        Ok(run["verdicts"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    };

    // Dropped before the hook: a failure, but not the one expected.
    let out = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut args = base.to_vec();
    args.extend(["--fault", "datapath.redirect-peer.scrub=drop"]);
    let (code, stdout, stderr) = xtask(&args, out.path())?;
    ensure(code == Some(1), || {
        format!("exit {code:?}\n{stdout}\n{stderr}")
    })?;
    let v = verdicts(out.path())?;
    ensure(
        v == [(
            "datapath.redirect-peer.scrub".to_string(),
            "default".to_string(),
            "regression".to_string(),
        )],
        || format!("{v:?}"),
    )?;
    let reason = reason_of(out.path())?;
    ensure(
        reason.contains("expects failure `not-scrubbed`")
            && reason.contains("but the probe saw `not-delivered`"),
        || format!("reason: {reason}"),
    )?;

    // This kernel scrubs: the check passes, which the matrix did not expect.
    let out = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (code, stdout, stderr) = xtask(&base, out.path())?;
    ensure(code == Some(0), || {
        format!("exit {code:?}\n{stdout}\n{stderr}")
    })?;
    let v = verdicts(out.path())?;
    ensure(v.len() == 1 && v[0].2 == "unexpected-pass", || {
        format!("{v:?}")
    })
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

/// Every target is built now: `--target cluster` reads its kubeconfig at
/// preflight, and a missing one is infrastructure (exit 3), one line, no report.
fn a_cluster_run_without_its_kubeconfig_is_one_line_exit_3() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let absent = dir.path().join("no-kubeconfig");
    let absent = absent.display().to_string();
    let (code, _, stderr) = xtask(
        &[
            "conformance",
            "--target",
            "cluster",
            "--kubeconfig",
            &absent,
        ],
        dir.path(),
    )?;
    ensure(code == Some(3), || {
        format!("exit {code:?}, stderr: {stderr}")
    })?;
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure(
        lines.len() == 1 && lines[0].contains(&format!("kubeconfig from --kubeconfig {absent}")),
        || format!("want one line naming the kubeconfig, got:\n{stderr}"),
    )?;
    ensure(!dir.path().join("run.json").exists(), || {
        "report written for a run that did not start".into()
    })?;
    // Its flags are for it alone.
    rejected(
        &["conformance", "--target", "lab", "--kubeconfig", &absent],
        &["--kubeconfig is for --target cluster"],
    )
}

/// `--target a,b`: every name is checked, in one line with exit 2, before a build or a probe.
fn target_lists_are_checked_before_anything_runs() -> TestResult {
    rejected(
        &["conformance", "--target", "lab,cluster,kvm"],
        &["unknown target `kvm`"],
    )?;
    rejected(&["conformance", "--target", "lab,lab"], &["`lab` twice"])?;
    rejected(
        &["conformance", "--target", "lab,nope"],
        &["unknown target `nope`"],
    )
}
