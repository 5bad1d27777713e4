//! The pod-level checks (`cluster.*`): which client pod tests which path, from
//! where the echo servers turned out to be, and how their observations join
//! each node's probe stream.
//!
//! The echo pods (`echo-<i>`, one per node) and each node's probe pod (its echo
//! on the node's network, after its checks) are applied with everything else;
//! once they are Ready their addresses are known, and [`client_plans`] turns
//! them into one [`ConnectPlan`] per client pod:
//!
//! | client | on | checks |
//! |---|---|---|
//! | `client-<i>` | node i, pod network | `cluster.pod-to-pod[same-node]` to `echo-i`, `[cross-node]` to the next node's echo, `cluster.pod-to-host` to node i's InternalIP, `cluster.service[cluster-ip]` / `[cluster-ip-udp]` to service `echo`, `[node-port]` to the next node's InternalIP at the NodePort, `cluster.dns` for service `echo`'s name |
//! | `client-<i>` (also) | | `cluster.stack-delivery[from-pod]`: a burst to `echo-i`'s observer |
//! | `host-client-<i>` | node i, host network | `cluster.host-to-pod` to `echo-i`; `cluster.stack-delivery[from-host]`: a burst to `echo-i`'s observer |
//!
//! Each client prints one observation per check; [`merge`] adds them to node
//! i's probe stream (its plan, its observations, its `done` count), so a node's
//! instance reports its node's paths and a client that printed too little is
//! caught as a truncated stream, like a probe.

use super::manifests::{
    ECHO_TCP_PORT, ECHO_UDP_PORT, HOST_ECHO_PORT, OBSERVE_SESSION_PORT, OBSERVE_UDP_PORT,
};
use conformance_contract::PlannedCheck;
use conformance_contract::pods::{
    ConnectCheck, ConnectPlan, ConnectTarget, DEFAULT_ATTEMPTS, DEFAULT_TIMEOUT_MS, Protocol,
    is_pod_level,
};
use serde_json::Value;

/// The port every control sends to: nothing in the run serves it, and no
/// service of the run has it.
pub const CONTROL_PORT: u16 = 8082;

/// Where one node's echo servers are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSlot {
    pub node: String,
    /// The node's InternalIP (its probe pod's echo listens there).
    pub node_ip: String,
    /// `echo-<i>` and its pod IP.
    pub echo_pod: String,
    pub echo_ip: String,
}

/// Everything the client plans are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub namespace: String,
    pub run_id: String,
    /// In slot order (node i hosts `echo-i`).
    pub slots: Vec<NodeSlot>,
    /// Service `echo`'s ClusterIP.
    pub cluster_ip: String,
    /// Service `echo-nodeport`'s NodePort for the TCP echo.
    pub node_port: u16,
}

/// One client pod to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    /// `client-<i>` or `host-client-<i>`.
    pub name: String,
    pub slot: u32,
    pub node: String,
    pub host_network: bool,
    pub plan: ConnectPlan,
}

/// The pod-level checks among `checks` (`id[variant]` or `id`, as the probe
/// is given them), in catalogue order.
pub fn selected(checks: &[String]) -> Vec<PlannedCheck> {
    let wanted: Vec<(&str, Option<&str>)> = checks
        .iter()
        .map(|c| match c.split_once('[') {
            Some((id, v)) => (id, Some(v.trim_end_matches(']'))),
            None => (c.as_str(), None),
        })
        .collect();
    conformance_contract::CATALOGUE
        .iter()
        .filter(|c| is_pod_level(c.id))
        .flat_map(|c| c.variants.iter().map(move |v| (c.id, *v)))
        .filter(|(id, v)| {
            wanted.is_empty()
                || wanted
                    .iter()
                    .any(|(w, wv)| w == id && wv.is_none_or(|wv| wv == *v))
        })
        .map(|(id, v)| PlannedCheck {
            check: id.to_string(),
            variant: v.to_string(),
        })
        .collect()
}

