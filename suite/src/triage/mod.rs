//! The triage bundle (`cargo xtask triage --out DIR`): what a person needs to see
//! why a run failed, in one folder and one reproducible `DIR.tar.gz` beside it.
//!
//! Built from the run's report (`run.json`, with the probe's `evidence.triage`
//! when the run asked for it) plus the few local texts the caller hands in
//! ([`Collected`]), never from the clock: two bundles of the same run are the
//! same bytes, and the only time-dependent values are those run.json carries,
//! which SUMMARY.md names.
//!
//! ```text
//! DIR/SUMMARY.md                     per failing or suspicious row: verdict, last hop seen and
//!                                    first missing, matching known signatures with reason and link
//! DIR/run.json                       the whole run (redacted)
//! DIR/facts/<instance>.json          each instance's facts, environment and probe
//! DIR/rows/<instance>/<check>.<variant>/
//!     hops.txt                       hop accounting, then each probe hook and one line per packet
//!     bpf.txt                        programs on the path, foreign ones flagged
//!     drops.txt                      the kernel's drop reasons while the check ran
//!     kernel.txt                     sysctls, kernel config, what could not be collected
//!     namespaces/<ns>.txt            links, addresses, routes, neighbours, qdiscs, filters
//! DIR/reports/                       the run's own JUnit and Markdown reports
//! DIR/cluster/                       --target cluster: Cilium's status and configuration, each
//!                                    judged node's agent log (`crate::cluster::collect`)
//! DIR/MANIFEST.txt                   every file with its size; what the caps cut and why
//! ```
//!
//! Bounded: files are taken in that priority order until `max_bytes` (the folder,
//! MANIFEST.txt included) would be exceeded; what did not fit is listed in the
//! manifest. Row details stop at the deadline. A collection step that fails is
//! recorded with its error and never aborts the bundle. Every text passes through
//! [`redact::Redactor`] before it is kept.

pub mod detail;
pub mod hops;
pub mod redact;
pub mod signatures;
mod summary;
pub mod tarball;

#[cfg(test)]
mod tests;

use crate::report::Run;
use crate::verdict::{Verdict, VerdictKind};
use redact::Redactor;
use serde_json::Value;
use signatures::Match;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Default `--max-bytes`: well under GitHub's 25 MB attachment limit.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Smallest `--max-bytes`: room for a summary and the manifest.
pub const MIN_MAX_BYTES: u64 = 4096;

/// How the bundle is made.
#[derive(Debug, Clone)]
pub struct Options {
    /// Facts and failing paths only: no namespace, program, drop or kernel detail.
    pub quick: bool,
    pub max_bytes: u64,
    /// `--max-seconds`, as the manifest names it when the deadline cuts.
    pub max_seconds: u64,
    /// Row details not rendered by then are listed as cut by the time cap.
    pub deadline: Option<Instant>,
    /// The command that made the run, as SUMMARY.md shows it (no output paths).
    pub invocation: String,
    /// Endpoints the run used (`DOCKER_HOST`), shown redacted.
    pub endpoints: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            quick: false,
            max_bytes: DEFAULT_MAX_BYTES,
            max_seconds: 300,
            deadline: None,
            invocation: "cargo xtask triage".into(),
            endpoints: Vec::new(),
        }
    }
}

/// A local text the caller read for the bundle, or why it could not.
#[derive(Debug, Clone)]
pub struct Collected {
    /// Where it goes in the bundle (`reports/junit.xml`).
    pub path: String,
    pub content: Result<Vec<u8>, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    #[error("{0}")]
    BadRun(String),
    #[error("{path}: {message}")]
    Out { path: PathBuf, message: String },
    #[error("writing the bundle {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One file of the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// Something a cap left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub path: String,
    /// Its size, when it was rendered.
    pub bytes: Option<u64>,
    pub why: String,
}

/// The bundle, in memory: files in priority order, MANIFEST.txt last.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub files: Vec<File>,
    pub cut: Vec<Cut>,
    /// Collection steps that failed: (what, error).
    pub failed: Vec<(String, String)>,
    /// Rows of interest, as (instance, check[variant], verdict).
    pub rows: Vec<(String, String, VerdictKind)>,
    pub matches: Vec<Match>,
    /// The run's exit code (0, 1; 3 for a damaged probe stream).
    pub run_exit_code: u8,
}

