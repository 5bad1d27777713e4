//! The run record and its renderings: JUnit XML (CI test tabs), JSON (machine
//! diff between runs), Markdown (CI step summaries, humans) and a terminal table.
//!
//! Renderers are pure functions of a [`Run`]; only [`write_reports`] touches
//! the file system, atomically.

mod json;
mod junit;
mod markdown;
mod table;
mod time;
mod write;

pub use junit::render_junit;
/// XML escaping for other JUnit writers (`compare`).
pub(crate) use junit::{attr as xml_attr, text as xml_text};
pub use markdown::render_markdown;
pub use table::{color_wanted, render_table};
pub use time::rfc3339_utc;
pub use write::{ReportError, ReportPaths, write_atomic, write_reports};

use crate::cilium_values::CiliumValues;
use crate::env::{Environment, EnvironmentSource};
use crate::error::{EXIT_INFRA, EXIT_OK, EXIT_REGRESSION, exit_code_for};
use crate::readiness::{self, SettingReadiness};
use crate::scrub_fix::ScrubFix;
use crate::stream::StreamProblem;
use crate::target::InstanceId;
use crate::verdict::{Verdict, VerdictKind};
use conformance_contract::{FactValue, Facts};
use serde::{Deserialize, Serialize};

/// Version of the run report's JSON shape; bump on incompatible changes so
/// runs of different suite versions can be compared knowingly. 2: instances.
/// Additions that older readers can ignore keep the number: `instances[].readiness`
/// and `cilium_values` came within schema 2 (a report without them reads as
/// having none), and so did `instances[].scrub_fix` (without it: unknown).
pub const REPORT_SCHEMA: u32 = 2;

/// This crate's version, recorded in every report.
pub const SUITE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// One run: who ran what, and for each probe instance where it ran, what the
/// probe measured there, the matrix it was judged by and the verdicts.
/// Serialized through [`json`]'s document shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "json::RunDoc", try_from = "json::RunDoc")]
pub struct Run {
    pub schema: u32,
    pub suite_version: String,
    pub meta: RunMeta,
    pub instances: Vec<InstanceRun>,
    /// Over every instance.
    pub counts: Counts,
}

/// What the caller knows about the run as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    pub run_id: String,
    /// RFC 3339, UTC (`2025-06-01T12:00:00Z`); see [`rfc3339_utc`].
    pub started_at: String,
    pub duration_ms: f64,
    /// `--target` as given: `lab`, `lab,container`.
    pub target: String,
    /// Whether an unexpected pass fails the run.
    pub strict: bool,
    /// `--test` patterns; empty means every check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selection: Vec<String>,
    /// `--cilium-values` as given: the Helm values whose settings gate the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cilium_values: Option<String>,
}

/// What the caller knows about one instance: where it ran and how it was judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceMeta {
    pub instance: InstanceId,
    pub environment: Environment,
    pub environment_source: EnvironmentSource,
    /// The matrix file as given.
    pub matrix: String,
    pub probe: ProbeInfo,
    /// From the probe's start to its exit.
    pub duration_ms: f64,
}

/// One probe instance's part of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRun {
    #[serde(flatten)]
    pub meta: InstanceMeta,
    pub facts: Facts,
    /// Transport output skipped before the facts line (a note, not an error).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preamble: Vec<String>,
    /// Damage in the probe's stream (truncation, garbled lines).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stream_problems: Vec<StreamProblem>,
    /// In `run.json` these sit in the run's one flat list, each naming its
    /// instance (see `json.rs`); a [`Run`] round-trips, an instance alone does not.
    #[serde(skip)]
    pub verdicts: Vec<Verdict>,
    pub counts: Counts,
    /// Each Cilium setting judged from this instance's verdicts ([`readiness`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readiness: Vec<SettingReadiness>,
    /// Whether bpf_redirect_peer scrubs here, from the scrub checks' observations
    /// ([`crate::scrub_fix`]).
    #[serde(default)]
    pub scrub_fix: ScrubFix,
}

impl InstanceRun {
    /// Assembles an instance's part, filling its counts and readiness.
    pub fn new(
        meta: InstanceMeta,
        facts: Facts,
        verdicts: Vec<Verdict>,
        stream_problems: Vec<StreamProblem>,
    ) -> InstanceRun {
        InstanceRun {
            meta,
            facts,
            preamble: Vec::new(),
            stream_problems,
            counts: Counts::of(&verdicts),
            readiness: readiness::assess(&verdicts),
            scrub_fix: crate::scrub_fix::assess(&verdicts),
            verdicts,
        }
    }

    /// This instance's verdict for (check, variant), if it has one.
    pub fn verdict(&self, check: &str, variant: &str) -> Option<&Verdict> {
        self.verdicts
            .iter()
            .find(|v| v.check == check && v.variant == variant)
    }

    /// Settings the values turn on that cannot run here.
    pub fn blocked_settings(&self) -> impl Iterator<Item = &SettingReadiness> {
        self.readiness.iter().filter(|r| r.blocks())
    }

