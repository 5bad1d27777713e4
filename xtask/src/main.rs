//! `cargo xtask <command>`: the one entry point users need.

mod conformance;
mod ebpf;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "cilium-conformance: does the eBPF datapath Cilium depends on work here, as expected for this environment?"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the conformance checks on a target and write JUnit, JSON and Markdown reports.
    Conformance(conformance::Options),
    /// Rebuild the eBPF objects into ebpf/dist and restamp them, or check the stamp.
    Ebpf(ebpf::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Conformance(opts) => match conformance::run(opts) {
            Ok(code) => code,
            Err(failure) => {
                eprintln!("error: {}", failure.message);
                ExitCode::from(failure.code)
            }
        },
        Command::Ebpf(opts) => match ebpf::run(opts) {
            Ok(code) => code,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::from(3)
            }
        },
    }
}
