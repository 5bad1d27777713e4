//! Reaching a cluster and reading what a run needs to know before it deploys:
//! the kubeconfig (kube's own loading: `--kubeconfig FILE`, else `KUBECONFIG`,
//! else `~/.kube/config`; `--context`, else the file's current context), the
//! nodes (one probe instance each), and whether and how Cilium is installed
//! (the `cilium` DaemonSet's image, the `cilium-config` ConfigMap's datapath
//! keys). Used by the cluster target's preflight and by `cargo xtask cluster
//! status`.
//!
//! Every failure is one [`ClusterError`] line naming where the kubeconfig came
//! from, the context and the API server; all of them are infrastructure (exit 3).
//! Tested against a tower-test mock API server (kubeconfig handling against
//! files written by the tests, and a real client pointed at 127.0.0.1:1 for an
//! unreachable server); not yet run against a live cluster.
//!
//! What the caller's identity needs: `list` on nodes, `get` on the DaemonSet
//! `kube-system/cilium` and the ConfigMap `kube-system/cilium-config`.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const CILIUM_NAMESPACE: &str = "kube-system";
pub const CILIUM_DAEMONSET: &str = "cilium";
pub const CILIUM_CONFIGMAP: &str = "cilium-config";
/// The agent's container in the `cilium` DaemonSet (its image names the version).
pub const CILIUM_AGENT_CONTAINER: &str = "cilium-agent";

/// How long a TCP connect to the API server may take (kube's default is 20 s);
/// a refused connection fails at once either way.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `cilium-config` keys that say which datapath Cilium runs, in the order
/// reports list them. A key the ConfigMap does not have takes Cilium's default.
pub const DATAPATH_KEYS: [&str; 8] = [
    "routing-mode",
    "tunnel-protocol",
    "kube-proxy-replacement",
    "enable-host-legacy-routing",
    "enable-bpf-masquerade",
    "enable-tcx",
    "datapath-mode",
    "ipam",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// No usable kubeconfig or context.
    #[error("{0}")]
    Kubeconfig(String),
    /// The API server did not answer (refused, timed out, TLS failed).
    #[error("{0}")]
    Unreachable(String),
    /// The API server answered with an error (forbidden, unauthorised, ...).
    #[error("{0}")]
    Api(String),
    /// The cluster has no node the probe can run on.
    #[error("{0}")]
    Nodes(String),
    /// Neither Cilium's DaemonSet nor its ConfigMap exists.
    #[error("{0}")]
    NoCilium(String),
    /// Nodes or Cilium's agents were still not Ready when the wait ended.
    #[error("{0}")]
    NotReady(String),
}

/// Where the kubeconfig is read from, as kube reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeconfigSource {
    /// `--kubeconfig FILE`.
    Flag(PathBuf),
    /// `KUBECONFIG` (one file, or several joined by `:`, merged by kube).
    Env(OsString),
    /// `~/.kube/config`.
    Home(PathBuf),
    /// None of the above: no flag, no `KUBECONFIG`, no home directory.
    Nowhere,
}

impl KubeconfigSource {
    /// The source for a `--kubeconfig` flag, the `KUBECONFIG` value and the home
    /// directory (empty `KUBECONFIG` entries are ignored, as kube ignores them).
    pub fn resolve(
        flag: Option<&Path>,
        env: Option<OsString>,
        home: Option<PathBuf>,
    ) -> KubeconfigSource {
        if let Some(flag) = flag {
            return KubeconfigSource::Flag(flag.to_path_buf());
        }
        if let Some(env) = env
            && std::env::split_paths(&env).any(|p| !p.as_os_str().is_empty())
        {
            return KubeconfigSource::Env(env);
        }
        match home {
            Some(home) => KubeconfigSource::Home(home.join(".kube").join("config")),
            None => KubeconfigSource::Nowhere,
        }
    }

    /// This process's: `KUBECONFIG` and the home directory from the environment.
    pub fn from_env(flag: Option<&Path>) -> KubeconfigSource {
        KubeconfigSource::resolve(flag, std::env::var_os("KUBECONFIG"), std::env::home_dir())
    }

