//! Reading run reports (`run.json`, schema 2) for a comparison. Whatever is
//! wrong with a file is one [`LoadError`] naming it: invalid JSON with line and
//! column, a truncated file, a field that is missing or of the wrong type by
//! its path (`verdicts[3].observation.outcome`), another report schema.

use crate::error::EXIT_USAGE;
use crate::matrix::{Expectation, FactExpectation};
use crate::report::{Counts, InstanceMeta, InstanceRun, ProbeInfo, REPORT_SCHEMA, Run, RunMeta};
use crate::verdict::{Verdict, VerdictKind};
use conformance_contract::{Control, ControlOutcome, Observation, Outcome};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A run report that cannot be compared, and why. Always bad input (exit 2).
#[derive(Debug)]
pub struct LoadError {
    pub path: PathBuf,
    pub problem: LoadProblem,
}

#[derive(Debug)]
pub enum LoadProblem {
    Read(std::io::Error),
    Empty,
    /// A directory given as a side holds no `*.json` file.
    NoReports,
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    Truncated {
        line: usize,
        column: usize,
    },
    /// `field` is a path into the document (`instances[0].facts.arch`).
    Field {
        field: String,
        message: String,
    },
    NotARun(String),
    Schema(String),
}

impl LoadError {
    pub fn exit_code(&self) -> u8 {
        EXIT_USAGE
    }

    fn new(path: &Path, problem: LoadProblem) -> LoadError {
        LoadError {
            path: path.to_path_buf(),
            problem,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match &self.problem {
            LoadProblem::Read(e) => write!(f, "{p}: cannot read: {e}"),
            LoadProblem::Empty => write!(f, "{p}: empty file, not a run report"),
            LoadProblem::NoReports => write!(f, "{p}: no run reports (*.json) in this directory"),
            LoadProblem::Syntax {
                line,
                column,
                message,
            } => write!(
                f,
                "{p}: invalid JSON at line {line} column {column}: {message}"
            ),
            LoadProblem::Truncated { line, column } => write!(
                f,
                "{p}: truncated: the JSON ends at line {line} column {column}, inside the document"
            ),
            LoadProblem::Field { field, message } => write!(f, "{p}: {field}: {message}"),
            LoadProblem::NotARun(what) => write!(f, "{p}: not a run report: {what}"),
            LoadProblem::Schema(found) => write!(
                f,
                "{p}: report schema {found}; compare reads schema {REPORT_SCHEMA} (the --json-file of cargo xtask conformance)"
            ),
        }
    }
}

impl std::error::Error for LoadError {}

/// Files behind each argument: a file as given, a directory as every `*.json`
/// file directly in it, in name order.
pub fn expand_inputs(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut out = Vec::new();
    for path in paths {
        let meta =
            std::fs::metadata(path).map_err(|e| LoadError::new(path, LoadProblem::Read(e)))?;
        if !meta.is_dir() {
            out.push(path.clone());
            continue;
        }
        let read =
            std::fs::read_dir(path).map_err(|e| LoadError::new(path, LoadProblem::Read(e)))?;
        let mut files: Vec<PathBuf> = read
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
            .collect();
        if files.is_empty() {
            return Err(LoadError::new(path, LoadProblem::NoReports));
        }
        files.sort();
        out.extend(files);
    }
    Ok(out)
}

/// Reads and checks one run report, evidence and all.
pub fn load_run(path: &Path) -> Result<Run, LoadError> {
    let bytes = std::fs::read(path).map_err(|e| LoadError::new(path, LoadProblem::Read(e)))?;
    parse_run(&bytes).map_err(|problem| LoadError::new(path, problem))
}

/// [`load_run`] without the file: the bytes of a report.
pub fn parse_run(bytes: &[u8]) -> Result<Run, LoadProblem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(LoadProblem::Empty);
    }
    match serde_json::from_slice::<Run>(bytes) {
        Ok(run) if run.schema == REPORT_SCHEMA => Ok(run),
        Ok(run) => Err(LoadProblem::Schema(run.schema.to_string())),
        Err(e) => Err(problem_of(bytes, &e)),
    }
}

