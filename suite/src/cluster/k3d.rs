//! The k3d cluster the `cluster` target provisions on a laptop or a CI runner:
//! a k3d `Simple` config (`k3d.io/v1alpha5`) and the ctlptl `Cluster` that embeds
//! it, both rendered from a [`K3dPlan`].
//!
//! Generated, not hand-written, because the server and agent counts are the
//! user's (`cargo xtask cluster up --agents N`, planned) and several fields follow
//! from them: the agent node filter exists only when there are agents, and a
//! node filter naming an index must stay within its group. `fixtures/k3d/` holds
//! what [`K3dPlan::default`] renders, so that the files can be read, diffed and
//! used by hand (`k3d cluster create --config fixtures/k3d/cluster.yaml`); a test
//! fails when they are stale (`tests/cluster_configs.rs`, with the command that
//! rewrites them).
//!
//! What the config does, and why:
//! - k3s without its own CNI, network policy, kube-proxy, Traefik and ServiceLB
//!   (`--flannel-backend=none --disable-network-policy --disable-kube-proxy
//!   --disable=traefik --disable=servicelb`, servers only: agents take these from
//!   their server), so Cilium is the datapath and replaces kube-proxy, as in
//!   Cilium's k3s guide and on the production nodes.
//! - Multi-node by default (1 server, 2 agents) so cross-node paths are checked.
//! - `K3D_FIX_MOUNTS=1` on every k3s node: the entrypoint runs `mount
//!   --make-rshared /`, without which Cilium fails with "/sys/fs/bpf is not a
//!   shared or slave mount". k3d >= 5.6.1 does it by default; written out so an
//!   older k3d does too (k3d's own default can be turned off with `=0`).
//! - The API on 127.0.0.1 only (a laptop's API server is not for the LAN), and
//!   an ingress mapping (host 8080 to port 80 through k3d's load balancer).
//! - `options.k3d.wait: true` written out: ctlptl re-encodes the embedded config
//!   with `wait` not omitted when false, so once any option is set a config
//!   without it would be created with `wait: false`.
//! - The kubeconfig is updated but the current context is not switched (a
//!   throwaway cluster should not take over the user's kubectl); the suite names
//!   the context (`--context k3d-<name>`). Under ctlptl that option is lost
//!   (ctlptl drops false booleans there), so the ctlptl document leaves it out.

use serde::{Deserialize, Serialize};

/// The k3s image the configs pin: the default of k3d 5.9.0 (June 2026), the
/// version this was written against. ctlptl ignores `kubernetesVersion` for k3d,
/// so the image is the only way to pin it.
pub const K3S_IMAGE: &str = "rancher/k3s:v1.35.5-k3s1";
/// The k3d release the config format and defaults were read from.
pub const K3D_VERSION: &str = "5.9.0";
/// The k3s server arguments that make Cilium the whole datapath.
pub const SERVER_ARGS: [&str; 5] = [
    "--flannel-backend=none",
    "--disable-network-policy",
    "--disable-kube-proxy",
    "--disable=traefik",
    "--disable=servicelb",
];

/// What the cluster looks like; [`K3dPlan::default`] is what `fixtures/k3d/` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K3dPlan {
    /// k3d's cluster name (containers `k3d-<name>-server-0`, context `k3d-<name>`).
    pub name: String,
    pub servers: u32,
    pub agents: u32,
    pub image: String,
    pub api_host_ip: String,
    pub api_host_port: u16,
    /// Host port mapped to port 80 on the cluster's load balancer.
    pub ingress_host_port: u16,
}

impl Default for K3dPlan {
    fn default() -> Self {
        K3dPlan {
            name: "cilium-conformance".into(),
            servers: 1,
            agents: 2,
            image: K3S_IMAGE.into(),
            api_host_ip: "127.0.0.1".into(),
            api_host_port: 6550,
            ingress_host_port: 8080,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "cluster name `{0}`: k3d needs a DNS label (lower-case letters, digits and `-`, at most 40 characters, starting with a letter)"
    )]
    Name(String),
    #[error("servers: at least 1 (k3s needs a server), found 0")]
    NoServer,
    #[error("{field}: {value} is more than this suite provisions ({max})")]
    TooMany {
        field: &'static str,
        value: u32,
        max: u32,
    },
    #[error("image: empty")]
    NoImage,
}

/// The top-level k3d config, the fields this suite writes (k3d's schema forbids
/// unknown keys, so the names are the schema's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimpleConfig {
    pub api_version: String,
    pub kind: String,
    /// Left out when ctlptl embeds the config: ctlptl names the cluster itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    pub servers: u32,
    pub agents: u32,
    #[serde(rename = "kubeAPI")]
    pub kube_api: KubeApi,
    pub image: String,
    pub ports: Vec<WithFilters<PortSpec>>,
    pub env: Vec<WithFilters<EnvSpec>>,
    pub options: Options,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeApi {
    #[serde(rename = "hostIP")]
    pub host_ip: String,
    pub host_port: String,
}

