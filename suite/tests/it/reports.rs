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
    assert_eq!(v["schema"], 2);
    assert_eq!(v["verdicts"][2]["verdict"], "regression");
    assert_eq!(v["verdicts"][2]["instance"], "lab/this host");
    assert_eq!(v["verdicts"][2]["expected"]["decided_by"]["by"], "entry");
    assert_eq!(v["verdicts"][8]["expected"]["decided_by"]["by"], "override");
    assert_eq!(v["counts"]["total"], 11);
    assert_eq!(v["probe"]["version"], "0.1.0");
    let lab = &v["instances"][0];
    assert_eq!(lab["instance"]["name"], "this host");
    assert_eq!(lab["environment_source"]["source"], "given");
    assert_eq!(lab["stream_problems"][0]["problem"], "no-done");
    assert_eq!(lab["facts"]["kernel_release"], "6.6.80-example");
}

#[test]
fn two_instance_json_round_trips_with_every_instance() {
    let run = fixture::two_instance_run(false);
    let json = render_json(&run);
    let back: Run = serde_json::from_str(&json).unwrap();
    assert_eq!(back, run);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["counts"]["total"], 22);
    assert_eq!(v["verdicts"].as_array().unwrap().len(), 22);
    assert_eq!(v["verdicts"][11]["instance"], "container/cc-abc123");
    let container = &v["instances"][1];
    assert_eq!(container["instance"]["arch"], "aarch64");
    assert_eq!(container["environment"], "container");
    assert_eq!(container["facts"]["page_size"], 16384);
    assert_eq!(container["counts"]["total"], 11);
    assert_eq!(
        container["preamble"][1], "mounting bpffs at /sys/fs/bpf",
        "skipped transport lines are kept as a note"
    );
    assert!(
        v["probe"]["version"]
            .as_str()
            .unwrap()
            .contains("0.1.0; 0.1.0, started docker"),
        "{}",
        v["probe"]
    );
    // The check × instance table, as the terminal and summary.md show it.
    assert_eq!(
        v["table"]["columns"],
        serde_json::json!(["lab/this host", "container/cc-abc123"])
    );
    let rows = v["table"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), run.check_rows().len());
    for row in rows {
        let (check, variant) = (
            row["check"].as_str().unwrap(),
            row["variant"].as_str().unwrap(),
        );
        for (i, instance) in run.instances.iter().enumerate() {
            let want = instance
                .verdicts
                .iter()
                .find(|x| x.check == check && x.variant == variant)
                .map_or("-", |x| x.verdict.as_str());
            assert_eq!(
                row["verdicts"][i],
                want,
                "{check}[{variant}] on {}",
                instance.label()
            );
        }
    }
    assert!(
        !render_json(&fixture::run(false)).contains("\"table\""),
        "one instance: no table"
    );
    let orphan = json.replace(
        "\"instance\": \"lab/this host\"",
        "\"instance\": \"lab/elsewhere\"",
    );
    let e = serde_json::from_str::<Run>(&orphan).unwrap_err();
    assert!(e.to_string().contains("lab/elsewhere"), "{e}");
}

#[test]
fn exit_code_is_over_every_instance() {
    let run = fixture::two_instance_run(false);
    assert_eq!(run.exit_code(), 1, "the lab's regression decides");
    assert_eq!(run.instances[1].exit_code(false), 0);
    let mut clean = run.clone();
    clean.instances.remove(0);
    let clean = Run::new(clean.meta, clean.instances);
    assert_eq!(clean.exit_code(), 0);
}

#[test]
fn two_instance_junit_snapshot() {
    let junit = render_junit(&fixture::two_instance_run(false));
    assert_eq!(junit.matches("<testsuite ").count(), 2);
    insta::assert_snapshot!("junit_two_instances", junit);
}

#[test]
fn two_instance_markdown_snapshot() {
    insta::assert_snapshot!(
        "markdown_two_instances",
        render_markdown(&fixture::two_instance_run(false))
    );
}

#[test]
fn two_instance_table_snapshot_fits_100_columns() {
    let table = render_table(&fixture::two_instance_run(false), false);
    let grid: Vec<&str> = table
        .lines()
        .take_while(|l| !l.starts_with("lab/this host REGRESSION"))
        .collect();
    for l in &grid {
        assert!(l.chars().count() <= 100, "wider than 100 columns: {l}");
    }
    insta::assert_snapshot!("table_two_instances", table);
}

