//! `cargo xtask compare`: what changed between two runs (or two sets of
//! repeated runs) of the suite, in the manner of the kernel's
//! `veristat --compare`: rows that changed first, the facts that changed
//! beside them, the evidence that moved, and an exit code that is 1 only when
//! something got worse.
//!
//! One module per step: [`load`] reads `run.json` files (schema 2) and names
//! whatever is wrong with one; [`classify`] sorts each (instance, check,
//! variant) into a [`Class`]; [`facts`] diffs where the checks ran;
//! [`evidence`] diffs what the probe saw (hops, hook records, controls);
//! [`timing`] judges durations against noise, only from repeated samples; the
//! renderers ([`render_table`], [`render_markdown`], [`render_junit`],
//! [`render_json`]) are pure functions of a [`Comparison`], and
//! [`write_outputs`] writes them, each atomically.
//!
//! Rows are matched by instance (target kind and name: `lab/this host`; the
//! architecture is a fact), check id and variant, so runs of different
//! catalogue versions, or with different instances, compare cleanly: what only
//! one side has is `added` or `removed`, never an error.
//!
//! Each side may hold several runs. The first run of a side (the first file
//! given; a directory's files in name order) is the one whose verdicts, facts
//! and evidence are compared; every run of a side is a timing sample, and a
//! row whose verdict differs between a side's samples says so.

pub mod classify;
pub mod evidence;
pub mod facts;
mod junit;
pub mod load;
mod markdown;
mod table;
pub mod timing;
mod write;

pub use classify::{Class, Seen, classify};
pub use evidence::{EvidenceChange, RunIdMask, evidence_changes};
pub use facts::{FactChange, facts_diff, run_diff};
pub use junit::render_junit;
pub use load::{LoadError, LoadProblem, expand_inputs, load_run, parse_run};

use load::RawStore;
pub use markdown::{MARKDOWN_LIMIT, render_markdown, render_markdown_limited};
pub use table::render_table;
pub use timing::{Direction, Judgement, Stats, TimingChange};
pub use write::{OutputPaths, render_outputs, write_outputs};

use crate::error::{EXIT_OK, EXIT_REGRESSION};
use crate::report::Run;
use crate::target::TargetKind;
use crate::verdict::{Verdict, VerdictKind};
use conformance_contract::Observation;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

/// Version of the comparison's JSON shape.
pub const COMPARE_SCHEMA: u32 = 1;

/// One run report of a side, with the file it came from.
#[derive(Debug, Clone)]
pub struct Sample {
    path: PathBuf,
    run: Run,
    /// Evidence kept raw by [`Sample::parse`]; `None` for a run built in memory.
    raw: Option<RawStore>,
}

impl Sample {
    /// A run already in memory (evidence and all).
    pub fn new(path: impl Into<PathBuf>, run: Run) -> Sample {
        Sample {
            path: path.into(),
            run,
            raw: None,
        }
    }

