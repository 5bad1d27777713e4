//! `cargo xtask triage --out DIR`: run the suite with the probe's triage evidence
//! on, then write the triage bundle (`conformance_suite::triage`) into DIR and a
//! reproducible DIR.tar.gz beside it.
//!
//! The run is `cargo xtask conformance`'s own (same targets, selection, matrices,
//! probe), with its reports written to a private folder first: nothing reaches
//! DIR before the redaction pass. `--from RUN.json` bundles an earlier run instead.
//!
//! Exit codes: the run's (0 as expected, 1 regression; 3 for a damaged probe
//! stream) once the bundle is written; 2 bad usage or a bad `--from` file; 3 an
//! infrastructure error (the run could not finish, the bundle could not be written).

use crate::conformance::{self, Failure};
use clap::Parser;
use conformance_suite::triage::{
    self, Collected, DEFAULT_MAX_BYTES, MIN_MAX_BYTES, Staging, TriageError,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: u8 = 2;
const INFRA: u8 = 3;

fn fail(code: u8, message: impl std::fmt::Display) -> Failure {
    Failure {
        code,
        message: message.to_string(),
    }
}

#[derive(clap::Args)]
#[command(
    after_help = "Exit codes: the run's (0 every verdict as expected, 1 regression) once the bundle is written; \
2 bad usage or a bad --from file; 3 infrastructure error."
)]
pub struct Options {
    /// The bundle's folder (created; an earlier bundle there is replaced). DIR.tar.gz is written beside it.
    #[arg(long, value_name = "DIR", required_unless_present = "explain")]
    out: Option<PathBuf>,
    /// Instead of a bundle: decode one pasted `cilium monitor` / `cilium-dbg monitor` line
    /// field by field, as `cargo xtask explain LINE` does (`-` reads lines from stdin).
    #[arg(long, value_name = "LINE", allow_hyphen_values = true)]
    explain: Option<String>,
    /// With --explain: one JSON object per line instead of text.
    #[arg(long, requires = "explain")]
    json: bool,
    /// Where the probe runs, as for `conformance`: `lab`, `container`, `cluster`, or several
    /// (`lab,container`). With `cluster` the bundle also holds Cilium's status, its
    /// configuration and each judged node's agent log (`cluster/`).
    #[arg(long, default_value = "lab", value_name = "TARGET,...")]
    target: String,
    /// `--target cluster`: the kubeconfig (default: KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// `--target cluster`: the kubeconfig context (default: its current context).
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// Environment whose matrix judges every instance (default: detected per instance).
    #[arg(long, value_name = "ENV")]
    env: Option<String>,
    /// Checks to run: comma-separated regular expressions over check ids; a leading `!` excludes.
    #[arg(long = "test", value_name = "REGEX,...")]
    tests: Vec<String>,
    /// Facts and failing paths only: no namespace, program, drop-reason or kernel detail
    /// (and the probe collects none), for a bundle about as fast as a plain run.
    #[arg(long)]
    quick: bool,
    /// Size cap of the bundle's folder, MANIFEST.txt included; what does not fit is listed there.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_BYTES)]
    max_bytes: u64,
    /// Time cap: the run's timeout, and the deadline for the bundle's row details.
    #[arg(long, value_name = "N", default_value_t = 300)]
    max_seconds: u64,
    /// Bundle this earlier run (a run.json) instead of running the suite.
    #[arg(long, value_name = "RUN.json")]
    from: Option<PathBuf>,
    /// Use this probe binary for the `lab` target instead of building one.
    #[arg(long, value_name = "PATH")]
    probe: Option<PathBuf>,
    /// Run the `container` target from this image instead of building one.
    #[arg(long, value_name = "REF")]
    probe_image: Option<String>,
    /// Echo the probe's stderr and the build's output.
    #[arg(short, long)]
    verbose: bool,
    /// Break a check's datapath on purpose, forwarded to the run (testing the suite itself).
    #[arg(long, value_name = "ID=KIND", hide = true)]
    fault: Vec<String>,
}

