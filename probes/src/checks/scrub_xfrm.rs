//! `datapath.redirect-peer.scrub.xfrm`: the case CVE-2025-37959 was found in.
//! Cilium's IPsec decrypts in the host namespace and its eBPF host routing hands
//! the plaintext to the pod with `bpf_redirect_peer`; before the fix the skb kept
//! its XFRM secpath, and the pod's policy check dropped it as tunnel-mode IPsec
//! it had no policy for (`XfrmInNoPols`).
//!
//! ```text
//!  remote (10.44.0.2/24)        host                               pod (10.44.1.2/32)
//!  eth0 ──── veth (the wire) ──── wir<run> (10.44.0.1/24)
//!    ESP tunnel, spi 0x5c4b0e5b      │ tc ingress: ESP passed; the decrypted UDP,
//!                                    │ back on this ingress with its secpath,
//!                                    └── bpf_redirect_peer ──────────▶ eth0 (veth lxc<run>x)
//! ```
//!
//! The remote encrypts by an `out` policy with an ESP tunnel template; the host
//! has the state only (decapsulation needs no policy). The pod has no policy, so
//! a packet without a secpath is delivered and one with it is dropped as
//! `XfrmInNoPols`. The control gives the pod a `dir in` policy requiring an ESP
//! transform of an SA that does not exist (reqid 2): every packet is rejected as
//! `XfrmInTmplMismatch` whether the secpath came along or not, so the control
//! blocks on fixed and unfixed kernels alike. As measured in qemu guests with the
//! Debian 6.1 and 6.12 kernels (`../shared/notes`, "Making the scrub observable").
//!
//! Everything (states, policies, devices) lives in the check's three namespaces
//! and goes with them.

use super::scrub::{Observer, attach};
use super::{
    CONTROL_SEQS, ControlLeg, Ctx, Fault, Leg, POSITIVE_SEQS, Registered, evidence, observe,
    seqs_json,
};
use crate::hooks::{AttachMode, Direction, Hook, meta_json};
use crate::hops::{Accounting, Figure, Path};
use crate::netlink::{Route, Rtnl};
use crate::netns::NetNs;
use crate::topology::{Device, device, disable_ipv6};
use crate::traffic::{self, BURST};
use crate::xfrm::{Dir, EspPolicy, EspSa, Xfrm, XfrmStats};
use anyhow::{Context, Result, bail};
use conformance_contract::Observation;
use conformance_contract::catalogue::{Failure, NOT_DELIVERED, SECPATH_CARRIED};
use conformance_ebpf_common::{HookConfig, PROBE_PORT, SkbMeta, action, kern};
use serde_json::{Value, json};
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsFd;
use std::time::Instant;

pub const CHECKS: &[Registered] = &[Registered {
    id: "datapath.redirect-peer.scrub.xfrm",
    run,
}];

const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 2);
/// The host's end of the wire: the tunnel's outer destination.
const WIRE_IP: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 1);
const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 44, 1, 2);
const SPI: u32 = 0x5c4b_0e5b;
const REQID: u32 = 1;
/// The control policy's template asks for an SA of this reqid, which no state has.
const CONTROL_REQID: u32 = 2;
/// A static key: the check needs a tunnel, not secrecy.
const KEY: [u8; crate::xfrm::AEAD_KEY_LEN] = *b"cilium-conformance!!";
const N: u64 = BURST as u64;

/// The tunnel's one state, the same on both ends.
fn tunnel_sa() -> EspSa {
    EspSa {
        src: REMOTE_IP,
        dst: WIRE_IP,
        spi: SPI,
        reqid: REQID,
        key: KEY,
    }
}

/// The remote's policy: what it sends to the pod goes through the tunnel.
fn remote_policy() -> EspPolicy {
    EspPolicy {
        dir: Dir::Out,
        src: REMOTE_IP,
        src_prefix: 32,
        dst: POD_IP,
        dst_prefix: 32,
        tmpl_src: REMOTE_IP,
        tmpl_dst: WIRE_IP,
        tmpl_spi: SPI,
        tmpl_reqid: REQID,
    }
}

/// The control's policy in the pod: ESP required, of an SA nothing was decrypted by.
fn control_policy() -> EspPolicy {
    EspPolicy {
        dir: Dir::In,
        src: Ipv4Addr::UNSPECIFIED,
        src_prefix: 0,
        dst: POD_IP,
        dst_prefix: 32,
        tmpl_src: REMOTE_IP,
        tmpl_dst: WIRE_IP,
        tmpl_spi: 0,
        tmpl_reqid: CONTROL_REQID,
    }
}

