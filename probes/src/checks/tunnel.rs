//! `tunnel.vxlan` and `tunnel.geneve`: pod-to-pod traffic between two nodes over a
//! collect-metadata (`external`) tunnel device, the way Cilium's `routingMode:
//! tunnel` carries it, and its MTU: cilium-cli's pod-to-pod-no-frag.
//!
//! # What runs
//! Two nodes ([`TwoNodes`]: host namespaces joined by an underlay veth, MTU 1500,
//! each with `cilium_vxlan` / `cilium_geneve` in external mode on Cilium's port and
//! one pod). The encapsulation step is `tunnel_encap` on pod A's host-side veth
//! (node 1, ingress, where Cilium's `from-container` runs): `bpf_skb_set_tunnel_key`
//! with node 2's underlay address as remote, VNI [`VNI`] (Cilium puts the source
//! identity there), ttl 64 and `BPF_F_ZERO_CSUM_TX` (Cilium's flags), then
//! `bpf_redirect` to the tunnel device, which builds the outer headers from that key.
//! The decapsulation step is `tunnel_decap` on node 2's tunnel device (ingress,
//! Cilium's `from-overlay`): it records the key the device attached
//! (`bpf_skb_get_tunnel_key`: the outer source and the VNI) per datagram, rewrites
//! the MACs for pod B and redirects to pod B's host-side veth. Neither node can
//! route to the other's pods (no routes, forwarding off): only the tunnel delivers.
//!
//! # What passes
//! Pod B's socket receives all 5 datagrams, each whole (its full length); the
//! decap program saw, for each, remote = node 1's underlay address and the VNI
//! the encap program set; every hop counted the burst (pod A's eth0, the encap
//! program's match, key and redirect, node 1's tunnel device and underlay tx, node
//! 2's underlay rx, its IP input and the tunnel's UDP socket, its tunnel device,
//! the decap program, pod B's veth and stack); and nothing was fragmented: IP
//! `FragCreates` in pod A and node 1, `FragFails` in node 1 and `ReasmReqds` in node
//! 2 and pod B stay +0 (the per-namespace `/proc/net/snmp`). `small` sends 8-byte
//! datagrams; `no-frag` sets the pod MTU as Cilium does (underlay MTU − tunnel
//! overhead: 1500 − 50 = 1450 on both ends of both pods' veths) and sends
//! datagrams that fill it exactly (1450-byte IP packets, 1422 bytes of payload),
//! which the tunnel turns into 1500-byte underlay packets: the largest that fit.
//!
//! # The controls, and why they are the right ones
//! Each breaks one decisive step and must fail the check's own test:
//! - `small`: the encapsulation step's key. The encap program sets VNI [`WRONG_VNI`]
//!   instead, nothing else changes. A collect-metadata device accepts every VNI, so
//!   the packets still cross the underlay and the decap program still delivers them
//!   (it judges nothing itself); only the key it read differs, and the check's
//!   tunnel-key test must fail on that alone. That shows the key witness is real:
//!   it reads what the sender's `bpf_skb_set_tunnel_key` put on the wire, not a
//!   constant. (A wrong *remote* would only show that undelivered traffic is not
//!   delivered, which the faults already show, and would rest on ARP timing.) The
//!   control is witnessed when the decap program recorded the whole burst.
//! - `no-frag`: the MTU step. The pod MTU is set to the underlay's (1500: the
//!   overhead forgotten, the misconfiguration pod-to-pod-no-frag exists for) and the
//!   datagrams fill it again (1500-byte IP packets). Encapsulated they are 1550
//!   bytes, 50 too many for the underlay; the outer header has no DF (Cilium does
//!   not pass `BPF_F_DONT_FRAGMENT`), so node 1 fragments each into two and node 2
//!   reassembles them: pod B still receives every datagram whole, and only the
//!   fragment counters move. The check's no-fragments test must fail on that. This
//!   is exactly the silent cost pod-to-pod-no-frag catches (with DF set the packets
//!   would be dropped instead: a delivery failure, which proves less about the
//!   fragment witness). The control is witnessed when node 2's underlay end
//!   received at least the burst.
//!
//! # Faults
//! `drop` (the dropping program on pod A's eth0 egress) and `no-route` (pod A's
//! default route removed), through [`Ctx::apply_pod_fault`]: either leaves pod B
//! with nothing.