/// `conformance`'s options, parsed from a command line so that its defaults and
/// checks stay its own.
#[derive(Parser)]
struct RunOptions {
    #[command(flatten)]
    run: conformance::Options,
}

/// The options as SUMMARY.md shows them: what made the run, no output path.
fn invocation(opts: &Options) -> String {
    let mut parts = vec!["cargo xtask triage".to_string()];
    if let Some(from) = &opts.from {
        parts.push(format!("--from {}", from.display()));
    } else {
        parts.push(format!("--target {}", opts.target));
        if let Some(env) = &opts.env {
            parts.push(format!("--env {env}"));
        }
        for t in &opts.tests {
            parts.push(format!("--test '{t}'"));
        }
        for f in &opts.fault {
            parts.push(format!("--fault {f}"));
        }
    }
    if opts.quick {
        parts.push("--quick".into());
    }
    parts.join(" ")
}

fn conformance_argv(opts: &Options, reports: &Path) -> Vec<String> {
    let mut argv: Vec<String> = vec!["conformance".into(), "--target".into(), opts.target.clone()];
    let mut push = |flag: &str, value: String| {
        argv.push(flag.into());
        argv.push(value);
    };
    if let Some(env) = &opts.env {
        push("--env", env.clone());
    }
    for t in &opts.tests {
        push("--test", t.clone());
    }
    for f in &opts.fault {
        push("--fault", f.clone());
    }
    if let Some(p) = &opts.probe {
        push("--probe", p.display().to_string());
    }
    if let Some(i) = &opts.probe_image {
        push("--probe-image", i.clone());
    }
    if let Some(k) = &opts.kubeconfig {
        push("--kubeconfig", k.display().to_string());
    }
    if let Some(c) = &opts.context {
        push("--context", c.clone());
    }
    push("--timeout", opts.max_seconds.to_string());
    push(
        "--json-file",
        reports.join("run.json").display().to_string(),
    );
    push(
        "--junit-file",
        reports.join("junit.xml").display().to_string(),
    );
    push(
        "--markdown-file",
        reports.join("summary.md").display().to_string(),
    );
    if opts.verbose {
        argv.push("--verbose".into());
    }
    if !opts.quick {
        argv.push("--probe-triage".into());
    }
    argv
}

/// What the bundle takes from the cluster the run reached
/// (`conformance_suite::cluster::collect`), within what is left of the time cap;
/// a cluster that cannot be reached is one recorded failure.
fn from_cluster(opts: &Options, run_json: &str, deadline: Instant) -> Vec<Collected> {
    use conformance_suite::cluster::collect::{self, LogLimits};
    use conformance_suite::cluster::inspect::{self, KubeconfigSource};
    let labels: Vec<String> = serde_json::from_str::<conformance_suite::report::Run>(run_json)
        .map(|run| run.instances.iter().map(|i| i.label()).collect())
        .unwrap_or_default();
    let nodes = collect::nodes_of(&labels);
    let limits = LogLimits::for_bundle(opts.max_bytes, opts.max_seconds, nodes.len());
    let left = deadline.saturating_duration_since(Instant::now());
    let failed = |why: String| {
        vec![Collected {
            path: "cluster/".into(),
            content: Err(why),
        }]
    };
    conformance_suite::target::cluster::client_runtime().block_on(async {
        let source = KubeconfigSource::from_env(opts.kubeconfig.as_deref());
        let conn = match inspect::connect(source, opts.context.as_deref()).await {
            Ok(conn) => conn,
            Err(e) => return failed(e.to_string()),
        };
        match tokio::time::timeout(left, collect::collect(&conn, &nodes, limits)).await {
            Ok(collected) => collected,
            Err(_) => failed(format!(
                "the time cap (--max-seconds {}) ran out while collecting from {}",
                opts.max_seconds,
                conn.describe()
            )),
        }
    })
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))
}

