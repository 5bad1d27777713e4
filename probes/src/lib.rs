//! The probe: runs checks where the datapath lives and prints JSON lines
//! (`conformance_contract::Line`) on stdout. Linux only.
#![cfg(target_os = "linux")]

pub mod netns;
pub mod counters;
pub mod netlink;
pub mod topology;
pub mod checks;
pub mod hooks;
pub mod traffic;
pub mod runner;
pub mod objects;
pub mod facts;
