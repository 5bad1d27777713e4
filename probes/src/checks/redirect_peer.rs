//! `datapath.redirect-peer` and `datapath.redirect-peer.scrub`: `bpf_redirect_peer`
//! from pod A's host-side veth ingress straight into pod B's namespace, as Cilium's
//! BPF host routing does, and what the kernel scrubs on the way (CVE-2025-37959).

use super::stack_delivery::MISSING_IFINDEX;
use super::{
    CONTROL_SEQS, ControlLeg, Ctx, Leg, POSITIVE_SEQS, evidence, hook_control, observe, seqs_json,
};
use crate::counters::{dev_counters, snmp};
use crate::hooks::{AttachMode, Direction, Hook, meta_json};
use crate::netlink::Mac;
use crate::topology::Node;
use crate::traffic::{self, BURST, FrameSender, FrameSpec};
use anyhow::Result;
use conformance_contract::Observation;
use conformance_ebpf_common::{HookConfig, PROBE_PORT, SkbMeta, action};
use serde_json::json;
use std::net::UdpSocket;
use std::time::Instant;

/// Pod A → pod B through a hook on pod A's host-side veth and an observer on pod B's eth0.
struct PodToPod {
    node: Node,
    rx_sock: UdpSocket,
    hook: Hook,
    observer: Hook,
    _fault: Option<Hook>,
}

impl PodToPod {
    fn setup(check: &str, mode: AttachMode, ctx: &Ctx) -> Result<Self> {
        let mut node = Node::build(ctx.run_id)?;
        let fault = ctx.apply_fault(check, &mut node, false)?;
        let [a, b] = &node.pods;
        let rx_sock = traffic::bind(&b.ns, b.ip, PROBE_PORT)?;
        let hook = Hook::attach(
            &node.host,
            &a.lxc.name,
            Direction::Ingress,
            mode,
            HookConfig::default(),
        )?;
        let observe = HookConfig {
            dport: PROBE_PORT,
            action: action::PASS,
            ..Default::default()
        };
        let observer = Hook::attach(&b.ns, "eth0", Direction::Ingress, mode, observe)?;
        Ok(Self {
            node,
            rx_sock,
            hook,
            observer,
            _fault: fault,
        })
    }

    /// Host-namespace counters that would move if the packet were forwarded instead of redirected.
    fn bypass_counters(&self) -> Result<(u64, u64)> {
        let forwarded = snmp(&self.node.host, "Ip", "ForwDatagrams")?;
        let lxc_b_tx = dev_counters(&self.node.host, &self.node.pods[1].lxc.name)?.tx_packets;
        Ok((forwarded, lxc_b_tx))
    }

    /// The hook-witnessed control, plus what pod B's observer saw of it.
    fn control(
        &mut self,
        broken: HookConfig,
        description: &str,
        send: impl FnOnce() -> Result<(u32, Option<String>)>,
    ) -> Result<ControlLeg> {
        let mut leg = hook_control(&mut self.hook, broken, description, &self.rx_sock, send)?;
        let events: Vec<serde_json::Value> =
            self.observer.drain_events().iter().map(meta_json).collect();
        leg.evidence.insert(
            "observer".into(),
            json!({ "at": self.observer.label, "events": events }),
        );
        Ok(leg)
    }
}

fn udp_sender(node: &Node) -> Result<UdpSocket> {
    let a = &node.pods[0];
    traffic::bind(&a.ns, a.ip, PROBE_PORT)
}

