//! The suite's top-level error and the process exit codes of DESIGN.md.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | every verdict as expected (pass, expected-fail, unsupported; unexpected-pass unless strict) |
//! | 1 | a regression (or an unexpected-pass with `--strict`) |
//! | 2 | bad usage or bad input file (matrix, `--test`, `--env`, report path) |
//! | 3 | infrastructure error (an `error` verdict, a damaged probe stream, a report that could not be written) |
//!
//! Precedence when a run has both: **1 wins over 3**. A regression is a
//! finding about the datapath that CI must surface; an infrastructure error on
//! another check (a flaky setup, a control that could not run) must not turn a
//! red "regression" into a grey "infra, retry" that people rerun until green.
//! The error verdicts are still in every report.

use crate::env::UnknownEnvironment;
use crate::matrix::MatrixError;
use crate::report::ReportError;
use crate::select::SelectError;
use crate::stream::StreamError;
use crate::verdict::{Verdict, VerdictKind};

pub const EXIT_OK: u8 = 0;
pub const EXIT_REGRESSION: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_INFRA: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Matrix(#[from] MatrixError),
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error(transparent)]
    Environment(#[from] UnknownEnvironment),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Report(#[from] ReportError),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Matrix(_) | Error::Select(_) | Error::Environment(_) => EXIT_USAGE,
            // The probe's stream comes from the suite's own tooling: a broken
            // one is infrastructure, not user input.
            Error::Stream(_) => EXIT_INFRA,
            Error::Report(e) => e.exit_code(),
        }
    }
}

/// The exit code for a run's verdicts (see the module doc for precedence).
pub fn exit_code_for<'a>(verdicts: impl IntoIterator<Item = &'a Verdict>, strict: bool) -> u8 {
    let (mut regression, mut error) = (false, false);
    for v in verdicts {
        regression |= v.verdict == VerdictKind::Regression
            || (strict && v.verdict == VerdictKind::UnexpectedPass);
        error |= v.verdict == VerdictKind::Error;
    }
    if regression {
        EXIT_REGRESSION
    } else if error {
        EXIT_INFRA
    } else {
        EXIT_OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::{DecidedBy, Expectation, ExpectedOutcome};

    fn v(kind: VerdictKind) -> Verdict {
        Verdict {
            check: "datapath.host-to-pod".into(),
            variant: "default".into(),
            verdict: kind,
            reason: String::new(),
            expected: Expectation {
                outcome: ExpectedOutcome::Pass,
                failure: None,
                reason: String::new(),
                reference: None,
                decided_by: DecidedBy::Default {
                    file: "vm.toml".into(),
                },
                undecided: vec![],
            },
            facts_expected: vec![],
            observation: None,
        }
    }

    #[test]
    fn precedence_regression_over_error_over_ok() {
        use VerdictKind::*;
        let code = |kinds: &[VerdictKind], strict| {
            exit_code_for(&kinds.iter().map(|k| v(*k)).collect::<Vec<_>>(), strict)
        };
        assert_eq!(code(&[], false), 0);
        assert_eq!(
            code(&[Pass, ExpectedFail, Unsupported, UnexpectedPass], false),
            0
        );
        assert_eq!(code(&[Pass, UnexpectedPass], true), 1);
        assert_eq!(code(&[Pass, Regression], false), 1);
        assert_eq!(code(&[Error, Pass], false), 3);
        assert_eq!(
            code(&[Error, Regression], false),
            1,
            "a regression is never masked by an error"
        );
        assert_eq!(code(&[Error, UnexpectedPass], true), 1);
        assert_eq!(code(&[Error, UnexpectedPass], false), 3);
    }

    #[test]
    fn input_errors_are_usage_stream_errors_are_infra() {
        assert_eq!(
            Error::from(UnknownEnvironment { given: "x".into() }).exit_code(),
            EXIT_USAGE
        );
        assert_eq!(
            Error::from(SelectError::Empty { arg: String::new() }).exit_code(),
            EXIT_USAGE
        );
        assert_eq!(Error::from(StreamError::Empty).exit_code(), EXIT_INFRA);
    }
}
