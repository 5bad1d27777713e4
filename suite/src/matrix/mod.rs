//! Expected-capability matrices: `fixtures/matrix/<environment>.toml`.
//!
//! The catalogue says what every environment expects of each check
//! ([`defaults`]: `pass_because`, `expected_failures`, `EXPECTED_FACTS` in
//! `contract/src/catalogue.rs`). A matrix holds only where its environment
//! deviates: per check (and optionally per variant), whether the check should
//! pass or fail there, why, and with what reference; an entry can be overridden
//! by conditions on facts (`kernel < 6.1.139`). An entry replaces the
//! catalogue's default for that check (or variant) entirely.
//!
//! ```toml
//! schema = 1
//! environment = "vm"
//!
//! [[expect]]
//! check = "datapath.redirect-peer.scrub"   # exact id from the catalogue
//! variant = "default"                      # optional; absent = every variant
//! outcome = "pass"                         # "pass" | "fail"
//! reason = "..."
//! reference = "https://..."                # required when outcome = "fail"
//!
//! [[expect.unless]]                        # first whose `when` holds wins
//! when = "kernel.upstream < 6.1.139"
//! outcome = "fail"
//! failure = "not-scrubbed"                 # required with "fail": which failure
//! reason = "..."
//! reference = "https://..."
//!
//! [[fact]]                                 # where a precondition fact is expected
//! fact = "tcx"
//! expected = "kernel >= 6.6"
//! reason = "..."
//! ```
//!
//! An expected failure names the failure it expects (one of the check's
//! `failures` in the catalogue): a check that fails some other way is a
//! regression, not an expected failure. A `[[fact]]` entry says under which
//! condition a boolean fact that checks need (`tcx`, `helper.<name>`) must be
//! present; a fact without an entry is expected everywhere. So a variant the
//! probe could not run for lack of a fact is `unsupported` only where the
//! matrix says that fact is not expected, and a regression everywhere else.
//!
//! Everything is validated when the file is loaded (unknown checks, variants,
//! facts and keys, malformed conditions, duplicates), and every rejection is one
//! line, `path:line: field: message`, so that a typo fails the run before any
//! probe starts instead of silently never matching.

pub mod condition;
pub mod defaults;
mod fact_entries;
mod location;

pub use fact_entries::{FactEntry, FactExpectation, FactPresence};

use crate::env::Environment;
use condition::{Condition, ConditionErrorKind};
use conformance_contract::{CATALOGUE, Facts, find_check};
use location::Place;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The matrix format version this suite reads.
pub const MATRIX_SCHEMA: u32 = 1;

/// What a matrix expects of a check. `unsupported` and `error` are not
/// expectations: the probe decides those from facts and setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpectedOutcome {
    Pass,
    Fail,
}

impl fmt::Display for ExpectedOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExpectedOutcome::Pass => "pass",
            ExpectedOutcome::Fail => "fail",
        })
    }
}

/// A loaded, validated matrix.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// The file as the user named it; used verbatim in reports and errors.
    pub path: PathBuf,
    pub environment: Environment,
    environment_line: usize,
    pub entries: Vec<Entry>,
    /// `[[fact]]` tables: where precondition facts are expected.
    pub facts: Vec<FactEntry>,
}

/// One `[[expect]]` table.
#[derive(Debug, Clone)]
pub struct Entry {
    pub check: String,
    /// `None`: applies to every variant without an entry of its own.
    pub variant: Option<String>,
    pub outcome: ExpectedOutcome,
    /// With `Fail`: the code of the failure expected (`CheckSpec::failures`).
    pub failure: Option<String>,
    pub reason: String,
    pub reference: Option<String>,
    /// Line of the `check` key.
    pub line: usize,
    pub unless: Vec<Override>,
}

/// One `[[expect.unless]]` table.
#[derive(Debug, Clone)]
pub struct Override {
    pub when: Condition,
    pub outcome: ExpectedOutcome,
    /// With `Fail`: the code of the failure expected.
    pub failure: Option<String>,
    pub reason: String,
    pub reference: Option<String>,
    /// Line of the `when` key.
    pub line: usize,
}

