//! `datapath.redirect-peer` and `datapath.redirect-peer.scrub`: `bpf_redirect_peer`
//! from pod A's host-side veth ingress straight into pod B's namespace, as Cilium's
//! BPF host routing does, and what the kernel scrubs on the way (CVE-2025-37959).
//!
//! Both controls take the one path that differs only in the decisive step: a plain
//! `bpf_redirect` to pod B's host-side veth (egress), so the frame enters pod B
//! through `veth_xmit` and `eth_type_trans` instead of being handed to its peer.
//!
//! `datapath.redirect-peer[ipv6]` sends pod A → pod B over IPv6 on a dual-stack
//! node (`fd00:42::11` → `fd00:42::12`): the same hooks, redirect and control,
//! pod B's `Ip6`/`Udp6` MIBs on the path and the host's `Ip6 OutForwDatagrams`
//! as the forwarding witness.

use super::{
    Burst, CONTROL_SEQS, ControlLeg, Ctx, Leg, POSITIVE_SEQS, Registered, attach_and_family,
    evidence, observe, send_along, seqs_json,
};
use crate::counters::NsCounters;
use crate::hooks::{AttachMode, Direction, Hook, meta_json};
use crate::hops::{Accounting, Path};
use crate::netlink::Mac;
use crate::topology::{Family, Node};
use crate::traffic::{self, Arrival, BURST, FrameSender, FrameSpec};
use anyhow::{Result, bail};
use conformance_contract::Observation;
use conformance_contract::catalogue::{
    Failure, HOOK_NOT_RUN, METADATA_LOST, NOT_BYPASSED, NOT_SCRUBBED, PARTLY_SCRUBBED,
};
use conformance_ebpf_common::{HookConfig, PROBE_PORT, SkbMeta, action};
use serde_json::{Value, json};
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

/// Pod A → pod B through a hook on pod A's host-side veth and an observer on pod B's eth0.
struct PodToPod {
    node: Node,
    rx_sock: UdpSocket,
    hook: Hook,
    observer: Hook,
    _fault: Option<Hook>,
}

/// What the check's bypass witness reads: the host forwarding, pod B's veth transmitting.
#[derive(Debug, Clone, Copy)]
struct Bypass {
    forwarded: u64,
    lxc_b_tx: u64,
}

impl Bypass {
    fn delta(self, before: Bypass) -> Bypass {
        Bypass {
            forwarded: self.forwarded - before.forwarded,
            lxc_b_tx: self.lxc_b_tx - before.lxc_b_tx,
        }
    }

    fn none(self) -> bool {
        self.forwarded == 0 && self.lxc_b_tx == 0
    }
}

impl PodToPod {
    fn setup(check: &str, mode: AttachMode, family: Family, ctx: &Ctx) -> Result<Self> {
        let mut node = Node::build_for(ctx.run_id, family)?;
        let fault = ctx.apply_fault(check, &mut node, false)?;
        let [a, b] = &node.pods;
        let rx_sock = traffic::bind(&b.ns, b.addr(family)?, PROBE_PORT)?;
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

    fn bypass(&self) -> Result<Bypass> {
        let host = NsCounters::read(&self.node.host)?;
        let forwarded = match self.node.family {
            Family::V4 => host.mib("Ip", "ForwDatagrams")?,
            Family::V6 => host.mib("Ip6", "OutForwDatagrams")?,
        };
        Ok(Bypass {
            forwarded,
            lxc_b_tx: host.device(&self.node.pods[1].lxc.name)?.tx_packets,
        })
    }

    /// pod A eth0 tx → lxc…a rx → the hook (matched, redirected) → pod B's observer →
    /// pod B's IP/UDP path. pod B's eth0 rx is not on it: a veth counts its rx from
    /// its peer's tx, which a peer redirect bypasses. Controls use the same path, so
    /// the check's own test is what judges them.
    fn path(&self) -> Path<'_> {
        let [a, b] = &self.node.pods;
        Path::new()
            .tx(&a.ns, "eth0", "pod A eth0")
            .rx(&self.node.host, &a.lxc.name, &a.lxc.name)
            .hook(&self.hook)
            .redirected(&self.hook)
            .observer(&self.observer)
            .stack_of(&b.ns, "pod B", self.node.family)
    }