/// What is wrong with `bytes`, given serde_json's first error.
fn problem_of(bytes: &[u8], e: &serde_json::Error) -> LoadProblem {
    if e.is_eof() {
        return LoadProblem::Truncated {
            line: e.line(),
            column: e.column(),
        };
    }
    if e.is_syntax() || e.is_io() {
        return LoadProblem::Syntax {
            line: e.line(),
            column: e.column(),
            message: message_of(e),
        };
    }
    // Valid JSON, not a valid report: find where, field by field.
    match serde_json::from_slice::<Value>(bytes) {
        Err(e) => LoadProblem::Syntax {
            line: e.line(),
            column: e.column(),
            message: message_of(&e),
        },
        Ok(value) => locate(&value).unwrap_or_else(|| LoadProblem::Field {
            field: format!("line {} column {}", e.line(), e.column()),
            message: message_of(e),
        }),
    }
}

/// Where one observation's evidence (and its control's) sits in the file's
/// bytes: (start, length), parsed only when a changed row needs it.
#[derive(Debug, Clone, Copy)]
struct Spans {
    evidence: (usize, usize),
    control: Option<(usize, usize)>,
}

/// A report's bytes and, per instance and verdict (the run's order), where the
/// raw evidence is, for the verdicts that have an observation.
#[derive(Clone)]
pub(crate) struct RawStore {
    bytes: Arc<Vec<u8>>,
    spans: Vec<Vec<Option<Spans>>>,
}

impl fmt::Debug for RawStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawStore({} bytes)", self.bytes.len())
    }
}

impl RawStore {
    /// Verdict `index` of instance `instance`'s observation (read with empty
    /// evidence) with its evidence filled in; `None` where the file has none.
    pub(crate) fn fill(
        &self,
        instance: usize,
        index: usize,
        observation: &Observation,
    ) -> Option<Observation> {
        let spans = (*self.spans.get(instance)?.get(index)?)?;
        let map = |(start, len): (usize, usize)| -> Map<String, Value> {
            self.bytes
                .get(start..start + len)
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default()
        };
        let mut o = observation.clone();
        o.evidence = map(spans.evidence);
        if let (Some(c), Some(span)) = (o.control.as_mut(), spans.control) {
            c.evidence = map(span);
        }
        Some(o)
    }
}

/// A report read as [`parse_run`] reads it, except that every observation's
/// evidence is left empty in the [`Run`] and found again in the bytes when
/// needed ([`RawStore`]): skipping over evidence is several times faster than
/// building it, and a comparison needs it only for the rows that changed.
pub(crate) fn parse_lazy(bytes: Arc<Vec<u8>>) -> Result<(Run, RawStore), LoadProblem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(LoadProblem::Empty);
    }
    let doc: LazyDoc<'_> = serde_json::from_slice(&bytes).map_err(|e| problem_of(&bytes, &e))?;
    if doc.schema != REPORT_SCHEMA {
        return Err(LoadProblem::Schema(doc.schema.to_string()));
    }
    let base = bytes.as_ptr() as usize;
    let span = |raw: &RawValue| (raw.get().as_ptr() as usize - base, raw.get().len());
    let mut instances = doc.instances;
    let labels: Vec<String> = instances.iter().map(InstanceRun::label).collect();
    let mut spans: Vec<Vec<Option<Spans>>> = instances.iter().map(|_| Vec::new()).collect();
    for (i, v) in doc.verdicts.into_iter().enumerate() {
        let Some(owner) = labels.iter().position(|l| *l == v.instance) else {
            return Err(LoadProblem::Field {
                field: format!("verdicts[{i}].instance"),
                message: format!(
                    "names instance `{}`, which is not in `instances` ({})",
                    v.instance,
                    labels.join(", ")
                ),
            });
        };
        let (observation, at) = match v.observation {
            None => (None, None),
            Some(o) => {
                for (what, raw) in [
                    ("evidence", Some(o.evidence)),
                    ("control.evidence", o.control.as_ref().map(|c| c.evidence)),
                ] {
                    if let Some(raw) = raw
                        && !raw.get().starts_with('{')
                    {
                        return Err(LoadProblem::Field {
                            field: format!("verdicts[{i}].observation.{what}"),
                            message: "not an object".to_string(),
                        });
                    }
                }
                let at = Spans {
                    evidence: span(o.evidence),
                    control: o.control.as_ref().map(|c| span(c.evidence)),
                };
                let observation = Observation {
                    check: o.check,
                    variant: o.variant,
                    outcome: o.outcome,
                    reason: o.reason,
                    evidence: Map::new(),
                    failure: o.failure,
                    missing_facts: o.missing_facts,
                    control: o.control.map(|c| Control {
                        description: c.description,
                        outcome: c.outcome,
                        reason: c.reason,
                        evidence: Map::new(),
                    }),
                    duration_ms: o.duration_ms,
                };
                (Some(observation), Some(at))
            }
        };
        instances[owner].verdicts.push(Verdict {
            check: v.check,
            variant: v.variant,
            verdict: v.verdict,
            reason: v.reason,
            expected: v.expected,
            facts_expected: v.facts_expected,
            observation,
        });
        spans[owner].push(at);
    }
    let run = Run {
        schema: doc.schema,
        suite_version: doc.suite_version,
        meta: doc.meta,
        instances,
        counts: doc.counts,
    };
    Ok((run, RawStore { bytes, spans }))
}

