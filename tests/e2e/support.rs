//! Building and running the real binaries, and reading what they print.

use conformance_contract::{Line, Observation};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

pub type TestResult = Result<(), String>;
pub type Test = fn() -> TestResult;

/// What a test needs from the machine beyond a Rust toolchain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    /// Root and a kernel with BPF.
    Root,
    /// Root, BPF, `sudo` and `useradd`, and `CI=true`: the test adds a user and a
    /// sudoers drop-in for the duration of the test, which only a throwaway CI
    /// machine should see.
    RootInCi,
    /// A Docker daemon answering on `DOCKER_HOST` (or /var/run/docker.sock).
    Docker,
    /// Both: the lab and the container target side by side.
    RootAndDocker,
    /// qemu, the static-probe target and one cached x86_64 kernel (tests/e2e/vm.rs).
    Vm,
    /// The same with the x86_64 6.12 kernel (netkit, geneve).
    Vm612,
    /// Both qemus and targets, the six kernels of the CI matrix, and root for the
    /// host beside them.
    VmMatrix,
}

impl Needs {
    /// `Some(why)` when this machine cannot give what the test needs.
    pub fn missing(self) -> Option<String> {
        match self {
            Needs::Nothing => None,
            Needs::Root => missing_privileges(),
            Needs::Docker => crate::image::docker_missing(),
            Needs::RootAndDocker => missing_privileges().or_else(crate::image::docker_missing),
            Needs::Vm => crate::vm::one_missing(),
            Needs::Vm612 => crate::vm::kernel_612_missing(),
            Needs::VmMatrix => crate::vm::matrix_missing(),
            Needs::RootInCi => missing_privileges().or_else(|| {
                if std::env::var("CI").as_deref() != Ok("true") {
                    Some("adds a user and a sudoers entry while it runs: only with CI=true".into())
                } else if ["sudo", "useradd", "userdel"]
                    .iter()
                    .any(|t| !tool_exists(t))
                {
                    Some("needs sudo, useradd and userdel".into())
                } else {
                    None
                }
            }),
        }
    }
}

fn tool_exists(name: &str) -> bool {
    conformance_suite::target::find_on_path(name).is_some()
}

/// `Some(why)` when this machine cannot run the privileged tests: asked of the
/// kernel once (root, capabilities, a BPF load, a namespace with a veth pair), the
/// same helper `probes/tests/kernel.rs` uses.
pub fn missing_privileges() -> Option<String> {
    conformance_probes::kernel_support::lab_missing().map(str::to_string)
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Builds the probe and xtask binaries once per test run (debug profile, the same
/// objects `cargo test` built) and returns their paths.
pub fn binaries() -> Result<&'static (PathBuf, PathBuf), String> {
    static BINS: OnceLock<Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    BINS.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(repo_root())
            .args([
                "build",
                "--quiet",
                "-p",
                "conformance-probes",
                "--bin",
                "probe",
                "-p",
                "xtask",
                // `--bin` filters every selected package: without this only `probe`
                // is built and `xtask` exists only if something else built it.
                "--bin",
                "xtask",
            ])
            .output()
            .map_err(|e| format!("run cargo build: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo build failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let dir = target_dir().join("debug");
        Ok((dir.join("probe"), dir.join("xtask")))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// What a probe run printed, parsed.
pub struct ProbeRun {
    pub lines: Vec<Line>,
    pub stderr: String,
    pub code: Option<i32>,
}

impl ProbeRun {
    pub fn observations(&self) -> Vec<&Observation> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Observation(o) => Some(o),
                _ => None,
            })
            .collect()
    }

    pub fn observation(&self, check: &str, variant: &str) -> Result<&Observation, String> {
        self.observations()
            .into_iter()
            .find(|o| o.check == check && o.variant == variant)
            .ok_or_else(|| format!("no observation for {check}[{variant}]"))
    }
}

pub fn run_probe(args: &[&str]) -> Result<ProbeRun, String> {
    let (probe, _) = binaries()?;
    let out = Command::new(probe)
        .arg("run")
        .args(args)
        .output()
        .map_err(|e| format!("run probe: {e}"))?;
    parse_probe_output(&out)
}

pub fn parse_probe_output(out: &Output) -> Result<ProbeRun, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str::<Line>(l).map_err(|e| format!("bad probe line {l}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ProbeRun {
        lines,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    })
}

/// Runs `xtask` with the freshly built probe (no nested release build).
pub fn run_xtask(args: &[&str]) -> Result<Output, String> {
    let (probe, xtask) = binaries()?;
    Command::new(xtask)
        .current_dir(repo_root())
        .args(args)
        .arg("--probe")
        .arg(probe)
        .output()
        .map_err(|e| format!("run xtask: {e}"))
}

