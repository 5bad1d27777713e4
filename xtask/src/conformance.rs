//! `cargo xtask conformance`: validate the inputs, build (or take) the probe, run it
//! on a target, judge its observations against the environment's matrix, write the
//! reports and exit with the DESIGN.md code.
//!
//! Everything the user can get wrong (target, `--test`, matrix, `--cilium-values`,
//! report paths, privileges) is checked before the probe starts, and reported as
//! one line with exit code 2. Reports are written only for a finished run,
//! atomically.
//!
//! Exit code: the verdicts' (DESIGN.md), except that with `--cilium-values` a
//! setting the values turn on that an instance cannot run is 1 as well, so a CI
//! gate fails before anyone deploys the values there. Readiness without values,
//! and settings the values leave off, never change it.

use anyhow::{Result, anyhow};
use conformance_contract::CATALOGUE;
use conformance_contract::pods::is_pod_level;
use conformance_suite::cilium_values;
use conformance_suite::env::{Environment, EnvironmentSource, detect};
use conformance_suite::matrix::Matrix;
use conformance_suite::progress::Progress;
use conformance_suite::report::{
    InstanceMeta, InstanceRun, ProbeInfo, ReportPaths, Run, RunMeta, color_wanted, render_table,
    rfc3339_utc, write_reports,
};
use conformance_suite::select::Selection;
use conformance_suite::target::cluster::Cluster;
use conformance_suite::target::container::Container;
use conformance_suite::target::lab::Lab;
use conformance_suite::target::runner::{self, Finished, Planned, RunnerError};
use conformance_suite::target::vm::Vm;
use conformance_suite::target::vm::qemu::AccelChoice;
use conformance_suite::target::{
    InstanceId, ProbeArgs, ProbeBinary, RunControl, Target, TargetError, TargetKind,
};
use conformance_suite::verdict::evaluate;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

/// Makes a target from the options; cheap ([`Target::preflight`] does the checking).
type MakeTarget = fn(&Options) -> Box<dyn Target>;

/// The targets this build can run, one line each; a target missing here is
/// reported as not built yet, before anything is built.
const TARGETS: &[(TargetKind, MakeTarget)] = &[
    (TargetKind::Lab, |_| Box::new(Lab::new())),
    (TargetKind::Container, |_| Box::new(Container::new())),
    (TargetKind::Vm, |opts| {
        Box::new(Vm::new(opts.kernels.clone(), opts.vm_accel))
    }),
    (TargetKind::Cluster, |opts| {
        Box::new(Cluster::new(opts.kubeconfig.clone(), opts.context.clone()))
    }),
];

