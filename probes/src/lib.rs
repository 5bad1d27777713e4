//! The probe: runs checks where the datapath lives and prints JSON lines
//! (`conformance_contract::Line`) on stdout. Linux only.
#![cfg(target_os = "linux")]

pub mod netns;