/// The three namespaces, their devices and XFRM sockets.
struct EspNode {
    remote: NetNs,
    host: NetNs,
    pod: NetNs,
    remote_xfrm: Xfrm,
    host_xfrm: Xfrm,
    pod_xfrm: Xfrm,
    /// The host's end of the wire, where the hook runs.
    wire: Device,
    /// The host side of the pod's veth: the peer redirect's target.
    lxc: Device,
    tx: UdpSocket,
    /// The pod's socket on `0.0.0.0:PROBE_PORT`.
    rx: UdpSocket,
}

impl EspNode {
    fn build(run_id: &str) -> Result<Self> {
        let short: String = run_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(6)
            .collect();
        let remote = NetNs::new("xfrm-remote")?;
        let host = NetNs::new("xfrm-host")?;
        let pod = NetNs::new("xfrm-pod")?;
        for ns in [&remote, &host, &pod] {
            crate::triage::register(ns);
            disable_ipv6(ns)?;
        }
        let mut remote_rtnl = remote.run(Rtnl::new)?;
        let mut host_rtnl = host.run(Rtnl::new)?;
        let mut pod_rtnl = pod.run(Rtnl::new)?;
        let (wire_name, lxc_name) = (format!("wir{short}"), format!("lxc{short}x"));
        host_rtnl.add_veth(&wire_name, "eth0", Some(remote.as_fd()))?;
        host_rtnl.add_veth(&lxc_name, "eth0", Some(pod.as_fd()))?;
        let wire = device(&mut host_rtnl, &wire_name)?;
        let lxc = device(&mut host_rtnl, &lxc_name)?;
        let (lo, _) = host_rtnl.link("lo")?;
        host_rtnl.set_up(lo)?;
        host_rtnl.add_address(wire.index, WIRE_IP, 24)?;
        host_rtnl.set_up(wire.index)?;
        host_rtnl.set_up(lxc.index)?;

        let (lo, _) = remote_rtnl.link("lo")?;
        remote_rtnl.set_up(lo)?;
        let eth0 = device(&mut remote_rtnl, "eth0")?;
        remote_rtnl.add_address(eth0.index, REMOTE_IP, 24)?;
        remote_rtnl.set_up(eth0.index)?;
        remote_rtnl.add_neighbour(eth0.index, WIRE_IP, wire.mac)?;
        // The inner destination needs a route before the policy takes the packet
        // into the tunnel (whose own route is the wire's subnet).
        remote_rtnl.replace_route(&Route {
            dst: POD_IP,
            prefix: 32,
            oif: eth0.index,
            gateway: Some(WIRE_IP),
        })?;

        let (lo, _) = pod_rtnl.link("lo")?;
        pod_rtnl.set_up(lo)?;
        let pod_eth0 = device(&mut pod_rtnl, "eth0")?;
        pod_rtnl.add_address(pod_eth0.index, POD_IP, 32)?;
        pod_rtnl.set_up(pod_eth0.index)?;
        // The pod has no route back to the remote: nothing may drop for that.
        for conf in ["all", "default", "eth0"] {
            pod.write(&format!("/proc/sys/net/ipv4/conf/{conf}/rp_filter"), "0")?;
        }

        let mut remote_xfrm = remote.run(Xfrm::new)?;
        remote_xfrm
            .add_sa(&tunnel_sa())
            .context("the remote's end of the ESP tunnel")?;
        remote_xfrm.add_policy(&remote_policy())?;
        let mut host_xfrm = host.run(Xfrm::new)?;
        host_xfrm
            .add_sa(&tunnel_sa())
            .context("the host's end of the ESP tunnel")?;
        let pod_xfrm = pod.run(Xfrm::new)?;
        let tx = traffic::bind(&remote, REMOTE_IP, PROBE_PORT)?;
        let rx = traffic::bind(&pod, Ipv4Addr::UNSPECIFIED, PROBE_PORT)?;
        Ok(Self {
            remote,
            host,
            pod,
            remote_xfrm,
            host_xfrm,
            pod_xfrm,
            wire,
            lxc,
            tx,
            rx,
        })
    }
}

/// How many of a hook's events carried the secpath bit of `active_extensions`.
#[derive(Debug, Clone, Copy, Default)]
struct Secpath {
    events: usize,
    /// Events whose `active_extensions` was read (the bit known, the read done).
    read: usize,
    set: usize,
}