pub fn run(opts: Options) -> Result<ExitCode, Failure> {
    if let Some(line) = &opts.explain {
        return crate::explain::run(line, opts.json);
    }
    let out = opts
        .out
        .clone()
        .ok_or_else(|| fail(USAGE, "--out DIR is required (or --explain LINE)"))?;
    let started = Instant::now();
    if opts.max_bytes < MIN_MAX_BYTES {
        return Err(fail(
            USAGE,
            format!(
                "--max-bytes {} is below the smallest bundle ({MIN_MAX_BYTES} bytes)",
                opts.max_bytes
            ),
        ));
    }
    if opts.max_seconds == 0 {
        return Err(fail(USAGE, "--max-seconds must be at least 1"));
    }
    triage::check_out(&out).map_err(|e| fail(USAGE, format!("--out {e}")))?;
    let deadline = started + Duration::from_secs(opts.max_seconds);

    let staging = Staging::new().map_err(|e| {
        fail(
            INFRA,
            format!("create a private folder for the run's reports: {e}"),
        )
    })?;
    let bundle_opts = triage::Options {
        quick: opts.quick,
        max_bytes: opts.max_bytes,
        max_seconds: opts.max_seconds,
        deadline: Some(deadline),
        invocation: invocation(&opts),
        endpoints: std::env::var("DOCKER_HOST")
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| ("DOCKER_HOST".to_string(), v))
            .into_iter()
            .collect(),
    };
    let (run_json, collected, run_code) = match &opts.from {
        Some(from) => {
            let text = std::fs::read_to_string(from)
                .map_err(|e| fail(USAGE, format!("{}: {e}", from.display())))?;
            (text, Vec::new(), None)
        }
        None => {
            eprintln!(
                "triage: running the checks on {} with {} ...",
                opts.target,
                if opts.quick {
                    "hop accounting only (--quick)"
                } else {
                    "the probe's triage evidence"
                }
            );
            let argv = conformance_argv(&opts, staging.path());
            let parsed = RunOptions::try_parse_from(&argv).map_err(|e| {
                fail(
                    USAGE,
                    e.to_string().lines().next().unwrap_or_default().to_string(),
                )
            })?;
            let code = match conformance::run(parsed.run) {
                Ok(code) => code,
                // The run could not finish: a bundle that says so, then its error.
                Err(failure) if failure.code == INFRA => {
                    let bundle =
                        triage::build_unfinished(&failure.message, Vec::new(), &bundle_opts);
                    if let Ok(tarball) = triage::write(&bundle, &out) {
                        eprintln!(
                            "triage: the run did not finish; bundle {} and {} say why",
                            out.display(),
                            tarball.display()
                        );
                    }
                    return Err(failure);
                }
                Err(failure) => return Err(failure),
            };
            let reports = staging.path();
            let text =
                String::from_utf8(read(&reports.join("run.json")).map_err(|e| fail(INFRA, e))?)
                    .map_err(|e| fail(INFRA, format!("run.json: {e}")))?;
            let mut collected: Vec<Collected> = ["junit.xml", "summary.md"]
                .into_iter()
                .map(|name| Collected {
                    path: format!("reports/{name}"),
                    content: read(&reports.join(name)),
                })
                .collect();
            if opts.target.split(',').any(|t| t.trim() == "cluster") {
                eprintln!("triage: collecting Cilium's status, configuration and agent logs ...");
                collected.extend(from_cluster(&opts, &text, deadline));
            }
            (text, collected, Some(code))
        }
    };

    if opts.from.is_none() {
        eprintln!("triage: building the bundle ...");
    }
    let bundle =
        triage::build(&run_json, collected, &bundle_opts).map_err(|e| match (&opts.from, e) {
            (Some(from), TriageError::BadRun(why)) => {
                fail(USAGE, format!("{}: {why}", from.display()))
            }
            (_, e) => fail(INFRA, format!("the run's report: {e}")),
        })?;
    let tarball = triage::write(&bundle, &out).map_err(|e| fail(INFRA, e))?;
    let tar_bytes = std::fs::metadata(&tarball).map(|m| m.len()).unwrap_or(0);
    let cut = match bundle.cut.len() {
        0 => String::new(),
        n => format!("; {n} cut by the caps (MANIFEST.txt)"),
    };
    let failed = match bundle.failed.len() {
        0 => String::new(),
        n => format!("; {n} collection steps failed (MANIFEST.txt)"),
    };
    eprintln!(
        "triage: {} rows, {} known signatures; bundle {} ({} files, {} bytes{cut}{failed}), {} ({tar_bytes} bytes)",
        bundle.rows.len(),
        bundle.matches.len(),
        out.display(),
        bundle.files.len(),
        bundle.total_bytes(),
        tarball.display(),
    );
    Ok(run_code.unwrap_or_else(|| ExitCode::from(bundle.run_exit_code)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Options {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            o: Options,
        }
        let mut argv = vec!["triage"];
        argv.extend(args);
        Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())
            .unwrap()
            .o
    }

    #[test]
    fn the_run_is_conformance_with_reports_aside_and_probe_triage() {
        let o = opts(&[
            "--out",
            "b",
            "--test",
            "stack",
            "--fault",
            "datapath.stack-delivery=drop",
            "--probe",
            "/p",
        ]);
        let argv = conformance_argv(&o, Path::new("/s"));
        let parsed = RunOptions::try_parse_from(&argv).map_err(|e| e.to_string());
        assert!(parsed.is_ok(), "{parsed:?}", parsed = parsed.err());
        let line = argv.join(" ");
        assert!(line.contains("--json-file /s/run.json"), "{line}");
        assert!(line.contains("--timeout 300"), "{line}");
        assert!(line.ends_with("--probe-triage"), "{line}");
        let quick = conformance_argv(&opts(&["--out", "b", "--quick"]), Path::new("/s"));
        assert!(!quick.contains(&"--probe-triage".to_string()));
        assert_eq!(
            invocation(&o),
            "cargo xtask triage --target lab --test 'stack' --fault datapath.stack-delivery=drop"
        );
    }

    #[test]
    fn a_cluster_triage_forwards_its_kubeconfig_and_records_an_unreadable_one() {
        let o = opts(&[
            "--out",
            "b",
            "--target",
            "cluster",
            "--kubeconfig",
            "/nonexistent/cc-kubeconfig",
            "--context",
            "k3d-x",
        ]);
        let argv = conformance_argv(&o, Path::new("/s"));
        assert!(RunOptions::try_parse_from(&argv).is_ok());
        let line = argv.join(" ");
        assert!(
            line.contains("--target cluster")
                && line.contains("--kubeconfig /nonexistent/cc-kubeconfig")
                && line.contains("--context k3d-x"),
            "{line}"
        );
        let got = from_cluster(&o, "{}", Instant::now() + Duration::from_secs(5));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "cluster/");
        let why = got[0].content.as_ref().unwrap_err();
        assert!(why.contains("/nonexistent/cc-kubeconfig"), "{why}");
    }

    #[test]
    fn explain_needs_no_out_and_json_needs_explain() {
        let o = opts(&["--explain", "-> stack flow 0x0"]);
        assert_eq!(o.explain.as_deref(), Some("-> stack flow 0x0"));
        assert!(o.out.is_none());
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            o: Options,
        }
        assert!(Cli::try_parse_from(["triage", "--json", "--out", "b"]).is_err());
        assert!(Cli::try_parse_from(["triage"]).is_err());
    }

    #[test]
    fn bad_caps_are_usage_errors() {
        for args in [
            &["--out", "b", "--max-bytes", "10"][..],
            &["--out", "b", "--max-seconds", "0"],
        ] {
            let err = run(opts(args)).err().unwrap();
            assert_eq!(err.code, USAGE, "{}", err.message);
        }
    }
}
