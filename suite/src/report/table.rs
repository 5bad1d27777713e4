//! The terminal table printed at the end of a run: plain aligned columns, with
//! colour only for a human at a terminal (stdout is a TTY and `NO_COLOR` is
//! unset or empty, per no-color.org), never in CI logs or redirected output.

use super::Run;
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
    let header = ["VERDICT", "CHECK", "VARIANT", "TIME", "REASON"];
    let rows: Vec<[String; 5]> = run
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
    let mut width = header.map(str::len);
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }

    let m = &run.meta;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cilium-conformance {} · env {} · target {} · kernel {} ({}) · matrix {}",
        m.run_id, m.environment, m.target, run.facts.kernel_release, run.facts.arch, m.matrix
    );
    let line = |out: &mut String, cells: [&str; 5], verdict: Option<VerdictKind>| {
        for (i, cell) in cells.iter().enumerate() {
            // Pad first, then colour: escape codes have no width.
            let padded = if i + 1 == cells.len() {
                cell.to_string()
            } else {
                format!("{cell:<w$}  ", w = width[i])
            };
            match verdict {
                Some(k) if color && i == 0 => {
                    let _ = write!(out, "{}{}\x1b[0m", paint(k), padded);
                }
                _ => out.push_str(&padded),
            }
        }
        out.push('\n');
    };
    line(&mut out, header, None);
    for (row, v) in rows.iter().zip(&run.verdicts) {
        line(
            &mut out,
            [&row[0], &row[1], &row[2], &row[3], &row[4]],
            Some(v.verdict),
        );
    }
    for p in &run.stream_problems {
        let _ = writeln!(out, "stream: {p}");
    }
    let _ = writeln!(out, "{} · {}", run.counts.summary(), run.outcome_phrase());
    out
}
