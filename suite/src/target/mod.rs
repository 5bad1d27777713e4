//! Targets: where probes run. A target gets the probe to the datapath and hands its
//! JSON lines back unread; it never interprets results (that is the suite's job).
//!
//! Built here: `lab` (network namespaces on this host). Designed for, not yet built:
//! `container` (a near-privileged Docker container like a k3d node), `vm` (a kernel
//! booted under qemu, x86_64 and arm64), `cluster` (pods of a Kubernetes cluster).
//! Each will implement [`Target`] the same way: ship the static probe, start it with
//! [`ProbeArgs`], stream its stdout lines, and clean up on success, failure, timeout
//! and interrupt.

pub mod lab;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The kinds of target, as `--target` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Lab,
    Container,
    Vm,
    Cluster,
}

impl TargetKind {
    pub const ALL: [TargetKind; 4] = [Self::Lab, Self::Container, Self::Vm, Self::Cluster];

    pub fn name(self) -> &'static str {
        match self {
            Self::Lab => "lab",
            Self::Container => "container",
            Self::Vm => "vm",
            Self::Cluster => "cluster",
        }
    }
}

impl std::str::FromStr for TargetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown target `{s}` (known: lab, container, vm, cluster)"))
    }
}

/// What the probe is asked to do, independent of where it runs.
#[derive(Debug, Clone, Default)]
pub struct ProbeArgs {
    pub run_id: String,
    /// `check` or `check[variant]`; empty = all.
    pub checks: Vec<String>,
    /// `check=kind` faults (testing the suite itself).
    pub faults: Vec<String>,
}

impl ProbeArgs {
    pub fn to_argv(&self) -> Vec<String> {
        let mut argv = vec![
            "run".to_string(),
            "--run-id".to_string(),
            self.run_id.clone(),
        ];
        for c in &self.checks {
            argv.push("--check".into());
            argv.push(c.clone());
        }
        for f in &self.faults {
            argv.push("--fault".into());
            argv.push(f.clone());
        }
        argv
    }
}

/// How a probe run ended, as far as the target can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeExit {
    /// Exit status of the probe process (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Last lines the probe wrote to stderr, for error messages.
    pub stderr_tail: Vec<String>,
    /// How the probe was started (`direct`, `sudo`), reported as a fact of the run.
    pub privilege: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The run cannot start as asked: bad usage (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The target could not run the probe (exit 3).
    #[error("{0}")]
    Infrastructure(String),
    /// The user interrupted the run; everything started was stopped.
    #[error("interrupted")]
    Interrupted,
    /// The probe ran past the timeout and was killed.
    #[error("probe timed out after {0:?} and was stopped")]
    Timeout(Duration),
}

/// Run-wide settings every target honours.
#[derive(Debug, Clone)]
pub struct RunControl {
    pub timeout: Duration,
    /// Set by the CLI's signal handler; the target stops the probe when it turns true.
    pub interrupted: Arc<AtomicBool>,
    /// Echo the probe's stderr as it comes.
    pub verbose: bool,
}

pub trait Target {
    fn kind(&self) -> TargetKind;
    /// Runs the probe and calls `on_line` for each stdout line, in order.
    fn run_probe(
        &self,
        args: &ProbeArgs,
        control: &RunControl,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<ProbeExit, TargetError>;
}

/// The probe binary a target ships or starts.
#[derive(Debug, Clone)]
pub struct ProbeBinary {
    pub path: PathBuf,
}
