//! Targets: where probes run. A target gets the probe to the datapath and hands its
//! JSON lines back unread; it never interprets results (that is the suite's job).
//!
//! Built here: `lab` (network namespaces on this host), `container` (the probe in
//! a k3d-node-like Docker container), `vm` (a kernel booted under qemu, x86_64
//! and arm64, the probe as its init) and `cluster` (a probe pod on every node of a
//! Kubernetes cluster reached by kubeconfig; tested against a mock API server, not
//! yet run against a live cluster).
//!
//! # The contract a target implements
//!
//! A target says only how to start and stop its probe and where its lines come
//! from; [`runner`] owns the clock, Ctrl-C and stopping, the same for every target.
//!
//! 1. [`Target::preflight`] runs before anything is built and must be cheap
//!    (privilege for `lab`, the Docker daemon reachable for `container`, kernel
//!    images present for `vm`). It returns the [`InstanceId`]s the target will run,
//!    one per place (one host, one container, one kernel, one node), so bad input
//!    fails in one line before a two-minute build.
//! 2. [`Target::start`] starts one instance's probe and returns a
//!    [`StartedInstance`]: a [`Receiver`] of stdout lines that the target's own
//!    thread or async runtime pushes into (the sender dropping means the stream
//!    ended), and an [`InstanceHandle`]. It returns promptly; it does not wait for
//!    the probe.
//! 3. [`InstanceHandle::stop`] stops the probe and removes what the target made
//!    for it (a container, a VM); it is idempotent, callable from any thread while
//!    another thread is in [`InstanceHandle::wait`], and returns once the probe is
//!    gone. The runner calls it on timeout and interrupt; `wait` must then return.
//! 4. [`InstanceHandle::wait`] blocks until the probe has exited, after its line
//!    stream closed, and says how it ended ([`ProbeExit`]). A probe that failed
//!    (non-zero exit, a truncated stream) is not an error here: the stream reader
//!    and the report show it. Errors are the target's own (it could not run the probe).
//! 5. [`StartedInstance::preamble`] says whether lines before the first
//!    `{"kind":"facts",...}` line are transport output to skip (a serial console,
//!    container logs). Skipped lines are kept in the report as a note, never parsed.
//!
//! Traits are object-safe; targets are `Send + Sync` so instances start concurrently.

pub mod cluster;
pub mod container;
pub mod docker;
pub mod lab;
pub mod runner;
pub mod vm;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// Where `program` is in the directories of `path` (a `PATH` value), if anywhere;
/// empty entries are skipped rather than read as the working directory. Every
/// "is this tool installed" question of the suite, its xtask and its tests.
pub fn find_in_path(program: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// [`find_in_path`] on this process's `PATH`.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    find_in_path(program, &std::env::var_os("PATH")?)
}

/// The kinds of target, as `--target` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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

/// Which probe instance of a run: the target kind, a name unique within the run
/// (`this host`, `cc-<run>`, `6.1.192 arm64 16k`) and the architecture it runs on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceId {
    pub kind: TargetKind,
    pub name: String,
    /// `uname -m` of where the probe runs (`x86_64`, `aarch64`).
    pub arch: String,
}

impl InstanceId {
    pub fn new(kind: TargetKind, name: impl Into<String>, arch: impl Into<String>) -> InstanceId {
        InstanceId {
            kind,
            name: name.into(),
            arch: arch.into(),
        }
    }

