//! `datapath.redirect-peer.scrub.{conntrack,dst,skb-ext,mark}`: the state the
//! CVE-2025-37959 fix makes `bpf_redirect_peer` reset (`skb_scrub_packet(skb,
//! false)`: conntrack, the route, skb extensions) and what it keeps on purpose
//! (`mark`), each observed on the field itself in the topology of
//! [`crate::topology_scrub`].
//!
//! Each check's control differs only in the handoff into the pod: the passthru
//! macvlan (or, for the route, `mirred` then the macvlan), which keeps the state,
//! so the control shows the witness seeing it carried. `mark`'s control is a plain
//! `bpf_redirect` through the pod's veth, whose cross-namespace scrub clears it.
//!
//! Observers in the pod: nftables counters before and after its conntrack, its
//! IP MIBs, socket delivery, and the `hook_state` program on the pod's ingress
//! devices reading `_nfct`, `_skb_refdst` and `active_extensions` from the skb
//! at offsets taken from the kernel's BTF. The evidence says which ran.

use super::{
    CONTROL_SEQS, ControlLeg, Ctx, Leg, POSITIVE_SEQS, Registered, evidence, observe, seqs_json,
};
use crate::btf::SkbOffsets;
use crate::counters::NsCounters;
use crate::hooks::{Direction, Hook, meta_json};
use crate::hops::{Accounting, Figure, Path};
use crate::topology_scrub::{BRIDGE_IP, HOST_CT_MARK, NftCounts, SOURCE_ONLY_IP, ScrubNode};
use crate::traffic::{self, BURST};
use anyhow::{Result, bail};
use conformance_contract::Observation;
use conformance_contract::catalogue::{
    CT_CARRIED, DST_CARRIED, EXT_CARRIED, Failure, METADATA_LOST, NOT_DELIVERED,
};
use conformance_ebpf_common::{HookConfig, PROBE_PORT, SkbMeta, action, kern, names};
use serde_json::{Value, json};
use std::time::Instant;

pub const CHECKS: &[Registered] = &[
    Registered {
        id: "datapath.redirect-peer.scrub.conntrack",
        run: run_conntrack,
    },
    Registered {
        id: "datapath.redirect-peer.scrub.dst",
        run: run_dst,
    },
    Registered {
        id: "datapath.redirect-peer.scrub.skb-ext",
        run: run_ext,
    },
    Registered {
        id: "datapath.redirect-peer.scrub.mark",
        run: run_mark,
    },
];

/// The mark the source hook sets before the handoff (kept by the scrub).
const SCRUB_MARK: u32 = 0x5c4b_0002;

/// What the `hook_state` programs read, or why they read nothing (shared with
/// `scrub_xfrm`).
pub(super) struct Observer {
    pub(super) offsets: Option<SkbOffsets>,
    pub(super) why_not: Option<String>,
}

impl Observer {
    /// The running kernel's offsets, read from its BTF once per probe: every
    /// scrub check asks, often at the same time, and one parse of vmlinux's BTF
    /// takes tens of milliseconds.
    pub(super) fn find() -> Self {
        static FOUND: std::sync::OnceLock<Result<SkbOffsets, String>> = std::sync::OnceLock::new();
        match FOUND.get_or_init(|| SkbOffsets::from_sysfs().map_err(|e| format!("{e:#}"))) {
            Ok(offsets) => Self {
                offsets: Some(*offsets),
                why_not: None,
            },
            Err(why) => Self {
                offsets: None,
                why_not: Some(why.clone()),
            },
        }
    }

    /// A configuration reading every field this kernel has.
    pub(super) fn config(&self, base: HookConfig) -> HookConfig {
        let Some(o) = &self.offsets else { return base };
        let mut cfg = base;
        if let Some(off) = o.nfct {
            cfg.kern_mask |= kern::NFCT;
            cfg.kern_nfct_off = off as u16;
        }
        if let Some(off) = o.refdst {
            cfg.kern_mask |= kern::REFDST;
            cfg.kern_refdst_off = off as u16;
        }
        if let Some(off) = o.active_extensions {
            cfg.kern_mask |= kern::EXT;
            cfg.kern_ext_off = off as u16;
        }
        cfg
    }

