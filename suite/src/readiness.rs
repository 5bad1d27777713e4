//! Cilium feature readiness: each setting of [`conformance_contract::SETTINGS`]
//! judged from one instance's verdicts.
//!
//! | state | when |
//! |---|---|
//! | `not-ready` | a needed check variant that applies failed: `regression`, `expected-fail` (the matrix knows it is broken here: still not usable) or `unsupported` (its primitive is missing here) |
//! | `unknown` | nothing failed, but a needed check is not in this suite version, was not run (`--test`), or could not be judged (`error`); or no check covers the setting yet |
//! | `ready` | every needed check variant that applies ran and passed (`pass`, or `unexpected-pass`: it worked although the matrix expected it not to) |
//!
//! A failure decides over what is unknown: one broken primitive is enough to say
//! a setting cannot run here. Which variants apply: see the contract's
//! `readiness` module (a bare `check` drops variants judged `unsupported` when
//! another variant ran, since Cilium takes the other way then, and never covers
//! the `ipv6` variant, which only the `ipv6` setting needs by name).
//!
//! Readiness never changes a run's exit code by itself. Only the settings a
//! team's Helm values turn on ([`apply_values`], `--cilium-values`) can: one that
//! is not supported here exits 1.
//!
//! Pure functions of verdicts; the report writers render the rows.

use crate::verdict::{Verdict, VerdictKind};
use conformance_contract::catalogue::IPV6_VARIANT;
use conformance_contract::{CATALOGUE, CheckSpec, NeedRef, SETTINGS, Setting};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadinessState {
    Ready,
    NotReady,
    Unknown,
}

impl ReadinessState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadinessState::Ready => "ready",
            ReadinessState::NotReady => "not-ready",
            ReadinessState::Unknown => "unknown",
        }
    }

    /// `NOT READY`: tables.
    pub fn label(self) -> &'static str {
        match self {
            ReadinessState::Ready => "READY",
            ReadinessState::NotReady => "NOT READY",
            ReadinessState::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for ReadinessState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One needed check, judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NeedState {
    Met,
    NotMet,
    Unknown,
}

/// One variant of a needed check, with its verdict in the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeedVariant {
    pub variant: String,
    /// `check[variant]`, or `check` for a check with one way to run.
    pub name: String,
    /// `None`: the run has no verdict for it (not selected by `--test`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<VerdictKind>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Whether the judgement left it out: its primitive is missing while another
    /// variant applies, or the values' attach mode does not use it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_used: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeedResult {
    /// As the setting names it: `datapath.redirect-peer`, `env.bpffs.propagation[rshared]`.
    pub need: String,
    pub state: NeedState,
    /// One line: what passed, what failed and why, or what is unknown.
    pub reason: String,
    /// Every variant this need covers; empty when the check is not in this suite.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<NeedVariant>,
}

/// What a team's Helm values (`--cilium-values`) make of a setting they turn on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WantedOutcome {
    /// Ready here.
    Supported,
    /// Not ready because a primitive is missing, and Cilium's agent then takes
    /// the setting's fallback, which is ready here: the deployment runs, without it.
    FallsBack,
    /// Not ready here: the deployment would not work as configured (exit 1).
    NotSupported,
    Unknown,
}

impl WantedOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            WantedOutcome::Supported => "supported",
            WantedOutcome::FallsBack => "falls-back",
            WantedOutcome::NotSupported => "not-supported",
            WantedOutcome::Unknown => "unknown",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            WantedOutcome::Supported => "SUPPORTED",
            WantedOutcome::FallsBack => "FALLS BACK",
            WantedOutcome::NotSupported => "NOT SUPPORTED",
            WantedOutcome::Unknown => "UNKNOWN",
        }
    }
}

/// A setting the values turn on, and what that means here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wanted {
    /// Why the values turn it on: `kubeProxyReplacement: true (line 1)`, or the
    /// chart default it rests on.
    pub because: String,
    pub outcome: WantedOutcome,
    /// One line; for `not-supported`, the failing check and its reason.
    pub reason: String,
}

/// A setting the values turn on (from [`crate::cilium_values`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enabled {
    pub setting: &'static str,
    pub because: String,
}

