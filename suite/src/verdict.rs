//! Verdicts: an observation judged against the matrix's expectation.
//!
//! The table, in the order the rules apply:
//!
//! | observation | negative control | expected | verdict |
//! |---|---|---|---|
//! | error | any | any | error |
//! | unsupported | any | any | unsupported |
//! | pass/fail | missing | any | error ("no negative control ran") |
//! | pass/fail | leaked | any | error ("check is blind") |
//! | pass/fail | error | any | error |
//! | pass | blocked | pass | pass |
//! | fail | blocked | fail | expected-fail |
//! | fail | blocked | pass | regression |
//! | pass | blocked | fail | unexpected-pass |
//! | (none) | | | error ("probe produced no observation") |
//!
//! A check whose control delivered too cannot tell working from broken, so its
//! result is never counted as a pass or a regression.

use crate::matrix::{Expectation, ExpectedOutcome, Matrix};
use conformance_contract::{ControlOutcome, Facts, Observation, Outcome, PlannedCheck, find_check};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    Pass,
    ExpectedFail,
    Regression,
    UnexpectedPass,
    Unsupported,
    Error,
}

impl VerdictKind {
    pub const ALL: [VerdictKind; 6] = [
        VerdictKind::Pass,
        VerdictKind::ExpectedFail,
        VerdictKind::Regression,
        VerdictKind::UnexpectedPass,
        VerdictKind::Unsupported,
        VerdictKind::Error,
    ];

    /// `expected-fail`, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Pass => "pass",
            VerdictKind::ExpectedFail => "expected-fail",
            VerdictKind::Regression => "regression",
            VerdictKind::UnexpectedPass => "unexpected-pass",
            VerdictKind::Unsupported => "unsupported",
            VerdictKind::Error => "error",
        }
    }

    /// `EXPECTED-FAIL`: tables and summaries.
    pub fn label(self) -> String {
        self.as_str().to_ascii_uppercase()
    }
}

impl fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One (check, variant)'s verdict, with everything needed to understand it
/// without rerunning: the observation (both legs) and the deciding expectation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub check: String,
    pub variant: String,
    pub verdict: VerdictKind,
    /// One line for a human: for a regression, what the probe saw.
    pub reason: String,
    pub expected: Expectation,
    /// `None` when the probe produced no observation for a planned check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<Observation>,
}

impl Verdict {
    /// `check[variant]`, or just `check` for checks with one way to run.
    pub fn name(&self) -> String {
        if self.variant == "default" {
            self.check.clone()
        } else {
            format!("{}[{}]", self.check, self.variant)
        }
    }

    /// How long the probe spent on this check (both legs), 0 without an observation.
    pub fn duration_ms(&self) -> f64 {
        self.observation.as_ref().map_or(0.0, |o| o.duration_ms)
    }
}

/// Judges every planned (check, variant) and every observation the probe sent.
///
/// Verdicts come in plan order, then observations the plan did not announce
/// (a stream without a plan line still yields verdicts). A planned check with
/// no observation becomes an `error` verdict, so a truncated stream still
/// gives a complete report; a (check, variant) reported twice, or unknown to
/// the catalogue, is an `error` too (the probe and suite disagree).
pub fn evaluate(
    matrix: &Matrix,
    facts: &Facts,
    plan: &[PlannedCheck],
    observations: &[Observation],
) -> Vec<Verdict> {
    let mut by_key: HashMap<(&str, &str), Vec<&Observation>> = HashMap::new();
    let mut order: Vec<(&str, &str)> = Vec::new();
    let planned = plan
        .iter()
        .map(|p| ((p.check.as_str(), p.variant.as_str()), None));
    let observed = observations
        .iter()
        .map(|o| ((o.check.as_str(), o.variant.as_str()), Some(o)));
    for (key, observation) in planned.chain(observed) {
        by_key
            .entry(key)
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .extend(observation);
    }
    order
        .into_iter()
        .map(|(check, variant)| {
            let expected = matrix.expectation(check, variant, facts);
            judge(check, variant, &by_key[&(check, variant)], expected)
        })
        .collect()
}