    /// The bytes of a run report, kept: its evidence is read from them only
    /// when a changed row needs it (see [`load`]). Errors name `path`.
    pub fn parse(
        path: impl Into<PathBuf>,
        bytes: impl Into<Arc<Vec<u8>>>,
    ) -> Result<Sample, LoadError> {
        let path = path.into();
        match load::parse_lazy(bytes.into()) {
            Ok((run, raw)) => Ok(Sample {
                path,
                run,
                raw: Some(raw),
            }),
            Err(problem) => Err(LoadError { path, problem }),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The run. Read by [`Sample::parse`], its observations' evidence is empty
    /// here (the comparison reads it raw).
    pub fn run(&self) -> &Run {
        &self.run
    }

    /// The observation of verdict `index` of instance `instance`, evidence filled in.
    fn observation(&self, instance: usize, index: usize) -> Option<Cow<'_, Observation>> {
        let v = self.run.instances.get(instance)?.verdicts.get(index)?;
        let o = v.observation.as_ref()?;
        match self
            .raw
            .as_ref()
            .and_then(|raw| raw.fill(instance, index, o))
        {
            Some(filled) => Some(Cow::Owned(filled)),
            None => Some(Cow::Borrowed(o)),
        }
    }
}

/// Parses every input, several at a time ([`per_core`]), each as
/// [`Sample::parse`]; the first bad input in the given order is the error.
pub fn parse_all(inputs: &[(PathBuf, Arc<Vec<u8>>)]) -> Result<Vec<Sample>, LoadError> {
    per_core(inputs, 1, |(path, bytes)| {
        Sample::parse(path.clone(), Arc::clone(bytes))
    })
    .into_iter()
    .zip(inputs)
    .map(|(parsed, (path, _))| {
        parsed.unwrap_or_else(|| {
            Err(LoadError {
                path: path.clone(),
                problem: LoadProblem::NotARun("the parser stopped".to_string()),
            })
        })
    })
    .collect()
}

/// `f` of every item, in order, on up to one thread per core, each thread
/// taking the next item when done (items differ in cost), and at least
/// `min_per_thread` items per thread (a thread costs more than a small item).
/// `None` for an item whose thread panicked.
fn per_core<T: Sync, R: Send>(
    items: &[T],
    min_per_thread: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<Option<R>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(items.len() / min_per_thread.max(1)).max(1);
    if threads == 1 {
        return items.iter().map(|item| Some(f(item))).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                return done;
            };
            done.push((i, f(item)));
        }
    };
    let mut out: Vec<Option<R>> = items.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
        for (i, r) in handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
        {
            out[i] = Some(r);
        }
    });
    out
}

