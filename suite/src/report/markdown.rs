//! Markdown for humans: a CI step summary (`$GITHUB_STEP_SUMMARY`) or a file
//! attached to an incident. Counts first, then facts, one row per verdict, and
//! for every verdict that is not a plain pass the evidence of both legs and the
//! matrix entry that decided it, so nobody has to rerun to understand it.
//!
//! With several instances, a check × instance table and a fact × instance table
//! put them side by side above each instance's own details.
//!
//! Then "Cilium feature readiness": each Cilium setting, the checks it needs,
//! ready / not ready / unknown with the reason, Cilium's kernel minimum and agent
//! probe; with `--cilium-values`, the settings the values turn on come first.

use super::{InstanceRun, Run, evidence_json, fact_rows};
use crate::env::EnvironmentSource;
use crate::readiness::{NeedState, ReadinessState, SettingReadiness, WantedOutcome};
use crate::verdict::{Verdict, VerdictKind};
use std::fmt::Write;

pub fn render_markdown(run: &Run) -> String {
    match run.instances.as_slice() {
        [one] => single(run, one),
        _ => several(run),
    }
}

fn single(run: &Run, instance: &InstanceRun) -> String {
    let m = &run.meta;
    let i = &instance.meta;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## cilium-conformance on {}: {}\n",
        i.environment,
        run.outcome_phrase()
    );
    let _ = writeln!(md, "{}\n", inline(&run.counts.summary()));
    let _ = writeln!(
        md,
        "**{}: {}** ({})\n",
        crate::scrub_fix::LABEL,
        instance.scrub_fix.word(),
        cell(&instance.scrub_fix.because)
    );
    let _ = writeln!(
        md,
        "Run `{}` started {} ({:.1} s) · target `{}` · instance {} · environment **{}** ({}) · matrix `{}`{} · probe {} · eBPF objects: {}\n",
        m.run_id,
        m.started_at,
        m.duration_ms / 1000.0,
        m.target,
        inline(&i.instance.to_string()),
        i.environment,
        env_source(&i.environment_source),
        i.matrix,
        if m.strict { " · strict" } else { "" },
        inline(&i.probe.version),
        inline(&i.probe.ebpf_objects),
    );
    selection(&mut md, run);
    transport_notes(&mut md, instance);

    md.push_str("| fact | value |\n|---|---|\n");
    for (name, value) in fact_rows(&instance.facts) {
        let _ = writeln!(md, "| {} | {} |", cell(&name), cell(&value));
    }
    md.push('\n');

    md.push_str("| verdict | check | variant | reason |\n|---|---|---|---|\n");
    for v in &instance.verdicts {
        let _ = writeln!(
            md,
            "| {} | `{}` | {} | {} |",
            v.verdict.label(),
            v.check,
            cell(&v.variant),
            cell(&v.reason)
        );
    }

    values_single(&mut md, run, instance);
    readiness_single(&mut md, instance);

    let notable = notable(instance);
    if !notable.is_empty() {
        md.push_str("\n### Details\n");
        for v in notable {
            details(&mut md, v);
        }
    }
    md
}