/// `run.json` (see `report/json.rs`) with the verdicts' fields spelled out
/// rather than flattened (a flattened struct is buffered whole, which raw
/// values cannot pass through) and the evidence raw.
#[derive(Deserialize)]
struct LazyDoc<'a> {
    schema: u32,
    suite_version: String,
    #[serde(flatten)]
    meta: RunMeta,
    counts: Counts,
    instances: Vec<InstanceRun>,
    #[serde(borrow)]
    verdicts: Vec<LazyVerdict<'a>>,
}

#[derive(Deserialize)]
struct LazyVerdict<'a> {
    instance: String,
    check: String,
    variant: String,
    verdict: VerdictKind,
    reason: String,
    expected: Expectation,
    #[serde(default)]
    facts_expected: Vec<FactExpectation>,
    #[serde(default, borrow)]
    observation: Option<LazyObservation<'a>>,
}

#[derive(Deserialize)]
struct LazyObservation<'a> {
    check: String,
    variant: String,
    outcome: Outcome,
    reason: String,
    #[serde(borrow)]
    evidence: &'a RawValue,
    #[serde(default)]
    failure: Option<String>,
    #[serde(default)]
    missing_facts: Vec<String>,
    #[serde(default, borrow)]
    control: Option<LazyControl<'a>>,
    duration_ms: f64,
}

#[derive(Deserialize)]
struct LazyControl<'a> {
    description: String,
    outcome: ControlOutcome,
    reason: String,
    #[serde(borrow)]
    evidence: &'a RawValue,
}

/// serde_json's message without its ` at line L column C` suffix.
fn message_of(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    full.strip_suffix(&suffix).unwrap_or(&full).to_string()
}

/// The first problem in a document that is JSON but not a report, by path.
/// `run.json` flattens its run, instance and verdict fields, which hides
/// paths from a one-pass decode, so each part is decoded on its own.
fn locate(doc: &Value) -> Option<LoadProblem> {
    let Some(top) = doc.as_object() else {
        return Some(LoadProblem::NotARun(format!(
            "the document is {}, not an object",
            kind(doc)
        )));
    };
    match top.get("schema") {
        None => return Some(missing("", "schema")),
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(REPORT_SCHEMA)) => {}
        Some(other) => return Some(LoadProblem::Schema(other.to_string())),
    }
    if let Err(p) = decode::<RunMeta>(doc, "") {
        return Some(p);
    }
    let fields: [(&str, Decoder); 5] = [
        ("suite_version", |v, at| decode::<String>(v, at).map(drop)),
        ("probe", |v, at| decode::<ProbeInfo>(v, at).map(drop)),
        ("counts", |v, at| decode::<Counts>(v, at).map(drop)),
        ("instances", |v, at| decode::<Vec<Value>>(v, at).map(drop)),
        ("verdicts", |v, at| decode::<Vec<Value>>(v, at).map(drop)),
    ];
    for (field, check) in fields {
        match top.get(field) {
            None => return Some(missing("", field)),
            Some(v) => {
                if let Err(p) = check(v, field) {
                    return Some(p);
                }
            }
        }
    }
    let mut labels = Vec::new();
    for (i, inst) in top["instances"].as_array()?.iter().enumerate() {
        let at = format!("instances[{i}]");
        match decode::<InstanceMeta>(inst, &at) {
            Ok(meta) => labels.push(meta.instance.label()),
            Err(p) => return Some(p),
        }
        if let Err(p) = decode::<InstanceRun>(inst, &at) {
            return Some(p);
        }
    }
    for (i, v) in top["verdicts"].as_array()?.iter().enumerate() {
        let at = format!("verdicts[{i}]");
        match v.get("instance") {
            None => return Some(missing(&at, "instance")),
            Some(Value::String(s)) if labels.contains(s) => {}
            Some(Value::String(s)) => {
                return Some(LoadProblem::Field {
                    field: format!("{at}.instance"),
                    message: format!(
                        "names instance `{s}`, which is not in `instances` ({})",
                        labels.join(", ")
                    ),
                });
            }
            Some(other) => {
                return Some(LoadProblem::Field {
                    field: format!("{at}.instance"),
                    message: format!("{}, expected a string", kind(other)),
                });
            }
        }
        if let Err(p) = decode::<Verdict>(v, &at) {
            return Some(p);
        }
    }
    None
}