/// Both sides from files and directories ([`expand_inputs`]): every file read,
/// then parsed in parallel ([`parse_all`]). A side with no run is `None`.
pub fn load_sides(
    baseline: &[PathBuf],
    current: &[PathBuf],
) -> Result<(Option<Side>, Option<Side>), LoadError> {
    let (b, c) = (expand_inputs(baseline)?, expand_inputs(current)?);
    let inputs = b
        .iter()
        .chain(&c)
        .map(|path| match std::fs::read(path) {
            Ok(bytes) => Ok((path.clone(), Arc::new(bytes))),
            Err(e) => Err(LoadError {
                path: path.clone(),
                problem: LoadProblem::Read(e),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut samples = parse_all(&inputs)?;
    let current = samples.split_off(b.len());
    Ok((Side::new(samples), Side::new(current)))
}

/// The runs of one side: never empty; the first is the one compared.
#[derive(Debug, Clone)]
pub struct Side {
    samples: Vec<Sample>,
}

impl Side {
    /// `None` for no samples.
    pub fn new(samples: Vec<Sample>) -> Option<Side> {
        (!samples.is_empty()).then_some(Side { samples })
    }

    /// The run whose verdicts, facts and evidence are compared.
    pub fn run(&self) -> &Run {
        &self.samples[0].run
    }

    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CompareOptions {
    /// A judged timing slowdown makes the comparison fail too.
    pub fail_on_slower: bool,
}

/// Everything a comparison found; the renderers and `--json` show this.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub schema: u32,
    pub baseline: SideInfo,
    pub current: SideInfo,
    /// Run-wide settings that differ (suite version, target, selection).
    pub run_changes: Vec<FactChange>,
    pub instances: Vec<InstanceComparison>,
    /// Changed rows first (by [`Class`] order), then unchanged, each in run order.
    pub rows: Vec<Row>,
    /// Rows per class (classes with none left out).
    pub counts: BTreeMap<Class, usize>,
    pub timing: TimingSummary,
    pub fail_on_slower: bool,
    pub exit_code: u8,
}

#[derive(Debug, Clone, Serialize)]
pub struct SideInfo {
    pub files: Vec<String>,
    pub run_id: String,
    pub started_at: String,
    pub suite_version: String,
    pub target: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Presence {
    Both,
    BaselineOnly,
    CurrentOnly,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceComparison {
    /// `lab/this host`.
    pub instance: String,
    pub kind: TargetKind,
    pub name: String,
    pub presence: Presence,
    pub facts_changed: Vec<FactChange>,
}

/// One (instance, check, variant) and what happened to it.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub instance: String,
    pub check: String,
    pub variant: String,
    pub class: Class,
    pub baseline: Option<RowSide>,
    pub current: Option<RowSide>,
    /// What the class alone does not say: a failure that changed its code, a
    /// matrix expectation that changed, samples of a side that disagree.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// For rows that changed and have both observations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<EvidenceChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timing: Option<TimingChange>,
}

impl Row {
    /// Each side's reason, labelled; one `both runs` line when they are the same.
    pub fn reasons(&self) -> Vec<(&'static str, &str)> {
        match (&self.baseline, &self.current) {
            (Some(b), Some(c)) if b.reason == c.reason => vec![("both runs", b.reason.as_str())],
            (b, c) => [("baseline", b), ("current", c)]
                .into_iter()
                .filter_map(|(side, s)| s.as_ref().map(|s| (side, s.reason.as_str())))
                .collect(),
        }
    }

    /// `check[variant]`, or `check` for a check with one way to run.
    pub fn name(&self) -> String {
        if self.variant == "default" {
            self.check.clone()
        } else {
            format!("{}[{}]", self.check, self.variant)
        }
    }
}

/// One side's verdict for a row.
#[derive(Debug, Clone, Serialize)]
pub struct RowSide {
    pub verdict: VerdictKind,
    /// The observed failure code, for a `fail` observation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// What the matrix expected: `pass`, `fail (not-scrubbed)`.
    pub expected: String,
    pub reason: String,
    pub duration_ms: f64,
}

impl RowSide {
    fn of(v: &Verdict) -> RowSide {
        RowSide {
            verdict: v.verdict,
            failure: failure_of(v).map(str::to_string),
            expected: v.expected.outcome_text(),
            reason: v.reason.clone(),
            duration_ms: v.duration_ms(),
        }
    }

    /// `REGRESSION (not-delivered)`.
    pub fn cell(&self) -> String {
        match &self.failure {
            Some(code) => format!("{} ({code})", self.verdict.label()),
            None => self.verdict.label(),
        }
    }
}

/// `—` for a side that does not have the row.
pub fn side_cell(side: &Option<RowSide>) -> String {
    side.as_ref().map_or("—".to_string(), RowSide::cell)
}

#[derive(Debug, Clone, Serialize)]
pub struct TimingSummary {
    pub baseline_samples: usize,
    pub current_samples: usize,
    /// The rule, in words.
    pub rule: String,
    /// Why timing was not judged at all, or `None` when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_judged: Option<String>,
    pub slower: usize,
    pub faster: usize,
    /// Rows with too few samples on a side (a check some runs did not have).
    pub rows_with_too_few_samples: usize,
}

impl TimingSummary {
    /// One line: the note, or what was judged.
    pub fn line(&self) -> String {
        match &self.not_judged {
            Some(note) => note.clone(),
            None => {
                let mut s = format!(
                    "timing judged on {} baseline and {} current samples: {} slower, {} faster",
                    self.baseline_samples, self.current_samples, self.slower, self.faster
                );
                if self.rows_with_too_few_samples > 0 {
                    s.push_str(&format!(
                        "; {} rows with fewer than {} samples on a side not judged",
                        self.rows_with_too_few_samples,
                        timing::MIN_SAMPLES
                    ));
                }
                s
            }
        }
    }
}

impl Comparison {
    /// `13 rows: 2 new failures, 11 unchanged`.
    pub fn summary(&self) -> String {
        let total: usize = self.counts.values().sum();
        let parts: Vec<String> = self
            .counts
            .iter()
            .map(|(class, n)| match class {
                Class::NewFailure if *n != 1 => format!("{n} new failures"),
                c => format!("{n} {}", c.words()),
            })
            .collect();
        let noun = if total == 1 { "row" } else { "rows" };
        if parts.is_empty() {
            format!("0 {noun}")
        } else {
            format!("{total} {noun}: {}", parts.join(", "))
        }
    }

    /// `got worse (exit 1)` / `nothing got worse (exit 0)`.
    pub fn outcome_phrase(&self) -> String {
        let what = if self.exit_code == EXIT_OK {
            "nothing got worse"
        } else {
            "got worse"
        };
        format!("{what} (exit {})", self.exit_code)
    }

    /// Rows shown one by one (everything but unchanged).
    pub fn changed(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.class != Class::Unchanged)
    }

    pub fn unchanged(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.class == Class::Unchanged)
    }

    /// Rows whose timing changed, in row order.
    pub fn timing_changes(&self) -> impl Iterator<Item = (&Row, &TimingChange)> {
        self.rows
            .iter()
            .filter_map(|r| r.timing.as_ref().map(|t| (r, t)))
    }

    /// Whether rows name instances: several instances on a side, or different ones.
    pub fn shows_instances(&self) -> bool {
        self.instances.len() > 1
    }
}

/// (kind, instance name, check, variant).
type Key<'a> = (TargetKind, &'a str, &'a str, &'a str);

fn key<'a>(kind: TargetKind, name: &'a str, v: &'a Verdict) -> Key<'a> {
    (kind, name, v.check.as_str(), v.variant.as_str())
}

/// A verdict and where it sits: (instance, index in the instance).
type At<'a> = (&'a Verdict, usize, usize);

/// Every verdict of a run by key; the first of duplicates wins.
fn index(run: &Run) -> HashMap<Key<'_>, At<'_>> {
    let mut map = HashMap::with_capacity(run.instances.iter().map(|i| i.verdicts.len()).sum());
    for (ii, i) in run.instances.iter().enumerate() {
        for (vi, v) in i.verdicts.iter().enumerate() {
            map.entry(key(i.meta.instance.kind, &i.meta.instance.name, v))
                .or_insert((v, ii, vi));
        }
    }
    map
}

fn seen(v: Option<&Verdict>) -> Option<Seen<'_>> {
    v.map(|v| Seen::new(v.verdict, failure_of(v)))
}

