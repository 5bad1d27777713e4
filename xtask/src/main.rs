//! `cargo xtask <command>`: the one entry point users need.

mod bench;
mod cluster;
mod compare;
mod conformance;
mod docs;
mod ebpf;
mod explain;
mod image;
mod kernels;
mod probe_build;
mod sections;
mod triage;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "cilium-conformance: does the eBPF datapath Cilium depends on work here, as expected for this environment?"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Parsed once per process: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the conformance checks on a target and write JUnit, JSON and Markdown reports.
    Conformance(conformance::Options),
    /// Time full runs of a target (`lab`; `container` with its image; `vm`: each kernel alone and the whole matrix) and report the figures for BENCHMARKS.md.
    Bench(bench::Options),
    /// Rebuild the eBPF objects into ebpf/dist and restamp them, or check the stamp.
    Ebpf(ebpf::Options),
    /// Build the probe image (FROM scratch around the static probe) through the Docker API.
    Image(image::Options),
    /// Decode a pasted `cilium monitor` / `cilium-dbg monitor` line field by field: what each value means, whether it is Cilium's normal encoding, which check tests the step (`-` reads lines from stdin).
    Explain(explain::Options),
    /// Run the checks with triage evidence and write a bundle (summary, hops, programs on the path, drop reasons, facts) into DIR and DIR.tar.gz.
    Triage(triage::Options),
    /// Rewrite README.md's generated sections (checks table, failure codes, expected facts) from the catalogue; `--check` fails on stale ones.
    Docs(docs::Options),
    /// List the guest kernels of `--target vm` (fixtures/kernels.toml) and whether they are cached; `--fetch NAME...|all` downloads, verifies and unpacks them from Debian's archive.
    Kernels(kernels::Options),
    /// The k3d cluster for `--target cluster`: `up` (k3d or ctlptl, then Cilium with Helm, waiting until nodes and Cilium are Ready), `down`, `status` (nodes, Cilium's agents, its datapath settings).
    Cluster(cluster::Options),
    /// Compare two runs (their run.json): new failures, fixed, facts and evidence that changed; exit 1 if anything got worse.
    Compare(compare::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Conformance(opts) => report(conformance::run(opts)),
        Command::Bench(opts) => report(bench::run(opts)),
        Command::Image(opts) => report(image::run(opts)),
        Command::Explain(opts) => report(explain::run(&opts.line, opts.json)),
        Command::Triage(opts) => report(triage::run(opts)),
        Command::Compare(opts) => report(compare::run(opts)),
        Command::Cluster(opts) => report(cluster::run(opts)),
        Command::Docs(opts) => report(docs::run(opts)),
        Command::Kernels(opts) => report(kernels::run(opts)),
        Command::Ebpf(opts) => match ebpf::run(opts) {
            Ok(code) => code,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::from(3)
            }
        },
    }
}

/// Prints a failure once, as one line, and turns it into the exit code.
fn report(result: Result<ExitCode, conformance::Failure>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