    pub(super) fn json(&self) -> Value {
        match (&self.offsets, &self.why_not) {
            (Some(o), _) => json!({
                "program": "hook_state (bpf_probe_read_kernel at BTF offsets)",
                "sk_buff_offsets": { "_nfct": o.nfct, "_skb_refdst": o.refdst, "active_extensions": o.active_extensions },
            }),
            (None, why) => json!({ "program": "hook (no sk_buff fields)", "why": why }),
        }
    }
}

/// A hook on `device` in `ns` that reads the skb's own fields where it can: a
/// verifier that refuses `bpf_probe_read_kernel` for TC programs leaves the
/// plain `hook`, and the evidence says so.
pub(super) fn attach(
    ns: &crate::netns::NetNs,
    device: &str,
    ctx: &Ctx,
    observer: &Observer,
    base: HookConfig,
) -> Result<(Hook, Option<String>)> {
    let mode = ctx.default_mode();
    if observer.offsets.is_some() {
        match Hook::attach_program(
            ns,
            device,
            Direction::Ingress,
            mode,
            observer.config(base),
            names::HOOK_STATE_PROGRAM,
        ) {
            Ok(hook) => return Ok((hook, None)),
            Err(e) => {
                let why = format!("{e:#}");
                let hook = Hook::attach(ns, device, Direction::Ingress, mode, base)?;
                return Ok((hook, Some(why)));
            }
        }
    }
    let hook = Hook::attach(ns, device, Direction::Ingress, mode, base)?;
    Ok((hook, observer.why_not.clone()))
}

/// What a hook saw of the kernel fields, over its events.
#[derive(Debug, Clone, Copy, Default)]
struct Fields {
    events: usize,
    /// Events where each field was read, and of those, where it was non-zero.
    nfct_read: usize,
    nfct_set: usize,
    refdst_read: usize,
    refdst_set: usize,
    ext_read: usize,
    ext_set: usize,
    /// Events whose mark is [`SCRUB_MARK`].
    marked: usize,
}

impl Fields {
    fn of(events: &[SkbMeta]) -> Self {
        let count = |bit: u32, set: fn(&SkbMeta) -> bool| {
            let read: Vec<_> = events.iter().filter(|m| m.kern_read & bit != 0).collect();
            (read.len(), read.iter().filter(|m| set(m)).count())
        };
        let (nfct_read, nfct_set) = count(kern::NFCT, |m| m.kern_nfct != 0);
        let (refdst_read, refdst_set) = count(kern::REFDST, |m| m.kern_refdst != 0);
        let (ext_read, ext_set) = count(kern::EXT, |m| m.kern_ext != 0);
        Self {
            events: events.len(),
            nfct_read,
            nfct_set,
            refdst_read,
            refdst_set,
            ext_read,
            ext_set,
            marked: events.iter().filter(|m| m.mark == SCRUB_MARK).count(),
        }
    }

    fn json(self) -> Value {
        json!({
            "events": self.events,
            "_nfct_set": format!("{}/{}", self.nfct_set, self.nfct_read),
            "_skb_refdst_set": format!("{}/{}", self.refdst_set, self.refdst_read),
            "active_extensions_set": format!("{}/{}", self.ext_set, self.ext_read),
            "mark_kept": format!("{}/{}", self.marked, self.events),
        })
    }
}

/// One hook's record of a burst: counters, fields, a few events.
fn hook_view(hook: &mut Hook) -> Result<(Value, Fields)> {
    let counters = hook.counters()?;
    let events = hook.drain_events();
    let fields = Fields::of(&events);
    let shown: Vec<Value> = events.iter().take(3).map(meta_json).collect();
    Ok((
        json!({ "at": hook.label, "counters": counters.to_json(), "fields": fields.json(), "first_events": shown }),
        fields,
    ))
}

/// One burst through the scrub topology: hop figures, delivery, nftables and
/// MIB deltas, and what each hook saw.
struct Burst {
    hops: Accounting,
    delivered: Vec<traffic::Arrival>,
    nft: NftCounts,
    /// The pod's `InNoRoutes` + `InAddrErrors`: packets its routing dropped.
    pod_route_drops: u64,
    source: Fields,
    /// The pod-side hook on the leg's path (eth0 for the peer redirect, mv0 else).
    arrival: Fields,
    hooks: Value,
}

