//! What a triage bundle (`cargo xtask triage --target cluster`) takes from the
//! cluster, after the run: Cilium's status (its DaemonSet and each agent pod),
//! its configuration (ConfigMap `kube-system/cilium-config`), and the agent log
//! of each node the run judged, bounded in lines, bytes and age.
//!
//! Never a Secret, a ServiceAccount token or a kubeconfig credential: nothing
//! here asks for one, and every text still passes the bundle's redactor. Each
//! request that fails is one [`Collected`] error naming what and why; it never
//! stops the others (one unhealthy agent does not lose the other nodes' logs).
//! The probe pods' own lines are in the run's report already (the run's
//! namespace is gone by the time this runs).

use super::inspect::{
    AgentPod, CILIUM_AGENT_CONTAINER, CILIUM_CONFIGMAP, CILIUM_NAMESPACE, Connection,
    cilium_config, cilium_daemonset, cilium_pods, request_error,
};
use crate::triage::Collected;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;
use std::fmt::Write as _;

/// How much of each agent's log a bundle takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// The last this many lines ...
    pub lines: i64,
    /// ... at most this many bytes (the API server cuts there) ...
    pub bytes: i64,
    /// ... written in the last this many seconds.
    pub since_seconds: i64,
}

impl LogLimits {
    /// A bundle capped at `max_bytes` whose run took at most `run_seconds`: an
    /// eighth of the cap for all logs together, split over `nodes`, at most
    /// 2 MiB and 5000 lines each, from the run's time and five minutes before.
    pub fn for_bundle(max_bytes: u64, run_seconds: u64, nodes: usize) -> LogLimits {
        let share = max_bytes / 8 / nodes.max(1) as u64;
        LogLimits {
            lines: 5000,
            bytes: share.clamp(4096, 2 << 20) as i64,
            since_seconds: (run_seconds + 300) as i64,
        }
    }
}

/// The node names of a run's cluster instances (`cluster/<node>` labels).
pub fn nodes_of(instance_labels: &[String]) -> Vec<String> {
    let mut nodes: Vec<String> = instance_labels
        .iter()
        .filter_map(|l| l.strip_prefix("cluster/"))
        .map(String::from)
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// Cilium's status, configuration and the agent logs of `nodes`, as bundle files
/// under `cluster/`.
pub async fn collect(conn: &Connection, nodes: &[String], limits: LogLimits) -> Vec<Collected> {
    let mut out = Vec::new();
    let agents = cilium_pods(conn).await.map_err(|e| e.to_string());
    out.push(Collected {
        path: "cluster/cilium-status.txt".into(),
        content: status(conn, &agents).await.map(String::into_bytes),
    });
    out.push(Collected {
        path: "cluster/cilium-config.txt".into(),
        content: config(conn).await.map(String::into_bytes),
    });
    for node in nodes {
        let content = match &agents {
            Ok(agents) => agent_log(conn, agents, node, limits).await,
            Err(e) => Err(format!("no agent list, so no agent log: {e}")),
        };
        out.push(Collected {
            path: format!("cluster/agent-logs/{node}.log"),
            content: content.map(String::into_bytes),
        });
    }
    out
}

async fn status(
    conn: &Connection,
    agents: &Result<Vec<AgentPod>, String>,
) -> Result<String, String> {
    let ds = cilium_daemonset(conn).await.map_err(|e| e.to_string())?;
    let mut text = format!("cluster: {}\n", conn.describe());
    match ds {
        None => text.push_str("DaemonSet kube-system/cilium: not found\n"),
        Some(ds) => {
            let image = ds
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| {
                    s.containers
                        .iter()
                        .find(|c| c.name == CILIUM_AGENT_CONTAINER)
                })
                .and_then(|c| c.image.clone())
                .unwrap_or_else(|| "unknown".into());
            let _ = writeln!(text, "DaemonSet kube-system/cilium: image {image}");
            if let Some(s) = ds.status {
                let _ = writeln!(
                    text,
                    "  desired {}, scheduled {}, ready {}, available {}, updated {}, misscheduled {}",
                    s.desired_number_scheduled,
                    s.current_number_scheduled,
                    s.number_ready,
                    s.number_available.unwrap_or(0),
                    s.updated_number_scheduled.unwrap_or(0),
                    s.number_misscheduled
                );
            }
        }
    }
    match agents {
        Ok(agents) => {
            let _ = writeln!(text, "agent pods ({}):", agents.len());
            for a in agents {
                let _ = writeln!(
                    text,
                    "  {} on {}: {}{}",
                    a.name,
                    a.node,
                    a.phase,
                    if a.ready { ", Ready" } else { ", not Ready" }
                );
            }
        }
        Err(e) => {
            let _ = writeln!(text, "agent pods: not listed: {e}");
        }
    }
    Ok(text)
}

