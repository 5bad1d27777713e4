//! Verdicts: an observation judged against the matrix's expectation.
//!
//! The table, in the order the rules apply:
//!
//! | observation | negative control | expected | verdict |
//! |---|---|---|---|
//! | error | any | any | error |
//! | unsupported, a missing fact the matrix expects here | | | regression (names the fact) |
//! | unsupported, a missing fact the matrix cannot decide | | | error |
//! | unsupported, no missing fact named | | | error |
//! | unsupported, every missing fact not expected here | | | unsupported |
//! | pass/fail | leaked | any | error ("check is blind") |
//! | pass | missing or error | any | error ("no negative control ran") |
//! | pass | blocked | pass | pass |
//! | pass | blocked | fail | unexpected-pass |
//! | fail | any but leaked | pass | regression |
//! | fail naming the expected failure | any but leaked | fail | expected-fail |
//! | fail naming another failure (or none) | any but leaked | fail | regression (shows both) |
//! | (none) | | | error ("probe produced no observation") |
//!
//! A check whose control delivered too cannot tell working from broken, so its
//! result is never counted as a pass or a regression. `unsupported` is never the
//! probe's word alone: it stands only where the matrix's `[[fact]]` entries say
//! the missing fact is not expected, so a broken primitive cannot hide as grey.

use crate::matrix::{
    DecidedBy, Expectation, ExpectedOutcome, FactExpectation, FactPresence, Matrix,
};
use conformance_contract::{
    CheckSpec, ControlOutcome, FactValue, Facts, Observation, Outcome, PlannedCheck, find_check,
};
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
    /// For an `unsupported` observation: what the matrix says of each missing fact.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub facts_expected: Vec<FactExpectation>,
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

/// Verdicts for an instance the suite could not start here for want of a tool on
/// this machine (qemu for an arm64 guest, the aarch64 Rust target): each planned
/// variant `unsupported`, saying why, so the rest of the matrix still runs and the
/// report shows the gap instead of failing on a missing cross toolchain.
pub fn not_run(planned: &[PlannedCheck], why: &str) -> Vec<Verdict> {
    planned
        .iter()
        .map(|p| Verdict {
            check: p.check.clone(),
            variant: p.variant.clone(),
            verdict: VerdictKind::Unsupported,
            reason: format!("not run: {why}"),
            expected: Expectation {
                outcome: ExpectedOutcome::Pass,
                failure: None,
                reason: "this place could not be started from this machine; nothing was observed"
                    .into(),
                reference: None,
                decided_by: DecidedBy::Default {
                    file: "the vm target (not run)".into(),
                },
                undecided: Vec::new(),
            },
            facts_expected: Vec::new(),
            observation: None,
        })
        .collect()
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
            let observed = &by_key[&(check, variant)];
            let facts_expected = match observed.as_slice() {
                [o] if o.outcome == Outcome::Unsupported => o
                    .missing_facts
                    .iter()
                    .map(|key| matrix.fact_expectation(key, facts))
                    .collect(),
                _ => Vec::new(),
            };
            judge(check, variant, observed, expected, facts_expected, facts)
        })
        .collect()
}

