//! `cargo xtask bench`: times full runs of a target end to end (every check with its
//! negative control, facts included) several times and reports the wall time per run
//! and per check, so BENCHMARKS.md holds measured figures rather than guesses. With
//! `--write` it replaces the target's section of BENCHMARKS.md.
//!
//! - `lab` (the default): the release probe in network namespaces on this host.
//! - `container`: the probe image as `xtask conformance` gets it (cached, and built
//!   without the cache), then container runs from that image.
//! - `vm`: each `--kernel` (default: the tracked kernels that are cached) booted
//!   alone as a qemu guest whose init is the static probe, then all of them as the
//!   instances of one run (the matrix), against the boot-to-verdict goals.
//!   The static probes are built before and not timed.
//!
//! A run is timed the same way for all: from before [`Target::start`] (the probe
//! process, the node container or the guest is created) until its observations are
//! judged against the environment's matrix, which is after the probe exited (and its
//! container was removed, or its qemu exited). The first run of the process is
//! reported on its own (the container target tries privileged there, and later
//! containers of the process do not); the `--runs` runs after it give min / median /
//! max.

use crate::conformance::{
    Failure, build_probe_path, guest_cannot_start, static_probe, target_failure, workspace_root,
};
use crate::image::{self, ImageOptions, REPOSITORY};
use crate::probe_build::{self, Arch};
use bollard::Docker;
use bollard::query_parameters::{BuildImageOptionsBuilder, RemoveImageOptionsBuilder};
use conformance_contract::{CATALOGUE, Facts, PlannedCheck};
use conformance_suite::env::{Environment, detect};
use conformance_suite::matrix::Matrix;
use conformance_suite::select::Selection;
use conformance_suite::stream::StreamEvent;
use conformance_suite::target::container::{Container, PROBE_PATH_IN_IMAGE};
use conformance_suite::target::docker::{self, DaemonInfo};
use conformance_suite::target::lab::Lab;
use conformance_suite::target::runner::{self, Planned, RunnerError};
use conformance_suite::target::vm::Vm;
use conformance_suite::target::vm::kernel::{self, GuestKernel};
use conformance_suite::target::vm::qemu::{self, AccelChoice};
use conformance_suite::target::{
    InstanceId, ProbeArgs, ProbeBinary, RunControl, Target, TargetError,
};
use conformance_suite::verdict::{VerdictKind, evaluate};
use futures_util::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const USAGE: u8 = 2;
const INFRA: u8 = 3;
const INTERRUPTED: u8 = 130;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BenchTarget {
    /// The release probe in network namespaces on this host (root or passwordless sudo).
    Lab,
    /// The probe image, then k3d-node-like containers from it, on the daemon DOCKER_HOST names.
    Container,
    /// qemu guests, the static probe as their init: each `--kernel` alone, then all as one run.
    Vm,
}

impl BenchTarget {
    fn name(self) -> &'static str {
        match self {
            BenchTarget::Lab => "lab",
            BenchTarget::Container => "container",
            BenchTarget::Vm => "vm",
        }
    }

    /// `--runs` when not given: a vm run is 5-15 s a guest, a lab or container run ~1 s.
    fn default_runs(self) -> usize {
        match self {
            BenchTarget::Lab | BenchTarget::Container => 10,
            BenchTarget::Vm => 3,
        }
    }
}

#[derive(clap::Args)]
#[command(
    after_help = "Each timed run goes from before the probe (lab) or node container (container) is \
created until its observations are judged against the environment's matrix: the probe has exited \
and its container is removed by then. The first run of the process is reported on its own; the \
--runs runs after it give min / median / max, per run and per check.\n\n\
For --target container the image is timed first: as `xtask conformance` gets it (static probe up \
to date, build that hits Docker's cache, tag), the build step alone, and the build step without \
the cache (under a throwaway tag cilium-conformance-probe:bench-uncached-<pid>, removed after \
each build). No image or container other than this project's own is touched.\n\n\
For --target vm each --kernel (default: the tracked kernels of `cargo xtask kernels`; one that is \
not cached, or whose qemu or Rust target is missing here, is skipped with a line) is timed alone, \
from before its guest starts until its observations are judged, then all of them as the instances \
of one run (the matrix, at most one guest per core). The static probes are built first and not \
timed. The section names each guest's accelerator (vm.accel) and package version, and the goals \
(TCG, 2 cores: 10 s per x86_64 guest, 15 s per arm64 guest, 45 s for the six-guest matrix).\n\n\
Exit codes: 0 measured, 2 bad usage, 3 infrastructure error (Docker unreachable, a probe run that \
failed), 130 interrupted (Ctrl-C stops and removes the running probe or container)."
)]
pub struct Options {
    /// Where the runs are timed.
    #[arg(long, value_enum, default_value = "lab", value_name = "TARGET")]
    target: BenchTarget,
    /// Timed runs after the first one of the process (and, for `container`, samples of
    /// each image step; for `vm`, per kernel and of the matrix). Default: 10, for `vm` 3.
    #[arg(long, value_name = "N")]
    runs: Option<usize>,
    /// lab: use this probe binary instead of building the release one. container: put
    /// this static probe in the image instead of building one (the static probe step is
    /// then not timed). vm: the static probe guests of its architecture run.
    #[arg(long, value_name = "PATH")]
    probe: Option<PathBuf>,
    /// vm only: a kernel to boot (as `xtask conformance --kernel`), repeatable.
    /// Default: the tracked kernels (`cargo xtask kernels`) that are cached.
    #[arg(long = "kernel", value_name = "SPEC")]
    kernels: Vec<String>,
    /// container only: first REMOVE this checkout's own tags of the probe image
    /// (cilium-conformance-probe:<version>-<rev>[-dirty] and :latest; an image a
    /// container still uses is refused, not forced), so that the first image of the
    /// process is a real cold build, as after `docker rmi`. Other images are never
    /// removed. Without it, the uncached figure comes from builds without the cache
    /// under a throwaway tag, and the existing tags are left alone.
    #[arg(long)]
    cold: bool,
    /// Replace the target's section of BENCHMARKS.md (between `<!-- bench:TARGET begin -->`
    /// and `<!-- bench:TARGET end -->`) with the figures.
    #[arg(long)]
    write: bool,
}

fn fail(code: u8, message: impl std::fmt::Display) -> Failure {
    Failure {
        code,
        message: message.to_string(),
    }
}

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

/// One timed run, each point in ms from before [`Target::start`]; with several
/// instances, the facts, last observation and done points are the last instance's.
#[derive(Debug, Clone, Default)]
struct RunTiming {
    facts: f64,
    last_observation: f64,
    done: f64,
    /// The runner returned: the probe exited (and its container was removed).
    exited: f64,
    /// The observations are judged: the end of the run.
    judged: f64,
    /// What each instance's facts said this run, in plan order.
    seen: Vec<Seen>,
}

/// What one instance's facts said in one run, for the figures that name it.
#[derive(Debug, Clone, Default, PartialEq)]
struct Seen {
    /// `vm.accel` (`tcg`, `kvm`), where the target set it.
    accel: Option<String>,
    /// The distribution package version the running kernel names.
    package: Option<String>,
}