    fn read(&self) -> Result<Kubeconfig, ClusterError> {
        let read = match self {
            KubeconfigSource::Flag(path) => Kubeconfig::read_from(path),
            KubeconfigSource::Env(_) => match Kubeconfig::from_env() {
                Ok(Some(k)) => Ok(k),
                Ok(None) => Err(KubeconfigError::FindPath),
                Err(e) => Err(e),
            },
            KubeconfigSource::Home(path) => Kubeconfig::read_from(path),
            KubeconfigSource::Nowhere => Err(KubeconfigError::FindPath),
        };
        read.map_err(|e| {
            let why = match &e {
                KubeconfigError::ReadConfig(io, path) => {
                    format!("cannot read {}: {io}", path.display())
                }
                KubeconfigError::FindPath => "no kubeconfig to read".to_string(),
                other => one_line(other),
            };
            ClusterError::Kubeconfig(format!(
                "kubeconfig from {self}: {why} (give one with --kubeconfig FILE or KUBECONFIG; k3d writes its own: k3d kubeconfig merge cilium-conformance)"
            ))
        })
    }
}

impl fmt::Display for KubeconfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KubeconfigSource::Flag(p) => write!(f, "--kubeconfig {}", p.display()),
            KubeconfigSource::Env(v) => write!(f, "KUBECONFIG={}", v.to_string_lossy()),
            KubeconfigSource::Home(p) => write!(f, "{}", p.display()),
            KubeconfigSource::Nowhere => {
                f.write_str("nowhere (no --kubeconfig, KUBECONFIG unset, no home directory)")
            }
        }
    }
}

/// A client for one context of one kubeconfig.
#[derive(Clone)]
pub struct Connection {
    pub client: Client,
    pub context: String,
    /// The API server's URL (`https://127.0.0.1:6550`).
    pub server: String,
    pub source: KubeconfigSource,
}

impl Connection {
    /// A connection around a client made elsewhere (tests: a tower-test mock).
    pub fn from_client(client: Client, context: &str, server: &str) -> Connection {
        Connection {
            client,
            context: context.to_string(),
            server: server.to_string(),
            source: KubeconfigSource::Nowhere,
        }
    }

    /// `context k3d-x (https://127.0.0.1:6550)`: how errors name the cluster.
    pub fn describe(&self) -> String {
        format!("context {} at {}", self.context, self.server)
    }
}

/// Reads the kubeconfig `source` names and makes a client for `context` (or the
/// file's current context). Must run inside a tokio runtime (the client spawns
/// its request buffer there). Contacts nothing.
pub async fn connect(
    source: KubeconfigSource,
    context: Option<&str>,
) -> Result<Connection, ClusterError> {
    let kubeconfig = source.read()?;
    let names: Vec<&str> = kubeconfig
        .contexts
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let have = if names.is_empty() {
        "it has none".to_string()
    } else {
        format!("it has {}", names.join(", "))
    };
    let chosen = match context {
        Some(c) => c.to_string(),
        None => match kubeconfig.current_context.as_deref() {
            Some(c) if !c.is_empty() => c.to_string(),
            _ => {
                return Err(ClusterError::Kubeconfig(format!(
                    "kubeconfig from {source} sets no current context: name one with --context ({have})"
                )));
            }
        },
    };
    if !names.contains(&chosen.as_str()) {
        return Err(ClusterError::Kubeconfig(format!(
            "kubeconfig from {source} has no context `{chosen}` ({have})"
        )));
    }
    let options = KubeConfigOptions {
        context: Some(chosen.clone()),
        ..KubeConfigOptions::default()
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| {
            ClusterError::Kubeconfig(format!(
                "kubeconfig from {source}, context {chosen}: {}",
                one_line(&e)
            ))
        })?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    let server = config.cluster_url.to_string();
    let server = server.trim_end_matches('/').to_string();
    let client = Client::try_from(config).map_err(|e| {
        ClusterError::Kubeconfig(format!(
            "kubeconfig from {source}, context {chosen} ({server}): {}",
            chain(&e)
        ))
    })?;
    Ok(Connection {
        client,
        context: chosen,
        server,
        source,
    })
}

/// One node as the API describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// `uname -m` spelling (`x86_64`, `aarch64`) of `status.nodeInfo.architecture`.
    pub arch: String,
    /// `v1.35.5+k3s1` on k3s.
    pub kubelet_version: String,
    pub kernel_version: String,
    pub os_image: String,
    pub container_runtime: String,
    /// `None` when Ready; else why not (the Ready condition's reason and message).
    pub not_ready: Option<String>,
    /// `status.addresses`' `InternalIP` (the first; IPv4 first where there are
    /// both): where the pod-level checks reach the node.
    pub internal_ip: Option<String>,
    /// `spec.providerID` (`k3s://<node>`, `kind://docker/...`, `hcloud://<id>`).
    pub provider_id: Option<String>,
}

