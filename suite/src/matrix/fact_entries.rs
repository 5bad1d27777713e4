//! `[[fact]]` tables: under which condition a precondition fact must be present.
//!
//! The probe reports a variant `unsupported` when a boolean fact it needs is
//! measured false here (`tcx` on a 6.1 kernel). Whether that is an environment
//! limit or a broken primitive is the matrix's call: a fact is expected
//! everywhere unless a `[[fact]]` entry says when it is, so TCX missing on 6.18
//! is a regression while TCX missing on 6.1 is `unsupported`.
//!
//! ```toml
//! [[fact]]
//! fact = "tcx"                 # a boolean fact key (contract/src/facts.rs)
//! expected = "kernel >= 6.6"   # a condition on other facts
//! reason = "TCX links landed in 6.6"
//! reference = "https://..."    # optional
//! ```

use super::condition::Condition;
use super::{DecidedBy, Matrix, MatrixErrorKind, Source, location};
use super::{ExpectedOutcome, MatrixError};
use conformance_contract::{FactKind, Facts, facts::all_fact_keys, facts::fact_kind};
use serde::{Deserialize, Serialize};
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFactEntry {
    fact: Spanned<String>,
    expected: Spanned<String>,
    reason: Spanned<String>,
    reference: Option<Spanned<String>>,
}

/// One validated `[[fact]]` table.
#[derive(Debug, Clone)]
pub struct FactEntry {
    pub fact: String,
    /// The fact must be present wherever this holds.
    pub expected: Condition,
    pub reason: String,
    pub reference: Option<String>,
    /// Line of the `fact` key.
    pub line: usize,
}

/// Whether a fact must be present under the measured facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FactPresence {
    /// Its absence is a regression.
    Expected,
    /// Its absence is an environment limit: `unsupported`.
    NotExpected,
    /// The condition names facts that were not measured: nobody can say.
    Undecided,
}

/// What the matrix says of one fact here, for the verdict and the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactExpectation {
    pub fact: String,
    pub presence: FactPresence,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub decided_by: DecidedBy,
    /// With `Undecided`: the unmeasured facts the condition needed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmeasured: Vec<String>,
}

pub(super) fn parse(
    src: &Source<'_>,
    raw: &[Spanned<RawFactEntry>],
) -> Result<Vec<FactEntry>, MatrixError> {
    let mut entries: Vec<FactEntry> = Vec::with_capacity(raw.len());
    for (i, spanned) in raw.iter().enumerate() {
        let prefix = format!("fact[{i}]");
        let r = spanned.get_ref();
        let key = r.fact.get_ref().as_str();
        if fact_kind(key) != Some(FactKind::Bool) {
            let booleans: Vec<String> = all_fact_keys()
                .into_iter()
                .filter(|k| fact_kind(k) == Some(FactKind::Bool))
                .collect();
            let what = if fact_kind(key).is_some() {
                "is not a boolean fact"
            } else {
                "is not a fact"
            };
            return Err(src.error(
                r.fact.span(),
                format!("{prefix}.fact"),
                MatrixErrorKind::UnknownFact,
                format!(
                    "\"{key}\" {what}; a [[fact]] entry names a boolean precondition (one of: {})",
                    booleans.join(", ")
                ),
            ));
        }
        let line = location::line_of(src.text, r.fact.span().start);
        if let Some(first) = entries.iter().find(|e| e.fact == key) {
            return Err(src.error(
                r.fact.span(),
                prefix,
                MatrixErrorKind::Duplicate,
                format!(
                    "duplicate [[fact]] entry for \"{key}\"; the first is at line {}",
                    first.line
                ),
            ));
        }
        let expected = Condition::parse(r.expected.get_ref()).map_err(|e| {
            src.error(
                r.expected.span(),
                format!("{prefix}.expected"),
                MatrixErrorKind::Condition(e.kind),
                e.to_string(),
            )
        })?;
        let (reason, reference) = src.justification(
            spanned.span(),
            &prefix,
            ExpectedOutcome::Pass,
            &r.reason,
            &r.reference,
        )?;
        entries.push(FactEntry {
            fact: key.to_string(),
            expected,
            reason,
            reference,
            line,
        });
    }
    Ok(entries)
}

impl Matrix {
    /// Whether `fact` must be present here, and which matrix line says so.
    pub fn fact_expectation(&self, fact: &str, facts: &Facts) -> FactExpectation {
        let file = self.path.display().to_string();
        let Some(entry) = self.facts.iter().find(|e| e.fact == fact) else {
            if let Some(default) = super::defaults::fact_expectation(fact, facts) {
                return default;
            }
            return FactExpectation {
                fact: fact.to_string(),
                presence: FactPresence::Expected,
                reason: format!(
                    "neither {file} nor the catalogue has an entry for {fact}, so it is expected wherever a check needs it"
                ),
                reference: None,
                decided_by: DecidedBy::Default { file },
                unmeasured: Vec::new(),
            };
        };
        let eval = entry.expected.evaluate(facts);
        let presence = match eval.truth {
            super::condition::Truth::True => FactPresence::Expected,
            super::condition::Truth::False => FactPresence::NotExpected,
            super::condition::Truth::Unknown => FactPresence::Undecided,
        };
        FactExpectation {
            fact: fact.to_string(),
            presence,
            reason: entry.reason.clone(),
            reference: entry.reference.clone(),
            decided_by: DecidedBy::Override {
                file,
                line: entry.line,
                when: entry.expected.to_string(),
            },
            unmeasured: eval.unmeasured,
        }
    }
}
