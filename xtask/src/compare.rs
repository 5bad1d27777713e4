//! `cargo xtask compare BASELINE CURRENT`: what changed between two runs.
//!
//! The logic lives in `conformance_suite::compare`; this is the command line:
//! which files make each side, where the outputs go, and the exit code (0
//! nothing got worse, 1 something did, 2 bad usage or a bad input file, 3 an
//! output that could not be written).

use crate::conformance::Failure;
use conformance_suite::compare::{self, CompareOptions, OutputPaths};
use conformance_suite::report::color_wanted;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: u8 = 2;

#[derive(clap::Args)]
#[command(
    after_help = "Each side is a run report (the --json-file of `cargo xtask conformance`, \
reports/run.json by default, schema 2) or a directory of them (every *.json in it, in name order). \
Give several runs per side to judge timing: `compare base/ current/`, or \
`compare --baseline a1.json a2.json a3.json --current b1.json b2.json b3.json`. \
The first run of a side is the one whose verdicts, facts and evidence are compared; every run \
is a timing sample. A check is reported slower only with at least 3 samples per side, every \
current sample slower than every baseline sample and the medians at least 1.5× and 10 ms apart; \
with fewer samples timing is not judged.\n\n\
Rows are matched by instance (target kind and name), check and variant; what only one side has \
is `added` or `removed`. A new failure is a row that went from pass, expected-fail, \
unexpected-pass or unsupported to regression or error, or that fails in another way than before.\n\n\
Exit codes: 0 nothing got worse, 1 a new failure (or a slower check with --fail-on-slower), \
2 bad usage or a bad input file (one line naming it), 3 an output could not be written."
)]
pub struct Options {
    /// The baseline run: a run.json, or a directory of run JSON files.
    #[arg(value_name = "BASELINE")]
    baseline_arg: Option<PathBuf>,
    /// The current run: a run.json, or a directory of run JSON files.
    #[arg(value_name = "CURRENT")]
    current_arg: Option<PathBuf>,
    /// More baseline runs (files or directories), after BASELINE if given.
    #[arg(long = "baseline", value_name = "FILE|DIR", num_args = 1..)]
    baseline: Vec<PathBuf>,
    /// More current runs (files or directories), after CURRENT if given.
    #[arg(long = "current", value_name = "FILE|DIR", num_args = 1..)]
    current: Vec<PathBuf>,
    /// Markdown for humans and `$GITHUB_STEP_SUMMARY` (cut below 512 KiB, saying what was cut).
    #[arg(long, visible_alias = "markdown-file", value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Everything as JSON: every row, its evidence diff, facts and timing.
    #[arg(long, visible_alias = "json-file", value_name = "FILE")]
    json: Option<PathBuf>,
    /// JUnit XML: one test case per compared row; a new failure is a failed test case.
    #[arg(long, visible_alias = "junit-file", value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Exit 1 also when a check is judged slower (needs 3 samples per side).
    #[arg(long)]
    fail_on_slower: bool,
}

fn usage(message: impl std::fmt::Display) -> Failure {
    Failure {
        code: USAGE,
        message: message.to_string(),
    }
}

pub fn run(opts: Options) -> Result<ExitCode, Failure> {
    let baseline: Vec<PathBuf> = opts.baseline_arg.into_iter().chain(opts.baseline).collect();
    let current: Vec<PathBuf> = opts.current_arg.into_iter().chain(opts.current).collect();
    if baseline.is_empty() || current.is_empty() {
        let missing = if baseline.is_empty() {
            "baseline"
        } else {
            "current"
        };
        return Err(usage(format!(
            "no {missing} run: give BASELINE and CURRENT (files or directories), or --baseline and --current"
        )));
    }
    let outputs = OutputPaths {
        markdown: opts.markdown,
        json: opts.json,
        junit: opts.junit,
    };
    let inputs: Vec<PathBuf> = baseline.iter().chain(&current).cloned().collect();
    outputs.preflight(&inputs).map_err(usage)?;

    let (b, c) = compare::load_sides(&baseline, &current).map_err(|e| Failure {
        code: e.exit_code(),
        message: e.to_string(),
    })?;
    // Directories without run reports are refused as such; a side is never empty here.
    let (Some(b), Some(c)) = (b, c) else {
        return Err(usage("no run report given"));
    };
    let cmp = compare::compare(
        &b,
        &c,
        CompareOptions {
            fail_on_slower: opts.fail_on_slower,
        },
    );
    compare::write_outputs(&cmp, &outputs).map_err(|e| Failure {
        code: e.exit_code(),
        message: e.to_string(),
    })?;
    print!("{}", compare::render_table(&cmp, color_wanted()));
    Ok(ExitCode::from(cmp.exit_code))
}