    /// `lab/this host`.
    pub fn label(&self) -> String {
        self.meta.instance.label()
    }

    /// [`exit_code_for`] this instance alone (see [`Run::exit_code`]).
    pub fn exit_code(&self, strict: bool) -> u8 {
        match exit_code_for(&self.verdicts, strict) {
            EXIT_OK if !self.stream_problems.is_empty() => EXIT_INFRA,
            code => code,
        }
    }
}

/// Which probe build and eBPF objects produced the observations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeInfo {
    pub version: String,
    /// Where the eBPF objects came from (built now, committed, their hash).
    pub ebpf_objects: String,
}

/// Verdicts per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total: usize,
    pub pass: usize,
    pub expected_fail: usize,
    pub regression: usize,
    pub unexpected_pass: usize,
    pub unsupported: usize,
    pub error: usize,
}

impl Counts {
    pub fn of(verdicts: &[Verdict]) -> Counts {
        let mut c = Counts {
            total: verdicts.len(),
            ..Counts::default()
        };
        for v in verdicts {
            *c.slot(v.verdict) += 1;
        }
        c
    }

    pub fn get(&self, kind: VerdictKind) -> usize {
        match kind {
            VerdictKind::Pass => self.pass,
            VerdictKind::ExpectedFail => self.expected_fail,
            VerdictKind::Regression => self.regression,
            VerdictKind::UnexpectedPass => self.unexpected_pass,
            VerdictKind::Unsupported => self.unsupported,
            VerdictKind::Error => self.error,
        }
    }

    /// Adds another instance's counts.
    pub fn add(&mut self, other: &Counts) {
        self.total += other.total;
        for k in VerdictKind::ALL {
            *self.slot(k) += other.get(k);
        }
    }

    fn slot(&mut self, kind: VerdictKind) -> &mut usize {
        match kind {
            VerdictKind::Pass => &mut self.pass,
            VerdictKind::ExpectedFail => &mut self.expected_fail,
            VerdictKind::Regression => &mut self.regression,
            VerdictKind::UnexpectedPass => &mut self.unexpected_pass,
            VerdictKind::Unsupported => &mut self.unsupported,
            VerdictKind::Error => &mut self.error,
        }
    }

    /// `8 checks: 3 pass, 1 regression, ...` (kinds with zero left out).
    pub fn summary(&self) -> String {
        let parts: Vec<String> = VerdictKind::ALL
            .iter()
            .filter(|k| self.get(**k) > 0)
            .map(|k| format!("{} {}", self.get(*k), k))
            .collect();
        let noun = if self.total == 1 { "check" } else { "checks" };
        if parts.is_empty() {
            format!("0 {noun}")
        } else {
            format!("{} {noun}: {}", self.total, parts.join(", "))
        }
    }
}

impl Run {
    /// Assembles a run, filling the schema, suite version and counts.
    pub fn new(meta: RunMeta, instances: Vec<InstanceRun>) -> Run {
        let mut counts = Counts::default();
        for i in &instances {
            counts.add(&i.counts);
        }
        Run {
            schema: REPORT_SCHEMA,
            suite_version: SUITE_VERSION.to_string(),
            meta,
            instances,
            counts,
        }
    }

    /// Every instance's verdicts, in instance order.
    pub fn verdicts(&self) -> impl Iterator<Item = &Verdict> {
        self.instances.iter().flat_map(|i| &i.verdicts)
    }

    /// Each (check, variant) once, in the order the instances first have them: the
    /// rows of the check × instance tables (terminal and Markdown).
    pub fn check_rows(&self) -> Vec<(String, String)> {
        let mut rows: Vec<(String, String)> = Vec::new();
        for v in self.verdicts() {
            if !rows
                .iter()
                .any(|(c, var)| *c == v.check && *var == v.variant)
            {
                rows.push((v.check.clone(), v.variant.clone()));
            }
        }
        rows
    }

    /// The run's exit code over every instance: [`exit_code_for`] all verdicts; a
    /// damaged stream anywhere makes an otherwise clean run an infrastructure
    /// error (3), never hiding a regression (1). With `--cilium-values`, a setting
    /// the values turn on that an instance cannot run is 1 as well (a finding, so
    /// it wins over 3 as a regression does); readiness alone never changes it.
    pub fn exit_code(&self) -> u8 {
        let code = match exit_code_for(self.verdicts(), self.meta.strict) {
            EXIT_OK if self.instances.iter().any(|i| !i.stream_problems.is_empty()) => EXIT_INFRA,
            code => code,
        };
        if self.values_blocked() {
            EXIT_REGRESSION
        } else {
            code
        }
    }

    /// Whether `--cilium-values` turns on a setting some instance cannot run.
    pub fn values_blocked(&self) -> bool {
        self.instances
            .iter()
            .any(|i| i.blocked_settings().next().is_some())
    }