impl Secpath {
    fn of(events: &[SkbMeta], bit: Option<u32>) -> Self {
        let Some(bit) = bit else {
            return Self {
                events: events.len(),
                ..Self::default()
            };
        };
        let read: Vec<_> = events
            .iter()
            .filter(|m| m.kern_read & kern::EXT != 0)
            .collect();
        Self {
            events: events.len(),
            read: read.len(),
            set: read.iter().filter(|m| m.kern_ext >> bit & 1 != 0).count(),
        }
    }

    fn text(self) -> String {
        if self.read == 0 {
            format!("not read ({} events)", self.events)
        } else {
            format!("{}/{}", self.set, self.read)
        }
    }
}

/// One burst from the remote through the tunnel into the pod.
struct Burst {
    hops: Accounting,
    /// What the remote's state encrypted, the host's decrypted, and the host's
    /// hook matched of the decrypted packets.
    encrypted: u64,
    decrypted: u64,
    matched: u64,
    delivered: Vec<traffic::Arrival>,
    /// What moved in the pod's and the host's XFRM MIB.
    pod_xfrm: XfrmStats,
    host_xfrm: XfrmStats,
    /// The secpath bit on the inner packets at the host's hook, and at the pod's eth0.
    at_host: Secpath,
    at_pod: Secpath,
    hooks: Value,
}

impl Burst {
    fn no_pols(&self) -> u64 {
        self.pod_xfrm.get("XfrmInNoPols")
    }

    fn tmpl_mismatch(&self) -> u64 {
        self.pod_xfrm.get("XfrmInTmplMismatch")
    }

    fn json(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("delivered", seqs_json(&self.delivered)),
            ("hops", self.hops.to_json()),
            (
                "xfrm_stat",
                json!({ "pod": self.pod_xfrm.to_json(), "host": self.host_xfrm.to_json() }),
            ),
            (
                "secpath_bit_set",
                json!({ "host_wire_ingress": self.at_host.text(), "pod_eth0_ingress": self.at_pod.text() }),
            ),
            ("hooks", self.hooks.clone()),
        ]
    }
}

/// One hook's record of a burst: counters and the first few events.
fn hook_view(hook: &mut Hook, bit: Option<u32>) -> Result<(Value, Secpath)> {
    let counters = hook.counters()?;
    let events = hook.drain_events();
    let shown: Vec<Value> = events.iter().take(3).map(meta_json).collect();
    Ok((
        json!({ "at": hook.label, "counters": counters.to_json(), "first_events": shown }),
        Secpath::of(&events, bit),
    ))
}

/// The topology with the check's hooks.
struct Scrub {
    node: EspNode,
    /// The host's wire ingress: ESP passed, the inner UDP peer-redirected.
    wire: Hook,
    /// The pod's eth0 ingress: watches what the redirect delivered.
    pod: Hook,
    observer: Observer,
    degraded: Option<String>,
    _fault: Option<Hook>,
}

impl Scrub {
    fn setup(check: &str, ctx: &Ctx) -> Result<Self> {
        let node = EspNode::build(ctx.run_id)?;
        let observer = Observer::find();
        let redirect = HookConfig {
            dport: PROBE_PORT,
            action: action::REDIRECT_PEER,
            target_ifindex: node.lxc.index,
            ..Default::default()
        };
        let (wire, d1) = attach(&node.host, &node.wire.name, ctx, &observer, redirect)?;
        let (pod, fault, d2) = pod_hooks(check, ctx, &node, &observer)?;
        Ok(Self {
            node,
            wire,
            pod,
            observer,
            degraded: d1.or(d2),
            _fault: fault,
        })
    }

    fn sec_path_bit(&self) -> Option<u32> {
        self.observer.offsets.as_ref().and_then(|o| o.sec_path_bit)
    }

