//! Integration tests, one binary (links once): the shipped matrices, and the
//! reports of a fixed run (snapshots, JUnit schema validation, file writing).

mod compare;
mod fixture;
mod matrices;
mod reports;