/// What [`time_runs`] measured.
struct RunFigures {
    first: RunTiming,
    warm: Vec<RunTiming>,
    /// Per `check[variant]` (prefixed by the instance with several): the probe's own
    /// duration (both legs), warm runs only.
    per_check: BTreeMap<String, Vec<f64>>,
    /// The first run's facts, per instance in plan order.
    facts: Vec<Facts>,
    /// Per instance in plan order: each distinct verdict tally seen (one, unless
    /// runs disagreed), with its matrix.
    verdicts: Vec<BTreeSet<String>>,
    /// The 1-minute load average before the first run and after the last one: other
    /// work on the host slows every figure, so the figures say how busy it was.
    load: (Option<f64>, Option<f64>),
}

/// The runs after the first one, once the options are known to fit together.
fn checked_runs(opts: &Options) -> Result<usize, Failure> {
    if opts.cold && opts.target != BenchTarget::Container {
        return Err(fail(USAGE, "--cold is for --target container only"));
    }
    if !opts.kernels.is_empty() && opts.target != BenchTarget::Vm {
        return Err(fail(USAGE, "--kernel is for --target vm only"));
    }
    match opts.runs {
        Some(0) => Err(fail(USAGE, "--runs must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(opts.target.default_runs()),
    }
}

pub fn run(opts: Options) -> Result<ExitCode, Failure> {
    let runs = checked_runs(&opts)?;
    let md = match opts.target {
        BenchTarget::Lab => bench_lab(&opts, runs)?,
        BenchTarget::Container => bench_container(&opts, runs)?,
        BenchTarget::Vm => bench_vm(&opts, runs)?,
    };
    println!("{md}");
    if opts.write {
        let path = workspace_root().join("BENCHMARKS.md");
        let mut text = std::fs::read_to_string(&path)
            .map_err(|e| fail(INFRA, format!("read {}: {e}", path.display())))?;
        if opts.target == BenchTarget::Vm {
            text = with_vm_section(&text);
        }
        let updated = replace_section(&text, opts.target.name(), &md)
            .map_err(|e| fail(INFRA, format!("{}: {e}", path.display())))?;
        std::fs::write(&path, updated)
            .map_err(|e| fail(INFRA, format!("write {}: {e}", path.display())))?;
        eprintln!("updated {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn markers(target: &str) -> (String, String) {
    crate::sections::markers("bench", target)
}

fn replace_section(text: &str, target: &str, section: &str) -> Result<String, String> {
    crate::sections::replace(text, "bench", target, section)
}

/// The vm section's heading, above its markers.
const VM_HEADING: &str = "## vm target: boot to verdict per kernel and for the matrix";

/// `text` with empty vm markers under [`VM_HEADING`] where it has none: before the
/// heading that follows the container section, else at the end.
fn with_vm_section(text: &str) -> String {
    let (begin, end) = markers("vm");
    if text.contains(&begin) || text.contains(&end) {
        return text.to_string();
    }
    let block = format!("{VM_HEADING}\n\n{begin}\n{end}\n");
    let (_, container_end) = markers("container");
    let at = text
        .find(&container_end)
        .and_then(|c| text[c..].find("\n## ").map(|h| c + h + 1));
    match at {
        Some(at) => format!("{}{block}\n{}", &text[..at], &text[at..]),
        None => {
            let sep = if text.ends_with("\n\n") {
                ""
            } else if text.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            format!("{text}{sep}{block}")
        }
    }
}

/// Ctrl-C and SIGTERM set the flag the runner watches, as `xtask conformance` does
/// (signal-hook's flag; the runner then stops and removes every running instance).
fn interrupt_flag() -> Result<Arc<AtomicBool>, Failure> {
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, interrupted.clone())
            .map_err(|e| fail(INFRA, format!("install signal handler: {e}")))?;
    }
    Ok(interrupted)
}

fn interrupted_failure() -> Failure {
    fail(
        INTERRUPTED,
        "interrupted: the running probe was stopped (its container removed); nothing written",
    )
}

fn check_interrupt(flag: &AtomicBool) -> Result<(), Failure> {
    match flag.load(Ordering::SeqCst) {
        true => Err(interrupted_failure()),
        false => Ok(()),
    }
}

/// The shipped matrices, one per environment; the one a run's facts detect judges it.
fn load_matrices() -> Result<Vec<Matrix>, Failure> {
    let fixtures = workspace_root().join("fixtures");
    Environment::ALL
        .iter()
        .map(|env| Matrix::load(env.matrix_path(&fixtures)).map_err(|e| fail(USAGE, e)))
        .collect()
}

/// [`Planned`] for one instance.
fn one<'a>(target: &'a dyn Target, instance: InstanceId, probe: ProbeBinary) -> [Planned<'a>; 1] {
    [Planned {
        target,
        instance,
        probe,
    }]
}

/// Runs the planned instances (all in one run) once plus `runs` times and times each
/// run. `what` prefixes the progress lines (empty: none).
fn time_runs(
    planned: &[Planned<'_>],
    runs: usize,
    jobs: Option<usize>,
    interrupted: &Arc<AtomicBool>,
    what: &str,
) -> Result<RunFigures, Failure> {
    let matrices = load_matrices()?;
    // The lab, container and vm targets run no pod-level check (`cluster.*`).
    let plan: Vec<PlannedCheck> = Selection::all()
        .plan(CATALOGUE)
        .into_iter()
        .filter(|p| !conformance_contract::pods::is_pod_level(&p.check))
        .collect();
    let labels: Vec<String> = planned.iter().map(|p| p.instance.label()).collect();
    let several = planned.len() > 1;
    let control = RunControl {
        // A stuck probe is stopped, not waited for; guests share the cores.
        timeout: Duration::from_secs(120 * planned.len() as u64),
        interrupted: interrupted.clone(),
        verbose: false,
    };
    let mut first = None;
    let mut warm = Vec::new();
    let mut per_check: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut facts = None;
    let mut verdicts = vec![BTreeSet::new(); planned.len()];
    let load_before = load_average();
    for i in 0..=runs {
        check_interrupt(interrupted)?;
        let args = ProbeArgs {
            // Unique per process in its first 6 characters (what device and
            // container names keep), so benches running side by side never collide.
            run_id: format!("{:06x}{i:02}", std::process::id() & 0xff_ffff),
            jobs,
            ..Default::default()
        };
        let mut timing = RunTiming::default();
        let mut durations: Vec<(String, f64)> = Vec::new();
        let started = Instant::now();
        let ms = |at: Instant| at.duration_since(started).as_secs_f64() * 1000.0;
        let finished = runner::run(planned, &args, &control, &mut |n, event| {
            let now = ms(Instant::now());
            match event {
                StreamEvent::Facts(_) => timing.facts = now,
                StreamEvent::Observation(o) => {
                    timing.last_observation = now;
                    let on = match several {
                        true => format!("{} ", labels[n]),
                        false => String::new(),
                    };
                    durations.push((format!("{on}{}[{}]", o.check, o.variant), o.duration_ms));
                }
                StreamEvent::Done(_) => timing.done = now,
                StreamEvent::Plan(_) => {}
            }
        })
        .map_err(|e| match e {
            RunnerError::Interrupted => interrupted_failure(),
            e => fail(e.exit_code(), e),
        })?;
        timing.exited = ms(Instant::now());
        let mut run_facts: Vec<Option<Facts>> = vec![None; planned.len()];
        let mut tallies = vec![String::new(); planned.len()];
        for f in finished {
            let n = planned
                .iter()
                .position(|p| p.instance == f.instance)
                .expect("a planned instance");
            let label = &labels[n];
            if f.exit.code != Some(0) {
                return Err(fail(
                    INFRA,
                    format!(
                        "{label}: probe run {i} exited {:?}: {}",
                        f.exit.code,
                        f.exit.stderr_tail.join(" | ")
                    ),
                ));
            }
            let stream = f
                .stream
                .map_err(|e| fail(INFRA, format!("{label}: probe run {i}: {e}")))?;
            let (env, _) = detect(&stream.facts);
            let matrix = matrices
                .iter()
                .find(|m| m.environment == env)
                .expect("a matrix per environment");
            let judged = evaluate(matrix, &stream.facts, &plan, &stream.observations);
            let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
            for v in &judged {
                *tally.entry(v.verdict.as_str()).or_default() += 1;
            }
            let tally: Vec<String> = VerdictKind::ALL
                .iter()
                .filter_map(|k| tally.get(k.as_str()).map(|n| format!("{n} {k}")))
                .collect();
            tallies[n] = format!("{} ({} matrix)", tally.join(", "), env.as_str());
            run_facts[n] = Some(stream.facts);
        }
        timing.judged = ms(Instant::now());

        let run_facts: Vec<Facts> = run_facts
            .into_iter()
            .map(|f| f.expect("the runner finishes every instance"))
            .collect();
        timing.seen = run_facts
            .iter()
            .map(|f| Seen {
                accel: f.virtualization.vm_accel.clone(),
                package: f.kernel_package.as_ref().map(|p| p.version.clone()),
            })
            .collect();
        for (set, tally) in verdicts.iter_mut().zip(tallies) {
            set.insert(tally);
        }
        eprintln!(
            "{what}{}run {i}/{runs}{}: {:.0} ms",
            if what.is_empty() { "" } else { ": " },
            if i == 0 {
                " (first of the process, shown apart)"
            } else {
                ""
            },
            timing.judged
        );
        if i == 0 {
            facts = Some(run_facts);
            first = Some(timing);
        } else {
            for (check, d) in durations {
                per_check.entry(check).or_default().push(d);
            }
            warm.push(timing);
        }
    }
    Ok(RunFigures {
        first: first.expect("run 0 happened"),
        warm,
        per_check,
        facts: facts.expect("run 0 happened"),
        verdicts,
        load: (load_before, load_average()),
    })
}

/// `/proc/loadavg`'s 1-minute figure, where there is one.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn load_phrase(f: &RunFigures) -> String {
    load_text(f.load)
}

fn load_text(load: (Option<f64>, Option<f64>)) -> String {
    match load {
        (Some(a), Some(b)) => format!("1-min load average {a:.2} before the runs, {b:.2} after"),
        _ => "load average unknown".into(),
    }
}

fn ms_cell(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn row(md: &mut String, label: &str, samples: Vec<f64>) {
    let s = stats(samples);
    md.push_str(&format!(
        "| {label} | {} | {} | {} |\n",
        ms_cell(s.min),
        ms_cell(s.median),
        ms_cell(s.max)
    ));
}

/// The run rows: first run, warm runs and where their time goes.
fn run_rows(md: &mut String, f: &RunFigures, what: &str, first_note: &str, exited: &str) {
    let n = f.warm.len();
    md.push_str(&format!(
        "| first {what} run of the process, start to verdict{first_note} | {} | — | — |\n",
        ms_cell(f.first.judged)
    ));
    let pick = |get: fn(&RunTiming) -> f64| f.warm.iter().map(get).collect::<Vec<_>>();
    row(
        md,
        &format!("**warm {what} run, start to verdict** ({n} runs)"),
        pick(|t| t.judged),
    );
    row(md, "· facts line read", pick(|t| t.facts));
    row(md, "· last observation read", pick(|t| t.last_observation));
    row(md, "· done line read (stream end)", pick(|t| t.done));
    row(md, &format!("· {exited}"), pick(|t| t.exited));
}

/// Each check's durations as the probe timed them, over the warm runs.
fn check_table(md: &mut String, f: &RunFigures, how: &str) {
    md.push_str(&format!(
        "\n| check (both legs, as the probe timed it; {} warm runs, {how}) | min | median | max |\n|---|---|---|---|\n",
        f.warm.len()
    ));
    for (check, times) in &f.per_check {
        row(md, check, times.clone());
    }
}

/// The run rows and the per-check table of the same runs.
fn run_tables(md: &mut String, f: &RunFigures, what: &str, first_note: &str, exited: &str) {
    run_rows(md, f, what, first_note, exited);
    check_table(md, f, "checks in parallel");
}

fn verdict_phrase(verdicts: &BTreeSet<String>) -> String {
    let all: Vec<&str> = verdicts.iter().map(String::as_str).collect();
    match all.len() {
        1 => format!("verdicts every run: {}", all[0]),
        _ => format!("verdicts differed between runs: {}", all.join("; ")),
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn bench_lab(opts: &Options, runs: usize) -> Result<String, Failure> {
    let target = Lab::new();
    let instance = target.preflight().map_err(target_failure)?.remove(0);
    let probe = match &opts.probe {
        Some(p) => p.clone(),
        None => build_probe_path(false)?,
    };
    let interrupted = interrupt_flag()?;
    let binary = || ProbeBinary {
        path: probe.clone(),
        image: None,
    };
    eprintln!("full runs, checks in parallel (the probe's default --jobs):");
    let f = time_runs(
        &one(&target, instance.clone(), binary()),
        runs,
        None,
        &interrupted,
        "",
    )?;
    // What each check costs on its own: in a parallel run checks share the CPUs
    // and the kernel's locks, so their own durations there are longer.
    eprintln!("full runs, one check at a time (--jobs 1), for each check's own cost:");
    let serial = time_runs(
        &one(&target, instance, binary()),
        runs,
        Some(1),
        &interrupted,
        "",
    )?;
    let (begin, end) = markers("lab");
    let mut md = format!(
        "{begin}\n`cargo xtask bench --runs {runs}` (release probe, every check with its negative control, facts included; a run is timed from before the probe starts until its observations are judged; checks run in parallel, the probe's default of twice the CPUs): kernel {} ({}), {} CPUs, {}; {}.\n\n| full lab run | min | median | max |\n|---|---|---|---|\n",
        f.facts[0].kernel_release,
        f.facts[0].arch,
        num_cpus(),
        load_phrase(&f),
        verdict_phrase(&f.verdicts[0]),
    );
    run_rows(&mut md, &f, "lab", "", "probe exited");
    row(
        &mut md,
        &format!(
            "warm lab run, one check at a time (`--jobs 1`; {} runs)",
            serial.warm.len()
        ),
        serial.warm.iter().map(|t| t.judged).collect(),
    );
    md.push_str(
        "\nEach check's own cost is measured one check at a time (`--jobs 1`), since checks running side by side share the CPUs and the kernel's locks and each takes longer there; the full run above is what a user waits for.\n",
    );
    check_table(&mut md, &serial, "one check at a time");
    md.push_str(&end);
    md.push('\n');
    Ok(md)
}

/// One image step's samples, in ms.
struct ImageFigures {
    /// The first `ensure_image` of the process: `(ms, cached)`.
    first: (f64, bool),
    /// The first static probe build of the process (`None` with `--probe`).
    static_first: Option<f64>,
    /// `ensure_image` as `xtask conformance` calls it, the image present.
    cached: Vec<f64>,
    /// The static probe build, up to date (empty with `--probe`).
    static_probe: Vec<f64>,
    /// `build_image` with the probe given, the image present.
    build_cached: Vec<f64>,
    /// The same context built without the cache under a throwaway tag.
    build_uncached: Vec<f64>,
    /// Daemon CPUs (`/info` `NCPU`).
    ncpu: Option<i64>,
}

fn bench_container(opts: &Options, runs: usize) -> Result<String, Failure> {
    let target = Container::new();
    // Docker unreachable: one line, exit 3, before anything is built.
    let instance = target.preflight().map_err(target_failure)?.remove(0);
    let daemon = docker::preflight()
        .map_err(|e| target_failure(TargetError::Infrastructure(e.to_string())))?;
    let arch = Arch::from_docker(&instance.arch).map_err(|e| fail(INFRA, e))?;
    if let Some(path) = &opts.probe {
        probe_build::verify_static(path, arch)
            .map_err(|e| fail(USAGE, format!("--probe {}: {e:#}", path.display())))?;
    }
    let interrupted = interrupt_flag()?;
    let (reference, images) = time_images(opts, runs, arch, &interrupted)?;
    eprintln!("image: {reference}");
    let probe = ProbeBinary {
        path: PathBuf::from(PROBE_PATH_IN_IMAGE),
        image: Some(reference),
    };
    let f = time_runs(&one(&target, instance, probe), runs, None, &interrupted, "")?;
    Ok(container_markdown(opts, runs, &daemon, &images, &f))
}

fn container_markdown(
    opts: &Options,
    n: usize,
    daemon: &DaemonInfo,
    images: &ImageFigures,
    f: &RunFigures,
) -> String {
    let (begin, end) = markers("container");
    let mode = f.facts[0]
        .virtualization
        .container_mode
        .as_deref()
        .unwrap_or("unknown mode");
    let cpus = images
        .ncpu
        .map(|n| n.to_string())
        .unwrap_or_else(|| num_cpus().to_string());
    let mut md = format!(
        "{begin}\n`cargo xtask bench --target container --runs {n}{}` (every check with its negative control, facts included; a run is timed from before the node container is created until its observations are judged, the container removed by then): Docker {} (API {}, {}, cgroup v{}, {}), {mode} container, kernel {} ({}), {cpus} CPUs, {}; {}.\n\n",
        if opts.cold { " --cold" } else { "" },
        daemon.server_version,
        daemon.api_version,
        daemon.storage_driver,
        daemon.cgroup_version,
        daemon.runtime,
        f.facts[0].kernel_release,
        f.facts[0].arch,
        load_phrase(f),
        verdict_phrase(&f.verdicts[0]),
    );
    md.push_str("| step | min | median | max |\n|---|---|---|---|\n");
    if let Some(ms) = images.static_first {
        md.push_str(&format!(
            "| static probe, first build of the process (cargo; up to date unless sources changed) | {} | — | — |\n",
            ms_cell(ms)
        ));
    }
    let (first_ms, first_cached) = images.first;
    let first_what = match (opts.cold, first_cached) {
        (true, false) => {
            "first image of the process, after `--cold` removed its tags (uncached build)"
        }
        (false, false) => "first image of the process (it was not there: uncached build)",
        (_, true) => "first image of the process (found in the cache)",
    };
    md.push_str(&format!(
        "| {first_what} | {} | — | — |\n",
        ms_cell(first_ms)
    ));
    row(
        &mut md,
        &format!(
            "**image as `xtask conformance` gets it, cached** (static probe up to date, build that hits the cache, tag; {n}×)"
        ),
        images.cached.clone(),
    );
    if !images.static_probe.is_empty() {
        row(
            &mut md,
            &format!("· static probe, up to date (cargo; {n}×)"),
            images.static_probe.clone(),
        );
    }
    row(
        &mut md,
        &format!("· image build, tag and untagged-image check, probe given, cached ({n}×)"),
        images.build_cached.clone(),
    );
    row(
        &mut md,
        &format!(
            "image build, uncached (`FROM scratch` + `COPY`, no cache, throwaway tag removed after; {n}×)"
        ),
        images.build_uncached.clone(),
    );
    run_tables(
        &mut md,
        f,
        "container",
        " (privileged is tried first; later containers of the process skip what this host refused)",
        "container removed",
    );
    md.push_str(&end);
    md.push('\n');
    md
}

/// Times the image steps and returns the reference the runs use.
fn time_images(
    opts: &Options,
    runs: usize,
    arch: Arch,
    interrupted: &AtomicBool,
) -> Result<(String, ImageFigures), Failure> {
    let infra = |e: anyhow::Error| fail(image::exit_code(&e), format!("{e:#}"));
    let image_options = ImageOptions {
        arch: Some(arch),
        probe: opts.probe.clone(),
        verbose: false,
        progress: false,
        daemon_arch: None,
    };
    // The static probe first, so the first image below times the image, not a
    // static probe build that sources changed since the last one.
    let mut static_first = None;
    if opts.probe.is_none() {
        let built = probe_build::build_static_probe(arch, false).map_err(infra)?;
        static_first = Some(built.elapsed.as_secs_f64() * 1000.0);
    }
    if opts.cold {
        remove_own_tags(arch)?;
    }
    check_interrupt(interrupted)?;
    let t = Instant::now();
    let first = image::ensure_image(&image_options).map_err(infra)?;
    let first_ms = t.elapsed().as_secs_f64() * 1000.0;
    eprintln!(
        "image: first {} ({first_ms:.0} ms{})",
        first.reference,
        if first.cached { ", cached" } else { "" }
    );

    let mut cached = Vec::new();
    for _ in 0..runs {
        check_interrupt(interrupted)?;
        let t = Instant::now();
        image::ensure_image(&image_options).map_err(infra)?;
        cached.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut static_probe = Vec::new();
    let probe = match &opts.probe {
        Some(p) => p.clone(),
        None => {
            let mut path = PathBuf::new();
            for _ in 0..runs {
                check_interrupt(interrupted)?;
                let built = probe_build::build_static_probe(arch, false).map_err(infra)?;
                static_probe.push(built.elapsed.as_secs_f64() * 1000.0);
                path = built.path;
            }
            path
        }
    };

    let given = ImageOptions {
        probe: Some(probe.clone()),
        ..image_options
    };
    let (build_cached, build_uncached, ncpu) = on_docker_runtime(async {
        let docker = image::connect().await.map_err(infra)?;
        let ncpu = docker.info().await.ok().and_then(|i| i.ncpu);
        let native = image::daemon_arch(&docker).await.map_err(infra)?;
        let foreign = (arch != native).then_some(arch);
        let mut build_cached = Vec::new();
        for _ in 0..runs {
            check_interrupt(interrupted)?;
            let t = Instant::now();
            let built = image::build_image(&docker, &given).await.map_err(infra)?;
            build_cached.push(t.elapsed().as_secs_f64() * 1000.0);
            if !built.cached {
                eprintln!("warning: a cached image build did not hit the cache");
            }
        }
        let bytes = std::fs::read(&probe)
            .map_err(|e| fail(INFRA, format!("read {}: {e}", probe.display())))?;
        let context = image::build_context(&bytes).map_err(infra)?;
        let mut build_uncached = Vec::new();
        for _ in 0..runs {
            check_interrupt(interrupted)?;
            build_uncached.push(uncached_build(&docker, &context, foreign).await?);
        }
        Ok::<_, Failure>((build_cached, build_uncached, ncpu))
    })?;
    Ok((
        first.reference,
        ImageFigures {
            first: (first_ms, first.cached),
            static_first,
            cached,
            static_probe,
            build_cached,
            build_uncached,
            ncpu,
        },
    ))
}

/// Runs `fut` on the suite's Docker runtime, the one the process's Docker client and
/// its connection pool belong to (as `ensure_image` and the container target do).
fn on_docker_runtime<T: Send>(
    fut: impl std::future::Future<Output = Result<T, Failure>> + Send,
) -> Result<T, Failure> {
    docker::block_on(fut).map_err(|e| target_failure(TargetError::Infrastructure(e.to_string())))?
}

/// The throwaway tag uncached builds are made under (this process's own).
fn bench_tag() -> String {
    format!("{REPOSITORY}:bench-uncached-{}", std::process::id())
}

/// Builds `context` without Docker's cache under [`bench_tag`], times it, and removes
/// the tag (and so the image, which nothing else names) whatever the build did.
async fn uncached_build(
    docker: &Docker,
    context: &[u8],
    foreign: Option<Arch>,
) -> Result<f64, Failure> {
    let tag = bench_tag();
    let t = Instant::now();
    let built = async {
        let mut options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(&tag)
            .nocache(true)
            .rm(true)
            .forcerm(true);
        if let Some(arch) = foreign {
            options = options.platform(arch.oci_platform());
        }
        let mut stream = docker.build_image(
            options.build(),
            None,
            Some(bollard::body_full(context.to_vec().into())),
        );
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| format!("build {tag}: {e}"))?;
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(format!("building {tag} failed: {detail}"));
            }
            if info
                .stream
                .as_deref()
                .is_some_and(|s| s.contains("Using cache"))
            {
                return Err(format!("{tag} was built from the cache despite nocache"));
            }
        }
        Ok(())
    }
    .await;
    let elapsed = t.elapsed().as_secs_f64() * 1000.0;
    let removed = match docker.inspect_image(&tag).await {
        Ok(_) => docker
            .remove_image(
                &tag,
                Some(RemoveImageOptionsBuilder::default().build()),
                None,
            )
            .await
            .map(|_| ())
            .map_err(|e| format!("remove the throwaway image {tag}: {e}")),
        Err(_) => Ok(()),
    };
    built.and(removed).map_err(|e| fail(INFRA, e))?;
    Ok(elapsed)
}

/// `--cold`: removes this checkout's own tags of the probe image for `arch` (the
/// reference `xtask conformance` would use, and `latest`), never forced: an image a
/// container still uses is refused and the bench stops.
fn remove_own_tags(arch: Arch) -> Result<(), Failure> {
    on_docker_runtime(async {
        let infra = |e: anyhow::Error| fail(image::exit_code(&e), format!("{e:#}"));
        let docker = image::connect().await.map_err(infra)?;
        let native = image::daemon_arch(&docker).await.map_err(infra)?;
        let foreign = (arch != native).then_some(arch);
        for tag in own_tags(&workspace_root(), foreign) {
            if docker.inspect_image(&tag).await.is_err() {
                continue;
            }
            docker
                .remove_image(
                    &tag,
                    Some(RemoveImageOptionsBuilder::default().build()),
                    None,
                )
                .await
                .map_err(|e| fail(INFRA, format!("--cold: remove {tag}: {e}")))?;
            eprintln!("--cold: removed {tag}");
        }
        Ok(())
    })
}

/// The tags `cargo xtask image` gives this checkout's probe image.
fn own_tags(root: &Path, foreign: Option<Arch>) -> [String; 2] {
    let version = image::version_tag(env!("CARGO_PKG_VERSION"), &image::git_rev(root), foreign);
    [
        format!("{REPOSITORY}:{version}"),
        format!("{REPOSITORY}:{}", image::latest_tag(foreign)),
    ]
}

/// The boot-to-verdict goal for one guest alone (TCG, 2 cores), by its
/// architecture.
fn guest_goal_ms(arch: &str) -> Option<f64> {
    match arch {
        "x86_64" => Some(10_000.0),
        "aarch64" => Some(15_000.0),
        _ => None,
    }
}

/// The goal for the matrix of the six tracked kernels as one run.
const MATRIX_GOAL_MS: f64 = 45_000.0;
const MATRIX_GOAL_GUESTS: usize = 6;

/// What the kernel's own files say, for the figures (the guest's facts say the rest).
struct KernelInfo {
    name: String,
    page_size: u64,
    /// The Debian package's version, when the kernel came from one.
    package_version: Option<String>,
}

impl KernelInfo {
    fn of(kernel: &GuestKernel) -> KernelInfo {
        KernelInfo {
            name: kernel.name.clone(),
            page_size: kernel.page_size,
            package_version: kernel
                .package
                .as_deref()
                .map(|p| p.split_once(' ').map_or(p, |(_, v)| v).to_string()),
        }
    }
}

/// One kernel's guest, booted alone.
#[derive(Debug, Clone)]
struct KernelFigures {
    name: String,
    arch: String,
    page_size: u64,
    /// Each distinct `vm.accel` over its runs.
    accel: BTreeSet<String>,
    /// Each distinct package version over its runs (the guest's, else the package's).
    package: BTreeSet<String>,
    first_ms: f64,
    warm_ms: Vec<f64>,
    verdicts: BTreeSet<String>,
}

/// Every kernel's guest as the instances of one run.
#[derive(Debug, Clone)]
struct MatrixFigures {
    first_ms: f64,
    warm_ms: Vec<f64>,
    /// Each distinct `vm.accel` of any guest over the runs.
    accel: BTreeSet<String>,
    /// Per kernel, in the order of [`VmFigures::kernels`].
    verdicts: Vec<BTreeSet<String>>,
}

/// What `bench --target vm` measured, and where.
#[derive(Debug, Clone)]
struct VmFigures {
    command: String,
    cores: usize,
    host_kernel: String,
    host_arch: String,
    /// `qemu-system-x86_64 7.2.x`, one per guest architecture.
    qemu: Vec<String>,
    load: String,
    kernels: Vec<KernelFigures>,
    /// `None` with one kernel: its run alone is the matrix.
    matrix: Option<MatrixFigures>,
    /// `(kernel, why)` of each kernel not benched.
    skipped: Vec<(String, String)>,
}

/// The tracked kernels' names (fixtures/kernels.toml), the default `--kernel`s.
fn tracked_kernels() -> Result<Vec<String>, Failure> {
    Ok(kernel::tracked()
        .map_err(|e| fail(INFRA, e))?
        .into_iter()
        .map(|k| k.name)
        .collect())
}

/// The command that reproduces the section.
fn vm_command(opts: &Options, runs: usize) -> String {
    let mut c = String::from("cargo xtask bench --target vm");
    for spec in &opts.kernels {
        c.push_str(&format!(" --kernel {spec}"));
    }
    c.push_str(&format!(" --runs {runs}"));
    if let Some(p) = &opts.probe {
        c.push_str(&format!(" --probe {}", p.display()));
    }
    c
}

fn bench_vm(opts: &Options, runs: usize) -> Result<String, Failure> {
    let defaults = opts.kernels.is_empty();
    let specs = match defaults {
        true => tracked_kernels()?,
        false => opts.kernels.clone(),
    };
    // Each kernel as its files say; a tracked one that is not cached is skipped
    // (a given one that does not resolve is the user's error, as for conformance).
    let mut skipped: Vec<(String, String)> = Vec::new();
    let mut kept: Vec<String> = Vec::new();
    let mut infos: Vec<KernelInfo> = Vec::new();
    for spec in specs {
        match kernel::resolve(&spec) {
            Ok(k) => {
                if infos.iter().any(|i| i.name == k.name) {
                    return Err(fail(USAGE, format!("--kernel names {} twice", k.name)));
                }
                infos.push(KernelInfo::of(&k));
                kept.push(spec);
            }
            Err(e) if defaults => {
                eprintln!("skipped {spec}: {e}");
                skipped.push((spec, e.to_string()));
            }
            Err(e) => {
                let code = if e.is_usage() { USAGE } else { INFRA };
                return Err(fail(code, format!("--kernel {spec}: {e}")));
            }
        }
    }
    let none_left = |skipped: &[(String, String)]| {
        let why: Vec<String> = skipped.iter().map(|(k, w)| format!("{k}: {w}")).collect();
        fail(INFRA, format!("no kernel to bench ({})", why.join("; ")))
    };
    if kept.is_empty() {
        return Err(none_left(&skipped));
    }
    let vm = Vm::new(kept, AccelChoice::Auto);
    let ids = vm.preflight().map_err(target_failure)?;
    let mut guests: Vec<(InstanceId, KernelInfo)> = Vec::new();
    for (id, info) in ids.into_iter().zip(infos) {
        match guest_cannot_start(opts.probe.as_deref(), &id)? {
            Some(why) => {
                eprintln!("skipped {}: {why}", id.name);
                skipped.push((id.name, why));
            }
            None => guests.push((id, info)),
        }
    }
    if guests.is_empty() {
        return Err(none_left(&skipped));
    }
    // The static probes, once per architecture, before anything is timed.
    let mut built: Vec<(String, PathBuf)> = Vec::new();
    let mut probes: Vec<ProbeBinary> = Vec::new();
    for (id, _) in &guests {
        probes.push(ProbeBinary {
            path: static_probe(opts.probe.as_deref(), false, &id.arch, &mut built)?,
            image: None,
        });
    }
    let interrupted = interrupt_flag()?;
    let load_before = load_average();
    let mut kernels = Vec::new();
    for ((id, info), probe) in guests.iter().zip(&probes) {
        let f = time_runs(
            &one(&vm, id.clone(), probe.clone()),
            runs,
            None,
            &interrupted,
            &id.name,
        )?;
        kernels.push(kernel_figures(id, info, &f));
    }
    let matrix = match guests.len() {
        1 => None,
        _ => {
            let planned: Vec<Planned<'_>> = guests
                .iter()
                .zip(&probes)
                .map(|((id, _), probe)| Planned {
                    target: &vm,
                    instance: id.clone(),
                    probe: probe.clone(),
                })
                .collect();
            let f = time_runs(&planned, runs, None, &interrupted, "matrix")?;
            Some(matrix_figures(&f))
        }
    };
    let mut qemu: Vec<String> = Vec::new();
    for k in &kernels {
        if let Ok(machine) = qemu::machine(&k.arch) {
            let line = qemu_version(machine.qemu);
            if !qemu.contains(&line) {
                qemu.push(line);
            }
        }
    }
    let figures = VmFigures {
        command: vm_command(opts, runs),
        cores: num_cpus(),
        host_kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into()),
        host_arch: std::env::consts::ARCH.into(),
        qemu,
        load: load_text((load_before, load_average())),
        kernels,
        matrix,
        skipped,
    };
    Ok(vm_markdown(&figures))
}

/// `qemu-system-x86_64 7.2.x`, from `--version`'s first line.
fn qemu_version(program: &str) -> String {
    let out = std::process::Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let first = out.lines().next().unwrap_or("");
    match first.split_once("version ") {
        Some((_, v)) => format!("{program} {}", v.trim()),
        None => format!("{program} (version unknown)"),
    }
}

fn every_run(f: &RunFigures) -> impl Iterator<Item = &RunTiming> {
    std::iter::once(&f.first).chain(&f.warm)
}

fn kernel_figures(id: &InstanceId, info: &KernelInfo, f: &RunFigures) -> KernelFigures {
    let seen = || every_run(f).map(|t| &t.seen[0]);
    KernelFigures {
        name: id.name.clone(),
        arch: id.arch.clone(),
        page_size: match f.facts[0].page_size {
            0 => info.page_size,
            n => n,
        },
        accel: seen().filter_map(|s| s.accel.clone()).collect(),
        package: seen()
            .filter_map(|s| s.package.clone().or_else(|| info.package_version.clone()))
            .collect(),
        first_ms: f.first.judged,
        warm_ms: f.warm.iter().map(|t| t.judged).collect(),
        verdicts: f.verdicts[0].clone(),
    }
}

fn matrix_figures(f: &RunFigures) -> MatrixFigures {
    MatrixFigures {
        first_ms: f.first.judged,
        warm_ms: f.warm.iter().map(|t| t.judged).collect(),
        accel: every_run(f)
            .flat_map(|t| t.seen.iter().filter_map(|s| s.accel.clone()))
            .collect(),
        verdicts: f.verdicts.clone(),
    }
}

fn secs(ms: f64) -> String {
    format!("{:.1} s", ms / 1000.0)
}

fn page_cell(bytes: u64) -> String {
    match bytes {
        0 => "unknown".into(),
        b if b % 1024 == 0 => format!("{} KiB", b / 1024),
        b => format!("{b} B"),
    }
}

/// The values seen over the runs: one, or each when runs differed.
fn set_cell(set: &BTreeSet<String>) -> String {
    let all: Vec<&str> = set.iter().map(String::as_str).collect();
    match all.len() {
        0 => "unknown".into(),
        1 => all[0].into(),
        _ => format!("{} (differed between runs)", all.join(", ")),
    }
}

/// Whether the runs after the first meet `goal`: by their median, and the max said.
fn met_cell(goal_ms: f64, s: &Stats) -> String {
    if s.max <= goal_ms {
        "yes".into()
    } else if s.median <= goal_ms {
        format!(
            "yes at the median; the max is {} over",
            secs(s.max - goal_ms)
        )
    } else {
        format!("**no**: the median is {} over", secs(s.median - goal_ms))
    }
}

fn vm_markdown(v: &VmFigures) -> String {
    let (begin, end) = markers("vm");
    let n = v.kernels.first().map_or(0, |k| k.warm_ms.len());
    let mut md = format!(
        "{begin}\n`{}` (each guest: its kernel with the static probe as init, one vCPU, 1 GiB, every check with its negative control, facts included; a run is timed from before the guest is started until its observations are judged against the matrix its facts detect, qemu has exited by then; the static probes are built first and not timed): {} cores, host kernel {} ({}), {}; {}.\n\n",
        v.command,
        v.cores,
        v.host_kernel,
        v.host_arch,
        v.qemu.join(", "),
        v.load,
    );
    md.push_str(&format!(
        "Goals (the issue's, under TCG on 2 cores), boot to verdict: each guest alone ≤ 10 s (x86_64) or ≤ 15 s (arm64); the six-guest matrix ≤ 45 s. A goal is met when the median of the {} after the first is at or under it.\n\n",
        match n {
            1 => "run".to_string(),
            n => format!("{n} runs"),
        }
    ));
    md.push_str("| kernel | arch | page size | accel | package version | first run | min | median | max | goal | met? |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    let mut missed: Vec<String> = Vec::new();
    for k in &v.kernels {
        let s = stats(k.warm_ms.clone());
        let (goal, met) = match guest_goal_ms(&k.arch) {
            Some(g) => {
                if s.median > g {
                    missed.push(format!(
                        "{} alone (median {}, goal {})",
                        k.name,
                        secs(s.median),
                        secs(g)
                    ));
                }
                (format!("≤ {}", secs(g)), met_cell(g, &s))
            }
            None => ("none".into(), "—".into()),
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {goal} | {met} |\n",
            k.name,
            k.arch,
            page_cell(k.page_size),
            set_cell(&k.accel),
            set_cell(&k.package),
            secs(k.first_ms),
            secs(s.min),
            secs(s.median),
            secs(s.max),
        ));
    }
    md.push('\n');
    let guests = v.kernels.len();
    match &v.matrix {
        None => md.push_str(
            "**matrix**: not run, one kernel only (its runs above are the whole matrix).\n",
        ),
        Some(m) => {
            let s = stats(m.warm_ms.clone());
            let goal = match guests == MATRIX_GOAL_GUESTS {
                true => {
                    if s.median > MATRIX_GOAL_MS {
                        missed.push(format!(
                            "the matrix (median {}, goal {})",
                            secs(s.median),
                            secs(MATRIX_GOAL_MS)
                        ));
                    }
                    format!(
                        "goal ≤ {}: {}",
                        secs(MATRIX_GOAL_MS),
                        met_cell(MATRIX_GOAL_MS, &s)
                    )
                }
                false => format!(
                    "no goal for {guests} guests (the {} goal is for the six tracked kernels)",
                    secs(MATRIX_GOAL_MS)
                ),
            };
            md.push_str(&format!(
                "**matrix**, the {guests} kernels as the instances of one run (at most {} guests at once, one per core; accel {}): first run {}; {} runs after it: min {}, median {}, max {}; {goal}.\n",
                v.cores,
                set_cell(&m.accel),
                secs(m.first_ms),
                m.warm_ms.len(),
                secs(s.min),
                secs(s.median),
                secs(s.max),
            ));
        }
    }
    md.push('\n');
    match missed.is_empty() {
        true => md.push_str("Every goal measured here is met.\n"),
        false => md.push_str(&format!("Goals missed: {}.\n", missed.join("; "))),
    }
    md.push_str("\nVerdicts, each kernel alone: ");
    let alone: Vec<String> = v
        .kernels
        .iter()
        .map(|k| format!("{} {}", k.name, set_cell(&k.verdicts)))
        .collect();
    md.push_str(&alone.join("; "));
    if let Some(m) = &v.matrix {
        let differ: Vec<String> = v
            .kernels
            .iter()
            .zip(&m.verdicts)
            .filter(|(k, mv)| &k.verdicts != *mv)
            .map(|(k, mv)| format!("{} {}", k.name, set_cell(mv)))
            .collect();
        match differ.is_empty() {
            true => md.push_str("; the matrix runs gave each the same"),
            false => md.push_str(&format!("; in the matrix runs: {}", differ.join("; "))),
        }
    }
    md.push_str(".\n");
    if !v.skipped.is_empty() {
        let skipped: Vec<String> = v
            .skipped
            .iter()
            .map(|(k, why)| format!("{k} ({why})"))
            .collect();
        md.push_str(&format!("\nSkipped: {}.\n", skipped.join("; ")));
    }
    md.push_str(&end);
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_min_median_max() {
        let s = stats(vec![3.0, 1.0, 2.0, 10.0, 4.0]);
        assert_eq!((s.min, s.median, s.max), (1.0, 3.0, 10.0));
        let one = stats(vec![7.0]);
        assert_eq!((one.min, one.median, one.max), (7.0, 7.0, 7.0));
    }

    #[test]
    fn a_section_is_replaced_between_its_own_markers_only() {
        let text = "# B\n\n<!-- bench:lab begin -->\nold lab\n<!-- bench:lab end -->\n\nhand\n\n<!-- bench:container begin -->\nold c\n<!-- bench:container end -->\ntail\n";
        let new = "<!-- bench:container begin -->\nnew c\n<!-- bench:container end -->\n";
        let out = replace_section(text, "container", new).unwrap();
        assert_eq!(
            out,
            "# B\n\n<!-- bench:lab begin -->\nold lab\n<!-- bench:lab end -->\n\nhand\n\n<!-- bench:container begin -->\nnew c\n<!-- bench:container end -->\ntail\n"
        );
        let missing = replace_section("no markers", "container", new).unwrap_err();
        assert!(
            missing.contains("<!-- bench:container begin -->"),
            "{missing}"
        );
    }

    #[test]
    fn own_tags_are_this_projects_repository_only() {
        for tag in own_tags(&workspace_root(), None)
            .into_iter()
            .chain(own_tags(&workspace_root(), Some(Arch::Aarch64)))
        {
            assert!(tag.starts_with("cilium-conformance-probe:"), "{tag}");
        }
        assert!(bench_tag().starts_with("cilium-conformance-probe:bench-uncached-"));
    }

    #[test]
    fn cold_is_refused_for_the_lab() {
        let opts = Options {
            target: BenchTarget::Lab,
            runs: Some(1),
            probe: None,
            kernels: Vec::new(),
            cold: true,
            write: false,
        };
        let err = run(opts).expect_err("refused");
        assert_eq!(err.code, USAGE);
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        opts: Options,
    }

    fn parse(argv: &[&str]) -> Options {
        <Cli as clap::Parser>::try_parse_from(std::iter::once("bench").chain(argv.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"))
            .opts
    }

    #[test]
    fn runs_default_per_target_and_kernel_is_for_vm_only() {
        assert_eq!(checked_runs(&parse(&[])).ok(), Some(10));
        assert_eq!(
            checked_runs(&parse(&["--target", "container"])).ok(),
            Some(10)
        );
        assert_eq!(checked_runs(&parse(&["--target", "vm"])).ok(), Some(3));
        assert_eq!(
            checked_runs(&parse(&["--target", "vm", "--runs", "5"])).ok(),
            Some(5)
        );
        let vm = parse(&[
            "--target",
            "vm",
            "--kernel",
            "6.1-amd64",
            "--kernel",
            "6.12-arm64",
        ]);
        assert_eq!(vm.kernels, ["6.1-amd64", "6.12-arm64"]);
        assert_eq!(
            vm_command(&vm, 3),
            "cargo xtask bench --target vm --kernel 6.1-amd64 --kernel 6.12-arm64 --runs 3"
        );
        assert_eq!(
            vm_command(&parse(&["--target", "vm"]), 3),
            "cargo xtask bench --target vm --runs 3"
        );
        for (argv, says) in [
            (
                &["--kernel", "6.1-amd64"][..],
                "--kernel is for --target vm only",
            ),
            (
                &["--target", "container", "--kernel", "6.1-amd64"][..],
                "--kernel is for --target vm only",
            ),
            (
                &["--target", "vm", "--cold"][..],
                "--cold is for --target container only",
            ),
            (
                &["--target", "vm", "--runs", "0"][..],
                "--runs must be at least 1",
            ),
        ] {
            let err = checked_runs(&parse(argv)).expect_err("refused");
            assert_eq!((err.code, err.message.as_str()), (USAGE, says), "{argv:?}");
        }
    }

    #[test]
    fn the_default_kernels_are_the_six_tracked_ones() {
        assert_eq!(
            tracked_kernels().map_err(|f| f.message).unwrap(),
            [
                "5.10-amd64",
                "6.1-amd64",
                "6.12-amd64",
                "6.1-arm64",
                "6.12-arm64",
                "6.12-arm64-16k"
            ]
        );
    }

    #[test]
    fn goals_are_met_by_the_median_and_the_max_is_said() {
        assert_eq!(guest_goal_ms("x86_64"), Some(10_000.0));
        assert_eq!(guest_goal_ms("aarch64"), Some(15_000.0));
        assert_eq!(guest_goal_ms("riscv64"), None);
        assert_eq!(
            met_cell(10_000.0, &stats(vec![8_000.0, 9_000.0, 10_000.0])),
            "yes"
        );
        assert_eq!(
            met_cell(10_000.0, &stats(vec![8_000.0, 9_000.0, 12_500.0])),
            "yes at the median; the max is 2.5 s over"
        );
        assert_eq!(
            met_cell(10_000.0, &stats(vec![11_000.0, 11_200.0, 12_000.0])),
            "**no**: the median is 1.2 s over"
        );
        assert_eq!(page_cell(4096), "4 KiB");
        assert_eq!(page_cell(16384), "16 KiB");
        assert_eq!(page_cell(0), "unknown");
    }

    fn kernel(name: &str, arch: &str, page: u64, warm: &[f64]) -> KernelFigures {
        KernelFigures {
            name: name.into(),
            arch: arch.into(),
            page_size: page,
            accel: BTreeSet::from(["tcg".to_string()]),
            package: BTreeSet::from(["6.12.57-1".to_string()]),
            first_ms: warm[0] + 500.0,
            warm_ms: warm.to_vec(),
            verdicts: BTreeSet::from(["20 pass, 8 unsupported (vm matrix)".to_string()]),
        }
    }

    fn figures() -> VmFigures {
        VmFigures {
            command: "cargo xtask bench --target vm --runs 3".into(),
            cores: 2,
            host_kernel: "6.18.44".into(),
            host_arch: "x86_64".into(),
            qemu: vec!["qemu-system-x86_64 7.2.15".into()],
            load: "1-min load average 1.00 before the runs, 1.20 after".into(),
            kernels: vec![
                kernel("6.12-amd64", "x86_64", 4096, &[7_000.0, 7_400.0, 7_200.0]),
                kernel(
                    "6.12-arm64-16k",
                    "aarch64",
                    16384,
                    &[16_000.0, 15_800.0, 17_000.0],
                ),
            ],
            matrix: Some(MatrixFigures {
                first_ms: 30_000.0,
                warm_ms: vec![29_000.0, 28_000.0, 31_000.0],
                accel: BTreeSet::from(["tcg".to_string()]),
                verdicts: vec![
                    BTreeSet::from(["20 pass, 8 unsupported (vm matrix)".to_string()]),
                    BTreeSet::from(["19 pass, 9 unsupported (vm matrix)".to_string()]),
                ],
            }),
            skipped: vec![("5.10-amd64".into(), "not cached".into())],
        }
    }

    #[test]
    fn the_vm_section_has_a_row_per_kernel_the_matrix_and_every_miss() {
        let md = vm_markdown(&figures());
        assert!(
            md.starts_with("<!-- bench:vm begin -->\n`cargo xtask bench --target vm --runs 3` ("),
            "{md}"
        );
        assert!(md.ends_with("<!-- bench:vm end -->\n"), "{md}");
        assert!(
            md.contains("2 cores, host kernel 6.18.44 (x86_64), qemu-system-x86_64 7.2.15"),
            "{md}"
        );
        assert!(
            md.contains("| kernel | arch | page size | accel | package version | first run | min | median | max | goal | met? |"),
            "{md}"
        );
        assert!(
            md.contains("| 6.12-amd64 | x86_64 | 4 KiB | tcg | 6.12.57-1 | 7.5 s | 7.0 s | 7.2 s | 7.4 s | ≤ 10.0 s | yes |"),
            "{md}"
        );
        assert!(
            md.contains("| 6.12-arm64-16k | aarch64 | 16 KiB | tcg | 6.12.57-1 | 16.5 s | 15.8 s | 16.0 s | 17.0 s | ≤ 15.0 s | **no**: the median is 1.0 s over |"),
            "{md}"
        );
        assert!(
            md.contains("**matrix**, the 2 kernels as the instances of one run (at most 2 guests at once, one per core; accel tcg): first run 30.0 s; 3 runs after it: min 28.0 s, median 29.0 s, max 31.0 s; no goal for 2 guests"),
            "{md}"
        );
        assert!(
            md.contains("Goals missed: 6.12-arm64-16k alone (median 16.0 s, goal 15.0 s).\n"),
            "{md}"
        );
        assert!(
            md.contains("; in the matrix runs: 6.12-arm64-16k 19 pass, 9 unsupported (vm matrix)."),
            "{md}"
        );
        assert!(md.contains("\nSkipped: 5.10-amd64 (not cached).\n"), "{md}");

        let mut six = figures();
        six.kernels = (0..6)
            .map(|i| {
                kernel(
                    &format!("k{i}"),
                    "x86_64",
                    4096,
                    &[5_000.0, 5_000.0, 5_000.0],
                )
            })
            .collect();
        let m = six.matrix.as_mut().unwrap();
        m.verdicts = vec![six.kernels[0].verdicts.clone(); 6];
        m.warm_ms = vec![40_000.0, 44_000.0, 46_000.0];
        six.skipped.clear();
        let md = vm_markdown(&six);
        assert!(
            md.contains("; goal ≤ 45.0 s: yes at the median; the max is 1.0 s over.\n"),
            "{md}"
        );
        assert!(md.contains("Every goal measured here is met.\n"), "{md}");
        assert!(
            md.contains("; the matrix runs gave each the same.\n"),
            "{md}"
        );
        assert!(!md.contains("Skipped"), "{md}");

        six.matrix = None;
        assert!(vm_markdown(&six).contains("**matrix**: not run, one kernel only"));
    }

    #[test]
    fn the_vm_section_is_added_after_the_container_one_when_absent() {
        let text = "# B\n\n## C\n\n<!-- bench:container begin -->\nc\n<!-- bench:container end -->\n\nhand\n\n## Code paths\n\nx\n";
        let out = with_vm_section(text);
        assert_eq!(
            out,
            "# B\n\n## C\n\n<!-- bench:container begin -->\nc\n<!-- bench:container end -->\n\nhand\n\n## vm target: boot to verdict per kernel and for the matrix\n\n<!-- bench:vm begin -->\n<!-- bench:vm end -->\n\n## Code paths\n\nx\n"
        );
        // Present: left alone, and the writer replaces it.
        assert_eq!(with_vm_section(&out), out);
        let section = "<!-- bench:vm begin -->\nfigures\n<!-- bench:vm end -->\n";
        let written = replace_section(&out, "vm", section).unwrap();
        assert!(
            written.contains(
                "matrix\n\n<!-- bench:vm begin -->\nfigures\n<!-- bench:vm end -->\n\n## Code paths"
            ),
            "{written}"
        );
        // No container section, no heading after it: at the end.
        assert_eq!(
            with_vm_section("# B\n"),
            "# B\n\n## vm target: boot to verdict per kernel and for the matrix\n\n<!-- bench:vm begin -->\n<!-- bench:vm end -->\n"
        );
    }
}