impl NodeInfo {
    /// Whether the node is itself a container, and how that shows: kind names
    /// its provider (`kind://`), and a k3d node runs the k3s image, whose OS
    /// image is `K3s v...` (a k3s installed on a host reports the host's OS).
    pub fn node_container(&self) -> Option<String> {
        if let Some(id) = self
            .provider_id
            .as_deref()
            .filter(|id| id.starts_with("kind://"))
        {
            return Some(format!("kind (provider ID {id})"));
        }
        self.os_image
            .starts_with("K3s ")
            .then(|| format!("k3d (OS image {}: the k3s container image)", self.os_image))
    }

    /// The k3s version, when the kubelet is k3s's (`v1.35.5+k3s1`).
    pub fn k3s_version(&self) -> Option<&str> {
        self.kubelet_version
            .contains("+k3s")
            .then_some(self.kubelet_version.as_str())
    }
}

/// Cilium as installed, from its DaemonSet and ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CiliumInfo {
    /// The agent's image (`quay.io/cilium/cilium:v1.19.5@sha256:...`), when the DaemonSet exists.
    pub image: Option<String>,
    /// The image's tag (`v1.19.5`).
    pub version: Option<String>,
    /// The DaemonSet's desired and ready pod counts.
    pub pods: Option<(i32, i32)>,
    /// Whether `cilium-config` exists.
    pub config_found: bool,
    /// The [`DATAPATH_KEYS`] the ConfigMap sets.
    pub datapath: BTreeMap<String, String>,
}

impl CiliumInfo {
    /// `routing-mode=tunnel, tunnel-protocol=vxlan, ...`: every [`DATAPATH_KEYS`]
    /// entry, `unset` where the ConfigMap leaves Cilium's default.
    pub fn datapath_summary(&self) -> String {
        if !self.config_found {
            return format!("unknown (no ConfigMap {CILIUM_NAMESPACE}/{CILIUM_CONFIGMAP})");
        }
        DATAPATH_KEYS
            .iter()
            .map(|k| {
                let v = self.datapath.get(*k).map_or("unset", String::as_str);
                format!("{k}={v}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What preflight learnt about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub nodes: Vec<NodeInfo>,
    pub cilium: CiliumInfo,
}

/// Maps Go's `GOARCH` (what nodes report) to `uname -m` (what instances carry).
pub fn uname_arch(goarch: &str) -> String {
    match goarch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "arm" => "armv7l",
        "386" => "i686",
        "" => "unknown",
        other => other,
    }
    .to_string()
}

/// The tag of an image reference (`quay.io/cilium/cilium:v1.19.5@sha256:..` →
/// `v1.19.5`); `None` for a reference by digest only or without a tag.
pub fn image_tag(image: &str) -> Option<String> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let (_, tag) = last.split_once(':')?;
    (!tag.is_empty()).then(|| tag.to_string())
}

fn node_info(node: &Node) -> NodeInfo {
    let name = node.metadata.name.clone().unwrap_or_default();
    let status = node.status.as_ref();
    let info = status.and_then(|s| s.node_info.as_ref());
    let text = |f: fn(&k8s_openapi::api::core::v1::NodeSystemInfo) -> &String| {
        info.map(|i| f(i).clone()).unwrap_or_default()
    };
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let not_ready = match ready {
        Some(c) if c.status == "True" => None,
        Some(c) => Some(format!(
            "Ready is {}: {}{}",
            c.status,
            c.reason.as_deref().unwrap_or("no reason given"),
            c.message
                .as_deref()
                .filter(|m| !m.is_empty())
                .map(|m| format!(": {}", m.replace('\n', " ")))
                .unwrap_or_default()
        )),
        None => Some("no Ready condition yet".to_string()),
    };
    NodeInfo {
        name,
        arch: uname_arch(&text(|i| &i.architecture)),
        kubelet_version: text(|i| &i.kubelet_version),
        kernel_version: text(|i| &i.kernel_version),
        os_image: text(|i| &i.os_image),
        container_runtime: text(|i| &i.container_runtime_version),
        not_ready,
        internal_ip: internal_ip(status.and_then(|s| s.addresses.as_deref())),
        provider_id: node.spec.as_ref().and_then(|s| s.provider_id.clone()),
    }
}

fn internal_ip(addresses: Option<&[k8s_openapi::api::core::v1::NodeAddress]>) -> Option<String> {
    let internal: Vec<&str> = addresses
        .unwrap_or_default()
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .map(|a| a.address.as_str())
        .collect();
    internal
        .iter()
        .find(|a| !a.contains(':'))
        .or(internal.first())
        .map(|a| a.to_string())
}

/// The API's error as one line: its own message where it sent one, else the
/// error's chain of causes (`tcp connect error: Connection refused (os error 111)`).
pub fn api_error_line(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", status.reason)
            };
            format!("{}{reason}", status.message.replace('\n', " "))
        }
        other => chain(other),
    }
}

