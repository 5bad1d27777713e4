//! `cargo xtask conformance --target container` for real against this machine's
//! Docker: every check runs inside a k3d-node-like container and is judged against
//! the container matrix, `lab,container` writes one report with both instances,
//! and no container is left after a run, an interrupt or a killed run.

use crate::image::request;
use crate::support::{
    Needs, Test, TestResult, binaries, clean_verdict, ensure, expected_observations, files_in,
    repo_root, report_args, xtask,
};
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const TESTS: &[(&str, Needs, Test)] = &[
    (
        "container::unreachable_docker_is_one_line_before_any_build",
        Needs::Nothing,
        unreachable_docker_is_one_line_before_any_build,
    ),
    (
        "container::every_check_runs_in_a_node_container",
        Needs::Docker,
        every_check_runs_in_a_node_container,
    ),
    (
        "container::lab_and_container_side_by_side",
        Needs::RootAndDocker,
        lab_and_container_side_by_side,
    ),
    (
        "container::interrupted_run_removes_its_container",
        Needs::Docker,
        interrupted_run_removes_its_container,
    ),
    (
        "container::a_killed_run_is_swept_by_the_next",
        Needs::Docker,
        a_killed_run_is_swept_by_the_next,
    ),
];

/// The label every container the suite creates carries (suite/src/target/docker).
const LABEL: &str = "io.cilium-conformance";

