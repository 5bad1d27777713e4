//! `datapath.pod-to-host` and `datapath.host-to-pod`: plain routed round trips
//! between a pod and the host namespace over Cilium-style /32 routes, no BPF.
//! They separate "the routing Cilium sets up is broken" from "a BPF primitive is".

use super::{CONTROL_SEQS, ControlLeg, Ctx, Leg, POSITIVE_SEQS, evidence, observe, seqs_json};
use crate::counters::dev_counters;
use crate::topology::{NODE_IP, Node, pod_route};
use crate::traffic::{self, BURST};
use anyhow::Result;
use conformance_contract::Observation;
use conformance_ebpf_common::PROBE_PORT;
use serde_json::json;
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

/// Answers each request with its own sequence number, back to its sender.
fn echo(server: &UdpSocket, requests: &[traffic::Arrival]) {
    for r in requests {
        if let SocketAddr::V4(to) = r.from {
            let _ = server.send_to(&traffic::payload(r.seq), to);
        }
    }
}

/// Sends a burst from `client` to `server_ip`, echoes what arrives at `server` back
/// to its sender, and returns (requests that arrived, replies that came back).
fn round_trip(
    client: &UdpSocket,
    server: &UdpSocket,
    server_ip: std::net::Ipv4Addr,
    seqs: std::ops::Range<u32>,
) -> (Vec<traffic::Arrival>, Vec<traffic::Arrival>, Option<String>) {
    let (_, send_error) = traffic::send_burst(client, server_ip, seqs.clone());
    let requests = traffic::collect_expected(server, seqs.clone());
    echo(server, &requests);
    let replies = if requests.is_empty() {
        Vec::new()
    } else {
        traffic::collect_expected(client, seqs)
    };
    (requests, replies, send_error)
}

pub fn run(
    check: &str,
    variant: &str,
    host_sends: bool,
    ctx: &Ctx,
    started: Instant,
) -> Result<Observation> {
    let mut node = Node::build(ctx.run_id)?;
    let _fault = ctx.apply_fault(check, &mut node, host_sends)?;
    let [a, b] = &node.pods;
    let host_sock = traffic::bind(&node.host, NODE_IP, PROBE_PORT)?;
    let pod_sock = traffic::bind(&a.ns, a.ip, PROBE_PORT)?;
    let (client, server, server_ip, direction) = if host_sends {
        (&host_sock, &pod_sock, a.ip, "host → pod A → host")
    } else {
        (&pod_sock, &host_sock, NODE_IP, "pod A → host → pod A")
    };

    let (requests, replies, send_error) = round_trip(client, server, server_ip, POSITIVE_SEQS);
    let pass = replies.len() as u32 == BURST;
    let reason = if pass {
        format!(
            "{BURST}/{BURST} round trips {direction} over the /32 route via {}",
            a.lxc.name
        )
    } else {
        let mut r = format!(
            "{}/{BURST} requests arrived, {}/{BURST} replies came back ({direction})",
            requests.len(),
            replies.len()
        );
        if let Some(e) = &send_error {
            r.push_str(&format!("; send failed: {e}"));
        }
        r
    };
    let leg = Leg {
        pass,
        failure: (!pass).then(|| conformance_contract::catalogue::NOT_DELIVERED.code.to_string()),
        reason,
        evidence: evidence([
            ("direction", json!(direction)),
            ("pod_ip", json!(a.ip.to_string())),
            ("node_ip", json!(NODE_IP.to_string())),
            (
                "host_route",
                json!(format!("{}/32 dev {} scope link", a.ip, a.lxc.name)),
            ),
            ("requests_arrived", seqs_json(&requests)),
            ("replies_arrived", seqs_json(&replies)),
            ("send_error", json!(send_error)),
        ]),
    };

    // Control: the host's /32 route to pod A points at pod B's veth instead.
    let (a_ip, a_lxc, b_mac, b_lxc) = (a.ip, a.lxc.clone(), b.eth0.mac, b.lxc.clone());
    let astray = pod_route(a_ip, &b_lxc);
    node.host_rtnl.replace_route(&astray)?;
    node.host_rtnl.add_neighbour(b_lxc.index, a_ip, b_mac)?;
    let b_rx_before = dev_counters(&node.pods[1].ns, "eth0")?.rx_packets;
    let (_, send_error) = traffic::send_burst(client, server_ip, CONTROL_SEQS);
    let requests = if host_sends {
        Vec::new()
    } else {
        traffic::collect_expected(server, CONTROL_SEQS)
    };
    echo(server, &requests);
    // What must not arrive: the request at pod A (host sends) or the reply at pod A (pod sends).
    let pod_b = &node.pods[1].ns;
    let (leaks, witnessed) = traffic::collect_leaks(&pod_sock, CONTROL_SEQS, || {
        dev_counters(pod_b, "eth0")
            .map(|c| c.rx_packets >= b_rx_before + u64::from(BURST))
            .unwrap_or(false)
    });
    let b_rx = dev_counters(pod_b, "eth0")?.rx_packets - b_rx_before;
    node.host_rtnl.replace_route(&pod_route(a_ip, &a_lxc))?;
    let control = ControlLeg {
        description: format!(
            "the host's /32 route to pod A points at {} (pod B) instead of {}",
            b_lxc.name, a_lxc.name
        ),
        leaked: leaks.len(),
        witnessed,
        evidence: evidence([
            ("requests_arrived", seqs_json(&requests)),
            ("delivered_to_pod_a", seqs_json(&leaks)),
            ("pod_b_eth0_rx_packets_delta", json!(b_rx)),
            ("send_error", json!(send_error)),
        ]),
    };
    Ok(observe(check, variant, started, leg, control, BURST))
}