use super::{CONTROL_SEQS, ControlLeg, Ctx, Leg, POSITIVE_SEQS, Registered, evidence, observe};
use crate::counters::NsCounters;
use crate::hooks::AttachMode;
use crate::hops::{Accounting, Figure, Role};
use crate::netlink::TunnelKind;
use crate::netns::NetNs;
use crate::topology_two_nodes::{TwoNodes, UNDERLAY_MTU};
use crate::traffic::{self, BURST, DELIVERY_TIMEOUT};
use crate::tunnel_hooks::{
    BPF_F_ZERO_CSUM_TX, DecapConfig, EncapConfig, TunnelEvent, TunnelProgram, slot,
};
use anyhow::{Result, bail};
use conformance_contract::Observation;
use conformance_contract::catalogue::{
    FRAGMENTED, Failure, HOOK_NOT_RUN, NOT_DELIVERED, NOT_ENCAPSULATED, WRONG_TUNNEL_KEY,
};
use conformance_ebpf_common::{PAYLOAD_MAGIC, PROBE_PORT};
use serde_json::{Value, json};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::ops::Range;
use std::time::{Duration, Instant};

pub const CHECKS: &[Registered] = &[
    Registered {
        id: "tunnel.vxlan",
        run: |check, variant, ctx, started| run(check, variant, TunnelKind::Vxlan, ctx, started),
    },
    Registered {
        id: "tunnel.geneve",
        run: |check, variant, ctx, started| run(check, variant, TunnelKind::Geneve, ctx, started),
    },
];

/// The tunnel id the encap program sets (Cilium: the source's security identity).
pub const VNI: u32 = 4242;
/// The `small` control's tunnel id.
pub const WRONG_VNI: u32 = VNI + 1;
const TTL: u8 = 64;
/// Outer IPv4 + UDP header bytes of a datagram: IP 20 + UDP 8.
const IP_UDP_HLEN: u32 = 28;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Small,
    NoFrag,
}

impl Variant {
    fn parse(check: &str, variant: &str) -> Result<Self> {
        match variant {
            "small" => Ok(Self::Small),
            "no-frag" => Ok(Self::NoFrag),
            _ => bail!("unknown variant `{variant}` for {check}"),
        }
    }
}

/// A datagram of `len` payload bytes: the probe payload, then zeros.
fn datagram(seq: u32, len: usize) -> Vec<u8> {
    let mut d = vec![0u8; len.max(8)];
    d[..8].copy_from_slice(&traffic::payload(seq));
    d
}

/// UDP payload bytes of a datagram whose IP packet is `ip_len` bytes.
fn payload_for(ip_len: u32) -> usize {
    (ip_len - IP_UDP_HLEN) as usize
}

/// A datagram that arrived: its sequence number and how many bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Got {
    seq: u32,
    len: usize,
}

/// Drains `sock` until every sequence number of `want` arrived or the timeout,
/// keeping each datagram's full length (the probe's own collector reads 256 bytes).
fn collect(sock: &UdpSocket, want: Range<u32>, timeout: Duration) -> Vec<Got> {
    let deadline = Instant::now() + timeout;
    let mut got: Vec<Got> = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                if n >= 8 && buf[..4] == PAYLOAD_MAGIC {
                    let seq = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                    if want.contains(&seq) && !got.iter().any(|g| g.seq == seq) {
                        got.push(Got { seq, len: n });
                    }
                }
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {}
        }
        if got.len() == want.len() || Instant::now() >= deadline {
            got.sort_by_key(|g| g.seq);
            return got;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Where a meter's count comes from.
enum Source<'a> {
    Prog(&'a TunnelProgram, u32),
    Rx(&'a NetNs, &'a str),
    Tx(&'a NetNs, &'a str),
    Mib(&'a NetNs, &'static str, &'static str),
}

struct Meter<'a> {
    at: String,
    role: Role,
    failure: &'static Failure,
    /// A fragmentation counter: the no-fragments test sums these.
    fragments: bool,
    source: Source<'a>,
}

/// The hops of the tunnel path in order, like [`crate::hops::Path`] but with the
/// tunnel programs' own counters and the fragment counters.
#[derive(Default)]
struct Meters<'a>(Vec<Meter<'a>>);

