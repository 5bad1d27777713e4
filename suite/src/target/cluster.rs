//! The `cluster` target: a probe pod on every node of a Kubernetes cluster
//! reached by kubeconfig, one instance per node.
//!
//! - [`Target::preflight`] reads the kubeconfig ([`inspect::connect`]: `--kubeconfig`,
//!   else `KUBECONFIG`, else `~/.kube/config`; `--context`, else the current one),
//!   lists the nodes (each one an instance named after the node, with the node's
//!   architecture) and checks that Cilium is installed (DaemonSet
//!   `kube-system/cilium` or ConfigMap `kube-system/cilium-config`). An API server
//!   that does not answer, a kubeconfig or context that is not there, a node that
//!   is not Ready, a cluster without Cilium: one line, exit 3.
//! - [`Target::start`] for the first node applies the run's [`ManifestPlan`] once
//!   for all of them (namespace, RBAC, probe DaemonSet, echo/client pods pinned
//!   to the nodes, services), then on the module's runtime waits for every probe
//!   pod to be Ready, reads each pod's probe log and deletes the namespace
//!   ([`super::super::cluster::deploy`]); each node's log becomes its instance's
//!   lines. The lines arrive when every node's probe has finished (logs are read,
//!   not followed), so progress moves at the end.
//! - [`InstanceHandle::stop`] (timeout, Ctrl-C, another instance's error) cancels
//!   the deployment and deletes the run's namespace, once for the run, whichever
//!   node's handle is stopped first; later stops return at once.
//!
//! The cluster facts a probe pod cannot see (it holds no API token) travel as
//! [`TargetFacts`]: Cilium's version (the agent image's tag), the node's k3s
//! version (its kubelet version, `v1.35.5+k3s1`), Cilium's datapath settings
//! from `cilium-config` and the node's OS, kernel and runtime as notes.
//!
//! Tested against a tower-test mock API server (below) and, for an unreachable
//! server, a real client pointed at 127.0.0.1:1. Not yet run against a live cluster.

use super::{
    InstanceHandle, InstanceId, Preamble, ProbeArgs, ProbeBinary, ProbeExit, RunControl,
    StartedInstance, Target, TargetError, TargetFacts, TargetKind,
};
use crate::cluster::deploy::{DeployError, Deployer, NodeLines, WaitPolicy};
use crate::cluster::inspect::{
    self, CILIUM_CONFIGMAP, CILIUM_DAEMONSET, CILIUM_NAMESPACE, ClusterInfo, Connection,
    KubeconfigSource, NodeInfo,
};
use crate::cluster::manifests::{ManifestPlan, Placement};
use crate::cluster::pod_checks::{self, ClientSpec};
use conformance_contract::PlannedCheck;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::runtime::Runtime;

/// Added to a run's longest possible time (its three waits) for the namespace's
/// expiry: clocks between this machine and the next run's may differ.
const SWEEP_MARGIN: Duration = Duration::from_secs(600);

/// How long a stop may take to delete the run's namespace.
const DELETE_TIMEOUT: Duration = Duration::from_secs(10);

/// The module's runtime: the kube client's connection and request buffer live on
/// it, and so does each run's deployment while callers block in the runner. Never
/// dropped (a static), like the container target's.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cc-cluster")
            .enable_all()
            .build()
            .expect("a tokio runtime for the cluster target")
    })
}

/// Runs `fut` on the module's runtime from synchronous code (from a helper thread
/// when the caller is itself inside a runtime, where `block_on` would panic).
fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime().block_on(fut);
    }
    std::thread::scope(|s| {
        s.spawn(|| runtime().block_on(fut))
            .join()
            .expect("a cluster call panicked")
    })
}

fn infra(e: impl std::fmt::Display) -> TargetError {
    TargetError::Infrastructure(e.to_string())
}

/// Where the cluster is: a kubeconfig, or (tests) a client made elsewhere.
enum Reach {
    Kubeconfig {
        path: Option<PathBuf>,
        context: Option<String>,
    },
    Given(Connection),
}

pub struct Cluster {
    reach: Reach,
    poll_interval: Duration,
    /// What the preflight found; `start` needs it.
    prepared: Mutex<Option<(Connection, ClusterInfo)>>,
    /// The run's one deployment, made by the first `start`.
    deployment: Mutex<Option<Arc<Deployment>>>,
}