impl Bundle {
    /// Bytes of every file (MANIFEST.txt included).
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes.len() as u64).sum()
    }

    pub fn file(&self, path: &str) -> Option<&File> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The bundle as `<root>/...` in a reproducible `.tar.gz`.
    pub fn tar_gz(&self, root: &str) -> std::io::Result<Vec<u8>> {
        let files: Vec<(&str, &[u8])> = self
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.bytes.as_slice()))
            .collect();
        tarball::tar_gz(root, &files)
    }
}

/// Why a row is in the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RowClass {
    /// A regression or an error: what the run failed on.
    Failing,
    /// Not a failure of the run, but worth a look: an expected failure, an
    /// unexpected pass, an unsupported variant, a pass with a foreign program.
    Suspicious,
}

/// A row of interest.
pub struct Row<'a> {
    pub instance: String,
    pub verdict: &'a Verdict,
    pub class: RowClass,
    /// `rows/<instance>/<check>.<variant>`.
    pub folder: String,
}

/// `lab/this host` → `lab-this-host`: a file name.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            'a'..='z' | '0'..='9' | '.' | '_' => out.push(c),
            'A'..='Z' => out.push(c.to_ascii_lowercase()),
            _ if !out.ends_with('-') => out.push('-'),
            _ => {}
        }
    }
    match out.trim_matches(|c| c == '-' || c == '.') {
        "" => "unnamed".into(),
        s => s.to_string(),
    }
}

fn rows<'a>(run: &'a Run, matches: &[Match]) -> Vec<Row<'a>> {
    let mut out = Vec::new();
    for instance in &run.instances {
        let label = instance.label();
        for v in &instance.verdicts {
            let class = match v.verdict {
                VerdictKind::Regression | VerdictKind::Error => RowClass::Failing,
                VerdictKind::Pass => {
                    let flagged = matches.iter().any(|m| {
                        m.instance == label
                            && m.row.as_ref() == Some(&(v.check.clone(), v.variant.clone()))
                    });
                    if !flagged {
                        continue;
                    }
                    RowClass::Suspicious
                }
                _ => RowClass::Suspicious,
            };
            out.push(Row {
                folder: format!("rows/{}/{}.{}", slug(&label), v.check, slug(&v.variant)),
                instance: label.clone(),
                verdict: v,
                class,
            });
        }
    }
    // Failing rows first, each class in run order.
    out.sort_by_key(|r| r.class);
    out
}

/// A file waiting for the size cap.
struct Candidate {
    path: String,
    bytes: Vec<u8>,
}