impl<'a> Meters<'a> {
    fn path(mut self, at: String, failure: &'static Failure, source: Source<'a>) -> Self {
        self.0.push(Meter {
            at,
            role: Role::Path,
            failure,
            fragments: false,
            source,
        });
        self
    }

    fn loss(mut self, at: String, fragments: bool, source: Source<'a>) -> Self {
        self.0.push(Meter {
            at,
            role: Role::Loss,
            failure: &NOT_DELIVERED,
            fragments,
            source,
        });
        self
    }

    fn read(&self) -> Result<Vec<u64>> {
        let mut namespaces: Vec<NsCounters> = Vec::new();
        let mut counts = Vec::with_capacity(self.0.len());
        for m in &self.0 {
            let ns = match m.source {
                Source::Prog(p, s) => {
                    counts.push(p.counters()?.get(s));
                    continue;
                }
                Source::Rx(ns, _) | Source::Tx(ns, _) | Source::Mib(ns, _, _) => ns,
            };
            let i = match namespaces.iter().position(|c| c.ns() == ns.name()) {
                Some(i) => i,
                None => {
                    namespaces.push(NsCounters::read(ns)?);
                    namespaces.len() - 1
                }
            };
            let c = &namespaces[i];
            counts.push(match m.source {
                Source::Rx(_, dev) => c.device(dev)?.rx_packets,
                Source::Tx(_, dev) => c.device(dev)?.tx_packets,
                Source::Mib(_, group, field) => c.mib(group, field)?,
                Source::Prog(..) => unreachable!("handled above"),
            });
        }
        Ok(counts)
    }

    fn figures(&self, before: &[u64], after: &[u64]) -> Vec<Figure> {
        self.0
            .iter()
            .zip(before.iter().zip(after))
            .map(|(m, (b, a))| Figure {
                at: m.at.clone(),
                role: m.role,
                count: a.saturating_sub(*b),
                failure: m.failure,
                note: None,
            })
            .collect()
    }

    /// The fragment counters that moved, e.g. `("node 1 Ip FragCreates", 10)`.
    fn fragments(&self, figures: &[Figure]) -> Vec<(String, u64)> {
        self.0
            .iter()
            .zip(figures)
            .filter(|(m, f)| m.fragments && f.count > 0)
            .map(|(_, f)| (f.at.clone(), f.count))
            .collect()
    }
}

/// What one leg must show besides delivery.
struct Expect {
    seqs: Range<u32>,
    /// The outer source the decap program must read: node 1's underlay address.
    remote: Ipv4Addr,
    vni: u32,
    /// Payload bytes every datagram must arrive with.
    len: usize,
}

/// One leg's traffic and what every witness saw of it.
struct Burst {
    sent: u32,
    send_error: Option<String>,
    arrivals: Vec<Got>,
    hops: Accounting,
    events: Vec<TunnelEvent>,
    events_lost: u64,
    fragments: Vec<(String, u64)>,
}

impl Burst {
    /// The count of the hop named `at`.
    fn count(&self, at: &str) -> u64 {
        self.hops
            .figures
            .iter()
            .find(|f| f.at == at)
            .map_or(0, |f| f.count)
    }

    fn evidence(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("sent", json!(self.sent)),
            ("send_error", json!(self.send_error)),
            (
                "arrived",
                json!(
                    self.arrivals
                        .iter()
                        .map(|g| json!({"seq": g.seq, "len": g.len}))
                        .collect::<Vec<_>>()
                ),
            ),
            (
                "decap_events",
                json!(self.events.iter().map(|e| e.to_json()).collect::<Vec<_>>()),
            ),
            ("decap_events_lost", json!(self.events_lost)),
            (
                "fragments",
                json!(
                    self.fragments
                        .iter()
                        .map(|(at, n)| json!({"at": at, "count": n}))
                        .collect::<Vec<_>>()
                ),
            ),
            ("hops", self.hops.to_json()),
        ]
    }
}

