//! Turns probe observations into verdicts and reports.
