//! The catalogue's defaults, as a matrix would say them: what every environment
//! expects of a check (`CheckSpec::pass_because`, `expected_failures`) and where
//! a precondition fact is expected (`EXPECTED_FACTS`). A matrix file holds only
//! its deviations; whatever it does not name is decided here.

use super::condition::{Condition, Truth};
use super::fact_entries::{FactExpectation, FactPresence};
use super::{DecidedBy, Expectation, ExpectedOutcome, Undecided};
use conformance_contract::{CATALOGUE, CheckSpec, EXPECTED_FACTS, ExpectedFact, Facts};
use std::sync::OnceLock;

/// Where reports point a reader for a default: the file to edit.
pub const CATALOGUE_FILE: &str = "contract/src/catalogue.rs";

/// The catalogue's conditions, parsed once.
struct Parsed {
    /// `(check id, index into expected_failures)` → condition.
    failures: Vec<(&'static str, usize, Option<Condition>)>,
    facts: Vec<(&'static ExpectedFact, Condition)>,
}

fn parsed() -> &'static Parsed {
    static PARSED: OnceLock<Parsed> = OnceLock::new();
    PARSED.get_or_init(|| {
        // The catalogue is code: a condition that does not parse is a bug that
        // `catalogue_conditions_parse` catches before any release.
        let parse = |text: &str| {
            Condition::parse(text).unwrap_or_else(|e| panic!("catalogue condition `{text}`: {e}"))
        };
        Parsed {
            failures: CATALOGUE
                .iter()
                .flat_map(|c| {
                    c.expected_failures
                        .iter()
                        .enumerate()
                        .map(move |(i, e)| (c.id, i, e.when.map(parse)))
                })
                .collect(),
            facts: EXPECTED_FACTS
                .iter()
                .map(|f| (f, parse(f.expected)))
                .collect(),
        }
    })
}

fn condition(check: &str, index: usize) -> Option<&'static Condition> {
    parsed()
        .failures
        .iter()
        .find(|(id, i, _)| *id == check && *i == index)
        .and_then(|(_, _, c)| c.as_ref())
}

/// What the catalogue expects of (check, variant): the first expected failure
/// for the variant whose condition holds, else a pass.
pub fn expectation(check: &CheckSpec, variant: &str, facts: &Facts) -> Expectation {
    let mut undecided = Vec::new();
    for (i, e) in check.expected_failures.iter().enumerate() {
        if e.variant.is_some_and(|v| v != variant) {
            continue;
        }
        let when = condition(check.id, i);
        let eval = when.map(|c| c.evaluate(facts));
        if eval.as_ref().is_none_or(|e| e.holds()) {
            return Expectation {
                outcome: ExpectedOutcome::Fail,
                failure: Some(e.failure.code.to_string()),
                reason: e.reason.to_string(),
                reference: Some(e.reference.to_string()),
                decided_by: DecidedBy::Catalogue {
                    check: check.id.to_string(),
                    when: when.map(|c| c.to_string()),
                },
                undecided,
            };
        }
        if let (Some(c), Some(eval)) = (when, eval)
            && !eval.unmeasured.is_empty()
        {
            undecided.push(Undecided {
                line: None,
                when: c.to_string(),
                unmeasured: eval.unmeasured,
            });
        }
    }
    Expectation {
        outcome: ExpectedOutcome::Pass,
        failure: None,
        reason: check.pass_because.to_string(),
        reference: Some(check.reference.to_string()),
        decided_by: DecidedBy::Catalogue {
            check: check.id.to_string(),
            when: None,
        },
        undecided,
    }
}

/// Where the catalogue expects `fact`, or `None` when it has no entry (the
/// fact is then expected everywhere).
pub fn fact_expectation(fact: &str, facts: &Facts) -> Option<FactExpectation> {
    let (entry, expected) = parsed().facts.iter().find(|(f, _)| f.fact == fact)?;
    let eval = expected.evaluate(facts);
    Some(FactExpectation {
        fact: fact.to_string(),
        presence: match eval.truth {
            Truth::True => FactPresence::Expected,
            Truth::False => FactPresence::NotExpected,
            Truth::Unknown => FactPresence::Undecided,
        },
        reason: entry.reason.to_string(),
        reference: Some(entry.reference.to_string()),
        decided_by: DecidedBy::Catalogue {
            check: fact.to_string(),
            when: Some(expected.to_string()),
        },
        unmeasured: eval.unmeasured,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use conformance_contract::CATALOGUE;

    #[test]
    fn catalogue_conditions_parse() {
        for c in CATALOGUE {
            for e in c.expected_failures {
                if let Some(when) = e.when {
                    Condition::parse(when).unwrap_or_else(|err| panic!("{}: {when}: {err}", c.id));
                }
            }
        }
        for f in EXPECTED_FACTS {
            Condition::parse(f.expected).unwrap_or_else(|err| panic!("{}: {err}", f.fact));
        }
        // And the parsed table covers every one of them.
        assert_eq!(
            parsed().failures.len(),
            CATALOGUE
                .iter()
                .map(|c| c.expected_failures.len())
                .sum::<usize>()
        );
    }
}