/// The check's test on one leg: `None` passes, else the failure and why. Delivery
/// hop by hop first (its failure names the first hop that missed the burst), then
/// the key the decap program read for each datagram, then whole arrival, then
/// fragmentation.
fn judge(b: &Burst, want: &Expect) -> Option<(&'static Failure, String)> {
    if let (Some(reason), Some(failure)) = (b.hops.loss(), b.hops.failure()) {
        return Some((failure, reason));
    }
    let mut wrong = Vec::new();
    let mut missing = Vec::new();
    for seq in want.seqs.clone() {
        match b.events.iter().find(|e| e.seq == seq) {
            None => missing.push(seq),
            Some(e) if e.key_rc != 0 || e.remote() != want.remote || e.tunnel_id != want.vni => {
                wrong.push(format!(
                    "seq {seq}: key rc {}, remote {}, VNI {}",
                    e.key_rc,
                    e.remote(),
                    e.tunnel_id
                ));
            }
            Some(_) => {}
        }
    }
    if !wrong.is_empty() || !missing.is_empty() {
        let mut reason = format!(
            "the decap program must read remote {} and VNI {} for every datagram",
            want.remote, want.vni
        );
        if !wrong.is_empty() {
            reason.push_str(&format!("; it read {}", wrong.join(", ")));
        }
        if !missing.is_empty() {
            reason.push_str(&format!(
                "; no key recorded for seq {missing:?} ({} events lost)",
                b.events_lost
            ));
        }
        return Some((&WRONG_TUNNEL_KEY, reason));
    }
    let short: Vec<String> = b
        .arrivals
        .iter()
        .filter(|g| g.len != want.len)
        .map(|g| format!("seq {} {} bytes", g.seq, g.len))
        .collect();
    if !short.is_empty() {
        return Some((
            &FRAGMENTED,
            format!(
                "datagrams of {} bytes did not arrive whole: {}",
                want.len,
                short.join(", ")
            ),
        ));
    }
    if !b.fragments.is_empty() {
        let moved: Vec<String> = b
            .fragments
            .iter()
            .map(|(at, n)| format!("{at} +{n}"))
            .collect();
        return Some((
            &FRAGMENTED,
            format!(
                "delivered {}/{} whole, but fragmented on the way ({})",
                b.arrivals.len(),
                BURST,
                moved.join(", ")
            ),
        ));
    }
    None
}

/// The two programs of a run.
struct Programs {
    encap: TunnelProgram,
    decap: TunnelProgram,
}

