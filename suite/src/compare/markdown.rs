//! The comparison as Markdown, fit for `$GITHUB_STEP_SUMMARY`: the outcome,
//! the facts that changed, a table of the changed rows with what moved under
//! each, timing, and the unchanged rows folded in a `<details>`.
//!
//! GitHub drops a step summary over 1 MiB whole, so the document is cut well
//! below that ([`MARKDOWN_LIMIT`]): sections are added in order of importance
//! while they fit, and a note at the end says what was left out and that the
//! `--json` output has everything.

use super::{Class, Comparison, Presence, Row, side_cell};
use std::fmt::Write;

/// 512 KiB: half of what GitHub accepts for one step summary.
pub const MARKDOWN_LIMIT: usize = 512 * 1024;

/// Room kept for closing tags and the note on what was cut.
const RESERVE: usize = 1024;

pub fn render_markdown(c: &Comparison) -> String {
    render_markdown_limited(c, MARKDOWN_LIMIT)
}

/// [`render_markdown`] cut to at most `limit` bytes (not below 2 KiB).
pub fn render_markdown_limited(c: &Comparison, limit: usize) -> String {
    let mut md = Budget {
        s: String::new(),
        limit: limit.max(2 * RESERVE) - RESERVE,
        full: false,
    };
    let mut cut = Cut::default();
    head(&mut md, c);

    let changed: Vec<&Row> = c.changed().collect();
    let with_instance = c.shows_instances();
    if !changed.is_empty() {
        let mut table = String::from("### Changed\n\n");
        if with_instance {
            table.push_str("| class | instance | check | variant | baseline | current |\n|---|---|---|---|---|---|\n");
        } else {
            table.push_str(
                "| class | check | variant | baseline | current |\n|---|---|---|---|---|\n",
            );
        }
        md.push(&table);
        for (i, r) in changed.iter().enumerate() {
            let class = if r.class.got_worse() {
                format!("**{}**", r.class.words())
            } else {
                r.class.words()
            };
            let instance = if with_instance {
                format!(" {} |", cell(&r.instance))
            } else {
                String::new()
            };
            let line = format!(
                "| {class} |{instance} `{}` | {} | {} | {} |\n",
                cell(&r.check),
                cell(&r.variant),
                cell(&side_cell(&r.baseline)),
                cell(&side_cell(&r.current)),
            );
            if !md.push(&line) {
                cut.table_rows = changed.len() - i;
                break;
            }
        }
        md.push("\n");
        let detailed: Vec<&&Row> = changed.iter().filter(|r| has_details(r)).collect();
        for (i, r) in detailed.iter().enumerate() {
            if !md.push(&details(r, with_instance)) {
                cut.details = detailed.len() - i;
                break;
            }
        }
    } else {
        md.push("No verdict changed.\n\n");
    }

    let mut timing = format!("### Timing\n\n{}\n\n", inline(&c.timing.line()));
    let changes: Vec<_> = c.timing_changes().collect();
    if !changes.is_empty() {
        timing.push_str("| check | change |\n|---|---|\n");
        for (r, t) in &changes {
            let who = if with_instance {
                format!("`{}` on {}", cell(&r.name()), cell(&r.instance))
            } else {
                format!("`{}`", cell(&r.name()))
            };
            let _ = writeln!(timing, "| {who} | {} |", cell(&t.text()));
        }
        timing.push('\n');
    }
    if !md.push(&timing) {
        cut.timing = true;
    }

    let unchanged: Vec<&Row> = c.unchanged().collect();
    if !unchanged.is_empty() {
        let mut open = format!(
            "<details><summary>{} unchanged</summary>\n\n",
            unchanged.len()
        );
        open.push_str(if with_instance {
            "| instance | check | variant | verdict |\n|---|---|---|---|\n"
        } else {
            "| check | variant | verdict |\n|---|---|---|\n"
        });
        if md.push(&open) {
            for (i, r) in unchanged.iter().enumerate() {
                let instance = if with_instance {
                    format!(" {} |", cell(&r.instance))
                } else {
                    String::new()
                };
                let line = format!(
                    "|{instance} `{}` | {} | {} |\n",
                    cell(&r.check),
                    cell(&r.variant),
                    cell(&side_cell(&r.current))
                );
                if !md.push(&line) {
                    cut.unchanged = unchanged.len() - i;
                    break;
                }
            }
            // Always closed: the reserve keeps room for it.
            md.s.push_str("\n</details>\n");
        } else {
            cut.unchanged = unchanged.len();
        }
    }
    if let Some(note) = cut.note(limit) {
        md.s.push('\n');
        md.s.push_str(&note);
    }
    md.s
}

struct Budget {
    s: String,
    limit: usize,
    full: bool,
}

impl Budget {
    /// Appends `piece` whole if it fits; once one does not, nothing more is added.
    fn push(&mut self, piece: &str) -> bool {
        if self.full || self.s.len() + piece.len() > self.limit {
            self.full = true;
            return false;
        }
        self.s.push_str(piece);
        true
    }
}