fn failure_of(v: &Verdict) -> Option<&str> {
    v.observation.as_ref().and_then(|o| o.failure.as_deref())
}

/// The indexes of every sample of a side.
struct SideIndex<'a> {
    samples: Vec<HashMap<Key<'a>, At<'a>>>,
}

impl<'a> SideIndex<'a> {
    fn new(side: &'a Side) -> SideIndex<'a> {
        SideIndex {
            samples: side.samples.iter().map(|s| index(&s.run)).collect(),
        }
    }

    fn first(&self) -> &HashMap<Key<'a>, At<'a>> {
        &self.samples[0]
    }

    fn durations(&self, k: &Key<'_>) -> Vec<f64> {
        self.samples
            .iter()
            .filter_map(|s| s.get(k))
            .filter_map(|(v, _, _)| v.observation.as_ref().map(|o| o.duration_ms))
            .collect()
    }

    /// `baseline samples disagree: pass ×2, regression ×1`, when they do.
    fn disagreement(&self, k: &Key<'_>, side: &str) -> Option<String> {
        if self.samples.len() < 2 {
            return None;
        }
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for s in &self.samples {
            let word = s
                .get(k)
                .map_or("absent".to_string(), |(v, _, _)| match failure_of(v) {
                    Some(code) => format!("{} ({code})", v.verdict),
                    None => v.verdict.to_string(),
                });
            *seen.entry(word).or_insert(0) += 1;
        }
        (seen.len() > 1).then(|| {
            let parts: Vec<String> = seen.iter().map(|(w, n)| format!("{w} ×{n}")).collect();
            format!("{side} samples disagree: {}", parts.join(", "))
        })
    }
}

fn side_info(side: &Side) -> SideInfo {
    let run = side.run();
    SideInfo {
        files: side
            .samples
            .iter()
            .map(|s| s.path.display().to_string())
            .collect(),
        run_id: run.meta.run_id.clone(),
        started_at: run.meta.started_at.clone(),
        suite_version: run.suite_version.clone(),
        target: run.meta.target.clone(),
    }
}

/// Where a changed row's two observations are: (instance, index) in the
/// baseline's first run, then in the current's.
type EvidenceJob = ((usize, usize), (usize, usize));

/// The evidence diff of every job, `(row, job)`, as `(row, changes)`, on one
/// thread per core ([`per_core`]) when there are enough: each reads its
/// evidence from the raw report and diffs it, which is most of a large
/// comparison's work. A diff that panicked leaves its row without evidence.
fn evidence_all(
    jobs: &[(usize, EvidenceJob)],
    (b, c): (&Sample, &Sample),
    (b_mask, c_mask): (&RunIdMask, &RunIdMask),
) -> Vec<(usize, Vec<EvidenceChange>)> {
    let changes = per_core(jobs, 8, |&(_, ((bi, bv), (ci, cv)))| {
        match (b.observation(bi, bv), c.observation(ci, cv)) {
            (Some(bo), Some(co)) => evidence_changes(&bo, b_mask, &co, c_mask),
            _ => Vec::new(),
        }
    });
    jobs.iter()
        .zip(changes)
        .map(|(&(row, _), changes)| (row, changes.unwrap_or_default()))
        .collect()
}

/// Compares the first run of each side, with every run of a side as a timing sample.
pub fn compare(baseline: &Side, current: &Side, opts: CompareOptions) -> Comparison {
    let (b_run, c_run) = (baseline.run(), current.run());
    let (b_mask, c_mask) = (
        RunIdMask::new(&b_run.meta.run_id),
        RunIdMask::new(&c_run.meta.run_id),
    );
    let (bi, ci) = (SideIndex::new(baseline), SideIndex::new(current));
    let timing_note = timing::not_judged_note(baseline.samples.len(), current.samples.len());
    let mut too_few = 0;

    let (b_first, c_first) = (&baseline.samples[0], &current.samples[0]);
    let mut make_row = |label: String, k: Key<'_>, b_at: Option<At<'_>>, c_at: Option<At<'_>>| {
        let (b, c) = (b_at.map(|a| a.0), c_at.map(|a| a.0));
        let (class, note) = classify(seen(b), seen(c));
        let mut notes: Vec<String> = note.into_iter().collect();
        if let (Some(b), Some(c)) = (b, c) {
            let (be, ce) = (b.expected.outcome_text(), c.expected.outcome_text());
            if be != ce {
                notes.push(format!("matrix expectation changed: {be} → {ce}"));
            }
        }
        notes.extend(bi.disagreement(&k, "baseline"));
        notes.extend(ci.disagreement(&k, "current"));
        // The evidence diff is the costly part; it is computed after, in parallel.
        let evidence_of = match (b_at, c_at) {
            (Some((_, bi, bv)), Some((_, ci, cv))) if class != Class::Unchanged => {
                Some(((bi, bv), (ci, cv)))
            }
            _ => None,
        };
        let timing = if timing_note.is_none() && b.is_some() && c.is_some() {
            match timing::judge(&bi.durations(&k), &ci.durations(&k)) {
                Judgement::Changed(t) => Some(t),
                Judgement::TooFew { .. } => {
                    too_few += 1;
                    None
                }
                Judgement::Steady => None,
            }
        } else {
            None
        };
        let row = Row {
            instance: label,
            check: k.2.to_string(),
            variant: k.3.to_string(),
            class,
            baseline: b.map(RowSide::of),
            current: c.map(RowSide::of),
            notes,
            evidence: Vec::new(),
            timing,
        };
        (row, evidence_of)
    };