/// (id, state) of every container the suite made, running or not.
fn our_containers() -> Result<Vec<(String, String)>, String> {
    let filter = format!("{{\"label\":[\"{LABEL}=1\"]}}");
    let path = format!(
        "/containers/json?all=1&filters={}",
        filter
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    );
    let (status, body) = request("GET", &path, None)?;
    ensure(status == 200, || {
        format!("list containers: {status} {body}")
    })?;
    let list: Vec<Value> = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    Ok(list
        .iter()
        .map(|c| {
            (
                c["Id"].as_str().unwrap_or_default().to_string(),
                c["State"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// Waits (bounded) until no container of the suite is left.
fn none_left() -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = our_containers()?;
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("containers left: {left:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_json(dir: &std::path::Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(dir.join("run.json")).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn unreachable_docker_is_one_line_before_any_build() -> TestResult {
    let (probe, xtask) = binaries()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = Command::new(xtask)
        .current_dir(repo_root())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["conformance", "--target", "container", "--probe"])
        .arg(probe)
        .args(report_args(dir.path()))
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure(out.status.code() == Some(3), || {
        format!("exit {:?}: {stderr}", out.status.code())
    })?;
    ensure(
        lines.len() == 1 && lines[0].contains("/nonexistent/docker.sock"),
        || format!("want one line naming the socket: {stderr}"),
    )?;
    let files = files_in(dir.path())?;
    ensure(files.is_empty(), || format!("report written: {files:?}"))
}

fn every_check_runs_in_a_node_container() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (code, stdout, stderr) = xtask(&["conformance", "--target", "container"], dir.path())?;
    ensure(code == Some(0), || {
        format!("exit {code:?}\n{stdout}\n{stderr}")
    })?;
    let run = run_json(dir.path())?;
    let instances = run["instances"].as_array().cloned().unwrap_or_default();
    ensure(instances.len() == 1, || format!("instances: {instances:?}"))?;
    let instance = &instances[0];
    ensure(instance["environment"] == "container", || {
        format!("environment {}", instance["environment"])
    })?;
    let virt = &instance["facts"]["virtualization"];
    ensure(
        virt["container"] == "docker"
            && matches!(
                virt["container_mode"].as_str(),
                Some("privileged" | "near-privileged")
            ),
        || format!("facts: {virt}"),
    )?;
    ensure(
        instance["facts"]["bpffs"]["propagation"].is_string(),
        || format!("no bpffs propagation fact: {}", instance["facts"]["bpffs"]),
    )?;
    let verdicts = run["verdicts"].as_array().cloned().unwrap_or_default();
    ensure(
        verdicts.len() == expected_observations() && verdicts.iter().all(as_clean),
        || format!("verdicts: {verdicts:?}"),
    )?;
    bpffs_both_ways(&verdicts)?;
    none_left()
}

/// The verdict is what a clean run on a healthy kernel gives, or `unsupported`:
/// the node container's facts are not the host's (no cgroup v2 on a cgroup v1
/// Docker host), and a verdict is `unsupported` only where the matrix and the
/// catalogue say the missing fact is not expected there (anywhere else the
/// missing fact is a regression, which fails this). Each one is printed.
fn as_clean(v: &Value) -> bool {
    let (check, variant) = (
        v["check"].as_str().unwrap_or_default(),
        v["variant"].as_str().unwrap_or_default(),
    );
    let verdict = v["verdict"].as_str().unwrap_or_default();
    if verdict == "unsupported" && clean_verdict(check, variant) != "expected-fail" {
        eprintln!(
            "{}: {check}[{variant}] unsupported here: {}",
            v["instance"].as_str().unwrap_or_default(),
            v["reason"].as_str().unwrap_or_default()
        );
        return true;
    }
    verdict == clean_verdict(check, variant)
}

/// Inside the node container the bpffs of a sibling mount namespace reaches a
/// shared /sys/fs/bpf and not a private one, whose reason names the fix, and each
/// variant's control (a slave agent) was blocked.
fn bpffs_both_ways(verdicts: &[Value]) -> TestResult {
    let of = |variant: &str| {
        verdicts
            .iter()
            .find(|v| v["check"] == "env.bpffs.propagation" && v["variant"] == variant)
            .cloned()
            .ok_or_else(|| format!("no env.bpffs.propagation[{variant}] verdict"))
    };
    let (shared, private) = (of("rshared")?, of("private")?);
    let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_string();
    ensure(
        text(&private, "reason").contains("mount --make-rshared /")
            && private["observation"]["failure"] == "not-propagated",
        || format!("private: {private}"),
    )?;
    for v in [&shared, &private] {
        ensure(v["observation"]["control"]["outcome"] == "blocked", || {
            format!("control not blocked: {v}")
        })?;
    }
    Ok(())
}

fn lab_and_container_side_by_side() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (code, stdout, stderr) = xtask(&["conformance", "--target", "lab,container"], dir.path())?;
    ensure(code == Some(0), || {
        format!("exit {code:?}\n{stdout}\n{stderr}")
    })?;
    let run = run_json(dir.path())?;
    let kinds: Vec<String> = run["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            i["instance"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    ensure(kinds == ["lab", "container"], || {
        format!("instances {kinds:?}")
    })?;
    let verdicts = run["verdicts"].as_array().cloned().unwrap_or_default();
    ensure(
        verdicts.len() == 2 * expected_observations() && verdicts.iter().all(as_clean),
        || format!("verdicts: {verdicts:?}"),
    )?;
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).map_err(|e| e.to_string())?;
    ensure(junit.matches("<testsuite ").count() == 2, || {
        format!("want a testsuite per instance:\n{junit}")
    })?;
    none_left()
}

/// Starts `xtask conformance --target container` in its own process group and
/// returns once one of its containers is running.
fn start_mid_run(dir: &std::path::Path) -> Result<std::process::Child, String> {
    none_left()?;
    let (probe, xtask) = binaries()?;
    let mut child = Command::new(xtask)
        .current_dir(repo_root())
        .args(["conformance", "--target", "container", "--probe"])
        .arg(probe)
        .args(report_args(dir))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| e.to_string())?;
    // A cold image build takes a static probe build (a minute or two).
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if our_containers()?
            .iter()
            .any(|(_, state)| state == "running")
        {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("xtask ended before a container ran: {status}"));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return Err("no container started within 300 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn interrupted_run_removes_its_container() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let child = start_mid_run(dir.path())?;
    // SAFETY: signalling the process group we just created.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(out.status.code() == Some(130), || {
        format!("exit {:?}: {stderr}", out.status.code())
    })?;
    let files = files_in(dir.path())?;
    ensure(files.is_empty(), || format!("report written: {files:?}"))?;
    none_left()
}

fn a_killed_run_is_swept_by_the_next() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut child = start_mid_run(dir.path())?;
    // SAFETY: as above; SIGKILL leaves xtask no chance to remove its container.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
    let left = our_containers()?;
    ensure(!left.is_empty(), || {
        "the killed run left no container: nothing to sweep".into()
    })?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (code, stdout, stderr) = xtask(
        &[
            "conformance",
            "--target",
            "container",
            "--test",
            "tc\\.attach\\.legacy",
        ],
        dir.path(),
    )?;
    ensure(code == Some(0), || {
        format!("exit {code:?}\n{stdout}\n{stderr}")
    })?;
    none_left()
}