impl Cluster {
    /// A cluster target for `--kubeconfig` and `--context` (`None`: kube's defaults).
    pub fn new(kubeconfig: Option<PathBuf>, context: Option<String>) -> Cluster {
        Cluster {
            reach: Reach::Kubeconfig {
                path: kubeconfig,
                context,
            },
            poll_interval: Duration::from_secs(1),
            prepared: Mutex::new(None),
            deployment: Mutex::new(None),
        }
    }

    /// A cluster target around a client made on [`client_runtime`] (a mock).
    pub fn with_connection(conn: Connection, poll_interval: Duration) -> Cluster {
        Cluster {
            reach: Reach::Given(conn),
            poll_interval,
            prepared: Mutex::new(None),
            deployment: Mutex::new(None),
        }
    }
}

/// The runtime a client handed to [`Cluster::with_connection`] must be made on
/// (enter it first: the client spawns its request buffer there).
pub fn client_runtime() -> &'static Runtime {
    runtime()
}

impl Target for Cluster {
    fn kind(&self) -> TargetKind {
        TargetKind::Cluster
    }

    fn preflight(&self) -> Result<Vec<InstanceId>, TargetError> {
        let conn = match &self.reach {
            Reach::Given(conn) => conn.clone(),
            Reach::Kubeconfig { path, context } => {
                let source = KubeconfigSource::from_env(path.as_deref());
                block_on(inspect::connect(source, context.as_deref())).map_err(infra)?
            }
        };
        let info = block_on(inspect::inspect(&conn)).map_err(infra)?;
        let ids = info
            .nodes
            .iter()
            .map(|n| InstanceId::new(TargetKind::Cluster, n.name.clone(), n.arch.clone()))
            .collect();
        *self.prepared.lock().unwrap_or_else(|p| p.into_inner()) = Some((conn, info));
        Ok(ids)
    }

    fn start(
        &self,
        instance: &InstanceId,
        probe: &ProbeBinary,
        args: &ProbeArgs,
        control: &RunControl,
    ) -> Result<StartedInstance, TargetError> {
        let deployment = {
            let mut slot = self.deployment.lock().unwrap_or_else(|p| p.into_inner());
            match slot.as_ref() {
                Some(d) => d.clone(),
                None => {
                    let prepared = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
                    let (conn, info) = prepared.as_ref().ok_or_else(|| {
                        infra("the cluster target was started without its preflight")
                    })?;
                    let image = probe.image.clone().ok_or_else(|| {
                        infra("the cluster target needs a probe image (--probe-image)")
                    })?;
                    let wait = WaitPolicy {
                        polls: poll_count(control.timeout, self.poll_interval),
                        interval: self.poll_interval,
                    };
                    let d = Deployment::start(conn, info, &image, args, wait)?;
                    *slot = Some(d.clone());
                    d
                }
            }
        };
        let node = deployment.take(&instance.name)?;
        Ok(StartedInstance {
            lines: node.lines,
            handle: Box::new(NodeHandle {
                deployment,
                exit: Mutex::new(Some(node.exit)),
                told: node.told,
            }),
            // A pod's log is its stdout and stderr together: a line the probe
            // wrote to stderr before its facts line is transport output.
            preamble: Preamble::SkipToFacts,
        })
    }
}

/// Polls of `interval` that fill `timeout` (at least one).
fn poll_count(timeout: Duration, interval: Duration) -> u32 {
    if interval.is_zero() {
        return timeout.as_secs().clamp(1, 1000) as u32;
    }
    (timeout.as_secs_f64() / interval.as_secs_f64())
        .ceil()
        .clamp(1.0, u32::MAX as f64) as u32
}

/// What one node's instance gets from the deployment.
struct NodeSide {
    lines: Receiver<String>,
    exit: Receiver<Result<ProbeExit, TargetError>>,
    told: TargetFacts,
}

/// Where the deployment sends one node's results.
struct NodeSink {
    node: String,
    lines: Sender<String>,
    exit: Sender<Result<ProbeExit, TargetError>>,
    told: TargetFacts,
}

/// One run's objects on the cluster, shared by every node's instance.
struct Deployment {
    deployer: Arc<Deployer>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    sides: Mutex<BTreeMap<String, NodeSide>>,
    /// Held while a stop deletes the namespace; `true` once one did.
    stopped: Mutex<bool>,
}

