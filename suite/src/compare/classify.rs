//! What happened to one (instance, check, variant) between two runs.
//!
//! Verdicts fall in two groups: *failing* (`regression`, `error`: the run exits
//! non-zero for them) and *holding* (`pass`, `expected-fail`, `unexpected-pass`,
//! `unsupported`: as the matrix expects). The rules, in order:
//!
//! | baseline | current | class |
//! |---|---|---|
//! | (absent) | any | added |
//! | any | (absent) | removed |
//! | holding | failing | new failure |
//! | failing | failing, another verdict or failure code | new failure (the note names both) |
//! | failing | failing, the same | still failing |
//! | failing | unsupported | became unsupported |
//! | failing | holding | fixed |
//! | unsupported | holding | became runnable |
//! | holding | unsupported | became unsupported |
//! | expected-fail | pass, unexpected-pass | fixed |
//! | the same verdict and failure code | | unchanged |
//! | holding | holding, otherwise | changed (still as the matrix expects) |
//!
//! Only a new failure makes the comparison fail: a check that disappears, or
//! becomes unsupported where the matrix allows it, is listed, never an error.

use crate::verdict::VerdictKind;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A row's class, in the order reports list them (most urgent first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Got worse: holding → failing, or failing a different way.
    NewFailure,
    /// Failing in both runs, the same way.
    StillFailing,
    /// Now `unsupported` (the matrix says the missing fact is not expected here).
    BecameUnsupported,
    /// Another holding verdict (`pass` → `expected-fail` after a matrix or kernel change).
    Changed,
    /// Failing (or expected to fail) before, works now.
    Fixed,
    /// `unsupported` before, ran now.
    BecameRunnable,
    /// Only in the current run (a newer catalogue, another `--test`).
    Added,
    /// Only in the baseline run.
    Removed,
    Unchanged,
}

impl Class {
    pub const ALL: [Class; 9] = [
        Class::NewFailure,
        Class::StillFailing,
        Class::BecameUnsupported,
        Class::Changed,
        Class::Fixed,
        Class::BecameRunnable,
        Class::Added,
        Class::Removed,
        Class::Unchanged,
    ];

    /// `new-failure`, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::NewFailure => "new-failure",
            Class::StillFailing => "still-failing",
            Class::BecameUnsupported => "became-unsupported",
            Class::Changed => "changed",
            Class::Fixed => "fixed",
            Class::BecameRunnable => "became-runnable",
            Class::Added => "added",
            Class::Removed => "removed",
            Class::Unchanged => "unchanged",
        }
    }

    /// `NEW FAILURE`: tables.
    pub fn label(self) -> String {
        self.as_str().replace('-', " ").to_ascii_uppercase()
    }

    /// `new failure`: prose.
    pub fn words(self) -> String {
        self.as_str().replace('-', " ")
    }

    /// Whether this row makes the comparison fail (exit 1).
    pub fn got_worse(self) -> bool {
        self == Class::NewFailure
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verdict as the classifier sees it: the kind and the observed failure code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen<'a> {
    pub verdict: VerdictKind,
    pub failure: Option<&'a str>,
}

