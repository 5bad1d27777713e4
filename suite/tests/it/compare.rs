//! `cargo xtask compare` on a fixed pair of real runs (`fixtures/compare/`, two
//! lab runs with injected faults, trimmed by hand; see its README): snapshots of
//! the terminal table, the Markdown and the JUnit, the Markdown cut to a
//! budget, a run against itself, and runs with different instances.

use crate::fixture;
use conformance_suite::compare::{
    Class, CompareOptions, Comparison, OutputPaths, Presence, Sample, Side, compare, render_json,
    render_junit, render_markdown, render_markdown_limited, render_table, write_outputs,
};
use std::path::{Path, PathBuf};

/// A fixture run read as `cargo xtask compare` reads it (evidence kept raw),
/// named by its repository path so snapshots do not depend on the checkout.
fn sample(name: &str) -> Sample {
    let rel = format!("fixtures/compare/{name}");
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(&rel))
        .expect("compare fixture");
    Sample::parse(rel, bytes).unwrap_or_else(|e| panic!("{e}"))
}

fn side(samples: Vec<Sample>) -> Side {
    Side::new(samples).expect("a side has a run")
}

fn fixture_pair() -> Comparison {
    compare(
        &side(vec![sample("baseline.json")]),
        &side(vec![sample("current.json")]),
        CompareOptions::default(),
    )
}

#[test]
fn fixture_pair_classes() {
    let c = fixture_pair();
    let got: Vec<(String, Class)> = c.rows.iter().map(|r| (r.name(), r.class)).collect();
    let want = [
        ("datapath.redirect-peer[tcx]", Class::NewFailure),
        ("datapath.redirect-peer[legacy]", Class::NewFailure),
        ("tc.attach.tcx[tcx]", Class::StillFailing),
        ("datapath.stack-delivery[tcx]", Class::StillFailing),
        ("datapath.host-to-pod", Class::Fixed),
        ("datapath.pod-to-host", Class::Added),
        ("tc.attach.legacy[legacy]", Class::Removed),
        ("datapath.redirect-peer.scrub", Class::Unchanged),
        ("env.bpffs.propagation[private]", Class::Unchanged),
    ];
    let want: Vec<(String, Class)> = want.iter().map(|(n, c)| (n.to_string(), *c)).collect();
    assert_eq!(got, want);
    assert_eq!(c.exit_code, 1);
    let lab = &c.instances[0];
    assert_eq!(lab.presence, Presence::Both);
    assert_eq!(
        lab.facts_changed[0].arrow(),
        "6.18.44-fc-v1045 → 6.18.45-fc-v1046"
    );
    // The same failure in both runs, with only run ids differing, moved nothing.
    let stack = c
        .rows
        .iter()
        .find(|r| r.check == "datapath.stack-delivery")
        .unwrap();
    assert!(stack.evidence.is_empty(), "{:?}", stack.evidence);
    // A new failure names the hop where the packets stopped.
    let peer = &c.rows[0];
    assert!(
        peer.evidence
            .iter()
            .any(|e| e.line() == "pod A eth0 tx: 5/5 → 0/5"),
        "{:?}",
        peer.evidence
    );
    assert!(
        peer.evidence
            .iter()
            .any(|e| e.line() == "control: outcome: blocked → error")
    );
}

#[test]
fn table_snapshot() {
    let table = render_table(&fixture_pair(), false);
    assert!(!table.contains('\x1b'));
    insta::assert_snapshot!("table", table);
}

#[test]
fn markdown_snapshot() {
    insta::assert_snapshot!("markdown", render_markdown(&fixture_pair()));
}

#[test]
fn junit_snapshot() {
    insta::assert_snapshot!("junit", render_junit(&fixture_pair()));
}

#[test]
fn markdown_is_cut_to_its_budget_with_a_note() {
    let c = fixture_pair();
    let full = render_markdown(&c);
    for limit in [3000, 4096, 8192] {
        assert!(
            full.len() > limit,
            "the fixture must need cutting at {limit}"
        );
        let cut = render_markdown_limited(&c, limit);
        assert!(cut.len() <= limit, "{} > {limit}", cut.len());
        assert!(cut.contains("> **Cut to fit "), "{cut}");
        assert!(cut.contains("the `--json` output of `cargo xtask compare` has everything"));
        assert_eq!(
            cut.matches("<details>").count(),
            cut.matches("</details>").count(),
            "a folded section is always closed"
        );
        assert!(cut.starts_with("## cilium-conformance compare: got worse (exit 1)"));
    }
    let tiny = render_markdown_limited(&c, 3000);
    assert!(tiny.contains("evidence of "), "{tiny}");
    assert!(!render_markdown(&c).contains("Cut to fit"));
}

#[test]
fn a_run_against_itself_exits_0() {
    let c = compare(
        &side(vec![sample("current.json")]),
        &side(vec![sample("current.json")]),
        CompareOptions::default(),
    );
    assert_eq!(c.exit_code, 0);
    assert!(
        c.rows
            .iter()
            .all(|r| matches!(r.class, Class::Unchanged | Class::StillFailing))
    );
    assert!(c.rows.iter().all(|r| r.evidence.is_empty()));
    assert!(c.instances[0].facts_changed.is_empty());
    let table = render_table(&c, false);
    assert!(table.ends_with("nothing got worse (exit 0)\n"), "{table}");
}

#[test]
fn instances_only_one_side_has_are_removed_rows_not_errors() {
    let both = fixture::two_instance_run(false);
    let in_container = both.instances[1].verdicts.len();
    let b = side(vec![Sample::new("lab-and-container.json", both)]);
    let c = side(vec![Sample::new("lab.json", fixture::run(false))]);
    let cmp = compare(&b, &c, CompareOptions::default());
    assert_eq!(cmp.exit_code, 0);
    let container: Vec<_> = cmp
        .rows
        .iter()
        .filter(|r| r.instance.starts_with("container/"))
        .collect();
    assert_eq!(container.len(), in_container);
    assert!(container.iter().all(|r| r.class == Class::Removed));
    assert_eq!(cmp.instances[1].presence, Presence::BaselineOnly);
    let table = render_table(&cmp, false);
    assert!(
        table.contains("instance container/cc-abc123 only in the baseline"),
        "{table}"
    );
    assert!(
        table.contains("INSTANCE"),
        "rows name their instance: {table}"
    );
    insta::assert_snapshot!("table_instance_removed", table);
}

#[test]
fn outputs_are_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let paths = OutputPaths {
        markdown: Some(dir.path().join("out/compare.md")),
        json: Some(dir.path().join("out/compare.json")),
        junit: Some(dir.path().join("out/compare.xml")),
    };
    paths.preflight(&[]).unwrap();
    let c = fixture_pair();
    write_outputs(&c, &paths).unwrap();
    let read = |p: &Option<PathBuf>| std::fs::read_to_string(p.as_ref().unwrap()).unwrap();
    assert_eq!(read(&paths.markdown), render_markdown(&c));
    assert_eq!(read(&paths.junit), render_junit(&c));
    let json: serde_json::Value = serde_json::from_str(&read(&paths.json)).unwrap();
    assert_eq!(
        json,
        serde_json::from_str::<serde_json::Value>(&render_json(&c)).unwrap()
    );
    assert_eq!(json["rows"][0]["class"], "new-failure");
    assert_eq!(json["rows"][0]["current"]["failure"], "not-delivered");
    let names = std::fs::read_dir(dir.path().join("out")).unwrap().count();
    assert_eq!(names, 3, "no temporary files left");
}
