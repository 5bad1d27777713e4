//! Every check can be turned red: for each check in the catalogue, an injected
//! fault that must make that check — every variant expected to pass — a
//! `regression` and leave every other check as a clean run has it, with exit code 1. Run for real through `cargo xtask
//! conformance --fault`, one full lab run per row and fault.

use crate::support::{
    Needs, Test, TestResult, clean_verdict, ensure, expected_observations, verdicts, xtask,
};
use conformance_contract::CATALOGUE;

pub const TESTS: &[(&str, Needs, Test)] = &[
    (
        "faults::every_catalogue_check_has_a_fault",
        Needs::Nothing,
        every_catalogue_check_has_a_fault,
    ),
    (
        "faults::each_fault_turns_only_its_check_into_a_regression",
        Needs::Root,
        each_fault_turns_only_its_check_into_a_regression,
    ),
];

/// Check id → the faults (`probe --fault ID=<fault>`) that must break it. `drop` is a
/// program dropping the check's traffic on pod A's eth0 (egress; ingress when the
/// host sends); `no-route` removes the route that traffic needs. The scrub check
/// sends raw frames, which need no route: only `drop` breaks it.
pub const FAULTS: &[(&str, &[&str])] = &[
    ("tc.attach.tcx", &["drop", "no-route"]),
    ("tc.attach.legacy", &["drop", "no-route"]),
    ("datapath.stack-delivery", &["drop", "no-route"]),
    ("datapath.stack-delivery.redirect", &["drop", "no-route"]),
    ("datapath.redirect-peer", &["drop", "no-route"]),
    ("datapath.redirect-peer.scrub", &["drop"]),
    ("datapath.pod-to-host", &["drop", "no-route"]),
    ("datapath.host-to-pod", &["drop", "no-route"]),
    // `drop` unlinks the agent's pin: no traffic, no route.
    ("env.bpffs.propagation", &["drop"]),
];

/// Table rows for ids not in the catalogue, and catalogue ids without a fault.
fn table_gaps(table: &[(&str, &[&str])], catalogue: &[&str]) -> (Vec<String>, Vec<String>) {
    let unknown = table
        .iter()
        .filter(|(id, _)| !catalogue.contains(id))
        .map(|(id, _)| id.to_string())
        .collect();
    let uncovered = catalogue
        .iter()
        .filter(|id| {
            !table
                .iter()
                .any(|(t, faults)| t == *id && !faults.is_empty())
        })
        .map(|id| id.to_string())
        .collect();
    (unknown, uncovered)
}

fn every_catalogue_check_has_a_fault() -> TestResult {
    let ids: Vec<&str> = CATALOGUE.iter().map(|c| c.id).collect();
    let (unknown, uncovered) = table_gaps(FAULTS, &ids);
    ensure(uncovered.is_empty(), || {
        format!("catalogue checks with no fault that breaks them: {uncovered:?}")
    })?;
    ensure(unknown.is_empty(), || {
        format!("fault table rows for checks not in the catalogue: {unknown:?}")
    })?;
    // The gap finder itself sees both kinds of gap.
    let (u, c) = table_gaps(&[("x", &["drop"]), ("y", &[])], &["y", "z"]);
    ensure(u == ["x"] && c == ["y", "z"], || format!("{u:?} {c:?}"))
}

/// One full run with `check=fault`: exit 1, every variant of `check` expected to
/// pass a regression, everything else as in a clean run, one verdict per catalogue
/// variant.
fn fault_breaks_only(check: &str, fault: &str) -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let spec = format!("{check}={fault}");
    let (code, stdout, stderr) = xtask(
        &["conformance", "--env", "vm", "--fault", &spec],
        dir.path(),
    )?;
    ensure(code == Some(1), || {
        format!("exit {code:?}, want 1\n{stdout}\n{stderr}")
    })?;
    let v = verdicts(dir.path())?;
    ensure(v.len() == expected_observations(), || {
        format!("{} verdicts, want {}", v.len(), expected_observations())
    })?;
    let mut hit = 0;
    for (c, variant, verdict) in &v {
        let clean = clean_verdict(c, variant);
        let want = if c == check && clean == "pass" {
            "regression"
        } else {
            clean
        };
        hit += usize::from(c == check);
        ensure(verdict == want, || {
            format!("{c}[{variant}] is {verdict}, want {want}")
        })?;
    }
    ensure(hit == crate::support::variants_of(check), || {
        format!("{hit} verdicts for {check}")
    })
}

fn each_fault_turns_only_its_check_into_a_regression() -> TestResult {
    let mut wrong = Vec::new();
    for (check, faults) in FAULTS {
        for fault in *faults {
            if let Err(e) = fault_breaks_only(check, fault) {
                wrong.push(format!("--fault {check}={fault}: {e}"));
            }
        }
    }
    ensure(wrong.is_empty(), || wrong.join("\n"))
}