fn several(run: &Run) -> String {
    let m = &run.meta;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## cilium-conformance on {} instances: {}\n",
        run.instances.len(),
        run.outcome_phrase()
    );
    let _ = writeln!(md, "{}\n", inline(&run.counts.summary()));
    let _ = writeln!(
        md,
        "Run `{}` started {} ({:.1} s) · targets `{}`{}\n",
        m.run_id,
        m.started_at,
        m.duration_ms / 1000.0,
        m.target,
        if m.strict { " · strict" } else { "" },
    );
    selection(&mut md, run);

    md.push_str("| instance | arch | environment | matrix | probe | verdicts | CVE-2025-37959 scrub fix |\n|---|---|---|---|---|---|---|\n");
    for instance in &run.instances {
        let i = &instance.meta;
        let _ = writeln!(
            md,
            "| {} | {} | **{}** ({}) | `{}` | {} · eBPF objects: {} | {} ({}) | **{}** ({}) |",
            cell(&instance.label()),
            cell(&i.instance.arch),
            i.environment,
            cell(&env_source(&i.environment_source)),
            cell(&i.matrix),
            cell(&i.probe.version),
            cell(&i.probe.ebpf_objects),
            cell(&instance.counts.summary()),
            exit_word(instance.exit_code(m.strict)),
            instance.scrub_fix.word(),
            cell(&instance.scrub_fix.because),
        );
    }
    md.push('\n');

    let header: Vec<String> = run.instances.iter().map(|i| cell(&i.label())).collect();
    let rule = "|---".repeat(header.len());
    let _ = writeln!(
        md,
        "| check | variant | {} |\n|---|---{rule}|",
        header.join(" | ")
    );
    for (check, variant) in run.check_rows() {
        let cells: Vec<String> = run
            .instances
            .iter()
            .map(|i| {
                i.verdict(&check, &variant)
                    .map_or("—".to_string(), |v| v.verdict.label())
            })
            .collect();
        let _ = writeln!(
            md,
            "| `{check}` | {} | {} |",
            cell(&variant),
            cells.join(" | ")
        );
    }
    md.push('\n');

    let _ = writeln!(md, "| fact | {} |\n|---{rule}|", header.join(" | "));
    let facts: Vec<Vec<(String, String)>> =
        run.instances.iter().map(|i| fact_rows(&i.facts)).collect();
    // Every instance's fact names, a name only one has next to its predecessor there.
    let mut names: Vec<&str> = Vec::new();
    for rows in &facts {
        let mut at = 0;
        for (name, _) in rows {
            match names.iter().position(|n| n == name) {
                Some(i) => at = i + 1,
                None => {
                    names.insert(at, name);
                    at += 1;
                }
            }
        }
    }
    for name in names {
        let values: Vec<String> = facts
            .iter()
            .map(|rows| {
                rows.iter()
                    .find(|(n, _)| n == name)
                    .map_or("—".to_string(), |(_, v)| cell(v))
            })
            .collect();
        let _ = writeln!(md, "| {} | {} |", cell(name), values.join(" | "));
    }

    values_several(&mut md, run);
    readiness_several(&mut md, run);

    for instance in &run.instances {
        let _ = writeln!(
            md,
            "\n### {}: {}",
            inline(&instance.meta.instance.to_string()),
            inline(&instance.counts.summary())
        );
        let mut notes = String::new();
        transport_notes(&mut notes, instance);
        if !notes.is_empty() {
            let _ = writeln!(md, "\n{}", notes.trim_end());
        }
        let not_ready: Vec<&SettingReadiness> = instance
            .readiness
            .iter()
            .filter(|r| r.state == ReadinessState::NotReady)
            .collect();
        if !not_ready.is_empty() {
            md.push_str("\nNot ready here:\n");
            for r in not_ready {
                let _ = writeln!(md, "- `{}`: {}", r.setting, inline(&r.reason));
            }
        }
        let notable = notable(instance);
        if notable.is_empty() {
            md.push_str("\nEvery verdict is a plain pass.\n");
        }
        for v in notable {
            details(&mut md, v);
        }
    }
    md
}

/// `NOT READY`, or `NOT SUPPORTED` for what the values turn on.
fn readiness_word(r: &SettingReadiness) -> String {
    match &r.wanted {
        Some(w) => format!("{} (on)", w.outcome.label()),
        None => r.state.label().to_string(),
    }
}