    let mut rows = Vec::new();
    let mut evidence_jobs = Vec::new();
    let mut push = |(row, job): (Row, Option<EvidenceJob>)| {
        if let Some(job) = job {
            evidence_jobs.push((rows.len(), job));
        }
        rows.push(row);
    };
    let mut done: HashSet<Key<'_>> = HashSet::new();
    for (ii, inst) in c_run.instances.iter().enumerate() {
        let id = &inst.meta.instance;
        let label = id.label();
        for (vi, v) in inst.verdicts.iter().enumerate() {
            let k = key(id.kind, &id.name, v);
            if done.insert(k) {
                let b = bi.first().get(&k).copied();
                push(make_row(label.clone(), k, b, Some((v, ii, vi))));
            }
        }
    }
    for (ii, inst) in b_run.instances.iter().enumerate() {
        let id = &inst.meta.instance;
        let label = id.label();
        for (vi, v) in inst.verdicts.iter().enumerate() {
            let k = key(id.kind, &id.name, v);
            if done.insert(k) {
                push(make_row(label.clone(), k, Some((v, ii, vi)), None));
            }
        }
    }
    let masks = (&b_mask, &c_mask);
    for (at, evidence) in evidence_all(&evidence_jobs, (b_first, c_first), masks) {
        rows[at].evidence = evidence;
    }
    rows.sort_by_key(|r| r.class);