pub fn run(check: &str, mode: AttachMode, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let mut p = PodToPod::setup(check, mode, ctx)?;
    let b = &p.node.pods[1];
    let (b_ip, b_mac, lxc_b) = (b.ip, b.eth0.mac, b.lxc.clone());
    let redirect = HookConfig {
        dport: PROBE_PORT,
        action: action::REDIRECT_PEER,
        target_ifindex: lxc_b.index,
        rewrite_dst_mac: 1,
        dst_mac: b_mac,
        ..Default::default()
    };
    p.hook.configure(redirect)?;
    let sender = udp_sender(&p.node)?;

    let (fwd0, tx0) = p.bypass_counters()?;
    let (sent, send_error) = traffic::send_burst(&sender, b_ip, POSITIVE_SEQS);
    let arrivals = traffic::collect_expected(&p.rx_sock, POSITIVE_SEQS);
    let (fwd1, tx1) = p.bypass_counters()?;
    let counters = p.hook.counters()?;
    let observer_counters = p.observer.counters()?;
    let src_events = p.hook.drain_events();
    let dst_events = p.observer.drain_events();

    let forwarded = fwd1 - fwd0;
    let lxc_b_tx = tx1 - tx0;
    let delivered = arrivals.len() as u32;
    let mut problems = Vec::new();
    if delivered < BURST {
        problems.push(format!(
            "{delivered}/{BURST} datagrams reached {b_ip}:{PROBE_PORT} in pod B"
        ));
    }
    if sent < BURST {
        problems.push(format!(
            "only {sent} sent ({})",
            send_error.as_deref().unwrap_or("?")
        ));
    }
    if counters.matched < u64::from(BURST) {
        problems.push(format!(
            "hook {} saw {}/{BURST}",
            p.hook.label, counters.matched
        ));
    }
    if counters.redirect_failed > 0 {
        problems.push(format!(
            "bpf_redirect_peer failed for {} packets",
            counters.redirect_failed
        ));
    }
    if forwarded > 0 {
        problems.push(format!("the host namespace forwarded {forwarded} datagrams (IpForwDatagrams): not a peer redirect"));
    }
    if lxc_b_tx > 0 {
        problems.push(format!(
            "{} transmitted {lxc_b_tx} packets: the redirect went through the host-side veth",
            lxc_b.name
        ));
    }
    let ok = || {
        format!(
            "{BURST}/{BURST} datagrams redirected into pod B's namespace; host forwarded 0, {} transmitted 0",
            lxc_b.name
        )
    };
    let leg = Leg::judged(
        problems,
        ok,
        evidence([
            ("sent", json!(sent)),
            ("send_error", json!(send_error)),
            (
                "destination",
                json!(format!("{b_ip}:{PROBE_PORT} in ns pod-b")),
            ),
            ("delivered", seqs_json(&arrivals)),
            (
                "redirect",
                json!({ "helper": "bpf_redirect_peer", "target": lxc_b.name, "ifindex": lxc_b.index }),
            ),
            ("host_ip_forw_datagrams_delta", json!(forwarded)),
            ("target_veth_tx_packets_delta", json!(lxc_b_tx)),
            (
                "hook",
                json!({ "at": p.hook.label, "counters": counters.to_json(), "events": src_events.iter().map(meta_json).collect::<Vec<_>>() }),
            ),
            (
                "observer",
                json!({ "at": p.observer.label, "counters": observer_counters.to_json(), "events": dst_events.iter().map(meta_json).collect::<Vec<_>>() }),
            ),
        ]),
    );
    let broken = HookConfig {
        target_ifindex: MISSING_IFINDEX,
        ..redirect
    };
    let control = p.control(
        broken,
        "bpf_redirect_peer to an ifindex that does not exist",
        || Ok(traffic::send_burst(&sender, b_ip, CONTROL_SEQS)),
    )?;
    Ok(observe(check, mode.name(), started, leg, control, BURST))
}

/// A locally administered MAC that no device here has: frames to it are OTHERHOST.
const FOREIGN_MAC: Mac = [0x02, 0xcc, 0x00, 0x00, 0x00, 0x01];
/// Mark the source hook sets before redirecting; the scrub keeps it by design.
const SCRUB_MARK: u32 = 0x5c4b_0001;
/// Timestamp the source hook sets; kept by design as well.
const SCRUB_TSTAMP: u64 = 0x0123_4567_89ab_cdef;
const PACKET_HOST: u32 = 0;
const PACKET_OTHERHOST: u32 = 3;