#[derive(Default)]
struct Cut {
    table_rows: usize,
    details: usize,
    timing: bool,
    unchanged: usize,
}

impl Cut {
    fn note(&self, limit: usize) -> Option<String> {
        let mut parts = Vec::new();
        if self.table_rows > 0 {
            parts.push(format!("{} changed rows", self.table_rows));
        }
        if self.details > 0 {
            parts.push(format!("the evidence of {} changed rows", self.details));
        }
        if self.timing {
            parts.push("the timing section".to_string());
        }
        if self.unchanged > 0 {
            parts.push(format!("{} unchanged rows", self.unchanged));
        }
        if parts.is_empty() {
            return None;
        }
        Some(format!(
            "> **Cut to fit {}**: not shown here: {}. GitHub drops a step summary over 1 MiB whole; the `--json` output of `cargo xtask compare` has everything.\n",
            size(limit),
            parts.join(", ")
        ))
    }
}

fn size(bytes: usize) -> String {
    if bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

fn head(md: &mut Budget, c: &Comparison) {
    let mut s = format!(
        "## cilium-conformance compare: {}\n\n{}\n\n",
        c.outcome_phrase(),
        inline(&c.summary())
    );
    let side = |name: &str, i: &super::SideInfo| {
        let files = match i.files.as_slice() {
            [one] => format!("`{}`", inline(one)),
            [first, rest @ ..] => format!("`{}` and {} more samples", inline(first), rest.len()),
            [] => String::new(),
        };
        format!(
            "{name}: run `{}` started {} ({files}; suite {}, target `{}`)",
            inline(&i.run_id),
            inline(&i.started_at),
            inline(&i.suite_version),
            inline(&i.target)
        )
    };
    let _ = writeln!(
        s,
        "{} · {}\n",
        side("Baseline", &c.baseline),
        side("Current", &c.current)
    );
    if !c.run_changes.is_empty() {
        s.push_str("| run setting | baseline | current |\n|---|---|---|\n");
        for f in &c.run_changes {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                cell(&f.fact),
                opt(&f.baseline),
                opt(&f.current)
            );
        }
        s.push('\n');
    }
    let changed_facts = c
        .instances
        .iter()
        .any(|i| i.presence != Presence::Both || !i.facts_changed.is_empty());
    if changed_facts {
        s.push_str("### Facts changed\n\n");
        for i in &c.instances {
            match i.presence {
                Presence::BaselineOnly => {
                    let _ = writeln!(
                        s,
                        "Instance **{}** is only in the baseline.\n",
                        inline(&i.instance)
                    );
                }
                Presence::CurrentOnly => {
                    let _ = writeln!(
                        s,
                        "Instance **{}** is only in the current run.\n",
                        inline(&i.instance)
                    );
                }
                Presence::Both if !i.facts_changed.is_empty() => {
                    let _ = writeln!(
                        s,
                        "**{}**\n\n| fact | baseline | current |\n|---|---|---|",
                        inline(&i.instance)
                    );
                    for f in &i.facts_changed {
                        let _ = writeln!(
                            s,
                            "| {} | {} | {} |",
                            cell(&f.fact),
                            opt(&f.baseline),
                            opt(&f.current)
                        );
                    }
                    s.push('\n');
                }
                Presence::Both => {}
            }
        }
    }
    md.push(&s);
}

fn opt(v: &Option<String>) -> String {
    v.as_deref().map_or("(absent)".to_string(), cell)
}

fn has_details(r: &Row) -> bool {
    !r.notes.is_empty()
        || !r.evidence.is_empty()
        || matches!(r.class, Class::NewFailure | Class::StillFailing)
}

fn details(r: &Row, with_instance: bool) -> String {
    let mut s = format!("#### {}: `{}`", r.class.words(), inline(&r.name()));
    if with_instance {
        let _ = write!(s, " on {}", inline(&r.instance));
    }
    s.push_str("\n\n");
    for n in &r.notes {
        let _ = writeln!(s, "- {}", inline(n));
    }
    for (side, reason) in r.reasons() {
        let _ = writeln!(s, "- {side}: {}", inline(reason));
    }
    if !r.evidence.is_empty() {
        s.push_str("\n| evidence that moved | baseline | current |\n|---|---|---|\n");
        for e in &r.evidence {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                cell(&e.what),
                cell(&e.baseline),
                cell(&e.current)
            );
        }
    }
    s.push('\n');
    s
}

/// Prose: no raw HTML (a reason saying `<none>` must not vanish), one line.
fn inline(s: &str) -> String {
    if !s.contains(['&', '<', '>', '\r', '\n']) {
        return s.to_string();
    }
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace(['\r', '\n'], " ")
}

/// A table cell: prose that also cannot end the cell early.
fn cell(s: &str) -> String {
    let s = inline(s);
    if s.contains('|') {
        s.replace('|', "\\|")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_safe() {
        assert_eq!(cell("a|b <none>\nc & d"), "a\\|b &lt;none&gt; c &amp; d");
        assert_eq!(size(512 * 1024), "512 KiB");
        assert_eq!(size(3000), "3000 bytes");
    }
}