/// The service name the DNS check resolves, and the control's name nobody made.
pub fn dns_names(namespace: &str, run_id: &str) -> (String, String) {
    (
        format!("echo.{namespace}.svc.cluster.local"),
        format!("absent-{run_id}.{namespace}.svc.cluster.local"),
    )
}

/// One plan per client pod for the `wanted` pod-level checks, and a line for
/// each wanted check no client can run here (`cross-node` on one node).
pub fn client_plans(wanted: &[PlannedCheck], topo: &Topology) -> (Vec<ClientSpec>, Vec<String>) {
    let n = topo.slots.len();
    let mut skipped = Vec::new();
    let all_echoes: Vec<String> = topo.slots.iter().map(|s| s.echo_pod.clone()).collect();
    let mut clients = Vec::new();
    for (i, slot) in topo.slots.iter().enumerate() {
        let next = &topo.slots[(i + 1) % n.max(1)];
        let client = format!("client-{i}");
        let mut checks = Vec::new();
        let mut host_checks = Vec::new();
        for p in wanted {
            let echo = |protocol, host: &str, port, expect: Vec<String>| ConnectTarget::Echo {
                protocol,
                host: host.to_string(),
                port,
                control_port: CONTROL_PORT,
                expect_servers: expect,
            };
            let (target, description, on_host) = match (p.check.as_str(), p.variant.as_str()) {
                ("cluster.pod-to-pod", "same-node") => (
                    echo(
                        Protocol::Tcp,
                        &slot.echo_ip,
                        ECHO_TCP_PORT,
                        vec![slot.echo_pod.clone()],
                    ),
                    format!("{} on node {} (pod IP)", slot.echo_pod, slot.node),
                    false,
                ),
                ("cluster.pod-to-pod", "cross-node") => {
                    if n < 2 {
                        if i == 0 {
                            skipped.push(format!(
                                "cluster.pod-to-pod[cross-node]: not run: the cluster has one node ({})",
                                slot.node
                            ));
                        }
                        continue;
                    }
                    (
                        echo(
                            Protocol::Tcp,
                            &next.echo_ip,
                            ECHO_TCP_PORT,
                            vec![next.echo_pod.clone()],
                        ),
                        format!("{} on node {} (pod IP)", next.echo_pod, next.node),
                        false,
                    )
                }
                ("cluster.pod-to-host", _) => (
                    echo(
                        Protocol::Tcp,
                        &slot.node_ip,
                        HOST_ECHO_PORT,
                        vec![slot.node.clone()],
                    ),
                    format!("node {}'s InternalIP (the probe pod's echo)", slot.node),
                    false,
                ),
                ("cluster.host-to-pod", _) => (
                    echo(
                        Protocol::Tcp,
                        &slot.echo_ip,
                        ECHO_TCP_PORT,
                        vec![slot.echo_pod.clone()],
                    ),
                    format!(
                        "{} (pod IP) from node {}'s network",
                        slot.echo_pod, slot.node
                    ),
                    true,
                ),
                ("cluster.service", "cluster-ip") => (
                    echo(
                        Protocol::Tcp,
                        &topo.cluster_ip,
                        ECHO_TCP_PORT,
                        all_echoes.clone(),
                    ),
                    "service echo (ClusterIP, TCP)".to_string(),
                    false,
                ),
                ("cluster.service", "cluster-ip-udp") => (
                    echo(
                        Protocol::Udp,
                        &topo.cluster_ip,
                        ECHO_UDP_PORT,
                        all_echoes.clone(),
                    ),
                    "service echo (ClusterIP, UDP)".to_string(),
                    false,
                ),
                ("cluster.service", "node-port") => (
                    echo(
                        Protocol::Tcp,
                        &next.node_ip,
                        topo.node_port,
                        all_echoes.clone(),
                    ),
                    format!("service echo-nodeport on node {}'s InternalIP", next.node),
                    false,
                ),
                ("cluster.stack-delivery", variant @ ("from-host" | "from-pod")) => (
                    ConnectTarget::Deliver {
                        observer: slot.echo_pod.clone(),
                        host: slot.echo_ip.clone(),
                        port: OBSERVE_UDP_PORT,
                        session_port: OBSERVE_SESSION_PORT,
                    },
                    if variant == "from-host" {
                        format!(
                            "{} (pod IP) from node {}'s network",
                            slot.echo_pod, slot.node
                        )
                    } else {
                        format!(
                            "{} (pod IP) from another pod on node {}",
                            slot.echo_pod, slot.node
                        )
                    },
                    variant == "from-host",
                ),
                ("cluster.dns", _) => {
                    let (name, control_name) = dns_names(&topo.namespace, &topo.run_id);
                    (
                        ConnectTarget::Dns {
                            name,
                            expect_address: topo.cluster_ip.clone(),
                            control_name,
                        },
                        "service echo's name through the pod's resolver".to_string(),
                        false,
                    )
                }
                _ => {
                    skipped.push(format!(
                        "{}[{}]: no client runs it (this suite version's catalogue names it, its client plan does not)",
                        p.check, p.variant
                    ));
                    continue;
                }
            };
            let check = ConnectCheck {
                check: p.check.clone(),
                variant: p.variant.clone(),
                description,
                target,
            };
            if on_host {
                host_checks.push(check);
            } else {
                checks.push(check);
            }
        }
        for (name, host_network, checks) in [
            (client.clone(), false, checks),
            (format!("host-{client}"), true, host_checks),
        ] {
            if checks.is_empty() {
                continue;
            }
            clients.push(ClientSpec {
                plan: ConnectPlan {
                    client: name.clone(),
                    node: slot.node.clone(),
                    attempts: DEFAULT_ATTEMPTS,
                    timeout_ms: DEFAULT_TIMEOUT_MS,
                    checks,
                },
                name,
                slot: i as u32,
                node: slot.node.clone(),
                host_network,
            });
        }
    }
    skipped.dedup();
    (clients, skipped)
}

