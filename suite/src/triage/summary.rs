//! SUMMARY.md: the first file a person opens. Per failing or suspicious row: the
//! instance, check and variant, verdict, where the packets were last seen and
//! first missing, and every known signature that matches, with its reason and link.

use super::hops::{find, hops};
use super::signatures::Match;
use super::{Options, Row, RowClass};
use crate::report::{Run, fact_rows};
use std::fmt::Write;

pub struct Input<'a> {
    pub run: &'a Run,
    pub rows: &'a [Row<'a>],
    pub matches: &'a [Match],
    pub opts: &'a Options,
}

/// A table cell: no pipes or newlines.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn signature_line(out: &mut String, m: &Match, indent: &str) {
    let _ = writeln!(
        out,
        "{indent}- **{}** (`{}`): {}\n{indent}  {} — <{}>",
        m.signature.title, m.signature.id, m.evidence, m.signature.reason, m.signature.link
    );
}

/// `kernel drop reasons while the check ran: 10 TC_EGRESS at __dev_queue_xmit`,
/// the three most frequent, from the probe's triage evidence.
fn drop_line(evidence: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let triage = evidence.get("triage")?;
    if let Some(why) = triage
        .get("unavailable")
        .and_then(|u| u.get("drops"))
        .and_then(|w| w.as_str())
    {
        return Some(format!("kernel drop reasons: unavailable ({why})"));
    }
    let list = triage.get("drops")?.get("by_reason")?.as_array()?;
    let mut rows: Vec<(u64, &str, &str)> = list
        .iter()
        .map(|d| {
            (
                d.get("count").and_then(|c| c.as_u64()).unwrap_or(0),
                d.get("reason").and_then(|r| r.as_str()).unwrap_or("?"),
                d.get("location").and_then(|r| r.as_str()).unwrap_or("?"),
            )
        })
        .collect();
    if rows.is_empty() {
        return Some("kernel drop reasons while the check ran: none recorded".into());
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)).then(a.2.cmp(b.2)));
    let shown: Vec<String> = rows
        .iter()
        .take(3)
        .map(|(n, reason, at)| format!("{n} {reason} at {at}"))
        .collect();
    let more = match rows.len() {
        n if n > 3 => format!(" (and {} more in drops.txt)", n - 3),
        _ => String::new(),
    };
    Some(format!(
        "kernel drop reasons while the check ran (system-wide): {}{more}",
        shown.join(", ")
    ))
}