impl<'a> Seen<'a> {
    pub fn new(verdict: VerdictKind, failure: Option<&'a str>) -> Seen<'a> {
        Seen { verdict, failure }
    }

    fn failing(self) -> bool {
        matches!(self.verdict, VerdictKind::Regression | VerdictKind::Error)
    }

    /// `regression (not-delivered)`.
    fn text(self) -> String {
        match self.failure {
            Some(code) => format!("{} ({code})", self.verdict),
            None => self.verdict.to_string(),
        }
    }
}

/// The class of a row, and a note when the class alone does not say what
/// changed (a failure that changed its code).
pub fn classify(baseline: Option<Seen<'_>>, current: Option<Seen<'_>>) -> (Class, Option<String>) {
    use VerdictKind::*;
    let (b, c) = match (baseline, current) {
        (None, None) => return (Class::Unchanged, None),
        (None, Some(_)) => return (Class::Added, None),
        (Some(_), None) => return (Class::Removed, None),
        (Some(b), Some(c)) => (b, c),
    };
    let class = match (b.failing(), c.failing()) {
        (false, true) => Class::NewFailure,
        (true, true) if b == c => Class::StillFailing,
        (true, true) => {
            let note = format!("failure changed: {} → {}", b.text(), c.text());
            return (Class::NewFailure, Some(note));
        }
        (true, false) if c.verdict == Unsupported => Class::BecameUnsupported,
        (true, false) => Class::Fixed,
        (false, false) => match (b.verdict, c.verdict) {
            _ if b == c => Class::Unchanged,
            (Unsupported, _) => Class::BecameRunnable,
            (_, Unsupported) => Class::BecameUnsupported,
            (ExpectedFail, Pass | UnexpectedPass) => Class::Fixed,
            _ => Class::Changed,
        },
    };
    (class, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use VerdictKind::*;

    fn s(v: VerdictKind) -> Option<Seen<'static>> {
        Some(Seen::new(v, None))
    }

    fn f(v: VerdictKind, code: &'static str) -> Option<Seen<'static>> {
        Some(Seen::new(v, Some(code)))
    }

    fn class(b: Option<Seen<'_>>, c: Option<Seen<'_>>) -> Class {
        classify(b, c).0
    }

    #[test]
    fn every_class_is_reachable() {
        let cases = [
            (s(Pass), f(Regression, "not-delivered"), Class::NewFailure),
            (
                f(Regression, "not-delivered"),
                f(Regression, "not-delivered"),
                Class::StillFailing,
            ),
            (s(Pass), s(Unsupported), Class::BecameUnsupported),
            (s(Pass), f(ExpectedFail, "not-scrubbed"), Class::Changed),
            (f(Regression, "not-delivered"), s(Pass), Class::Fixed),
            (s(Unsupported), s(Pass), Class::BecameRunnable),
            (None, s(Pass), Class::Added),
            (s(Pass), None, Class::Removed),
            (s(Pass), s(Pass), Class::Unchanged),
        ];
        for (b, c, want) in cases {
            assert_eq!(class(b, c), want, "{b:?} → {c:?}");
        }
        let reached: std::collections::BTreeSet<Class> = cases.iter().map(|(_, _, c)| *c).collect();
        assert_eq!(reached.len(), Class::ALL.len(), "a class without a case");
    }

    #[test]
    fn got_worse_is_holding_to_failing() {
        for b in [Pass, ExpectedFail, UnexpectedPass, Unsupported] {
            for c in [Regression, Error] {
                assert_eq!(class(s(b), s(c)), Class::NewFailure, "{b} → {c}");
            }
        }
        assert!(Class::NewFailure.got_worse());
        for c in Class::ALL.into_iter().filter(|c| *c != Class::NewFailure) {
            assert!(!c.got_worse(), "{c}");
        }
    }

    #[test]
    fn a_changed_failure_is_a_new_failure_with_both_named() {
        let (c, note) = classify(
            f(Regression, "not-delivered"),
            f(Regression, "hook-not-run"),
        );
        assert_eq!(c, Class::NewFailure);
        assert_eq!(
            note.as_deref(),
            Some("failure changed: regression (not-delivered) → regression (hook-not-run)")
        );
        let (c, note) = classify(f(Regression, "not-delivered"), s(Error));
        assert_eq!(c, Class::NewFailure);
        assert_eq!(
            note.as_deref(),
            Some("failure changed: regression (not-delivered) → error")
        );
        assert_eq!(class(s(Error), s(Error)), Class::StillFailing);
    }

    #[test]
    fn failing_to_holding() {
        assert_eq!(class(s(Error), s(Unsupported)), Class::BecameUnsupported);
        assert_eq!(class(s(Error), f(ExpectedFail, "x")), Class::Fixed);
        assert_eq!(class(s(Regression), s(UnexpectedPass)), Class::Fixed);
    }

    #[test]
    fn holding_to_holding() {
        assert_eq!(class(f(ExpectedFail, "x"), s(Pass)), Class::Fixed);
        assert_eq!(class(f(ExpectedFail, "x"), s(UnexpectedPass)), Class::Fixed);
        assert_eq!(
            class(s(Unsupported), f(ExpectedFail, "x")),
            Class::BecameRunnable
        );
        assert_eq!(
            class(f(ExpectedFail, "x"), s(Unsupported)),
            Class::BecameUnsupported
        );
        assert_eq!(class(s(UnexpectedPass), s(Pass)), Class::Changed);
        assert_eq!(
            class(f(ExpectedFail, "x"), f(ExpectedFail, "y")),
            Class::Changed
        );
        assert_eq!(class(s(Unsupported), s(Unsupported)), Class::Unchanged);
        assert_eq!(
            class(f(ExpectedFail, "x"), f(ExpectedFail, "x")),
            Class::Unchanged
        );
    }

    #[test]
    fn labels() {
        assert_eq!(Class::NewFailure.label(), "NEW FAILURE");
        assert_eq!(Class::BecameRunnable.words(), "became runnable");
        assert_eq!(
            serde_json::to_string(&Class::StillFailing).unwrap(),
            "\"still-failing\""
        );
    }
}