    /// Judges every instance's readiness under the values' attach mode and marks
    /// the settings they turn on; from then on [`Run::exit_code`] counts those
    /// that cannot run.
    pub fn apply_cilium_values(&mut self, values: &CiliumValues) {
        self.meta.cilium_values = Some(values.file.display().to_string());
        for i in &mut self.instances {
            readiness::apply_values(&mut i.readiness, &values.enabled, values.attach);
        }
    }

    /// One phrase for the whole run: `regression`, `error`, `as expected`.
    pub fn outcome_phrase(&self) -> String {
        let code = self.exit_code();
        let verdicts = exit_code_for(self.verdicts(), self.meta.strict);
        let what = match code {
            0 => "as expected",
            1 if self.counts.regression > 0 && self.values_blocked() => {
                "regression; Cilium values not supported here"
            }
            1 if self.counts.regression > 0 => "regression",
            1 if verdicts == EXIT_REGRESSION => "unexpected pass (strict)",
            1 => "Cilium values not supported here",
            _ => "infrastructure error",
        };
        format!("{what} (exit {code})")
    }
}

/// Facts as (name, value) rows for tables and JUnit properties, in a fixed order.
pub fn fact_rows(facts: &Facts) -> Vec<(String, String)> {
    let text = |k: &str| match facts.get(k) {
        Some(FactValue::Text(s)) if s.is_empty() => "none".to_string(),
        Some(FactValue::Text(s)) => s,
        Some(v) => v.to_string(),
        None => "not measured".to_string(),
    };
    let mut rows = vec![
        ("kernel".to_string(), facts.kernel_release.clone()),
        ("kernel.upstream".into(), text("kernel.upstream")),
        ("kernel.package".into(), text("kernel.package")),
        ("arch".into(), facts.arch.clone()),
        ("page_size".into(), facts.page_size.to_string()),
        ("hypervisor".into(), text("hypervisor")),
        ("container".into(), text("container")),
        ("nested".into(), text("nested")),
        ("system_vendor".into(), text("system_vendor")),
        ("btf".into(), text("btf")),
        ("jit".into(), text("jit")),
        ("tcx".into(), text("tcx")),
        ("netkit".into(), text("netkit")),
        (
            "bpffs".into(),
            format!(
                "{}, propagation {}",
                if facts.bpffs.mounted {
                    "mounted"
                } else {
                    "not mounted"
                },
                text("bpffs.propagation")
            ),
        ),
        (
            "cgroup2".into(),
            facts.cgroup2.clone().unwrap_or_else(|| "none".into()),
        ),
    ];
    // Only a container target's instance has a mode: no row (no noise) elsewhere.
    if let Some(mode) = &facts.virtualization.container_mode {
        let at = rows
            .iter()
            .position(|(k, _)| k == "container")
            .map_or(rows.len(), |i| i + 1);
        rows.insert(at, ("container.mode".into(), mode.clone()));
    }
    // Likewise only a vm target's guest says how qemu ran it.
    if let Some(accel) = &facts.virtualization.vm_accel {
        let at = rows
            .iter()
            .position(|(k, _)| k == "nested")
            .map_or(rows.len(), |i| i + 1);
        rows.insert(at, ("vm.accel".into(), accel.clone()));
    }
    let missing: Vec<&str> = facts
        .helpers
        .iter()
        .filter(|(_, ok)| !**ok)
        .map(|(h, _)| h.as_str())
        .collect();
    let helpers = match (facts.helpers.is_empty(), missing.is_empty()) {
        (true, _) => "not measured".to_string(),
        (false, true) => format!("all {} available", facts.helpers.len()),
        (false, false) => format!("missing: {}", missing.join(", ")),
    };
    rows.push(("helpers".into(), helpers));
    if let Some(cap) = &facts.cap_eff {
        rows.push(("cap_eff".into(), cap.clone()));
    }
    if let Some(v) = &facts.cilium_version {
        rows.push(("cilium".into(), v.clone()));
    }
    if let Some(v) = &facts.k3s_version {
        rows.push(("k3s".into(), v.clone()));
    }
    rows.extend(
        facts
            .notes
            .iter()
            .map(|(k, v)| (format!("note.{k}"), v.clone())),
    );
    rows
}

/// The observation's two legs as pretty JSON, the evidence every writer shows.
pub(crate) fn evidence_json(v: &Verdict) -> Option<String> {
    let o = v.observation.as_ref()?;
    let mut doc = serde_json::Map::new();
    doc.insert("outcome".into(), serde_json::to_value(o.outcome).ok()?);
    doc.insert(
        "evidence".into(),
        serde_json::Value::Object(o.evidence.clone()),
    );
    if let Some(c) = &o.control {
        doc.insert("control".into(), serde_json::to_value(c).ok()?);
    }
    serde_json::to_string_pretty(&doc).ok()
}

/// The run as pretty JSON (the `report.json` file).
pub fn render_json(run: &Run) -> String {
    let mut s = serde_json::to_string_pretty(run).expect("a run serializes");
    s.push('\n');
    s
}
