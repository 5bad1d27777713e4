//! Decodes one pasted `cilium monitor` / `cilium-dbg monitor` line field by field.
//!
//! [`explain`] takes the text of one line and returns an [`Explanation`]: the kind of
//! event, every field with what it means, whether its value is Cilium's normal
//! encoding ([`Judgement::Normal`]: a placeholder or default that is evidence of
//! nothing) or carries information about the packet ([`Judgement::Informative`]),
//! and which check of this suite tests the step the line shows. [`render_text`] and
//! [`render_json`] turn it into terminal text and one JSON object. No I/O here.
//!
//! The line shapes and field meanings come from Cilium's own source (read, not
//! copied; paths are relative to the cilium/cilium repository):
//!
//! - traces: `pkg/monitor/datapath_trace.go` (`DumpInfo` prints `<summary> flow %#x ,
//!   identity A->B state S ifindex I orig-ip IP: <packet>`, `DumpVerbose` prints
//!   `CPU NN: MARK %#x FROM N <obs-point>: N bytes (N captured), state S, ...`),
//!   `pkg/monitor/api/types.go` (observation point names), `bpf/lib/trace.h`
//!   (what the datapath fills in), `bpf/lib/notify.h` and
//!   `bpf/include/bpf/ctx/skb.h` (`hash` is `ctx->hash`, never recalculated);
//! - drops: `pkg/monitor/datapath_drop.go`, `bpf/lib/drop.h`, `pkg/monitor/api/drop.go`
//!   and `bpf/lib/drop_reasons.h` (reason codes), `pkg/monitor/api/files.go` (file ids);
//! - debug messages and captures: `pkg/monitor/datapath_debug.go`;
//! - policy verdicts: `pkg/monitor/datapath_policy.go`;
//! - identities: `pkg/identity/numericidentity.go`;
//! - the packet summary after the colon: `pkg/monitor/dissect.go` (`GetConnectionSummary`).
//!
//! It also reads the kernel's own drop line, the `skb:kfree_skb` tracepoint
//! (`include/trace/events/skb.h`, reasons in `include/net/dropreason-core.h`) and a
//! `pwru` line naming `SKB_DROP_REASON_*`, because the step after Cilium's program
//! (the stack dropping an OTHERHOST frame, a full socket) is where this suite's
//! checks look.
//!
//! Formats of several Cilium versions are accepted: with and without `orig-ip`
//! (trace notification v0), with and without `ifindex`/`file` in drops, the
//! ` , identity` spacing of 1.12+, and hand-copied lines that put commas between
//! fields (`flow 0x0, ifindex 0, orig-ip 0.0.0.0`). A line that is none of these is an
//! [`ExplainError`] whose message says what was expected.

mod checks;
mod codes;
mod debug;
mod drop;
mod fields;
mod kernel;
mod lex;
mod policy;
mod render;
mod trace;

#[cfg(test)]
mod tests;

use serde::Serialize;

pub use render::{render_json, render_text};

/// What kind of event the line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineKind {
    /// A trace notification: a packet passed an observation point.
    Trace,
    /// A drop notification: Cilium's program dropped the packet.
    Drop,
    /// A policy verdict notification.
    PolicyVerdict,
    /// A debug capture: a packet at a named debug point (`-> 0: ...`, `Delivery to ifindex N`).
    DebugCapture,
    /// A debug message (`CPU NN: MARK ... FROM N DEBUG: ...`).
    DebugMessage,
    /// The kernel freed the packet with a drop reason (`skb:kfree_skb`, `pwru`).
    KernelDrop,
}

impl LineKind {
    pub fn describe(self) -> &'static str {
        match self {
            LineKind::Trace => "trace notification",
            LineKind::Drop => "drop notification",
            LineKind::PolicyVerdict => "policy verdict notification",
            LineKind::DebugCapture => "debug capture",
            LineKind::DebugMessage => "debug message",
            LineKind::KernelDrop => "kernel drop",
        }
    }
}

/// Whether a field's value is evidence of anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Judgement {
    /// Cilium's (or the kernel's) normal encoding: a placeholder, a default or a
    /// value every healthy event of this kind carries. Not a sign of trouble.
    Normal,
    /// The value says something about this packet, its path or a decision.
    Informative,
}

impl Judgement {
    pub fn as_str(self) -> &'static str {
        match self {
            Judgement::Normal => "normal",
            Judgement::Informative => "informative",
        }
    }
}

/// One decoded field of the line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    /// The field as the line names it (`flow`, `ifindex`, `orig-ip`), or a
    /// descriptive name for an unlabelled part (`observation point`, `packet`).
    pub name: String,
    /// The value as printed.
    pub value: String,
    /// What the field is, wherever it appears.
    pub meaning: String,
    pub judgement: Judgement,
    /// What this particular value says.
    pub reading: String,
    /// The source file that defines the field (Cilium's unless it says otherwise).
    pub source: &'static str,
}

/// How a check relates to the step a line shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relation {
    /// The check tests the kernel primitive this step relies on.
    Tests,
    /// The check tests a neighbouring step, or this one under a condition the line
    /// does not settle.
    Related,
}

