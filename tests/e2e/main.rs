//! End-to-end tests: the real probe in real namespaces on this kernel, and the real
//! `cargo xtask conformance` front end. One test binary (links once).
//!
//! Tests that need root and BPF run for real where those exist (CI has them). Where
//! they do not, each prints one line saying why and is counted as ignored — never as
//! passed.

mod cleanup;
mod cli;
mod compare;
mod concurrency;
mod container;
mod faults;
mod image;
mod lab;
mod privilege;
mod readiness;
mod support;
mod triage;
mod vm;

use libtest_mimic::{Arguments, Trial};

fn main() {
    let mut args = Arguments::from_args();
    // Every test here creates or counts kernel objects (namespaces, BPF programs);
    // the cleanup tests compare snapshots of them, so tests must not overlap.
    args.test_threads = Some(1);
    let mut said = std::collections::BTreeSet::new();
    let mut trials: Vec<Trial> = Vec::new();
    let all = lab::TESTS
        .iter()
        .chain(cli::TESTS)
        .chain(faults::TESTS)
        .chain(triage::TESTS)
        .chain(concurrency::TESTS)
        .chain(privilege::TESTS)
        .chain(cleanup::TESTS)
        .chain(image::TESTS)
        .chain(container::TESTS)
        .chain(compare::TESTS)
        .chain(readiness::TESTS)
        .chain(vm::TESTS);
    for (name, needs, test) in all {
        let missing = needs.missing();
        // Only tests the command line selects say why they are ignored.
        if let Some(why) = &missing
            && selected(name, &args)
            && said.insert(why.clone())
        {
            eprintln!("e2e: tests that need {needs:?} are ignored here: {why}");
        }
        trials.push(
            Trial::test(*name, move || test().map_err(Into::into))
                .with_ignored_flag(missing.is_some()),
        );
    }
    libtest_mimic::run(&args, trials).exit();
}

/// Whether libtest-mimic's name filter and `--skip` keep the test `name`.
fn selected(name: &str, args: &Arguments) -> bool {
    let matches = |pattern: &String| {
        if args.exact {
            name == pattern
        } else {
            name.contains(pattern.as_str())
        }
    };
    args.filter.as_ref().is_none_or(matches) && !args.skip.iter().any(matches)
}