/// One setting's readiness in one instance, self-contained (the setting's texts
/// are copied in, so an old report reads without this suite version's table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingReadiness {
    pub setting: String,
    pub title: String,
    pub state: ReadinessState,
    /// One line: for `not-ready`, each failing check with its verdict and reason.
    pub reason: String,
    /// The Helm values that turn it on (`bpf.hostLegacyRouting: false`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub helm: Vec<String>,
    pub needs: Vec<NeedResult>,
    pub kernel_minimum: String,
    pub agent_probe: String,
    /// What to know beside the checks, such as what they do not cover.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// The setting Cilium's agent takes when a primitive of this one is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    pub reference: String,
    /// Set when `--cilium-values` turns the setting on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wanted: Option<Wanted>,
}

impl SettingReadiness {
    /// Whether the values turn it on and it cannot run here (the gate's exit 1).
    pub fn blocks(&self) -> bool {
        self.wanted
            .as_ref()
            .is_some_and(|w| w.outcome == WantedOutcome::NotSupported)
    }
}

/// The attach modes of TC programs (TCX links, legacy clsact), as check variants.
const TCX: &str = "tcx";
const LEGACY: &str = "legacy";

/// Every setting of [`SETTINGS`] judged from one instance's verdicts, against
/// this suite's [`CATALOGUE`].
pub fn assess(verdicts: &[Verdict]) -> Vec<SettingReadiness> {
    assess_with(SETTINGS, CATALOGUE, verdicts)
}

/// [`assess`] with the settings and catalogue given (tests and fixtures pin both).
pub fn assess_with(
    settings: &[Setting],
    catalogue: &[CheckSpec],
    verdicts: &[Verdict],
) -> Vec<SettingReadiness> {
    settings
        .iter()
        .map(|s| assess_setting(s, catalogue, verdicts))
        .collect()
}

fn assess_setting(s: &Setting, catalogue: &[CheckSpec], verdicts: &[Verdict]) -> SettingReadiness {
    let mut row = SettingReadiness {
        setting: s.id.to_string(),
        title: s.title.to_string(),
        state: ReadinessState::Unknown,
        reason: String::new(),
        helm: s
            .helm
            .iter()
            .map(|h| format!("{}: {}", h.key, h.value))
            .collect(),
        needs: s
            .needs
            .iter()
            .map(|n| need_variants(n, catalogue, verdicts))
            .collect(),
        kernel_minimum: s.kernel_minimum.to_string(),
        agent_probe: s.agent_probe.to_string(),
        note: s.note.to_string(),
        fallback: s.fallback.map(str::to_string),
        reference: s.reference.to_string(),
        wanted: None,
    };
    judge_row(&mut row, None);
    row
}

/// The state and reason of a row from its needs' variants, under an attach mode
/// (`tcx`, `legacy`) when the values choose one.
fn judge_row(row: &mut SettingReadiness, attach: Option<&str>) {
    for n in &mut row.needs {
        judge_need(n, attach);
    }
    let reasons = |state: NeedState| -> Vec<&str> {
        row.needs
            .iter()
            .filter(|n| n.state == state)
            .map(|n| n.reason.as_str())
            .collect()
    };
    let (state, reason) = if row.needs.is_empty() {
        (
            ReadinessState::Unknown,
            "no check of this suite covers it yet".to_string(),
        )
    } else if row.needs.iter().any(|n| n.state == NeedState::NotMet) {
        (
            ReadinessState::NotReady,
            reasons(NeedState::NotMet).join("; "),
        )
    } else if row.needs.iter().any(|n| n.state == NeedState::Unknown) {
        (
            ReadinessState::Unknown,
            reasons(NeedState::Unknown).join("; "),
        )
    } else {
        (ReadinessState::Ready, reasons(NeedState::Met).join("; "))
    };
    row.state = state;
    row.reason = reason;
}

/// Whether a verdict says the primitive works, is broken or missing here, or
/// was not judged.
fn passed(kind: VerdictKind) -> Option<bool> {
    match kind {
        VerdictKind::Pass | VerdictKind::UnexpectedPass => Some(true),
        VerdictKind::Regression | VerdictKind::ExpectedFail | VerdictKind::Unsupported => {
            Some(false)
        }
        VerdictKind::Error => None,
    }
}

fn name_of(check: &str, variant: &str) -> String {
    if variant == "default" {
        check.to_string()
    } else {
        format!("{check}[{variant}]")
    }
}