/// Whether the request reached the API server and it answered.
fn answered(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(_))
}

fn one_line(e: &dyn std::error::Error) -> String {
    e.to_string().replace('\n', " ")
}

/// `a: b: c` from an error and its sources, each cause once (many errors repeat
/// their source's text in their own).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = one_line(err);
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.retain(|p| !text.contains(p.as_str()));
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// The error of a request `op` to the cluster `conn` describes.
pub(crate) fn request_error(conn: &Connection, op: &str, e: &kube::Error) -> ClusterError {
    if answered(e) {
        ClusterError::Api(format!(
            "{op} on {}: the API server said: {}",
            conn.describe(),
            api_error_line(e)
        ))
    } else {
        ClusterError::Unreachable(format!(
            "cannot reach the Kubernetes API server at {} ({}, kubeconfig from {}): {op}: {}",
            conn.server,
            conn.context,
            conn.source,
            api_error_line(e)
        ))
    }
}

/// The cluster's nodes (sorted by name).
pub async fn nodes(conn: &Connection) -> Result<Vec<NodeInfo>, ClusterError> {
    let list = Api::<Node>::all(conn.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| request_error(conn, "list nodes", &e))?;
    let mut nodes: Vec<NodeInfo> = list.items.iter().map(node_info).collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nodes)
}

/// DaemonSet `kube-system/cilium`, `None` where there is none.
pub async fn cilium_daemonset(conn: &Connection) -> Result<Option<DaemonSet>, ClusterError> {
    Api::<DaemonSet>::namespaced(conn.client.clone(), CILIUM_NAMESPACE)
        .get_opt(CILIUM_DAEMONSET)
        .await
        .map_err(|e| {
            request_error(
                conn,
                &format!("get DaemonSet {CILIUM_NAMESPACE}/{CILIUM_DAEMONSET}"),
                &e,
            )
        })
}

/// ConfigMap `kube-system/cilium-config`, `None` where there is none.
pub async fn cilium_config(conn: &Connection) -> Result<Option<ConfigMap>, ClusterError> {
    Api::<ConfigMap>::namespaced(conn.client.clone(), CILIUM_NAMESPACE)
        .get_opt(CILIUM_CONFIGMAP)
        .await
        .map_err(|e| {
            request_error(
                conn,
                &format!("get ConfigMap {CILIUM_NAMESPACE}/{CILIUM_CONFIGMAP}"),
                &e,
            )
        })
}

/// Cilium's DaemonSet and ConfigMap (each may be missing).
pub async fn cilium(conn: &Connection) -> Result<CiliumInfo, ClusterError> {
    let ds = cilium_daemonset(conn).await?;
    let cm = cilium_config(conn).await?;
    let mut info = CiliumInfo::default();
    if let Some(ds) = &ds {
        let containers = ds
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|s| s.containers.as_slice())
            .unwrap_or_default();
        let agent = containers
            .iter()
            .find(|c| c.name == CILIUM_AGENT_CONTAINER)
            .or_else(|| containers.first());
        info.image = agent.and_then(|c| c.image.clone());
        info.version = info.image.as_deref().and_then(image_tag);
        info.pods = ds
            .status
            .as_ref()
            .map(|s| (s.desired_number_scheduled, s.number_ready));
    }
    if let Some(cm) = &cm {
        info.config_found = true;
        let data = cm.data.clone().unwrap_or_default();
        for key in DATAPATH_KEYS {
            if let Some(v) = data.get(key) {
                info.datapath.insert(key.to_string(), v.clone());
            }
        }
    }
    Ok(info)
}