#[test]
fn every_instance_carries_its_readiness() {
    let run = fixture::two_instance_run(false);
    let json = render_json(&run);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let settings = conformance_contract::SETTINGS.len();
    for i in 0..2 {
        let rows = v["instances"][i]["readiness"].as_array().unwrap();
        assert_eq!(rows.len(), settings);
    }
    let lab = &v["instances"][0]["readiness"];
    let base = &lab[0];
    assert_eq!(base["setting"], "base-datapath");
    assert_eq!(base["state"], "not-ready");
    assert!(
        base["reason"]
            .as_str()
            .unwrap()
            .starts_with("datapath.stack-delivery[tcx] REGRESSION: 5/5 passed the hook"),
        "{}",
        base["reason"]
    );
    assert_eq!(base["needs"][0]["variants"][0]["verdict"], "regression");
    let host_routing = lab
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["setting"] == "bpf-host-routing")
        .unwrap();
    assert_eq!(host_routing["state"], "unknown");
    assert!(host_routing.get("wanted").is_none());
    assert!(v.get("cilium_values").is_none());
    // Readiness alone never changes the exit code, nor the JUnit failures.
    assert_eq!(run.exit_code(), 1);
    let container_only = Run::new(run.meta.clone(), vec![run.instances[1].clone()]);
    assert_eq!(container_only.exit_code(), 0);
    let junit = render_junit(&fixture::run(false));
    assert_eq!(
        junit.matches("<failure").count(),
        1,
        "only the regression fails"
    );
    assert!(junit.contains("<testcase name=\"base-datapath\" classname=\"readiness\""));
    assert!(junit.contains("<skipped type=\"not-ready\""));
}

#[test]
fn cilium_values_gate_the_exit_code() {
    let run = fixture::values_run(false);
    assert_eq!(run.exit_code(), 1);
    let v: serde_json::Value = serde_json::from_str(&render_json(&run)).unwrap();
    assert_eq!(v["cilium_values"], "cilium-values.yaml");
    let rows = v["instances"][0]["readiness"].as_array().unwrap();
    let wanted = |id: &str| {
        rows.iter().find(|r| r["setting"] == id).unwrap()["wanted"]["outcome"]
            .as_str()
            .map(str::to_string)
    };
    assert_eq!(wanted("base-datapath").as_deref(), Some("not-supported"));
    assert_eq!(wanted("native-routing").as_deref(), Some("supported"));
    assert_eq!(wanted("bpf-host-routing").as_deref(), Some("unknown"));
    assert_eq!(wanted("legacy-tc-attach"), None, "not turned on");
    let back: Run = serde_json::from_str(&render_json(&run)).unwrap();
    assert_eq!(back, run);
    // Without the regression the values alone make it 1.
    let mut clean = run.clone();
    for verdict in &mut clean.instances[0].verdicts {
        if verdict.verdict == VerdictKind::Regression {
            verdict.verdict = VerdictKind::Error;
        }
    }
    clean.instances[0].counts = conformance_suite::report::Counts::of(&clean.instances[0].verdicts);
    let clean = Run::new(clean.meta, clean.instances);
    assert_eq!(clean.counts.regression, 0);
    assert_eq!(clean.exit_code(), 1, "1 wins over 3");
    assert_eq!(
        clean.outcome_phrase(),
        "Cilium values not supported here (exit 1)"
    );
    assert_eq!(
        run.outcome_phrase(),
        "regression; Cilium values not supported here (exit 1)"
    );
    let junit = render_junit(&run);
    assert!(junit.contains("<failure type=\"not-supported\" message=\"not supported here, turned on by cilium-values.yaml (every install): datapath.stack-delivery[tcx] REGRESSION"), "{junit}");
}

#[test]
fn cilium_values_snapshots() {
    let run = fixture::values_run(false);
    insta::assert_snapshot!("junit_values", render_junit(&run));
    insta::assert_snapshot!("markdown_values", render_markdown(&run));
    insta::assert_snapshot!("table_values", render_table(&run, false));
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
