//! The `cluster` target's parts: what it provisions and what it applies,
//! rendered from typed plans, and the kube-rs logic that reaches a cluster,
//! applies them and reads the probes' lines back. The target itself is
//! [`crate::target::cluster`].
//!
//! - [`k3d`]: the k3d `Simple` config (`k3d.io/v1alpha5`) and the ctlptl
//!   `Cluster` that embeds it, from a [`k3d::K3dPlan`] (server/agent counts, k3s
//!   image, ports). `fixtures/k3d/` holds what the default plan renders.
//! - [`values`]: checks on a Cilium Helm values file that the chart's JSON Schema
//!   is too loose to make (unknown keys, kube-proxy replacement without an API
//!   server address, routing mode and tunnel protocol spelled right), and the
//!   chart version `cargo xtask cluster up` installs.
//! - [`manifests`]: every object `--target cluster` applies (namespace, RBAC,
//!   probe DaemonSet, echo/client pods, services), as k8s-openapi types, and
//!   `--render-manifests DIR`, which writes them.
//! - [`inspect`]: the kubeconfig and context (kube's own loading), the nodes,
//!   Cilium's DaemonSet and ConfigMap (version, datapath settings), and the wait
//!   until nodes and Cilium's agents are Ready (`cargo xtask cluster up`).
//! - [`deploy`]: apply (server-side), wait for the probe pods, collect their
//!   JSON lines, delete the namespace — against any kube [`kube::Client`].
//! - [`collect`]: what a triage bundle takes from the cluster after a run
//!   (Cilium's status and configuration, each judged node's agent log, bounded).
//!
//! All of it is tested against a tower-test mock API server (and, for an
//! unreachable one, a real client pointed at 127.0.0.1:1); none of it has run
//! against a live cluster yet.

pub mod collect;
pub mod deploy;
pub mod inspect;
pub mod k3d;
pub mod manifests;
#[cfg(test)]
pub(crate) mod mock_api;
pub mod pod_checks;
pub mod values;
pub mod yaml;