    let mut instances = Vec::new();
    for c in &c_run.instances {
        let id = &c.meta.instance;
        let b = b_run
            .instances
            .iter()
            .find(|b| b.meta.instance.kind == id.kind && b.meta.instance.name == id.name);
        instances.push(InstanceComparison {
            instance: id.label(),
            kind: id.kind,
            name: id.name.clone(),
            presence: if b.is_some() {
                Presence::Both
            } else {
                Presence::CurrentOnly
            },
            facts_changed: b.map(|b| facts_diff(b, c)).unwrap_or_default(),
        });
    }
    for b in &b_run.instances {
        let id = &b.meta.instance;
        if !instances
            .iter()
            .any(|i| i.kind == id.kind && i.name == id.name)
        {
            instances.push(InstanceComparison {
                instance: id.label(),
                kind: id.kind,
                name: id.name.clone(),
                presence: Presence::BaselineOnly,
                facts_changed: Vec::new(),
            });
        }
    }

    let mut counts = BTreeMap::new();
    for r in &rows {
        *counts.entry(r.class).or_insert(0) += 1;
    }
    let slower = rows
        .iter()
        .filter(|r| r.timing.is_some_and(|t| t.direction == Direction::Slower))
        .count();
    let faster = rows
        .iter()
        .filter(|r| r.timing.is_some_and(|t| t.direction == Direction::Faster))
        .count();
    let worse = rows.iter().any(|r| r.class.got_worse()) || (opts.fail_on_slower && slower > 0);
    Comparison {
        schema: COMPARE_SCHEMA,
        baseline: side_info(baseline),
        current: side_info(current),
        run_changes: run_diff(b_run, c_run),
        instances,
        rows,
        counts,
        timing: TimingSummary {
            baseline_samples: baseline.samples.len(),
            current_samples: current.samples.len(),
            rule: format!(
                "a check is slower (faster) only with at least {} samples per side, every current sample slower (faster) than every baseline sample, medians at least {}× and {} ms apart",
                timing::MIN_SAMPLES,
                timing::MIN_RATIO,
                timing::MIN_DELTA_MS
            ),
            not_judged: timing_note,
            slower,
            faster,
            rows_with_too_few_samples: too_few,
        },
        fail_on_slower: opts.fail_on_slower,
        exit_code: if worse { EXIT_REGRESSION } else { EXIT_OK },
    }
}

