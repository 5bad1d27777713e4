//! Turns probe observations into verdicts and reports.
pub mod env;
pub mod matrix;
