//! Turns probe observations into verdicts and reports.
//!
//! The flow, one module per step: [`select`] picks the checks, the probe runs
//! them elsewhere, [`stream`] reads its JSON lines, [`env`] and [`matrix`] say
//! what to expect, [`verdict`] judges, [`report`] writes JUnit, JSON, Markdown
//! and the terminal table, and [`error`] maps the outcome to an exit code.
//! [`target`] gets the probe to where the datapath is and hands back its lines.
//!
//! Not here: executing checks. The suite never touches the datapath; targets
//! only carry the probe's lines back, and the suite judges what it reported.

pub mod cilium_values;
pub mod cluster;
pub mod compare;
pub mod env;
pub mod error;
pub mod explain;
pub mod matrix;
pub mod progress;
pub mod readiness;
pub mod report;
pub mod scrub_fix;
pub mod select;
pub mod stream;
pub mod target;
pub mod triage;
pub mod verdict;

pub use error::{EXIT_INFRA, EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, Error, exit_code_for};