/// The ConfigMap's data, one `key: value` a line in key order; its metadata
/// (annotations such as `last-applied-configuration`) is left out.
async fn config(conn: &Connection) -> Result<String, String> {
    let cm = cilium_config(conn).await.map_err(|e| e.to_string())?;
    let Some(cm) = cm else {
        return Ok(format!(
            "ConfigMap {CILIUM_NAMESPACE}/{CILIUM_CONFIGMAP}: not found\n"
        ));
    };
    let mut text = format!("# ConfigMap {CILIUM_NAMESPACE}/{CILIUM_CONFIGMAP} (data only)\n");
    for (k, v) in cm.data.unwrap_or_default() {
        let _ = writeln!(text, "{k}: {}", v.replace('\n', "\\n"));
    }
    Ok(text)
}

async fn agent_log(
    conn: &Connection,
    agents: &[AgentPod],
    node: &str,
    limits: LogLimits,
) -> Result<String, String> {
    let Some(agent) = agents.iter().find(|a| a.node == node) else {
        let on: Vec<&str> = agents.iter().map(|a| a.node.as_str()).collect();
        return Err(format!(
            "no Cilium agent pod on node {node} (agents are on: {})",
            if on.is_empty() {
                "no node".to_string()
            } else {
                on.join(", ")
            }
        ));
    };
    let params = LogParams {
        container: Some(CILIUM_AGENT_CONTAINER.into()),
        tail_lines: Some(limits.lines),
        limit_bytes: Some(limits.bytes),
        since_seconds: Some(limits.since_seconds),
        ..LogParams::default()
    };
    let log = Api::<Pod>::namespaced(conn.client.clone(), CILIUM_NAMESPACE)
        .logs(&agent.name, &params)
        .await
        .map_err(|e| {
            request_error(
                conn,
                &format!(
                    "get the log of {CILIUM_NAMESPACE}/{} ({CILIUM_AGENT_CONTAINER})",
                    agent.name
                ),
                &e,
            )
            .to_string()
        })?;
    Ok(format!(
        "# {CILIUM_NAMESPACE}/{} container {CILIUM_AGENT_CONTAINER} on {node}: the last {} lines, at most {} bytes, of the last {} s\n{log}",
        agent.name, limits.lines, limits.bytes, limits.since_seconds
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::mock_api::{self, ApiHandle, Seen};
    use serde_json::{Value, json};

    fn setup() -> (Connection, ApiHandle) {
        mock_api::connection("k3d-x")
    }

    fn agents() -> Value {
        let pod = |name: &str, node: &str| {
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": "kube-system", "labels": {"k8s-app": "cilium"}},
                   "spec": {"nodeName": node, "containers": [{"name": "cilium-agent"}]},
                   "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
        };
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
               "items": [pod("cilium-a", "n0"), pod("cilium-b", "n1")]})
    }

    fn daemonset() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
               "metadata": {"name": "cilium", "namespace": "kube-system"},
               "spec": {"selector": {}, "template": {"spec": {"containers": [
                   {"name": "cilium-agent", "image": "quay.io/cilium/cilium:v1.19.5"}]}}},
               "status": {"currentNumberScheduled": 2, "desiredNumberScheduled": 2,
                          "numberMisscheduled": 0, "numberReady": 1, "numberAvailable": 1,
                          "updatedNumberScheduled": 2}})
    }

    fn config_map() -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "cilium-config", "namespace": "kube-system",
                            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"secret\":\"s3cr3t-annotation\"}"}},
               "data": {"routing-mode": "tunnel", "enable-tcx": "true",
                        "clustermesh-token": "tok-0123456789abcdef"}})
    }

    #[tokio::test]
    async fn status_config_and_each_node_s_agent_log_and_one_failure_does_not_stop_the_rest() {
        let (conn, mut handle) = setup();
        let server = tokio::spawn(async move {
            let mut seen: Vec<Seen> = Vec::new();
            seen.push(mock_api::serve(&mut handle, 200, agents()).await);
            seen.push(mock_api::serve(&mut handle, 200, daemonset()).await);
            seen.push(mock_api::serve(&mut handle, 200, config_map()).await);
            seen.push(
                mock_api::serve(&mut handle, 200, json!("level=info msg=\"agent up\"\n")).await,
            );
            seen.push(
                mock_api::serve(
                    &mut handle,
                    500,
                    mock_api::status(500, "InternalError", "container cilium-agent is restarting"),
                )
                .await,
            );
            seen
        });
        let limits = LogLimits {
            lines: 100,
            bytes: 65536,
            since_seconds: 900,
        };
        let nodes = vec!["n0".to_string(), "n1".to_string(), "n2".to_string()];
        let got = collect(&conn, &nodes, limits).await;
        let seen = server.await.unwrap();
        let lines: Vec<String> = seen.iter().map(Seen::line).collect();
        assert_eq!(
            lines,
            [
                "GET /api/v1/namespaces/kube-system/pods",
                "GET /apis/apps/v1/namespaces/kube-system/daemonsets/cilium",
                "GET /api/v1/namespaces/kube-system/configmaps/cilium-config",
                "GET /api/v1/namespaces/kube-system/pods/cilium-a/log",
                "GET /api/v1/namespaces/kube-system/pods/cilium-b/log",
            ]
        );
        assert!(seen.iter().all(|s| !s.path.contains("secret")), "{lines:?}");
        assert_eq!(seen[0].query, "&labelSelector=k8s-app%3Dcilium");
        for q in [
            "container=cilium-agent",
            "tailLines=100",
            "limitBytes=65536",
            "sinceSeconds=900",
        ] {
            assert!(seen[3].query.contains(q), "{}", seen[3].query);
        }
        let paths: Vec<&str> = got.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "cluster/cilium-status.txt",
                "cluster/cilium-config.txt",
                "cluster/agent-logs/n0.log",
                "cluster/agent-logs/n1.log",
                "cluster/agent-logs/n2.log",
            ]
        );
        let text = |i: usize| String::from_utf8(got[i].content.clone().unwrap()).unwrap();
        assert!(
            text(0).contains("image quay.io/cilium/cilium:v1.19.5"),
            "{}",
            text(0)
        );
        assert!(
            text(0).contains("desired 2, scheduled 2, ready 1"),
            "{}",
            text(0)
        );
        assert!(
            text(0).contains("cilium-b on n1: Running, Ready"),
            "{}",
            text(0)
        );
        assert!(text(1).contains("routing-mode: tunnel"), "{}", text(1));
        assert!(
            !text(1).contains("s3cr3t-annotation"),
            "metadata is never taken"
        );
        assert!(text(2).contains("agent up"));
        let n1 = got[3].content.clone().unwrap_err();
        assert!(n1.contains("container cilium-agent is restarting"), "{n1}");
        let n2 = got[4].content.clone().unwrap_err();
        assert_eq!(n2, "no Cilium agent pod on node n2 (agents are on: n0, n1)");
    }

    #[tokio::test]
    async fn a_forbidden_agent_list_is_recorded_for_every_node() {
        let (conn, mut handle) = setup();
        let server = tokio::spawn(async move {
            mock_api::serve(
                &mut handle,
                403,
                mock_api::status(403, "Forbidden", "pods is forbidden"),
            )
            .await;
            mock_api::serve(&mut handle, 200, daemonset()).await;
            mock_api::serve(
                &mut handle,
                404,
                mock_api::status(404, "NotFound", "configmaps \"cilium-config\" not found"),
            )
            .await;
        });
        let limits = LogLimits::for_bundle(20 << 20, 60, 2);
        let got = collect(&conn, &["n0".to_string()], limits).await;
        server.await.unwrap();
        let status = String::from_utf8(got[0].content.clone().unwrap()).unwrap();
        assert!(
            status.contains("agent pods: not listed:") && status.contains("pods is forbidden"),
            "{status}"
        );
        let config = String::from_utf8(got[1].content.clone().unwrap()).unwrap();
        assert!(config.contains("not found"), "{config}");
        assert!(
            got[2]
                .content
                .as_ref()
                .unwrap_err()
                .contains("pods is forbidden")
        );
    }

    #[test]
    fn limits_share_an_eighth_of_the_cap_and_nodes_come_from_instance_labels() {
        let l = LogLimits::for_bundle(20 << 20, 120, 4);
        assert_eq!(l.bytes, (20 << 20) / 8 / 4);
        assert_eq!(l.since_seconds, 420);
        assert_eq!(LogLimits::for_bundle(1 << 16, 1, 100).bytes, 4096);
        let labels = [
            "lab".to_string(),
            "cluster/n1".into(),
            "cluster/n0".into(),
            "cluster/n1".into(),
        ];
        assert_eq!(nodes_of(&labels), ["n0", "n1"]);
    }
}
