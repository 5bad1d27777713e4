//! `datapath.pod-to-host` and `datapath.host-to-pod`: plain routed round trips
//! between a pod and the host namespace over Cilium-style /32 routes, no BPF.
//! They separate "the routing Cilium sets up is broken" from "a BPF primitive is".

use super::{
    CONTROL_SEQS, ControlLeg, Ctx, Leg, POSITIVE_SEQS, Registered, evidence, observe, seqs_json,
};
use crate::hops::{Accounting, Figure, Path};
use crate::netns::NetNs;
use crate::topology::{NODE_IP, Node, pod_route};
use crate::traffic::{self, Arrival, BURST};
use anyhow::Result;
use conformance_contract::Observation;
use conformance_ebpf_common::PROBE_PORT;
use serde_json::json;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Instant;

/// Answers each request with its own sequence number, back to its sender. Returns
/// how many replies the kernel accepted and the first send error.
fn echo(server: &UdpSocket, requests: &[Arrival]) -> (u32, Option<String>) {
    let mut sent = 0;
    let mut error = None;
    for r in requests {
        if let SocketAddr::V4(to) = r.from {
            match server.send_to(&traffic::payload(r.seq), to) {
                Ok(_) => sent += 1,
                Err(e) => {
                    error.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
    (sent, error)
}

/// One end of the round trip: its socket, namespace and the device its traffic
/// to the other end leaves by.
struct End<'a> {
    name: &'static str,
    sock: &'a UdpSocket,
    ns: &'a NetNs,
    device: &'a str,
    ip: Ipv4Addr,
}

/// `from`'s device tx → `to`'s device rx → `to`'s IP/UDP receive path.
fn one_way<'a>(from: &End<'a>, to: &End<'a>) -> Path<'a> {
    Path::new()
        .tx(
            from.ns,
            from.device,
            &format!("{} {}", from.name, from.device),
        )
        .rx(to.ns, to.device, &format!("{} {}", to.name, to.device))
        .stack(to.ns, to.name)
}

/// What one round trip did, hop by hop.
struct RoundTrip {
    requests: Vec<Arrival>,
    replies: Vec<Arrival>,
    send_error: Option<String>,
    hops: Accounting,
}

/// Sends a burst from `client` to `server`, echoes what arrives back to its sender,
/// and accounts for both directions. `wait_requests` collects at the server's
/// socket, `wait_replies` at the client's (skipped when nothing was echoed), so a
/// datagram is always counted at the end it really reached.
fn round_trip(
    client: &End,
    server: &End,
    seqs: std::ops::Range<u32>,
    wait_requests: impl FnOnce() -> Vec<Arrival>,
    wait_replies: impl FnOnce() -> Vec<Arrival>,
) -> Result<RoundTrip> {
    let (request, reply) = (one_way(client, server), one_way(server, client));
    let (request0, reply0) = (request.read()?, reply.read()?);
    let (sent, send_error) = traffic::send_burst(client.sock, server.ip, seqs);
    let requests = wait_requests();
    let (echoed, echo_error) = echo(server.sock, &requests);
    let replies = if echoed > 0 {
        wait_replies()
    } else {
        Vec::new()
    };
    let (request1, reply1) = (request.read()?, reply.read()?);
    let mut hops = Accounting::new(BURST);
    hops.push(Figure::path(
        format!("{} sent", client.name),
        sent,
        send_error.clone(),
    ))
    .extend(request.figures(&request0, &request1))
    .push(Figure::path(
        format!("{} socket", server.name),
        requests.len(),
        None,
    ))
    .push(Figure::path(
        format!("{} echoed", server.name),
        echoed,
        echo_error,
    ))
    .extend(reply.figures(&reply0, &reply1))
    .push(Figure::path(
        format!("{} socket", client.name),
        replies.len(),
        None,
    ));
    Ok(RoundTrip {
        requests,
        replies,
        send_error,
        hops,
    })
}

pub const CHECKS: &[Registered] = &[
    Registered {
        id: "datapath.pod-to-host",
        run: |check, variant, ctx, started| run(check, variant, false, ctx, started),
    },
    Registered {
        id: "datapath.host-to-pod",
        run: |check, variant, ctx, started| run(check, variant, true, ctx, started),
    },
];

fn run(
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
    let host = End {
        name: "host",
        sock: &host_sock,
        ns: &node.host,
        device: &a.lxc.name,
        ip: NODE_IP,
    };
    let pod = End {
        name: "pod A",
        sock: &pod_sock,
        ns: &a.ns,
        device: "eth0",
        ip: a.ip,
    };
    let (client, server, direction) = if host_sends {
        (&host, &pod, "host → pod A → host")
    } else {
        (&pod, &host, "pod A → host → pod A")
    };

    let trip = round_trip(
        client,
        server,
        POSITIVE_SEQS,
        || traffic::collect_expected(server.sock, POSITIVE_SEQS),
        || traffic::collect_expected(client.sock, POSITIVE_SEQS),
    )?;
    let ok = || {
        format!(
            "{BURST}/{BURST} round trips {direction} over the /32 route via {}",
            a.lxc.name
        )
    };
    let leg = Leg::delivery(
        &trip.hops,
        ok,
        evidence([
            ("direction", json!(direction)),
            ("pod_ip", json!(a.ip.to_string())),
            ("node_ip", json!(NODE_IP.to_string())),
            (
                "host_route",
                json!(format!("{}/32 dev {} scope link", a.ip, a.lxc.name)),
            ),
            ("requests_arrived", seqs_json(&trip.requests)),
            ("replies_arrived", seqs_json(&trip.replies)),
            ("send_error", json!(trip.send_error)),
            ("hops", trip.hops.to_json()),
        ]),
    );

    // Control: the host's /32 route to pod A points at pod B's veth instead, so the
    // host's packets to pod A (requests or replies) go astray into pod B.
    let (a_ip, a_lxc, b_mac, b_lxc) = (a.ip, a.lxc.clone(), b.eth0.mac, b.lxc.clone());
    node.host_rtnl.replace_route(&pod_route(a_ip, &b_lxc))?;
    node.host_rtnl.add_neighbour(b_lxc.index, a_ip, b_mac)?;
    let pod_b = &node.pods[1].ns;
    let astray = Path::new()
        .tx(&node.host, &b_lxc.name, &b_lxc.name)
        .rx(pod_b, "eth0", "pod B eth0")
        .stack(pod_b, "pod B");
    let astray0 = astray.read()?;
    let b_rx_before = crate::counters::dev_counters(pod_b, "eth0")?.rx_packets;
    // What must not arrive: the request at pod A (host sends) or the reply at pod A
    // (pod sends). Pod A's socket is listened on until pod B's eth0 has received the
    // astray burst; the other end's socket is waited on as in the positive leg.
    let leaks_at_pod_a = || {
        traffic::collect_leaks(&pod_sock, CONTROL_SEQS, || {
            crate::counters::dev_counters(pod_b, "eth0")
                .map(|c| c.rx_packets >= b_rx_before + u64::from(BURST))
                .unwrap_or(false)
        })
        .0
    };
    let trip = if host_sends {
        round_trip(client, server, CONTROL_SEQS, leaks_at_pod_a, || {
            traffic::collect_expected(client.sock, CONTROL_SEQS)
        })?
    } else {
        round_trip(
            client,
            server,
            CONTROL_SEQS,
            || traffic::collect_expected(server.sock, CONTROL_SEQS),
            leaks_at_pod_a,
        )?
    };
    let astray_figures = astray.figures(&astray0, &astray.read()?);
    node.host_rtnl.replace_route(&pod_route(a_ip, &a_lxc))?;
    let b_rx = crate::counters::dev_counters(pod_b, "eth0")?.rx_packets - b_rx_before;
    let arrived_at_a = if host_sends {
        trip.requests.len()
    } else {
        trip.replies.len()
    };
    let round_trips = trip.replies.len();
    let account = format!(
        "{round_trips}/{BURST} round trips; the host's packets to pod A went out {} and pod B's eth0 received {b_rx}, pod A {arrived_at_a}/{BURST}{}",
        b_lxc.name,
        if round_trips < BURST as usize {
            ": the check's round-trip test fails when the route points elsewhere"
        } else {
            ""
        }
    );
    let mut astray_hops = Accounting::new(BURST);
    astray_hops.extend(astray_figures);
    let control = ControlLeg {
        description: format!(
            "the host's /32 route to pod A points at {} (pod B) instead of {}",
            b_lxc.name, a_lxc.name
        ),
        witnessed: b_rx >= u64::from(BURST),
        test_held: trip.hops.complete(),
        account,
        evidence: evidence([
            ("requests_arrived", seqs_json(&trip.requests)),
            ("replies_arrived", seqs_json(&trip.replies)),
            ("pod_b_eth0_rx_packets_delta", json!(b_rx)),
            ("send_error", json!(trip.send_error)),
            ("hops", trip.hops.to_json()),
            ("astray_hops", astray_hops.to_json()),
        ]),
    };
    Ok(observe(check, variant, started, leg, control))
}
