//! Applying a run's [`Manifest`]s to a cluster and getting the probes' lines
//! back, with any [`kube::Client`]: server-side apply of every object, a wait
//! until each node's probe pod is Ready (its probe init container finished), each
//! probe's log (its JSON lines), and the namespace deleted — also when a step
//! failed ([`Deployer::run`]).
//!
//! Tested against a tower-test mock API server (below): the requests' methods,
//! paths, parameters and bodies, and the error paths (an image that cannot be
//! pulled, a pod that never becomes Ready, a probe that failed, the API
//! refusing an object). Not yet run against a live cluster.
//!
//! Waiting polls (a list every `interval`, at most `polls` times) rather than
//! watching: one request shape, simple to reason about and to mock, and at a
//! second's interval no slower for a run that takes seconds. Failures that
//! waiting cannot cure end the wait at once: an image pull error (the probe
//! image is node-local, `IfNotPresent`: a failed pull will not succeed later), a
//! probe that exited non-zero.
//!
//! Interruption: dropping [`Deployer::run`]'s future (Ctrl-C, the runner's
//! timeout) skips its teardown, so the caller then awaits
//! [`Deployer::delete_namespace`]; a run killed outright leaves a namespace
//! labelled `cilium-conformance/run-id` and annotated with when it is over for
//! sure; a later run's [`Deployer::sweep_expired`] deletes it past that.

use super::inspect::NodeInfo;
use super::manifests::{
    CLIENT_CONTAINER, ECHO_TCP_PORT, EXPIRES_ANNOTATION, Manifest, ManifestPlan, PROBE_CONTAINER,
    RUN_LABEL, SLOT_LABEL,
};
use super::pod_checks::{ClientSpec, NodeSlot, Topology};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ContainerStatus, Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::time::Duration;

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "cilium-conformance";

/// Waiting reasons after which a pod will not start without a change.
const IMAGE_PULL_REASONS: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployError {
    #[error("apply {object}: {message}")]
    Apply { object: String, message: String },
    #[error(
        "image pull failed: pod {} (node {}), container {}, image {}: {}: {}",
        .0.pod, .0.node, .0.container, .0.image, .0.reason, .0.message
    )]
    ImagePull(Box<ImagePullFailure>),
    #[error("the probe failed in pod {pod} (node {node}): {detail}")]
    ProbeFailed {
        pod: String,
        node: String,
        detail: String,
    },
    #[error("pod {pod} (node {node}) not Ready after {seconds} s: {why}")]
    NotReady {
        pod: String,
        node: String,
        seconds: u64,
        why: String,
    },
    #[error("DaemonSet {daemonset} had no pod scheduled after {seconds} s (desired {desired})")]
    NoPods {
        daemonset: String,
        seconds: u64,
        desired: i32,
    },
    #[error("{op}: {message}")]
    Api { op: String, message: String },
    #[error("deleting namespace {namespace}: {message}")]
    Delete { namespace: String, message: String },
}

/// Where an image could not be pulled, and the kubelet's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePullFailure {
    pub pod: String,
    pub node: String,
    pub container: String,
    pub image: String,
    pub reason: String,
    pub message: String,
}

/// One pod's output: a probe's log (one JSON line each, empty lines dropped)
/// or a client's observation lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLines {
    pub node: String,
    pub pod: String,
    pub lines: Vec<String>,
}

/// How long to wait for the probe pods: `polls` lists, `interval` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitPolicy {
    pub polls: u32,
    pub interval: Duration,
}

impl WaitPolicy {
    /// About `timeout`, polling every second.
    pub fn for_timeout(timeout: Duration) -> WaitPolicy {
        WaitPolicy {
            polls: timeout.as_secs().max(1) as u32,
            interval: Duration::from_secs(1),
        }
    }

    /// The whole wait, in seconds.
    pub fn seconds(&self) -> u64 {
        (self.interval * self.polls).as_secs()
    }
}

/// One line from the API's error (its own message where it sent one).
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", status.reason)
            };
            format!("{}{reason}", status.message.replace('\n', " "))
        }
        other => other.to_string().replace('\n', " "),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// A run's objects on one cluster.
pub struct Deployer {
    client: Client,
    namespace: String,
    run_id: String,
}