/// A topology of placeholders, for `--render-manifests` (no cluster to ask):
/// the client pods are rendered as they would be created, with
/// `<...>` where the run fills in an address.
pub fn placeholder_topology(namespace: &str, run_id: &str, slots: u32) -> Topology {
    Topology {
        namespace: namespace.to_string(),
        run_id: run_id.to_string(),
        slots: (0..slots)
            .map(|i| NodeSlot {
                node: format!("<node of echo-{i}>"),
                node_ip: format!("<InternalIP of the node of echo-{i}>"),
                echo_pod: format!("echo-{i}"),
                echo_ip: format!("<pod IP of echo-{i}>"),
            })
            .collect(),
        cluster_ip: "<ClusterIP of service echo>".to_string(),
        node_port: 0,
    }
}

/// Node i's probe stream with its clients' observation lines added: their
/// (check, variant) pairs join the plan line, the lines go before `done`, and
/// `done` counts them. A stream without a plan line is left as it is (it is
/// already broken, and says so); a stream without `done` gets the lines at its end.
pub fn merge(probe: Vec<String>, clients: &[String], planned: &[PlannedCheck]) -> Vec<String> {
    if clients.is_empty() && planned.is_empty() {
        return probe;
    }
    let kind = |l: &str| {
        serde_json::from_str::<Value>(l)
            .ok()
            .and_then(|v| v.get("kind").and_then(Value::as_str).map(String::from))
    };
    if !probe.iter().any(|l| kind(l).as_deref() == Some("plan")) {
        return probe;
    }
    let mut out = Vec::with_capacity(probe.len() + clients.len());
    let mut added = false;
    for line in probe {
        match kind(&line).as_deref() {
            Some("plan") => {
                let mut v: Value = serde_json::from_str(&line).expect("parsed above");
                if let Some(checks) = v.get_mut("checks").and_then(Value::as_array_mut) {
                    checks.extend(
                        planned
                            .iter()
                            .map(|p| serde_json::to_value(p).expect("a planned check serializes")),
                    );
                }
                out.push(v.to_string());
            }
            Some("done") => {
                out.extend(clients.iter().cloned());
                added = true;
                let mut v: Value = serde_json::from_str(&line).expect("parsed above");
                if let Some(n) = v.get("observations").and_then(Value::as_u64) {
                    v["observations"] = (n + clients.len() as u64).into();
                }
                out.push(v.to_string());
            }
            _ => out.push(line),
        }
    }
    if !added {
        out.extend(clients.iter().cloned());
    }
    out
}

