//! The terminal table printed at the end of a run: plain aligned columns (with
//! several instances, one verdict column per instance, readable at 100 columns), with
//! colour only for a human at a terminal (stdout is a TTY and `NO_COLOR` is
//! unset or empty, per no-color.org), never in CI logs or redirected output.
//!
//! After the checks, a compact readiness block: each Cilium setting ready / not
//! ready / unknown with its reason (per instance with several), and with
//! `--cilium-values` what the values turn on that cannot run here.

use super::{InstanceRun, Run};
use crate::readiness::{ReadinessState, SettingReadiness, WantedOutcome};
use crate::verdict::VerdictKind;
use std::fmt::Write;
use std::io::IsTerminal;

/// Whether [`render_table`] should colour its output when printed to stdout.
pub fn color_wanted() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn paint(kind: VerdictKind) -> &'static str {
    match kind {
        VerdictKind::Pass => "\x1b[32m",
        VerdictKind::ExpectedFail | VerdictKind::Unsupported => "\x1b[2m",
        VerdictKind::UnexpectedPass => "\x1b[33m",
        VerdictKind::Regression | VerdictKind::Error => "\x1b[1;31m",
    }
}

pub fn render_table(run: &Run, color: bool) -> String {
    let mut out = String::new();
    match run.instances.as_slice() {
        [one] => {
            single(&mut out, run, one, color);
            readiness_single(&mut out, one, color);
        }
        _ => {
            several(&mut out, run, color);
            readiness_several(&mut out, run, color);
        }
    }
    values_lines(&mut out, run);
    for i in &run.instances {
        if run.instances.len() > 1 {
            let _ = writeln!(out, "{}: {}", i.label(), i.scrub_fix.line());
        } else {
            let _ = writeln!(out, "{}", i.scrub_fix.line());
        }
    }
    let _ = writeln!(out, "{} · {}", run.counts.summary(), run.outcome_phrase());
    out
}

/// Readiness colours: ready green, not ready yellow (a finding about the place,
/// not a failed run), unknown dim; red only for what the values turn on and
/// cannot run.
fn paint_readiness(r: &SettingReadiness) -> &'static str {
    if r.blocks() {
        return "\x1b[1;31m";
    }
    match r.state {
        ReadinessState::Ready => "\x1b[32m",
        ReadinessState::NotReady => "\x1b[33m",
        ReadinessState::Unknown => "\x1b[2m",
    }
}

/// `READY`, or with values `NOT SUPPORTED (on)`.
fn readiness_word(r: &SettingReadiness) -> String {
    match &r.wanted {
        Some(w) => format!("{} (on)", w.outcome.label()),
        None => r.state.label().to_string(),
    }
}

/// For a ready setting what it needs; otherwise why not.
fn readiness_why(r: &SettingReadiness) -> String {
    match (&r.wanted, r.state) {
        (Some(w), _) if w.outcome != WantedOutcome::Supported => w.reason.clone(),
        (_, ReadinessState::Ready) => {
            let needs: Vec<&str> = r.needs.iter().map(|n| n.need.as_str()).collect();
            format!("needs {}", needs.join(", "))
        }
        _ => r.reason.clone(),
    }
}

fn readiness_single(out: &mut String, instance: &InstanceRun, color: bool) {
    if instance.readiness.is_empty() {
        return;
    }
    out.push('\n');
    let header = ["SETTING", "READINESS", "WHY"];
    let rows: Vec<[String; 3]> = instance
        .readiness
        .iter()
        .map(|r| [r.setting.clone(), readiness_word(r), readiness_why(r)])
        .collect();
    let width = widths(header, &rows);
    line(out, &width, &header, &[], false);
    for (row, r) in rows.iter().zip(&instance.readiness) {
        let padded = format!("{:<w$}  ", row[1], w = width[1]);
        let state = if color {
            format!("{}{padded}\x1b[0m", paint_readiness(r))
        } else {
            padded
        };
        let _ = writeln!(out, "{:<w$}  {state}{}", row[0], row[2], w = width[0]);
    }
}