impl Deployment {
    /// Plans the manifests for every node and starts applying them.
    fn start(
        conn: &Connection,
        info: &ClusterInfo,
        image: &str,
        args: &ProbeArgs,
        wait: WaitPolicy,
    ) -> Result<Arc<Deployment>, TargetError> {
        let names: Vec<String> = info.nodes.iter().map(|n| n.name.clone()).collect();
        let mut plan =
            ManifestPlan::new(&args.run_id, image, args.to_argv(), Placement::Nodes(names));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        plan.expires_at = Some(now + wait.seconds() * 3 + SWEEP_MARGIN.as_secs());
        let nodes = info.nodes.clone();
        let manifests = plan.manifests().map_err(infra)?;
        let deployer = Arc::new(Deployer::new(conn.client.clone(), &plan));
        let mut sides = BTreeMap::new();
        let mut sinks = Vec::new();
        for node in &info.nodes {
            let (lines_tx, lines_rx) = mpsc::channel();
            let (exit_tx, exit_rx) = mpsc::channel();
            let told = told(info, node);
            sides.insert(
                node.name.clone(),
                NodeSide {
                    lines: lines_rx,
                    exit: exit_rx,
                    told: told.clone(),
                },
            );
            sinks.push(NodeSink {
                node: node.name.clone(),
                lines: lines_tx,
                exit: exit_tx,
                told,
            });
        }
        let d = deployer.clone();
        let task = runtime().spawn(async move {
            let result = async {
                for line in d.sweep_expired(now).await {
                    eprintln!("{line}");
                }
                d.apply_all(&manifests).await?;
                eprintln!(
                    "cluster: {} objects applied in namespace {}; waiting for the probe on {} node(s)",
                    manifests.len(),
                    d.namespace(),
                    sinks.len()
                );
                let pods = d.wait_for_probes(wait).await?;
                let probes = d.collect(&pods).await?;
                if plan.pod_checks.is_empty() {
                    return Ok(probes);
                }
                let topology = d.topology(&nodes, wait).await?;
                let (clients, skipped) = pod_checks::client_plans(&plan.pod_checks, &topology);
                for line in &skipped {
                    eprintln!("cluster: {line}");
                }
                eprintln!(
                    "cluster: echoes Ready on {} node(s); running {} client pod(s) for the pod-level checks",
                    topology.slots.len(),
                    clients.len()
                );
                let lines = d.run_clients(&plan, &clients, wait).await?;
                Ok(join_clients(probes, &clients, &lines))
            }
            .await;
            let deleted = d.delete_namespace().await;
            let result = result.and_then(|lines| deleted.map(|()| lines));
            deliver(d.namespace(), result, sinks);
        });
        Ok(Arc::new(Deployment {
            deployer,
            task: Mutex::new(Some(task)),
            sides: Mutex::new(sides),
            stopped: Mutex::new(false),
        }))
    }

    fn take(&self, node: &str) -> Result<NodeSide, TargetError> {
        self.sides
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(node)
            .ok_or_else(|| {
                infra(format!(
                    "node {node} was not in the preflight, or was started twice"
                ))
            })
    }

    /// Cancels the deployment and deletes the namespace, once; a deployment that
    /// finished deleted it already.
    fn stop(&self) {
        let mut stopped = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        if *stopped {
            return;
        }
        *stopped = true;
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            if task.is_finished() {
                return;
            }
            task.abort();
            block_on(async {
                let _ = task.await;
            });
        }
        // The timer is made inside the runtime (it needs its clock).
        let deleted = block_on(async {
            tokio::time::timeout(DELETE_TIMEOUT, self.deployer.delete_namespace()).await
        });
        let namespace = self.deployer.namespace();
        let failed = match deleted {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "deleting namespace {namespace}: no answer after {} s",
                DELETE_TIMEOUT.as_secs()
            ),
        };
        eprintln!(
            "warning: cluster: {failed}; remove it with: kubectl delete namespace {namespace}"
        );
    }
}

/// Each node's probe lines with its clients' observations added
/// ([`pod_checks::merge`]): what the node's clients were planned to run joins
/// its plan, so a client that printed less shows as a truncated stream.
fn join_clients(
    probes: Vec<NodeLines>,
    clients: &[ClientSpec],
    lines: &[NodeLines],
) -> Vec<NodeLines> {
    probes
        .into_iter()
        .map(|mut node| {
            let mine: Vec<&ClientSpec> = clients.iter().filter(|c| c.node == node.node).collect();
            let planned: Vec<PlannedCheck> = mine
                .iter()
                .flat_map(|c| &c.plan.checks)
                .map(|c| PlannedCheck {
                    check: c.check.clone(),
                    variant: c.variant.clone(),
                })
                .collect();
            let observed: Vec<String> = lines
                .iter()
                .filter(|l| mine.iter().any(|c| c.name == l.pod))
                .flat_map(|l| l.lines.iter().cloned())
                .collect();
            node.lines = pod_checks::merge(std::mem::take(&mut node.lines), &observed, &planned);
            node
        })
        .collect()
}

