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
pub mod lines;
pub mod version;

pub use catalogue::{CATALOGUE, CheckSpec, find_check};
pub use facts::{Bpffs, FACT_KEYS, FactKind, FactValue, Facts, HELPERS, Virtualization};
pub use lines::{Control, ControlOutcome, Done, Line, Observation, Outcome, Plan, PlannedCheck};
pub use version::KernelVersion;

/// Version of the line format. Bump on any incompatible change; the suite refuses
/// streams with a schema it does not know.
pub const SCHEMA: u32 = 1;