fn judge(
    check: &str,
    variant: &str,
    observed: &[&Observation],
    expected: Expectation,
    facts_expected: Vec<FactExpectation>,
    facts: &Facts,
) -> Verdict {
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
            Some(spec) => judge_one(o, spec, &expected, &facts_expected, facts),
        },
    };
    Verdict {
        check: check.to_string(),
        variant: variant.to_string(),
        verdict,
        reason,
        expected,
        facts_expected,
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

/// An `unsupported` observation, judged by what the matrix says of each fact the
/// probe found missing. The probe's word is checked first: each fact it names must
/// be one the variant requires and one its own facts line measured false, so a
/// probe that is wrong (or older) about a fact cannot turn a check grey.
fn judge_unsupported(
    o: &Observation,
    spec: &CheckSpec,
    facts: &Facts,
    facts_expected: &[FactExpectation],
) -> (VerdictKind, String) {
    if facts_expected.is_empty() {
        return (
            VerdictKind::Error,
            format!(
                "probe reported unsupported without naming the missing fact, so the matrix cannot say whether that is expected: {}",
                o.reason
            ),
        );
    }
    for key in &o.missing_facts {
        if !spec.requirements(&o.variant).any(|r| r == key) {
            return (
                VerdictKind::Error,
                format!(
                    "probe says {key} is missing, which {}[{}] does not require: {}",
                    spec.id, o.variant, o.reason
                ),
            );
        }
        if facts.get(key) != Some(FactValue::Bool(false)) {
            let seen = facts
                .get(key)
                .map_or_else(|| "not measured".to_string(), |v| v.to_string());
            return (
                VerdictKind::Error,
                format!(
                    "probe says {key} is missing, but its facts line says {seen}: {}",
                    o.reason
                ),
            );
        }
    }
    // Undecided and not-expected come only from a [[fact]] entry, so they always
    // have a location; where no entry decided, the reason says so itself.
    let at = |f: &FactExpectation| f.decided_by.location().unwrap_or_default();
    let expected: Vec<String> = facts_expected
        .iter()
        .filter(|f| f.presence == FactPresence::Expected)
        .map(|f| match f.decided_by.location() {
            Some(at) => format!("{} is expected here ({at}: {})", f.fact, f.reason),
            None => format!("{} is expected here ({})", f.fact, f.reason),
        })
        .collect();
    if !expected.is_empty() {
        return (
            VerdictKind::Regression,
            format!(
                "a primitive the matrix expects is missing: {}; probe: {}",
                expected.join("; "),
                o.reason
            ),
        );
    }
    let undecided: Vec<String> = facts_expected
        .iter()
        .filter(|f| f.presence == FactPresence::Undecided)
        .map(|f| {
            format!(
                "whether {} is expected depends on {}, which was not measured ({})",
                f.fact,
                f.unmeasured.join(", "),
                at(f)
            )
        })
        .collect();
    if !undecided.is_empty() {
        return (
            VerdictKind::Error,
            format!("{}; probe: {}", undecided.join("; "), o.reason),
        );
    }
    let why: Vec<String> = facts_expected
        .iter()
        .map(|f| format!("{} is not expected here ({}: {})", f.fact, at(f), f.reason))
        .collect();
    (
        VerdictKind::Unsupported,
        format!("{} ({})", o.reason, why.join("; ")),
    )
}

/// `not-scrubbed (the frame reached pod B ...)`, or the bare code of a failure
/// the catalogue does not know.
fn failure_text(spec: &CheckSpec, code: &str) -> String {
    match spec.failure(code) {
        Some(f) => format!("`{}` ({})", f.code, f.meaning),
        None => format!("`{code}`"),
    }
}

fn judge_one(
    o: &Observation,
    spec: &CheckSpec,
    expected: &Expectation,
    facts_expected: &[FactExpectation],
    facts: &Facts,
) -> (VerdictKind, String) {
    let passed = match o.outcome {
        Outcome::Error => {
            return (
                VerdictKind::Error,
                format!("probe could not run the check: {}", o.reason),
            );
        }
        Outcome::Unsupported => return judge_unsupported(o, spec, facts, facts_expected),
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
        (false, ExpectedOutcome::Fail) => match (&o.failure, &expected.failure) {
            (Some(got), Some(want)) if got == want => (
                VerdictKind::ExpectedFail,
                format!("{} (expected `{want}`: {})", o.reason, expected.reason),
            ),
            (got, want) => (
                VerdictKind::Regression,
                format!(
                    "the matrix expects failure {}, but the probe saw {}: {}",
                    want.as_deref()
                        .map_or("(none named)".to_string(), |w| failure_text(spec, w)),
                    got.as_deref().map_or_else(
                        || "a failure it did not name".to_string(),
                        |g| failure_text(spec, g)
                    ),
                    o.reason
                ),
            ),
        },
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
failure = "not-scrubbed"
reason = "CVE-2025-37959 unfixed"
reference = "https://nvd.nist.gov/vuln/detail/CVE-2025-37959"

[[fact]]
fact = "tcx"
expected = "kernel >= 6.6"
reason = "TCX links landed in 6.6"
"#;

    const SCRUB: &str = "datapath.redirect-peer.scrub";

    fn matrix() -> Matrix {
        Matrix::parse(Path::new("vm.toml"), MATRIX).unwrap()
    }

    /// The example facts, with TCX and `bpf_redirect_peer` measured absent: the
    /// facts the `unsupported` observations below name.
    fn facts(kernel: Option<(u32, u32, u32)>) -> Facts {
        let mut f = Facts::example();
        f.kernel = kernel.map(|(a, b, c)| KernelVersion::new(a, b, c));
        f.tcx = Some(false);
        f.helpers.insert("redirect_peer".into(), false);
        f
    }

    fn obs(check: &str, outcome: Outcome, control: Option<ControlOutcome>) -> Observation {
        Observation {
            check: check.into(),
            variant: "default".into(),
            outcome,
            reason: format!("observed {outcome:?}"),
            evidence: Map::new(),
            failure: (outcome == Outcome::Fail).then(|| "not-scrubbed".to_string()),
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
        assert_eq!(
            v.reason,
            "observed Fail (expected `not-scrubbed`: CVE-2025-37959 unfixed)"
        );
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
                let mut o = unsupported(&["tcx"]);
                o.control = obs(SCRUB, Outcome::Unsupported, control).control;
                let v = one(o, (6, 1, 192));
                assert_eq!(v.verdict, VerdictKind::Unsupported, "{}", v.reason);
                assert!(
                    v.reason
                        .starts_with("needs tcx here (tcx is not expected here")
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

    #[test]
    fn an_expected_failure_accepts_only_the_failure_it_names() {
        use ControlOutcome::Blocked;
        for other in [Some("not-delivered"), Some("hook-not-run"), None] {
            let mut o = obs(SCRUB, Outcome::Fail, Some(Blocked));
            o.failure = other.map(str::to_string);
            let v = one(o, UNFIXED);
            assert_eq!(
                v.verdict,
                VerdictKind::Regression,
                "{other:?}: {}",
                v.reason
            );
            assert!(
                v.reason
                    .starts_with("the matrix expects failure `not-scrubbed` ("),
                "{}",
                v.reason
            );
            match other {
                Some(code) => assert!(
                    v.reason.contains(&format!("but the probe saw `{code}` (")),
                    "{}",
                    v.reason
                ),
                None => assert!(
                    v.reason.contains("a failure it did not name"),
                    "{}",
                    v.reason
                ),
            }
            assert!(v.reason.ends_with(": observed Fail"), "{}", v.reason);
        }
    }

    fn unsupported(missing: &[&str]) -> Observation {
        Observation {
            variant: "tcx".into(),
            missing_facts: missing.iter().map(|m| m.to_string()).collect(),
            reason: format!("needs {} here", missing.join(", ")),
            ..obs("datapath.redirect-peer", Outcome::Unsupported, None)
        }
    }

    #[test]
    fn unsupported_only_where_the_matrix_does_not_expect_the_fact() {
        // 6.1 has no TCX, and the matrix expects it only from 6.6: unsupported.
        let v = one(unsupported(&["tcx"]), (6, 1, 192));
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{}", v.reason);
        assert_eq!(
            v.reason,
            "needs tcx here (tcx is not expected here (vm.toml:15 when kernel >= 6.6: TCX links landed in 6.6))"
        );
        assert_eq!(v.facts_expected.len(), 1);

        // 6.18 should have it: the same observation is a regression naming the fact.
        let v = one(unsupported(&["tcx"]), FIXED);
        assert_eq!(v.verdict, VerdictKind::Regression, "{}", v.reason);
        assert!(
            v.reason.starts_with(
                "a primitive the matrix expects is missing: tcx is expected here (vm.toml:15 when kernel >= 6.6"
            ),
            "{}",
            v.reason
        );

        // A fact without an entry in the matrix or the catalogue is expected everywhere.
        let o = unsupported(&["helper.redirect"]);
        let plan = [PlannedCheck {
            check: o.check.clone(),
            variant: o.variant.clone(),
        }];
        let mut f = facts(Some((6, 1, 192)));
        f.helpers.insert("redirect".into(), false);
        let v = evaluate(&matrix(), &f, &plan, &[o]).remove(0);
        assert_eq!(v.verdict, VerdictKind::Regression, "{}", v.reason);
        assert!(
            v.reason
                .contains("nor the catalogue has an entry for helper.redirect,"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn unsupported_that_nobody_can_judge_is_an_error() {
        let plan = [PlannedCheck {
            check: "datapath.redirect-peer".into(),
            variant: "tcx".into(),
        }];
        let v = evaluate(&matrix(), &facts(None), &plan, &[unsupported(&["tcx"])]);
        assert_eq!(v[0].verdict, VerdictKind::Error, "{}", v[0].reason);
        assert!(
            v[0].reason.starts_with(
                "whether tcx is expected depends on kernel, which was not measured (vm.toml:15"
            ),
            "{}",
            v[0].reason
        );
        let v = one(unsupported(&[]), (6, 1, 192));
        assert_eq!(v.verdict, VerdictKind::Error, "{}", v.reason);
        assert!(
            v.reason.contains("without naming the missing fact"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn the_probes_word_on_a_missing_fact_is_checked() {
        // A fact the variant does not require (the legacy variant needs no TCX).
        let mut o = unsupported(&["tcx"]);
        o.variant = "legacy".into();
        let v = one(o, (6, 1, 192));
        assert_eq!(v.verdict, VerdictKind::Error, "{}", v.reason);
        assert!(
            v.reason.starts_with(
                "probe says tcx is missing, which datapath.redirect-peer[legacy] does not require"
            ),
            "{}",
            v.reason
        );
        // A fact the facts line says is there: a backported TCX on 6.1 must not go grey.
        let plan = [PlannedCheck {
            check: "datapath.redirect-peer".into(),
            variant: "tcx".into(),
        }];
        let mut f = facts(Some((6, 1, 192)));
        f.tcx = Some(true);
        let v = evaluate(&matrix(), &f, &plan, &[unsupported(&["tcx"])]);
        assert_eq!(v[0].verdict, VerdictKind::Error, "{}", v[0].reason);
        assert!(
            v[0].reason
                .starts_with("probe says tcx is missing, but its facts line says true"),
            "{}",
            v[0].reason
        );
        f.tcx = None;
        let v = evaluate(&matrix(), &f, &plan, &[unsupported(&["tcx"])]);
        assert_eq!(v[0].verdict, VerdictKind::Error, "{}", v[0].reason);
        assert!(v[0].reason.contains("says not measured"), "{}", v[0].reason);
    }
}