pub fn render(input: &Input) -> String {
    let run = input.run;
    let meta = &run.meta;
    let mut out = format!("# Triage bundle: run {}\n\n", meta.run_id);
    let failing = input
        .rows
        .iter()
        .filter(|r| r.class == RowClass::Failing)
        .count();
    let _ = writeln!(
        out,
        "- run: `{}` · target {} · {} · {}",
        input.opts.invocation,
        meta.target,
        run.outcome_phrase(),
        run.counts.summary()
    );
    let _ = writeln!(
        out,
        "- bundle: {} · caps --max-bytes {} --max-seconds {} (what they cut: MANIFEST.txt)",
        if input.opts.quick {
            "quick (facts and failing paths only)"
        } else {
            "full (per row: hops, programs on the path, drop reasons, namespaces, kernel)"
        },
        input.opts.max_bytes,
        input.opts.max_seconds
    );
    let _ = writeln!(
        out,
        "- time-dependent values, all from run.json, none from the clock: started_at {}, duration_ms {:.1}, run_id {}; each instance's and observation's duration_ms, and the hooks' tstamp",
        meta.started_at, meta.duration_ms, meta.run_id
    );
    for (name, value) in &input.opts.endpoints {
        let _ = writeln!(out, "- endpoint {name}: `{value}`");
    }

    let _ = writeln!(out, "\n## Instances\n");
    let _ = writeln!(
        out,
        "| instance | environment | kernel | arch | hypervisor | container | nested | tcx | bpffs |\n|---|---|---|---|---|---|---|---|---|"
    );
    for i in &run.instances {
        let facts = fact_rows(&i.facts);
        let fact = |k: &str| {
            facts
                .iter()
                .find(|(name, _)| name == k)
                .map_or("?".to_string(), |(_, v)| v.clone())
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&i.label()),
            i.meta.environment,
            cell(&fact("kernel")),
            cell(&fact("arch")),
            cell(&fact("hypervisor")),
            cell(&fact("container")),
            cell(&fact("nested")),
            cell(&fact("tcx")),
            cell(&fact("bpffs")),
        );
    }
    let from_facts: Vec<&Match> = input.matches.iter().filter(|m| m.row.is_none()).collect();
    if !from_facts.is_empty() {
        let _ = writeln!(out, "\nSignatures from the facts alone:\n");
        for m in from_facts {
            let _ = writeln!(out, "- {}:", m.instance);
            signature_line(&mut out, m, "  ");
        }
    }

    let _ = writeln!(
        out,
        "\n## Rows ({failing} failing, {} suspicious)\n",
        input.rows.len() - failing
    );
    if input.rows.is_empty() {
        let _ = writeln!(out, "Every verdict passed: nothing to triage.");
    }
    for (n, row) in input.rows.iter().enumerate() {
        let v = row.verdict;
        let _ = writeln!(
            out,
            "### {}. {} · {} · {}{}\n",
            n + 1,
            row.instance,
            v.name(),
            v.verdict,
            match row.class {
                RowClass::Failing => "",
                RowClass::Suspicious => " (suspicious)",
            }
        );
        let _ = writeln!(out, "- reason: {}", v.reason.replace('\n', " "));
        let expected = v.expected.outcome_text();
        match v.observation.as_ref() {
            None => {
                let _ = writeln!(out, "- no observation (expected: {expected})");
            }
            Some(obs) => {
                let _ = writeln!(
                    out,
                    "- observed: {}{} · expected: {expected}",
                    super::OutcomeName::outcome_name(obs),
                    obs.failure
                        .as_deref()
                        .map(|f| format!(" ({f})"))
                        .unwrap_or_default()
                );
                let finding = find(&hops(&obs.evidence));
                if finding.accounted {
                    match (&finding.last_seen, &finding.first_missing) {
                        (_, None) => {
                            let _ = writeln!(
                                out,
                                "- hops: every hop saw every packet (the failure is not a loss; see the reason)"
                            );
                        }
                        (seen, Some(missing)) => {
                            let _ = writeln!(
                                out,
                                "- last seen: {}",
                                seen.as_deref().unwrap_or("nowhere (lost at the first hop)")
                            );
                            let _ = writeln!(out, "- first missing: {missing}");
                        }
                    }
                    if !finding.losses.is_empty() {
                        let _ = writeln!(out, "- drop counters: {}", finding.losses.join(", "));
                    }
                } else {
                    let _ = writeln!(out, "- hops: none in the evidence");
                }
                if let Some(line) = drop_line(&obs.evidence) {
                    let _ = writeln!(out, "- {line}");
                }
                if let Some(c) = &obs.control {
                    let cf = find(&hops(&c.evidence));
                    let _ = writeln!(
                        out,
                        "- control ({}): {} — {}",
                        c.description,
                        super::control_outcome(c.outcome),
                        if cf.accounted {
                            cf.line()
                        } else {
                            c.reason.clone()
                        }
                    );
                }
            }
        }
        let mine: Vec<&Match> = input
            .matches
            .iter()
            .filter(|m| {
                m.instance == row.instance
                    && m.row.as_ref() == Some(&(v.check.clone(), v.variant.clone()))
            })
            .collect();
        if mine.is_empty() {
            let _ = writeln!(out, "- known signatures: none matched");
        } else {
            let _ = writeln!(out, "- known signatures:");
            for m in mine {
                signature_line(&mut out, m, "  ");
            }
        }
        let _ = writeln!(out, "- details: `{}/`\n", row.folder);
    }
    out
}
