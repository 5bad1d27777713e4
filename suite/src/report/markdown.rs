//! Markdown for humans: a CI step summary (`$GITHUB_STEP_SUMMARY`) or a file
//! attached to an incident. Counts first, then facts, one row per verdict, and
//! for every verdict that is not a plain pass the evidence of both legs and the
//! matrix entry that decided it, so nobody has to rerun to understand it.

use super::{Run, evidence_json, fact_rows};
use crate::verdict::{Verdict, VerdictKind};
use std::fmt::Write;

pub fn render_markdown(run: &Run) -> String {
    let m = &run.meta;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## cilium-conformance on {}: {}\n",
        m.environment,
        run.outcome_phrase()
    );
    let _ = writeln!(md, "{}\n", inline(&run.counts.summary()));
    let env_source = match &m.environment_source {
        crate::env::EnvironmentSource::Given => "given".to_string(),
        crate::env::EnvironmentSource::Detected { why } => format!("detected: {}", inline(why)),
    };
    let _ = writeln!(
        md,
        "Run `{}` started {} ({:.1} s) · target `{}` · environment **{}** ({env_source}) · matrix `{}`{} · probe {} · eBPF objects: {}\n",
        m.run_id,
        m.started_at,
        m.duration_ms / 1000.0,
        m.target,
        m.environment,
        m.matrix,
        if m.strict { " · strict" } else { "" },
        inline(&m.probe.version),
        inline(&m.probe.ebpf_objects),
    );
    if !m.selection.is_empty() {
        let _ = writeln!(md, "Selection: `{}`\n", m.selection.join(","));
    }

    if !run.stream_problems.is_empty() {
        md.push_str(
            "> **The probe's stream was damaged**; checks it did not report are errors below.\n",
        );
        for p in &run.stream_problems {
            let _ = writeln!(md, "> - {}", inline(&p.to_string()));
        }
        md.push('\n');
    }

    md.push_str("| fact | value |\n|---|---|\n");
    for (name, value) in fact_rows(&run.facts) {
        let _ = writeln!(md, "| {} | {} |", cell(&name), cell(&value));
    }
    md.push('\n');

    md.push_str("| verdict | check | variant | reason |\n|---|---|---|---|\n");
    for v in &run.verdicts {
        let _ = writeln!(
            md,
            "| {} | `{}` | {} | {} |",
            v.verdict.label(),
            v.check,
            cell(&v.variant),
            cell(&v.reason)
        );
    }

    let notable: Vec<&Verdict> = run
        .verdicts
        .iter()
        .filter(|v| v.verdict != VerdictKind::Pass)
        .collect();
    if !notable.is_empty() {
        md.push_str("\n### Details\n");
        for v in notable {
            details(&mut md, v);
        }
    }
    md
}

fn details(md: &mut String, v: &Verdict) {
    let _ = writeln!(md, "\n#### {} `{}`\n", v.verdict.label(), v.name());
    let _ = writeln!(md, "{}\n", inline(&v.reason));
    let e = &v.expected;
    let _ = write!(
        md,
        "- **Expected:** {} — {}",
        e.outcome_text(),
        inline(&e.reason)
    );
    if let Some(at) = e.decided_by.location() {
        let _ = write!(md, " (decided by `{at}`)");
    }
    if let Some(r) = &e.reference {
        let _ = write!(md, " · reference: {}", inline(r));
    }
    md.push('\n');
    match &v.observation {
        None => {
            md.push_str("- **Observed:** nothing: the probe sent no observation for this check.\n")
        }
        Some(o) => {
            let failure = o
                .failure
                .as_deref()
                .map(|code| format!(" fail ({code}):"))
                .unwrap_or_default();
            let _ = writeln!(
                md,
                "- **Observed** ({:.0} ms):{failure} {}",
                o.duration_ms,
                inline(&o.reason)
            );
            match &o.control {
                Some(c) => {
                    let _ = writeln!(
                        md,
                        "- **Negative control** ({}): {} — {}",
                        inline(&c.description),
                        c_outcome(c.outcome),
                        inline(&c.reason)
                    );
                }
                None => md.push_str("- **Negative control:** did not run.\n"),
            }
        }
    }
    if let Some(json) = evidence_json(v) {
        let fence = fence_for(&json);
        let _ = writeln!(
            md,
            "\n<details><summary>evidence</summary>\n\n{fence}json\n{json}\n{fence}\n\n</details>"
        );
    }
}

fn c_outcome(o: conformance_contract::ControlOutcome) -> &'static str {
    match o {
        conformance_contract::ControlOutcome::Blocked => "blocked",
        conformance_contract::ControlOutcome::Leaked => "leaked",
        conformance_contract::ControlOutcome::Error => "error",
    }
}

/// A code fence longer than any backtick run inside the content.
fn fence_for(content: &str) -> String {
    let longest = content.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

/// Prose: no raw HTML (a reason saying `<none>` must not vanish), one line.
fn inline(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace(['\r', '\n'], " ")
}

/// A table cell: prose that also cannot end the cell early.
fn cell(s: &str) -> String {
    inline(s).replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_and_fences_are_safe() {
        assert_eq!(cell("a|b <none>\nc & d"), "a\\|b &lt;none&gt; c &amp; d");
        assert_eq!(fence_for("{}"), "```");
        assert_eq!(fence_for("has ``` inside"), "````");
    }
}