fn judge(check: &str, variant: &str, observed: &[&Observation], expected: Expectation) -> Verdict {
    let (verdict, reason) = match observed {
        [] => (
            VerdictKind::Error,
            "probe produced no observation (stream truncated?)".to_string(),
        ),
        [_, _, ..] => {
            let outcomes: Vec<String> = observed
                .iter()
                .map(|o| outcome_word(o.outcome).to_string())
                .collect();
            (
                VerdictKind::Error,
                format!(
                    "probe reported {} observations for this check ({}); the first is kept",
                    observed.len(),
                    outcomes.join(", ")
                ),
            )
        }
        [o] => match find_check(check) {
            None => (
                VerdictKind::Error,
                format!(
                    "probe reported a check this suite does not know (probe newer than suite?): {}",
                    o.reason
                ),
            ),
            Some(spec) if !spec.variants.contains(&variant) => (
                VerdictKind::Error,
                format!(
                    "probe reported variant \"{variant}\", which this check does not have (variants: {})",
                    spec.variants.join(", ")
                ),
            ),
            Some(_) => judge_one(o, &expected),
        },
    };
    Verdict {
        check: check.to_string(),
        variant: variant.to_string(),
        verdict,
        reason,
        expected,
        observation: observed.first().map(|o| (*o).clone()),
    }
}

/// The probe's outcome as the line format spells it.
pub(crate) fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass",
        Outcome::Fail => "fail",
        Outcome::Unsupported => "unsupported",
        Outcome::Error => "error",
    }
}

