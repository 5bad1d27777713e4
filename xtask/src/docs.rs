//! `cargo xtask docs`: the parts of README.md that say what the catalogue says
//! (the checks table, the failure codes, what every environment expects), written
//! from `contract/src/catalogue.rs` so they cannot drift from it. `--check` fails
//! instead of writing; a unit test runs the same comparison.

use crate::conformance::{Failure, workspace_root};
use crate::sections;
use conformance_contract::{CATALOGUE, EXPECTED_FACTS, Failure as CheckFailure};
use std::fmt::Write;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Options {
    /// Fail (exit 1) if README.md's generated sections are stale, instead of writing them.
    #[arg(long)]
    check: bool,
}

const KIND: &str = "generated";

/// The README's generated sections: (name, body).
fn sections() -> [(&'static str, String); 3] {
    [
        ("checks", checks_table()),
        ("failures", failures_table()),
        ("expected-facts", expected_facts_table()),
    ]
}

/// README.md with every generated section rewritten.
pub fn render(readme: &str) -> Result<String, String> {
    let mut text = readme.to_string();
    for (name, body) in sections() {
        text = sections::replace(&text, KIND, name, &sections::wrap(KIND, name, &body))?;
    }
    Ok(text)
}

pub fn run(opts: Options) -> Result<ExitCode, Failure> {
    let path = workspace_root().join("README.md");
    let fail = |code, message: String| Failure { code, message };
    let readme = std::fs::read_to_string(&path)
        .map_err(|e| fail(3, format!("read {}: {e}", path.display())))?;
    let fresh = render(&readme).map_err(|e| fail(2, format!("{}: {e}", path.display())))?;
    if fresh == readme {
        eprintln!("{}: generated sections are up to date", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    if opts.check {
        eprintln!(
            "{}: generated sections are stale; run `cargo xtask docs`",
            path.display()
        );
        return Ok(ExitCode::from(1));
    }
    std::fs::write(&path, fresh).map_err(|e| fail(3, format!("write {}: {e}", path.display())))?;
    eprintln!("updated {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// A Markdown table cell: no line breaks, no bare pipes.
fn cell(text: &str) -> String {
    text.replace('\n', " ").replace('|', "\\|")
}

fn codes(failures: &[CheckFailure]) -> String {
    let mut codes: Vec<String> = failures.iter().map(|f| format!("`{}`", f.code)).collect();
    codes.sort();
    codes.join(", ")
}

fn checks_table() -> String {
    let mut out = String::from(
        "| check | variants | passes when | negative control (the decisive step broken) | failures it names | expected to fail |\n|---|---|---|---|---|---|\n",
    );
    for c in CATALOGUE {
        let expected: Vec<String> = c
            .expected_failures
            .iter()
            .map(|e| {
                let variant = e.variant.map(|v| format!("[{v}] ")).unwrap_or_default();
                format!("{variant}`{}` {}", e.failure.code, e.scope)
            })
            .collect();
        let expected = if expected.is_empty() {
            "nowhere".to_string()
        } else {
            expected.join("; ")
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} |",
            c.id,
            c.variants.join(", "),
            cell(c.passes_when),
            cell(c.control),
            codes(c.failures),
            cell(&expected)
        );
    }
    out
}

fn failures_table() -> String {
    let mut all: Vec<(&CheckFailure, Vec<&str>)> = Vec::new();
    for c in CATALOGUE {
        for f in c.failures {
            match all.iter_mut().find(|(known, _)| known.code == f.code) {
                Some((_, checks)) => checks.push(c.id),
                None => all.push((f, vec![c.id])),
            }
        }
    }
    let mut out = String::from("| failure | meaning | named by |\n|---|---|---|\n");
    for (f, checks) in all {
        let checks: Vec<String> = checks.iter().map(|c| format!("`{c}`")).collect();
        let _ = writeln!(
            out,
            "| `{}` | {} | {} |",
            f.code,
            cell(f.meaning),
            checks.join(", ")
        );
    }
    out
}

fn expected_facts_table() -> String {
    let mut out = String::from("| fact | expected where | why |\n|---|---|---|\n");
    for f in EXPECTED_FACTS {
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {} |",
            f.fact,
            f.expected,
            cell(f.reason)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_generated_sections_are_fresh() {
        let path = workspace_root().join("README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let fresh = render(&readme).unwrap();
        assert!(
            fresh == readme,
            "README.md's generated sections are stale: run `cargo xtask docs`"
        );
    }

    #[test]
    fn every_check_has_a_row() {
        let table = checks_table();
        for c in CATALOGUE {
            assert!(table.contains(&format!("| `{}` |", c.id)), "{}", c.id);
        }
        assert_eq!(table.lines().count(), CATALOGUE.len() + 2);
    }
}
