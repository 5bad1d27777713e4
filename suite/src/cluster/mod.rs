//! The `cluster` target's foundations: what it provisions and what it applies,
//! rendered from typed plans, and the kube-rs logic that applies them.
//!
//! Built and tested here (no cluster needed):
//! - [`k3d`]: the k3d `Simple` config (`k3d.io/v1alpha5`) and the ctlptl
//!   `Cluster` that embeds it, from a [`k3d::K3dPlan`] (server/agent counts, k3s
//!   image, ports). `fixtures/k3d/` holds what the default plan renders.
//! - [`values`]: checks on a Cilium Helm values file that the chart's JSON Schema
//!   is too loose to make (unknown keys, kube-proxy replacement without an API
//!   server address, routing mode and tunnel protocol spelled right).
//! - [`manifests`]: every object `--target cluster` applies (namespace, RBAC,
//!   probe DaemonSet, echo/client pods, services), as k8s-openapi types, and
//!   `--render-manifests DIR`, which writes them.
//! - [`deploy`]: apply (server-side), wait for the probe pods, collect their
//!   JSON lines, delete the namespace — against any kube [`kube::Client`]; tested
//!   through a tower-test mock API server.
//!
//! Not built yet: the run itself (a [`crate::target::Target`] for pods),
//! `cargo xtask cluster up|down|status`, cluster facts. None of this has run
//! against a live cluster.

pub mod deploy;
pub mod inspect;
pub mod k3d;
pub mod manifests;
pub mod values;
pub mod yaml;