pub fn run_scrub(check: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let mode = ctx.default_mode();
    let mut p = PodToPod::setup(check, mode, ctx)?;
    let [a, b] = &p.node.pods;
    let spec = FrameSpec {
        src_mac: a.eth0.mac,
        dst_mac: FOREIGN_MAC,
        src_ip: a.ip,
        dst_ip: b.ip,
    };
    let b_ip = b.ip;
    let lxc_b = b.lxc.clone();
    let mut sender = FrameSender::open(&a.ns, "eth0")?;
    let redirect = HookConfig {
        dport: PROBE_PORT,
        action: action::REDIRECT_PEER,
        target_ifindex: lxc_b.index,
        set_mark: SCRUB_MARK,
        set_tstamp: SCRUB_TSTAMP,
        ..Default::default()
    };
    p.hook.configure(redirect)?;

    let sent = sender.send_burst(&spec, POSITIVE_SEQS)?;
    let arrivals = traffic::collect_expected(&p.rx_sock, POSITIVE_SEQS);
    let counters = p.hook.counters()?;
    let src: Vec<SkbMeta> = p.hook.drain_events();
    let dst: Vec<SkbMeta> = p.observer.drain_events();

    let mut problems = Vec::new();
    let delivered = arrivals.len() as u32;
    if delivered < BURST {
        problems.push(format!(
            "{delivered}/{BURST} foreign-MAC frames reached {b_ip}:{PROBE_PORT} in pod B"
        ));
    }
    if counters.matched < u64::from(BURST) {
        problems.push(format!(
            "hook {} saw {}/{BURST}",
            p.hook.label, counters.matched
        ));
    }
    if let Some(m) = src.iter().find(|m| m.pkt_type != PACKET_OTHERHOST) {
        problems.push(format!(
            "source hook saw pkt_type {} (want 3, OTHERHOST): the frame was not foreign",
            m.pkt_type
        ));
    }
    if dst.len() < BURST as usize {
        problems.push(format!("pod B's eth0 ingress saw {}/{BURST}", dst.len()));
    }
    if let Some(m) = dst.iter().find(|m| m.pkt_type != PACKET_HOST) {
        problems.push(format!(
            "pkt_type {} in pod B (want 0, HOST): not scrubbed",
            m.pkt_type
        ));
    }
    if let Some(m) = dst.iter().find(|m| m.mark != SCRUB_MARK) {
        problems.push(format!(
            "mark {:#x} in pod B (want {SCRUB_MARK:#x}): the scrub must keep it",
            m.mark
        ));
    }
    if let Some(m) = dst.iter().find(|m| m.tstamp != SCRUB_TSTAMP) {
        problems.push(format!(
            "tstamp {:#x} in pod B (want {SCRUB_TSTAMP:#x}): the scrub must keep it",
            m.tstamp
        ));
    }
    let ok = || {
        format!(
            "{BURST}/{BURST} foreign-MAC frames delivered; pkt_type OTHERHOST at the source, HOST in pod B; mark and tstamp kept"
        )
    };
    let leg = Leg::judged(
        problems,
        ok,
        evidence([
            ("sent", json!(sent)),
            (
                "frame",
                json!({ "dst_mac": mac_text(&FOREIGN_MAC), "src": a.ip.to_string(), "dst": format!("{b_ip}:{PROBE_PORT}") }),
            ),
            ("delivered", seqs_json(&arrivals)),
            (
                "set_by_source_hook",
                json!({ "mark": format!("{SCRUB_MARK:#x}"), "tstamp": SCRUB_TSTAMP }),
            ),
            (
                "source",
                json!({ "at": p.hook.label, "counters": counters.to_json(), "events": src.iter().map(meta_json).collect::<Vec<_>>() }),
            ),
            (
                "destination",
                json!({ "at": p.observer.label, "events": dst.iter().map(meta_json).collect::<Vec<_>>() }),
            ),
        ]),
    );
    let broken = HookConfig {
        dport: PROBE_PORT,
        action: action::PASS,
        ..Default::default()
    };
    let control = p.control(
        broken,
        "the same frames handed to the host stack (TC_ACT_OK) instead of bpf_redirect_peer",
        || Ok((sender.send_burst(&spec, CONTROL_SEQS)?, None)),
    )?;
    Ok(observe(check, variant, started, leg, control, BURST))
}

fn mac_text(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
