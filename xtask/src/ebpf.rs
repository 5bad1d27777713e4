//! `cargo xtask ebpf`: placeholder, filled in by the eBPF build work.
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Options {}

pub fn run(_opts: Options) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