    /// The remote sends a burst to the pod; with `expect_delivery` the pod's
    /// stack and socket are on the path, else (the control) it ends at the pod's
    /// eth0 and the socket is watched for leaks.
    fn burst(&mut self, seqs: std::ops::Range<u32>, expect_delivery: bool) -> Result<Burst> {
        let bit = self.sec_path_bit();
        let EspNode {
            remote,
            host,
            pod,
            remote_xfrm,
            host_xfrm,
            wire,
            tx,
            rx,
            ..
        } = &mut self.node;
        let wire_path =
            Path::new()
                .tx(remote, "eth0", "remote eth0")
                .rx(host, &wire.name, "host wire");
        let mut inner = Path::new()
            .hook(&self.wire)
            .redirected(&self.wire)
            .observer(&self.pod);
        if expect_delivery {
            inner = inner.stack(pod, "pod");
        }
        let encrypted = remote_xfrm.sa_packets(WIRE_IP, SPI)?;
        let decrypted = host_xfrm.sa_packets(WIRE_IP, SPI)?;
        let pod_stats = XfrmStats::read(pod)?;
        let host_stats = XfrmStats::read(host)?;
        let seen = self.pod.counters()?.matched;
        let matched = self.wire.counters()?.matched;
        let (wire_before, inner_before) = (wire_path.read()?, inner.read()?);
        let (sent, send_error) = traffic::send_burst(tx, POD_IP, seqs.clone());
        let delivered = if expect_delivery {
            traffic::collect_expected(rx, seqs)
        } else {
            let pod_hook = &self.pod;
            traffic::collect_leaks(rx, seqs, || {
                pod_hook
                    .counters()
                    .map(|c| c.matched >= seen + N)
                    .unwrap_or(false)
            })
            .0
        };
        let (wire_after, inner_after) = (wire_path.read()?, inner.read()?);
        let matched = self.wire.counters()?.matched - matched;
        let encrypted = remote_xfrm.sa_packets(WIRE_IP, SPI)? - encrypted;
        let decrypted = host_xfrm.sa_packets(WIRE_IP, SPI)? - decrypted;
        let mut hops = Accounting::new(BURST);
        hops.push(Figure::path("remote sent", sent, send_error));
        hops.push(Figure::path(
            format!("remote ESP state spi {SPI:#x} encrypted"),
            encrypted,
            None,
        ));
        hops.extend(wire_path.figures(&wire_before, &wire_after));
        hops.push(Figure::path(
            format!("host ESP state spi {SPI:#x} decrypted"),
            decrypted,
            None,
        ));
        hops.extend(inner.figures(&inner_before, &inner_after));
        if expect_delivery {
            hops.push(Figure::path("pod socket", delivered.len(), None));
        }
        drop(inner);
        let pod_xfrm = XfrmStats::read(pod)?.delta(&pod_stats);
        let host_xfrm = XfrmStats::read(host)?.delta(&host_stats);
        let (wire_json, at_host) = hook_view(&mut self.wire, bit)?;
        let (pod_json, at_pod) = hook_view(&mut self.pod, bit)?;
        Ok(Burst {
            hops,
            encrypted,
            decrypted,
            matched,
            delivered,
            pod_xfrm,
            host_xfrm,
            at_host,
            at_pod,
            hooks: json!({ "host_wire": wire_json, "pod_eth0": pod_json }),
        })
    }

    fn observer_json(&self) -> Value {
        let mut v = self.observer.json();
        v["sec_path_bit"] = json!(self.sec_path_bit());
        if let Some(why) = &self.degraded {
            v["degraded"] = json!(why);
        }
        v
    }
}

/// The pod's eth0 observer and, under the `drop` fault, a program that drops
/// the check's traffic there before the observer sees it: TCX runs links in the
/// order they were attached, legacy tc runs the filter added last first (each
/// one added without a priority gets one below the lowest there).
fn pod_hooks(
    check: &str,
    ctx: &Ctx,
    node: &EspNode,
    observer: &Observer,
) -> Result<(Hook, Option<Hook>, Option<String>)> {
    let watch = HookConfig {
        dport: PROBE_PORT,
        action: action::PASS,
        ..Default::default()
    };
    if ctx.fault(check) != Some(Fault::Drop) {
        let (hook, degraded) = attach(&node.pod, "eth0", ctx, observer, watch)?;
        return Ok((hook, None, degraded));
    }
    let drop = || -> Result<Hook> {
        let cfg = HookConfig {
            dport: PROBE_PORT,
            action: action::DROP,
            ..Default::default()
        };
        let hook = Hook::attach(
            &node.pod,
            "eth0",
            Direction::Ingress,
            ctx.default_mode(),
            cfg,
        )?;
        crate::triage::disown_last();
        Ok(hook)
    };
    Ok(match ctx.default_mode() {
        AttachMode::Tcx => {
            let fault = drop()?;
            let (hook, degraded) = attach(&node.pod, "eth0", ctx, observer, watch)?;
            (hook, Some(fault), degraded)
        }
        AttachMode::Legacy => {
            let (hook, degraded) = attach(&node.pod, "eth0", ctx, observer, watch)?;
            (hook, Some(drop()?), degraded)
        }
    })
}