/// Settings × instances; then why, for what is not ready somewhere.
fn readiness_several(out: &mut String, run: &Run, color: bool) {
    let Some(first) = run.instances.first() else {
        return;
    };
    if first.readiness.is_empty() {
        return;
    }
    out.push('\n');
    let names: Vec<String> = run.instances.iter().map(|i| i.label()).collect();
    let mut width = vec![
        first
            .readiness
            .iter()
            .map(|r| r.setting.chars().count())
            .max()
            .unwrap_or(0)
            .max("SETTING".len()),
    ];
    width.extend(
        names
            .iter()
            .map(|n| n.chars().count().max("NOT SUPPORTED (on)".len())),
    );
    let mut head: Vec<&str> = vec!["SETTING"];
    head.extend(names.iter().map(String::as_str));
    line(out, &width, &head, &[], false);
    for r in &first.readiness {
        let _ = write!(out, "{:<w$}  ", r.setting, w = width[0]);
        for (n, i) in run.instances.iter().enumerate() {
            let found = i.readiness.iter().find(|x| x.setting == r.setting);
            let word = found.map_or("-".to_string(), readiness_word);
            let padded = if n + 1 == run.instances.len() {
                word
            } else {
                format!("{word:<w$}  ", w = width[n + 1])
            };
            match found {
                Some(x) if color => {
                    let _ = write!(out, "{}{padded}\x1b[0m", paint_readiness(x));
                }
                _ => out.push_str(&padded),
            }
        }
        out.push('\n');
    }
    let mut first_reason = true;
    for i in &run.instances {
        for r in i
            .readiness
            .iter()
            .filter(|r| r.state == ReadinessState::NotReady || r.blocks())
        {
            if std::mem::take(&mut first_reason) {
                out.push('\n');
            }
            let _ = writeln!(
                out,
                "{} {} {}:\n    {}",
                i.label(),
                readiness_word(r),
                r.setting,
                readiness_why(r)
            );
        }
    }
}

/// `cilium values FILE: 7 settings on, 1 not supported here: bpf-host-routing (lab/this host)`.
fn values_lines(out: &mut String, run: &Run) {
    let Some(file) = &run.meta.cilium_values else {
        return;
    };
    let on: Vec<&str> = run
        .instances
        .first()
        .map(|i| {
            i.readiness
                .iter()
                .filter(|r| r.wanted.is_some())
                .map(|r| r.setting.as_str())
                .collect()
        })
        .unwrap_or_default();
    let with = |outcome: WantedOutcome| -> Vec<String> {
        let several = run.instances.len() > 1;
        run.instances
            .iter()
            .flat_map(|i| {
                i.readiness
                    .iter()
                    .filter(move |r| r.wanted.as_ref().is_some_and(|w| w.outcome == outcome))
                    .map(move |r| match several {
                        true => format!("{} ({})", r.setting, i.label()),
                        false => r.setting.clone(),
                    })
            })
            .collect()
    };
    let mut parts = vec![format!("{} settings on ({})", on.len(), on.join(", "))];
    for (outcome, words) in [
        (WantedOutcome::NotSupported, "not supported here"),
        (WantedOutcome::Unknown, "unknown"),
        (WantedOutcome::FallsBack, "Cilium falls back"),
    ] {
        let names = with(outcome);
        if !names.is_empty() {
            parts.push(format!("{words}: {}", names.join(", ")));
        }
    }
    let _ = writeln!(out, "\ncilium values {file}: {}", parts.join("; "));
}

/// Pads each cell to its column's width; colours a cell whose `kinds` entry is a verdict.
fn line(
    out: &mut String,
    width: &[usize],
    cells: &[&str],
    kinds: &[Option<VerdictKind>],
    color: bool,
) {
    for (i, cell) in cells.iter().enumerate() {
        // Pad first, then colour: escape codes have no width.
        let padded = if i + 1 == cells.len() {
            cell.to_string()
        } else {
            format!("{cell:<w$}  ", w = width[i])
        };
        match kinds.get(i).copied().flatten() {
            Some(k) if color => {
                let _ = write!(out, "{}{}\x1b[0m", paint(k), padded);
            }
            _ => out.push_str(&padded),
        }
    }
    out.push('\n');
}