    fn send(
        &self,
        send: impl FnOnce() -> Result<(u32, Option<String>)>,
        wait: impl FnOnce() -> Vec<Arrival>,
    ) -> Result<Burst> {
        send_along(&self.path(), "pod A", "pod B", send, wait)
    }

    /// Both hooks' counters and the events they recorded since the last drain.
    fn hooks_json(&mut self) -> Result<(Value, Value)> {
        let one = |hook: &mut Hook| -> Result<Value> {
            let counters = hook.counters()?;
            let events: Vec<Value> = hook.drain_events().iter().map(meta_json).collect();
            Ok(json!({ "at": hook.label, "counters": counters.to_json(), "events": events }))
        };
        Ok((one(&mut self.hook)?, one(&mut self.observer)?))
    }
}

fn udp_sender(node: &Node) -> Result<UdpSocket> {
    let a = &node.pods[0];
    traffic::bind(&a.ns, a.addr(node.family)?, PROBE_PORT)
}

pub const CHECKS: &[Registered] = &[
    Registered {
        id: "datapath.redirect-peer",
        run,
    },
    Registered {
        id: "datapath.redirect-peer.scrub",
        run: run_scrub,
    },
];

fn run(check: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let (mode, family) = attach_and_family(check, variant, ctx)?;
    let mut p = PodToPod::setup(check, mode, family, ctx)?;
    let b = &p.node.pods[1];
    let (b_ip, b_mac, lxc_b) = (b.addr(family)?, b.eth0.mac, b.lxc.clone());
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

    let before = p.bypass()?;
    let burst = p.send(
        || Ok(traffic::send_burst(&sender, b_ip, POSITIVE_SEQS)),
        || traffic::collect_expected(&p.rx_sock, POSITIVE_SEQS),
    )?;
    let bypass = p.bypass()?.delta(before);
    let (hook, observer) = p.hooks_json()?;
    let ev = evidence([
        ("sent", json!(burst.sent)),
        ("send_error", json!(burst.send_error)),
        (
            "destination",
            json!(format!("{} in ns pod-b", SocketAddr::new(b_ip, PROBE_PORT))),
        ),
        ("family", json!(family.name())),
        ("attach", json!(mode.name())),
        ("delivered", seqs_json(&burst.arrivals)),
        (
            "redirect",
            json!({ "helper": "bpf_redirect_peer", "target": lxc_b.name, "ifindex": lxc_b.index }),
        ),
        ("hops", burst.hops.to_json()),
        ("host_ip_forw_datagrams_delta", json!(bypass.forwarded)),
        ("target_veth_tx_packets_delta", json!(bypass.lxc_b_tx)),
        ("hook", hook),
        ("observer", observer),
    ]);
    let leg = Leg::judged(
        judge_peer(&burst.hops, bypass, &lxc_b.name),
        || {
            format!(
                "{BURST}/{BURST} datagrams redirected into pod B's namespace; host forwarded 0, {} transmitted 0",
                lxc_b.name
            )
        },
        ev,
    );

    // Control: the peer flag cleared. A plain redirect to lxc…b's egress delivers
    // too, but through that veth: the check's "tx +0" witness must see it.
    p.hook.configure(HookConfig {
        action: action::REDIRECT,
        redirect_flags: 0,
        ..redirect
    })?;
    let redirected_before = p.hook.counters()?.redirected;
    let before = p.bypass()?;
    let control = p.send(
        || Ok(traffic::send_burst(&sender, b_ip, CONTROL_SEQS)),
        || traffic::collect_expected(&p.rx_sock, CONTROL_SEQS),
    )?;
    let bypass = p.bypass()?.delta(before);
    let redirected = p.hook.counters()?.redirected - redirected_before;
    let delivered = control.arrivals.len() as u32;
    let account = if bypass.none() {
        format!(
            "plain bpf_redirect: delivered {delivered}/{BURST} and {} transmitted 0, host forwarded 0",
            lxc_b.name
        )
    } else {
        format!(
            "plain bpf_redirect: delivered {delivered}/{BURST} but {} transmitted {} (host forwarded {}): the check's tx +0 witness fails on a plain redirect",
            lxc_b.name, bypass.lxc_b_tx, bypass.forwarded
        )
    };
    let (hook, observer) = p.hooks_json()?;
    let control = ControlLeg {
        description: format!(
            "the same traffic with the peer flag cleared: bpf_redirect to {}'s egress",
            lxc_b.name
        ),
        witnessed: redirected >= u64::from(BURST) && delivered == BURST,
        test_held: judge_peer(&control.hops, bypass, &lxc_b.name).is_none(),
        account,
        evidence: evidence([
            ("delivered", seqs_json(&control.arrivals)),
            ("hops", control.hops.to_json()),
            ("host_ip_forw_datagrams_delta", json!(bypass.forwarded)),
            ("target_veth_tx_packets_delta", json!(bypass.lxc_b_tx)),
            ("hook", hook),
            ("observer", observer),
        ]),
    };
    Ok(observe(check, variant, started, leg, control))
}

