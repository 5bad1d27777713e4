//! An [`Explanation`] as terminal text or as one JSON object.

use super::{Explanation, Judgement, Relation};
use conformance_contract::catalogue::find_check;
use std::fmt::Write;

/// Terminal text: what the line is, one block per field, the checks, notes, sources.
pub fn render_text(e: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} ({})", e.kind.describe(), e.format);
    let _ = writeln!(out, "{}", e.summary);
    let _ = writeln!(out);
    let width = e
        .fields
        .iter()
        .map(|f| f.name.chars().count())
        .max()
        .unwrap_or(0);
    let mut last_meaning = "";
    for f in &e.fields {
        let mark = match f.judgement {
            Judgement::Normal => "normal",
            Judgement::Informative => "INFO",
        };
        let _ = writeln!(
            out,
            "  {:<width$}  {}  [{}]",
            f.name,
            f.value,
            mark,
            width = width
        );
        let _ = writeln!(out, "  {:<width$}  {}", "", f.reading, width = width);
        // Paired fields (source and destination identity) share one meaning.
        if f.meaning != last_meaning {
            let _ = writeln!(
                out,
                "  {:<width$}  ({}; {})",
                "",
                f.meaning,
                f.source,
                width = width
            );
        }
        last_meaning = &f.meaning;
    }
    let _ = writeln!(out);
    if e.checks.is_empty() {
        let _ = writeln!(
            out,
            "Checks: none. {}",
            e.no_check
                .as_deref()
                .unwrap_or("no check of this suite matches")
        );
    } else {
        let _ = writeln!(out, "Checks:");
        for c in &e.checks {
            let relation = match c.relation {
                Relation::Tests => "tests this step",
                Relation::Related => "related",
            };
            let title = find_check(c.id).map(|s| s.title).unwrap_or("");
            let _ = writeln!(out, "  {} ({relation}): {title}", c.id);
            let _ = writeln!(out, "      {}", c.why);
        }
    }
    if !e.notes.is_empty() {
        let _ = writeln!(out, "Notes:");
        for n in &e.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
    let _ = writeln!(out, "Sources: {}", e.sources.join(", "));
    let _ = writeln!(
        out,
        "(normal = Cilium's normal encoding, evidence of nothing; INFO = carries information about this packet)"
    );
    out
}

/// One JSON object (no trailing newline).
pub fn render_json(e: &Explanation) -> String {
    let mut value = serde_json::to_value(e).unwrap_or(serde_json::Value::Null);
    if let Some(checks) = value.get_mut("checks").and_then(|c| c.as_array_mut()) {
        for c in checks {
            let title = c
                .get("id")
                .and_then(|id| id.as_str())
                .and_then(find_check)
                .map(|s| s.title);
            if let (Some(obj), Some(title)) = (c.as_object_mut(), title) {
                obj.insert("title".into(), title.into());
            }
        }
    }
    value.to_string()
}
