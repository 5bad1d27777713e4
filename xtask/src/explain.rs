//! `cargo xtask explain 'LINE' [--json]`: one pasted `cilium monitor` /
//! `cilium-dbg monitor` line decoded field by field (`conformance_suite::explain`).
//! `-` reads lines from stdin and explains each in turn. `cargo xtask triage
//! --explain 'LINE'` forwards to [`run`].
//!
//! Exit codes: 0 every line explained; 2 a line that is not a monitor line (the
//! message says what was expected; with `-`, every other line is still explained);
//! 3 stdout or stdin failed.

use crate::conformance::Failure;
use conformance_suite::explain::{explain, render_json, render_text};
use std::io::{BufRead, Write};
use std::process::ExitCode;

const USAGE: u8 = 2;
const INFRA: u8 = 3;

#[derive(clap::Args)]
pub struct Options {
    /// One line of `cilium monitor` output, quoted (e.g. '-> stack flow 0x0 , identity 1234->host state new ifindex 0 orig-ip 0.0.0.0: …'); `-` reads one line per line from stdin.
    #[arg(allow_hyphen_values = true, value_name = "LINE")]
    pub line: String,
    /// Print each explanation as one JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Explains `line`, or every line of stdin when `line` is `-`.
pub fn run(line: &str, json: bool) -> Result<ExitCode, Failure> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    run_on(
        line,
        json,
        &mut stdin.lock(),
        &mut stdout.lock(),
        &mut stderr.lock(),
    )
}

/// [`run`] with its streams given.
pub fn run_on(
    line: &str,
    json: bool,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode, Failure> {
    let write_failed = |e: std::io::Error| Failure {
        code: INFRA,
        message: format!("cannot write the explanation: {e}"),
    };
    if line != "-" {
        let explanation = explain(line).map_err(|e| Failure {
            code: USAGE,
            message: e.to_string(),
        })?;
        write_one(out, &explanation, json).map_err(write_failed)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut seen = 0usize;
    let mut failed = 0usize;
    for (number, text) in input.lines().enumerate() {
        let text = text.map_err(|e| Failure {
            code: INFRA,
            message: format!("cannot read stdin: {e}"),
        })?;
        if text.trim().is_empty() {
            continue;
        }
        seen += 1;
        match explain(&text) {
            Ok(explanation) => {
                if !json && seen > 1 {
                    writeln!(out).map_err(write_failed)?;
                }
                write_one(out, &explanation, json).map_err(write_failed)?;
            }
            Err(e) => {
                failed += 1;
                let _ = writeln!(err, "stdin:{}: {e}", number + 1);
            }
        }
    }
    match (seen, failed) {
        (0, _) => Err(Failure {
            code: USAGE,
            message: "no lines on stdin: expected `cilium monitor` output, one event per line"
                .into(),
        }),
        (_, 0) => Ok(ExitCode::SUCCESS),
        (seen, failed) => Err(Failure {
            code: USAGE,
            message: format!("{failed} of {seen} lines could not be explained (see above)"),
        }),
    }
}

fn write_one(
    out: &mut dyn Write,
    e: &conformance_suite::explain::Explanation,
    json: bool,
) -> std::io::Result<()> {
    if json {
        writeln!(out, "{}", render_json(e))
    } else {
        write!(out, "{}", render_text(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        opts: Options,
    }

    fn run_text(
        line: &str,
        json: bool,
        stdin: &str,
    ) -> (Result<ExitCode, Failure>, String, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let result = run_on(line, json, &mut stdin.as_bytes(), &mut out, &mut err);
        (
            result,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn a_line_starting_with_an_arrow_is_not_a_flag() {
        let cli = Cli::try_parse_from([
            "explain",
            "-> stack flow 0x0 , identity 1->2 state new ifindex 0 orig-ip 0.0.0.0: [unknown]",
            "--json",
        ])
        .unwrap();
        assert!(cli.opts.line.starts_with("-> stack"));
        assert!(cli.opts.json);
        let cli = Cli::try_parse_from(["explain", "-"]).unwrap();
        assert_eq!(cli.opts.line, "-");
    }

    #[test]
    fn explains_one_line_as_text_or_json() {
        let line = "-> stack flow 0x0 , identity 12345->host state new ifindex 0 orig-ip 0.0.0.0: 10.42.0.17:41234 -> 10.42.0.1:8080 udp";
        let (result, out, _) = run_text(line, false, "");
        assert!(result.is_ok());
        assert!(out.contains("datapath.stack-delivery"));
        assert!(out.contains("[normal]"));
        let (result, out, _) = run_text(line, true, "");
        assert!(result.is_ok());
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["kind"], "trace");
    }

    #[test]
    fn a_line_that_is_not_a_monitor_line_is_exit_2() {
        let (result, out, _) = run_text("hello", false, "");
        let failure = result.err().unwrap();
        assert_eq!(failure.code, 2);
        assert!(
            failure
                .message
                .starts_with("not a Cilium monitor line: expected")
        );
        assert!(out.is_empty());
    }

    #[test]
    fn stdin_lines_are_explained_in_turn() {
        let stdin = "-> stack flow 0x0 , identity 1->2 state new ifindex 0 orig-ip 0.0.0.0: [unknown]\n\n-> 0: 10.0.0.1:1 -> 10.0.0.2:2 udp\n";
        let (result, out, err) = run_text("-", true, stdin);
        assert!(result.is_ok(), "{err}");
        let kinds: Vec<String> = out
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
            .collect();
        assert_eq!(kinds, ["\"trace\"", "\"debug-capture\""]);

        let (result, out, err) =
            run_text("-", false, "garbage\n-> 0: 10.0.0.1:1 -> 10.0.0.2:2 udp\n");
        let failure = result.err().unwrap();
        assert_eq!(failure.code, 2);
        assert_eq!(
            failure.message,
            "1 of 2 lines could not be explained (see above)"
        );
        assert!(
            err.starts_with("stdin:1: not a Cilium monitor line"),
            "{err}"
        );
        assert!(out.contains("debug capture"));

        let (result, _, _) = run_text("-", false, "\n  \n");
        assert_eq!(result.err().unwrap().code, 2);
    }
}
