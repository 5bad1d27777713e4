//! Every check can be turned red: for each check in the catalogue, each of its
//! `faults` (contract/src/catalogue.rs; a contract test requires at least one)
//! must make that check, every variant expected to pass, a `regression` and leave
//! every other check as a clean run has it, with exit code 1. Run for real
//! through `cargo xtask conformance --fault`, one full lab run per check and fault.

use crate::support::{
    Needs, Test, TestResult, clean_verdict, ensure, expected_observations, verdicts, xtask,
};
use conformance_contract::CATALOGUE;

pub const TESTS: &[(&str, Needs, Test)] = &[(
    "faults::each_fault_turns_only_its_check_into_a_regression",
    Needs::Root,
    each_fault_turns_only_its_check_into_a_regression,
)];

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
    for spec in CATALOGUE {
        let check = spec.id;
        // A check none of whose variants can run here (its precondition fact is
        // missing: netkit without CONFIG_NETKIT) cannot be turned red here.
        if spec
            .variants
            .iter()
            .all(|v| crate::support::unsupported_here(check, v))
        {
            eprintln!(
                "faults: skipped {check} (every variant unsupported here: its precondition facts are missing)"
            );
            continue;
        }
        for fault in spec.faults {
            if let Err(e) = fault_breaks_only(check, fault) {
                wrong.push(format!("--fault {check}={fault}: {e}"));
            }
        }
    }
    ensure(wrong.is_empty(), || wrong.join("\n"))
}