/// The comparison as pretty JSON (`--json`).
pub fn render_json(c: &Comparison) -> String {
    let mut s = serde_json::to_string_pretty(c).unwrap_or_else(|e| {
        // Every field is plain data; this cannot fail, and must not panic.
        format!("{{\"error\": \"comparison did not serialize: {e}\"}}")
    });
    s.push('\n');
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::env::{Environment, EnvironmentSource};
    use crate::matrix::{DecidedBy, Expectation, ExpectedOutcome};
    use crate::report::{InstanceMeta, InstanceRun, ProbeInfo, RunMeta};
    use crate::target::InstanceId;
    use conformance_contract::{Control, ControlOutcome, Facts, Observation, Outcome};
    use serde_json::json;

    pub fn verdict(
        check: &str,
        variant: &str,
        kind: VerdictKind,
        failure: Option<&str>,
    ) -> Verdict {
        let outcome = match kind {
            VerdictKind::Pass | VerdictKind::UnexpectedPass => Outcome::Pass,
            VerdictKind::Unsupported => Outcome::Unsupported,
            VerdictKind::Error => Outcome::Error,
            _ => Outcome::Fail,
        };
        let sock = if outcome == Outcome::Pass { 5 } else { 0 };
        Verdict {
            check: check.into(),
            variant: variant.into(),
            verdict: kind,
            reason: format!("{kind}"),
            expected: Expectation {
                outcome: ExpectedOutcome::Pass,
                failure: None,
                reason: "should work".into(),
                reference: None,
                decided_by: DecidedBy::Default {
                    file: "vm.toml".into(),
                },
                undecided: vec![],
            },
            facts_expected: vec![],
            observation: Some(Observation {
                check: check.into(),
                variant: variant.into(),
                outcome,
                reason: String::new(),
                evidence: json!({"hops": [{"at": "pod B socket", "count": sock, "of": 5, "role": "path"}]})
                    .as_object()
                    .cloned()
                    .unwrap(),
                failure: failure.map(str::to_string),
                missing_facts: vec![],
                control: Some(Control {
                    description: "broken on purpose".into(),
                    outcome: ControlOutcome::Blocked,
                    reason: String::new(),
                    evidence: Default::default(),
                }),
                duration_ms: 40.0,
            }),
        }
    }

    pub fn instance(kind: TargetKind, name: &str, verdicts: Vec<Verdict>) -> InstanceRun {
        InstanceRun::new(
            InstanceMeta {
                instance: InstanceId::new(kind, name, "x86_64"),
                environment: Environment::Vm,
                environment_source: EnvironmentSource::Given,
                matrix: "fixtures/matrix/vm.toml".into(),
                probe: ProbeInfo {
                    version: "0.1.0".into(),
                    ebpf_objects: "shipped".into(),
                },
                duration_ms: 100.0,
            },
            Facts::example(),
            verdicts,
            vec![],
        )
    }

    pub fn run(id: &str, instances: Vec<InstanceRun>) -> Run {
        Run::new(
            RunMeta {
                run_id: id.into(),
                started_at: "2025-06-01T12:00:00Z".into(),
                duration_ms: 1000.0,
                target: "lab".into(),
                strict: false,
                selection: vec![],
                cilium_values: None,
            },
            instances,
        )
    }

    pub fn run_json() -> String {
        crate::report::render_json(&run(
            "r1",
            vec![instance(
                TargetKind::Lab,
                "this host",
                vec![
                    verdict("datapath.redirect-peer", "tcx", VerdictKind::Pass, None),
                    verdict("datapath.host-to-pod", "default", VerdictKind::Pass, None),
                ],
            )],
        ))
    }

    fn side(runs: Vec<Run>) -> Side {
        Side::new(
            runs.into_iter()
                .enumerate()
                .map(|(i, run)| Sample::new(format!("run{i}.json"), run))
                .collect(),
        )
        .unwrap()
    }

    fn lab(id: &str, verdicts: Vec<Verdict>) -> Run {
        run(id, vec![instance(TargetKind::Lab, "this host", verdicts)])
    }

    #[test]
    fn a_run_against_itself_changes_nothing() {
        let r = lab(
            "r1",
            vec![
                verdict("a", "tcx", VerdictKind::Pass, None),
                verdict(
                    "b",
                    "default",
                    VerdictKind::Regression,
                    Some("not-delivered"),
                ),
            ],
        );
        let c = compare(
            &side(vec![r.clone()]),
            &side(vec![r]),
            CompareOptions::default(),
        );
        assert_eq!(c.exit_code, 0);
        assert_eq!(c.summary(), "2 rows: 1 still failing, 1 unchanged");
        assert!(c.instances.iter().all(|i| i.facts_changed.is_empty()));
        assert!(c.run_changes.is_empty());
        assert_eq!(
            c.timing.line(),
            "timing not judged (1 sample per side; 3 per side needed)"
        );
    }

    #[test]
    fn rows_are_matched_by_instance_check_and_variant() {
        let b = run(
            "r1",
            vec![
                instance(
                    TargetKind::Lab,
                    "this host",
                    vec![
                        verdict("a", "tcx", VerdictKind::Pass, None),
                        verdict("old", "default", VerdictKind::Pass, None),
                    ],
                ),
                instance(
                    TargetKind::Container,
                    "docker",
                    vec![verdict("a", "tcx", VerdictKind::Pass, None)],
                ),
            ],
        );
        let c = lab(
            "r2",
            vec![
                verdict("a", "tcx", VerdictKind::Regression, Some("not-delivered")),
                verdict("new", "default", VerdictKind::Pass, None),
            ],
        );
        let cmp = compare(&side(vec![b]), &side(vec![c]), CompareOptions::default());
        let got: Vec<(String, String, Class)> = cmp
            .rows
            .iter()
            .map(|r| (r.instance.clone(), r.name(), r.class))
            .collect();
        assert_eq!(
            got,
            [
                ("lab/this host".into(), "a[tcx]".into(), Class::NewFailure),
                ("lab/this host".into(), "new".into(), Class::Added),
                ("lab/this host".into(), "old".into(), Class::Removed),
                ("container/docker".into(), "a[tcx]".into(), Class::Removed),
            ]
        );
        assert_eq!(cmp.exit_code, 1);
        assert_eq!(cmp.instances[1].presence, Presence::BaselineOnly);
        assert_eq!(
            cmp.rows[0].evidence[0].line(),
            "pod B socket: 5/5 → 0/5",
            "evidence of a changed row"
        );
        assert!(cmp.shows_instances());
        let json: serde_json::Value = serde_json::from_str(&render_json(&cmp)).unwrap();
        assert_eq!(json["rows"][0]["class"], "new-failure");
        assert_eq!(json["counts"]["removed"], 2);
        assert_eq!(json["exit_code"], 1);
    }

    #[test]
    fn samples_judge_timing_and_show_disagreement() {
        let at = |id: &str, ms: f64, kind: VerdictKind| {
            let mut v = verdict("a", "tcx", kind, None);
            v.observation.as_mut().unwrap().duration_ms = ms;
            lab(id, vec![v])
        };
        use VerdictKind::Pass;
        let b = side(vec![
            at("b1", 40.0, Pass),
            at("b2", 42.0, Pass),
            at("b3", 44.0, Pass),
        ]);
        let c = side(vec![
            at("c1", 100.0, Pass),
            at("c2", 110.0, VerdictKind::Regression),
            at("c3", 120.0, Pass),
        ]);
        let cmp = compare(&b, &c, CompareOptions::default());
        let row = &cmp.rows[0];
        assert_eq!(row.class, Class::Unchanged, "the first sample is compared");
        assert_eq!(row.timing.unwrap().direction, Direction::Slower);
        assert_eq!(
            row.notes,
            ["current samples disagree: pass ×2, regression ×1"]
        );
        assert_eq!(cmp.timing.slower, 1);
        assert_eq!(cmp.exit_code, 0, "slower alone does not fail by default");
        let strict = compare(
            &b,
            &c,
            CompareOptions {
                fail_on_slower: true,
            },
        );
        assert_eq!(strict.exit_code, 1);
        assert!(
            cmp.timing
                .line()
                .starts_with("timing judged on 3 baseline and 3 current samples: 1 slower")
        );
    }

    #[test]
    fn facts_and_run_settings_that_changed() {
        let b = lab("r1", vec![verdict("a", "tcx", VerdictKind::Pass, None)]);
        let mut c = lab("r2", vec![verdict("a", "tcx", VerdictKind::Pass, None)]);
        c.instances[0].facts.kernel_release = "6.12.41".into();
        c.suite_version = "0.2.0".into();
        let cmp = compare(&side(vec![b]), &side(vec![c]), CompareOptions::default());
        assert_eq!(cmp.instances[0].facts_changed[0].fact, "kernel");
        assert_eq!(cmp.run_changes[0].arrow(), "0.1.0 → 0.2.0");
        assert_eq!(cmp.exit_code, 0);
    }
}