/// Hands each node its lines and how its probe ended.
fn deliver(namespace: &str, result: Result<Vec<NodeLines>, DeployError>, sinks: Vec<NodeSink>) {
    match result {
        Ok(all) => {
            for sink in sinks {
                let exit = match all.iter().find(|l| l.node == sink.node) {
                    Some(found) => {
                        for line in &found.lines {
                            let _ = sink.lines.send(line.clone());
                        }
                        Ok(ProbeExit {
                            // Ready means the probe's init container exited 0.
                            code: Some(0),
                            stderr_tail: Vec::new(),
                            privilege: format!(
                                "in pod {namespace}/{} on node {}, privileged",
                                found.pod, sink.node
                            ),
                            told: sink.told,
                        })
                    }
                    None => Err(infra(format!(
                        "no probe pod ran on node {} (namespace {namespace})",
                        sink.node
                    ))),
                };
                drop(sink.lines);
                let _ = sink.exit.send(exit);
            }
        }
        Err(e) => {
            for sink in sinks {
                drop(sink.lines);
                let _ = sink
                    .exit
                    .send(Err(infra(format!("namespace {namespace}: {e}"))));
            }
        }
    }
}

/// The facts the target adds to `node`'s probe facts.
fn told(info: &ClusterInfo, node: &NodeInfo) -> TargetFacts {
    let cilium = &info.cilium;
    let mut notes = BTreeMap::new();
    let from_ds = format!("DaemonSet {CILIUM_NAMESPACE}/{CILIUM_DAEMONSET}");
    notes.insert(
        "cilium_version".to_string(),
        match (&cilium.version, &cilium.image) {
            (Some(v), Some(image)) => format!("{v}: the tag of {from_ds}'s image {image}"),
            (None, Some(image)) => format!("{from_ds}'s image {image} has no tag to read"),
            _ => format!(
                "Cilium is configured (ConfigMap {CILIUM_NAMESPACE}/{CILIUM_CONFIGMAP}) but there is no {from_ds} to read its version from"
            ),
        },
    );
    notes.insert(
        "k3s_version".to_string(),
        match node.k3s_version() {
            Some(v) => format!("{v}: node {}'s kubelet version", node.name),
            None => format!(
                "not k3s: node {}'s kubelet version is {}",
                node.name,
                if node.kubelet_version.is_empty() {
                    "unknown"
                } else {
                    &node.kubelet_version
                }
            ),
        },
    );
    notes.insert(
        "cilium.datapath".to_string(),
        format!(
            "{} (ConfigMap {CILIUM_NAMESPACE}/{CILIUM_CONFIGMAP}; unset keys take Cilium's defaults)",
            cilium.datapath_summary()
        ),
    );
    notes.insert(
        "cluster.node".to_string(),
        format!(
            "{}: {}, kernel {}, {}, kubelet {}",
            node.name,
            node.os_image,
            node.kernel_version,
            node.container_runtime,
            node.kubelet_version
        ),
    );
    let node_container = node.node_container();
    notes.insert(
        "virtualization.container".to_string(),
        match &node_container {
            Some(how) => format!("node {} is a container: {how}", node.name),
            None => format!(
                "node {} is not a container (OS image {}, provider ID {}); the probe's pod is, and is not the node",
                node.name,
                node.os_image,
                node.provider_id.as_deref().unwrap_or("none")
            ),
        },
    );
    TargetFacts {
        cilium_version: cilium.version.clone(),
        k3s_version: node.k3s_version().map(str::to_string),
        notes,
        node_container: Some(node_container),
    }
}

struct NodeHandle {
    deployment: Arc<Deployment>,
    exit: Mutex<Option<Receiver<Result<ProbeExit, TargetError>>>>,
    told: TargetFacts,
}

impl InstanceHandle for NodeHandle {
    fn stop(&self) {
        self.deployment.stop();
    }

    fn wait(&self) -> Result<ProbeExit, TargetError> {
        let exit = self.exit.lock().unwrap_or_else(|p| p.into_inner()).take();
        match exit.map(|rx| rx.recv()) {
            Some(Ok(result)) => result,
            // The deployment was cancelled (stop) before it got this far.
            _ => Ok(ProbeExit {
                code: None,
                stderr_tail: vec!["stopped".into()],
                privilege: "in a pod, privileged".into(),
                told: self.told.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
