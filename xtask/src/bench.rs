//! `cargo xtask bench`: times full runs of a target end to end (every check with its
//! negative control, facts included) several times and reports the wall time per run
//! and per check, so BENCHMARKS.md holds measured figures rather than guesses. With
//! `--write` it replaces the target's section of BENCHMARKS.md.
//!
//! - `lab` (the default): the release probe in network namespaces on this host.
//! - `container`: the probe image as `xtask conformance` gets it (cached, and built
//!   without the cache), then container runs from that image.
//!
//! A run is timed the same way for both: from before [`Target::start`] (the probe
//! process, or the node container, is created) until its observations are judged
//! against the environment's matrix, which is after the probe exited (and its
//! container was removed). The first run of the process is reported on its own (the
//! container target tries privileged there, and later containers of the process do
//! not); the `--runs` runs after it give min / median / max.

use crate::conformance::{Failure, build_probe_path, target_failure, workspace_root};
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
}

impl BenchTarget {
    fn name(self) -> &'static str {
        match self {
            BenchTarget::Lab => "lab",
            BenchTarget::Container => "container",
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
Exit codes: 0 measured, 2 bad usage, 3 infrastructure error (Docker unreachable, a probe run that \
failed), 130 interrupted (Ctrl-C stops and removes the running probe or container)."
)]
pub struct Options {
    /// Where the runs are timed.
    #[arg(long, value_enum, default_value = "lab", value_name = "TARGET")]
    target: BenchTarget,
    /// Timed runs after the first one of the process (and, for `container`, samples of
    /// each image step).
    #[arg(long, default_value_t = 10, value_name = "N")]
    runs: usize,
    /// lab: use this probe binary instead of building the release one. container: put
    /// this static probe in the image instead of building one (the static probe step is
    /// then not timed).
    #[arg(long, value_name = "PATH")]
    probe: Option<PathBuf>,
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

/// One timed run, each point in ms from before [`Target::start`].
#[derive(Debug, Clone, Default)]
struct RunTiming {
    facts: f64,
    last_observation: f64,
    done: f64,
    /// The runner returned: the probe exited (and its container was removed).
    exited: f64,
    /// The observations are judged: the end of the run.
    judged: f64,
}

/// What [`time_runs`] measured.
struct RunFigures {
    first: RunTiming,
    warm: Vec<RunTiming>,
    /// Per `check[variant]`: the probe's own duration (both legs), warm runs only.
    per_check: BTreeMap<String, Vec<f64>>,
    facts: Facts,
    /// Each distinct verdict tally seen (one, unless runs disagreed), with its matrix.
    verdicts: BTreeSet<String>,
    /// The 1-minute load average before the first run and after the last one: other
    /// work on the host slows every figure, so the figures say how busy it was.
    load: (Option<f64>, Option<f64>),
}

pub fn run(opts: Options) -> Result<ExitCode, Failure> {
    if opts.runs == 0 {
        return Err(fail(USAGE, "--runs must be at least 1"));
    }
    if opts.cold && opts.target != BenchTarget::Container {
        return Err(fail(USAGE, "--cold is for --target container only"));
    }
    let md = match opts.target {
        BenchTarget::Lab => bench_lab(&opts)?,
        BenchTarget::Container => bench_container(&opts)?,
    };
    println!("{md}");
    if opts.write {
        let path = workspace_root().join("BENCHMARKS.md");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| fail(INFRA, format!("read {}: {e}", path.display())))?;
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

/// Runs the probe once plus `runs` times on `target` and times each run.
fn time_runs(
    target: &dyn Target,
    instance: InstanceId,
    probe: ProbeBinary,
    runs: usize,
    jobs: Option<usize>,
    interrupted: &Arc<AtomicBool>,
) -> Result<RunFigures, Failure> {
    let matrices = load_matrices()?;
    let plan: Vec<PlannedCheck> = Selection::all().plan(CATALOGUE);
    let label = instance.label();
    let planned = [Planned {
        target,
        instance,
        probe,
    }];
    let control = RunControl {
        timeout: Duration::from_secs(120),
        interrupted: interrupted.clone(),
        verbose: false,
    };
    let mut first = None;
    let mut warm = Vec::new();
    let mut per_check: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut facts = None;
    let mut verdicts = BTreeSet::new();
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
        let finished = runner::run(&planned, &args, &control, &mut |_, event| {
            let now = ms(Instant::now());
            match event {
                StreamEvent::Facts(_) => timing.facts = now,
                StreamEvent::Observation(o) => {
                    timing.last_observation = now;
                    durations.push((format!("{}[{}]", o.check, o.variant), o.duration_ms));
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
        let f = finished.into_iter().next().expect("one instance planned");
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
        timing.judged = ms(Instant::now());

        let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
        for v in &judged {
            *tally.entry(v.verdict.as_str()).or_default() += 1;
        }
        let tally: Vec<String> = VerdictKind::ALL
            .iter()
            .filter_map(|k| tally.get(k.as_str()).map(|n| format!("{n} {k}")))
            .collect();
        verdicts.insert(format!("{} ({} matrix)", tally.join(", "), env.as_str()));
        eprintln!(
            "run {i}/{runs}{}: {:.0} ms",
            if i == 0 {
                " (first of the process, shown apart)"
            } else {
                ""
            },
            timing.judged
        );
        if i == 0 {
            facts = Some(stream.facts);
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
    match f.load {
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

fn verdict_phrase(f: &RunFigures) -> String {
    let all: Vec<&str> = f.verdicts.iter().map(String::as_str).collect();
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

fn bench_lab(opts: &Options) -> Result<String, Failure> {
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
        &target,
        instance.clone(),
        binary(),
        opts.runs,
        None,
        &interrupted,
    )?;
    // What each check costs on its own: in a parallel run checks share the CPUs
    // and the kernel's locks, so their own durations there are longer.
    eprintln!("full runs, one check at a time (--jobs 1), for each check's own cost:");
    let serial = time_runs(
        &target,
        instance,
        binary(),
        opts.runs,
        Some(1),
        &interrupted,
    )?;
    let (begin, end) = markers("lab");
    let mut md = format!(
        "{begin}\n`cargo xtask bench --runs {}` (release probe, every check with its negative control, facts included; a run is timed from before the probe starts until its observations are judged; checks run in parallel, the probe's default of twice the CPUs): kernel {} ({}), {} CPUs, {}; {}.\n\n| full lab run | min | median | max |\n|---|---|---|---|\n",
        opts.runs,
        f.facts.kernel_release,
        f.facts.arch,
        num_cpus(),
        load_phrase(&f),
        verdict_phrase(&f),
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

fn bench_container(opts: &Options) -> Result<String, Failure> {
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
    let (reference, images) = time_images(opts, arch, &interrupted)?;
    eprintln!("image: {reference}");
    let f = time_runs(
        &target,
        instance,
        ProbeBinary {
            path: PathBuf::from(PROBE_PATH_IN_IMAGE),
            image: Some(reference),
        },
        opts.runs,
        None,
        &interrupted,
    )?;
    Ok(container_markdown(opts, &daemon, &images, &f))
}

fn container_markdown(
    opts: &Options,
    daemon: &DaemonInfo,
    images: &ImageFigures,
    f: &RunFigures,
) -> String {
    let (begin, end) = markers("container");
    let n = opts.runs;
    let mode = f
        .facts
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
        f.facts.kernel_release,
        f.facts.arch,
        load_phrase(f),
        verdict_phrase(f),
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
    for _ in 0..opts.runs {
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
            for _ in 0..opts.runs {
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
        for _ in 0..opts.runs {
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
        for _ in 0..opts.runs {
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
            runs: 1,
            probe: None,
            cold: true,
            write: false,
        };
        let err = run(opts).expect_err("refused");
        assert_eq!(err.code, USAGE);
    }
}