/// The redirect-peer check's test: `None` when every hop counted the burst and
/// nothing went through the host (forwarding, or out of lxc…b).
fn judge_peer(
    hops: &Accounting,
    bypass: Bypass,
    lxc_b: &str,
) -> Option<(&'static Failure, String)> {
    if let Some(loss) = hops.loss().zip(hops.failure()) {
        return Some((loss.1, loss.0));
    }
    (!bypass.none()).then(|| {
        (
            &NOT_BYPASSED,
            format!(
                "delivered {BURST}/{BURST}, but the host forwarded {} and {lxc_b} transmitted {}: not a peer redirect",
                bypass.forwarded, bypass.lxc_b_tx
            ),
        )
    })
}

/// A locally administered MAC that no device here has: frames to it are OTHERHOST.
const FOREIGN_MAC: Mac = [0x02, 0xcc, 0x00, 0x00, 0x00, 0x01];
/// Mark the source hook sets before redirecting; the scrub keeps it by design.
const SCRUB_MARK: u32 = 0x5c4b_0001;
/// Timestamp the source hook sets; kept by design as well.
const SCRUB_TSTAMP: u64 = 0x0123_4567_89ab_cdef;
const PACKET_HOST: u32 = 0;
const PACKET_OTHERHOST: u32 = 3;

/// What pod B's observer saw of a burst of foreign-MAC frames.
struct PodBView {
    /// Frames of any type but HOST at pod B's eth0 ingress.
    not_host: usize,
    /// Of those, frames still OTHERHOST: what an unfixed kernel leaves.
    otherhost: usize,
    /// Frames whose mark or tstamp was not what the source hook set.
    metadata_lost: usize,
}

impl PodBView {
    fn of(events: &[SkbMeta]) -> Self {
        Self {
            not_host: events.iter().filter(|m| m.pkt_type != PACKET_HOST).count(),
            otherhost: events
                .iter()
                .filter(|m| m.pkt_type == PACKET_OTHERHOST)
                .count(),
            metadata_lost: events
                .iter()
                .filter(|m| m.mark != SCRUB_MARK || m.tstamp != SCRUB_TSTAMP)
                .count(),
        }
    }
}