/// What decided an expectation, for the report: the matrix line to read or edit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "kebab-case")]
pub enum DecidedBy {
    /// Nothing says anything: a fact no matrix and no catalogue entry names
    /// (expected everywhere). Reports of earlier suites also used it for a
    /// check without a matrix entry.
    Default { file: String },
    /// The catalogue's default (`contract/src/catalogue.rs`) for a check, or
    /// for a fact (`check` is then the fact key), with the condition that held.
    Catalogue {
        check: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        when: Option<String>,
    },
    /// The entry's own outcome (no `unless` held).
    Entry { file: String, line: usize },
    /// An `unless` override whose `when` held.
    Override {
        file: String,
        line: usize,
        when: String,
    },
}

impl DecidedBy {
    /// `file:line` or `file:line when <condition>`; `None` for the default.
    pub fn location(&self) -> Option<String> {
        match self {
            DecidedBy::Default { .. } => None,
            DecidedBy::Catalogue { check, when: None } => {
                Some(format!("{} ({check})", defaults::CATALOGUE_FILE))
            }
            DecidedBy::Catalogue {
                check,
                when: Some(when),
            } => Some(format!(
                "{} ({check}) when {when}",
                defaults::CATALOGUE_FILE
            )),
            DecidedBy::Entry { file, line } => Some(format!("{file}:{line}")),
            DecidedBy::Override { file, line, when } => Some(format!("{file}:{line} when {when}")),
        }
    }
}

/// An override whose `when` could not be decided because facts were not measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undecided {
    /// The matrix line; `None` for a catalogue default's condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub when: String,
    pub unmeasured: Vec<String>,
}

/// The expectation for one (check, variant) under given facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expectation {
    pub outcome: ExpectedOutcome,
    /// With `Fail`: the one failure (code from `CheckSpec::failures`) that makes
    /// the verdict `expected-fail`; any other failure is a regression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub decided_by: DecidedBy,
    /// Overrides skipped because a fact they name was not measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undecided: Vec<Undecided>,
}

impl Expectation {
    /// `pass`, or `fail (not-scrubbed)`: the outcome with the failure it names.
    pub fn outcome_text(&self) -> String {
        match &self.failure {
            Some(code) => format!("{} ({code})", self.outcome),
            None => self.outcome.to_string(),
        }
    }

    /// "kernel not measured: `when` at line 14 could not be decided", or `None`.
    pub fn undecided_note(&self) -> Option<String> {
        if self.undecided.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .undecided
            .iter()
            .map(|u| {
                let at = match u.line {
                    Some(line) => format!("line {line}"),
                    None => defaults::CATALOGUE_FILE.to_string(),
                };
                format!(
                    "{} not measured, so `when = {}` ({at}) could not be decided",
                    u.unmeasured.join(", "),
                    u.when,
                )
            })
            .collect();
        Some(parts.join("; "))
    }
}

/// A rejected matrix: `path:line: field: message`, one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MatrixError {
    pub file: PathBuf,
    /// `None` when the file could not be read at all.
    pub line: Option<usize>,
    /// Dotted path of the offending key (`expect[2].check`), `toml` for syntax errors.
    pub field: String,
    pub kind: MatrixErrorKind,
    pub message: String,
}

/// Why a matrix was rejected, for callers and tests that match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatrixErrorKind {
    Io,
    Syntax,
    UnknownKey,
    /// Missing key or wrong TOML type.
    Shape,
    Schema,
    Environment,
    UnknownCheck,
    UnknownVariant,
    Outcome,
    Condition(ConditionErrorKind),
    Duplicate,
    /// Empty `reason`, or an expected failure without `reference`.
    Justification,
    /// `failure` missing with outcome "fail", present with "pass", or not one of the check's.
    Failure,
    /// A `[[fact]]` naming a fact that is not a boolean precondition.
    UnknownFact,
}

impl fmt::Display for MatrixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{line}: {}: {}",
                self.file.display(),
                self.field,
                self.message
            ),
            None => write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.field,
                self.message
            ),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatrix {
    schema: Spanned<u32>,
    environment: Spanned<String>,
    #[serde(default)]
    expect: Vec<Spanned<RawEntry>>,
    #[serde(default)]
    fact: Vec<Spanned<fact_entries::RawFactEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    check: Spanned<String>,
    variant: Option<Spanned<String>>,
    outcome: Spanned<String>,
    failure: Option<Spanned<String>>,
    reason: Spanned<String>,
    reference: Option<Spanned<String>>,
    #[serde(default)]
    unless: Vec<Spanned<RawOverride>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    when: Spanned<String>,
    outcome: Spanned<String>,
    failure: Option<Spanned<String>>,
    reason: Spanned<String>,
    reference: Option<Spanned<String>>,
}