type Decoder = fn(&Value, &str) -> Result<(), LoadProblem>;

/// Decodes `v` as `T`, naming the path (under `at`) of the first problem.
fn decode<T: DeserializeOwned>(v: &Value, at: &str) -> Result<T, LoadProblem> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let inner = e.path().to_string();
        let mut field = match (at.is_empty(), inner.as_str()) {
            (_, ".") => at.to_string(),
            (true, p) => p.to_string(),
            (false, p) if p.starts_with('[') => format!("{at}{p}"),
            (false, p) => format!("{at}.{p}"),
        };
        let mut message = e.into_inner().to_string();
        // `missing field `x``: the path names the object; name the field.
        if let Some(name) = message
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            field = if field.is_empty() {
                name.to_string()
            } else {
                format!("{field}.{name}")
            };
            message = "missing field".to_string();
        }
        if field.is_empty() {
            field = "(document)".to_string();
        }
        LoadProblem::Field { field, message }
    })
}

fn missing(at: &str, name: &str) -> LoadProblem {
    LoadProblem::Field {
        field: if at.is_empty() {
            name.to_string()
        } else {
            format!("{at}.{name}")
        },
        message: "missing field".to_string(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A small valid report, built through the real types.
    fn good() -> String {
        crate::compare::tests::run_json()
    }

    /// The problem with `text`, the same whether read whole or with raw evidence.
    fn problem(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        std::fs::write(&path, text).unwrap();
        let e = load_run(&path).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let line = e.to_string();
        let shown = path.display().to_string();
        assert!(
            line.starts_with(&format!("{shown}: ")),
            "names the file: {line}"
        );
        assert!(!line.contains('\n'), "one line: {line}");
        let lazy = crate::compare::Sample::parse(&path, text.as_bytes().to_vec()).unwrap_err();
        assert_eq!(lazy.to_string(), line, "raw-evidence reading agrees");
        line[shown.len() + 2..].to_string()
    }

    fn edited(f: impl FnOnce(&mut Value)) -> String {
        let mut v: Value = serde_json::from_str(&good()).unwrap();
        f(&mut v);
        serde_json::to_string_pretty(&v).unwrap()
    }

    #[test]
    fn raw_evidence_reading_keeps_everything_but_the_evidence_until_asked() {
        let text = good();
        let full = parse_run(text.as_bytes()).unwrap();
        let (lazy, raw) = parse_lazy(Arc::new(text.clone().into_bytes())).unwrap();
        let fv = &full.instances[0].verdicts;
        let lv = &lazy.instances[0].verdicts;
        assert_eq!(fv.len(), lv.len());
        for (i, (f, l)) in fv.iter().zip(lv).enumerate() {
            let (fo, lo) = (
                f.observation.as_ref().unwrap(),
                l.observation.as_ref().unwrap(),
            );
            assert!(lo.evidence.is_empty() && lo.control.as_ref().unwrap().evidence.is_empty());
            assert_eq!(
                &raw.fill(0, i, lo).unwrap(),
                fo,
                "filled in, it is the same"
            );
            let mut same = f.clone();
            same.observation = Some(lo.clone());
            assert_eq!(&same, l, "every other field as read whole");
        }
        assert_eq!(full.meta, lazy.meta);
        assert_eq!(full.instances[0].facts, lazy.instances[0].facts);
        let bad = edited(|v| v["verdicts"][0]["observation"]["evidence"] = json!([1]));
        let e = parse_lazy(Arc::new(bad.into_bytes())).unwrap_err();
        assert!(
            matches!(&e, LoadProblem::Field { field, .. } if field == "verdicts[0].observation.evidence"),
            "{e:?}"
        );
    }

    #[test]
    fn a_good_report_loads() {
        let run = parse_run(good().as_bytes()).unwrap();
        assert_eq!(run.instances.len(), 1);
        assert_eq!(run.instances[0].verdicts.len(), 2);
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        assert_eq!(
            problem("{\n  \"schema\": 2,\n  oops\n}"),
            "invalid JSON at line 3 column 3: key must be a string"
        );
        assert_eq!(
            problem("{\"a\": 1} trailing"),
            "invalid JSON at line 1 column 10: trailing characters"
        );
    }

    #[test]
    fn truncated_and_empty_files() {
        let text = good();
        let cut = &text[..text.len() / 2];
        let p = problem(cut);
        assert!(p.starts_with("truncated: the JSON ends at line "), "{p}");
        assert_eq!(problem(""), "empty file, not a run report");
        assert_eq!(problem("  \n"), "empty file, not a run report");
    }

    #[test]
    fn missing_and_wrong_fields_are_named_by_path() {
        let p = problem(&edited(|v| {
            v["verdicts"][1]["observation"]
                .as_object_mut()
                .unwrap()
                .remove("outcome");
        }));
        assert_eq!(p, "verdicts[1].observation.outcome: missing field");
        let p = problem(&edited(|v| v["verdicts"][0]["verdict"] = "pas".into()));
        assert!(
            p.starts_with("verdicts[0].verdict: unknown variant `pas`, expected one of"),
            "{p}"
        );
        let p = problem(&edited(|v| {
            v["instances"][0]["facts"]
                .as_object_mut()
                .unwrap()
                .remove("arch");
        }));
        assert_eq!(p, "instances[0].facts.arch: missing field");
        let p = problem(&edited(|v| {
            v["instances"][0]["instance"]
                .as_object_mut()
                .unwrap()
                .remove("kind");
        }));
        assert_eq!(p, "instances[0].instance.kind: missing field");
        let p = problem(&edited(|v| {
            v.as_object_mut().unwrap().remove("run_id");
        }));
        assert_eq!(p, "run_id: missing field");
        let p = problem(&edited(|v| {
            v.as_object_mut().unwrap().remove("verdicts");
        }));
        assert_eq!(p, "verdicts: missing field");
        let p = problem(&edited(|v| {
            v["verdicts"][0]["instance"] = "lab/elsewhere".into()
        }));
        assert_eq!(
            p,
            "verdicts[0].instance: names instance `lab/elsewhere`, which is not in `instances` (lab/this host)"
        );
        let p = problem(&edited(|v| v["counts"]["total"] = "many".into()));
        assert!(
            p.starts_with("counts.total: invalid type: string \"many\""),
            "{p}"
        );
    }

    #[test]
    fn other_documents_and_schemas() {
        assert_eq!(
            problem("[1, 2]"),
            "not a run report: the document is an array, not an object"
        );
        assert_eq!(problem("{}"), "schema: missing field");
        let p = problem(&edited(|v| v["schema"] = 1.into()));
        assert!(
            p.starts_with("report schema 1; compare reads schema 2"),
            "{p}"
        );
        let p = problem(&edited(|v| v["schema"] = 3.into()));
        assert!(p.starts_with("report schema 3;"), "{p}");
        // A probe's JSON lines are not a report.
        let p = problem("{\"kind\":\"facts\"}\n{\"kind\":\"plan\"}\n");
        assert!(
            p.starts_with("invalid JSON at line 2 column 1: trailing characters"),
            "{p}"
        );
    }

    #[test]
    fn unreadable_paths_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_run(&dir.path().join("nope.json")).unwrap_err();
        assert!(e.to_string().contains("nope.json: cannot read: "), "{e}");
        assert_eq!(e.exit_code(), 2);

        let e = expand_inputs(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(
            e.to_string()
                .ends_with(": no run reports (*.json) in this directory"),
            "{e}"
        );
        std::fs::write(dir.path().join("b.json"), "{}").unwrap();
        std::fs::write(dir.path().join("a.json"), "{}").unwrap();
        std::fs::write(dir.path().join("notes.md"), "").unwrap();
        let files =
            expand_inputs(&[dir.path().to_path_buf(), dir.path().join("notes.md")]).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.json", "b.json", "notes.md"]);
        assert!(expand_inputs(&[dir.path().join("gone")]).is_err());
    }
}
