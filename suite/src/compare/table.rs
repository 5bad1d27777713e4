//! The comparison on a terminal: which runs, the facts that changed, one line
//! per changed row with what moved indented under it, the unchanged rows
//! counted, timing, and the outcome. Colour only when asked (a TTY, see
//! [`crate::report::color_wanted`]), on the class column.

use super::{Class, Comparison, Presence, Row, side_cell};
use std::fmt::Write;

/// Evidence lines shown under one row; the rest are counted (all are in `--json`).
const EVIDENCE_LINES: usize = 8;

fn paint(class: Class) -> &'static str {
    match class {
        Class::NewFailure => "\x1b[1;31m",
        Class::StillFailing => "\x1b[31m",
        Class::Fixed | Class::BecameRunnable => "\x1b[32m",
        Class::BecameUnsupported | Class::Changed => "\x1b[33m",
        Class::Added | Class::Removed | Class::Unchanged => "\x1b[2m",
    }
}

pub fn render_table(c: &Comparison, color: bool) -> String {
    let mut out = String::new();
    let side = |s: &super::SideInfo| {
        let more = match s.files.len() {
            1 => String::new(),
            n => format!(", {n} samples"),
        };
        format!(
            "{} ({}, {}{more})",
            s.run_id,
            s.started_at,
            s.files.first().map_or("", String::as_str)
        )
    };
    let _ = writeln!(
        out,
        "cilium-conformance compare · baseline {} → current {}",
        side(&c.baseline),
        side(&c.current)
    );
    if !c.run_changes.is_empty() {
        let _ = writeln!(out, "run settings changed:");
        for f in &c.run_changes {
            let _ = writeln!(out, "  {}: {}", f.fact, f.arrow());
        }
    }
    for i in &c.instances {
        match i.presence {
            Presence::BaselineOnly => {
                let _ = writeln!(out, "instance {} only in the baseline", i.instance);
            }
            Presence::CurrentOnly => {
                let _ = writeln!(out, "instance {} only in the current run", i.instance);
            }
            Presence::Both if !i.facts_changed.is_empty() => {
                let _ = writeln!(out, "facts changed, {}:", i.instance);
                let width = i
                    .facts_changed
                    .iter()
                    .map(|f| f.fact.chars().count())
                    .max()
                    .unwrap_or(0);
                for f in &i.facts_changed {
                    let _ = writeln!(out, "  {:<width$}  {}", f.fact, f.arrow());
                }
            }
            Presence::Both => {}
        }
    }

    let changed: Vec<&Row> = c.changed().collect();
    if changed.is_empty() {
        let _ = writeln!(out, "no verdict changed");
    } else {
        let with_instance = c.shows_instances();
        let cells = |r: &Row| -> Vec<String> {
            let mut v = vec![r.class.label()];
            if with_instance {
                v.push(r.instance.clone());
            }
            v.extend([
                r.check.clone(),
                r.variant.clone(),
                side_cell(&r.baseline),
                side_cell(&r.current),
            ]);
            v
        };
        let mut header = vec!["CLASS"];
        if with_instance {
            header.push("INSTANCE");
        }
        header.extend(["CHECK", "VARIANT", "BASELINE", "CURRENT"]);
        let rows: Vec<Vec<String>> = changed.iter().map(|r| cells(r)).collect();
        let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (w, cell) in width.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
        line(&mut out, &width, &header, None);
        for (r, cells) in changed.iter().zip(&rows) {
            line(&mut out, &width, cells, color.then_some(r.class));
            details(&mut out, r);
        }
    }
    let unchanged = c.unchanged().count();
    if unchanged > 0 {
        let _ = writeln!(out, "{unchanged} unchanged");
    }
    let _ = writeln!(out, "{}", c.timing.line());
    for (r, t) in c.timing_changes() {
        let who = if c.shows_instances() {
            format!("{} {}", r.instance, r.name())
        } else {
            r.name()
        };
        let _ = writeln!(out, "  {who}: {}", t.text());
    }
    let _ = writeln!(out, "{} · {}", c.summary(), c.outcome_phrase());
    out
}

fn line(out: &mut String, width: &[usize], cells: &[String], class: Option<Class>) {
    for (i, cell) in cells.iter().enumerate() {
        let padded = if i + 1 == cells.len() {
            cell.clone()
        } else {
            format!("{cell:<w$}  ", w = width[i])
        };
        match class {
            Some(k) if i == 0 => {
                let _ = write!(out, "{}{}\x1b[0m", paint(k), padded);
            }
            _ => out.push_str(&padded),
        }
    }
    out.push('\n');
}

/// Notes, the current reason of a failing row, and the evidence that moved.
fn details(out: &mut String, r: &Row) {
    for n in &r.notes {
        let _ = writeln!(out, "    {n}");
    }
    if matches!(r.class, Class::NewFailure | Class::StillFailing)
        && let Some(c) = &r.current
    {
        let _ = writeln!(out, "    now: {}", one_line(&c.reason));
    }
    for e in r.evidence.iter().take(EVIDENCE_LINES) {
        let _ = writeln!(out, "    {}", one_line(&e.line()));
    }
    if r.evidence.len() > EVIDENCE_LINES {
        let _ = writeln!(
            out,
            "    … {} more changes in the evidence (--json, --markdown)",
            r.evidence.len() - EVIDENCE_LINES
        );
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}
