//! End-to-end tests: the real probe in real namespaces on this kernel, and the real
//! `cargo xtask conformance` front end. One test binary (links once).
//!
//! Tests that need root and BPF run for real where those exist (CI has them). Where
//! they do not, each prints one line saying why and is counted as ignored — never as
//! passed.

mod cleanup;
mod cli;
mod lab;
mod support;

use libtest_mimic::{Arguments, Trial};

fn main() {
    let mut args = Arguments::from_args();
    // Every test here creates or counts kernel objects (namespaces, BPF programs);
    // the cleanup tests compare snapshots of them, so tests must not overlap.
    args.test_threads = Some(1);
    let missing = support::missing_privileges();
    if let Some(why) = &missing {
        eprintln!("e2e: tests that need root and BPF are ignored here: {why}");
    }
    let mut trials: Vec<Trial> = Vec::new();
    for (name, needs_root, test) in lab::TESTS.iter().chain(cli::TESTS).chain(cleanup::TESTS) {
        let trial = Trial::test(*name, move || test().map_err(Into::into));
        trials.push(if *needs_root && missing.is_some() {
            trial.with_ignored_flag(true)
        } else {
            trial
        });
    }
    libtest_mimic::run(&args, trials).exit();
}