/// The hops of pod A → pod B through the tunnel, in path order, with the fragment
/// counters where fragmenting or reassembling would happen.
fn meters<'a>(t: &'a TwoNodes, progs: &'a Programs) -> Meters<'a> {
    let (n1, n2) = (&t.nodes[0], &t.nodes[1]);
    let dev = t.kind.cilium_name();
    let (e, d) = (&progs.encap, &progs.decap);
    let mib = |ns, group, field| Source::Mib(ns, group, field);
    Meters::default()
        .path(
            "pod A eth0 tx".into(),
            &NOT_DELIVERED,
            Source::Tx(&n1.pod.ns, "eth0"),
        )
        .loss(
            "pod A Ip FragCreates".into(),
            true,
            mib(&n1.pod.ns, "Ip", "FragCreates"),
        )
        .path(
            format!("{} matched", e.label),
            &HOOK_NOT_RUN,
            Source::Prog(e, slot::MATCHED),
        )
        .path(
            format!("{} set the tunnel key", e.label),
            &NOT_ENCAPSULATED,
            Source::Prog(e, slot::KEY_OK),
        )
        .path(
            format!("{} redirected to {dev}", e.label),
            &NOT_ENCAPSULATED,
            Source::Prog(e, slot::REDIRECTED),
        )
        .path(
            format!("node 1 {dev} tx"),
            &NOT_ENCAPSULATED,
            Source::Tx(&n1.host, dev),
        )
        .loss(
            "node 1 Ip FragCreates".into(),
            true,
            mib(&n1.host, "Ip", "FragCreates"),
        )
        .loss(
            "node 1 Ip FragFails".into(),
            true,
            mib(&n1.host, "Ip", "FragFails"),
        )
        .loss(
            "node 1 Ip OutDiscards".into(),
            false,
            mib(&n1.host, "Ip", "OutDiscards"),
        )
        .loss(
            "node 1 Ip OutNoRoutes".into(),
            false,
            mib(&n1.host, "Ip", "OutNoRoutes"),
        )
        .path(
            format!("node 1 {} tx", n1.underlay.name),
            &NOT_ENCAPSULATED,
            Source::Tx(&n1.host, &n1.underlay.name),
        )
        .path(
            format!("node 2 {} rx", n2.underlay.name),
            &NOT_DELIVERED,
            Source::Rx(&n2.host, &n2.underlay.name),
        )
        .path(
            "node 2 Ip InReceives".into(),
            &NOT_DELIVERED,
            mib(&n2.host, "Ip", "InReceives"),
        )
        .loss(
            "node 2 Ip ReasmReqds".into(),
            true,
            mib(&n2.host, "Ip", "ReasmReqds"),
        )
        .loss(
            "node 2 Ip ReasmFails".into(),
            false,
            mib(&n2.host, "Ip", "ReasmFails"),
        )
        .loss(
            "node 2 Ip InAddrErrors".into(),
            false,
            mib(&n2.host, "Ip", "InAddrErrors"),
        )
        .loss(
            "node 2 Udp NoPorts".into(),
            false,
            mib(&n2.host, "Udp", "NoPorts"),
        )
        .loss(
            "node 2 Udp InErrors".into(),
            false,
            mib(&n2.host, "Udp", "InErrors"),
        )
        // The tunnel device's UDP socket counts what it decapsulates (encap_rcv).
        .path(
            format!("node 2 Udp InDatagrams (the {dev} socket)"),
            &NOT_DELIVERED,
            mib(&n2.host, "Udp", "InDatagrams"),
        )
        .path(
            format!("node 2 {dev} rx"),
            &NOT_DELIVERED,
            Source::Rx(&n2.host, dev),
        )
        .path(
            format!("{} matched", d.label),
            &HOOK_NOT_RUN,
            Source::Prog(d, slot::MATCHED),
        )
        .path(
            format!("{} read a tunnel key", d.label),
            &NOT_ENCAPSULATED,
            Source::Prog(d, slot::KEY_OK),
        )
        .path(
            format!("{} redirected", d.label),
            &NOT_DELIVERED,
            Source::Prog(d, slot::REDIRECTED),
        )
        .path(
            format!("node 2 {} tx", n2.pod.lxc.name),
            &NOT_DELIVERED,
            Source::Tx(&n2.host, &n2.pod.lxc.name),
        )
        .path(
            "pod B eth0 rx".into(),
            &NOT_DELIVERED,
            Source::Rx(&n2.pod.ns, "eth0"),
        )
        .path(
            "pod B Ip InReceives".into(),
            &NOT_DELIVERED,
            mib(&n2.pod.ns, "Ip", "InReceives"),
        )
        .loss(
            "pod B Ip ReasmReqds".into(),
            true,
            mib(&n2.pod.ns, "Ip", "ReasmReqds"),
        )
        .loss(
            "pod B Ip InAddrErrors".into(),
            false,
            mib(&n2.pod.ns, "Ip", "InAddrErrors"),
        )
        .loss(
            "pod B Udp NoPorts".into(),
            false,
            mib(&n2.pod.ns, "Udp", "NoPorts"),
        )
        .loss(
            "pod B Udp RcvbufErrors".into(),
            false,
            mib(&n2.pod.ns, "Udp", "RcvbufErrors"),
        )
        // Counted when the application reads the datagram (udp_recvmsg).
        .path(
            "pod B Udp InDatagrams".into(),
            &NOT_DELIVERED,
            mib(&n2.pod.ns, "Udp", "InDatagrams"),
        )
}