impl Deployer {
    pub fn new(client: Client, plan: &ManifestPlan) -> Deployer {
        Deployer {
            client,
            namespace: plan.namespace(),
            run_id: plan.run_id.clone(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Apply, wait, collect; the namespace is deleted afterwards whatever
    /// happened. The first error wins; a failed deletion is reported only when
    /// everything else went well.
    pub async fn run(
        &self,
        manifests: &[Manifest],
        wait: WaitPolicy,
    ) -> Result<Vec<NodeLines>, DeployError> {
        let result = async {
            self.apply_all(manifests).await?;
            let pods = self.wait_for_probes(wait).await?;
            self.collect(&pods).await
        }
        .await;
        let deleted = self.delete_namespace().await;
        let lines = result?;
        deleted?;
        Ok(lines)
    }

    /// Server-side apply of every object, in order, forcing our field manager.
    pub async fn apply_all(&self, manifests: &[Manifest]) -> Result<(), DeployError> {
        for m in manifests {
            let r = match m {
                Manifest::Namespace(o) => {
                    apply(Api::<Namespace>::all(self.client.clone()), o).await
                }
                Manifest::ServiceAccount(o) => self.apply_namespaced(o).await,
                Manifest::Role(o) => self.apply_namespaced(o).await,
                Manifest::RoleBinding(o) => self.apply_namespaced(o).await,
                Manifest::DaemonSet(o) => self.apply_namespaced(o).await,
                Manifest::Pod(o) => self.apply_namespaced(o).await,
                Manifest::Service(o) => self.apply_namespaced(o).await,
            };
            r.map_err(|e| DeployError::Apply {
                object: m.label(),
                message: api_message(&e),
            })?;
        }
        Ok(())
    }

    async fn apply_namespaced<K>(&self, object: &K) -> Result<(), kube::Error>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + Debug,
    {
        apply(
            Api::<K>::namespaced(self.client.clone(), &self.namespace),
            object,
        )
        .await
    }

    fn probe_selector(&self) -> String {
        format!(
            "app.kubernetes.io/name=cilium-conformance-probe,{RUN_LABEL}={}",
            self.run_id
        )
    }

    /// Waits until the probe DaemonSet has a Ready pod on every node it wants
    /// one on; returns those pods.
    pub async fn wait_for_probes(&self, wait: WaitPolicy) -> Result<Vec<Pod>, DeployError> {
        let daemonsets = Api::<DaemonSet>::namespaced(self.client.clone(), &self.namespace);
        let pods_api = Api::<Pod>::namespaced(self.client.clone(), &self.namespace);
        let selector = ListParams::default().labels(&self.probe_selector());
        let name = super::manifests::PROBE_DAEMONSET;
        let mut last: Vec<Pod> = Vec::new();
        let mut desired = 0;
        for poll in 0..wait.polls.max(1) {
            if poll > 0 {
                tokio::time::sleep(wait.interval).await;
            }
            let ds = daemonsets.get(name).await.map_err(|e| DeployError::Api {
                op: format!("get DaemonSet {name}"),
                message: api_message(&e),
            })?;
            desired = ds
                .status
                .as_ref()
                .map(|s| s.desired_number_scheduled)
                .unwrap_or(0);
            let pods = pods_api
                .list(&selector)
                .await
                .map_err(|e| DeployError::Api {
                    op: format!("list pods {}", self.probe_selector()),
                    message: api_message(&e),
                })?
                .items;
            for pod in &pods {
                fatal(pod)?;
            }
            let ready = pods.iter().filter(|p| is_ready(p)).count();
            if desired > 0 && ready as i32 >= desired {
                return Ok(pods.into_iter().filter(is_ready).collect());
            }
            last = pods;
        }
        let seconds = wait.seconds();
        match last.iter().find(|p| !is_ready(p)) {
            Some(pod) => Err(DeployError::NotReady {
                pod: pod_name(pod),
                node: node_name(pod),
                seconds,
                why: not_ready_why(pod),
            }),
            None => Err(DeployError::NoPods {
                daemonset: name.to_string(),
                seconds,
                desired,
            }),
        }
    }

    /// Each pod's probe log, as lines.
    pub async fn collect(&self, pods: &[Pod]) -> Result<Vec<NodeLines>, DeployError> {
        self.logs(pods, PROBE_CONTAINER, |l| !l.trim().is_empty())
            .await
    }

    /// Each pod's log of `container`, the lines `keep` keeps.
    async fn logs(
        &self,
        pods: &[Pod],
        container: &str,
        keep: fn(&str) -> bool,
    ) -> Result<Vec<NodeLines>, DeployError> {
        let api = Api::<Pod>::namespaced(self.client.clone(), &self.namespace);
        let params = LogParams {
            container: Some(container.to_string()),
            ..LogParams::default()
        };
        let mut out = Vec::new();
        for pod in pods {
            let name = pod_name(pod);
            let text = api
                .logs(&name, &params)
                .await
                .map_err(|e| DeployError::Api {
                    op: format!("read the log of pod {name} (container {container})"),
                    message: api_message(&e),
                })?;
            out.push(NodeLines {
                node: node_name(pod),
                pod: name,
                lines: text.lines().filter(|l| keep(l)).map(String::from).collect(),
            });
        }
        Ok(out)
    }

    /// Waits until every pod matching `selector` satisfies `done` (at least
    /// `want` of them); a state no wait cures ends it at once.
    async fn wait_for_pods(
        &self,
        selector: &str,
        want: usize,
        wait: WaitPolicy,
        done: fn(&Pod) -> bool,
    ) -> Result<Vec<Pod>, DeployError> {
        let api = Api::<Pod>::namespaced(self.client.clone(), &self.namespace);
        let params = ListParams::default().labels(selector);
        let mut last: Vec<Pod> = Vec::new();
        for poll in 0..wait.polls.max(1) {
            if poll > 0 {
                tokio::time::sleep(wait.interval).await;
            }
            let pods = api
                .list(&params)
                .await
                .map_err(|e| DeployError::Api {
                    op: format!("list pods {selector}"),
                    message: api_message(&e),
                })?
                .items;
            for pod in &pods {
                fatal(pod)?;
            }
            if pods.len() >= want && pods.iter().all(done) {
                return Ok(pods);
            }
            last = pods;
        }
        let seconds = wait.seconds();
        Err(match last.iter().find(|p| !done(p)) {
            Some(pod) => DeployError::NotReady {
                pod: pod_name(pod),
                node: node_name(pod),
                seconds,
                why: not_ready_why(pod),
            },
            None => DeployError::Api {
                op: format!("wait for pods {selector}"),
                message: format!("{} of {want} exist after {seconds} s", last.len()),
            },
        })
    }

    fn app_selector(&self, app: &str) -> String {
        format!("app.kubernetes.io/name={app},{RUN_LABEL}={}", self.run_id)
    }

    /// Where the echoes are, once Ready: each echo's pod IP and node, the node's
    /// InternalIP, service `echo`'s ClusterIP and `echo-nodeport`'s NodePort.
    pub async fn topology(
        &self,
        nodes: &[NodeInfo],
        wait: WaitPolicy,
    ) -> Result<Topology, DeployError> {
        let echoes = self
            .wait_for_pods(
                &self.app_selector("cilium-conformance-echo"),
                nodes.len(),
                wait,
                |p| is_ready(p) && pod_ip(p).is_some(),
            )
            .await?;
        let mut slots: Vec<(u32, NodeSlot)> = Vec::new();
        for pod in &echoes {
            let name = pod_name(pod);
            let node = node_name(pod);
            let slot = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SLOT_LABEL))
                .and_then(|s| s.parse().ok())
                .unwrap_or(u32::MAX);
            let node_ip = nodes
                .iter()
                .find(|n| n.name == node)
                .and_then(|n| n.internal_ip.clone())
                .ok_or_else(|| DeployError::Api {
                    op: format!("find the InternalIP of node {node} (pod {name})"),
                    message: "the node lists no InternalIP address".into(),
                })?;
            slots.push((
                slot,
                NodeSlot {
                    node,
                    node_ip,
                    echo_ip: pod_ip(pod).unwrap_or_default(),
                    echo_pod: name,
                },
            ));
        }
        slots.sort_by_key(|(slot, _)| *slot);
        let cluster_ip = self
            .service("echo")
            .await?
            .spec
            .and_then(|s| s.cluster_ip)
            .filter(|ip| !ip.is_empty() && ip != "None")
            .ok_or_else(|| DeployError::Api {
                op: "read service echo's ClusterIP".into(),
                message: "the service has none".into(),
            })?;
        let node_port = self
            .service("echo-nodeport")
            .await?
            .spec
            .and_then(|s| s.ports)
            .and_then(|ps| {
                ps.into_iter()
                    .find(|p| p.port == i32::from(ECHO_TCP_PORT))
                    .and_then(|p| p.node_port)
            })
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| DeployError::Api {
                op: "read service echo-nodeport's NodePort".into(),
                message: format!("no nodePort for port {ECHO_TCP_PORT}"),
            })?;
        Ok(Topology {
            namespace: self.namespace.clone(),
            run_id: self.run_id.clone(),
            slots: slots.into_iter().map(|(_, s)| s).collect(),
            cluster_ip,
            node_port,
        })
    }