/// Observations (and verdicts) a full run yields: one per check and variant,
/// less the pod-level ones (`cluster.*`: a cluster's client pods run them).
pub fn expected_observations() -> usize {
    conformance_contract::CATALOGUE
        .iter()
        .filter(|c| !conformance_contract::pods::is_pod_level(c.id))
        .map(|c| c.variants.len())
        .sum()
}

/// Whether the catalogue expects (check, variant) to fail wherever it runs (no
/// condition on facts), as `env.bpffs.propagation[private]` shows the k3d mount
/// problem on purpose; the shipped matrices add no deviation of their own.
pub fn expected_everywhere_to_fail(check: &str, variant: &str) -> bool {
    conformance_contract::find_check(check).is_some_and(|c| {
        c.expected_failures
            .iter()
            .any(|e| e.when.is_none() && e.variant.is_none_or(|v| v == variant))
    })
}

/// How many planned variants a clean full run reports as `expected-fail`.
pub fn expected_fail_count() -> usize {
    conformance_contract::CATALOGUE
        .iter()
        .flat_map(|c| c.variants.iter().map(move |v| (c.id, *v)))
        .filter(|(c, v)| expected_everywhere_to_fail(c, v))
        .count()
}

/// The facts the probe measures on this machine (`probe facts`), once; `None`
/// when they cannot be read.
fn host_facts() -> Option<&'static conformance_contract::Facts> {
    static FACTS: OnceLock<Option<conformance_contract::Facts>> = OnceLock::new();
    FACTS
        .get_or_init(|| {
            let (probe, _) = binaries().ok()?;
            let out = Command::new(probe).arg("facts").output().ok()?;
            serde_json::from_slice(&out.stdout).ok()
        })
        .as_ref()
}

/// Whether (check, variant) needs a precondition fact this machine's probe
/// measured false (`netkit` on a kernel built without CONFIG_NETKIT): a clean run
/// reports it `unsupported` (or a regression where the fact is expected, which
/// the tests then rightly flag).
pub fn unsupported_here(check: &str, variant: &str) -> bool {
    let (Some(spec), Some(facts)) = (conformance_contract::find_check(check), host_facts()) else {
        return false;
    };
    spec.requirements(variant)
        .any(|f| facts.get(f) == Some(conformance_contract::FactValue::Bool(false)))
}

/// How many planned variants a clean full run on this machine reports as
/// `unsupported` (a precondition fact measured false here, see [`unsupported_here`]).
pub fn unsupported_count() -> usize {
    conformance_contract::CATALOGUE
        .iter()
        .flat_map(|c| c.variants.iter().map(move |v| (c.id, *v)))
        .filter(|(c, v)| clean_verdict(c, v) == "unsupported")
        .count()
}

/// The verdict a clean run on a healthy kernel gives (check, variant).
pub fn clean_verdict(check: &str, variant: &str) -> &'static str {
    if unsupported_here(check, variant) {
        "unsupported"
    } else if expected_everywhere_to_fail(check, variant) {
        "expected-fail"
    } else {
        "pass"
    }
}

/// The probe's outcome in a clean run on a healthy kernel: `fail` only where
/// [`expected_everywhere_to_fail`], `unsupported` where [`unsupported_here`].
pub fn clean_outcome(check: &str, variant: &str) -> conformance_contract::Outcome {
    if unsupported_here(check, variant) {
        conformance_contract::Outcome::Unsupported
    } else if expected_everywhere_to_fail(check, variant) {
        conformance_contract::Outcome::Fail
    } else {
        conformance_contract::Outcome::Pass
    }
}

/// Variants of one check in the catalogue (0 for an unknown id).
pub fn variants_of(check: &str) -> usize {
    conformance_contract::find_check(check).map_or(0, |c| c.variants.len())
}

/// `xtask <args>` with reports written into `dir`: (exit code, stdout, stderr).
pub fn xtask(
    args: &[&str],
    dir: &std::path::Path,
) -> Result<(Option<i32>, String, String), String> {
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

/// (check, variant, verdict) of every verdict in `dir/run.json`.
pub fn verdicts(dir: &std::path::Path) -> Result<Vec<(String, String, String)>, String> {
    let text =
        std::fs::read_to_string(dir.join("run.json")).map_err(|e| format!("read run.json: {e}"))?;
    let run: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("parse run.json: {e}"))?;
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

pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> TestResult {
    if cond { Ok(()) } else { Err(msg()) }
}

/// `--json-file`, `--junit-file` and `--markdown-file` pointing into `dir`.
pub fn report_args(dir: &std::path::Path) -> Vec<String> {
    vec![
        "--json-file".into(),
        dir.join("run.json").display().to_string(),
        "--junit-file".into(),
        dir.join("junit.xml").display().to_string(),
        "--markdown-file".into(),
        dir.join("summary.md").display().to_string(),
    ]
}

/// Names of the files in `dir` (a report folder must stay empty after an aborted run).
pub fn files_in(dir: &std::path::Path) -> Result<Vec<std::ffi::OsString>, String> {
    Ok(std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name())
        .collect())
}