/// A value with the k3d node filters it applies to (`server:*`, `agent:0`, `loadbalancer`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WithFilters<T> {
    #[serde(flatten)]
    pub value: T,
    pub node_filters: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortSpec {
    pub port: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvSpec {
    pub env_var: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArgSpec {
    pub arg: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    pub k3d: K3dOptions,
    pub k3s: K3sOptions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<KubeconfigOptions>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K3dOptions {
    pub wait: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K3sOptions {
    pub extra_args: Vec<WithFilters<ArgSpec>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeconfigOptions {
    pub update_default_kubeconfig: bool,
    pub switch_current_context: bool,
}

/// The ctlptl `Cluster` document (`ctlptl apply -f`): product k3d, the k3d config
/// embedded under `k3d.v1alpha5Simple`, the name `k3d-<k3d name>` (ctlptl
/// requires the prefix and derives the k3d name from it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CtlptlCluster {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub product: String,
    pub k3d: CtlptlK3d,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtlptlK3d {
    #[serde(rename = "v1alpha5Simple")]
    pub v1alpha5_simple: SimpleConfig,
}

/// The longest k3d cluster name this accepts: container names such as
/// `k3d-<name>-server-0` and the context `k3d-<name>` stay well within a
/// 63-character label.
const MAX_NAME: usize = 40;
/// More than this on one laptop or runner is a mistake, not a plan.
const MAX_NODES: u32 = 9;

impl K3dPlan {
    pub fn validate(&self) -> Result<(), PlanError> {
        let n = &self.name;
        let label = !n.is_empty()
            && n.len() <= MAX_NAME
            && n.starts_with(|c: char| c.is_ascii_lowercase())
            && !n.ends_with('-')
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !label {
            return Err(PlanError::Name(n.clone()));
        }
        if self.servers == 0 {
            return Err(PlanError::NoServer);
        }
        for (field, value) in [("servers", self.servers), ("agents", self.agents)] {
            if value > MAX_NODES {
                return Err(PlanError::TooMany {
                    field,
                    value,
                    max: MAX_NODES,
                });
            }
        }
        if self.image.trim().is_empty() {
            return Err(PlanError::NoImage);
        }
        Ok(())
    }

    /// The kubeconfig context k3d writes for this cluster.
    pub fn context(&self) -> String {
        format!("k3d-{}", self.name)
    }

    /// The first server's container, which is also its hostname on the k3d
    /// network (what Cilium's `k8sServiceHost` names on k3d).
    pub fn first_server(&self) -> String {
        format!("k3d-{}-server-0", self.name)
    }

    /// Node filters for every k3s node (servers, and agents when there are any).
    fn k3s_nodes(&self) -> Vec<String> {
        let mut filters = vec!["server:*".to_string()];
        if self.agents > 0 {
            filters.push("agent:*".to_string());
        }
        filters
    }

    /// The k3d config for `k3d cluster create --config`.
    pub fn simple_config(&self) -> Result<SimpleConfig, PlanError> {
        self.validate()?;
        Ok(SimpleConfig {
            api_version: "k3d.io/v1alpha5".into(),
            kind: "Simple".into(),
            metadata: Some(Metadata {
                name: self.name.clone(),
            }),
            servers: self.servers,
            agents: self.agents,
            kube_api: KubeApi {
                host_ip: self.api_host_ip.clone(),
                host_port: self.api_host_port.to_string(),
            },
            image: self.image.clone(),
            ports: vec![WithFilters {
                value: PortSpec {
                    port: format!("{}:80", self.ingress_host_port),
                },
                node_filters: vec!["loadbalancer".into()],
            }],
            env: vec![WithFilters {
                value: EnvSpec {
                    env_var: "K3D_FIX_MOUNTS=1".into(),
                },
                node_filters: self.k3s_nodes(),
            }],
            options: Options {
                k3d: K3dOptions { wait: true },
                k3s: K3sOptions {
                    extra_args: SERVER_ARGS
                        .iter()
                        .map(|arg| WithFilters {
                            value: ArgSpec {
                                arg: (*arg).to_string(),
                            },
                            node_filters: vec!["server:*".into()],
                        })
                        .collect(),
                },
                kubeconfig: Some(KubeconfigOptions {
                    update_default_kubeconfig: true,
                    switch_current_context: false,
                }),
            },
        })
    }

    /// The ctlptl `Cluster` around the same config.
    pub fn ctlptl_cluster(&self) -> Result<CtlptlCluster, PlanError> {
        let mut simple = self.simple_config()?;
        simple.metadata = None;
        simple.options.kubeconfig = None;
        Ok(CtlptlCluster {
            api_version: "ctlptl.dev/v1alpha1".into(),
            kind: "Cluster".into(),
            name: self.context(),
            product: "k3d".into(),
            k3d: CtlptlK3d {
                v1alpha5_simple: simple,
            },
        })
    }

    /// `fixtures/k3d/cluster.yaml` for this plan: a header, then the config.
    pub fn render_k3d(&self) -> Result<String, RenderError> {
        let body = super::yaml::to_yaml(&self.simple_config()?)?;
        Ok(format!(
            "{}# Use: k3d cluster create --config fixtures/k3d/cluster.yaml   (k3d >= 5.5)\n{body}",
            self.header()
        ))
    }

    /// `fixtures/k3d/ctlptl.yaml` for this plan.
    pub fn render_ctlptl(&self) -> Result<String, RenderError> {
        let body = super::yaml::to_yaml(&self.ctlptl_cluster()?)?;
        Ok(format!(
            "{}# Use: ctlptl apply -f fixtures/k3d/ctlptl.yaml   (ctlptl delete -f ... removes it)\n{body}",
            self.header()
        ))
    }

    fn header(&self) -> String {
        format!(
            "# Rendered by suite/src/cluster/k3d.rs from K3dPlan {{ servers: {}, agents: {} }}\n\
             # (k3d {K3D_VERSION} config format); do not edit: tests/cluster_configs.rs fails when\n\
             # this file differs from what the code renders, and says how to rewrite it.\n",
            self.servers, self.agents
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Yaml(#[from] super::yaml::YamlError),
}

/// Checks on node filters the k3d schema takes as any string: the group is one
/// k3d knows, an index is within its group, `loadbalancer` and `all` take none.
/// Returns the problem, in one line, if there is one.
pub fn node_filter_problems(filter: &str, servers: u32, agents: u32) -> Option<String> {
    let (group, rest) = match filter.split_once(':') {
        Some((g, r)) => (g, Some(r)),
        None => (filter, None),
    };
    let count = match group {
        "server" | "servers" => servers,
        "agent" | "agents" => agents,
        "loadbalancer" | "all" => {
            return rest.map(|_| format!("node filter `{filter}`: `{group}` takes no subset"));
        }
        _ => {
            return Some(format!(
                "node filter `{filter}`: unknown group `{group}` (server, agent, loadbalancer, all)"
            ));
        }
    };
    let Some(rest) = rest else {
        return Some(format!(
            "node filter `{filter}`: `{group}` needs a subset (`{group}:*` or `{group}:0`)"
        ));
    };
    // `<subset>[:<suffix>]`; a subset is `*`, an index, `0,2` or `0-2`.
    let subset = rest.split(':').next().unwrap_or_default();
    if count == 0 {
        return Some(format!(
            "node filter `{filter}`: this plan has no {group} nodes"
        ));
    }
    if subset == "*" {
        return None;
    }
    for part in subset.split(',') {
        for index in part.split('-') {
            match index.parse::<u32>() {
                Ok(i) if i < count => {}
                Ok(i) => {
                    return Some(format!(
                        "node filter `{filter}`: index {i} but only {count} {group} node(s)"
                    ));
                }
                Err(_) => {
                    return Some(format!(
                        "node filter `{filter}`: subset `{subset}` is not `*`, an index, a list or a range"
                    ));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_plans_fail_in_one_line() {
        let bad = |f: fn(&mut K3dPlan)| {
            let mut p = K3dPlan::default();
            f(&mut p);
            p.validate().unwrap_err().to_string()
        };
        assert_eq!(
            bad(|p| p.servers = 0),
            "servers: at least 1 (k3s needs a server), found 0"
        );
        assert!(bad(|p| p.name = "Cilium".into()).starts_with("cluster name `Cilium`"));
        assert!(bad(|p| p.name = "a".repeat(41)).starts_with("cluster name"));
        assert_eq!(
            bad(|p| p.agents = 10),
            "agents: 10 is more than this suite provisions (9)"
        );
        assert_eq!(bad(|p| p.image = " ".into()), "image: empty");
    }

    #[test]
    fn agents_filter_only_when_there_are_agents() {
        let plan = K3dPlan {
            agents: 0,
            ..K3dPlan::default()
        };
        let c = plan.simple_config().unwrap();
        assert_eq!(c.env[0].node_filters, ["server:*"]);
        let c = K3dPlan::default().simple_config().unwrap();
        assert_eq!(c.env[0].node_filters, ["server:*", "agent:*"]);
    }

    #[test]
    fn node_filters() {
        assert_eq!(node_filter_problems("server:*", 1, 2), None);
        assert_eq!(node_filter_problems("agent:1", 1, 2), None);
        assert_eq!(node_filter_problems("agent:0-1", 1, 2), None);
        assert_eq!(node_filter_problems("server:0:direct", 1, 2), None);
        assert_eq!(node_filter_problems("loadbalancer", 1, 2), None);
        let p = |f| node_filter_problems(f, 1, 2).unwrap();
        assert_eq!(
            p("agent:2"),
            "node filter `agent:2`: index 2 but only 2 agent node(s)"
        );
        assert!(p("servers").contains("needs a subset"));
        assert!(p("worker:*").contains("unknown group `worker`"));
        assert!(p("loadbalancer:0").contains("takes no subset"));
        assert!(p("agent:x").contains("is not `*`"));
        assert!(
            node_filter_problems("agent:*", 1, 0)
                .unwrap()
                .contains("no agent nodes")
        );
    }
}