#[derive(clap::Args)]
#[command(
    after_help = "Exit codes: 0 every verdict as expected, 1 regression (or unexpected pass with --strict, \
or with --cilium-values a setting the values turn on that this environment cannot run), \
2 bad usage or input file, 3 infrastructure error, 130 interrupted."
)]
pub struct Options {
    /// Where the probe runs, comma-separated to run several side by side (`lab,container`):
    /// `lab` (network namespaces on this host; needs root or passwordless sudo),
    /// `container` (a k3d-node-like Docker container on the daemon the docker CLI would use,
    /// DOCKER_HOST or the current docker context:
    /// privileged, or near-privileged where privileged cannot start).
    /// `vm` (a guest booted under qemu per `--kernel`, the probe as its init;
    /// x86_64 and arm64 guests, emulated where KVM does not work).
    /// `cluster` (a probe pod on every node of the cluster `--kubeconfig`/`--context` reach,
    /// Cilium installed; the probe image node-local, `--probe-image`).
    #[arg(long, default_value = "lab", value_name = "TARGET,...")]
    target: String,
    /// Environment whose matrix judges every instance: `container`, `vm` or `hetzner`.
    /// Default: detected per instance from its facts (container runtime, DMI vendor, hypervisor).
    #[arg(long, value_name = "ENV")]
    env: Option<String>,
    /// Judge against this matrix file instead of fixtures/matrix/<env>.toml.
    #[arg(long, value_name = "FILE")]
    matrix: Option<PathBuf>,
    /// Checks to run: comma-separated regular expressions over check ids (and `id[variant]`);
    /// a leading `!` excludes. Repeatable. Default: every check.
    #[arg(long = "test", value_name = "REGEX,...")]
    tests: Vec<String>,
    /// JUnit XML report (CI test reporters). Default: reports/junit.xml in the repository.
    #[arg(long, value_name = "FILE")]
    junit_file: Option<PathBuf>,
    /// JSON report: facts, every observation with evidence, verdicts and the matrix entries behind
    /// them. Default: reports/run.json in the repository.
    #[arg(long, value_name = "FILE")]
    json_file: Option<PathBuf>,
    /// Markdown summary (for humans and CI step summaries). Default: reports/summary.md in the repository.
    #[arg(long, value_name = "FILE")]
    markdown_file: Option<PathBuf>,
    /// The team's Cilium Helm values (the file they deploy with): the reports name each setting
    /// they turn on (eBPF host routing, kube-proxy replacement, tunnel or native routing, TCX,
    /// netkit, ...) that this environment cannot run, with the failing check's reason, and those
    /// still unknown. Exit 1 when one cannot run, even if every verdict is as expected. Unset keys
    /// take the Cilium 1.19 chart's defaults; a file that does not parse, or a key read with a wrong
    /// type, exits 2 naming FILE:LINE.
    #[arg(long, value_name = "FILE")]
    cilium_values: Option<PathBuf>,
    /// Fail the run (exit 1) on an unexpected pass too.
    #[arg(long)]
    strict: bool,
    /// Echo the probe's stderr and the build's output.
    #[arg(short, long)]
    verbose: bool,
    /// Stop the probes still running after this many seconds (exit 3).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    timeout: u64,
    /// Use this probe binary for the `lab` target instead of building one
    /// (`cargo build --release -p conformance-probes`).
    #[arg(long, value_name = "PATH")]
    probe: Option<PathBuf>,
    /// Run the `container` target from this image (with the probe at /probe) instead of
    /// building one around the static probe (`cargo xtask image`). For `cluster`: the image
    /// the probe pods run (default cilium-conformance-probe:latest, imported into the nodes:
    /// `k3d image import`; never pulled).
    #[arg(long, value_name = "REF")]
    probe_image: Option<String>,
    /// `--target cluster`: write every manifest the run would apply (namespace, RBAC, probe
    /// DaemonSet, echo/client pods, services) into DIR, one file each, and exit; no cluster
    /// is contacted.
    #[arg(long, value_name = "DIR")]
    render_manifests: Option<PathBuf>,
    /// `--target cluster`: the kubeconfig to use (default: KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// `--target cluster`: the kubeconfig context (default: its current context;
    /// k3d: k3d-cilium-conformance).
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// `--target vm`: a kernel to boot, repeatable (one guest each, side by side): a name
    /// from `cargo xtask kernels` (fetched into its cache: `--fetch NAME`), a Debian
    /// `linux-image-*.deb`, or `IMAGE,MODULES_DIR` (a kernel image and its lib/modules/<release>).
    /// Default: every tracked kernel in the cache (`cargo xtask kernels` lists them).
    #[arg(long = "kernel", value_name = "SPEC")]
    kernels: Vec<String>,
    /// `--target vm`: qemu's accelerator: `auto` (KVM where a trial boot of the kernel works,
    /// else TCG emulation; the choice and why are facts of the run), `tcg` or `kvm`.
    #[arg(long, value_name = "ACCEL", default_value = "auto")]
    vm_accel: AccelChoice,
    /// Break a check's datapath on purpose (`ID=drop` or `ID=no-route`), to see the suite catch it.
    #[arg(long, value_name = "ID=KIND", hide = true)]
    fault: Vec<String>,
    /// Ask the probe for triage evidence on every observation that does not pass
    /// (`cargo xtask triage` sets it).
    #[arg(long, hide = true)]
    probe_triage: bool,
    /// Checks each probe runs at once, each in namespaces of its own (default: twice
    /// the CPUs, 2 to 8; `--jobs 1` runs them one after another).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: Option<u16>,
}

