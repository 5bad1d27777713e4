//! Runs do not disturb each other: four full runs at once on a busy machine, a few
//! times over, give the same verdicts as one run alone (every check `pass`). A
//! control whose traffic is lost before the point it breaks turns into `error` and
//! a leg that loses its traffic into `regression`, so any starvation shows here.
//!
//! The CPUs are kept busy meanwhile (one spinning thread per CPU), as a developer's
//! build does: what starved runs was kernel work (linkwatch) deferred under load,
//! and four runs alone on an idle machine rarely show it.

use crate::support::{
    Needs, Test, TestResult, clean_verdict, ensure, expected_observations, verdicts,
};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub const TESTS: &[(&str, Needs, Test)] = &[(
    "concurrency::four_concurrent_runs_agree_with_one",
    Needs::Root,
    four_concurrent_runs_agree_with_one,
)];

const PARALLEL: usize = 4;
const ROUNDS: usize = 3;

type Verdicts = Vec<(String, String, String)>;

/// Starts one `xtask conformance --env vm` with its reports in `dir`.
fn start(dir: &std::path::Path) -> Result<std::process::Child, String> {
    let (probe, xtask) = crate::support::binaries()?;
    Command::new(xtask)
        .current_dir(crate::support::repo_root())
        .args(["conformance", "--env", "vm", "--probe"])
        .arg(probe)
        .args(crate::support::report_args(dir))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("start xtask: {e}"))
}

/// Waits for a run and returns its verdicts; any exit but 0 is a failure.
fn finish(child: std::process::Child, dir: &std::path::Path) -> Result<Verdicts, String> {
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let v = verdicts(dir);
    ensure(out.status.code() == Some(0), || {
        format!(
            "exit {:?}: {}; verdicts not pass: {:?}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr),
            v.as_ref().map(|v| v
                .iter()
                .filter(|(c, va, x)| x != clean_verdict(c, va))
                .collect::<Vec<_>>())
        )
    })?;
    v
}

/// One spinning thread per CPU until dropped.
struct BusyCpus {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl BusyCpus {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cpus)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for BusyCpus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn four_concurrent_runs_agree_with_one() -> TestResult {
    let alone_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let alone = finish(start(alone_dir.path())?, alone_dir.path())?;
    ensure(alone.len() == expected_observations(), || {
        format!("{} verdicts alone", alone.len())
    })?;
    ensure(
        alone.iter().all(|(c, va, v)| v == clean_verdict(c, va)),
        || format!("alone: {alone:?}"),
    )?;
    let mut differ = Vec::new();
    let _busy = BusyCpus::start();
    for round in 0..ROUNDS {
        let dirs: Vec<tempfile::TempDir> = (0..PARALLEL)
            .map(|_| tempfile::tempdir().map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let children: Vec<_> = dirs
            .iter()
            .map(|d| start(d.path()))
            .collect::<Result<_, _>>()?;
        for (i, (child, dir)) in children.into_iter().zip(&dirs).enumerate() {
            match finish(child, dir.path()) {
                Ok(v) if v == alone => {}
                Ok(v) => differ.push(format!("round {round} run {i}: {v:?}")),
                Err(e) => differ.push(format!("round {round} run {i}: {e}")),
            }
        }
    }
    ensure(differ.is_empty(), || {
        format!(
            "{} of {} concurrent runs differ from a run alone:\n{}",
            differ.len(),
            ROUNDS * PARALLEL,
            differ.join("\n")
        )
    })
}