    async fn service(&self, name: &str) -> Result<Service, DeployError> {
        Api::<Service>::namespaced(self.client.clone(), &self.namespace)
            .get(name)
            .await
            .map_err(|e| DeployError::Api {
                op: format!("get service {name}"),
                message: api_message(&e),
            })
    }

    /// Creates the client pods, waits until each has run, and reads their
    /// observation lines.
    pub async fn run_clients(
        &self,
        plan: &ManifestPlan,
        clients: &[ClientSpec],
        wait: WaitPolicy,
    ) -> Result<Vec<NodeLines>, DeployError> {
        if clients.is_empty() {
            return Ok(Vec::new());
        }
        self.apply_all(&plan.client_manifests(clients)).await?;
        let mut pods = Vec::new();
        for app in [
            "cilium-conformance-client",
            "cilium-conformance-host-client",
        ] {
            let want = clients
                .iter()
                .filter(|c| c.host_network == (app == "cilium-conformance-host-client"))
                .count();
            if want > 0 {
                pods.extend(
                    self.wait_for_pods(&self.app_selector(app), want, wait, has_run)
                        .await?,
                );
            }
        }
        // A client prints observations only; its stderr (in the same log) is
        // anything else.
        self.logs(&pods, CLIENT_CONTAINER, |l| l.trim_start().starts_with('{'))
            .await
    }