/// The scrub check's test: `None` when it passed, else the failure and its reason.
/// The CVE-2025-37959 signature (`not-scrubbed`) is OTHERHOST at the source hook and
/// still OTHERHOST at pod B's ingress, undelivered; a source frame that was not
/// OTHERHOST means the check's premise failed, which is a probe error.
fn judge_scrub(
    hops: &Accounting,
    src: &[SkbMeta],
    dst: &[SkbMeta],
    delivered: usize,
) -> Result<Option<(&'static Failure, String)>> {
    if let Some(m) = src.iter().find(|m| m.pkt_type != PACKET_OTHERHOST) {
        bail!(
            "the check's premise failed: the source hook saw pkt_type {} (want 3, OTHERHOST) for a frame to {}, so nothing here can show a scrub",
            m.pkt_type,
            mac_text(&FOREIGN_MAC)
        );
    }
    let view = PodBView::of(dst);
    if hops.failure() == Some(&HOOK_NOT_RUN) {
        return Ok(hops.loss().map(|r| (&HOOK_NOT_RUN, r)));
    }
    // The unfixed signature, and only it: the whole burst at pod B, every frame
    // still OTHERHOST, none delivered. Anything else wrong with pkt_type is another
    // failure, so it can never pass as the expected CVE-2025-37959 failure.
    let burst = BURST as usize;
    if view.otherhost == burst && dst.len() == burst && delivered == 0 {
        return Ok(Some((
            &NOT_SCRUBBED,
            format!(
                "OTHERHOST at the source hook and still OTHERHOST at pod B's eth0 ingress for {}/{} frames, {delivered}/{BURST} delivered: bpf_redirect_peer did not scrub pkt_type ({})",
                view.otherhost,
                dst.len(),
                hops.summary()
            ),
        )));
    }
    if view.not_host > 0 {
        return Ok(Some((
            &PARTLY_SCRUBBED,
            format!(
                "{} of {} frames at pod B's eth0 ingress were not HOST ({} of them OTHERHOST), {delivered}/{BURST} delivered: not the unfixed signature (all {BURST} OTHERHOST, none delivered) ({})",
                view.not_host,
                dst.len(),
                view.otherhost,
                hops.summary()
            ),
        )));
    }
    if view.metadata_lost > 0 {
        return Ok(Some((
            &METADATA_LOST,
            format!(
                "{}/{} frames reached pod B without the mark {SCRUB_MARK:#x} or tstamp {SCRUB_TSTAMP:#x} the source hook set; the scrub keeps both ({})",
                view.metadata_lost,
                dst.len(),
                hops.summary()
            ),
        )));
    }
    Ok(hops.loss().zip(hops.failure()).map(|(r, f)| (f, r)))
}

