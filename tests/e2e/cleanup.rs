//! Nothing is left behind: a probe killed in the middle of a check (SIGKILL, the
//! worst case) and `cargo xtask conformance` interrupted with Ctrl-C leave no network
//! namespace, device, BPF program, link or bpffs mount, and no half-written report.

use crate::support::{Needs, Test, TestResult, binaries, ensure, files_in, repo_root, report_args};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const TESTS: &[(&str, Needs, Test)] = &[
    (
        "cleanup::probe_killed_mid_check_leaves_nothing",
        Needs::Root,
        probe_killed_mid_check_leaves_nothing,
    ),
    (
        "cleanup::interrupted_run_leaves_nothing_and_no_report",
        Needs::Root,
        interrupted_run_leaves_nothing_and_no_report,
    ),
    (
        "cleanup::failed_run_leaves_nothing",
        Needs::Root,
        failed_run_leaves_nothing,
    ),
    (
        "cleanup::timed_out_run_leaves_nothing_and_no_report",
        Needs::Root,
        timed_out_run_leaves_nothing_and_no_report,
    ),
];

/// What the suite could leave behind, as seen from the host.
#[derive(Debug, PartialEq, Eq, Clone)]
struct Snapshot {
    netns: BTreeSet<String>,
    programs: usize,
    links: BTreeSet<String>,
    bpffs_mounts: usize,
}

/// Network namespaces reachable from any process or fd on the machine.
fn netns_inodes() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let path = p.path();
        if let Ok(tasks) = std::fs::read_dir(path.join("task")) {
            for t in tasks.flatten() {
                if let Ok(l) = std::fs::read_link(t.path().join("ns/net")) {
                    out.insert(l.display().to_string());
                }
            }
        }
        if let Ok(fds) = std::fs::read_dir(path.join("fd")) {
            for fd in fds.flatten() {
                if let Ok(l) = std::fs::read_link(fd.path())
                    && l.display().to_string().starts_with("net:[")
                {
                    out.insert(l.display().to_string());
                }
            }
        }
    }
    out
}

/// Loaded BPF programs the probe makes (`hook`, `probe_*`).
fn our_programs() -> usize {
    aya::programs::loaded_programs()
        .flatten()
        .filter(|p| {
            p.name_as_str()
                .is_some_and(|n| n == "hook" || n.starts_with("probe_"))
        })
        .count()
}

fn snapshot() -> Snapshot {
    let links = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let bpffs_mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .filter(|l| l.split(" - ").nth(1).is_some_and(|r| r.starts_with("bpf ")))
                .count()
        })
        .unwrap_or(0);
    Snapshot {
        netns: netns_inodes(),
        programs: our_programs(),
        links,
        bpffs_mounts,
    }
}

/// Waits until the machine looks like `before` again (BPF programs are freed after
/// an RCU grace period, so give it a moment).
fn settles_to(before: &Snapshot) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = snapshot();
        if now == *before {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("left behind: before {before:?}\nafter {now:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the run is inside a check: one of our programs loaded and more
/// namespaces than before. Killing then proves cleanup of live objects.
fn wait_mid_check(before: &Snapshot) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if our_programs() > before.programs && netns_inodes().len() > before.netns.len() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err("never caught the probe inside a check".into())
}

fn probe_killed_mid_check_leaves_nothing() -> TestResult {
    let (probe, _) = binaries()?;
    let before = snapshot();
    let mut child = Command::new(probe)
        .arg("run")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Read the facts line so the probe is past start-up, then keep draining its
    // stdout (a full pipe would park it between checks) and catch it mid-check.
    let mut reader = BufReader::new(child.stdout.take().expect("piped"));
    let mut first = String::new();
    reader.read_line(&mut first).map_err(|e| e.to_string())?;
    ensure(first.contains("\"kind\":\"facts\""), || {
        format!("first line: {first}")
    })?;
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    wait_mid_check(&before)?;
    child.kill().map_err(|e| e.to_string())?;
    child.wait().map_err(|e| e.to_string())?;
    settles_to(&before)
}

fn interrupted_run_leaves_nothing_and_no_report() -> TestResult {
    let (probe, xtask) = binaries()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let json = dir.path().join("run.json");
    let junit = dir.path().join("junit.xml");
    let before = snapshot();
    // Its own process group, like a terminal's foreground job: Ctrl-C reaches xtask and the probe.
    let child = Command::new(xtask)
        .current_dir(repo_root())
        .args(["conformance", "--env", "vm", "--probe"])
        .arg(probe)
        .args(report_args(dir.path()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| e.to_string())?;
    wait_mid_check(&before)?;
    // SAFETY: signalling the process group we just created.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(out.status.code() == Some(130), || {
        format!("exit {:?}, stderr: {stderr}", out.status.code())
    })?;
    ensure(!json.exists() && !junit.exists(), || {
        "a report was written for an interrupted run".into()
    })?;
    let leftovers = files_in(dir.path())?;
    ensure(leftovers.is_empty(), || {
        format!("files left in the report folder: {leftovers:?}")
    })?;
    settles_to(&before)
}

/// A run whose datapath is broken (every check of one family fails) still removes everything.
fn failed_run_leaves_nothing() -> TestResult {
    let before = snapshot();
    let run = crate::support::run_probe(&[
        "--fault",
        "datapath.stack-delivery=drop",
        "--check",
        "datapath.stack-delivery",
    ])?;
    ensure(run.code == Some(0), || {
        format!("probe exit {:?}: {}", run.code, run.stderr)
    })?;
    let observations = run.observations();
    let want = crate::support::variants_of("datapath.stack-delivery");
    ensure(want > 0 && observations.len() == want, || {
        format!("{} observations, want {want}", observations.len())
    })?;
    for o in observations {
        ensure(o.outcome == conformance_contract::Outcome::Fail, || {
            format!(
                "{}[{}] {:?} with the fault: {}",
                o.check, o.variant, o.outcome, o.reason
            )
        })?;
    }
    settles_to(&before)
}

/// A probe stopped by `--timeout` exits 3, writes no report and leaves nothing.
fn timed_out_run_leaves_nothing_and_no_report() -> TestResult {
    let (probe, xtask) = binaries()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let before = snapshot();
    // The drop fault makes every leg wait for its full delivery timeout: far past 1 s.
    let out = Command::new(xtask)
        .current_dir(repo_root())
        .args([
            "conformance",
            "--env",
            "vm",
            "--timeout",
            "1",
            "--fault",
            "datapath.redirect-peer=drop",
            "--test",
            "redirect-peer$",
            "--probe",
        ])
        .arg(probe)
        .args(report_args(dir.path()))
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(
        out.status.code() == Some(3) && stderr.contains("timed out"),
        || format!("exit {:?}: {stderr}", out.status.code()),
    )?;
    let files = files_in(dir.path())?;
    ensure(files.is_empty(), || {
        format!("files after a timed-out run: {files:?}")
    })?;
    settles_to(&before)
}