/// One of Cilium's agent pods (label `k8s-app=cilium` in kube-system).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPod {
    pub name: String,
    pub node: String,
    /// `Running`, `Pending`, ...
    pub phase: String,
    pub ready: bool,
}

/// Cilium's agent pods, sorted by node.
pub async fn cilium_pods(conn: &Connection) -> Result<Vec<AgentPod>, ClusterError> {
    use k8s_openapi::api::core::v1::Pod;
    let list = Api::<Pod>::namespaced(conn.client.clone(), CILIUM_NAMESPACE)
        .list(&ListParams::default().labels("k8s-app=cilium"))
        .await
        .map_err(|e| request_error(conn, "list pods kube-system/k8s-app=cilium", &e))?;
    let mut pods: Vec<AgentPod> = list
        .items
        .iter()
        .map(|p| {
            let status = p.status.as_ref();
            AgentPod {
                name: p.metadata.name.clone().unwrap_or_default(),
                node: p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_else(|| "not scheduled".into()),
                phase: status
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "Unknown".into()),
                ready: status
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
            }
        })
        .collect();
    pods.sort_by(|a, b| (&a.node, &a.name).cmp(&(&b.node, &b.name)));
    Ok(pods)
}

/// Nodes and Cilium, as a run's preflight needs them: a cluster without nodes,
/// with a node that is not Ready, or without Cilium is an error.
pub async fn inspect(conn: &Connection) -> Result<ClusterInfo, ClusterError> {
    let nodes = nodes(conn).await?;
    if nodes.is_empty() {
        return Err(ClusterError::Nodes(format!(
            "the cluster ({}) has no nodes",
            conn.describe()
        )));
    }
    if let Some(n) = nodes.iter().find(|n| n.not_ready.is_some()) {
        return Err(ClusterError::Nodes(format!(
            "node {} is not Ready ({}) in the cluster ({}): the probe DaemonSet would wait for it",
            n.name,
            n.not_ready.as_deref().unwrap_or_default(),
            conn.describe()
        )));
    }
    let cilium = cilium(conn).await?;
    if cilium.image.is_none() && !cilium.config_found {
        return Err(ClusterError::NoCilium(format!(
            "no Cilium in the cluster ({}): neither DaemonSet {CILIUM_NAMESPACE}/{CILIUM_DAEMONSET} nor ConfigMap {CILIUM_NAMESPACE}/{CILIUM_CONFIGMAP} exists (install it: cargo xtask cluster up, or helm upgrade --install cilium cilium/cilium -n kube-system)",
            conn.describe()
        )));
    }
    Ok(ClusterInfo { nodes, cilium })
}

/// How far a cluster is from Ready: its nodes, and Cilium's agent pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub nodes: usize,
    pub nodes_ready: usize,
    /// The `cilium` DaemonSet's desired and ready pods; `None` while it does not exist.
    pub cilium: Option<(i32, i32)>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.nodes > 0
            && self.nodes_ready == self.nodes
            && self
                .cilium
                .is_some_and(|(desired, ready)| desired > 0 && ready >= desired)
    }

    /// `nodes 2/3 Ready, Cilium agents 1/3 Ready`.
    pub fn line(&self) -> String {
        let cilium = match self.cilium {
            Some((desired, ready)) => format!("Cilium agents {ready}/{desired} Ready"),
            None => format!("no DaemonSet {CILIUM_NAMESPACE}/{CILIUM_DAEMONSET} yet"),
        };
        format!("nodes {}/{} Ready, {cilium}", self.nodes_ready, self.nodes)
    }
}

