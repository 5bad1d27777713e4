//! `datapath.stack-delivery` and `datapath.stack-delivery.redirect`: a program on
//! the host side of a pod's veth hands the pod's packets to the host stack, either by
//! returning TC_ACT_OK or by `bpf_redirect` to a host device's ingress; the packets
//! must reach a socket in the host namespace. The nix-2hd incident was exactly this
//! path failing silently, so each packet's skb metadata is recorded at every hook.

use super::{
    CONTROL_SEQS, ControlLeg, Ctx, Leg, POSITIVE_SEQS, evidence, hook_control, observe, seqs_json,
};
use crate::hooks::{AttachMode, Direction, Hook, HookCounters, meta_json};
use crate::topology::{NODE_IP, Node};
use crate::traffic::{self, Arrival, BURST};
use anyhow::Result;
use conformance_contract::Observation;
use conformance_ebpf_common::{BPF_F_INGRESS, HookConfig, PROBE_PORT, SkbMeta, action};
use serde_json::{Value, json};
use std::net::UdpSocket;
use std::time::Instant;

/// An ifindex no device has: the control's redirect target.
pub(super) const MISSING_IFINDEX: u32 = 0x7fff_fff0;

/// Pod A sending to the node IP through a hook on pod A's host-side veth ingress.
pub(super) struct HostBound {
    pub node: Node,
    pub host_sock: UdpSocket,
    pub pod_sock: UdpSocket,
    pub hook: Hook,
    _fault: Option<Hook>,
}

/// What one burst produced.
pub(super) struct Burst {
    pub sent: u32,
    pub send_error: Option<String>,
    pub arrivals: Vec<Arrival>,
    pub counters: HookCounters,
    pub events: Vec<SkbMeta>,
}

impl HostBound {
    pub fn setup(check: &str, mode: AttachMode, ctx: &Ctx, config: HookConfig) -> Result<Self> {
        let mut node = Node::build(ctx.run_id)?;
        let fault = ctx.apply_fault(check, &mut node, false)?;
        let host_sock = traffic::bind(&node.host, NODE_IP, PROBE_PORT)?;
        let pod = &node.pods[0];
        let pod_sock = traffic::bind(&pod.ns, pod.ip, PROBE_PORT)?;
        let hook = Hook::attach(&node.host, &pod.lxc.name, Direction::Ingress, mode, config)?;
        Ok(Self {
            node,
            host_sock,
            pod_sock,
            hook,
            _fault: fault,
        })
    }

    /// Sends the positive burst and waits for it at the host socket.
    pub fn positive(&mut self) -> Result<Burst> {
        let (sent, send_error) = traffic::send_burst(&self.pod_sock, NODE_IP, POSITIVE_SEQS);
        let arrivals = traffic::collect_expected(&self.host_sock, POSITIVE_SEQS);
        Ok(Burst {
            sent,
            send_error,
            arrivals,
            counters: self.hook.counters()?,
            events: self.hook.drain_events(),
        })
    }

    /// Reconfigures the hook to break the path and sends the control burst.
    pub fn control(&mut self, broken: HookConfig, description: &str) -> Result<ControlLeg> {
        let pod_sock = &self.pod_sock;
        hook_control(&mut self.hook, broken, description, &self.host_sock, || {
            Ok(traffic::send_burst(pod_sock, NODE_IP, CONTROL_SEQS))
        })
    }
}

/// The pattern of Cilium's `flow 0x0, ifindex 0, orig-ip 0.0.0.0` trace: no hash,
/// no interface, no source address. On its own it can be benign; next to a delivery
/// failure it is the incident's signature.
pub(super) fn nix_2hd_signature(m: &SkbMeta) -> bool {
    m.hash == 0 && m.ifindex == 0 && m.saddr == 0
}

