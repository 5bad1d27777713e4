//! Reports of the fixed run in `fixture.rs`: snapshots of what humans and CI
//! read, the JUnit schema, and the files on disk.

use crate::fixture;
use conformance_suite::report::{
    ReportPaths, Run, render_json, render_junit, render_markdown, render_table, write_reports,
};
use conformance_suite::verdict::VerdictKind;
use std::path::PathBuf;

#[test]
fn fixture_run_covers_every_verdict_kind() {
    let run = fixture::run(false);
    for kind in VerdictKind::ALL {
        assert!(run.counts.get(kind) > 0, "no {kind} verdict in the fixture");
    }
    assert_eq!(run.counts.total, 11);
    assert_eq!(run.exit_code(), 1, "the regression decides the exit code");
}

#[test]
fn junit_snapshot() {
    insta::assert_snapshot!("junit", render_junit(&fixture::run(false)));
}

#[test]
fn markdown_snapshot() {
    insta::assert_snapshot!("markdown", render_markdown(&fixture::run(false)));
}

#[test]
fn table_snapshot_without_colour() {
    let table = render_table(&fixture::run(false), false);
    assert!(!table.contains('\x1b'));
    insta::assert_snapshot!("table", table);
}

#[test]
fn table_colours_only_the_verdict_column_when_asked() {
    let table = render_table(&fixture::run(false), true);
    let regression = table.lines().find(|l| l.contains("REGRESSION")).unwrap();
    assert!(
        regression.starts_with("\x1b[1;31mREGRESSION"),
        "{regression:?}"
    );
    assert_eq!(
        regression.matches('\x1b').count(),
        2,
        "one colour on, one reset: {regression:?}"
    );
}

#[test]
fn strict_junit_fails_the_unexpected_pass() {
    let lax = render_junit(&fixture::run(false));
    let strict = render_junit(&fixture::run(true));
    assert!(!lax.contains("type=\"unexpected-pass\""));
    assert!(lax.contains("<system-out>unexpected pass (not failing: run is not strict)"));
    assert!(strict.contains("<failure type=\"unexpected-pass\""));
    assert!(strict.contains("failures=\"2\"") && lax.contains("failures=\"1\""));
}

#[test]
fn json_round_trips() {
    let run = fixture::run(false);
    let json = render_json(&run);
    let back: Run = serde_json::from_str(&json).unwrap();
    assert_eq!(back, run);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["verdicts"][2]["verdict"], "regression");
    assert_eq!(v["verdicts"][2]["expected"]["decided_by"]["by"], "entry");
    assert_eq!(v["verdicts"][8]["expected"]["decided_by"]["by"], "override");
    assert_eq!(v["environment_source"]["source"], "given");
    assert_eq!(v["stream_problems"][0]["problem"], "no-done");
}

#[test]
fn write_reports_writes_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let paths = ReportPaths::in_dir(&dir.path().join("reports"));
    paths.preflight().unwrap();
    let run = fixture::run(false);
    write_reports(&run, &paths).unwrap();
    let read = |p: &Option<PathBuf>| std::fs::read_to_string(p.as_ref().unwrap()).unwrap();
    assert_eq!(read(&paths.junit), render_junit(&run));
    assert_eq!(read(&paths.json), render_json(&run));
    assert_eq!(read(&paths.markdown), render_markdown(&run));
    let names: Vec<String> = std::fs::read_dir(dir.path().join("reports"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "no temporary files left: {names:?}");
}