/// A check of this suite's catalogue tied to the line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckLink {
    /// A `CATALOGUE` id (`conformance_contract::catalogue`).
    pub id: &'static str,
    pub relation: Relation,
    /// Why this check, for this line.
    pub why: String,
}

/// A decoded line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub kind: LineKind,
    /// Which output it is: `cilium monitor` (default), `cilium monitor -v`, a
    /// hand-copied fragment, the kernel tracepoint, `pwru`.
    pub format: &'static str,
    /// The line as given (trimmed).
    pub line: String,
    /// One sentence: what the line says happened.
    pub summary: String,
    pub fields: Vec<Field>,
    /// Checks of this suite for the step the line shows; empty when none matches,
    /// and then [`Explanation::no_check`] says why.
    pub checks: Vec<CheckLink>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_check: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Source files the decoding rests on.
    pub sources: Vec<&'static str>,
}

impl Explanation {
    /// The first field with this name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// `true` when a check of this id is linked with this relation.
    pub fn links(&self, id: &str, relation: Relation) -> bool {
        self.checks
            .iter()
            .any(|c| c.id == id && c.relation == relation)
    }
}

/// Why a line could not be explained. The message is one line and says what was
/// expected; callers exit 2 (bad input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    #[error(
        "empty line: expected one line of `cilium monitor` output, e.g. `-> stack flow 0x0 , identity 1234->host state new ifindex 0 orig-ip 0.0.0.0: 10.0.0.1:5000 -> 10.0.0.2:6000 udp`"
    )]
    Empty,
    /// The line is not any kind this module knows.
    #[error("not a Cilium monitor line: {0}")]
    Unrecognized(String),
    /// The line starts like a known kind but a field is missing or malformed.
    #[error("malformed {kind} line: {expected}", kind = .kind.describe())]
    Malformed { kind: LineKind, expected: String },
}

pub(crate) fn malformed(kind: LineKind, expected: impl Into<String>) -> ExplainError {
    ExplainError::Malformed {
        kind,
        expected: expected.into(),
    }
}

/// What a line is expected to look like, for the error of an unknown one.
const EXPECTED: &str = "expected a trace (`-> stack flow 0x… , identity A->B state S ifindex I orig-ip IP: …`), a drop (`xx drop (REASON) flow 0x… to endpoint N, ifindex N, file F:L, , identity A->B: …`), a policy verdict (`Policy verdict log: flow 0x… …`), a debug capture (`-> IFNAME: …`) or a `cilium monitor -v` line (`CPU NN: MARK 0x… FROM N to-stack|DROP|DEBUG: …`)";

/// Decodes one line of `cilium monitor` / `cilium-dbg monitor` output.
pub fn explain(line: &str) -> Result<Explanation, ExplainError> {
    let text = line.trim();
    if text.is_empty() {
        return Err(ExplainError::Empty);
    }
    if text.contains('\n') {
        return Err(ExplainError::Unrecognized(
            "several lines given: explain one line at a time (`-` reads one per line from stdin)"
                .into(),
        ));
    }
    let normalized = lex::normalize(text);
    let t = normalized.as_str();

    let explanation = if let Some(verbose) = lex::Verbose::parse(t) {
        match verbose.point {
            "DEBUG" => debug::explain_verbose(&verbose)?,
            "DROP" => drop::explain_verbose(&verbose)?,
            _ => trace::explain_verbose(&verbose)?,
        }
    } else if t.starts_with("CPU ") && t.contains(" MARK ") {
        return Err(malformed(
            LineKind::Trace,
            "expected `CPU NN: MARK 0x<hash> FROM <endpoint> <observation point>|DROP|DEBUG: …` (`cilium monitor -v`)",
        ));
    } else if let Some(rest) = t.strip_prefix("xx drop") {
        drop::explain_info(rest)?
    } else if let Some(rest) = t.strip_prefix("Policy verdict log:") {
        policy::explain(rest)?
    } else if trace::is_info(t) {
        trace::explain_info(t)?
    } else if let Some(capture) = debug::capture_info(t) {
        capture?
    } else if let Some(kernel) = kernel::explain(t) {
        kernel?
    } else if looks_like_hubble(t) {
        return Err(ExplainError::Unrecognized(
            "this looks like `hubble observe` output (FORWARDED/DROPPED with pod names); paste the `cilium-dbg monitor` line of the same packet instead".into(),
        ));
    } else if trace::is_fragment(t) {
        trace::explain_fragment(t)?
    } else {
        return Err(ExplainError::Unrecognized(EXPECTED.into()));
    };
    Ok(Explanation {
        line: text.to_string(),
        ..explanation
    })
}

fn looks_like_hubble(t: &str) -> bool {
    [" FORWARDED ", " DROPPED ", " TRACED ", " TRANSLATED "]
        .iter()
        .any(|verdict| t.contains(verdict) || t.ends_with(verdict.trim_end()))
        && (t.contains("(ID:") || t.contains(" -> ") || t.contains(" <> "))
}