fn widths<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> [usize; N] {
    let mut width = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    width
}

fn single(out: &mut String, run: &Run, instance: &InstanceRun, color: bool) {
    let header = ["VERDICT", "CHECK", "VARIANT", "TIME", "REASON"];
    let rows: Vec<[String; 5]> = instance
        .verdicts
        .iter()
        .map(|v| {
            [
                v.verdict.label(),
                v.check.clone(),
                v.variant.clone(),
                format!("{:.3}s", v.duration_ms() / 1000.0),
                v.reason.clone(),
            ]
        })
        .collect();
    let width = widths(header, &rows);
    let i = &instance.meta;
    let _ = writeln!(
        out,
        "cilium-conformance {} · env {} · target {} · kernel {} ({}) · matrix {}",
        run.meta.run_id,
        i.environment,
        run.meta.target,
        instance.facts.kernel_release,
        instance.facts.arch,
        i.matrix
    );
    line(out, &width, &header, &[], false);
    for (row, v) in rows.iter().zip(&instance.verdicts) {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(out, &width, &cells, &[Some(v.verdict)], color);
    }
    for p in &instance.stream_problems {
        let _ = writeln!(out, "stream: {p}");
    }
}

/// Instances as columns, so a check reads across places; reasons for what is
/// not a plain pass follow, one per line, since they do not fit in a column.
fn several(out: &mut String, run: &Run, color: bool) {
    let _ = writeln!(
        out,
        "cilium-conformance {} · targets {}",
        run.meta.run_id, run.meta.target
    );
    let header = ["INSTANCE", "ARCH", "KERNEL", "ENV", "MATRIX"];
    let rows: Vec<[String; 5]> = run
        .instances
        .iter()
        .map(|i| {
            [
                i.label(),
                i.meta.instance.arch.clone(),
                i.facts.kernel_release.clone(),
                i.meta.environment.to_string(),
                i.meta.matrix.clone(),
            ]
        })
        .collect();
    let width = widths(header, &rows);
    line(out, &width, &header, &[], false);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(out, &width, &cells, &[], false);
    }
    out.push('\n');

    let checks = run.check_rows();
    let names: Vec<String> = run.instances.iter().map(|i| i.label()).collect();
    let mut width = vec!["CHECK".len(), "VARIANT".len()];
    width.extend(
        names
            .iter()
            .map(|n| n.chars().count().max("UNEXPECTED-PASS".len())),
    );
    for (c, v) in &checks {
        width[0] = width[0].max(c.chars().count());
        width[1] = width[1].max(v.chars().count());
    }
    let mut head: Vec<&str> = vec!["CHECK", "VARIANT"];
    head.extend(names.iter().map(String::as_str));
    line(out, &width, &head, &[], false);
    for (check, variant) in &checks {
        let found: Vec<Option<VerdictKind>> = run
            .instances
            .iter()
            .map(|i| {
                i.verdicts
                    .iter()
                    .find(|v| v.check == *check && v.variant == *variant)
                    .map(|v| v.verdict)
            })
            .collect();
        let labels: Vec<String> = found
            .iter()
            .map(|k| k.map_or("-".to_string(), |k| k.label()))
            .collect();
        let mut cells: Vec<&str> = vec![check, variant];
        cells.extend(labels.iter().map(String::as_str));
        let mut kinds = vec![None, None];
        kinds.extend(found);
        line(out, &width, &cells, &kinds, color);
    }

    let mut first = true;
    for instance in &run.instances {
        for v in instance
            .verdicts
            .iter()
            .filter(|v| v.verdict != VerdictKind::Pass)
        {
            if std::mem::take(&mut first) {
                out.push('\n');
            }
            let _ = writeln!(
                out,
                "{} {} {}:\n    {}",
                instance.label(),
                v.verdict.label(),
                v.name(),
                v.reason
            );
        }
        for p in &instance.stream_problems {
            let _ = writeln!(out, "stream ({}): {p}", instance.label());
        }
    }
}