/// Builds the bundle from `run.json`'s text and the caller's collected texts.
pub fn build(
    run_json: &str,
    collected: Vec<Collected>,
    opts: &Options,
) -> Result<Bundle, TriageError> {
    let raw: Value = serde_json::from_str(run_json)
        .map_err(|e| TriageError::BadRun(format!("not JSON: {e}")))?;
    let run: Run = serde_json::from_value(raw.clone())
        .map_err(|e| TriageError::BadRun(format!("not a run report of schema 2: {e}")))?;
    let matches = signatures::find(&run);
    let rows = rows(&run, &matches);
    let mut redactor = Redactor::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut cut: Vec<Cut> = Vec::new();
    let mut candidates: Vec<Candidate> = Vec::new();

    let json_file = |redactor: &mut Redactor, path: String, mut value: Value| {
        redactor.json(&mut value);
        let mut text = serde_json::to_string_pretty(&value).expect("JSON values render");
        text.push('\n');
        Candidate {
            path,
            bytes: redactor.json_text(&text).into_bytes(),
        }
    };

    // 1-3: summary (rendered once the rest is known), run.json, facts.
    candidates.push(json_file(&mut redactor, "run.json".into(), raw.clone()));
    let instances = raw
        .get("instances")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, instance) in run.instances.iter().enumerate() {
        let doc = instances.get(i).cloned().unwrap_or(Value::Null);
        candidates.push(json_file(
            &mut redactor,
            format!("facts/{}.json", slug(&instance.label())),
            doc,
        ));
    }

    // 4: each row's folder, failing rows first; details stop at the deadline.
    let mut out_of_time = false;
    for row in &rows {
        if !out_of_time && opts.deadline.is_some_and(|d| Instant::now() >= d) {
            out_of_time = true;
        }
        if out_of_time {
            cut.push(Cut {
                path: format!("{}/", row.folder),
                bytes: None,
                why: format!(
                    "the time cap (--max-seconds {}) ran out before this row was rendered",
                    opts.max_seconds
                ),
            });
            continue;
        }
        for (path, result) in row_files(row, opts.quick) {
            match result {
                Ok(text) => candidates.push(Candidate {
                    path,
                    bytes: redactor.text(&text).into_bytes(),
                }),
                Err(e) => failed.push((path, redactor.text(&e))),
            }
        }
    }

    // 5: what the caller collected.
    for c in collected {
        match c.content {
            Ok(bytes) => candidates.push(Candidate {
                bytes: redactor.text(&String::from_utf8_lossy(&bytes)).into_bytes(),
                path: c.path,
            }),
            Err(e) => failed.push((c.path, redactor.text(&e))),
        }
    }

    let summary = summary::render(&summary::Input {
        run: &run,
        rows: &rows,
        matches: &matches,
        opts,
    });
    let summary = redactor.text(&summary);

    // The size cap, in priority order; MANIFEST.txt is rendered last and must fit too.
    let row_list: Vec<(String, String, VerdictKind)> = rows
        .iter()
        .map(|r| (r.instance.clone(), r.verdict.name(), r.verdict.verdict))
        .collect();
    let mut kept: Vec<File> = Vec::new();
    let reserve =
        512 + 160 * (candidates.len() as u64 + cut.len() as u64 + failed.len() as u64 + 8);
    let budget = opts.max_bytes.saturating_sub(reserve);
    let mut used = 0u64;
    let summary_bytes = fit_summary(summary, budget, opts.max_bytes, &mut cut);
    used += summary_bytes.len() as u64;
    kept.push(File {
        path: "SUMMARY.md".into(),
        bytes: summary_bytes,
    });
    for c in candidates {
        let size = c.bytes.len() as u64;
        if used + size <= budget {
            used += size;
            kept.push(File {
                path: c.path,
                bytes: c.bytes,
            });
        } else {
            cut.push(Cut {
                path: c.path,
                bytes: Some(size),
                why: format!(
                    "did not fit --max-bytes {} ({used} bytes taken by files of higher priority)",
                    opts.max_bytes
                ),
            });
        }
    }
    loop {
        let kept_bytes: u64 = kept.iter().map(|f| f.bytes.len() as u64).sum();
        let fits = |m: &String| kept_bytes + m.len() as u64 <= opts.max_bytes;
        // The cut list in full, or folded by folder, or as a count, whichever fits.
        let fitting = [Listing::Each, Listing::ByFolder, Listing::Count]
            .into_iter()
            .map(|l| manifest(&kept, &cut, &failed, redactor.counts(), opts, l))
            .find(|m| fits(m));
        if let Some(manifest) = fitting.or_else(|| {
            (kept.len() <= 1).then(|| {
                manifest(
                    &kept,
                    &cut,
                    &failed,
                    redactor.counts(),
                    opts,
                    Listing::Count,
                )
            })
        }) {
            kept.push(File {
                path: "MANIFEST.txt".into(),
                bytes: manifest.into_bytes(),
            });
            break;
        }
        // The reserve was short: give up the lowest-priority file and list it.
        let last = kept.pop().expect("more than the summary");
        cut.insert(
            cut.iter()
                .position(|c| c.bytes.is_some())
                .unwrap_or(cut.len()),
            Cut {
                bytes: Some(last.bytes.len() as u64),
                path: last.path,
                why: format!(
                    "did not fit --max-bytes {} with the manifest",
                    opts.max_bytes
                ),
            },
        );
    }
    Ok(Bundle {
        files: kept,
        cut,
        failed,
        rows: row_list,
        matches,
        run_exit_code: run.exit_code(),
    })
}