/// Why a host-bound burst did not pass, in one line; `None` when it passed.
pub(super) fn failure_reason(burst: &Burst, hooks: &[(&str, &[SkbMeta], u64)]) -> Option<String> {
    let want = u64::from(BURST);
    if burst.arrivals.len() as u32 == BURST && hooks.iter().all(|(_, _, matched)| *matched >= want)
    {
        return None;
    }
    let mut parts = vec![format!(
        "{}/{BURST} datagrams reached {NODE_IP}:{PROBE_PORT} in the host namespace",
        burst.arrivals.len()
    )];
    if burst.sent < BURST {
        parts.push(format!(
            "only {} sent ({})",
            burst.sent,
            burst.send_error.as_deref().unwrap_or("?")
        ));
    }
    for (at, events, matched) in hooks {
        if *matched < want {
            parts.push(format!("hook {at} saw {matched}/{BURST}"));
        }
        if events.iter().any(nix_2hd_signature) {
            parts.push(format!(
                "nix-2hd signature at {at}: ifindex 0, hash 0x0, source 0.0.0.0"
            ));
        }
    }
    Some(parts.join("; "))
}

pub(super) fn burst_evidence(burst: &Burst, hook_label: &str) -> serde_json::Map<String, Value> {
    evidence([
        ("sent", json!(burst.sent)),
        ("send_error", json!(burst.send_error)),
        (
            "destination",
            json!(format!("{NODE_IP}:{PROBE_PORT} in ns host")),
        ),
        ("delivered", seqs_json(&burst.arrivals)),
        (
            "delivered_from",
            json!(burst.arrivals.first().map(|a| a.from.to_string())),
        ),
        (
            "hook",
            json!({
                "at": hook_label,
                "counters": burst.counters.to_json(),
                "events": burst.events.iter().map(meta_json).collect::<Vec<_>>(),
                "nix_2hd_signature": burst.events.iter().any(nix_2hd_signature),
            }),
        ),
    ])
}

fn pass_config(act: u32) -> HookConfig {
    HookConfig {
        dport: PROBE_PORT,
        action: act,
        ..Default::default()
    }
}

/// TC_ACT_OK: Cilium's "-> stack".
pub fn run_pass(check: &str, mode: AttachMode, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let mut path = HostBound::setup(check, mode, ctx, pass_config(action::PASS))?;
    let burst = path.positive()?;
    let mut ev = burst_evidence(&burst, &path.hook.label);
    let reason = failure_reason(
        &burst,
        &[(&path.hook.label, &burst.events, burst.counters.matched)],
    );
    ev.insert(
        "nix_2hd_signature".into(),
        json!(burst.events.iter().any(nix_2hd_signature)),
    );
    let leg = Leg {
        pass: reason.is_none(),
        failure: reason
            .is_some()
            .then(|| conformance_contract::catalogue::NOT_DELIVERED.code.to_string()),
        reason: reason.unwrap_or_else(|| format!("{BURST}/{BURST} datagrams passed the hook with TC_ACT_OK and reached the host socket")),
        evidence: ev,
    };
    let control = path.control(pass_config(action::DROP), "the hook returns TC_ACT_SHOT")?;
    Ok(observe(check, mode.name(), started, leg, control, BURST))
}

