//! The terminal table printed at the end of a run: plain aligned columns (with
//! several instances, one verdict column per instance, readable at 100 columns), with
//! colour only for a human at a terminal (stdout is a TTY and `NO_COLOR` is
//! unset or empty, per no-color.org), never in CI logs or redirected output.

use super::{InstanceRun, Run};
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
        [one] => single(&mut out, run, one, color),
        _ => several(&mut out, run, color),
    }
    let _ = writeln!(out, "{} · {}", run.counts.summary(), run.outcome_phrase());
    out
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