/// The bundle of a run that did not finish (a probe that could not start, a
/// timeout): no run.json to read, so the summary says what failed, the manifest
/// records it as the failed step, and the caller's collected texts are kept.
pub fn build_unfinished(error: &str, collected: Vec<Collected>, opts: &Options) -> Bundle {
    let mut redactor = Redactor::new();
    let error = redactor.text(error);
    let summary = redactor.text(&format!(
        "# Triage bundle: the run did not finish\n\n- run: `{}`\n- error: {error}\n\n\
         No run report was written, so there are no rows, facts or hops here; MANIFEST.txt \
         lists what was collected. Run `cargo xtask conformance` with the same options and \
         `-v` to see the probe's own output.\n",
        opts.invocation
    ));
    let mut failed = vec![("run".to_string(), error)];
    let mut files = vec![File {
        path: "SUMMARY.md".into(),
        bytes: summary.into_bytes(),
    }];
    let mut cut = Vec::new();
    let mut used = files[0].bytes.len() as u64 + 4096;
    for c in collected {
        match c.content {
            Ok(bytes) => {
                let bytes = redactor.text(&String::from_utf8_lossy(&bytes)).into_bytes();
                if used + bytes.len() as u64 <= opts.max_bytes {
                    used += bytes.len() as u64;
                    files.push(File {
                        path: c.path,
                        bytes,
                    });
                } else {
                    cut.push(Cut {
                        bytes: Some(bytes.len() as u64),
                        path: c.path,
                        why: format!("did not fit --max-bytes {}", opts.max_bytes),
                    });
                }
            }
            Err(e) => failed.push((c.path, redactor.text(&e))),
        }
    }
    let manifest = manifest(
        &files,
        &cut,
        &failed,
        redactor.counts(),
        opts,
        Listing::Each,
    );
    files.push(File {
        path: "MANIFEST.txt".into(),
        bytes: manifest.into_bytes(),
    });
    Bundle {
        files,
        cut,
        failed,
        rows: Vec::new(),
        matches: Vec::new(),
        run_exit_code: crate::EXIT_INFRA,
    }
}

/// SUMMARY.md whole, or cut at a line so that it fits `budget`, saying so.
fn fit_summary(summary: String, budget: u64, max_bytes: u64, cut: &mut Vec<Cut>) -> Vec<u8> {
    if summary.len() as u64 <= budget {
        return summary.into_bytes();
    }
    let note = format!(
        "\n… SUMMARY.md cut here: the rest did not fit --max-bytes {max_bytes} (see MANIFEST.txt)\n"
    );
    let room = (budget as usize).saturating_sub(note.len());
    let mut end = summary[..room.min(summary.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    while !summary.is_char_boundary(end) {
        end -= 1;
    }
    cut.push(Cut {
        path: "SUMMARY.md".into(),
        bytes: Some(summary.len() as u64),
        why: format!("cut to {end} bytes to fit --max-bytes {max_bytes}"),
    });
    let mut kept = summary[..end].to_string();
    kept.push_str(&note);
    kept.into_bytes()
}

/// The files of one row's folder, each rendered or the error that stopped it.
fn row_files(row: &Row, quick: bool) -> Vec<(String, Result<String, String>)> {
    let v = row.verdict;
    let at = |name: &str| format!("{}/{name}", row.folder);
    let mut out = Vec::new();
    let Some(obs) = &v.observation else {
        out.push((
            at("hops.txt"),
            Ok(format!(
                "# {} on {}: {}\n# {}\n(the probe produced no observation)\n",
                v.name(),
                row.instance,
                v.verdict,
                v.reason
            )),
        ));
        return out;
    };
    let mut hops_txt = format!(
        "# {} on {}: {}{}\n# reason: {}\n\n## the check's leg ({})\n",
        v.name(),
        row.instance,
        v.verdict,
        obs.failure
            .as_deref()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default(),
        v.reason,
        obs.outcome_name(),
    );
    hops::render_leg(&mut hops_txt, &obs.evidence);
    if let Some(control) = &obs.control {
        let _ = write!(
            hops_txt,
            "\n## the negative control: {} ({})\n# {}\n",
            control.description,
            control_outcome(control.outcome),
            control.reason
        );
        hops::render_leg(&mut hops_txt, &control.evidence);
    }
    out.push((at("hops.txt"), Ok(hops_txt)));
    if quick {
        return out;
    }
    let Some(triage) = obs.evidence.get("triage") else {
        // No probe triage for this row (a run without it, or an older probe).
        return out;
    };
    let Some(triage) = triage.as_object() else {
        out.push((
            at("bpf.txt"),
            Err("evidence.triage is not an object".into()),
        ));
        return out;
    };
    out.push((at("bpf.txt"), detail::programs(triage).map(|(t, _)| t)));
    out.push((at("drops.txt"), detail::drops(triage)));
    out.push((at("kernel.txt"), detail::kernel(triage)));
    match detail::namespaces(triage) {
        Ok(list) => {
            let mut seen = BTreeMap::new();
            for (name, text) in list {
                let n = seen.entry(name.clone()).or_insert(0);
                *n += 1;
                let file = match *n {
                    1 => format!("namespaces/{name}.txt"),
                    n => format!("namespaces/{name}-{n}.txt"),
                };
                out.push((at(&file), Ok(text)));
            }
        }
        Err(e) => out.push((at("namespaces/"), Err(e))),
    }
    out
}

fn control_outcome(o: conformance_contract::ControlOutcome) -> &'static str {
    match o {
        conformance_contract::ControlOutcome::Blocked => "blocked",
        conformance_contract::ControlOutcome::Leaked => "leaked",
        conformance_contract::ControlOutcome::Error => "error",
    }
}

trait OutcomeName {
    fn outcome_name(&self) -> &'static str;
}

impl OutcomeName for conformance_contract::Observation {
    fn outcome_name(&self) -> &'static str {
        match self.outcome {
            conformance_contract::Outcome::Pass => "pass",
            conformance_contract::Outcome::Fail => "fail",
            conformance_contract::Outcome::Unsupported => "unsupported",
            conformance_contract::Outcome::Error => "error",
        }
    }
}