/// A topology of `nodes` nodes `n<i>` (InternalIP 172.18.0.<i+2>, `echo-<i>` at
/// 10.42.<i>.5), ClusterIP 10.43.7.7, NodePort 30080: what the tests plan from.
#[cfg(test)]
pub(crate) fn example_topology(namespace: &str, run_id: &str, nodes: usize) -> Topology {
    Topology {
        namespace: namespace.into(),
        run_id: run_id.into(),
        slots: (0..nodes)
            .map(|i| NodeSlot {
                node: format!("n{i}"),
                node_ip: format!("172.18.0.{}", i + 2),
                echo_pod: format!("echo-{i}"),
                echo_ip: format!("10.42.{i}.5"),
            })
            .collect(),
        cluster_ip: "10.43.7.7".into(),
        node_port: 30080,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(nodes: usize) -> Topology {
        example_topology("cilium-conformance-r1", "r1", nodes)
    }

    fn target_of<'a>(
        clients: &'a [ClientSpec],
        client: &str,
        check: &str,
        variant: &str,
    ) -> &'a ConnectTarget {
        let c = clients.iter().find(|c| c.name == client).expect(client);
        &c.plan
            .checks
            .iter()
            .find(|k| k.check == check && k.variant == variant)
            .unwrap_or_else(|| panic!("{client} has no {check}[{variant}]"))
            .target
    }

    #[test]
    fn every_selected_pod_check_and_nothing_else() {
        let all = selected(&[]);
        assert_eq!(all.len(), 10, "{all:?}");
        assert!(all.iter().all(|p| is_pod_level(&p.check)));
        let some = selected(&[
            "datapath.redirect-peer[tcx]".into(),
            "cluster.service[node-port]".into(),
            "cluster.dns".into(),
        ]);
        let names: Vec<String> = some
            .iter()
            .map(|p| format!("{}[{}]", p.check, p.variant))
            .collect();
        assert_eq!(
            names,
            ["cluster.service[node-port]", "cluster.dns[default]"]
        );
        assert!(selected(&["datapath.redirect-peer[tcx]".into()]).is_empty());
    }

    #[test]
    fn each_client_tests_its_node_s_paths_and_the_next_node_s() {
        let (clients, skipped) = client_plans(&selected(&[]), &topo(3));
        assert!(skipped.is_empty(), "{skipped:?}");
        let names: Vec<&str> = clients.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "client-0",
                "host-client-0",
                "client-1",
                "host-client-1",
                "client-2",
                "host-client-2"
            ]
        );
        let echo = |host: &str, port: u16, servers: &[&str], protocol| ConnectTarget::Echo {
            protocol,
            host: host.into(),
            port,
            control_port: CONTROL_PORT,
            expect_servers: servers.iter().map(|s| s.to_string()).collect(),
        };
        use Protocol::{Tcp, Udp};
        assert_eq!(
            target_of(&clients, "client-2", "cluster.pod-to-pod", "same-node"),
            &echo("10.42.2.5", ECHO_TCP_PORT, &["echo-2"], Tcp)
        );
        // Across nodes: the next node's echo, wrapping round.
        assert_eq!(
            target_of(&clients, "client-2", "cluster.pod-to-pod", "cross-node"),
            &echo("10.42.0.5", ECHO_TCP_PORT, &["echo-0"], Tcp)
        );
        assert_eq!(
            target_of(&clients, "client-1", "cluster.pod-to-host", "default"),
            &echo("172.18.0.3", HOST_ECHO_PORT, &["n1"], Tcp)
        );
        assert_eq!(
            target_of(&clients, "host-client-1", "cluster.host-to-pod", "default"),
            &echo("10.42.1.5", ECHO_TCP_PORT, &["echo-1"], Tcp)
        );
        let any = ["echo-0", "echo-1", "echo-2"];
        assert_eq!(
            target_of(&clients, "client-0", "cluster.service", "cluster-ip-udp"),
            &echo("10.43.7.7", ECHO_UDP_PORT, &any, Udp)
        );
        assert_eq!(
            target_of(&clients, "client-0", "cluster.service", "node-port"),
            &echo("172.18.0.3", 30080, &any, Tcp)
        );
        assert_eq!(
            target_of(&clients, "client-0", "cluster.dns", "default"),
            &ConnectTarget::Dns {
                name: "echo.cilium-conformance-r1.svc.cluster.local".into(),
                expect_address: "10.43.7.7".into(),
                control_name: "absent-r1.cilium-conformance-r1.svc.cluster.local".into(),
            }
        );
        // The stack-delivery bursts go to the echo's observer on the same node,
        // from its node's network and from the node's client pod.
        let observer = ConnectTarget::Deliver {
            observer: "echo-1".into(),
            host: "10.42.1.5".into(),
            port: OBSERVE_UDP_PORT,
            session_port: OBSERVE_SESSION_PORT,
        };
        for (client, variant) in [("host-client-1", "from-host"), ("client-1", "from-pod")] {
            assert_eq!(
                target_of(&clients, client, "cluster.stack-delivery", variant),
                &observer
            );
        }
        let host = clients.iter().find(|c| c.name == "host-client-0").unwrap();
        assert!(host.host_network && host.plan.checks.len() == 2);
        assert!(!clients[0].host_network);
    }

    #[test]
    fn one_node_runs_everything_but_cross_node_and_says_so() {
        let (clients, skipped) = client_plans(&selected(&[]), &topo(1));
        assert_eq!(
            skipped,
            ["cluster.pod-to-pod[cross-node]: not run: the cluster has one node (n0)"]
        );
        let count: usize = clients.iter().map(|c| c.plan.checks.len()).sum();
        assert_eq!(count, 9);
    }

    #[test]
    fn client_lines_join_the_plan_the_observations_and_done() {
        let probe = vec![
            r#"{"kind":"facts"}"#.to_string(),
            r#"{"kind":"plan","checks":[{"check":"a","variant":"x"}]}"#.to_string(),
            r#"{"kind":"observation","check":"a"}"#.to_string(),
            r#"{"kind":"done","observations":1,"duration_ms":5.0}"#.to_string(),
        ];
        let planned = selected(&["cluster.dns".into()]);
        let client = vec![r#"{"kind":"observation","check":"cluster.dns"}"#.to_string()];
        let merged = merge(probe.clone(), &client, &planned);
        let v: Vec<Value> = merged
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(v.len(), 5);
        assert_eq!(v[1]["checks"][1]["check"], "cluster.dns");
        assert_eq!(v[3]["check"], "cluster.dns");
        assert_eq!(v[4]["observations"], 2);
        // A probe stream without a plan is left alone; one without done gets the lines at its end.
        assert_eq!(merge(probe[..1].to_vec(), &client, &planned), probe[..1]);
        assert_eq!(merge(probe[..3].to_vec(), &client, &planned).len(), 4);
    }
}