impl Burst {
    fn json(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("delivered", seqs_json(&self.delivered)),
            ("hops", self.hops.to_json()),
            ("nftables", self.nft.to_json()),
            ("pod_route_drops", json!(self.pod_route_drops)),
            ("hooks", self.hooks.clone()),
        ]
    }
}

fn pod_route_drops(node: &ScrubNode) -> Result<u64> {
    let c = NsCounters::read(&node.pod)?;
    Ok(c.mib("IpExt", "InNoRoutes")? + c.mib("Ip", "InAddrErrors")?)
}

/// A drop program on the sender's device (the catalogue's `drop` fault).
fn fault(ctx: &Ctx, check: &str, ns: &crate::netns::NetNs, device: &str) -> Result<Option<Hook>> {
    if ctx.fault(check) != Some(super::Fault::Drop) {
        return Ok(None);
    }
    let cfg = HookConfig {
        dport: PROBE_PORT,
        action: action::DROP,
        ..Default::default()
    };
    let hook = Hook::attach(ns, device, Direction::Egress, ctx.default_mode(), cfg)?;
    crate::triage::disown_last();
    Ok(Some(hook))
}

/// Where a leg hands the packets into the pod.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Handoff {
    /// `bpf_redirect_peer` to the pod's veth: the check.
    Peer,
    /// The hook passes (bridged) or continues to `mirred` (local): the macvlan.
    Macvlan,
    /// `bpf_redirect` to the pod veth's host side (egress): a cross-namespace veth.
    Veth,
}

/// Where the packets come from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The remote, bridged through br0.
    Bridged,
    /// The host itself, to its own [`SOURCE_ONLY_IP`], over lo.
    Local,
}

/// The topology with the hooks a check needs.
struct Scrub {
    node: ScrubNode,
    source: Source,
    /// br0's or lo's ingress hook.
    src: Hook,
    /// br0's hook when the source is lo: it passes the mirred packets on.
    bridge: Option<Hook>,
    eth0: Hook,
    mv0: Hook,
    degraded: Option<String>,
    observer: Observer,
    /// The source's socket, bound once: both legs send the same flow from it.
    sender: std::net::UdpSocket,
    _fault: Option<Hook>,
}

impl Scrub {
    fn setup(check: &str, ctx: &Ctx, source: Source) -> Result<Self> {
        let mut node = ScrubNode::build(ctx.run_id)?;
        let observer = Observer::find();
        let fault = match source {
            Source::Bridged => fault(ctx, check, &node.remote, "eth0")?,
            Source::Local => fault(ctx, check, &node.host, "lo")?,
        };
        let watch = HookConfig {
            dport: PROBE_PORT,
            action: action::PASS,
            ..Default::default()
        };
        let device = match source {
            Source::Bridged => "br0",
            Source::Local => "lo",
        };
        let (src, d1) = attach(&node.host, device, ctx, &observer, watch)?;
        let bridge = match source {
            Source::Local => {
                let (hook, _) = attach(&node.host, "br0", ctx, &observer, watch)?;
                node.mirror_lo_to_bridge()?;
                Some(hook)
            }
            Source::Bridged => None,
        };
        let (eth0, d2) = attach(&node.pod, "eth0", ctx, &observer, watch)?;
        let (mv0, d3) = attach(&node.pod, "mv0", ctx, &observer, watch)?;
        let sender = match source {
            Source::Bridged => node.remote_sender()?,
            Source::Local => node.host_sender()?,
        };
        Ok(Self {
            node,
            source,
            src,
            bridge,
            eth0,
            mv0,
            degraded: d1.or(d2).or(d3),
            observer,
            sender,
            _fault: fault,
        })
    }

    /// Sets the source hook up for `handoff` (marking with `mark` when non-zero).
    fn hand_off(&mut self, handoff: Handoff, mark: u32) -> Result<()> {
        let act = match (handoff, self.source) {
            (Handoff::Peer, _) => action::REDIRECT_PEER,
            (Handoff::Veth, _) => action::REDIRECT,
            (Handoff::Macvlan, Source::Bridged) => action::PASS,
            (Handoff::Macvlan, Source::Local) => action::CONTINUE,
        };
        let cfg = HookConfig {
            dport: PROBE_PORT,
            action: act,
            target_ifindex: self.node.lxc.index,
            set_mark: mark,
            // Through the veth the pod's eth0 runs eth_type_trans: the frame must be for it.
            rewrite_dst_mac: u8::from(handoff == Handoff::Veth),
            dst_mac: self.node.pod_eth0.mac,
            ..Default::default()
        };
        self.src.configure(self.observer.config(cfg))
    }

