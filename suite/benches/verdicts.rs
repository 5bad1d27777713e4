//! How long judging and reporting take for a large run: loading and validating
//! the shipped matrices, evaluating 200 observations, and rendering JUnit and
//! Markdown for 200 verdicts. The catalogue has 11 (check, variant) pairs, so
//! the 200 observations are judged as consecutive runs of the whole catalogue
//! (a (check, variant) seen twice in one run is an error, not a verdict).

use conformance_contract::{Control, ControlOutcome, Observation, Outcome, PlannedCheck};
use conformance_suite::env::Environment;
use conformance_suite::matrix::Matrix;
use conformance_suite::report::{InstanceRun, Run, render_junit, render_markdown};
use conformance_suite::verdict::{Verdict, evaluate};
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use std::path::PathBuf;

#[path = "../tests/it/fixture.rs"]
mod fixture;

const OBSERVATIONS: usize = 200;

fn observations() -> Vec<Observation> {
    let pairs = fixture::plan();
    (0..OBSERVATIONS)
        .map(|i| {
            let p = &pairs[i % pairs.len()];
            let fail = i % 7 == 3;
            let control = Control {
                description: "program returns TC_ACT_SHOT".into(),
                outcome: ControlOutcome::Blocked,
                reason: "0/5 delivered".into(),
                evidence: Default::default(),
            };
            fixture::obs(
                &p.check,
                &p.variant,
                if fail { Outcome::Fail } else { Outcome::Pass },
                if fail { "0/5 datagrams reached 10.42.0.1:47474 in ns host" } else { "5/5 datagrams delivered" },
                serde_json::json!({"sent": 5, "received": if fail { 0 } else { 5 }, "skb": {"ifindex": 7, "hash": 1234}}),
                Some(control),
                40.0,
            )
        })
        .collect()
}

fn judge_all(matrix: &Matrix, observations: &[Observation], plan: &[PlannedCheck]) -> Vec<Verdict> {
    let facts = fixture::facts();
    observations
        .chunks(plan.len())
        .flat_map(|run| evaluate(matrix, &facts, &plan[..run.len()], run))
        .collect()
}

fn bench(c: &mut Criterion) {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let texts: Vec<(PathBuf, String)> = Environment::ALL
        .iter()
        .map(|e| {
            let path = e.matrix_path(&fixtures);
            let text = std::fs::read_to_string(&path).expect("shipped matrix");
            (path, text)
        })
        .collect();
    c.bench_function("matrix: parse + validate the 3 shipped matrices", |b| {
        b.iter(|| {
            for (path, text) in &texts {
                black_box(Matrix::parse(path, text).unwrap());
            }
        })
    });

    let matrix = Matrix::load(Environment::Vm.matrix_path(&fixtures)).unwrap();
    let observations = observations();
    let plan = fixture::plan();
    c.bench_function("verdicts: load vm.toml + evaluate 200 observations", |b| {
        b.iter(|| {
            let matrix = Matrix::load(Environment::Vm.matrix_path(&fixtures)).unwrap();
            black_box(judge_all(&matrix, &observations, &plan))
        })
    });

    let verdicts = judge_all(&matrix, &observations, &plan);
    assert_eq!(verdicts.len(), OBSERVATIONS);
    let instance = InstanceRun::new(fixture::instance_meta(), fixture::facts(), verdicts, vec![]);
    let run = Run::new(fixture::meta(false), vec![instance]);
    c.bench_function("report: render JUnit for 200 verdicts", |b| {
        b.iter(|| black_box(render_junit(&run)))
    });
    c.bench_function("report: render Markdown for 200 verdicts", |b| {
        b.iter(|| black_box(render_markdown(&run)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
