//! The probe's JSON line format and the check catalogue.
//!
//! This crate is the only thing the `probe` (where checks run) and the `suite`
//! (where verdicts are made) share. It has no I/O and no Linux-only code, so the
//! suite builds anywhere (a macOS laptop driving a k3d cluster) while the probe
//! stays a small static Linux binary.
//!
//! It is *not* for verdicts, matrices or reports: those live in `suite`.

pub mod catalogue;
pub mod facts;
pub mod guest;
pub mod lines;
pub mod pods;
pub mod readiness;
pub mod version;

pub use catalogue::{
    CATALOGUE, CheckSpec, EXPECTED_FACTS, ExpectedFact, ExpectedFailure, Failure, find_check,
};
pub use facts::{Bpffs, FACT_KEYS, FactKind, FactValue, Facts, HELPERS, Virtualization};
pub use lines::{Control, ControlOutcome, Done, Line, Observation, Outcome, Plan, PlannedCheck};
pub use readiness::{HelmValue, NeedRef, PLANNED, SETTINGS, Setting, find_setting};
pub use version::KernelVersion;

/// Version of the line format. Bump on any incompatible change; the suite refuses
/// streams with a schema it does not know.
pub const SCHEMA: u32 = 1;

/// The JSON Schema of one probe line ([`Line`]), as committed in
/// `contract/schema/probe-lines.v<SCHEMA>.schema.json` for tools outside Rust.
pub fn line_schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Line)).expect("schema serializes");
    schema["$id"] =
        format!("https://cilium-conformance.invalid/schema/probe-lines.v{SCHEMA}.schema.json")
            .into();
    schema["title"] = format!("cilium-conformance probe line, schema {SCHEMA}").into();
    schema
}

#[cfg(test)]
mod schema_tests {
    use super::*;

    /// The committed schema is what the types produce. Regenerate with
    /// `UPDATE_SCHEMA=1 cargo test -p conformance-contract` after a change, and bump
    /// [`SCHEMA`] when the change is incompatible.
    #[test]
    fn committed_schema_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("schema/probe-lines.v{SCHEMA}.schema.json"));
        let generated = serde_json::to_string_pretty(&line_schema()).unwrap() + "\n";
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale: run UPDATE_SCHEMA=1 cargo test -p conformance-contract",
            path.display()
        );
    }
}