    /// One burst: the sender → the source hook → `handoff` → the pod's hook on
    /// that path → the pod's stack (and socket when `expect_delivery`).
    fn burst(
        &mut self,
        handoff: Handoff,
        seqs: std::ops::Range<u32>,
        expect_delivery: bool,
    ) -> Result<Burst> {
        let dst = match self.source {
            Source::Bridged => BRIDGE_IP,
            Source::Local => SOURCE_ONLY_IP,
        };
        let port = self.node.port.name.clone();
        let mut path = Path::new();
        if self.source == Source::Bridged {
            path = path.tx(&self.node.remote, "eth0", "remote eth0").rx(
                &self.node.host,
                &port,
                "host bridge port",
            );
        }
        path = path.hook(&self.src);
        path = match handoff {
            Handoff::Peer | Handoff::Veth => path.redirected(&self.src).observer(&self.eth0),
            Handoff::Macvlan => path.observer(&self.mv0),
        };
        if expect_delivery {
            path = path.stack(&self.node.pod, "pod");
        }
        let nft_before = self.node.counters()?;
        let drops_before = pod_route_drops(&self.node)?;
        let watch = if handoff == Handoff::Macvlan {
            &self.mv0
        } else {
            &self.eth0
        };
        let seen = watch.counters()?.matched;
        let before = path.read()?;
        let (sent, send_error) = traffic::send_burst(&self.sender, dst, seqs.clone());
        let delivered = if expect_delivery {
            traffic::collect_expected(&self.node.rx, seqs)
        } else {
            // Nothing should arrive: wait until the pod's hook saw the burst, then a grace period.
            traffic::collect_leaks(&self.node.rx, seqs, || {
                watch
                    .counters()
                    .map(|c| c.matched >= seen + N)
                    .unwrap_or(false)
            })
            .0
        };
        let after = path.read()?;
        let mut hops = Accounting::new(BURST);
        hops.push(Figure::path("sender sent", sent, send_error));
        hops.extend(path.figures(&before, &after));
        if expect_delivery {
            hops.push(Figure::path("pod socket", delivered.len(), None));
        }
        drop(path);
        let nft = self.node.counters()?.delta(nft_before);
        let pod_route_drops = pod_route_drops(&self.node)? - drops_before;
        let (src_json, source) = hook_view(&mut self.src)?;
        let (eth0_json, eth0) = hook_view(&mut self.eth0)?;
        let (mv0_json, mv0) = hook_view(&mut self.mv0)?;
        let mut hooks = json!({ "source": src_json, "pod_eth0": eth0_json, "pod_mv0": mv0_json });
        if let Some(bridge) = self.bridge.as_mut() {
            hooks["bridge"] = hook_view(bridge)?.0;
        }
        Ok(Burst {
            hops,
            delivered,
            nft,
            pod_route_drops,
            source,
            arrival: if handoff == Handoff::Macvlan {
                mv0
            } else {
                eth0
            },
            hooks,
        })
    }

    fn observer_json(&self) -> Value {
        let mut v = self.observer.json();
        if let Some(why) = &self.degraded {
            v["degraded"] = json!(why);
        }
        v
    }
}

const N: u64 = BURST as u64;

/// The check leg's handoff: the peer redirect, or under the `no-scrub` fault the
/// control's path, so the check is shown to see state that came along.
fn check_handoff(ctx: &Ctx, check: &str) -> Handoff {
    if ctx.fault(check) == Some(super::Fault::NoScrub) {
        Handoff::Macvlan
    } else {
        Handoff::Peer
    }
}

/// The whole burst reached the pod's hook on the leg's path (the control's witness).
fn reached(b: &Burst) -> bool {
    b.arrival.events as u64 >= N
}

// --- conntrack ---------------------------------------------------------------