/// The need with the variants it covers and their verdicts, not judged yet; or,
/// for a check this suite does not have, judged `unknown` for good.
fn need_variants(need: &str, catalogue: &[CheckSpec], verdicts: &[Verdict]) -> NeedResult {
    let unknown = |reason: String| NeedResult {
        need: need.to_string(),
        state: NeedState::Unknown,
        reason,
        variants: Vec::new(),
    };
    let Some(r) = NeedRef::parse(need) else {
        return unknown(format!("needs `{need}`, which is not a check id"));
    };
    let Some(spec) = catalogue.iter().find(|c| c.id == r.check) else {
        return unknown(format!(
            "needs {need}, which this suite version does not check yet"
        ));
    };
    let variants: Vec<&str> = match r.variant {
        // A bare need is judged on IPv4: the IPv6 variant only where named.
        None => spec
            .variants
            .iter()
            .copied()
            .filter(|v| *v != IPV6_VARIANT)
            .collect(),
        Some(v) if spec.variants.contains(&v) => vec![v],
        Some(_) => {
            return unknown(format!(
                "needs {need}, a variant {} does not have in this suite version (variants: {})",
                spec.id,
                spec.variants.join(", ")
            ));
        }
    };
    NeedResult {
        need: need.to_string(),
        state: NeedState::Unknown,
        reason: String::new(),
        variants: variants
            .iter()
            .map(|variant| {
                let v = verdicts
                    .iter()
                    .find(|x| x.check == spec.id && x.variant == *variant);
                NeedVariant {
                    variant: variant.to_string(),
                    name: name_of(spec.id, variant),
                    verdict: v.map(|v| v.verdict),
                    reason: v.map(|v| v.reason.clone()).unwrap_or_default(),
                    not_used: false,
                }
            })
            .collect(),
    }
}

/// Judges a need from its variants. A bare id over several variants leaves out
/// those that do not apply: one whose primitive is missing (`unsupported`) while
/// another is not, since Cilium takes that way; and, under an attach mode the
/// values choose, the other attach mode (with `tcx` Cilium still falls back to
/// legacy where TCX is missing).
fn judge_need(n: &mut NeedResult, attach: Option<&str>) {
    if n.variants.is_empty() {
        return; // not in this suite: unknown, as made
    }
    let bare = NeedRef::parse(&n.need).is_some_and(|r| r.variant.is_none()) && n.variants.len() > 1;
    let unsupported = |v: &NeedVariant| v.verdict == Some(VerdictKind::Unsupported);
    let has = |mode: &str| n.variants.iter().any(|v| v.variant == mode);
    let missing = |mode: &str| {
        n.variants
            .iter()
            .any(|v| v.variant == mode && unsupported(v))
    };
    let attach = attach.filter(|_| bare && has(TCX) && has(LEGACY));
    // With `tcx`, legacy is used only where TCX is missing.
    let skip_mode = match attach {
        Some(TCX) if !missing(TCX) => Some(LEGACY),
        Some(TCX) | None => None,
        Some(_) => Some(TCX),
    };
    let any_applies = n
        .variants
        .iter()
        .any(|v| Some(v.variant.as_str()) != skip_mode && !unsupported(v));
    for v in &mut n.variants {
        v.not_used =
            bare && (Some(v.variant.as_str()) == skip_mode || (unsupported(v) && any_applies));
    }
    let mut failed = Vec::new();
    let mut unjudged = Vec::new();
    let mut ok = Vec::new();
    let mut skipped = Vec::new();
    for v in &n.variants {
        match v.verdict {
            _ if v.not_used => skipped.push(v),
            None => unjudged.push(format!("needs {}, which this run did not run", v.name)),
            Some(kind) => match passed(kind) {
                Some(true) => ok.push(v.name.as_str()),
                Some(false) => failed.push(format!("{} {}: {}", v.name, kind.label(), v.reason)),
                None => unjudged.push(format!(
                    "{} ERROR (the suite could not judge it): {}",
                    v.name, v.reason
                )),
            },
        }
    }
    (n.state, n.reason) = if !failed.is_empty() {
        (NeedState::NotMet, failed.join("; "))
    } else if !unjudged.is_empty() {
        (NeedState::Unknown, unjudged.join("; "))
    } else {
        let mut reason = format!("{} passed", ok.join(", "));
        let missing: Vec<&str> = skipped
            .iter()
            .filter(|v| unsupported(v) && Some(v.variant.as_str()) != skip_mode)
            .map(|v| v.name.as_str())
            .collect();
        if !missing.is_empty() {
            reason.push_str(&format!(
                " ({} unsupported here: Cilium takes the other way)",
                missing.join(", ")
            ));
        }
        if let (Some(mode), Some(skip)) = (attach, skip_mode)
            && skipped.iter().any(|v| v.variant == skip)
        {
            reason.push_str(&format!(
                " ({skip} not used: the values attach with {mode})"
            ));
        }
        (NeedState::Met, reason)
    };
}