/// Builds errors that point into one file's text.
struct Source<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn error(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        kind: MatrixErrorKind,
        message: impl Into<String>,
    ) -> MatrixError {
        MatrixError {
            file: self.file.to_path_buf(),
            line: Some(location::line_of(self.text, span.start)),
            field: field.into(),
            kind,
            // One line, whatever the message source.
            message: message
                .into()
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    fn toml_error(&self, e: toml::de::Error) -> MatrixError {
        let span = e.span().unwrap_or(0..0);
        let (field, kind) = match location::place_of(self.text, span.clone()) {
            Place::Unparsable => ("toml".to_string(), MatrixErrorKind::Syntax),
            // The text parses, so serde rejected its shape.
            Place::TopLevel => ("(top level)".to_string(), MatrixErrorKind::Shape),
            Place::Field(path) if e.message().starts_with("unknown field") => {
                (path, MatrixErrorKind::UnknownKey)
            }
            Place::Field(path) => (path, MatrixErrorKind::Shape),
        };
        self.error(span, field, kind, e.message())
    }

    fn outcome(&self, raw: &Spanned<String>, field: &str) -> Result<ExpectedOutcome, MatrixError> {
        match raw.get_ref().as_str() {
            "pass" => Ok(ExpectedOutcome::Pass),
            "fail" => Ok(ExpectedOutcome::Fail),
            other => {
                let hint = if matches!(
                    other,
                    "unsupported" | "error" | "expected-fail" | "regression"
                ) {
                    " (unsupported and error come from the probe, not the matrix)"
                } else {
                    ""
                };
                Err(self.error(
                    raw.span(),
                    field,
                    MatrixErrorKind::Outcome,
                    format!("expected \"pass\" or \"fail\", got \"{other}\"{hint}"),
                ))
            }
        }
    }

    /// `reason` must say something; an expected failure must cite a reference.
    fn justification(
        &self,
        table: Range<usize>,
        prefix: &str,
        outcome: ExpectedOutcome,
        reason: &Spanned<String>,
        reference: &Option<Spanned<String>>,
    ) -> Result<(String, Option<String>), MatrixError> {
        if reason.get_ref().trim().is_empty() {
            return Err(self.error(
                reason.span(),
                format!("{prefix}.reason"),
                MatrixErrorKind::Justification,
                "must say why",
            ));
        }
        let reference = match reference {
            Some(r) if r.get_ref().trim().is_empty() => {
                return Err(self.error(
                    r.span(),
                    format!("{prefix}.reference"),
                    MatrixErrorKind::Justification,
                    "is empty (omit it or give a link)",
                ));
            }
            Some(r) => Some(r.get_ref().trim().to_string()),
            None if outcome == ExpectedOutcome::Fail => {
                return Err(self.error(
                    table,
                    format!("{prefix}.reference"),
                    MatrixErrorKind::Justification,
                    "an expected failure needs a reference (CVE, commit, issue) so it can be reviewed and removed once fixed",
                ));
            }
            None => None,
        };
        Ok((reason.get_ref().trim().to_string(), reference))
    }

    /// An expected failure names one of the check's failures; a pass names none.
    fn failure(
        &self,
        table: Range<usize>,
        prefix: &str,
        check: &conformance_contract::CheckSpec,
        outcome: ExpectedOutcome,
        failure: &Option<Spanned<String>>,
    ) -> Result<Option<String>, MatrixError> {
        let field = format!("{prefix}.failure");
        let known = || {
            check
                .failures
                .iter()
                .map(|f| format!("\"{}\" ({})", f.code, f.meaning))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (outcome, failure) {
            (ExpectedOutcome::Pass, None) => Ok(None),
            (ExpectedOutcome::Pass, Some(f)) => Err(self.error(
                f.span(),
                field,
                MatrixErrorKind::Failure,
                "only an expected failure (outcome = \"fail\") names a failure",
            )),
            (ExpectedOutcome::Fail, None) => Err(self.error(
                table,
                field,
                MatrixErrorKind::Failure,
                format!(
                    "an expected failure must name the failure it expects, so that any other failure is a regression (\"{}\" has: {})",
                    check.id,
                    known()
                ),
            )),
            (ExpectedOutcome::Fail, Some(f)) => match check.failure(f.get_ref()) {
                Some(known) => Ok(Some(known.code.to_string())),
                None => Err(self.error(
                    f.span(),
                    field,
                    MatrixErrorKind::Failure,
                    format!(
                        "check \"{}\" has no failure \"{}\" (it has: {})",
                        check.id,
                        f.get_ref(),
                        known()
                    ),
                )),
            },
        }
    }
}

impl Matrix {
    /// Reads and validates a matrix file.
    pub fn load(path: impl AsRef<Path>) -> Result<Matrix, MatrixError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| MatrixError {
            file: path.to_path_buf(),
            line: None,
            field: "file".into(),
            kind: MatrixErrorKind::Io,
            message: format!("cannot read: {e}"),
        })?;
        Matrix::parse(path, &text)
    }

    /// Validates matrix `text`; `file` names it in errors and reports.
    pub fn parse(file: &Path, text: &str) -> Result<Matrix, MatrixError> {
        let src = Source { file, text };
        let raw: RawMatrix = toml::from_str(text).map_err(|e| src.toml_error(e))?;

        if *raw.schema.get_ref() != MATRIX_SCHEMA {
            return Err(src.error(
                raw.schema.span(),
                "schema",
                MatrixErrorKind::Schema,
                format!(
                    "unsupported matrix schema {} (this suite reads schema {MATRIX_SCHEMA})",
                    raw.schema.get_ref()
                ),
            ));
        }
        let environment: Environment =
            raw.environment
                .get_ref()
                .parse()
                .map_err(|e: crate::env::UnknownEnvironment| {
                    src.error(
                        raw.environment.span(),
                        "environment",
                        MatrixErrorKind::Environment,
                        e.to_string(),
                    )
                })?;
        // A file named after one environment but describing another is a copy-paste slip.
        if let Some(stem) = file.file_stem().and_then(|s| s.to_str())
            && let Ok(named) = stem.parse::<Environment>()
            && named != environment
        {
            return Err(src.error(
                raw.environment.span(),
                "environment",
                MatrixErrorKind::Environment,
                format!("says \"{environment}\" but the file is named for \"{named}\""),
            ));
        }

        let mut entries: Vec<Entry> = Vec::with_capacity(raw.expect.len());
        for (i, spanned) in raw.expect.iter().enumerate() {
            let table = spanned.span();
            let raw = spanned.get_ref();
            let prefix = format!("expect[{i}]");
            let check_id = raw.check.get_ref();
            let Some(check) = find_check(check_id) else {
                let known: Vec<&str> = CATALOGUE.iter().map(|c| c.id).collect();
                return Err(src.error(
                    raw.check.span(),
                    format!("{prefix}.check"),
                    MatrixErrorKind::UnknownCheck,
                    format!("unknown check \"{check_id}\" (known: {})", known.join(", ")),
                ));
            };
            let variant = match &raw.variant {
                Some(v) if !check.variants.contains(&v.get_ref().as_str()) => {
                    return Err(src.error(
                        v.span(),
                        format!("{prefix}.variant"),
                        MatrixErrorKind::UnknownVariant,
                        format!(
                            "check \"{}\" has no variant \"{}\" (variants: {})",
                            check.id,
                            v.get_ref(),
                            check.variants.join(", ")
                        ),
                    ));
                }
                v => v.as_ref().map(|v| v.get_ref().clone()),
            };
            let line = location::line_of(text, raw.check.span().start);
            if let Some((j, first)) = entries
                .iter()
                .enumerate()
                .find(|(_, e)| e.check == check.id && e.variant == variant)
            {
                let which = variant
                    .as_deref()
                    .map_or("every variant".to_string(), |v| format!("variant \"{v}\""));
                return Err(src.error(
                    raw.check.span(),
                    prefix,
                    MatrixErrorKind::Duplicate,
                    format!(
                        "duplicate entry for \"{}\" ({which}); the first is expect[{j}] at line {}",
                        check.id, first.line
                    ),
                ));
            }
            let outcome = src.outcome(&raw.outcome, &format!("{prefix}.outcome"))?;
            let (reason, reference) =
                src.justification(table.clone(), &prefix, outcome, &raw.reason, &raw.reference)?;
            let failure = src.failure(table, &prefix, check, outcome, &raw.failure)?;

            let mut unless = Vec::with_capacity(raw.unless.len());
            for (k, spanned) in raw.unless.iter().enumerate() {
                let o = spanned.get_ref();
                let prefix = format!("{prefix}.unless[{k}]");
                let when = Condition::parse(o.when.get_ref()).map_err(|e| {
                    src.error(
                        o.when.span(),
                        format!("{prefix}.when"),
                        MatrixErrorKind::Condition(e.kind),
                        e.to_string(),
                    )
                })?;
                let outcome = src.outcome(&o.outcome, &format!("{prefix}.outcome"))?;
                let (reason, reference) =
                    src.justification(spanned.span(), &prefix, outcome, &o.reason, &o.reference)?;
                let failure = src.failure(spanned.span(), &prefix, check, outcome, &o.failure)?;
                unless.push(Override {
                    when,
                    outcome,
                    failure,
                    reason,
                    reference,
                    line: location::line_of(text, o.when.span().start),
                });
            }
            entries.push(Entry {
                check: check.id.to_string(),
                variant,
                outcome,
                failure,
                reason,
                reference,
                line,
                unless,
            });
        }

        let facts = fact_entries::parse(&src, &raw.fact)?;
        Ok(Matrix {
            path: file.to_path_buf(),
            environment,
            environment_line: location::line_of(text, raw.environment.span().start),
            entries,
            facts,
        })
    }

    /// Fails when this matrix describes another environment than the run's.
    pub fn ensure_environment(&self, env: Environment) -> Result<(), MatrixError> {
        if self.environment == env {
            return Ok(());
        }
        Err(MatrixError {
            file: self.path.clone(),
            line: Some(self.environment_line),
            field: "environment".into(),
            kind: MatrixErrorKind::Environment,
            message: format!(
                "this matrix is for \"{}\", but the run's environment is \"{env}\"",
                self.environment
            ),
        })
    }

    /// The entry for (check, variant): the variant's own entry, else the check's
    /// all-variants entry.
    pub fn entry(&self, check: &str, variant: &str) -> Option<&Entry> {
        let mut general = None;
        for e in self.entries.iter().filter(|e| e.check == check) {
            match e.variant.as_deref() {
                Some(v) if v == variant => return Some(e),
                None => general = Some(e),
                Some(_) => {}
            }
        }
        general
    }

    /// What this matrix expects of (check, variant) given the facts.
    pub fn expectation(&self, check: &str, variant: &str, facts: &Facts) -> Expectation {
        let file = self.path.display().to_string();
        let Some(entry) = self.entry(check, variant) else {
            return match find_check(check) {
                Some(spec) => defaults::expectation(spec, variant, facts),
                // Observations are checked against the catalogue before they are
                // judged; a stream from another catalogue version can still name one.
                None => Expectation {
                    outcome: ExpectedOutcome::Pass,
                    failure: None,
                    reason: format!("{check} is not in this suite's catalogue; default is pass"),
                    reference: None,
                    decided_by: DecidedBy::Default { file },
                    undecided: Vec::new(),
                },
            };
        };
        let mut undecided = Vec::new();
        for o in &entry.unless {
            let eval = o.when.evaluate(facts);
            if eval.holds() {
                return Expectation {
                    outcome: o.outcome,
                    failure: o.failure.clone(),
                    reason: o.reason.clone(),
                    reference: o.reference.clone().or_else(|| entry.reference.clone()),
                    decided_by: DecidedBy::Override {
                        file,
                        line: o.line,
                        when: o.when.to_string(),
                    },
                    undecided,
                };
            }
            if !eval.unmeasured.is_empty() {
                undecided.push(Undecided {
                    line: Some(o.line),
                    when: o.when.to_string(),
                    unmeasured: eval.unmeasured,
                });
            }
        }
        Expectation {
            outcome: entry.outcome,
            failure: entry.failure.clone(),
            reason: entry.reason.clone(),
            reference: entry.reference.clone(),
            decided_by: DecidedBy::Entry {
                file,
                line: entry.line,
            },
            undecided,
        }
    }
}

#[cfg(test)]
mod tests;