/// The conntrack check's test: `None` when the pod saw every packet untracked
/// before its own conntrack, none with the host's mark, then tracked them itself.
fn judge_conntrack(b: &Burst) -> Option<(&'static Failure, String)> {
    let carried_bpf = b.arrival.nfct_set;
    if b.nft.carried > 0 || carried_bpf > 0 {
        return Some((
            &CT_CARRIED,
            format!(
                "{}/{BURST} packets reached the pod with the host's conntrack entry (ct mark {HOST_CT_MARK:#x} before the pod's conntrack), {}/{} with skb->_nfct set at the pod's ingress: the host's conntrack state came along ({})",
                b.nft.carried,
                carried_bpf,
                b.arrival.nfct_read,
                b.hops.summary()
            ),
        ));
    }
    if let Some(loss) = b.hops.loss().zip(b.hops.failure()) {
        return Some((loss.1, loss.0));
    }
    // Delivered, no host mark, yet some had a conntrack entry before the pod's
    // own conntrack ran: state came along all the same.
    (b.nft.untracked < N).then(|| {
        (
            &CT_CARRIED,
            format!(
                "delivered {}/{BURST}, but only {}/{BURST} had no conntrack entry before the pod's conntrack ran: the others arrived with one ({})",
                b.delivered.len(),
                b.nft.untracked,
                b.hops.summary()
            ),
        )
    })
}

/// The pod must track the flow itself once it has no entry, else its counters
/// cannot tell a reset from a namespace without conntrack.
fn pod_tracked(b: &Burst) -> Result<()> {
    if b.hops.complete() && b.nft.untracked >= N && b.nft.tracked < N {
        bail!(
            "the pod's conntrack tracked {}/{BURST} of the packets that arrived without an entry: nothing shows the pod gets its own entry, so the reset cannot be told from a pod without conntrack",
            b.nft.tracked
        );
    }
    Ok(())
}

fn run_conntrack(check: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let mut s = Scrub::setup(check, ctx, Source::Bridged)?;
    let h = check_handoff(ctx, check);
    s.hand_off(h, 0)?;
    let b = s.burst(h, POSITIVE_SEQS, true)?;
    premise_conntrack(&b)?;
    pod_tracked(&b)?;
    let mut ev = evidence(b.json());
    ev.insert("observer".into(), s.observer_json());
    ev.insert(
        "helper".into(),
        json!("bpf_redirect_peer from br0's ingress to the pod's veth"),
    );
    let leg = Leg::judged(
        judge_conntrack(&b),
        || {
            format!(
                "{BURST}/{BURST} delivered; before the pod's conntrack {}/{BURST} had no entry and 0 the host's mark {HOST_CT_MARK:#x} (the host had tagged {}/{BURST}); after it {}/{BURST} tracked by the pod's own entry; skb->_nfct set at the pod's ingress {}/{}",
                b.nft.untracked,
                b.nft.tagged,
                b.nft.tracked,
                b.arrival.nfct_set,
                b.arrival.nfct_read
            )
        },
        ev,
    );
    s.hand_off(Handoff::Macvlan, 0)?;
    let c = s.burst(Handoff::Macvlan, CONTROL_SEQS, true)?;
    let control = ControlLeg {
        description:
            "the same bridged packets handed to the pod by the passthru macvlan on br0 (no scrub)"
                .into(),
        witnessed: reached(&c),
        test_held: judge_conntrack(&c).is_none(),
        account: format!(
            "through the macvlan: {}/{BURST} reached the pod with the host's ct mark, {}/{BURST} untracked, skb->_nfct set {}/{}",
            c.nft.carried, c.nft.untracked, c.arrival.nfct_set, c.arrival.nfct_read
        ),
        evidence: evidence(c.json()),
    };
    Ok(observe(check, variant, started, leg, control))
}

/// The host must have tracked and tagged the flow, else nothing here shows a reset.
fn premise_conntrack(b: &Burst) -> Result<()> {
    if b.hops.complete() && b.source.nfct_read > 0 && b.source.nfct_set < b.source.nfct_read {
        bail!(
            "the check's premise failed: only {}/{} bridged packets had a conntrack entry (skb->_nfct) at br0's ingress, so nothing here can show a reset",
            b.source.nfct_set,
            b.source.nfct_read
        );
    }
    if b.nft.tagged < N && b.hops.complete() {
        bail!(
            "the check's premise failed: the host's nftables tagged {}/{BURST} bridged packets, so br_netfilter did not run the host's conntrack on them and nothing here can show a reset",
            b.nft.tagged
        );
    }
    Ok(())
}

// --- dst ---------------------------------------------------------------------

