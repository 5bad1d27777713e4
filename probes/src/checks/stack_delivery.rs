//! `datapath.stack-delivery` and `datapath.stack-delivery.redirect`: a program on
//! the host side of a pod's veth hands the pod's packets to the host stack, either by
//! returning TC_ACT_OK or by `bpf_redirect` to a host device's ingress; the packets
//! must reach a socket in the host namespace. The nix-2hd incident was this path
//! failing silently after the hook, so every leg accounts for its packets hop by hop
//! (pod A eth0 tx, the host-side veth's rx, the hooks, the host's IP/UDP counters,
//! the socket) and a failure names where they were last seen.
//!
//! `tcx` and `legacy` send IPv4; `ipv6` sends the same burst over IPv6 on a
//! dual-stack node (`fd00:42::11` to the node IP `fd00:198:18::10`), counted on
//! the host's `Ip6`/`Udp6` MIBs, with the same controls.

use super::{
    Burst, CONTROL_SEQS, ControlLeg, Ctx, Leg, POSITIVE_SEQS, Registered, attach_and_family,
    evidence, observe, send_along, seqs_json, wait_for_leaks,
};
use crate::hooks::{AttachMode, Direction, Hook, meta_json};
use crate::hops::Path;
use crate::topology::{Family, Node};
use crate::traffic::{self, Arrival, BURST};
use anyhow::Result;
use conformance_contract::Observation;
use conformance_ebpf_common::{BPF_F_INGRESS, HookConfig, PROBE_PORT, action};
use serde_json::{Map, Value, json};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Instant;

/// Pod A sending to the node IP through a hook on pod A's host-side veth ingress,
/// and, for the redirect, an observer further along at the redirect target.
pub(super) struct HostBound {
    pub node: Node,
    /// The node IP the pod sends to, in the check's family.
    pub node_ip: IpAddr,
    pub mode: AttachMode,
    pub host_sock: UdpSocket,
    pub pod_sock: UdpSocket,
    pub hook: Hook,
    pub observer: Option<Hook>,
    _fault: Option<Hook>,
}

impl HostBound {
    pub fn setup(
        check: &str,
        (mode, family): (AttachMode, Family),
        ctx: &Ctx,
        config: HookConfig,
    ) -> Result<Self> {
        let mut node = Node::build_for(ctx.run_id, family)?;
        let fault = ctx.apply_fault(check, &mut node, false)?;
        let node_ip = family.node_ip();
        let host_sock = traffic::bind(&node.host, node_ip, PROBE_PORT)?;
        let pod = &node.pods[0];
        let pod_sock = traffic::bind(&pod.ns, pod.addr(family)?, PROBE_PORT)?;
        let hook = Hook::attach(&node.host, &pod.lxc.name, Direction::Ingress, mode, config)?;
        Ok(Self {
            node,
            node_ip,
            mode,
            host_sock,
            pod_sock,
            hook,
            observer: None,
            _fault: fault,
        })
    }

    /// pod A eth0 tx → host-side veth rx → the hook [→ redirected → observer] →
    /// the host's IP/UDP receive path.
    fn path(&self) -> Path<'_> {
        let pod = &self.node.pods[0];
        let mut path = Path::new()
            .tx(&pod.ns, "eth0", "pod A eth0")
            .rx(&self.node.host, &pod.lxc.name, &pod.lxc.name)
            .hook(&self.hook);
        if let Some(observer) = &self.observer {
            path = path.redirected(&self.hook).observer(observer);
        }
        path.stack_of(&self.node.host, "host", self.node.family)
    }

    fn send(
        &self,
        seqs: std::ops::Range<u32>,
        wait: impl FnOnce() -> Vec<Arrival>,
    ) -> Result<Burst> {
        send_along(
            &self.path(),
            "pod A",
            "host",
            || Ok(traffic::send_burst(&self.pod_sock, self.node_ip, seqs)),
            wait,
        )
    }

    /// Sends the positive burst and waits for it at the host socket.
    pub fn positive(&mut self) -> Result<Burst> {
        self.send(POSITIVE_SEQS, || {
            traffic::collect_expected(&self.host_sock, POSITIVE_SEQS)
        })
    }

    /// The hook and observer figures, counters and events of the last burst, plus
    /// the burst itself and its hops, for evidence.
    pub fn evidence(&mut self, burst: &Burst) -> Result<Map<String, Value>> {
        let mut ev = evidence([
            ("sent", json!(burst.sent)),
            ("send_error", json!(burst.send_error)),
            (
                "destination",
                json!(format!(
                    "{} in ns host",
                    SocketAddr::new(self.node_ip, PROBE_PORT)
                )),
            ),
            ("family", json!(self.node.family.name())),
            ("attach", json!(self.mode.name())),
            ("delivered", seqs_json(&burst.arrivals)),
            (
                "delivered_from",
                json!(burst.arrivals.first().map(|a| a.from.to_string())),
            ),
            ("hops", burst.hops.to_json()),
            ("hook", hook_json(&mut self.hook)?),
        ]);
        if let Some(observer) = &mut self.observer {
            ev.insert("observer".into(), hook_json(observer)?);
        }
        Ok(ev)
    }

    /// A control whose broken hook drops the burst: the hook must count it (the
    /// witness) and the check's test, every hop counting the burst, must fail.
    pub fn drop_control(&mut self, broken: HookConfig, description: &str) -> Result<ControlLeg> {
        self.hook.configure(broken)?;
        let before = self.hook.counters()?.matched;
        let burst = self.send(CONTROL_SEQS, wait_for_leaks(&self.host_sock, &self.hook))?;
        let matched = self.hook.counters()?.matched - before;
        Ok(ControlLeg {
            description: description.to_string(),
            witnessed: matched >= u64::from(BURST),
            test_held: burst.hops.complete(),
            account: burst.hops.summary(),
            evidence: self.evidence(&burst)?,
        })
    }
}