/// Judges every row again under the attach mode the values choose (`tcx` or
/// `legacy`: a bare check over both attach modes counts the one the deployment
/// uses), then marks the settings the values turn on with what that means here.
pub fn apply_values(rows: &mut [SettingReadiness], enabled: &[Enabled], attach: &str) {
    for row in rows.iter_mut() {
        judge_row(row, Some(attach));
    }
    let states: Vec<(String, ReadinessState, String)> = rows
        .iter()
        .map(|r| (r.setting.clone(), r.state, r.reason.clone()))
        .collect();
    for row in rows.iter_mut() {
        row.wanted = enabled
            .iter()
            .find(|e| e.setting == row.setting)
            .map(|e| Wanted {
                because: e.because.clone(),
                ..wanted(row, &states)
            });
    }
}

fn wanted(row: &SettingReadiness, states: &[(String, ReadinessState, String)]) -> Wanted {
    let outcome = |outcome, reason: String| Wanted {
        because: String::new(),
        outcome,
        reason,
    };
    match row.state {
        ReadinessState::Ready => outcome(WantedOutcome::Supported, "ready here".to_string()),
        ReadinessState::Unknown => outcome(WantedOutcome::Unknown, row.reason.clone()),
        ReadinessState::NotReady => {
            // Missing, not broken: every failing verdict is `unsupported`, which is
            // what the agent's own probe sees, so it takes the fallback.
            let only_missing = row
                .needs
                .iter()
                .filter(|n| n.state == NeedState::NotMet)
                .all(|n| {
                    n.variants.iter().filter(|v| !v.not_used).all(|v| {
                        !matches!(
                            v.verdict,
                            Some(VerdictKind::Regression | VerdictKind::ExpectedFail)
                        )
                    })
                });
            let fallback = row
                .fallback
                .as_deref()
                .filter(|_| only_missing)
                .map(|f| (f, states.iter().find(|(id, _, _)| id == f)));
            match fallback {
                None => outcome(WantedOutcome::NotSupported, row.reason.clone()),
                Some((f, Some((_, ReadinessState::Ready, _)))) => outcome(
                    WantedOutcome::FallsBack,
                    format!(
                        "{}; Cilium's agent falls back to {f}, which is ready here",
                        row.reason
                    ),
                ),
                Some((f, Some((_, ReadinessState::NotReady, why)))) => outcome(
                    WantedOutcome::NotSupported,
                    format!(
                        "{}; Cilium's agent falls back to {f}, which is not ready either: {why}",
                        row.reason
                    ),
                ),
                Some((f, Some((_, ReadinessState::Unknown, why)))) => outcome(
                    WantedOutcome::Unknown,
                    format!(
                        "{}; Cilium's agent falls back to {f}, whose readiness is unknown: {why}",
                        row.reason
                    ),
                ),
                Some((f, None)) => outcome(
                    WantedOutcome::Unknown,
                    format!(
                        "{}; Cilium's agent falls back to {f}, which this report does not judge",
                        row.reason
                    ),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::{DecidedBy, Expectation, ExpectedOutcome};
    use conformance_contract::{Failure, HelmValue};

    const FAIL: Failure = Failure {
        code: "not-delivered",
        meaning: "lost",
    };

    fn spec(id: &'static str, variants: &'static [&'static str]) -> CheckSpec {
        let mut s = CATALOGUE[0];
        s.id = id;
        s.variants = variants;
        s.requires = &[];
        s.failures = std::slice::from_ref(&FAIL);
        s
    }

    /// A catalogue pinned for the tests: `planned.check` is not in it.
    fn catalogue() -> Vec<CheckSpec> {
        vec![
            spec("attach", &["tcx", "legacy"]),
            spec("route", &["default"]),
            spec("mount", &["rshared", "private"]),
        ]
    }

    fn setting(
        id: &'static str,
        needs: &'static [&'static str],
        fallback: Option<&'static str>,
    ) -> Setting {
        Setting {
            id,
            title: "a setting",
            helm: &[HelmValue {
                key: "bpf.x",
                value: "true",
            }],
            needs,
            kernel_minimum: "5.10",
            agent_probe: "HaveX",
            note: "",
            fallback,
            reference: "https://example.invalid/",
        }
    }

    fn v(check: &str, variant: &str, kind: VerdictKind, reason: &str) -> Verdict {
        Verdict {
            check: check.into(),
            variant: variant.into(),
            verdict: kind,
            reason: reason.into(),
            expected: Expectation {
                outcome: ExpectedOutcome::Pass,
                failure: None,
                reason: "r".into(),
                reference: None,
                decided_by: DecidedBy::Entry {
                    file: "vm.toml".into(),
                    line: 1,
                },
                undecided: Vec::new(),
            },
            facts_expected: Vec::new(),
            observation: None,
        }
    }

    fn one(needs: &'static [&'static str], verdicts: &[Verdict]) -> SettingReadiness {
        assess_with(&[setting("s", needs, None)], &catalogue(), verdicts).remove(0)
    }

    use VerdictKind::*;

    #[test]
    fn ready_when_every_needed_variant_passed() {
        let verdicts = [
            v("attach", "tcx", Pass, "ok"),
            v(
                "attach",
                "legacy",
                UnexpectedPass,
                "ok although expected not to",
            ),
            v("route", "default", Pass, "ok"),
        ];
        let r = one(&["attach", "route"], &verdicts);
        assert_eq!(r.state, ReadinessState::Ready, "{}", r.reason);
        assert_eq!(r.reason, "attach[tcx], attach[legacy] passed; route passed");
        assert_eq!(r.helm, ["bpf.x: true"]);
        assert_eq!(r.needs[0].variants.len(), 2);
        assert_eq!(r.needs[0].variants[1].name, "attach[legacy]");
    }

    #[test]
    fn a_bare_need_is_judged_on_ipv4_and_the_ipv6_variant_only_by_name() {
        let cat = vec![spec("deliver", &["tcx", "legacy", "ipv6"])];
        let verdicts = [
            v("deliver", "tcx", Pass, "ok"),
            v("deliver", "legacy", Pass, "ok"),
            v("deliver", "ipv6", Regression, "0/5 over IPv6"),
        ];
        let rows = assess_with(
            &[
                setting("v4", &["deliver"], None),
                setting("v6", &["deliver[ipv6]"], None),
            ],
            &cat,
            &verdicts,
        );
        assert_eq!(rows[0].state, ReadinessState::Ready, "{}", rows[0].reason);
        assert_eq!(rows[0].needs[0].variants.len(), 2);
        assert_eq!(rows[1].state, ReadinessState::NotReady);
        assert_eq!(rows[1].reason, "deliver[ipv6] REGRESSION: 0/5 over IPv6");
    }

    #[test]
    fn not_ready_names_the_failing_check_its_verdict_and_reason() {
        for kind in [Regression, ExpectedFail, Unsupported] {
            let verdicts = [
                v("attach", "tcx", Pass, "ok"),
                v("attach", "legacy", Pass, "ok"),
                v("route", "default", kind, "0/5 reached the socket"),
            ];
            let r = one(&["attach", "route"], &verdicts);
            assert_eq!(r.state, ReadinessState::NotReady, "{kind}: {}", r.reason);
            assert_eq!(
                r.reason,
                format!("route {}: 0/5 reached the socket", kind.label())
            );
            assert_eq!(r.needs[0].state, NeedState::Met);
            assert_eq!(r.needs[1].state, NeedState::NotMet);
        }
        // A failure decides over what is unknown.
        let verdicts = [v("route", "default", Regression, "lost")];
        let r = one(&["planned.check", "route"], &verdicts);
        assert_eq!(r.state, ReadinessState::NotReady);
        assert_eq!(r.reason, "route REGRESSION: lost");
    }

    #[test]
    fn unknown_names_what_was_not_checked() {
        let pass = [v("route", "default", Pass, "ok")];
        let r = one(&["planned.check", "route"], &pass);
        assert_eq!(r.state, ReadinessState::Unknown);
        assert_eq!(
            r.reason,
            "needs planned.check, which this suite version does not check yet"
        );
        // Filtered out by --test.
        let r = one(&["attach[tcx]", "route"], &pass);
        assert_eq!(r.state, ReadinessState::Unknown);
        assert_eq!(r.reason, "needs attach[tcx], which this run did not run");
        // The suite could not judge it.
        let r = one(
            &["route"],
            &[v(
                "route",
                "default",
                Error,
                "probe produced no observation",
            )],
        );
        assert_eq!(r.state, ReadinessState::Unknown);
        assert_eq!(
            r.reason,
            "route ERROR (the suite could not judge it): probe produced no observation"
        );
        // A variant the check does not have, and nothing needed at all.
        let r = one(&["route[tcx]"], &pass);
        assert_eq!(r.state, ReadinessState::Unknown);
        assert!(
            r.reason.contains("a variant route does not have"),
            "{}",
            r.reason
        );
        let r = one(&[], &pass);
        assert_eq!(
            (r.state, r.reason.as_str()),
            (
                ReadinessState::Unknown,
                "no check of this suite covers it yet"
            )
        );
    }

    #[test]
    fn an_unsupported_variant_does_not_apply_when_another_does() {
        let verdicts = [
            v("attach", "tcx", Unsupported, "needs tcx here"),
            v("attach", "legacy", Pass, "ok"),
        ];
        let r = one(&["attach"], &verdicts);
        assert_eq!(r.state, ReadinessState::Ready, "{}", r.reason);
        assert_eq!(
            r.reason,
            "attach[legacy] passed (attach[tcx] unsupported here: Cilium takes the other way)"
        );
        // Named explicitly, the variant applies.
        let r = one(&["attach[tcx]"], &verdicts);
        assert_eq!(r.state, ReadinessState::NotReady);
        assert_eq!(r.reason, "attach[tcx] UNSUPPORTED: needs tcx here");
        // No variant left: not ready.
        let all = [
            v("attach", "tcx", Unsupported, "needs tcx"),
            v("attach", "legacy", Unsupported, "needs clsact"),
        ];
        let r = one(&["attach"], &all);
        assert_eq!(r.state, ReadinessState::NotReady);
        assert_eq!(
            r.reason,
            "attach[tcx] UNSUPPORTED: needs tcx; attach[legacy] UNSUPPORTED: needs clsact"
        );
        // An unsupported variant does not hide a broken one.
        let broken = [
            v("attach", "tcx", Unsupported, "needs tcx"),
            v("attach", "legacy", Regression, "lost"),
        ];
        assert_eq!(one(&["attach"], &broken).state, ReadinessState::NotReady);
        // Nor one that did not run.
        let partial = [v("attach", "tcx", Unsupported, "needs tcx")];
        let r = one(&["attach"], &partial);
        assert_eq!(r.state, ReadinessState::Unknown);
        assert_eq!(r.reason, "needs attach[legacy], which this run did not run");
    }

    fn enabled(setting: &'static str) -> Enabled {
        Enabled {
            setting,
            because: format!("{setting}: true (line 1)"),
        }
    }

    #[test]
    fn values_mark_what_they_turn_on() {
        let settings = [
            setting("tcx", &["attach[tcx]"], Some("legacy")),
            setting("legacy", &["attach[legacy]"], None),
            setting("routing", &["route"], None),
            setting("later", &["planned.check"], None),
        ];
        let judge = |tcx: VerdictKind, legacy: VerdictKind| {
            let verdicts = [
                v("attach", "tcx", tcx, "tcx says"),
                v("attach", "legacy", legacy, "legacy says"),
                v("route", "default", Regression, "lost at the host"),
            ];
            let mut rows = assess_with(&settings, &catalogue(), &verdicts);
            apply_values(
                &mut rows,
                &[enabled("tcx"), enabled("routing"), enabled("later")],
                "tcx",
            );
            rows
        };
        let rows = judge(Pass, Pass);
        let w = |i: usize| rows[i].wanted.clone().map(|w| (w.outcome, w.reason));
        assert_eq!(
            w(0),
            Some((WantedOutcome::Supported, "ready here".to_string()))
        );
        assert_eq!(rows[1].wanted, None, "not turned on");
        assert_eq!(
            w(2),
            Some((
                WantedOutcome::NotSupported,
                "route REGRESSION: lost at the host".to_string()
            ))
        );
        assert!(rows[2].blocks() && !rows[0].blocks());
        assert_eq!(
            rows[2].wanted.as_ref().unwrap().because,
            "routing: true (line 1)"
        );
        assert_eq!(w(3).unwrap().0, WantedOutcome::Unknown);

        // TCX missing here: the agent takes legacy TC, which works.
        let rows = judge(Unsupported, Pass);
        let got = rows[0].wanted.clone().unwrap();
        assert_eq!(got.outcome, WantedOutcome::FallsBack, "{}", got.reason);
        assert_eq!(
            got.reason,
            "attach[tcx] UNSUPPORTED: tcx says; Cilium's agent falls back to legacy, which is ready here"
        );
        // ... and when legacy is broken too, nothing works.
        let rows = judge(Unsupported, Regression);
        let got = rows[0].wanted.clone().unwrap();
        assert_eq!(got.outcome, WantedOutcome::NotSupported);
        assert!(
            got.reason
                .ends_with("which is not ready either: attach[legacy] REGRESSION: legacy says"),
            "{}",
            got.reason
        );
        // TCX there but broken: the agent's probe passes, so no fallback (nix-2hd).
        let rows = judge(Regression, Pass);
        assert_eq!(
            rows[0].wanted.as_ref().unwrap().outcome,
            WantedOutcome::NotSupported
        );
    }

    /// nix-2hd: TCX attaches but its "-> stack" loses the packets, legacy TC works.
    /// A bare check over both attach modes counts the one the values use.
    #[test]
    fn the_values_attach_mode_decides_which_variant_counts() {
        let settings = [setting("base", &["attach", "route"], None)];
        let judge = |tcx: VerdictKind, legacy: VerdictKind, attach: Option<&str>| {
            let verdicts = [
                v("attach", "tcx", tcx, "tcx says"),
                v("attach", "legacy", legacy, "legacy says"),
                v("route", "default", Pass, "ok"),
            ];
            let mut rows = assess_with(&settings, &catalogue(), &verdicts);
            if let Some(mode) = attach {
                apply_values(&mut rows, &[enabled("base")], mode);
            }
            rows.remove(0)
        };
        // Without values: every attach mode counts.
        let r = judge(Regression, Pass, None);
        assert_eq!(r.state, ReadinessState::NotReady);
        assert_eq!(r.reason, "attach[tcx] REGRESSION: tcx says");
        // bpf.enableTCX=false: only legacy is used, and it works.
        let r = judge(Regression, Pass, Some("legacy"));
        assert_eq!(r.state, ReadinessState::Ready, "{}", r.reason);
        assert_eq!(
            r.reason,
            "attach[legacy] passed (tcx not used: the values attach with legacy); route passed"
        );
        assert!(r.needs[0].variants[0].not_used);
        assert_eq!(r.wanted.unwrap().outcome, WantedOutcome::Supported);
        // bpf.enableTCX=true: TCX is what runs, broken.
        let r = judge(Regression, Pass, Some("tcx"));
        assert_eq!(r.state, ReadinessState::NotReady);
        assert!(r.blocks());
        // ... and a broken legacy does not matter while TCX works.
        let r = judge(Pass, Regression, Some("tcx"));
        assert_eq!(r.state, ReadinessState::Ready, "{}", r.reason);
        assert_eq!(
            r.reason,
            "attach[tcx] passed (legacy not used: the values attach with tcx); route passed"
        );
        // With TCX missing the agent falls back to legacy, so legacy counts.
        let r = judge(Unsupported, Pass, Some("tcx"));
        assert_eq!(r.state, ReadinessState::Ready, "{}", r.reason);
        assert_eq!(
            r.reason,
            "attach[legacy] passed (attach[tcx] unsupported here: Cilium takes the other way); route passed"
        );
        let r = judge(Unsupported, Regression, Some("tcx"));
        assert_eq!(r.state, ReadinessState::NotReady);
        assert_eq!(r.reason, "attach[legacy] REGRESSION: legacy says");
        // Legacy asked for and missing: nothing to fall back to.
        let r = judge(Pass, Unsupported, Some("legacy"));
        assert_eq!(r.state, ReadinessState::NotReady);
        assert_eq!(r.reason, "attach[legacy] UNSUPPORTED: legacy says");
    }

    #[test]
    fn rows_round_trip_and_the_shipped_table_assesses() {
        let rows = assess(&[v("datapath.pod-to-host", "default", Pass, "ok")]);
        assert_eq!(rows.len(), SETTINGS.len());
        let json = serde_json::to_string(&rows).unwrap();
        let back: Vec<SettingReadiness> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rows);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v[0]["state"], "unknown");
        assert!(v[0].get("wanted").is_none());
    }
}