/// The route check's test: `None` when the pod re-routed every packet to the
/// host-only address and dropped it, none delivered.
fn judge_dst(b: &Burst) -> Option<(&'static Failure, String)> {
    if !b.delivered.is_empty() {
        return Some((
            &DST_CARRIED,
            format!(
                "{}/{BURST} packets to {SOURCE_ONLY_IP}, an address only the host has, were delivered in the pod: the host's route came along ({}/{} with skb->_skb_refdst set at the pod's ingress; the pod's routing dropped {})",
                b.delivered.len(),
                b.arrival.refdst_set,
                b.arrival.refdst_read,
                b.pod_route_drops
            ),
        ));
    }
    if let Some(loss) = b.hops.loss().zip(b.hops.failure()) {
        return Some((loss.1, loss.0));
    }
    // Neither delivered nor dropped by the pod's routing: lost somewhere else,
    // which says nothing about the route, so it is never the CVE's failure.
    (b.pod_route_drops < N).then(|| {
        (
            &NOT_DELIVERED,
            format!(
                "{}; pod routing drops (IpExt InNoRoutes + Ip InAddrErrors) {}/{BURST}: {} lost between the pod's eth0 hook and its routing, neither delivered nor re-routed",
                b.hops.summary(),
                b.pod_route_drops,
                N - b.pod_route_drops
            ),
        )
    })
}

fn run_dst(check: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let mut s = Scrub::setup(check, ctx, Source::Local)?;
    let h = check_handoff(ctx, check);
    s.hand_off(h, 0)?;
    let b = s.burst(h, POSITIVE_SEQS, h == Handoff::Macvlan)?;
    if b.source.refdst_read > 0 && b.source.refdst_set < b.source.refdst_read && b.hops.complete() {
        bail!(
            "the check's premise failed: only {}/{} packets had a route (skb->_skb_refdst) at lo's ingress",
            b.source.refdst_set,
            b.source.refdst_read
        );
    }
    let mut ev = evidence(b.json());
    ev.insert("observer".into(), s.observer_json());
    ev.insert(
        "destination".into(),
        json!(format!(
            "{SOURCE_ONLY_IP}:{PROBE_PORT}, local in the host only; the pod's socket is on 0.0.0.0"
        )),
    );
    let leg = Leg::judged(
        judge_dst(&b),
        || {
            format!(
                "0/{BURST} delivered: the pod re-routed all {BURST} packets to the host-only {SOURCE_ONLY_IP} and dropped them (routing drops +{}); skb->_skb_refdst at lo's ingress set {}/{}, at the pod's {}/{}",
                b.pod_route_drops,
                b.source.refdst_set,
                b.source.refdst_read,
                b.arrival.refdst_set,
                b.arrival.refdst_read
            )
        },
        ev,
    );
    s.hand_off(Handoff::Macvlan, 0)?;
    let c = s.burst(Handoff::Macvlan, CONTROL_SEQS, true)?;
    let control = ControlLeg {
        description: "the same packets handed on by mirred (lo ingress → br0 ingress) and the passthru macvlan into the pod: the route is kept".into(),
        witnessed: reached(&c),
        test_held: judge_dst(&c).is_none(),
        account: format!(
            "through mirred and the macvlan: {}/{BURST} delivered to the host-only address, the pod's routing dropped {}, skb->_skb_refdst set {}/{}",
            c.delivered.len(),
            c.pod_route_drops,
            c.arrival.refdst_set,
            c.arrival.refdst_read
        ),
        evidence: evidence(c.json()),
    };
    Ok(observe(check, variant, started, leg, control))
}

// --- skb extensions ----------------------------------------------------------

fn judge_ext(b: &Burst) -> Option<(&'static Failure, String)> {
    if b.arrival.ext_set > 0 {
        return Some((
            &EXT_CARRIED,
            format!(
                "{}/{} packets reached the pod with skb->active_extensions non-zero (the bridge-netfilter extension the host's bridge attached): skb extensions were not reset, nor would an IPsec secpath be ({})",
                b.arrival.ext_set,
                b.arrival.ext_read,
                b.hops.summary()
            ),
        ));
    }
    b.hops.loss().zip(b.hops.failure()).map(|(r, f)| (f, r))
}