fn run_scrub(check: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let mode = ctx.default_mode();
    let mut p = PodToPod::setup(check, mode, Family::V4, ctx)?;
    let [a, b] = &p.node.pods;
    let spec = FrameSpec {
        src_mac: a.eth0.mac,
        dst_mac: FOREIGN_MAC,
        src_ip: a.ip,
        dst_ip: b.ip,
    };
    let (a_ip, b_ip, lxc_b) = (a.ip, b.ip, b.lxc.clone());
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

    let burst = p.send(
        || Ok(send_frames(&mut sender, &spec, POSITIVE_SEQS)),
        || traffic::collect_expected(&p.rx_sock, POSITIVE_SEQS),
    )?;
    let counters = p.hook.counters()?;
    let src: Vec<SkbMeta> = p.hook.drain_events();
    let dst: Vec<SkbMeta> = p.observer.drain_events();
    let ev = evidence([
        ("sent", json!(burst.sent)),
        (
            "frame",
            json!({ "dst_mac": mac_text(&FOREIGN_MAC), "src": a_ip.to_string(), "dst": format!("{b_ip}:{PROBE_PORT}") }),
        ),
        ("delivered", seqs_json(&burst.arrivals)),
        ("hops", burst.hops.to_json()),
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
    ]);
    let leg = Leg::judged(
        judge_scrub(&burst.hops, &src, &dst, burst.arrivals.len())?,
        || {
            format!(
                "{BURST}/{BURST} foreign-MAC frames delivered; pkt_type OTHERHOST at the source, HOST in pod B; mark and tstamp kept"
            )
        },
        ev,
    );

    // Control: the same frames through a path that does not scrub: a plain redirect
    // to lxc…b's egress, so they enter pod B through veth_xmit/eth_type_trans as
    // OTHERHOST. That is what an unfixed kernel shows on the peer path; the check's
    // witness at pod B's ingress must see it, and the frames must not be delivered.
    p.hook.configure(HookConfig {
        action: action::REDIRECT,
        redirect_flags: 0,
        ..redirect
    })?;
    let seen_before = p.observer.counters()?.matched;
    let control = {
        let observer = &p.observer;
        p.send(
            || Ok(send_frames(&mut sender, &spec, CONTROL_SEQS)),
            || {
                traffic::collect_leaks(&p.rx_sock, CONTROL_SEQS, || {
                    observer
                        .counters()
                        .map(|c| c.matched >= seen_before + u64::from(BURST))
                        .unwrap_or(false)
                })
                .0
            },
        )?
    };
    let seen = p.observer.counters()?.matched - seen_before;
    let src: Vec<SkbMeta> = p.hook.drain_events();
    let dst: Vec<SkbMeta> = p.observer.drain_events();
    let view = PodBView::of(&dst);
    let test_held = judge_scrub(&control.hops, &src, &dst, control.arrivals.len())?.is_none();
    let account = format!(
        "the same frames through {}'s egress (bpf_redirect) reached pod B's eth0 {}/{BURST}, {} of them not HOST, and {}/{BURST} were delivered{}",
        lxc_b.name,
        dst.len(),
        view.not_host,
        control.arrivals.len(),
        if view.not_host > 0 {
            ": what an unfixed kernel shows on the peer path, seen by the check's pkt_type witness"
        } else {
            ""
        }
    );
    let control = ControlLeg {
        description: format!(
            "the same frames by a path that does not scrub: bpf_redirect to {}'s egress instead of bpf_redirect_peer",
            lxc_b.name
        ),
        // Seen by the observer, and decided by what the check decides on: pkt_type
        // not HOST (the check's test fails, as it must) or HOST and delivered (blind).
        // HOST yet undelivered would fail the test for another reason: no proof.
        witnessed: seen >= u64::from(BURST) && (view.not_host > 0 || test_held),
        test_held,
        account,
        evidence: evidence([
            ("delivered", seqs_json(&control.arrivals)),
            ("hops", control.hops.to_json()),
            (
                "source",
                json!({ "at": p.hook.label, "events": src.iter().map(meta_json).collect::<Vec<_>>() }),
            ),
            (
                "destination",
                json!({ "at": p.observer.label, "events": dst.iter().map(meta_json).collect::<Vec<_>>() }),
            ),
        ]),
    };
    Ok(observe(check, variant, started, leg, control))
}

