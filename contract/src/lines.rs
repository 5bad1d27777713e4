//! The JSON lines a probe prints on stdout, in order:
//! one `facts`, one `plan`, one `observation` per planned (check, variant), one `done`.
//! A stream without `done`, or with fewer observations than planned, was truncated.

use crate::Facts;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `Facts` makes the first variant large; lines are built once each and never
/// stored in bulk, so boxing it would only add noise at every use.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Line {
    Facts {
        schema: u32,
        probe_version: String,
        run_id: String,
        facts: Facts,
    },
    Plan(Plan),
    Observation(Observation),
    Done(Done),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    pub checks: Vec<PlannedCheck>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlannedCheck {
    pub check: String,
    pub variant: String,
}

/// What one check did in one variant (attach mode), with its negative control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Observation {
    pub check: String,
    /// Attach mode or path (`tcx`, `legacy`) or `default` for checks with one way to run.
    pub variant: String,
    pub outcome: Outcome,
    /// One line a human can act on: what was sent, what arrived, what broke.
    pub reason: String,
    /// Counters, captured skb metadata, addresses, kernel counters: whatever proves the outcome.
    pub evidence: Map<String, Value>,
    /// For `fail`: which of the check's named failures (`CheckSpec::failures`) this
    /// was, so a matrix that expects one failure never accepts another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// For `unsupported`: the boolean facts the variant needs that are false here,
    /// by key (`tcx`, `helper.redirect_peer`); the suite asks the matrix whether
    /// each absence is expected. An unmeasured fact is an `error`, never listed here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_facts: Vec<String>,
    /// The same traffic with the decisive step broken; absent only for `unsupported`
    /// and for `error` before the control could run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<Control>,
    pub duration_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Traffic took the path the check describes.
    Pass,
    /// Traffic was sent and did not take the path.
    Fail,
    /// A precondition fact is missing (`tcx` on 6.1): the check did not run.
    Unsupported,
    /// The probe could not run the check (setup failed): says nothing about the datapath.
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Control {
    /// What was broken on purpose (`program returns TC_ACT_SHOT`).
    pub description: String,
    pub outcome: ControlOutcome,
    pub reason: String,
    pub evidence: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ControlOutcome {
    /// The broken path did not deliver: the check can fail.
    Blocked,
    /// The broken path delivered anyway: the check is blind, its verdict is `error`.
    Leaked,
    /// The control could not run.
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Done {
    pub observations: usize,
    pub duration_ms: f64,
}

impl Line {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("lines serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observation_round_trips_with_kind_tag() {
        let mut evidence = Map::new();
        evidence.insert("received".into(), 5.into());
        let line = Line::Observation(Observation {
            check: "datapath.redirect-peer".into(),
            variant: "tcx".into(),
            outcome: Outcome::Pass,
            reason: "5/5 delivered".into(),
            evidence: evidence.clone(),
            failure: None,
            missing_facts: Vec::new(),
            control: Some(Control {
                description: "redirect to a wrong ifindex".into(),
                outcome: ControlOutcome::Blocked,
                reason: "0/5 delivered".into(),
                evidence,
            }),
            duration_ms: 12.5,
        });
        let json = line.to_json();
        assert!(
            json.starts_with(r#"{"kind":"observation","check":"datapath.redirect-peer""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Line>(&json).unwrap(), line);
    }
}