/// Polls (`polls` times, `interval` apart) until every node and every Cilium
/// agent is Ready, calling `on_change` whenever the counts move (progress lines).
/// An API server that does not answer is polled again (it restarts while a
/// cluster comes up); one that refuses (forbidden) ends the wait at once.
pub async fn wait_ready(
    conn: &Connection,
    polls: u32,
    interval: Duration,
    on_change: &mut (dyn FnMut(&Readiness) + Send),
) -> Result<Readiness, ClusterError> {
    let mut last: Option<Readiness> = None;
    let mut last_error: Option<ClusterError> = None;
    for poll in 0..polls.max(1) {
        if poll > 0 {
            tokio::time::sleep(interval).await;
        }
        let nodes = match nodes(conn).await {
            Ok(nodes) => nodes,
            Err(e @ ClusterError::Unreachable(_)) => {
                last_error = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        let ds = Api::<DaemonSet>::namespaced(conn.client.clone(), CILIUM_NAMESPACE)
            .get_opt(CILIUM_DAEMONSET)
            .await;
        let ds = match ds {
            Ok(ds) => ds,
            Err(e) if !answered(&e) => {
                last_error = Some(request_error(conn, "get DaemonSet kube-system/cilium", &e));
                continue;
            }
            Err(e) => {
                return Err(request_error(
                    conn,
                    &format!("get DaemonSet {CILIUM_NAMESPACE}/{CILIUM_DAEMONSET}"),
                    &e,
                ));
            }
        };
        let now = Readiness {
            nodes: nodes.len(),
            nodes_ready: nodes.iter().filter(|n| n.not_ready.is_none()).count(),
            cilium: ds.map(|ds| {
                ds.status
                    .map_or((0, 0), |s| (s.desired_number_scheduled, s.number_ready))
            }),
        };
        last_error = None;
        if last.as_ref() != Some(&now) {
            on_change(&now);
        }
        if now.ready() {
            return Ok(now);
        }
        last = Some(now);
    }
    let seconds = (interval * polls.max(1)).as_secs();
    Err(match (last, last_error) {
        (_, Some(e)) => e,
        (Some(r), None) => ClusterError::NotReady(format!(
            "the cluster ({}) is not Ready after {seconds} s: {}",
            conn.describe(),
            r.line()
        )),
        (None, None) => ClusterError::NotReady(format!(
            "the cluster ({}) is not Ready after {seconds} s",
            conn.describe()
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubeconfig_comes_from_the_flag_then_kubeconfig_then_home() {
        let home = Some(PathBuf::from("/home/u"));
        assert_eq!(
            KubeconfigSource::resolve(Some(Path::new("k.yaml")), Some("/e".into()), home.clone()),
            KubeconfigSource::Flag("k.yaml".into())
        );
        assert_eq!(
            KubeconfigSource::resolve(None, Some("/a:/b".into()), home.clone()),
            KubeconfigSource::Env("/a:/b".into())
        );
        // An empty KUBECONFIG is ignored, as kube ignores it.
        assert_eq!(
            KubeconfigSource::resolve(None, Some("".into()), home.clone()),
            KubeconfigSource::Home("/home/u/.kube/config".into())
        );
        assert_eq!(
            KubeconfigSource::resolve(None, None, None),
            KubeconfigSource::Nowhere
        );
        assert_eq!(
            KubeconfigSource::Env("/a:/b".into()).to_string(),
            "KUBECONFIG=/a:/b"
        );
    }

    #[test]
    fn architectures_and_image_tags() {
        assert_eq!(uname_arch("amd64"), "x86_64");
        assert_eq!(uname_arch("arm64"), "aarch64");
        assert_eq!(uname_arch("s390x"), "s390x");
        assert_eq!(
            image_tag("quay.io/cilium/cilium:v1.19.5@sha256:0123abcd").as_deref(),
            Some("v1.19.5")
        );
        assert_eq!(
            image_tag("localhost:5000/cilium/cilium:v1.19.5").as_deref(),
            Some("v1.19.5")
        );
        assert_eq!(image_tag("localhost:5000/cilium/cilium"), None);
        assert_eq!(image_tag("quay.io/cilium/cilium@sha256:0123"), None);
    }

    #[test]
    fn the_datapath_summary_names_every_key() {
        let mut info = CiliumInfo {
            config_found: true,
            ..CiliumInfo::default()
        };
        info.datapath.insert("routing-mode".into(), "native".into());
        info.datapath.insert("enable-tcx".into(), "true".into());
        assert_eq!(
            info.datapath_summary(),
            "routing-mode=native, tunnel-protocol=unset, kube-proxy-replacement=unset, enable-host-legacy-routing=unset, enable-bpf-masquerade=unset, enable-tcx=true, datapath-mode=unset, ipam=unset"
        );
        assert_eq!(
            CiliumInfo::default().datapath_summary(),
            "unknown (no ConfigMap kube-system/cilium-config)"
        );
    }

    mod wait {
        //! [`wait_ready`] against a tower-test mock API server.
        use super::super::*;
        use crate::cluster::mock_api::{self, ApiHandle};
        use serde_json::{Value, json};

        fn setup() -> (Connection, ApiHandle) {
            mock_api::connection("k3d-x")
        }

        async fn serve(handle: &mut ApiHandle, status: u16, reply: Value) -> String {
            mock_api::serve(handle, status, reply).await.line()
        }

        fn nodes(ready: &[bool]) -> Value {
            let items: Vec<Value> = ready
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("k3d-x-agent-{i}")},
                           "status": {"conditions": [{"type": "Ready", "status": if *r {"True"} else {"False"},
                                                      "reason": if *r {"KubeletReady"} else {"KubeletNotReady"}}]}})
                })
                .collect();
            json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": items})
        }

        fn cilium(desired: i32, ready: i32) -> Value {
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                   "metadata": {"name": "cilium", "namespace": "kube-system"},
                   "spec": {"selector": {}, "template": {}},
                   "status": {"currentNumberScheduled": desired, "desiredNumberScheduled": desired,
                              "numberMisscheduled": 0, "numberReady": ready}})
        }

        fn not_found() -> Value {
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "daemonsets.apps \"cilium\" not found", "reason": "NotFound", "code": 404})
        }

        #[tokio::test]
        async fn waits_for_every_node_and_agent_with_a_line_per_change() {
            let (conn, mut handle) = setup();
            let server = tokio::spawn(async move {
                let mut seen = Vec::new();
                // Helm has not made the DaemonSet yet; then agents come up one by one.
                seen.push(serve(&mut handle, 200, nodes(&[false, false])).await);
                seen.push(serve(&mut handle, 404, not_found()).await);
                seen.push(serve(&mut handle, 200, nodes(&[true, false])).await);
                seen.push(serve(&mut handle, 200, cilium(2, 0)).await);
                seen.push(serve(&mut handle, 200, nodes(&[true, false])).await);
                seen.push(serve(&mut handle, 200, cilium(2, 0)).await);
                seen.push(serve(&mut handle, 200, nodes(&[true, true])).await);
                seen.push(serve(&mut handle, 200, cilium(2, 2)).await);
                seen
            });
            let mut lines = Vec::new();
            let done = wait_ready(&conn, 10, Duration::ZERO, &mut |r| lines.push(r.line()))
                .await
                .unwrap();
            let seen = server.await.unwrap();
            assert!(done.ready());
            assert_eq!(
                lines,
                [
                    "nodes 0/2 Ready, no DaemonSet kube-system/cilium yet",
                    "nodes 1/2 Ready, Cilium agents 0/2 Ready",
                    "nodes 2/2 Ready, Cilium agents 2/2 Ready",
                ]
            );
            assert_eq!(seen[0], "GET /api/v1/nodes");
            assert_eq!(
                seen[1],
                "GET /apis/apps/v1/namespaces/kube-system/daemonsets/cilium"
            );
            assert_eq!(seen.len(), 8, "four polls, then Ready");
        }

        #[tokio::test]
        async fn not_ready_in_time_is_one_line_with_the_counts() {
            let (conn, mut handle) = setup();
            let server = tokio::spawn(async move {
                for _ in 0..2 {
                    serve(&mut handle, 200, nodes(&[true, true])).await;
                    serve(&mut handle, 200, cilium(2, 1)).await;
                }
            });
            let err = wait_ready(&conn, 2, Duration::from_millis(1), &mut |_| {})
                .await
                .unwrap_err();
            server.await.unwrap();
            assert_eq!(
                err.to_string(),
                "the cluster (context k3d-x at https://0.0.0.0:6550) is not Ready after 0 s: nodes 2/2 Ready, Cilium agents 1/2 Ready"
            );
        }

        #[tokio::test]
        async fn a_forbidden_answer_ends_the_wait_at_once() {
            let (conn, mut handle) = setup();
            let server = tokio::spawn(async move {
                serve(&mut handle, 403, json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "message": "nodes is forbidden", "reason": "Forbidden", "code": 403})).await;
            });
            let err = wait_ready(&conn, 5, Duration::ZERO, &mut |_| {})
                .await
                .unwrap_err();
            server.await.unwrap();
            assert!(matches!(err, ClusterError::Api(_)), "{err}");
        }
    }
}