/// A failure with its exit code; printed once, as one line, by `main`.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

fn fail(code: u8, message: impl std::fmt::Display) -> Failure {
    Failure {
        code,
        message: message.to_string(),
    }
}

const USAGE: u8 = 2;
const INFRA: u8 = 3;
const INTERRUPTED: u8 = 130;

pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The matrix (or the candidates, when the environment is detected later).
enum MatrixChoice {
    Fixed(Matrix, EnvironmentSource),
    ByEnvironment(Vec<Matrix>),
}

fn choose_matrix(opts: &Options) -> Result<MatrixChoice, Failure> {
    let env: Option<Environment> = opts
        .env
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e| fail(USAGE, e))?;
    let fixtures = workspace_root().join("fixtures");
    if let Some(path) = &opts.matrix {
        let matrix = Matrix::load(path).map_err(|e| fail(USAGE, e))?;
        if let Some(env) = env {
            matrix.ensure_environment(env).map_err(|e| fail(USAGE, e))?;
        }
        return Ok(MatrixChoice::Fixed(matrix, EnvironmentSource::Given));
    }
    if let Some(env) = env {
        let matrix = Matrix::load(env.matrix_path(&fixtures)).map_err(|e| fail(USAGE, e))?;
        return Ok(MatrixChoice::Fixed(matrix, EnvironmentSource::Given));
    }
    // Validate every shipped matrix now, so a broken one fails before the probe runs.
    let matrices = Environment::ALL
        .iter()
        .map(|env| Matrix::load(env.matrix_path(&fixtures)).map_err(|e| fail(USAGE, e)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(MatrixChoice::ByEnvironment(matrices))
}

/// Builds the probe in release mode and returns the binary's path.
fn build_probe(verbose: bool) -> Result<PathBuf> {
    eprintln!(
        "building the probe (cargo build --release -p conformance-probes; about 2 minutes the first time) ..."
    );
    crate::probe_build::release_probe(&workspace_root(), |_| {}, verbose)
        .map_err(|(_, tail)| anyhow!("building the probe failed:\n{tail}"))
}

/// The probe reports `<version> (ebpf <source> <stamp>)`; the report keeps the parts apart.
fn probe_info(version: &str, privilege: &str) -> ProbeInfo {
    let (version, objects) = match version.split_once(" (ebpf ") {
        Some((v, rest)) => (v.to_string(), rest.trim_end_matches(')').to_string()),
        None => (version.to_string(), "unknown".to_string()),
    };
    ProbeInfo {
        version: format!("{version}, started {privilege}"),
        ebpf_objects: objects,
    }
}

/// [`build_probe`] with its error as a [`Failure`].
pub fn build_probe_path(verbose: bool) -> Result<PathBuf, Failure> {
    build_probe(verbose).map_err(|e| fail(INFRA, format!("{e:#}")))
}

/// The probe image for a container instance of `arch`: `--probe-image`, or one built
/// (or found in Docker's cache) around the static probe, once per architecture.
fn image_for(
    opts: &Options,
    arch: &str,
    built: &mut Vec<(String, String)>,
) -> Result<String, Failure> {
    if let Some(given) = &opts.probe_image {
        return Ok(given.clone());
    }
    if let Some((_, reference)) = built.iter().find(|(a, _)| a == arch) {
        return Ok(reference.clone());
    }
    let arch_kind = crate::probe_build::Arch::from_docker(arch).map_err(|e| fail(INFRA, e))?;
    let image = crate::image::ensure_image(&crate::image::ImageOptions {
        arch: Some(arch_kind),
        probe: None,
        verbose: opts.verbose,
        progress: true,
        // The instance's architecture is the daemon's (preflight asked).
        daemon_arch: Some(arch_kind),
    })
    .map_err(|e| fail(crate::image::exit_code(&e), format!("{e:#}")))?;
    built.push((arch.to_string(), image.reference.clone()));
    Ok(image.reference)
}

/// The static probe a guest of `arch` runs as its init (`--probe` for the host's
/// architecture if given and static), built once per architecture.
pub(crate) fn static_probe(
    probe: Option<&Path>,
    verbose: bool,
    arch: &str,
    built: &mut Vec<(String, PathBuf)>,
) -> Result<PathBuf, Failure> {
    if let Some((_, path)) = built.iter().find(|(a, _)| a == arch) {
        return Ok(path.clone());
    }
    let arch_kind = crate::probe_build::Arch::from_docker(arch).map_err(|e| fail(INFRA, e))?;
    let path = match probe {
        Some(given) if crate::probe_build::static_arch(given).ok() == Some(arch_kind) => {
            given.to_path_buf()
        }
        _ => {
            eprintln!(
                "building the static {arch} probe for the guests (about 2 minutes the first time) ..."
            );
            crate::probe_build::build_static_probe(arch_kind, verbose)
                .map_err(|e| fail(INFRA, format!("{e:#}")))?
                .path
        }
    };
    built.push((arch.to_string(), path.clone()));
    Ok(path)
}

fn new_run_id() -> String {
    let mut bytes = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `--target lab,container`: each kind once, each one built in this version.
fn parse_targets(list: &str) -> Result<Vec<TargetKind>, Failure> {
    let mut kinds: Vec<TargetKind> = Vec::new();
    for name in list.split(',').map(str::trim) {
        let kind: TargetKind = name.parse().map_err(|e: String| fail(USAGE, e))?;
        if kinds.contains(&kind) {
            return Err(fail(USAGE, format!("--target names `{name}` twice")));
        }
        kinds.push(kind);
    }
    Ok(kinds)
}

fn make_target(kind: TargetKind, opts: &Options) -> Result<Box<dyn Target>, Failure> {
    match TARGETS.iter().find(|(k, _)| *k == kind) {
        Some((_, make)) => Ok(make(opts)),
        None => {
            let built: Vec<&str> = TARGETS.iter().map(|(k, _)| k.name()).collect();
            Err(fail(
                USAGE,
                format!(
                    "target `{kind}` is not built yet; available now: {} (see README, Targets)",
                    built.join(", ")
                ),
            ))
        }
    }
}

/// A target's error with its exit code: 2 for usage, 3 for infrastructure.
pub(crate) fn target_failure(e: TargetError) -> Failure {
    match e {
        TargetError::Usage(_) => fail(USAGE, e),
        TargetError::Infrastructure(_) => fail(INFRA, e),
    }
}

pub fn run(opts: Options) -> Result<ExitCode, Failure> {
    let started = Instant::now();
    let started_at = rfc3339_utc(SystemTime::now());

    // 1. Everything the user can get wrong, before anything is built or runs.
    let kinds = parse_targets(&opts.target)?;
    if opts.render_manifests.is_some() {
        return render_manifests(&opts, &kinds);
    }
    if !kinds.contains(&TargetKind::Cluster)
        && let Some(flag) = [
            ("--kubeconfig", opts.kubeconfig.is_some()),
            ("--context", opts.context.is_some()),
        ]
        .iter()
        .find_map(|(f, given)| given.then_some(f))
    {
        return Err(fail(
            USAGE,
            format!(
                "{flag} is for --target cluster (this run's targets: {})",
                opts.target
            ),
        ));
    }
    let targets = kinds
        .iter()
        .map(|k| make_target(*k, &opts))
        .collect::<Result<Vec<_>, _>>()?;
    let selection = Selection::parse(&opts.tests).map_err(|e| fail(USAGE, e))?;
    let planned = selection.plan(CATALOGUE);
    if planned.is_empty() {
        return Err(fail(
            USAGE,
            format!("--test {} selects no check", opts.tests.join(",")),
        ));
    }
    if let Some(kind) = kinds.iter().find(|k| **k != TargetKind::Cluster)
        && planned.iter().all(|p| is_pod_level(&p.check))
    {
        return Err(fail(
            USAGE,
            format!(
                "--test {} selects only pod-level checks (cluster.*), which run on --target cluster only; target {} would run nothing",
                opts.tests.join(","),
                kind.name()
            ),
        ));
    }
    let matrix_choice = choose_matrix(&opts)?;
    let values = opts
        .cilium_values
        .as_deref()
        .map(cilium_values::load)
        .transpose()
        .map_err(|e| fail(USAGE, e))?;
    let report = |given: &Option<PathBuf>, name: &str| {
        given
            .clone()
            .unwrap_or_else(|| workspace_root().join("reports").join(name))
    };
    let paths = ReportPaths {
        junit: Some(report(&opts.junit_file, "junit.xml")),
        json: Some(report(&opts.json_file, "run.json")),
        markdown: Some(report(&opts.markdown_file, "summary.md")),
    };
    paths.preflight().map_err(|e| fail(e.exit_code(), e))?;
    let mut instances: Vec<(&dyn Target, InstanceId)> = Vec::new();
    let mut not_run: Vec<(InstanceId, String)> = Vec::new();
    for target in &targets {
        for id in target.preflight().map_err(target_failure)? {
            if instances.iter().any(|(_, i)| i.label() == id.label())
                || not_run.iter().any(|(i, _)| i.label() == id.label())
            {
                return Err(fail(
                    INFRA,
                    format!("two instances are named {}", id.label()),
                ));
            }
            match guest_cannot_start(opts.probe.as_deref(), &id)? {
                Some(why) => {
                    eprintln!("warning: {}: not run: {why}", id.label());
                    not_run.push((id, why));
                }
                None => instances.push((target.as_ref(), id)),
            }
        }
    }

    // 2. The probes: the host's for `lab`; for `container`, an image around the static
    // probe for the daemon's architecture. Each is made once, whatever the instances.
    let mut host_probe: Option<PathBuf> = None;
    let mut images: Vec<(String, String)> = Vec::new();
    let mut static_probes: Vec<(String, PathBuf)> = Vec::new();
    let mut planned_instances: Vec<Planned<'_>> = Vec::new();
    for (target, instance) in instances {
        let probe = match instance.kind {
            TargetKind::Container => ProbeBinary {
                path: PathBuf::from(conformance_suite::target::container::PROBE_PATH_IN_IMAGE),
                image: Some(image_for(&opts, &instance.arch, &mut images)?),
            },
            TargetKind::Vm => ProbeBinary {
                path: static_probe(
                    opts.probe.as_deref(),
                    opts.verbose,
                    &instance.arch,
                    &mut static_probes,
                )?,
                image: None,
            },
            // The image is node-local (imported), never built or pulled here.
            TargetKind::Cluster => ProbeBinary {
                path: PathBuf::from(conformance_suite::cluster::manifests::PROBE_PATH),
                image: Some(opts.probe_image.clone().unwrap_or_else(|| {
                    conformance_suite::cluster::manifests::DEFAULT_PROBE_IMAGE.into()
                })),
            },
            _ => {
                let path = match (&host_probe, &opts.probe) {
                    (Some(built), _) => built.clone(),
                    (None, Some(given)) => given.clone(),
                    (None, None) => build_probe_path(opts.verbose)?,
                };
                host_probe = Some(path.clone());
                ProbeBinary { path, image: None }
            }
        };
        planned_instances.push(Planned {
            target,
            instance,
            probe,
        });
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, interrupted.clone())
            .map_err(|e| fail(INFRA, format!("install signal handler: {e}")))?;
    }
    let control = RunControl {
        timeout: Duration::from_secs(opts.timeout),
        interrupted: interrupted.clone(),
        verbose: opts.verbose,
    };
    let args = ProbeArgs {
        run_id: new_run_id(),
        checks: planned
            .iter()
            .map(|p| format!("{}[{}]", p.check, p.variant))
            .collect(),
        faults: opts.fault.clone(),
        triage: opts.probe_triage,
        jobs: opts.jobs.map(usize::from),
    };

    // 3. Run them: the runner reads each instance's lines; nothing is judged yet.
    let labels: Vec<String> = planned_instances
        .iter()
        .map(|p| p.instance.label())
        .collect();
    let mut progress = Progress::new(&labels);
    let finished = runner::run(&planned_instances, &args, &control, &mut |i, event| {
        progress.on_event(i, event)
    });
    progress.finish();
    let finished = finished.map_err(|e| match e {
        RunnerError::Interrupted => fail(
            INTERRUPTED,
            "interrupted: every probe was stopped (its namespaces and programs die with it); no report written",
        ),
        e => fail(e.exit_code(), e),
    })?;

    // 4. Judge each instance by its environment's matrix.
    let several = finished.len() + not_run.len() > 1;
    let mut judged = finished
        .into_iter()
        .map(|f| judge(f, &matrix_choice, &planned, several))
        .collect::<Result<Vec<_>, _>>()?;
    judged.extend(not_run.into_iter().map(|(id, why)| {
        let planned = instance_plan(id.kind, &planned, &[]);
        not_run_instance(id, &why, &planned)
    }));
    let meta = RunMeta {
        run_id: args.run_id.clone(),
        started_at,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        target: kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
        strict: opts.strict,
        selection: selection.patterns(),
        cilium_values: None,
    };
    let mut run = Run::new(meta, judged);
    if let Some(values) = &values {
        run.apply_cilium_values(values);
    }

    // 5. Report.
    write_reports(&run, &paths).map_err(|e| fail(e.exit_code(), e))?;
    print!("{}", render_table(&run, color_wanted()));
    for instance in &run.instances {
        for problem in &instance.stream_problems {
            match several {
                true => eprintln!("probe stream ({}): {problem}", instance.label()),
                false => eprintln!("probe stream: {problem}"),
            }
        }
    }
    let shown: Vec<String> = [&paths.junit, &paths.json, &paths.markdown]
        .into_iter()
        .flatten()
        .map(|p| p.display().to_string())
        .collect();
    eprintln!("{} — reports: {}", run.outcome_phrase(), shown.join(", "));
    Ok(ExitCode::from(run.exit_code()))
}

/// `--target cluster --render-manifests DIR`: writes what a run would apply, and
/// contacts no cluster.
fn render_manifests(opts: &Options, kinds: &[TargetKind]) -> Result<ExitCode, Failure> {
    use conformance_suite::cluster::k3d::K3dPlan;
    use conformance_suite::cluster::manifests::{DEFAULT_PROBE_IMAGE, ManifestPlan, Placement};
    if kinds != [TargetKind::Cluster] {
        return Err(fail(
            USAGE,
            "--render-manifests writes the cluster target's objects, alone: use --target cluster --render-manifests DIR",
        ));
    }
    let Some(dir) = &opts.render_manifests else {
        return Err(fail(USAGE, "--render-manifests DIR: no DIR"));
    };
    let selection = Selection::parse(&opts.tests).map_err(|e| fail(USAGE, e))?;
    let planned = selection.plan(CATALOGUE);
    if planned.is_empty() {
        return Err(fail(
            USAGE,
            format!("--test {} selects no check", opts.tests.join(",")),
        ));
    }
    let args = ProbeArgs {
        run_id: new_run_id(),
        checks: planned
            .iter()
            .map(|p| format!("{}[{}]", p.check, p.variant))
            .collect(),
        faults: opts.fault.clone(),
        triage: opts.probe_triage,
        jobs: opts.jobs.map(usize::from),
    };
    // No cluster to list nodes from: one echo/client pair per node of the default
    // k3d cluster, spread by anti-affinity.
    let k3d = K3dPlan::default();
    let plan = ManifestPlan::new(
        &args.run_id,
        opts.probe_image.as_deref().unwrap_or(DEFAULT_PROBE_IMAGE),
        args.to_argv(),
        Placement::Count(k3d.servers + k3d.agents),
    );
    let written =
        conformance_suite::cluster::manifests::render_to(&plan, dir).map_err(|e| fail(USAGE, e))?;
    eprintln!(
        "wrote {} manifests for run {} (namespace {}) to {}; apply with kubectl apply -f {}",
        written.len(),
        args.run_id,
        plan.namespace(),
        dir.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Why a `vm` guest cannot start from this machine at all (no qemu for its
/// architecture, no Rust target for its static probe): such a guest is reported
/// with every check `unsupported` and that reason, and the other instances run.
pub(crate) fn guest_cannot_start(
    probe: Option<&Path>,
    id: &InstanceId,
) -> Result<Option<String>, Failure> {
    use conformance_suite::target::vm::qemu;
    if id.kind != TargetKind::Vm {
        return Ok(None);
    }
    let machine = qemu::machine(&id.arch).map_err(|e| fail(INFRA, e))?;
    if conformance_suite::target::find_on_path(machine.qemu).is_none() {
        return Ok(Some(format!(
            "no {} on this machine (Debian: apt-get install {})",
            machine.qemu, machine.debian_package
        )));
    }
    let arch = crate::probe_build::Arch::from_docker(&id.arch).map_err(|e| fail(INFRA, e))?;
    if let Some(given) = probe
        && crate::probe_build::static_arch(given).ok() == Some(arch)
    {
        return Ok(None);
    }
    Ok(crate::probe_build::routes_here(arch)
        .map_err(|e| fail(INFRA, format!("{e:#}")))?
        .err())
}

/// The report's part for a guest that could not start: nothing measured, every
/// planned variant `unsupported` with the reason.
fn not_run_instance(
    instance: InstanceId,
    why: &str,
    planned: &[conformance_contract::PlannedCheck],
) -> InstanceRun {
    let facts = conformance_contract::Facts::not_measured(&instance.arch, why);
    let meta = InstanceMeta {
        instance,
        environment: Environment::Vm,
        environment_source: EnvironmentSource::Detected {
            why: format!("a vm target guest; not run: {why}"),
        },
        matrix: "none (not run)".into(),
        probe: ProbeInfo {
            version: "not run".into(),
            ebpf_objects: "none".into(),
        },
        duration_ms: 0.0,
    };
    InstanceRun::new(
        meta,
        facts,
        conformance_suite::verdict::not_run(planned, why),
        Vec::new(),
    )
}

/// What `kind`'s instance was to run of the run's `planned` checks: the
/// pod-level ones only on a cluster, and there those its clients could run
/// (the target's own plan line: no `cross-node` on one node, which it said).
fn instance_plan(
    kind: TargetKind,
    planned: &[conformance_contract::PlannedCheck],
    streamed: &[conformance_contract::PlannedCheck],
) -> Vec<conformance_contract::PlannedCheck> {
    planned
        .iter()
        .filter(|p| {
            !is_pod_level(&p.check) || (kind == TargetKind::Cluster && streamed.contains(p))
        })
        .cloned()
        .collect()
}

/// One instance's verdicts against its matrix (given, or detected from its facts).
fn judge(
    f: Finished,
    choice: &MatrixChoice,
    planned: &[conformance_contract::PlannedCheck],
    several: bool,
) -> Result<InstanceRun, Failure> {
    let stream = f.stream.map_err(|e| {
        let why = f.exit.stderr_tail.last().cloned().unwrap_or_default();
        let on = if several {
            format!("{}: ", f.instance.label())
        } else {
            String::new()
        };
        fail(
            INFRA,
            format!(
                "{on}{e} (probe exit {:?}{}{why})",
                f.exit.code,
                if why.is_empty() { "" } else { ": " }
            ),
        )
    })?;
    let (matrix, environment_source) = match choice {
        MatrixChoice::Fixed(m, source) => (m, source.clone()),
        MatrixChoice::ByEnvironment(all) => {
            let (env, why) = detect(&stream.facts);
            let m = all
                .iter()
                .find(|m| m.environment == env)
                .expect("a matrix per environment");
            (m, EnvironmentSource::Detected { why })
        }
    };
    let planned = instance_plan(f.instance.kind, planned, stream.planned());
    let verdicts = evaluate(matrix, &stream.facts, &planned, &stream.observations);
    let meta = InstanceMeta {
        instance: f.instance,
        environment: matrix.environment,
        environment_source,
        matrix: matrix.path.display().to_string(),
        probe: probe_info(&stream.probe_version, &f.exit.privilege),
        duration_ms: f.duration.as_secs_f64() * 1000.0,
    };
    let mut instance = InstanceRun::new(meta, stream.facts, verdicts, stream.problems);
    instance.preamble = stream.preamble;
    Ok(instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_lists_name_each_kind_once() {
        let kinds = parse_targets("lab, container")
            .map_err(|f| f.message)
            .unwrap();
        assert_eq!(kinds, [TargetKind::Lab, TargetKind::Container]);
        let twice = parse_targets("lab,lab").err().unwrap();
        assert_eq!(
            (twice.code, twice.message.as_str()),
            (USAGE, "--target names `lab` twice")
        );
        let unknown = parse_targets("lab,kvm").err().unwrap();
        assert!(
            unknown.message.starts_with("unknown target `kvm`"),
            "{}",
            unknown.message
        );
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        opts: Options,
    }

    fn failure(argv: &[&str]) -> (u8, String) {
        let cli = <Cli as clap::Parser>::try_parse_from(
            std::iter::once("conformance").chain(argv.iter().copied()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let f = run(cli.opts).expect_err("a failure");
        (f.code, f.message)
    }

    #[test]
    fn a_cluster_run_s_kubeconfig_problems_are_exit_3_and_render_needs_cluster_alone() {
        let absent = std::env::temp_dir().join("cc-xtask-no-such-kubeconfig");
        let (code, message) = failure(&[
            "--target",
            "cluster",
            "--kubeconfig",
            absent.to_str().unwrap(),
            "--context",
            "k3d-x",
        ]);
        assert_eq!(code, INFRA, "{message}");
        assert!(
            message.starts_with(&format!(
                "kubeconfig from --kubeconfig {}: cannot read ",
                absent.display()
            )),
            "{message}"
        );
        // Port 1 on loopback: the API server does not answer.
        let file = std::env::temp_dir().join(format!("cc-xtask-kubeconfig-{}", std::process::id()));
        std::fs::write(
            &file,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n\
             users:\n- name: u\n  user: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n\
             current-context: c\n",
        )
        .unwrap();
        let (code, message) = failure(&[
            "--target",
            "cluster",
            "--kubeconfig",
            file.to_str().unwrap(),
        ]);
        let _ = std::fs::remove_file(&file);
        assert_eq!(code, INFRA, "{message}");
        assert!(
            message
                .starts_with("cannot reach the Kubernetes API server at https://127.0.0.1:1 (c, ")
                && !message.contains('\n'),
            "{message}"
        );
        assert_eq!(
            failure(&["--target", "lab", "--context", "k3d-x"]),
            (
                USAGE,
                "--context is for --target cluster (this run's targets: lab)".to_string()
            )
        );
        for argv in [
            &["--target", "lab,cluster", "--render-manifests", "d"][..],
            &["--target", "lab", "--render-manifests", "d"][..],
        ] {
            assert_eq!(failure(argv).0, USAGE, "{argv:?}");
        }
    }

    #[test]
    fn render_manifests_writes_the_run_s_objects_with_the_selected_checks() {
        let dir = std::env::temp_dir().join(format!("cc-render-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cli = <Cli as clap::Parser>::try_parse_from([
            "conformance",
            "--target",
            "cluster",
            "--render-manifests",
            dir.to_str().unwrap(),
            "--probe-image",
            "probe:test",
            "--test",
            "^datapath.redirect-peer$",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let result = run(cli.opts);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let daemonset = std::fs::read_to_string(dir.join(&names[4])).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(result.is_ok());
        // No pod-level check selected: the probes' objects alone (no echoes,
        // services or clients).
        assert_eq!(names.len(), 5, "{names:?}");
        assert!(names[4].ends_with("-daemonset-probe.yaml"), "{names:?}");
        assert!(daemonset.contains("image: probe:test"), "{daemonset}");
        assert!(
            daemonset.contains("- datapath.redirect-peer["),
            "{daemonset}"
        );
        assert!(!daemonset.contains("redirect-peer.scrub"), "{daemonset}");
    }
}