/// A hook's place, counters and the events it recorded since the last drain.
fn hook_json(hook: &mut Hook) -> Result<Value> {
    let counters = hook.counters()?;
    let events: Vec<Value> = hook.drain_events().iter().map(meta_json).collect();
    Ok(json!({ "at": hook.label, "counters": counters.to_json(), "events": events }))
}

fn pass_config(act: u32) -> HookConfig {
    HookConfig {
        dport: PROBE_PORT,
        action: act,
        ..Default::default()
    }
}

/// TC_ACT_OK: Cilium's "-> stack".
pub const CHECKS: &[Registered] = &[
    Registered {
        id: "datapath.stack-delivery",
        run: run_pass,
    },
    Registered {
        id: "datapath.stack-delivery.redirect",
        run: run_redirect,
    },
];

fn run_pass(check: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let plan = attach_and_family(check, variant, ctx)?;
    let mut path = HostBound::setup(check, plan, ctx, pass_config(action::PASS))?;
    let burst = path.positive()?;
    let ok = || {
        format!(
            "{BURST}/{BURST} datagrams passed the hook with TC_ACT_OK and reached the host socket ({})",
            burst.hops.summary()
        )
    };
    let leg = Leg::delivery(&burst.hops, ok, path.evidence(&burst)?);
    let control = path.drop_control(pass_config(action::DROP), "the hook returns TC_ACT_SHOT")?;
    Ok(observe(check, variant, started, leg, control))
}

/// `bpf_redirect(cilium_net, BPF_F_INGRESS)` with the destination MAC rewritten, as
/// Cilium hands host-bound traffic to cilium_host/cilium_net.
fn run_redirect(check: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let plan = attach_and_family(check, variant, ctx)?;
    let mode = plan.0;
    // The node is built inside setup; the redirect target is only known after, so
    // start with a config that matches nothing and configure once the node exists.
    let mut path = HostBound::setup(check, plan, ctx, HookConfig::default())?;
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
    path.observer = Some(Hook::attach(
        &path.node.host,
        &target.name,
        Direction::Ingress,
        mode,
        pass_config(action::PASS),
    )?);

    let burst = path.positive()?;
    let mut ev = path.evidence(&burst)?;
    ev.insert(
        "redirect".into(),
        json!({ "target": target.name, "ifindex": target.index, "flags": "BPF_F_INGRESS" }),
    );
    let ok = || {
        format!(
            "{BURST}/{BURST} datagrams redirected to {}'s ingress, seen there, and delivered to the host socket",
            target.name
        )
    };
    let leg = Leg::delivery(&burst.hops, ok, ev);

    // Control: the same traffic and hook with the redirect skipped (TC_ACT_OK). It
    // reaches the same socket by the plain "-> stack" path, so only the check's
    // witness at cilium_net's ingress can tell it apart, and must.
    path.hook.configure(HookConfig {
        action: action::PASS,
        ..redirect
    })?;
    let observer = path.observer.as_ref().expect("attached above");
    let seen_before = observer.counters()?.matched;
    let control = path.send(CONTROL_SEQS, || {
        traffic::collect_expected(&path.host_sock, CONTROL_SEQS)
    })?;
    let seen = observer.counters()?.matched - seen_before;
    let delivered = control.arrivals.len() as u32;
    let test_held = delivered == BURST && seen >= u64::from(BURST);
    let account = format!(
        "passed up without the redirect: delivered {delivered}/{BURST}, {}'s ingress saw {seen}{}",
        target.name,
        if delivered == BURST && !test_held {
            ": the check's redirect witness fails when the redirect is skipped"
        } else {
            ""
        }
    );
    let control = ControlLeg {
        description: format!(
            "the same traffic handed to the stack with TC_ACT_OK instead of bpf_redirect to {}",
            target.name
        ),
        witnessed: delivered == BURST,
        test_held,
        account,
        evidence: path.evidence(&control)?,
    };
    Ok(observe(check, variant, started, leg, control))
}