fn judge_one(o: &Observation, expected: &Expectation) -> (VerdictKind, String) {
    let passed = match o.outcome {
        Outcome::Error => {
            return (
                VerdictKind::Error,
                format!("probe could not run the check: {}", o.reason),
            );
        }
        Outcome::Unsupported => return (VerdictKind::Unsupported, o.reason.clone()),
        Outcome::Pass => true,
        Outcome::Fail => false,
    };
    // The control exists to prove that a pass could have been a fail. A pass
    // without a blocking control proves nothing; a fail needs no such proof
    // (traffic demonstrably did not take the path), so a control that could not
    // run is noted on a fail but never turns a regression into an error.
    let mut control_note = None;
    match o.control.as_ref().map(|c| (c.outcome, c)) {
        Some((ControlOutcome::Blocked, _)) => {}
        Some((ControlOutcome::Leaked, control)) => {
            return (
                VerdictKind::Error,
                format!(
                    "check is blind: its negative control delivered too ({}: {})",
                    control.description, control.reason
                ),
            );
        }
        Some((ControlOutcome::Error, control)) if passed => {
            return (
                VerdictKind::Error,
                format!(
                    "negative control could not run ({}: {})",
                    control.description, control.reason
                ),
            );
        }
        Some((ControlOutcome::Error, control)) => {
            control_note = Some(format!(
                "negative control could not run: {}",
                control.reason
            ));
        }
        None if passed => {
            return (
                VerdictKind::Error,
                format!(
                    "no negative control ran, so the result cannot be trusted (observed {}: {})",
                    outcome_word(o.outcome),
                    o.reason
                ),
            );
        }
        None => control_note = Some("no negative control ran".to_string()),
    }
    let (kind, reason) = match (passed, expected.outcome) {
        (true, ExpectedOutcome::Pass) => (VerdictKind::Pass, o.reason.clone()),
        (false, ExpectedOutcome::Pass) => (VerdictKind::Regression, o.reason.clone()),
        (false, ExpectedOutcome::Fail) => (
            VerdictKind::ExpectedFail,
            format!("{} (expected: {})", o.reason, expected.reason),
        ),
        (true, ExpectedOutcome::Fail) => (
            VerdictKind::UnexpectedPass,
            format!("{} (matrix expected fail: {})", o.reason, expected.reason),
        ),
    };
    let reason = match control_note {
        Some(note) => format!("{reason} ({note})"),
        None => reason,
    };
    // The expectation decided this verdict: say when it rests on missing facts.
    match expected.undecided_note() {
        Some(note) => (kind, format!("{reason} [{note}]")),
        None => (kind, reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conformance_contract::{Control, KernelVersion};
    use serde_json::Map;
    use std::path::Path;

    const MATRIX: &str = r#"schema = 1
environment = "vm"
[[expect]]
check = "datapath.redirect-peer.scrub"
outcome = "pass"
reason = "fixed kernels scrub"
[[expect.unless]]
when = "kernel < 6.1.139"
outcome = "fail"
reason = "CVE-2025-37959 unfixed"
reference = "https://nvd.nist.gov/vuln/detail/CVE-2025-37959"
"#;

    const SCRUB: &str = "datapath.redirect-peer.scrub";

    fn matrix() -> Matrix {
        Matrix::parse(Path::new("vm.toml"), MATRIX).unwrap()
    }

    fn facts(kernel: Option<(u32, u32, u32)>) -> Facts {
        let mut f = Facts::example();
        f.kernel = kernel.map(|(a, b, c)| KernelVersion::new(a, b, c));
        f
    }

    fn obs(check: &str, outcome: Outcome, control: Option<ControlOutcome>) -> Observation {
        Observation {
            check: check.into(),
            variant: "default".into(),
            outcome,
            reason: format!("observed {outcome:?}"),
            evidence: Map::new(),
            failure: None,
            missing_facts: Vec::new(),
            control: control.map(|outcome| Control {
                description: "TC_ACT_OK instead of redirect".into(),
                outcome,
                reason: format!("control {outcome:?}"),
                evidence: Map::new(),
            }),
            duration_ms: 3.0,
        }
    }

    fn one(o: Observation, kernel: (u32, u32, u32)) -> Verdict {
        let plan = [PlannedCheck {
            check: o.check.clone(),
            variant: o.variant.clone(),
        }];
        let mut v = evaluate(&matrix(), &facts(Some(kernel)), &plan, &[o]);
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    const FIXED: (u32, u32, u32) = (6, 18, 44);
    const UNFIXED: (u32, u32, u32) = (6, 1, 100);

    #[test]
    fn outcome_times_expectation_with_a_blocked_control() {
        use ControlOutcome::Blocked;
        let cases = [
            (Outcome::Pass, FIXED, VerdictKind::Pass),
            (Outcome::Fail, UNFIXED, VerdictKind::ExpectedFail),
            (Outcome::Fail, FIXED, VerdictKind::Regression),
            (Outcome::Pass, UNFIXED, VerdictKind::UnexpectedPass),
        ];
        for (outcome, kernel, want) in cases {
            let v = one(obs(SCRUB, outcome, Some(Blocked)), kernel);
            assert_eq!(v.verdict, want, "{outcome:?} on {kernel:?}: {}", v.reason);
        }
        let v = one(obs(SCRUB, Outcome::Fail, Some(Blocked)), FIXED);
        assert_eq!(
            v.reason, "observed Fail",
            "a regression says what the probe saw"
        );
        let v = one(obs(SCRUB, Outcome::Fail, Some(Blocked)), UNFIXED);
        assert_eq!(v.reason, "observed Fail (expected: CVE-2025-37959 unfixed)");
        assert!(matches!(
            v.expected.decided_by,
            crate::matrix::DecidedBy::Override { line: 8, .. }
        ));
        let v = one(obs(SCRUB, Outcome::Pass, Some(Blocked)), UNFIXED);
        assert_eq!(
            v.reason,
            "observed Pass (matrix expected fail: CVE-2025-37959 unfixed)"
        );
    }

    #[test]
    fn probe_error_and_unsupported_win_over_everything() {
        for control in [
            None,
            Some(ControlOutcome::Leaked),
            Some(ControlOutcome::Blocked),
        ] {
            for kernel in [FIXED, UNFIXED] {
                let v = one(obs(SCRUB, Outcome::Error, control), kernel);
                assert_eq!(
                    (v.verdict, v.reason.as_str()),
                    (
                        VerdictKind::Error,
                        "probe could not run the check: observed Error"
                    )
                );
                let v = one(obs(SCRUB, Outcome::Unsupported, control), kernel);
                assert_eq!(
                    (v.verdict, v.reason.as_str()),
                    (VerdictKind::Unsupported, "observed Unsupported")
                );
            }
        }
    }

    #[test]
    fn a_blind_control_is_an_error_whatever_the_outcome() {
        for outcome in [Outcome::Pass, Outcome::Fail] {
            for kernel in [FIXED, UNFIXED] {
                let v = one(obs(SCRUB, outcome, Some(ControlOutcome::Leaked)), kernel);
                assert_eq!(v.verdict, VerdictKind::Error);
                assert_eq!(
                    v.reason,
                    "check is blind: its negative control delivered too (TC_ACT_OK instead of redirect: control Leaked)"
                );
                assert!(
                    v.observation.is_some(),
                    "the observation is kept for the report"
                );
            }
        }
    }

    #[test]
    fn a_pass_needs_a_control_that_ran() {
        for kernel in [FIXED, UNFIXED] {
            let v = one(
                obs(SCRUB, Outcome::Pass, Some(ControlOutcome::Error)),
                kernel,
            );
            assert_eq!(v.verdict, VerdictKind::Error);
            assert!(
                v.reason.starts_with("negative control could not run"),
                "{}",
                v.reason
            );
            let v = one(obs(SCRUB, Outcome::Pass, None), kernel);
            assert_eq!(v.verdict, VerdictKind::Error);
            assert!(
                v.reason.starts_with("no negative control ran"),
                "{}",
                v.reason
            );
        }
    }

    #[test]
    fn a_fail_stands_when_its_control_could_not_run() {
        // A fault that drops traffic before the check's hook also starves the
        // control: the regression must still be reported as one.
        let v = one(
            obs(SCRUB, Outcome::Fail, Some(ControlOutcome::Error)),
            FIXED,
        );
        assert_eq!(v.verdict, VerdictKind::Regression);
        assert!(
            v.reason.contains("negative control could not run"),
            "{}",
            v.reason
        );
        let v = one(obs(SCRUB, Outcome::Fail, None), UNFIXED);
        assert_eq!(v.verdict, VerdictKind::ExpectedFail);
        assert!(v.reason.contains("no negative control ran"), "{}", v.reason);
    }

    #[test]
    fn unmeasured_facts_show_in_the_reason() {
        let o = obs(SCRUB, Outcome::Fail, Some(ControlOutcome::Blocked));
        let plan = [PlannedCheck {
            check: SCRUB.into(),
            variant: "default".into(),
        }];
        let v = evaluate(&matrix(), &facts(None), &plan, &[o]);
        assert_eq!(
            v[0].verdict,
            VerdictKind::Regression,
            "the base expectation (pass) stands"
        );
        assert_eq!(
            v[0].reason,
            "observed Fail [kernel not measured, so `when = kernel < 6.1.139` (line 8) could not be decided]"
        );
    }

    #[test]
    fn names_and_kinds_read_well() {
        let v = one(
            obs(SCRUB, Outcome::Pass, Some(ControlOutcome::Blocked)),
            FIXED,
        );
        assert_eq!(v.name(), SCRUB);
        assert_eq!(
            Verdict {
                variant: "tcx".into(),
                ..v.clone()
            }
            .name(),
            format!("{SCRUB}[tcx]")
        );
        assert_eq!(v.duration_ms(), 3.0);
        assert_eq!(
            serde_json::to_value(VerdictKind::UnexpectedPass).unwrap(),
            "unexpected-pass"
        );
        assert_eq!(VerdictKind::ExpectedFail.label(), "EXPECTED-FAIL");
    }
}