/// `bpf_redirect(cilium_net, BPF_F_INGRESS)` with the destination MAC rewritten, as
/// Cilium hands host-bound traffic to cilium_host/cilium_net.
pub fn run_redirect(
    check: &str,
    mode: AttachMode,
    ctx: &Ctx,
    started: Instant,
) -> Result<Observation> {
    // The node is built inside setup; the redirect target is only known after, so
    // start with a config that matches nothing and configure once the node exists.
    let mut path = HostBound::setup(check, mode, ctx, HookConfig::default())?;
    let target = path.node.cilium_net.clone();
    let redirect = HookConfig {
        dport: PROBE_PORT,
        action: action::REDIRECT,
        target_ifindex: target.index,
        redirect_flags: BPF_F_INGRESS,
        rewrite_dst_mac: 1,
        dst_mac: target.mac,
        ..Default::default()
    };
    path.hook.configure(redirect)?;
    let mut observer = Hook::attach(
        &path.node.host,
        &target.name,
        Direction::Ingress,
        mode,
        pass_config(action::PASS),
    )?;

    let burst = path.positive()?;
    let observer_counters = observer.counters()?;
    let observer_events = observer.drain_events();
    let reason = failure_reason(
        &burst,
        &[
            (&path.hook.label, &burst.events, burst.counters.matched),
            (&observer.label, &observer_events, observer_counters.matched),
        ],
    );
    let mut ev = burst_evidence(&burst, &path.hook.label);
    ev.insert(
        "redirect".into(),
        json!({ "target": target.name, "ifindex": target.index, "flags": "BPF_F_INGRESS" }),
    );
    ev.insert(
        "observer".into(),
        json!({ "at": observer.label, "counters": observer_counters.to_json(), "events": observer_events.iter().map(meta_json).collect::<Vec<_>>() }),
    );
    let leg = Leg {
        pass: reason.is_none(),
        failure: reason
            .is_some()
            .then(|| conformance_contract::catalogue::NOT_DELIVERED.code.to_string()),
        reason: reason.unwrap_or_else(|| {
            format!("{BURST}/{BURST} datagrams redirected to {}'s ingress, seen there, and delivered to the host socket", target.name)
        }),
        evidence: ev,
    };
    let broken = HookConfig {
        target_ifindex: MISSING_IFINDEX,
        ..redirect
    };
    let control = path.control(broken, "bpf_redirect to an ifindex that does not exist")?;
    Ok(observe(check, mode.name(), started, leg, control, BURST))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::HookCounters;

    fn burst(arrived: u32, events: Vec<SkbMeta>) -> Burst {
        let from = "10.42.0.11:47474".parse().unwrap();
        Burst {
            sent: BURST,
            send_error: None,
            arrivals: (0..arrived).map(|seq| Arrival { seq, from }).collect(),
            counters: HookCounters {
                matched: events.len() as u64,
                ..Default::default()
            },
            events,
        }
    }

    fn healthy() -> SkbMeta {
        SkbMeta {
            ifindex: 7,
            ingress_ifindex: 7,
            hash: 0,
            saddr: u32::from_ne_bytes([10, 42, 0, 11]),
            ..Default::default()
        }
    }

    #[test]
    fn a_delivered_burst_passes_even_with_hash_zero() {
        // A fresh skb often has no hash yet: hash 0 alone is not the signature.
        let b = burst(BURST, vec![healthy(); BURST as usize]);
        assert_eq!(
            failure_reason(&b, &[("lxc ingress", &b.events, b.counters.matched)]),
            None
        );
    }

    #[test]
    fn the_nix_2hd_signature_is_its_own_failure_reason() {
        let b = burst(0, vec![SkbMeta::default(); BURST as usize]);
        let reason = failure_reason(&b, &[("lxc ingress", &b.events, b.counters.matched)]).unwrap();
        assert!(reason.starts_with("0/5 datagrams reached"), "{reason}");
        assert!(
            reason
                .contains("nix-2hd signature at lxc ingress: ifindex 0, hash 0x0, source 0.0.0.0"),
            "{reason}"
        );
        let plain = burst(0, vec![healthy(); BURST as usize]);
        let reason = failure_reason(
            &plain,
            &[("lxc ingress", &plain.events, plain.counters.matched)],
        )
        .unwrap();
        assert!(!reason.contains("nix-2hd"), "{reason}");
    }

    #[test]
    fn a_hook_that_saw_nothing_is_named() {
        let b = burst(0, vec![]);
        let reason = failure_reason(&b, &[("lxc ingress", &b.events, 0)]).unwrap();
        assert!(reason.contains("hook lxc ingress saw 0/5"), "{reason}");
    }
}