/// How MANIFEST.txt lists what the caps cut: every file, by folder, or a count
/// (a small cap must not be broken by the list of what it cut).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listing {
    Each,
    ByFolder,
    Count,
}

fn manifest(
    kept: &[File],
    cut: &[Cut],
    failed: &[(String, String)],
    redactions: &BTreeMap<&'static str, usize>,
    opts: &Options,
    listing: Listing,
) -> String {
    let total: u64 = kept.iter().map(|f| f.bytes.len() as u64).sum();
    let mut m = format!(
        "# MANIFEST: every file of this bundle with its size in bytes, in priority order\n\
         # caps: --max-bytes {} (this folder, MANIFEST.txt included), --max-seconds {}\n\
         # mode: {}\n\n",
        opts.max_bytes,
        opts.max_seconds,
        if opts.quick {
            "quick (facts and failing paths; no namespace, program, drop or kernel detail)"
        } else {
            "full"
        }
    );
    let width = kept
        .iter()
        .map(|f| f.bytes.len().to_string().len())
        .max()
        .unwrap_or(1);
    for f in kept {
        let _ = writeln!(m, "{:>width$}  {}", f.bytes.len(), f.path);
    }
    let _ = writeln!(
        m,
        "{:>width$}  MANIFEST.txt (this file)\n{total} bytes in {} files before this one",
        "-",
        kept.len()
    );
    let _ = writeln!(m, "\n## cut by the caps ({})", cut.len());
    if cut.is_empty() {
        let _ = writeln!(m, "(nothing)");
    }
    match listing {
        Listing::Each => {
            for c in cut {
                match c.bytes {
                    Some(b) => {
                        let _ = writeln!(m, "{}  ({b} bytes): {}", c.path, c.why);
                    }
                    None => {
                        let _ = writeln!(m, "{}: {}", c.path, c.why);
                    }
                }
            }
        }
        Listing::ByFolder => {
            // `rows/<instance>/<check>.<variant>/...` folds into its row's folder.
            let mut folders: BTreeMap<String, (usize, u64, bool)> = BTreeMap::new();
            for c in cut {
                let parts: Vec<&str> = c.path.split('/').collect();
                let folder = match parts.as_slice() {
                    ["rows", i, r, ..] => format!("rows/{i}/{r}/"),
                    [top, _, ..] => format!("{top}/"),
                    _ => c.path.clone(),
                };
                let e = folders.entry(folder).or_default();
                e.0 += 1;
                e.1 += c.bytes.unwrap_or(0);
                e.2 |= c.bytes.is_none();
            }
            for (folder, (n, bytes, timed)) in folders {
                let why = if timed { "the time cap" } else { "--max-bytes" };
                let _ = writeln!(m, "{folder}  ({n} entries, {bytes} bytes): cut by {why}");
            }
        }
        Listing::Count => {
            let bytes: u64 = cut.iter().filter_map(|c| c.bytes).sum();
            let _ = writeln!(
                m,
                "{} entries ({bytes} bytes) cut by the caps; the list itself did not fit --max-bytes {}",
                cut.len(),
                opts.max_bytes
            );
        }
    }
    let _ = writeln!(m, "\n## collection steps that failed ({})", failed.len());
    if failed.is_empty() {
        let _ = writeln!(m, "(none)");
    }
    for (what, e) in failed {
        let _ = writeln!(m, "{what}: {e}");
    }
    let _ = writeln!(m, "\n## redacted before writing");
    if redactions.is_empty() {
        let _ = writeln!(m, "(nothing matched)");
    }
    for (kind, n) in redactions {
        let _ = writeln!(m, "{kind}: {n}");
    }
    m
}