/// Sends `want.seqs` from pod A to pod B with `want.len`-byte payloads and
/// accounts for them hop by hop.
fn send(
    t: &TwoNodes,
    progs: &Programs,
    socks: (&UdpSocket, &UdpSocket),
    want: &Expect,
) -> Result<Burst> {
    let (tx, rx) = socks;
    let meters = meters(t, progs);
    let to = SocketAddrV4::new(t.nodes[1].pod.ip, PROBE_PORT);
    progs.decap.drain_events();
    let lost_before = progs.decap.counters()?.events_lost;
    let before = meters.read()?;
    let mut sent = 0u32;
    let mut send_error = None;
    for seq in want.seqs.clone() {
        match tx.send_to(&datagram(seq, want.len), to) {
            Ok(_) => sent += 1,
            Err(e) => {
                send_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let arrivals = if sent > 0 {
        collect(rx, want.seqs.clone(), DELIVERY_TIMEOUT)
    } else {
        Vec::new()
    };
    let after = meters.read()?;
    let figures = meters.figures(&before, &after);
    let fragments = meters.fragments(&figures);
    let mut hops = Accounting::new(BURST);
    hops.push(Figure::path("pod A sent", sent, send_error.clone()))
        .extend(figures)
        .push(Figure::path("pod B socket", arrivals.len(), None));
    let events: Vec<TunnelEvent> = progs
        .decap
        .drain_events()
        .into_iter()
        .filter(|e| want.seqs.contains(&e.seq))
        .collect();
    let events_lost = progs.decap.counters()?.events_lost - lost_before;
    Ok(Burst {
        sent,
        send_error,
        arrivals,
        hops,
        events,
        events_lost,
        fragments,
    })
}

/// The tunnel device of node `i` as the kernel reports it.
fn tunnel_device(t: &mut TwoNodes, i: usize) -> Result<Value> {
    let name = t.kind.cilium_name();
    let d = t.nodes[i].host_rtnl.link_details(name)?;
    Ok(json!({
        "name": name,
        "kind": d.kind,
        "mtu": d.mtu,
        "collect_metadata": d.collect_metadata,
        "port": d.port,
    }))
}

fn run(
    check: &str,
    variant: &str,
    kind: TunnelKind,
    ctx: &Ctx,
    started: Instant,
) -> Result<Observation> {
    let variant_kind = Variant::parse(check, variant)?;
    let cilium_mtu = UNDERLAY_MTU - kind.overhead();
    let mut t = TwoNodes::build(ctx.run_id, kind, cilium_mtu)?;
    let _fault = {
        let node = &mut t.nodes[0];
        ctx.apply_pod_fault(check, &mut node.pod, node.gateway)?
    };
    let devices = json!([tunnel_device(&mut t, 0)?, tunnel_device(&mut t, 1)?]);
    let mode: AttachMode = ctx.default_mode();
    let (n1, n2) = (&t.nodes[0], &t.nodes[1]);
    let encap_config = EncapConfig {
        dport: PROBE_PORT,
        ttl: TTL,
        remote_ipv4: u32::from(n2.underlay_ip),
        tunnel_id: VNI,
        tunnel_ifindex: n1.tunnel.index,
        key_flags: BPF_F_ZERO_CSUM_TX,
        ..Default::default()
    };
    let mut progs = Programs {
        encap: TunnelProgram::encap(&n1.host, &n1.pod.lxc.name, mode, encap_config)?,
        decap: TunnelProgram::decap(
            &n2.host,
            &n2.tunnel.name,
            mode,
            DecapConfig {
                dport: PROBE_PORT,
                target_ifindex: n2.pod.lxc.index,
                dst_mac: n2.pod.eth0.mac,
                src_mac: n2.pod.lxc.mac,
                magic: PAYLOAD_MAGIC,
                ..Default::default()
            },
        )?,
    };
    let tx = traffic::bind(&n1.pod.ns, n1.pod.ip, PROBE_PORT)?;
    let rx = traffic::bind(&n2.pod.ns, n2.pod.ip, PROBE_PORT)?;
    let (remote, source, ul) = (n2.underlay_ip, n1.underlay_ip, n2.underlay.name.clone());
    let dev = kind.cilium_name();

    let len = match variant_kind {
        Variant::Small => 8,
        Variant::NoFrag => payload_for(cilium_mtu),
    };
    let positive = Expect {
        seqs: POSITIVE_SEQS,
        remote: source,
        vni: VNI,
        len,
    };
    let burst = send(&t, &progs, (&tx, &rx), &positive)?;
    let inner_ip = len as u32 + IP_UDP_HLEN;
    let sizes = |pod_mtu: u32, len: usize| {
        let inner = len as u32 + IP_UDP_HLEN;
        json!({
            "underlay_mtu": UNDERLAY_MTU,
            "pod_mtu": pod_mtu,
            "payload": len,
            "inner_ip_packet": inner,
            "underlay_packet": inner + kind.overhead(),
            "overhead": kind.overhead(),
        })
    };
    let ok = || {
        let size = match variant_kind {
            Variant::Small => format!("{len}-byte datagrams"),
            Variant::NoFrag => format!(
                "datagrams filling the pod MTU {cilium_mtu} ({inner_ip}-byte IP packets, {} bytes on the {UNDERLAY_MTU}-MTU underlay)",
                inner_ip + kind.overhead()
            ),
        };
        format!(
            "{BURST}/{BURST} {size} from pod A reached pod B whole through {dev} (external): the encap program's key (remote {remote}, VNI {VNI}) took them across the underlay, the decap program read remote {source} and VNI {VNI} for each, every hop counted them and nothing was fragmented"
        )
    };
    let mut leg_evidence = evidence([
        ("tunnel", json!(kind.kind())),
        ("tunnel_devices", devices),
        ("attach_mode", json!(mode.name())),
        ("vni", json!(VNI)),
        ("remote", json!(remote.to_string())),
        ("key_flags", json!("BPF_F_ZERO_CSUM_TX")),
        ("sizes", sizes(cilium_mtu, len)),
        ("encap_counters", progs.encap.counters()?.to_json()),
        ("decap_counters", progs.decap.counters()?.to_json()),
    ]);
    leg_evidence.extend(
        burst
            .evidence()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v)),
    );
    let leg = Leg::judged(judge(&burst, &positive), ok, leg_evidence);

    // The control: the decisive step broken, the check's own test applied.
    let (description, control_want) = match variant_kind {
        Variant::Small => {
            progs.encap.set_encap(EncapConfig {
                tunnel_id: WRONG_VNI,
                ..encap_config
            })?;
            (
                format!(
                    "the encap program sets VNI {WRONG_VNI} instead of {VNI} (remote, device and traffic unchanged)"
                ),
                Expect {
                    seqs: CONTROL_SEQS,
                    remote: source,
                    vni: VNI,
                    len,
                },
            )
        }
        Variant::NoFrag => {
            t.set_pod_mtu(UNDERLAY_MTU)?;
            (
                format!(
                    "the pod MTU is the underlay's ({UNDERLAY_MTU}, the {}-byte tunnel overhead forgotten) and the datagrams fill it",
                    kind.overhead()
                ),
                Expect {
                    seqs: CONTROL_SEQS,
                    remote: source,
                    vni: VNI,
                    len: payload_for(UNDERLAY_MTU),
                },
            )
        }
    };
    let c = send(&t, &progs, (&tx, &rx), &control_want)?;
    let verdict = judge(&c, &control_want);
    let ul_rx = c.count(&format!("node 2 {ul} rx"));
    let (witnessed, account) = match variant_kind {
        Variant::Small => {
            let wrong = c.events.iter().filter(|e| e.tunnel_id == WRONG_VNI).count();
            let key = if c.events.is_empty() {
                "and the decap program recorded no key".to_string()
            } else {
                format!(
                    "but the decap program read VNI {WRONG_VNI} for {wrong} of {} datagrams",
                    c.events.len()
                )
            };
            (
                c.events.len() >= BURST as usize,
                format!(
                    "{}/{BURST} delivered and node 2's {ul} received {ul_rx}, {key}",
                    c.arrivals.len()
                ),
            )
        }
        Variant::NoFrag => {
            let moved: Vec<String> = c
                .fragments
                .iter()
                .map(|(at, n)| format!("{at} +{n}"))
                .collect();
            (
                ul_rx >= u64::from(BURST),
                format!(
                    "{}/{BURST} delivered ({} whole) with node 2's {ul} receiving {ul_rx} packets, fragments: {}",
                    c.arrivals.len(),
                    c.arrivals
                        .iter()
                        .filter(|g| g.len == control_want.len)
                        .count(),
                    if moved.is_empty() {
                        "none".to_string()
                    } else {
                        moved.join(", ")
                    }
                ),
            )
        }
    };
    let account = match &verdict {
        Some((failure, _)) => format!("{account}: the check's test fails ({})", failure.code),
        None => account,
    };
    let mut control_evidence = evidence([
        (
            "sizes",
            sizes(
                if variant_kind == Variant::NoFrag {
                    UNDERLAY_MTU
                } else {
                    cilium_mtu
                },
                control_want.len,
            ),
        ),
        (
            "test",
            json!(
                verdict
                    .as_ref()
                    .map(|(f, r)| json!({"failure": f.code, "reason": r}))
            ),
        ),
    ]);
    control_evidence.extend(c.evidence().into_iter().map(|(k, v)| (k.to_string(), v)));
    let control = ControlLeg {
        description,
        witnessed,
        test_held: verdict.is_none(),
        account,
        evidence: control_evidence,
    };
    Ok(observe(check, variant, started, leg, control))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn burst(fragments: Vec<(String, u64)>, events: Vec<TunnelEvent>, lens: usize) -> Burst {
        let mut hops = Accounting::new(BURST);
        hops.push(Figure::path("pod A sent", BURST, None))
            .push(Figure::path("pod B socket", BURST, None));
        Burst {
            sent: BURST,
            send_error: None,
            arrivals: (0..BURST).map(|seq| Got { seq, len: lens }).collect(),
            hops,
            events,
            events_lost: 0,
            fragments,
        }
    }

    fn events(vni: u32) -> Vec<TunnelEvent> {
        (0..BURST)
            .map(|seq| TunnelEvent {
                seq,
                remote_ipv4: u32::from(Ipv4Addr::new(192, 0, 2, 1)),
                tunnel_id: vni,
                ..Default::default()
            })
            .collect()
    }

    fn want(len: usize) -> Expect {
        Expect {
            seqs: POSITIVE_SEQS,
            remote: Ipv4Addr::new(192, 0, 2, 1),
            vni: VNI,
            len,
        }
    }

    #[test]
    fn a_whole_unfragmented_burst_with_the_right_key_passes() {
        assert_eq!(judge(&burst(vec![], events(VNI), 1422), &want(1422)), None);
    }

    #[test]
    fn a_wrong_vni_fails_the_key_test_even_when_delivered() {
        let (f, reason) = judge(&burst(vec![], events(WRONG_VNI), 8), &want(8)).unwrap();
        assert_eq!(f.code, WRONG_TUNNEL_KEY.code);
        assert!(reason.contains("VNI 4243"), "{reason}");
    }

    #[test]
    fn fragments_fail_a_delivered_burst() {
        let frags = vec![("node 1 Ip FragCreates".to_string(), 10)];
        let (f, reason) = judge(&burst(frags, events(VNI), 1472), &want(1472)).unwrap();
        assert_eq!(f.code, FRAGMENTED.code);
        assert!(reason.ends_with("(node 1 Ip FragCreates +10)"), "{reason}");
    }

    #[test]
    fn a_short_datagram_is_not_whole() {
        let (f, _) = judge(&burst(vec![], events(VNI), 1400), &want(1422)).unwrap();
        assert_eq!(f.code, FRAGMENTED.code);
    }

    #[test]
    fn no_frag_datagrams_fill_the_underlay_exactly() {
        for kind in [TunnelKind::Vxlan, TunnelKind::Geneve] {
            let pod_mtu = UNDERLAY_MTU - kind.overhead();
            let inner = payload_for(pod_mtu) as u32 + IP_UDP_HLEN;
            assert_eq!(inner, pod_mtu);
            assert_eq!(inner + kind.overhead(), UNDERLAY_MTU);
            // The control's datagrams are one overhead too big for the underlay.
            let control = payload_for(UNDERLAY_MTU) as u32 + IP_UDP_HLEN + kind.overhead();
            assert_eq!(control, UNDERLAY_MTU + 50);
        }
        assert_eq!(datagram(7, 1422).len(), 1422);
        assert_eq!(&datagram(7, 8)[..], &traffic::payload(7)[..]);
    }
}