    /// Deletes the namespaces earlier runs left (killed before their teardown)
    /// whose [`EXPIRES_ANNOTATION`] is before `now` (Unix seconds); a run still
    /// going, on this cluster from another machine, has a later one and is left
    /// alone, as is a namespace without it. Returns what it did, a line each;
    /// a sweep that cannot list or delete says so and never stops the run.
    pub async fn sweep_expired(&self, now: u64) -> Vec<String> {
        let api = Api::<Namespace>::all(self.client.clone());
        let list = match api.list(&ListParams::default().labels(RUN_LABEL)).await {
            Ok(list) => list.items,
            Err(e) => {
                return vec![format!(
                    "warning: cluster: sweep of earlier runs' namespaces skipped: list namespaces -l {RUN_LABEL}: {}",
                    api_message(&e)
                )];
            }
        };
        let mut said = Vec::new();
        for ns in list {
            let name = ns.metadata.name.clone().unwrap_or_default();
            if name == self.namespace
                || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
            {
                continue;
            }
            let expires = ns
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(EXPIRES_ANNOTATION))
                .and_then(|v| v.parse::<u64>().ok());
            let Some(expires) = expires.filter(|at| *at < now) else {
                continue;
            };
            said.push(match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => format!(
                    "cluster: removed namespace {name}, left by an earlier run (over for {} s)",
                    now - expires
                ),
                Err(e) if is_not_found(&e) => continue,
                Err(e) => format!(
                    "warning: cluster: namespace {name}, left by an earlier run, not removed: {}",
                    api_message(&e)
                ),
            });
        }
        said
    }

    /// Deletes the run's namespace (and with it everything in it); a namespace
    /// already gone is fine.
    pub async fn delete_namespace(&self) -> Result<(), DeployError> {
        let api = Api::<Namespace>::all(self.client.clone());
        match api
            .delete(&self.namespace, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(DeployError::Delete {
                namespace: self.namespace.clone(),
                message: api_message(&e),
            }),
        }
    }
}

async fn apply<K>(api: Api<K>, object: &K) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(object)).await?;
    Ok(())
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn node_name(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_else(|| "not scheduled".to_string())
}

fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
}

/// A client that ran: its container exited 0 (a non-zero exit is [`fatal`]).
fn has_run(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|phase| phase == "Succeeded")
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    let init = status
        .and_then(|s| s.init_container_statuses.as_deref())
        .unwrap_or_default();
    let main = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    init.iter().chain(main)
}

/// A state no wait will cure: an image that cannot be pulled, a probe that
/// exited non-zero (or keeps crashing).
fn fatal(pod: &Pod) -> Result<(), DeployError> {
    for cs in statuses(pod) {
        let state = cs.state.as_ref();
        if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_default();
            if IMAGE_PULL_REASONS.contains(&reason.as_str()) {
                return Err(DeployError::ImagePull(Box::new(ImagePullFailure {
                    pod: pod_name(pod),
                    node: node_name(pod),
                    container: cs.name.clone(),
                    image: cs.image.clone(),
                    reason,
                    message: w.message.clone().unwrap_or_default().replace('\n', " "),
                })));
            }
        }
        let terminated = state
            .and_then(|s| s.terminated.as_ref())
            .or_else(|| cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()));
        if let Some(t) = terminated
            && t.exit_code != 0
        {
            let message = t
                .message
                .as_deref()
                .and_then(|m| m.lines().rev().find(|l| !l.trim().is_empty()))
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            return Err(DeployError::ProbeFailed {
                pod: pod_name(pod),
                node: node_name(pod),
                detail: format!(
                    "container {} exited with code {} ({}){message}",
                    cs.name,
                    t.exit_code,
                    t.reason.as_deref().unwrap_or("no reason"),
                ),
            });
        }
    }
    Ok(())
}

