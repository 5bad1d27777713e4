//! The probe: runs checks where the datapath lives and prints JSON lines
//! (`conformance_contract::Line`) on stdout. Linux only.
#![cfg(target_os = "linux")]

pub mod btf;
pub mod cgroup;
pub mod checks;
pub mod counters;
pub mod facts;
pub mod guest;
pub mod hooks;
pub mod hops;
pub mod kernel_support;
pub mod loader;
pub mod mountns;
pub mod netlink;
pub mod netns;
pub mod nft;
mod nlmsg;
pub mod objects;
pub mod pins;
pub mod pods;
pub mod runner;
pub mod topology;
pub mod topology_scrub;
pub mod topology_two_nodes;
pub mod traffic;
pub mod triage;
pub mod tunnel_hooks;
pub mod xdp;
pub mod xfrm;