    /// `lab/this host`: how reports and progress lines name the instance.
    pub fn label(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

impl fmt::Display for InstanceId {
    /// `lab/this host (x86_64)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} ({})", self.kind, self.name, self.arch)
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
    /// Collect triage evidence (namespace state, programs on the path, kernel drop
    /// reasons) for every observation that does not pass (`cargo xtask triage`).
    pub triage: bool,
    /// Checks the probe runs at once; `None`: the probe's default (twice the CPUs).
    pub jobs: Option<usize>,
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
        if self.triage {
            argv.push("--triage".into());
        }
        if let Some(jobs) = self.jobs {
            argv.push("--jobs".into());
            argv.push(jobs.to_string());
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
    /// What the target knows about where the probe ran that the probe cannot see.
    pub told: TargetFacts,
}

/// Facts only the target can know, because the probe cannot see them from where
/// it runs: a cluster's Cilium and k3s versions (the probe pods hold no API
/// token), Cilium's datapath configuration. The suite adds them to the probe's
/// facts before judging ([`TargetFacts::apply_to`]), so matrices and readiness
/// can condition on them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetFacts {
    pub cilium_version: Option<String>,
    pub k3s_version: Option<String>,
    /// Added to the facts' notes, replacing a probe note under the same key (the
    /// probe's `cilium_version`/`k3s_version` notes say "not in a cluster").
    pub notes: BTreeMap<String, String>,
    /// Whether the node itself is a container, as the target knows it (the
    /// `cluster` target: a k3d or kind node), replacing what the probe saw from
    /// inside its pod, whose container is its own and not the node's.
    /// `None`: the target has nothing to say.
    pub node_container: Option<Option<String>>,
}

impl TargetFacts {
    /// Fills the versions the probe left unmeasured (one it measured is kept)
    /// and adds the notes.
    pub fn apply_to(&self, facts: &mut conformance_contract::Facts) {
        if facts.cilium_version.is_none() {
            facts.cilium_version.clone_from(&self.cilium_version);
        }
        if facts.k3s_version.is_none() {
            facts.k3s_version.clone_from(&self.k3s_version);
        }
        for (k, v) in &self.notes {
            facts.notes.insert(k.clone(), v.clone());
        }
        if let Some(node) = &self.node_container {
            let v = &mut facts.virtualization;
            // "A container inside a VM" was the pod's container: from a VM
            // node alone, nesting cannot be told.
            if node.is_none() && v.container.is_some() && v.nested == Some(true) {
                v.nested = None;
            }
            v.container.clone_from(node);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The run cannot start as asked: bad usage (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The target could not run the probe (exit 3).
    #[error("{0}")]
    Infrastructure(String),
}

/// Run-wide settings every instance honours.
#[derive(Debug, Clone)]
pub struct RunControl {
    pub timeout: Duration,
    /// Set by the CLI's signal handler; the runner stops every instance when it turns true.
    pub interrupted: Arc<AtomicBool>,
    /// Echo the probe's stderr as it comes.
    pub verbose: bool,
}

/// Whether a stream starts with transport output before the probe's first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preamble {
    /// The first non-blank line must be the facts line (a pipe from the probe).
    #[default]
    None,
    /// Skip lines until the first facts line (serial console, container logs).
    SkipToFacts,
}

/// A running probe, as [`Target::start`] hands it over.
pub struct StartedInstance {
    /// The probe's stdout, one line per message; closed when the stream ended.
    pub lines: Receiver<String>,
    pub handle: Box<dyn InstanceHandle>,
    pub preamble: Preamble,
}

/// Stops and reaps one started probe (see the module doc for the contract).
pub trait InstanceHandle: Send + Sync {
    /// Stops the probe and removes what was made for it; idempotent.
    fn stop(&self);
    /// Blocks until the probe exited; called once, after its line stream closed.
    fn wait(&self) -> Result<ProbeExit, TargetError>;
}

/// A place probes run (see the module doc for the contract).
pub trait Target: Send + Sync {
    fn kind(&self) -> TargetKind;
    /// Cheap checks before anything is built; the instances this target will run.
    fn preflight(&self) -> Result<Vec<InstanceId>, TargetError>;
    /// Starts one instance [`Target::preflight`] returned, with the probe built for its arch.
    fn start(
        &self,
        instance: &InstanceId,
        probe: &ProbeBinary,
        args: &ProbeArgs,
        control: &RunControl,
    ) -> Result<StartedInstance, TargetError>;
}

/// The probe binary a target ships or starts.
#[derive(Debug, Clone)]
pub struct ProbeBinary {
    pub path: PathBuf,
    /// For targets that run images (`container`): an image with this probe in it,
    /// built for the instance's architecture.
    pub image: Option<String>,
}