/// The check's test: `None` when every packet was delivered in the pod, none
/// dropped as `XfrmInNoPols`, none with the secpath bit at the pod's ingress.
fn judge(b: &Burst) -> Option<(&'static Failure, String)> {
    if b.no_pols() > 0 || b.at_pod.set > 0 {
        return Some((
            &SECPATH_CARRIED,
            format!(
                "{}/{BURST} decrypted packets were dropped in the pod as XfrmInNoPols (it has no XFRM policy), {} reached its eth0 with the secpath bit of skb->active_extensions set: the host's secpath came along ({})",
                b.no_pols(),
                b.at_pod.text(),
                b.hops.summary()
            ),
        ));
    }
    if let Some((reason, failure)) = b.hops.loss().zip(b.hops.failure()) {
        return Some((failure, reason));
    }
    ((b.delivered.len() as u64) < N).then(|| {
        (
            &NOT_DELIVERED,
            format!(
                "{}/{BURST} delivered to the pod's socket ({}; the pod's XFRM MIB moved: {})",
                b.delivered.len(),
                b.hops.summary(),
                b.pod_xfrm.to_json()
            ),
        )
    })
}

/// The packets must have crossed the wire as ESP and reached the host's hook
/// with a secpath, else a delivery shows nothing about the scrub.
fn premise(b: &Burst) -> Result<()> {
    if b.matched < N {
        // The accounting names where they went missing.
        return Ok(());
    }
    if b.encrypted < N || b.decrypted < N {
        bail!(
            "the check's premise failed: the remote's ESP state encrypted {}/{BURST} and the host's decrypted {}/{BURST} while the host's hook matched {} inner packets, so they did not all cross the wire as ESP and nothing here can show a secpath carried",
            b.encrypted,
            b.decrypted,
            b.matched
        );
    }
    if b.at_host.read > 0 && b.at_host.set < b.at_host.read {
        bail!(
            "the check's premise failed: only {} decrypted packets carried the secpath bit of skb->active_extensions at the host's hook, so nothing here can show it carried",
            b.at_host.text()
        );
    }
    Ok(())
}

fn run(check: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let mut s = Scrub::setup(check, ctx)?;
    let b = s.burst(POSITIVE_SEQS, true)?;
    premise(&b)?;
    let mut ev = evidence(b.json());
    ev.insert("observer".into(), s.observer_json());
    ev.insert(
        "tunnel".into(),
        json!({
            "state": tunnel_sa().describe(),
            "remote_policy": remote_policy().describe(),
            "pod_policy": "none (the control's: ".to_string() + &control_policy().describe() + ")",
        }),
    );
    ev.insert(
        "helper".into(),
        json!(format!(
            "bpf_redirect_peer from {}'s ingress (the decrypted packets) to the pod's veth",
            s.node.wire.name
        )),
    );
    let leg = Leg::judged(
        judge(&b),
        || {
            format!(
                "{BURST}/{BURST} delivered in the pod, which has no XFRM policy: XfrmInNoPols +0; the remote's ESP state encrypted {BURST} and the host's decrypted {BURST}; the secpath bit at the host's wire ingress {}, at the pod's eth0 {}",
                b.at_host.text(),
                b.at_pod.text()
            )
        },
        ev,
    );
    s.node.pod_xfrm.add_policy(&control_policy())?;
    let c = s.burst(CONTROL_SEQS, false)?;
    let control = ControlLeg {
        description: format!(
            "the pod with a `dir in` policy for {POD_IP} requiring an ESP tunnel transform of reqid {CONTROL_REQID}, which no packet was decrypted by"
        ),
        witnessed: c.tmpl_mismatch() >= N,
        test_held: judge(&c).is_none(),
        account: format!(
            "with the pod's policy: {}/{BURST} delivered, XfrmInTmplMismatch +{}, XfrmInNoPols +{}, the secpath bit at the pod's eth0 {}",
            c.delivered.len(),
            c.tmpl_mismatch(),
            c.no_pols(),
            c.at_pod.text()
        ),
        evidence: evidence(c.json()),
    };
    Ok(observe(check, variant, started, leg, control))
}