/// Each need with its verdicts: `` `datapath.redirect-peer` (PASS, PASS) ``.
fn needs_cell(r: &SettingReadiness) -> String {
    if r.needs.is_empty() {
        return "none yet".to_string();
    }
    r.needs
        .iter()
        .map(|n| {
            let how = if n.variants.is_empty() {
                match n.state {
                    NeedState::Unknown if n.reason.contains("does not check yet") => {
                        "not checked yet".to_string()
                    }
                    _ => "not a check".to_string(),
                }
            } else {
                n.variants
                    .iter()
                    .map(|v| {
                        let word = v.verdict.map_or("not run".to_string(), |k| k.label());
                        let word = if n.variants.len() > 1 {
                            format!("{} {word}", v.variant)
                        } else {
                            word
                        };
                        if v.not_used {
                            format!("{word}, not used")
                        } else {
                            word
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            format!("`{}` ({how})", n.need)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// ` (note: ...)` for a setting with a note.
fn note(r: &SettingReadiness) -> String {
    if r.note.is_empty() {
        String::new()
    } else {
        format!(" (note: {})", cell(&r.note))
    }
}

/// `3 turned on: 1 not supported here, 1 unknown`.
fn wanted_summary<'a>(rows: impl Iterator<Item = &'a SettingReadiness>) -> String {
    let mut on = 0;
    let mut counts = [0usize; 4];
    let kinds = [
        WantedOutcome::NotSupported,
        WantedOutcome::Unknown,
        WantedOutcome::FallsBack,
        WantedOutcome::Supported,
    ];
    for w in rows.filter_map(|r| r.wanted.as_ref()) {
        on += 1;
        if let Some(i) = kinds.iter().position(|k| *k == w.outcome) {
            counts[i] += 1;
        }
    }
    let words = ["not supported here", "unknown", "fall back", "supported"];
    let parts: Vec<String> = counts
        .iter()
        .zip(words)
        .filter(|(n, _)| **n > 0)
        .map(|(n, w)| format!("{n} {w}"))
        .collect();
    format!("{on} settings turned on: {}", parts.join(", "))
}

/// What the values turn on, and what that means here (single instance).
fn values_single(md: &mut String, run: &Run, instance: &InstanceRun) {
    let Some(file) = &run.meta.cilium_values else {
        return;
    };
    let _ = writeln!(
        md,
        "\n### Cilium values `{}`: {}\n",
        inline(file),
        inline(&wanted_summary(instance.readiness.iter()))
    );
    if instance.blocked_settings().next().is_some() {
        md.push_str("**A setting these values turn on cannot run here: the run exits 1.**\n\n");
    }
    md.push_str("| setting | here | turned on by | why |\n|---|---|---|---|\n");
    for r in &instance.readiness {
        if let Some(w) = &r.wanted {
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} |",
                r.setting,
                w.outcome.label(),
                cell(&w.because),
                cell(&w.reason)
            );
        }
    }
}

fn values_several(md: &mut String, run: &Run) {
    let Some(file) = &run.meta.cilium_values else {
        return;
    };
    let _ = writeln!(md, "\n### Cilium values `{}`\n", inline(file));
    if run.values_blocked() {
        md.push_str(
            "**A setting these values turn on cannot run on an instance: the run exits 1.**\n\n",
        );
    }
    let header: Vec<String> = run.instances.iter().map(|i| cell(&i.label())).collect();
    let _ = writeln!(
        md,
        "| setting | turned on by | {} |\n|---|---{}|",
        header.join(" | "),
        "|---".repeat(header.len())
    );
    let Some(first) = run.instances.first() else {
        return;
    };
    for r in first.readiness.iter().filter(|r| r.wanted.is_some()) {
        let cells: Vec<String> = run
            .instances
            .iter()
            .map(|i| {
                i.readiness
                    .iter()
                    .find(|x| x.setting == r.setting)
                    .and_then(|x| x.wanted.as_ref())
                    .map_or("—".to_string(), |w| w.outcome.label().to_string())
            })
            .collect();
        let because = r.wanted.as_ref().map_or("", |w| w.because.as_str());
        let _ = writeln!(
            md,
            "| `{}` | {} | {} |",
            r.setting,
            cell(because),
            cells.join(" | ")
        );
    }
    for i in &run.instances {
        for r in i.readiness.iter() {
            if let Some(w) = r.wanted.as_ref().filter(|w| {
                matches!(
                    w.outcome,
                    WantedOutcome::NotSupported | WantedOutcome::Unknown
                )
            }) {
                let _ = writeln!(
                    md,
                    "- {} `{}` {}: {}",
                    inline(&i.label()),
                    r.setting,
                    w.outcome.label(),
                    inline(&w.reason)
                );
            }
        }
    }
}

fn readiness_single(md: &mut String, instance: &InstanceRun) {
    if instance.readiness.is_empty() {
        return;
    }
    md.push_str("\n### Cilium feature readiness\n\n");
    md.push_str("Each Cilium setting, judged from the checks it needs: ready (every needed check passed here), not ready (one failed: the reason names it), unknown (not checked by this run or this suite yet).\n\n");
    md.push_str("| setting | readiness | why | needs | kernel minimum | agent probe |\n|---|---|---|---|---|---|\n");
    for r in &instance.readiness {
        let _ = writeln!(
            md,
            "| `{}`: {}{} | {} | {} | {} | {} | {} |",
            r.setting,
            cell(&r.title),
            note(r),
            readiness_word(r),
            cell(&r.reason),
            cell(&needs_cell(r)),
            cell(&r.kernel_minimum),
            cell(&r.agent_probe)
        );
    }
}

fn readiness_several(md: &mut String, run: &Run) {
    let Some(first) = run.instances.first() else {
        return;
    };
    if first.readiness.is_empty() {
        return;
    }
    md.push_str("\n### Cilium feature readiness\n\n");
    let header: Vec<String> = run.instances.iter().map(|i| cell(&i.label())).collect();
    let _ = writeln!(
        md,
        "| setting | needs | kernel minimum | agent probe | {} |\n|---|---|---|---{}|",
        header.join(" | "),
        "|---".repeat(header.len())
    );
    for r in &first.readiness {
        let states: Vec<String> = run
            .instances
            .iter()
            .map(|i| {
                i.readiness
                    .iter()
                    .find(|x| x.setting == r.setting)
                    .map_or("—".to_string(), readiness_word)
            })
            .collect();
        let needs: Vec<String> = r.needs.iter().map(|n| format!("`{}`", n.need)).collect();
        let _ = writeln!(
            md,
            "| `{}`: {} | {} | {} | {} | {} |",
            r.setting,
            cell(&r.title),
            if needs.is_empty() {
                "none yet".to_string()
            } else {
                cell(&needs.join(", "))
            },
            cell(&r.kernel_minimum),
            cell(&r.agent_probe),
            states.join(" | ")
        );
    }
}

/// (check, variant) of every instance's verdicts, in first-seen order.
fn exit_word(code: u8) -> &'static str {
    match code {
        0 => "as expected",
        1 => "regression",
        _ => "infrastructure error",
    }
}

fn env_source(source: &EnvironmentSource) -> String {
    match source {
        EnvironmentSource::Given => "given".to_string(),
        EnvironmentSource::Detected { why } => format!("detected: {}", inline(why)),
    }
}

fn selection(md: &mut String, run: &Run) {
    if !run.meta.selection.is_empty() {
        let _ = writeln!(md, "Selection: `{}`\n", run.meta.selection.join(","));
    }
}

/// Stream damage and skipped transport output, before the instance's tables.
fn transport_notes(md: &mut String, instance: &InstanceRun) {
    if !instance.stream_problems.is_empty() {
        md.push_str(
            "> **The probe's stream was damaged**; checks it did not report are errors below.\n",
        );
        for p in &instance.stream_problems {
            let _ = writeln!(md, "> - {}", inline(&p.to_string()));
        }
        md.push('\n');
    }
    if !instance.preamble.is_empty() {
        let _ = writeln!(
            md,
            "Skipped {} line(s) of transport output before the probe's facts line (last: {}).\n",
            instance.preamble.len(),
            inline(
                instance
                    .preamble
                    .last()
                    .map(String::as_str)
                    .unwrap_or_default()
            )
        );
    }
}

fn notable(instance: &InstanceRun) -> Vec<&Verdict> {
    instance
        .verdicts
        .iter()
        .filter(|v| v.verdict != VerdictKind::Pass)
        .collect()
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
