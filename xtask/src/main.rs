//! `cargo xtask <command>`: the one entry point users need.

mod ebpf;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "cilium-conformance: does the eBPF datapath Cilium depends on work here?")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Rebuild the eBPF objects into ebpf/dist and restamp them, or check the stamp.
    Ebpf(ebpf::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ebpf(opts) => ebpf::run(opts),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(3)
        }
    }
}
