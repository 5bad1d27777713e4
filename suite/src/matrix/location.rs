//! From a byte offset in a matrix file to what a human needs to fix it: the line
//! number and the dotted field path (`expect[2].unless[0].when`).
//!
//! serde errors from `toml` carry a byte span but no path; this walks the same
//! text parsed by `toml_edit` (which keeps spans) to name the innermost key or
//! value at that offset.

use std::ops::Range;
use toml_edit::{ImDocument, Item, Table, Value};

/// 1-based line number of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Where a span falls in a document, for naming the field of an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// The text is not valid TOML: the error is a syntax error.
    Unparsable,
    /// Nothing smaller than the whole document covers the span.
    TopLevel,
    /// The innermost key, value or table covering the span (`expect[2].check`).
    Field(String),
}

pub(crate) fn place_of(text: &str, span: Range<usize>) -> Place {
    let Ok(doc) = ImDocument::parse(text) else {
        return Place::Unparsable;
    };
    let want_end = span.end.max(span.start + 1);
    let mut best: Option<(usize, String)> = None;
    let mut consider = |candidate: Option<Range<usize>>, path: &str| {
        if let Some(c) = candidate
            && c.start <= span.start
            && want_end <= c.end.max(c.start + 1)
        {
            let len = c.end - c.start;
            // `<=`: on equal spans the deeper (later) candidate wins.
            if best.as_ref().is_none_or(|(l, _)| len <= *l) {
                best = Some((len, path.to_string()));
            }
        }
    };
    walk_table(doc.as_table(), "", &mut consider);
    best.map_or(Place::TopLevel, |(_, path)| Place::Field(path))
}

type Visit<'a> = dyn FnMut(Option<Range<usize>>, &str) + 'a;

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn walk_table(table: &Table, prefix: &str, visit: &mut Visit<'_>) {
    for (name, item) in table.iter() {
        let path = join(prefix, name);
        if let Some((key, _)) = table.get_key_value(name) {
            visit(key.span(), &path);
        }
        walk_item(item, &path, visit);
    }
}

fn walk_item(item: &Item, path: &str, visit: &mut Visit<'_>) {
    match item {
        Item::None => {}
        Item::Value(value) => walk_value(value, path, visit),
        Item::Table(table) => {
            visit(table.span(), path);
            walk_table(table, path, visit);
        }
        Item::ArrayOfTables(array) => {
            visit(array.span(), path);
            for (i, table) in array.iter().enumerate() {
                let path = format!("{path}[{i}]");
                visit(table.span(), &path);
                walk_table(table, &path, visit);
            }
        }
    }
}

fn walk_value(value: &Value, path: &str, visit: &mut Visit<'_>) {
    visit(value.span(), path);
    match value {
        Value::Array(array) => {
            for (i, v) in array.iter().enumerate() {
                walk_value(v, &format!("{path}[{i}]"), visit);
            }
        }
        Value::InlineTable(table) => {
            for (name, v) in table.iter() {
                let child = join(path, name);
                if let Some((key, _)) = table.get_key_value(name) {
                    visit(key.span(), &child);
                }
                walk_value(v, &child, visit);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "schema = 1\n\n[[expect]]\ncheck = \"a\"\n\n[[expect.unless]]\nwhen = \"tcx\"\n\n[[expect]]\ncheck = \"b\"\nextra = [1, {x = 2}]\n";

    fn at(needle: &str) -> usize {
        TEXT.find(needle).unwrap()
    }

    fn path(needle: &str) -> Option<String> {
        let start = at(needle);
        match place_of(TEXT, start..start + needle.len()) {
            Place::Field(path) => Some(path),
            other => panic!("{needle}: {other:?}"),
        }
    }

    #[test]
    fn lines_are_one_based() {
        assert_eq!(line_of(TEXT, 0), 1);
        assert_eq!(line_of(TEXT, at("[[expect]]")), 3);
        assert_eq!(line_of(TEXT, TEXT.len() + 10), TEXT.lines().count() + 1);
    }

    #[test]
    fn names_innermost_key_or_value() {
        assert_eq!(path("schema").as_deref(), Some("schema"));
        assert_eq!(path("1").as_deref(), Some("schema"));
        assert_eq!(
            path("check = \"a\"").as_deref(),
            Some("expect[0]"),
            "a key and its value: the table covers both"
        );
        assert_eq!(path("check").as_deref(), Some("expect[0].check"));
        assert_eq!(path("[[expect]]").as_deref(), Some("expect[0]"));
        assert_eq!(path("when").as_deref(), Some("expect[0].unless[0].when"));
        assert_eq!(
            path("[[expect.unless]]").as_deref(),
            Some("expect[0].unless[0]")
        );
        assert_eq!(path("\"b\"").as_deref(), Some("expect[1].check"));
        assert_eq!(path("x = 2").as_deref(), Some("expect[1].extra[1]"));
        assert_eq!(place_of(TEXT, 0..TEXT.len()), Place::TopLevel);
        assert_eq!(place_of("a = [", 0..1), Place::Unparsable);
    }
}