/// Sends one frame per sequence number, counting what the kernel accepted: a frame
/// dropped at pod A's eth0 egress fails its send (ENOBUFS) and is a hop short, not
/// a probe error.
fn send_frames(
    sender: &mut FrameSender,
    spec: &FrameSpec,
    seqs: std::ops::Range<u32>,
) -> (u32, Option<String>) {
    let mut sent = 0;
    let mut error = None;
    for seq in seqs {
        match sender.send_burst(spec, seq..seq + 1) {
            Ok(n) => sent += n,
            Err(e) => {
                error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    (sent, error)
}

fn mac_text(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hops::Figure;

    fn meta(pkt_type: u32) -> SkbMeta {
        SkbMeta {
            pkt_type,
            mark: SCRUB_MARK,
            tstamp: SCRUB_TSTAMP,
            ..Default::default()
        }
    }

    /// sent, hook matched, redirected, observer, socket.
    fn hops(matched: u64, observer: u64, socket: u64) -> Accounting {
        let mut a = Accounting::new(BURST);
        a.push(Figure::path("pod A sent", BURST, None));
        a.push(Figure {
            failure: &HOOK_NOT_RUN,
            ..Figure::path("hook lxcXa ingress matched", matched, None)
        });
        a.push(Figure::path("hook lxcXa ingress redirected", matched, None));
        a.push(Figure::path(
            "observer eth0 ingress matched",
            observer,
            None,
        ));
        a.push(Figure::path("pod B socket", socket, None));
        a
    }

    fn code(r: Result<Option<(&'static Failure, String)>>) -> Option<&'static str> {
        r.unwrap().map(|(f, _)| f.code)
    }

    #[test]
    fn a_fixed_kernel_passes() {
        let (src, dst) = (vec![meta(3); 5], vec![meta(0); 5]);
        assert_eq!(code(judge_scrub(&hops(5, 5, 5), &src, &dst, 5)), None);
    }

    #[test]
    fn the_unfixed_signature_is_not_scrubbed() {
        let (src, dst) = (vec![meta(3); 5], vec![meta(3); 5]);
        let (failure, reason) = judge_scrub(&hops(5, 5, 0), &src, &dst, 0).unwrap().unwrap();
        assert_eq!(failure.code, "not-scrubbed");
        assert!(reason.contains("5/5 frames, 0/5 delivered"), "{reason}");
        assert!(
            reason.contains("lost between observer eth0 ingress matched and pod B socket"),
            "{reason}"
        );
    }

    #[test]
    fn only_the_whole_signature_is_not_scrubbed() {
        let src = vec![meta(3); 5];
        // Some frames scrubbed and delivered, some not.
        let mixed = [vec![meta(3); 2], vec![meta(0); 3]].concat();
        assert_eq!(
            code(judge_scrub(&hops(5, 5, 3), &src, &mixed, 3)),
            Some("partly-scrubbed")
        );
        // Every frame OTHERHOST, yet one delivered.
        assert_eq!(
            code(judge_scrub(&hops(5, 5, 1), &src, &[meta(3); 5], 1)),
            Some("partly-scrubbed")
        );
        // One frame lost before pod B, the rest OTHERHOST.
        assert_eq!(
            code(judge_scrub(&hops(5, 4, 0), &src, &[meta(3); 4], 0)),
            Some("partly-scrubbed")
        );
        // Another type than OTHERHOST (BROADCAST) is not the signature either.
        assert_eq!(
            code(judge_scrub(&hops(5, 5, 0), &src, &[meta(1); 5], 0)),
            Some("partly-scrubbed")
        );
    }

    #[test]
    fn other_shortfalls_get_their_own_codes() {
        let src = vec![meta(3); 5];
        assert_eq!(
            code(judge_scrub(&hops(0, 0, 0), &[], &[], 0)),
            Some("hook-not-run")
        );
        assert_eq!(
            code(judge_scrub(&hops(5, 0, 0), &src, &[], 0)),
            Some("not-delivered")
        );
        let lost = vec![SkbMeta { mark: 0, ..meta(0) }; 5];
        assert_eq!(
            code(judge_scrub(&hops(5, 5, 5), &src, &lost, 5)),
            Some("metadata-lost")
        );
    }

    #[test]
    fn a_peer_redirect_through_the_host_is_not_bypassed() {
        let through = Bypass {
            forwarded: 0,
            lxc_b_tx: 5,
        };
        let none = Bypass {
            forwarded: 0,
            lxc_b_tx: 0,
        };
        let (failure, reason) = judge_peer(&hops(5, 5, 5), through, "lxcXb").unwrap();
        assert_eq!(failure.code, "not-bypassed");
        assert!(reason.contains("lxcXb transmitted 5"), "{reason}");
        assert!(judge_peer(&hops(5, 5, 5), none, "lxcXb").is_none());
        // A loss on the path is named before the bypass.
        let (failure, _) = judge_peer(&hops(0, 0, 0), through, "lxcXb").unwrap();
        assert_eq!(failure.code, "hook-not-run");
    }

    #[test]
    fn a_source_frame_that_is_not_otherhost_is_a_probe_error() {
        let err = judge_scrub(&hops(5, 5, 5), &[meta(0)], &[meta(0)], 5).unwrap_err();
        assert!(err.to_string().contains("premise failed"), "{err}");
    }
}
