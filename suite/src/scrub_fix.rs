//! "CVE-2025-37959 scrub fix: present / absent / unknown", one line per instance,
//! derived from what the scrub checks observed, never from the kernel's version:
//! a vendor kernel with the backport at another number, or one that dropped it,
//! is told by its packets.
//!
//! A check counts only when it ran to a conclusion its control vouches for (the
//! control `blocked`: the witness can see the state carried) and no fault was
//! injected: a pass says the kernel reset that state, its CVE failure says it
//! did not. Anything else (not run, unsupported, another failure, a
//! leaked control) says nothing either way.

use crate::verdict::Verdict;
use conformance_contract::ControlOutcome;
use serde::{Deserialize, Serialize};

/// The checks that observe a reset, what each observes, and the failure that
/// means the state was carried instead.
const WITNESSES: &[(&str, &str, &str)] = &[
    ("datapath.redirect-peer.scrub", "pkt_type", "not-scrubbed"),
    (
        "datapath.redirect-peer.scrub.conntrack",
        "conntrack",
        "conntrack-carried",
    ),
    ("datapath.redirect-peer.scrub.dst", "dst", "dst-carried"),
    (
        "datapath.redirect-peer.scrub.skb-ext",
        "skb extensions",
        "ext-carried",
    ),
    (
        "datapath.redirect-peer.scrub.xfrm",
        "the IPsec secpath",
        "secpath-carried",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScrubFixState {
    Present,
    Absent,
    Unknown,
}

/// The line and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubFix {
    pub state: ScrubFixState,
    pub because: String,
}

impl ScrubFix {
    /// `present` / `absent` / `unknown`.
    pub fn word(&self) -> &'static str {
        match self.state {
            ScrubFixState::Present => "present",
            ScrubFixState::Absent => "absent",
            ScrubFixState::Unknown => "unknown",
        }
    }

    /// The report's line: `CVE-2025-37959 scrub fix: present (reset observed: ...)`.
    pub fn line(&self) -> String {
        format!("{LABEL}: {} ({})", self.word(), self.because)
    }
}

pub const LABEL: &str = "CVE-2025-37959 scrub fix";

impl Default for ScrubFix {
    fn default() -> Self {
        Self {
            state: ScrubFixState::Unknown,
            because: "no scrub check ran to a conclusion".into(),
        }
    }
}

/// Judges one instance's verdicts.
pub fn assess(verdicts: &[Verdict]) -> ScrubFix {
    let mut reset = Vec::new();
    let mut carried = Vec::new();
    for (check, what, failure) in WITNESSES {
        let Some(obs) = verdicts
            .iter()
            .find(|v| v.check == *check)
            .and_then(|v| v.observation.as_ref())
        else {
            continue;
        };
        let vouched = obs
            .control
            .as_ref()
            .is_some_and(|c| c.outcome == ControlOutcome::Blocked);
        if !vouched || obs.evidence.contains_key("injected_fault") {
            continue;
        }
        match (obs.outcome, obs.failure.as_deref()) {
            (conformance_contract::Outcome::Pass, _) => reset.push(*what),
            (conformance_contract::Outcome::Fail, Some(f)) if f == *failure => carried.push(*what),
            _ => {}
        }
    }
    let list = |v: &[&str]| v.join(", ");
    match (reset.is_empty(), carried.is_empty()) {
        (false, true) => ScrubFix {
            state: ScrubFixState::Present,
            because: format!("bpf_redirect_peer reset {}", list(&reset)),
        },
        (true, false) => ScrubFix {
            state: ScrubFixState::Absent,
            because: format!("bpf_redirect_peer did not reset {}", list(&carried)),
        },
        (false, false) => ScrubFix {
            state: ScrubFixState::Unknown,
            because: format!(
                "mixed: bpf_redirect_peer reset {}, but not {}",
                list(&reset),
                list(&carried)
            ),
        },
        (true, true) => ScrubFix::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::{DecidedBy, Expectation, ExpectedOutcome};
    use crate::verdict::VerdictKind;
    use conformance_contract::{Control, Observation, Outcome};

    fn verdict(
        check: &str,
        outcome: Outcome,
        failure: Option<&str>,
        control: ControlOutcome,
    ) -> Verdict {
        Verdict {
            check: check.into(),
            variant: "default".into(),
            verdict: VerdictKind::Pass,
            reason: String::new(),
            expected: Expectation {
                outcome: ExpectedOutcome::Pass,
                failure: None,
                reason: String::new(),
                reference: None,
                decided_by: DecidedBy::Default {
                    file: "test".into(),
                },
                undecided: Vec::new(),
            },
            facts_expected: Vec::new(),
            observation: Some(Observation {
                check: check.into(),
                variant: "default".into(),
                outcome,
                reason: String::new(),
                evidence: Default::default(),
                failure: failure.map(Into::into),
                missing_facts: Vec::new(),
                control: Some(Control {
                    description: String::new(),
                    outcome: control,
                    reason: String::new(),
                    evidence: Default::default(),
                }),
                duration_ms: 0.0,
            }),
        }
    }

    #[test]
    fn passes_vouched_by_their_controls_say_present() {
        let v = [
            verdict(
                "datapath.redirect-peer.scrub.conntrack",
                Outcome::Pass,
                None,
                ControlOutcome::Blocked,
            ),
            verdict(
                "datapath.redirect-peer.scrub.dst",
                Outcome::Pass,
                None,
                ControlOutcome::Blocked,
            ),
        ];
        let fix = assess(&v);
        assert_eq!(fix.state, ScrubFixState::Present);
        assert_eq!(
            fix.line(),
            "CVE-2025-37959 scrub fix: present (bpf_redirect_peer reset conntrack, dst)"
        );
    }

    #[test]
    fn the_cve_failures_say_absent_and_other_failures_say_nothing() {
        let v = [
            verdict(
                "datapath.redirect-peer.scrub.conntrack",
                Outcome::Fail,
                Some("conntrack-carried"),
                ControlOutcome::Blocked,
            ),
            verdict(
                "datapath.redirect-peer.scrub.dst",
                Outcome::Fail,
                Some("not-delivered"),
                ControlOutcome::Blocked,
            ),
        ];
        let fix = assess(&v);
        assert_eq!(fix.state, ScrubFixState::Absent);
        assert_eq!(fix.because, "bpf_redirect_peer did not reset conntrack");
    }

    #[test]
    fn a_blind_control_or_no_conclusion_is_unknown() {
        let leaked = [verdict(
            "datapath.redirect-peer.scrub.skb-ext",
            Outcome::Pass,
            None,
            ControlOutcome::Leaked,
        )];
        assert_eq!(assess(&leaked).state, ScrubFixState::Unknown);
        assert_eq!(assess(&[]).state, ScrubFixState::Unknown);
        let mixed = [
            verdict(
                "datapath.redirect-peer.scrub",
                Outcome::Pass,
                None,
                ControlOutcome::Blocked,
            ),
            verdict(
                "datapath.redirect-peer.scrub.dst",
                Outcome::Fail,
                Some("dst-carried"),
                ControlOutcome::Blocked,
            ),
        ];
        let fix = assess(&mixed);
        assert_eq!(fix.state, ScrubFixState::Unknown);
        assert_eq!(
            fix.because,
            "mixed: bpf_redirect_peer reset pkt_type, but not dst"
        );
    }
}
