//! How long `cargo xtask compare` takes for two runs of 1,000 checks each (the
//! goal: under 50 ms). The runs are synthetic but their verdicts are real: each
//! is a copy of a verdict from `fixtures/compare/` (a passing
//! `datapath.redirect-peer[tcx]` with its full evidence and control) under its
//! own check id, and in the current run every 10th check is the faulted run's
//! regression, so 100 rows have an evidence diff to compute.
//!
//! Three figures: the comparison alone (runs in memory); what the command does
//! by default, minus the file system: parse both run.json texts (in parallel,
//! their evidence kept raw), compare, render the terminal table; and the same
//! with all four outputs (table, Markdown, JUnit, JSON) rendered.

use conformance_suite::compare::{
    CompareOptions, OutputPaths, Sample, Side, compare, parse_all, parse_run, render_json,
    render_junit, render_markdown, render_outputs, render_table,
};
use conformance_suite::report::{InstanceRun, Run, render_json as run_json};
use conformance_suite::verdict::Verdict;
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CHECKS: usize = 1000;

fn fixture(name: &str) -> Run {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/compare")
        .join(name);
    let bytes = std::fs::read(&path).expect("compare fixture");
    parse_run(&bytes).expect("a valid fixture")
}

fn template(run: &Run) -> Verdict {
    run.verdicts()
        .find(|v| v.check == "datapath.redirect-peer" && v.variant == "tcx")
        .expect("the fixture has redirect-peer[tcx]")
        .clone()
}

/// `base` with its one instance holding `CHECKS` verdicts, `pick(i)` for check i.
fn synthetic(base: &Run, pick: impl Fn(usize) -> Verdict) -> Run {
    let instance = &base.instances[0];
    let verdicts: Vec<Verdict> = (0..CHECKS)
        .map(|i| {
            let mut v = pick(i);
            v.check = format!("bench.check-{i:04}");
            if let Some(o) = v.observation.as_mut() {
                o.check = v.check.clone();
            }
            v
        })
        .collect();
    let instance = InstanceRun::new(
        instance.meta.clone(),
        instance.facts.clone(),
        verdicts,
        vec![],
    );
    Run::new(base.meta.clone(), vec![instance])
}

fn bench(c: &mut Criterion) {
    let (b_fix, c_fix) = (fixture("baseline.json"), fixture("current.json"));
    let (pass, broken) = (template(&b_fix), template(&c_fix));
    let baseline = synthetic(&b_fix, |_| pass.clone());
    let current = synthetic(&c_fix, |i| {
        if i % 10 == 0 {
            broken.clone()
        } else {
            pass.clone()
        }
    });
    let side =
        |run: &Run| Side::new(vec![Sample::new("run.json", run.clone())]).expect("one sample");
    let (bs, cs) = (side(&baseline), side(&current));
    let cmp = compare(&bs, &cs, CompareOptions::default());
    assert_eq!(cmp.rows.len(), CHECKS);
    assert_eq!(cmp.exit_code, 1, "100 new failures");
    assert!(
        cmp.rows[0].evidence.len() > 20,
        "the evidence diff is computed"
    );

    c.bench_function("compare: 2 runs x 1,000 checks, in memory", |b| {
        b.iter(|| black_box(compare(&bs, &cs, CompareOptions::default())))
    });

    let inputs = vec![
        (
            PathBuf::from("baseline.json"),
            Arc::new(run_json(&baseline).into_bytes()),
        ),
        (
            PathBuf::from("current.json"),
            Arc::new(run_json(&current).into_bytes()),
        ),
    ];
    eprintln!(
        "run.json sizes: baseline {} KiB, current {} KiB",
        inputs[0].1.len() / 1024,
        inputs[1].1.len() / 1024
    );
    // The same two files for timing the whole command (BENCHMARKS.md).
    if let Some(dir) = std::env::var_os("COMPARE_BENCH_WRITE_DIR") {
        for (name, bytes) in &inputs {
            std::fs::write(Path::new(&dir).join(name), bytes.as_slice()).expect("write run");
        }
    }
    let parse_and_compare = |inputs: &[(PathBuf, Arc<Vec<u8>>)]| {
        let mut samples = parse_all(inputs).expect("valid runs");
        let current = Side::new(samples.split_off(1)).expect("one sample");
        let baseline = Side::new(samples).expect("one sample");
        compare(&baseline, &current, CompareOptions::default())
    };
    let outputs = OutputPaths {
        markdown: Some(PathBuf::from("compare.md")),
        json: Some(PathBuf::from("compare.json")),
        junit: Some(PathBuf::from("compare.xml")),
    };
    let full = |inputs: &[(PathBuf, Arc<Vec<u8>>)]| {
        let cmp = parse_and_compare(inputs);
        let table = render_table(&cmp, false);
        (render_outputs(&cmp, &outputs).len(), table)
    };
    assert!(full(&inputs).1.contains("100 new failures"));
    c.bench_function(
        "compare: 2 runs x 1,000 checks, parse both + compare + the terminal table",
        |b| b.iter(|| black_box(render_table(&parse_and_compare(&inputs), false))),
    );
    c.bench_function(
        "compare: 2 runs x 1,000 checks, parse both + compare + render all four outputs",
        |b| b.iter(|| black_box(full(&inputs))),
    );

    // Where the time goes, step by step.
    c.bench_function("compare: step: parse both run.json texts", |b| {
        b.iter(|| black_box(parse_all(&inputs).expect("valid runs")))
    });
    let parsed = parse_and_compare(&inputs);
    c.bench_function("compare: step: compare the parsed runs", |b| {
        let mut samples = parse_all(&inputs).expect("valid runs");
        let current = Side::new(samples.split_off(1)).expect("one sample");
        let baseline = Side::new(samples).expect("one sample");
        b.iter(|| black_box(compare(&baseline, &current, CompareOptions::default())))
    });
    c.bench_function("compare: step: terminal table", |b| {
        b.iter(|| black_box(render_table(&parsed, false)))
    });
    c.bench_function("compare: step: Markdown", |b| {
        b.iter(|| black_box(render_markdown(&parsed)))
    });
    c.bench_function("compare: step: JSON", |b| {
        b.iter(|| black_box(render_json(&parsed)))
    });
    c.bench_function("compare: step: JUnit", |b| {
        b.iter(|| black_box(render_junit(&parsed)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