fn run_ext(check: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let mut s = Scrub::setup(check, ctx, Source::Bridged)?;
    if s.observer
        .offsets
        .as_ref()
        .and_then(|o| o.active_extensions)
        .is_none()
    {
        bail!(
            "no observer for skb extensions on this kernel: {}",
            s.observer.why_not.clone().unwrap_or_else(|| {
                "its struct sk_buff has no active_extensions (CONFIG_SKB_EXTENSIONS off)".into()
            })
        );
    }
    let h = check_handoff(ctx, check);
    s.hand_off(h, 0)?;
    let b = s.burst(h, POSITIVE_SEQS, true)?;
    if b.hops.complete()
        && (b.source.ext_read < BURST as usize || b.arrival.ext_read < BURST as usize)
    {
        bail!(
            "the skb-extension observer read {}/{BURST} packets at br0 and {}/{BURST} in the pod ({}): nothing can be concluded",
            b.source.ext_read,
            b.arrival.ext_read,
            s.degraded.clone().unwrap_or_default()
        );
    }
    if b.hops.complete() && b.source.ext_set < BURST as usize {
        bail!(
            "the check's premise failed: only {}/{BURST} bridged packets carried an skb extension at br0's ingress (br_netfilter attaches one to each)",
            b.source.ext_set
        );
    }
    let mut ev = evidence(b.json());
    ev.insert("observer".into(), s.observer_json());
    let leg = Leg::judged(
        judge_ext(&b),
        || {
            format!(
                "{BURST}/{BURST} delivered; skb->active_extensions non-zero at br0's ingress {}/{BURST}, at the pod's 0/{BURST}: the bridge-netfilter extension was reset (as an IPsec secpath would be)",
                b.source.ext_set
            )
        },
        ev,
    );
    s.hand_off(Handoff::Macvlan, 0)?;
    let c = s.burst(Handoff::Macvlan, CONTROL_SEQS, true)?;
    let control = ControlLeg {
        description:
            "the same bridged packets handed to the pod by the passthru macvlan on br0 (no scrub)"
                .into(),
        witnessed: reached(&c),
        test_held: judge_ext(&c).is_none(),
        account: format!(
            "through the macvlan: skb->active_extensions non-zero at the pod's mv0 {}/{}",
            c.arrival.ext_set, c.arrival.ext_read
        ),
        evidence: evidence(c.json()),
    };
    Ok(observe(check, variant, started, leg, control))
}

// --- mark --------------------------------------------------------------------

fn judge_mark(b: &Burst) -> Option<(&'static Failure, String)> {
    if let Some(loss) = b.hops.loss().zip(b.hops.failure()) {
        return Some((loss.1, loss.0));
    }
    (b.arrival.marked < BURST as usize).then(|| {
        (
            &METADATA_LOST,
            format!(
                "{}/{BURST} packets still had the mark {SCRUB_MARK:#x} at the pod's ingress: the scrub keeps skb->mark by design",
                b.arrival.marked
            ),
        )
    })
}

fn run_mark(check: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let mut s = Scrub::setup(check, ctx, Source::Bridged)?;
    s.hand_off(Handoff::Peer, SCRUB_MARK)?;
    let b = s.burst(Handoff::Peer, POSITIVE_SEQS, true)?;
    let mut ev = evidence(b.json());
    ev.insert("mark_set_at_br0".into(), json!(format!("{SCRUB_MARK:#x}")));
    let leg = Leg::judged(
        judge_mark(&b),
        || {
            format!(
                "{BURST}/{BURST} delivered with the mark {SCRUB_MARK:#x} the source hook set, as upstream intends (skb_scrub_packet(skb, false) keeps mark)"
            )
        },
        ev,
    );
    s.hand_off(Handoff::Veth, SCRUB_MARK)?;
    let c = s.burst(Handoff::Veth, CONTROL_SEQS, true)?;
    let control = ControlLeg {
        description: format!(
            "the same marked packets by plain bpf_redirect to {}'s egress: the veth's cross-namespace scrub clears the mark",
            s.node.lxc.name
        ),
        witnessed: reached(&c),
        test_held: judge_mark(&c).is_none(),
        account: format!(
            "through the veth: {}/{BURST} delivered, {}/{BURST} still marked at the pod's eth0",
            c.delivered.len(),
            c.arrival.marked
        ),
        evidence: evidence(c.json()),
    };
    Ok(observe(check, variant, started, leg, control))
}