/// Why a pod is not Ready: a container's waiting reason, else an unscheduled
/// pod's condition, else its phase.
fn not_ready_why(pod: &Pod) -> String {
    for cs in statuses(pod) {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.as_deref().unwrap_or("waiting");
            return match w.message.as_deref() {
                Some(m) if !m.is_empty() => format!("container {} {reason}: {m}", cs.name),
                _ => format!("container {} {reason}", cs.name),
            };
        }
    }
    let status = pod.status.as_ref();
    if let Some(c) = status.and_then(|s| s.conditions.as_ref()).and_then(|cs| {
        cs.iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    }) {
        return format!(
            "not scheduled: {}: {}",
            c.reason.as_deref().unwrap_or("unknown"),
            c.message.as_deref().unwrap_or_default()
        );
    }
    format!(
        "phase {}",
        status.and_then(|s| s.phase.as_deref()).unwrap_or("unknown")
    )
}

#[cfg(test)]
mod tests {
    //! A mock API server (tower-test): each test scripts the requests it expects,
    //! in order, asserts what matters in each, and answers with what a real API
    //! server sends (objects, lists, `Status` errors).

    use super::*;
    use crate::cluster::manifests::{DEFAULT_PROBE_IMAGE, Placement};
    use crate::cluster::mock_api::{self, ApiHandle, serve, serve_apply, status};
    use serde_json::{Value, json};

    const NS: &str = "cilium-conformance-0123abcd";

    fn plan() -> ManifestPlan {
        ManifestPlan::new(
            "0123abcd",
            DEFAULT_PROBE_IMAGE,
            vec!["run".into()],
            Placement::Count(2),
        )
    }

    fn setup() -> (Deployer, ApiHandle) {
        let (client, handle) = mock_api::client();
        (Deployer::new(client, &plan()), handle)
    }