/// Checks `--out` before the run: a folder that does not exist yet, an empty one,
/// or an earlier bundle (it has a MANIFEST.txt), which [`write`] replaces.
pub fn check_out(dir: &Path) -> Result<(), TriageError> {
    let bad = |message: String| TriageError::Out {
        path: dir.to_path_buf(),
        message,
    };
    if dir.file_name().is_none() {
        return Err(bad("names no folder".into()));
    }
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bad(e.to_string())),
        Ok(m) if !m.is_dir() => return Err(bad("exists and is not a folder".into())),
        Ok(_) => {
            let mut entries = std::fs::read_dir(dir).map_err(|e| bad(e.to_string()))?;
            let empty = entries.next().is_none();
            if !empty && !dir.join("MANIFEST.txt").is_file() {
                return Err(bad(
                    "exists and is neither empty nor an earlier triage bundle (no MANIFEST.txt): choose another --out"
                        .into(),
                ));
            }
        }
    }
    let parent = parent_of(dir);
    std::fs::create_dir_all(&parent).map_err(|e| bad(format!("cannot create its parent: {e}")))?;
    Ok(())
}

fn parent_of(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `DIR.tar.gz` beside `DIR`.
pub fn tarball_path(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".tar.gz");
    parent_of(dir).join(name)
}

/// Writes the bundle into `dir` (replacing an earlier bundle there) and
/// `DIR.tar.gz` beside it, each atomically: a partial folder or file is renamed
/// into place only once complete. Returns the tarball's path.
pub fn write(bundle: &Bundle, dir: &Path) -> Result<PathBuf, TriageError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TriageError::Write { path, source }
    };
    check_out(dir)?;
    let name = dir
        .file_name()
        .expect("checked: names a folder")
        .to_string_lossy()
        .into_owned();
    let parent = parent_of(dir);
    let partial = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(err(&partial))?;
    }
    for f in &bundle.files {
        let path = partial.join(&f.path);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(err(p))?;
        }
        std::fs::write(&path, &f.bytes).map_err(err(&path))?;
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(err(dir))?;
    }
    std::fs::rename(&partial, dir).map_err(err(dir))?;

    let tarball = tarball_path(dir);
    let bytes = bundle.tar_gz(&name).map_err(err(&tarball))?;
    let tmp = parent.join(format!(".{name}.tar.gz.partial-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(err(&tmp))?;
    std::fs::rename(&tmp, &tarball).map_err(err(&tarball))?;
    Ok(tarball)
}

/// A private folder for the run's own reports before they are redacted into the
/// bundle (removed when dropped).
pub struct Staging(tempfile::TempDir);

impl Staging {
    pub fn new() -> std::io::Result<Staging> {
        tempfile::Builder::new()
            .prefix("cilium-conformance-triage-")
            .tempdir()
            .map(Staging)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}
