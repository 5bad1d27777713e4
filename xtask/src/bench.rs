//! `cargo xtask bench`: times the full lab run end to end (release probe, controls
//! included) several times and reports the wall time per run and per check, so
//! BENCHMARKS.md holds measured figures rather than guesses. With `--write` it
//! replaces the lab section of BENCHMARKS.md.

use crate::conformance::{Failure, build_probe_path, target_failure, workspace_root};
use conformance_suite::stream::StreamEvent;
use conformance_suite::target::lab::Lab;
use conformance_suite::target::runner::{self, Planned};
use conformance_suite::target::{ProbeArgs, ProbeBinary, RunControl, Target};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Options {
    /// Number of full lab runs to time.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Use this probe binary instead of building the release one.
    #[arg(long, value_name = "PATH")]
    probe: Option<PathBuf>,
    /// Replace the lab section of BENCHMARKS.md with the figures.
    #[arg(long)]
    write: bool,
}

const BEGIN: &str = "<!-- bench:lab begin -->";
const END: &str = "<!-- bench:lab end -->";

struct Stats {
    min: f64,
    median: f64,
    max: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(f64::total_cmp);
    Stats {
        min: v[0],
        median: v[v.len() / 2],
        max: v[v.len() - 1],
    }
}

pub fn run(opts: Options) -> Result<ExitCode, Failure> {
    let fail = |code: u8, m: String| Failure { code, message: m };
    if opts.runs == 0 {
        return Err(fail(2, "--runs must be at least 1".into()));
    }
    let probe = match opts.probe {
        Some(p) => p,
        None => build_probe_path(false)?,
    };
    let target = Lab::new();
    let instance = target.preflight().map_err(target_failure)?.remove(0);
    let planned = [Planned {
        target: &target,
        instance,
        probe: ProbeBinary {
            path: probe,
            image: None,
        },
    }];
    let control = RunControl {
        timeout: Duration::from_secs(120),
        interrupted: Arc::new(AtomicBool::new(false)),
        verbose: false,
    };
    let mut walls = Vec::new();
    let mut per_check: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut facts_line = String::new();
    for i in 0..opts.runs {
        let args = ProbeArgs {
            run_id: format!("bench{i:02}"),
            ..Default::default()
        };
        let started = Instant::now();
        let finished = runner::run(&planned, &args, &control, &mut |_, event| match event {
            StreamEvent::Observation(o) => per_check
                .entry(format!("{}[{}]", o.check, o.variant))
                .or_default()
                .push(o.duration_ms),
            StreamEvent::Facts(facts) if facts_line.is_empty() => {
                facts_line = format!(
                    "kernel {} ({}), {} CPUs",
                    facts.kernel_release,
                    facts.arch,
                    num_cpus()
                );
            }
            _ => {}
        })
        .map_err(|e| fail(3, e.to_string()))?;
        let wall = started.elapsed().as_secs_f64() * 1000.0;
        let exit = &finished[0].exit;
        if exit.code != Some(0) {
            return Err(fail(
                3,
                format!(
                    "probe run {i} exited {:?}: {}",
                    exit.code,
                    exit.stderr_tail.join(" | ")
                ),
            ));
        }
        eprintln!("run {}/{}: {wall:.0} ms", i + 1, opts.runs);
        walls.push(wall);
    }

    let w = stats(walls);
    let mut md = format!(
        "{BEGIN}\n`cargo xtask bench --runs {}` (release probe, every check with its negative control, facts included; wall time from process start to exit): {facts_line}.\n\n",
        opts.runs
    );
    md.push_str(&format!(
        "| full lab run | min {:.0} ms | median {:.0} ms | max {:.0} ms |\n|---|---|---|---|\n",
        w.min, w.median, w.max
    ));
    for (check, times) in per_check {
        let s = stats(times);
        md.push_str(&format!(
            "| {check} | {:.1} ms | {:.1} ms | {:.1} ms |\n",
            s.min, s.median, s.max
        ));
    }
    md.push_str(END);
    md.push('\n');
    println!("{md}");
    if opts.write {
        let path = workspace_root().join("BENCHMARKS.md");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| fail(3, format!("read {}: {e}", path.display())))?;
        let (Some(a), Some(b)) = (text.find(BEGIN), text.find(END)) else {
            return Err(fail(
                3,
                format!("{} has no {BEGIN} ... {END} section", path.display()),
            ));
        };
        let updated = format!("{}{}{}", &text[..a], md.trim_end(), &text[b + END.len()..]);
        std::fs::write(&path, updated)
            .map_err(|e| fail(3, format!("write {}: {e}", path.display())))?;
        eprintln!("updated {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