    fn daemonset(desired: i32) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
               "metadata": {"name": "probe", "namespace": NS},
               "spec": {"selector": {}, "template": {}},
               "status": {"desiredNumberScheduled": desired, "currentNumberScheduled": desired,
                          "numberMisscheduled": 0, "numberReady": 0}})
    }

    fn pod(name: &str, node: &str, ready: bool, init_status: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": NS},
               "spec": {"nodeName": node, "containers": [{"name": "done"}]},
               "status": {"phase": if ready {"Running"} else {"Pending"},
                          "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
                          "initContainerStatuses": [init_status]}})
    }

    fn probe_done() -> Value {
        json!({"name": "probe", "image": DEFAULT_PROBE_IMAGE, "imageID": "", "ready": true,
               "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}})
    }

    fn pods(items: Vec<Value>) -> Value {
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})
    }

    fn quick(polls: u32) -> WaitPolicy {
        WaitPolicy {
            polls,
            interval: Duration::ZERO,
        }
    }

    fn run_namespace(name: &str, expires: Option<u64>, phase: &str) -> Value {
        let mut ns = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {RUN_LABEL: "x"}},
            "status": {"phase": phase}});
        if let Some(at) = expires {
            ns["metadata"]["annotations"] = json!({EXPIRES_ANNOTATION: at.to_string()});
        }
        ns
    }

    #[tokio::test]
    async fn the_sweep_deletes_only_namespaces_whose_run_is_over() {
        let (d, mut handle) = setup();
        let now = 1_800_000_000;
        let server = tokio::spawn(async move {
            let list = serve(
                &mut handle,
                200,
                json!({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {}, "items": [
                    run_namespace("cilium-conformance-old1", Some(now - 30), "Active"),
                    run_namespace("cilium-conformance-live", Some(now + 300), "Active"),
                    run_namespace("cilium-conformance-noexp", None, "Active"),
                    run_namespace("cilium-conformance-going", Some(now - 5), "Terminating"),
                    run_namespace(NS, Some(now - 1), "Active"),
                    run_namespace("cilium-conformance-old2", Some(now - 60), "Active"),
                ]}),
            )
            .await;
            let first = serve(
                &mut handle,
                200,
                json!({"kind": "Status", "apiVersion": "v1",
                "metadata": {}, "status": "Success", "code": 200}),
            )
            .await;
            let second = serve(&mut handle, 403, status(403, "Forbidden",
                "namespaces \"cilium-conformance-old2\" is forbidden: User \"ci\" cannot delete resource \"namespaces\"")).await;
            (list, first, second)
        });
        let said = d.sweep_expired(now).await;
        let (list, first, second) = server.await.unwrap();
        assert!(
            list.query
                .ends_with("labelSelector=cilium-conformance%2Frun-id"),
            "{}",
            list.query
        );
        assert_eq!(
            first.line(),
            "DELETE /api/v1/namespaces/cilium-conformance-old1"
        );
        assert_eq!(
            second.line(),
            "DELETE /api/v1/namespaces/cilium-conformance-old2"
        );
        assert_eq!(
            said,
            [
                "cluster: removed namespace cilium-conformance-old1, left by an earlier run (over for 30 s)",
                "warning: cluster: namespace cilium-conformance-old2, left by an earlier run, not removed: namespaces \"cilium-conformance-old2\" is forbidden: User \"ci\" cannot delete resource \"namespaces\" (Forbidden)",
            ]
        );
    }

    #[tokio::test]
    async fn a_sweep_that_cannot_list_is_a_warning() {
        let (d, mut handle) = setup();
        let server = tokio::spawn(async move {
            serve(
                &mut handle,
                403,
                status(403, "Forbidden", "namespaces is forbidden"),
            )
            .await;
        });
        let said = d.sweep_expired(1).await;
        server.await.unwrap();
        assert_eq!(
            said,
            [
                "warning: cluster: sweep of earlier runs' namespaces skipped: list namespaces -l cilium-conformance/run-id: namespaces is forbidden (Forbidden)"
            ]
        );
    }

    #[tokio::test]
    async fn a_run_applies_every_object_waits_collects_and_deletes_the_namespace() {
        let (deployer, mut handle) = setup();
        let manifests = plan().manifests().unwrap();
        let count = manifests.len();
        let server = tokio::spawn(async move {
            let mut applied = Vec::new();
            for _ in 0..count {
                applied.push(serve_apply(&mut handle).await);
            }
            // First poll: one pod still running its probe; second: both done.
            let running = json!({"name": "probe", "image": DEFAULT_PROBE_IMAGE, "imageID": "",
                "ready": false, "restartCount": 0, "state": {"running": {}}});
            let polls = [
                (
                    serve(&mut handle, 200, daemonset(2)).await,
                    serve(
                        &mut handle,
                        200,
                        pods(vec![
                            pod("probe-a", "k3d-x-server-0", true, probe_done()),
                            pod("probe-b", "k3d-x-agent-0", false, running),
                        ]),
                    )
                    .await,
                ),
                (
                    serve(&mut handle, 200, daemonset(2)).await,
                    serve(
                        &mut handle,
                        200,
                        pods(vec![
                            pod("probe-a", "k3d-x-server-0", true, probe_done()),
                            pod("probe-b", "k3d-x-agent-0", true, probe_done()),
                        ]),
                    )
                    .await,
                ),
            ];
            let log_a = serve(
                &mut handle,
                200,
                json!("{\"kind\":\"facts\"}\n\n{\"kind\":\"done\"}\n"),
            )
            .await;
            let log_b = serve(&mut handle, 200, json!("{\"kind\":\"facts\"}\n")).await;
            let delete = serve(
                &mut handle,
                200,
                json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": NS}, "status": {"phase": "Terminating"}}),
            )
            .await;
            (applied, polls, log_a, log_b, delete)
        });
        let lines = deployer.run(&manifests, quick(5)).await.unwrap();
        let (applied, polls, log_a, log_b, delete) = server.await.unwrap();

        // Server-side apply of each object, in order, to its own path.
        let paths: Vec<&str> = applied.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths[0], format!("/api/v1/namespaces/{NS}"));
        assert_eq!(
            paths[1],
            format!("/api/v1/namespaces/{NS}/serviceaccounts/cilium-conformance")
        );
        assert_eq!(
            paths[2],
            format!(
                "/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles/cilium-conformance-runner"
            )
        );
        assert_eq!(
            paths[3],
            format!(
                "/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings/cilium-conformance-runner"
            )
        );
        assert_eq!(
            paths[4],
            format!("/apis/apps/v1/namespaces/{NS}/daemonsets/probe")
        );
        assert_eq!(paths[5], format!("/api/v1/namespaces/{NS}/pods/echo-0"));
        assert_eq!(
            paths[count - 1],
            format!("/api/v1/namespaces/{NS}/services/echo-nodeport")
        );
        for (seen, m) in applied.iter().zip(&manifests) {
            assert_eq!(seen.method, "PATCH", "{}", m.label());
            assert_eq!(seen.content_type, "application/apply-patch+yaml");
            assert!(
                seen.query.contains("fieldManager=cilium-conformance")
                    && seen.query.contains("force=true"),
                "{}",
                seen.query
            );
            assert_eq!(seen.body, m.to_json(), "{} is sent as rendered", m.label());
        }
        assert_eq!(
            applied[4].body["spec"]["template"]["spec"]["hostNetwork"],
            true
        );

        // The wait reads the DaemonSet and lists the run's probe pods.
        for (ds, list) in &polls {
            assert_eq!(
                (ds.method.as_str(), ds.path.as_str()),
                (
                    "GET",
                    &*format!("/apis/apps/v1/namespaces/{NS}/daemonsets/probe")
                )
            );
            assert_eq!(
                (list.method.as_str(), list.path.as_str()),
                ("GET", &*format!("/api/v1/namespaces/{NS}/pods"))
            );
            assert!(list.query.contains("labelSelector=app.kubernetes.io%2Fname%3Dcilium-conformance-probe%2Ccilium-conformance%2Frun-id%3D0123abcd"), "{}", list.query);
        }
        // Logs of the probe container, one request per pod.
        assert_eq!(
            log_a.path,
            format!("/api/v1/namespaces/{NS}/pods/probe-a/log")
        );
        assert!(log_a.query.contains("container=probe"), "{}", log_a.query);
        assert_eq!(
            log_b.path,
            format!("/api/v1/namespaces/{NS}/pods/probe-b/log")
        );
        assert_eq!(
            lines,
            [
                NodeLines {
                    node: "k3d-x-server-0".into(),
                    pod: "probe-a".into(),
                    lines: vec!["{\"kind\":\"facts\"}".into(), "{\"kind\":\"done\"}".into()]
                },
                NodeLines {
                    node: "k3d-x-agent-0".into(),
                    pod: "probe-b".into(),
                    lines: vec!["{\"kind\":\"facts\"}".into()]
                },
            ]
        );
        assert_eq!(
            (delete.method.as_str(), delete.path.as_str()),
            ("DELETE", &*format!("/api/v1/namespaces/{NS}"))
        );
        assert_eq!(delete.body["propagationPolicy"], "Background");
    }

    #[tokio::test]
    async fn an_image_pull_failure_ends_the_wait_and_the_namespace_is_still_deleted() {
        let (deployer, mut handle) = setup();
        let manifests = plan().manifests().unwrap();
        let count = manifests.len();
        let server = tokio::spawn(async move {
            for _ in 0..count {
                serve_apply(&mut handle).await;
            }
            let pulling = json!({"name": "probe", "image": DEFAULT_PROBE_IMAGE, "imageID": "",
                "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ErrImagePull",
                "message": "failed to pull and unpack image \"docker.io/library/cilium-conformance-probe:latest\": not found"}}});
            serve(&mut handle, 200, daemonset(2)).await;
            serve(
                &mut handle,
                200,
                pods(vec![pod("probe-a", "k3d-x-agent-1", false, pulling)]),
            )
            .await;
            serve(
                &mut handle,
                404,
                status(404, "NotFound", "namespaces \"x\" not found"),
            )
            .await
        });
        let err = deployer.run(&manifests, quick(5)).await.unwrap_err();
        let delete = server.await.unwrap();
        assert_eq!(
            err.to_string(),
            "image pull failed: pod probe-a (node k3d-x-agent-1), container probe, image cilium-conformance-probe:latest: ErrImagePull: failed to pull and unpack image \"docker.io/library/cilium-conformance-probe:latest\": not found"
        );
        // Deleted after the failure; a namespace already gone is not a second error.
        assert_eq!(delete.method, "DELETE");
    }

    #[tokio::test]
    async fn a_pod_that_never_becomes_ready_is_named_with_its_reason() {
        let (deployer, mut handle) = setup();
        let server = tokio::spawn(async move {
            let waiting = json!({"name": "probe", "image": DEFAULT_PROBE_IMAGE, "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing"}}});
            let mut requests = 0;
            for _ in 0..3 {
                serve(&mut handle, 200, daemonset(2)).await;
                serve(
                    &mut handle,
                    200,
                    pods(vec![
                        pod("probe-a", "k3d-x-server-0", true, probe_done()),
                        pod("probe-b", "k3d-x-agent-0", false, waiting.clone()),
                    ]),
                )
                .await;
                requests += 2;
            }
            requests
        });
        let err = deployer
            .wait_for_probes(WaitPolicy {
                polls: 3,
                interval: Duration::ZERO,
            })
            .await
            .unwrap_err();
        assert_eq!(server.await.unwrap(), 6, "three polls, then the error");
        assert!(matches!(&err, DeployError::NotReady { pod, .. } if pod == "probe-b"));
        assert_eq!(
            err.to_string(),
            "pod probe-b (node k3d-x-agent-0) not Ready after 0 s: container probe PodInitializing"
        );
    }

    #[tokio::test]
    async fn an_unschedulable_pod_and_a_daemonset_without_pods() {
        let (deployer, mut handle) = setup();
        let server = tokio::spawn(async move {
            serve(&mut handle, 200, daemonset(1)).await;
            let unscheduled = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "probe-c", "namespace": NS},
                "spec": {"containers": [{"name": "done"}]},
                "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                    "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient memory."}]}});
            serve(&mut handle, 200, pods(vec![unscheduled])).await;
            serve(&mut handle, 200, daemonset(0)).await;
            serve(&mut handle, 200, pods(vec![])).await;
        });
        let one = WaitPolicy {
            polls: 1,
            interval: Duration::from_secs(30),
        };
        let err = deployer.wait_for_probes(one).await.unwrap_err().to_string();
        assert_eq!(
            err,
            "pod probe-c (node not scheduled) not Ready after 30 s: not scheduled: Unschedulable: 0/3 nodes are available: 3 Insufficient memory."
        );
        let err = deployer.wait_for_probes(one).await.unwrap_err().to_string();
        assert_eq!(
            err,
            "DaemonSet probe had no pod scheduled after 30 s (desired 0)"
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_probe_that_failed_is_reported_with_its_exit_code() {
        let (deployer, mut handle) = setup();
        let server = tokio::spawn(async move {
            let crashed = json!({"name": "probe", "image": DEFAULT_PROBE_IMAGE, "imageID": "",
                "ready": false, "restartCount": 2,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
                "lastState": {"terminated": {"exitCode": 3, "reason": "Error",
                    "message": "{\"kind\":\"facts\"}\nerror: create netns: Operation not permitted\n"}}});
            serve(&mut handle, 200, daemonset(1)).await;
            serve(
                &mut handle,
                200,
                pods(vec![pod("probe-a", "k3d-x-server-0", false, crashed)]),
            )
            .await;
        });
        let err = deployer
            .wait_for_probes(quick(5))
            .await
            .unwrap_err()
            .to_string();
        server.await.unwrap();
        assert_eq!(
            err,
            "the probe failed in pod probe-a (node k3d-x-server-0): container probe exited with code 3 (Error): error: create netns: Operation not permitted"
        );
    }

    #[tokio::test]
    async fn a_refused_object_stops_the_apply_and_names_it() {
        let (deployer, mut handle) = setup();
        let manifests = plan().manifests().unwrap();
        let server = tokio::spawn(async move {
            serve_apply(&mut handle).await;
            serve_apply(&mut handle).await;
            let seen = serve(&mut handle, 403, status(403, "Forbidden",
                "roles.rbac.authorization.k8s.io \"cilium-conformance-runner\" is forbidden: user \"ci\" cannot patch resource \"roles\"")).await;
            // Teardown still runs.
            let delete = serve(
                &mut handle,
                200,
                json!({"kind": "Status", "apiVersion": "v1",
                "metadata": {}, "status": "Success", "code": 200}),
            )
            .await;
            (seen, delete)
        });
        let err = deployer.run(&manifests, quick(1)).await.unwrap_err();
        let (seen, delete) = server.await.unwrap();
        assert!(seen.path.ends_with("/roles/cilium-conformance-runner"));
        assert_eq!(delete.method, "DELETE");
        assert_eq!(
            err.to_string(),
            "apply Role/cilium-conformance-runner: roles.rbac.authorization.k8s.io \"cilium-conformance-runner\" is forbidden: user \"ci\" cannot patch resource \"roles\" (Forbidden)"
        );
    }

    #[tokio::test]
    async fn teardown_takes_a_namespace_already_gone_and_names_a_failure() {
        let (deployer, mut handle) = setup();
        let server = tokio::spawn(async move {
            let gone = serve(
                &mut handle,
                404,
                status(404, "NotFound", "namespaces not found"),
            )
            .await;
            serve(
                &mut handle,
                500,
                status(500, "InternalError", "etcdserver: request timed out"),
            )
            .await;
            gone
        });
        deployer.delete_namespace().await.unwrap();
        let err = deployer.delete_namespace().await.unwrap_err().to_string();
        let gone = server.await.unwrap();
        assert_eq!(gone.path, format!("/api/v1/namespaces/{NS}"));
        assert_eq!(
            err,
            format!("deleting namespace {NS}: etcdserver: request timed out (InternalError)")
        );
    }
}
