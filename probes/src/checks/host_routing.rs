//! `datapath.redirect-neigh`, `datapath.fib-lookup` and `datapath.redirect-egress`:
//! the primitives Cilium's eBPF host routing forwards with when it is not handing a
//! packet to a peer namespace: the kernel's neighbour subsystem filling in L2
//! (`bpf_redirect_neigh`), the kernel's FIB answering "which device, which MACs"
//! (`bpf_fib_lookup`), and a redirect out of another device (`bpf_redirect` to its
//! egress).
//!
//! All three send pod A → pod B through a hook on pod A's host-side veth (lxc A)
//! ingress that moves the packet to lxc B's egress, so it enters pod B by
//! `veth_xmit` and `eth_type_trans`, where pod B's eth0 ingress observer records
//! what L2 header it arrived with. The delivery path is counted hop by hop: pod A
//! eth0 tx, lxc A rx, the hook (matched, redirected), lxc B tx, pod B eth0 rx, the
//! observer, pod B's IP/UDP counters, the socket. Forwarding is off in the host
//! namespace (except on lxc A for the FIB check, see there), and every check
//! asserts the host's `IpForwDatagrams` stayed at +0: the program moved the
//! packets, not the host's stack.
//!
//! `datapath.redirect-neigh[ipv6]` and `datapath.fib-lookup[ipv6]` send the same
//! bursts over IPv6 on a dual-stack node (pod A `fd00:42::11` → pod B
//! `fd00:42::12`, the node IP `fd00:198:18::10`): the neighbour step then reads
//! the IPv6 neighbour (ND) table, the lookup asks with `AF_INET6`, pod B's and the
//! host's `Ip6`/`Udp6` MIBs are on the path and the host's `Ip6 OutForwDatagrams`
//! is the forwarding witness.

use super::{
    Burst, CONTROL_SEQS, ControlLeg, Ctx, Leg, POSITIVE_SEQS, Registered, evidence, observe,
    send_along, seqs_json,
};
use crate::counters::NsCounters;
use crate::hooks::AttachMode;
use crate::hooks::{Direction, Hook, mac_text, meta_json};
use crate::hops::{Accounting, Path};
use crate::netlink::{Mac, NeighbourEntry, RouteEntry};
use crate::topology::{Family, Node, pod_route, pod_route6};
use crate::traffic::{self, Arrival, BURST};
use anyhow::{Result, bail};
use conformance_contract::Observation;
use conformance_contract::catalogue::{
    FIB_MISMATCH, FORWARDED, Failure, HOOK_NOT_RUN, IPV6_VARIANT, NOT_RESOLVED,
};
use conformance_ebpf_common::{BPF_F_INGRESS, HookConfig, PROBE_PORT, SkbMeta, action, fib_rc};
use netlink_packet_route::route::RouteType;
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Instant;

pub const CHECKS: &[Registered] = &[
    Registered {
        id: "datapath.redirect-neigh",
        run: run_neigh,
    },
    Registered {
        id: "datapath.fib-lookup",
        run: run_fib,
    },
    Registered {
        id: "datapath.redirect-egress",
        run: run_egress,
    },
];

const PACKET_HOST: u32 = 0;

/// A judgement: `None` passes, else the named failure and why.
type Judgement = Option<(&'static Failure, String)>;

/// Pod A → pod B through a hook on lxc A's ingress and an observer on pod B's eth0.
struct Forward {
    node: Node,
    /// The IP family of the check's traffic ([`Family::V6`]: a dual-stack node).
    family: Family,
    mode: AttachMode,
    rx_sock: UdpSocket,
    sender: UdpSocket,
    hook: Hook,
    observer: Hook,
    _fault: Option<Hook>,
}

impl Forward {
    fn setup(check: &str, ctx: &Ctx, family: Family) -> Result<Self> {
        let mode = ctx.default_mode();
        let mut node = Node::build_for(ctx.run_id, family)?;
        let fault = ctx.apply_fault(check, &mut node, false)?;
        let [a, b] = &node.pods;
        let rx_sock = traffic::bind(&b.ns, b.addr(family)?, PROBE_PORT)?;
        let sender = traffic::bind(&a.ns, a.addr(family)?, PROBE_PORT)?;
        let hook = Hook::attach(
            &node.host,
            &a.lxc.name,
            Direction::Ingress,
            mode,
            HookConfig::default(),
        )?;
        let observer = Hook::attach(&b.ns, "eth0", Direction::Ingress, mode, observe_only())?;
        Ok(Self {
            node,
            family,
            mode,
            rx_sock,
            sender,
            hook,
            observer,
            _fault: fault,
        })
    }

    /// pod A eth0 tx → lxc A rx → hook matched → redirected → lxc B tx → pod B eth0 rx
    /// → observer → pod B's IP/UDP path. A redirect to lxc B's egress must pass
    /// through lxc B's transmit and its peer's receive; a redirect that does not
    /// (to its ingress, or a peer redirect) goes missing at lxc B tx.
    fn path(&self) -> Path<'_> {
        let [a, b] = &self.node.pods;
        Path::new()
            .tx(&a.ns, "eth0", "pod A eth0")
            .rx(&self.node.host, &a.lxc.name, &a.lxc.name)
            .hook(&self.hook)
            .redirected(&self.hook)
            .tx(&self.node.host, &b.lxc.name, &b.lxc.name)
            .rx(&b.ns, "eth0", "pod B eth0")
            .observer(&self.observer)
            .stack_of(&b.ns, "pod B", self.family)
    }

    /// The host's forwarding counter of the check's family: `IpForwDatagrams`,
    /// or `Ip6 OutForwDatagrams`.
    fn forwarded(&self) -> Result<u64> {
        let host = NsCounters::read(&self.node.host)?;
        match self.family {
            Family::V4 => host.mib("Ip", "ForwDatagrams"),
            Family::V6 => host.mib("Ip6", "OutForwDatagrams"),
        }
    }

    /// Pod B's address in the check's family.
    fn pod_b(&self) -> Result<IpAddr> {
        self.node.pods[1].addr(self.family)
    }

    /// Sends a burst to pod B and waits with `wait`; returns it with the host's
    /// forwarding delta over it ([`Forward::forwarded`]).
    fn send(
        &self,
        seqs: std::ops::Range<u32>,
        wait: impl FnOnce() -> Vec<Arrival>,
    ) -> Result<(Burst, u64)> {
        let b_ip = self.pod_b()?;
        let before = self.forwarded()?;
        let burst = send_along(
            &self.path(),
            "pod A",
            "pod B",
            || Ok(traffic::send_burst(&self.sender, b_ip, seqs)),
            wait,
        )?;
        Ok((burst, self.forwarded()? - before))
    }

    /// Sends a control burst that must not be delivered: waits until `hook` has
    /// matched it all (the witness that it reached the broken step), then a grace.
    fn send_control(&self, witness: &Hook) -> Result<(Burst, u64)> {
        let before = witness.counters()?.matched;
        self.send(CONTROL_SEQS, || {
            traffic::collect_leaks(&self.rx_sock, CONTROL_SEQS, || {
                witness
                    .counters()
                    .map(|c| c.matched >= before + u64::from(BURST))
                    .unwrap_or(false)
            })
            .0
        })
    }

    fn positive(&self) -> Result<(Burst, u64)> {
        self.send(POSITIVE_SEQS, || {
            traffic::collect_expected(&self.rx_sock, POSITIVE_SEQS)
        })
    }
}

fn observe_only() -> HookConfig {
    HookConfig {
        dport: PROBE_PORT,
        action: action::PASS,
        ..Default::default()
    }
}

/// A hook's place, counters and the events it recorded (already drained).
fn hook_json(hook: &Hook, events: &[SkbMeta]) -> Result<Value> {
    Ok(json!({
        "at": hook.label,
        "counters": hook.counters()?.to_json(),
        "events": events.iter().map(meta_json).collect::<Vec<_>>(),
    }))
}

/// The delivery part every check here shares: every hop counted the burst, and the
/// host's stack forwarded none of it.
fn judge_delivery(hops: &Accounting, forwarded: u64) -> Judgement {
    if let Some((reason, failure)) = hops.loss().zip(hops.failure()) {
        return Some((failure, reason));
    }
    judge_forwarded(forwarded)
}

/// The host's stack forwarded none of a delivered burst.
fn judge_forwarded(forwarded: u64) -> Judgement {
    (forwarded > 0).then(|| {
        (
            &FORWARDED,
            format!(
                "delivered {BURST}/{BURST}, but the host namespace forwarded {forwarded} datagrams (IpForwDatagrams; over IPv6 Ip6 OutForwDatagrams): its stack moved them, not the redirect"
            ),
        )
    })
}

// ---------------------------------------------------------------------------
// datapath.redirect-neigh

/// The L2 header the neighbour subsystem must give the frames: destination pod B
/// eth0's MAC (the neighbour entry), source lxc B's (the output device).
#[derive(Debug, Clone, Copy)]
struct WantL2 {
    dst: Mac,
    src: Mac,
}

/// What pod B's observer saw of a burst's L2 headers.
#[derive(Debug, Default)]
struct L2View {
    seen: usize,
    /// Frames with the neighbour's header and pkt_type HOST.
    resolved: usize,
    /// The first frame that did not, for the reason.
    first_wrong: Option<SkbMeta>,
}

impl L2View {
    fn of(events: &[SkbMeta], want: WantL2) -> Self {
        let ok = |m: &SkbMeta| {
            m.eth_dst == want.dst && m.eth_src == want.src && m.pkt_type == PACKET_HOST
        };
        Self {
            seen: events.len(),
            resolved: events.iter().filter(|m| ok(m)).count(),
            first_wrong: events.iter().find(|m| !ok(m)).copied(),
        }
    }
}

/// The redirect-neigh test. `neighbour_after`: for `resolve`, the entry the kernel
/// must have resolved for pod B (`None` for `known`, whose entry is permanent).
fn judge_neigh(
    hops: &Accounting,
    forwarded: u64,
    dst: &[SkbMeta],
    want: WantL2,
    resolved_entry: Option<Option<&NeighbourEntry>>,
) -> Judgement {
    if hops.failure() == Some(&HOOK_NOT_RUN) {
        return hops.loss().map(|r| (&HOOK_NOT_RUN, r));
    }
    let view = L2View::of(dst, want);
    // The L2 witness comes before the delivery it explains: a frame addressed to
    // someone else is dropped by pod B's IP layer as OTHERHOST.
    if let Some(m) = view.first_wrong {
        return Some((
            &NOT_RESOLVED,
            format!(
                "{} of {} frames at pod B's eth0 lacked the neighbour's L2 header (want dst {} src {} pkt_type HOST; e.g. dst {} src {} pkt_type {}): the kernel did not fill L2 from its neighbour table ({})",
                view.seen - view.resolved,
                view.seen,
                mac_text(&want.dst),
                mac_text(&want.src),
                mac_text(&m.eth_dst),
                mac_text(&m.eth_src),
                m.pkt_type,
                hops.summary()
            ),
        ));
    }
    if let Some(j) = judge_delivery(hops, forwarded) {
        return Some(j);
    }
    if view.resolved < BURST as usize {
        return Some((
            &NOT_RESOLVED,
            format!(
                "delivered, but pod B's observer recorded the neighbour's L2 header on only {}/{BURST} frames",
                view.resolved
            ),
        ));
    }
    match resolved_entry {
        Some(None) => Some((
            &NOT_RESOLVED,
            "delivered with the right L2 header, but no valid neighbour entry for pod B appeared on the target device: not resolved through the neighbour table".to_string(),
        )),
        Some(Some(n)) if !n.valid() || n.mac != Some(want.dst) => Some((
            &NOT_RESOLVED,
            format!(
                "the neighbour entry for pod B is {:?} with lladdr {}, not a valid entry for pod B's eth0 MAC {}",
                n.state,
                n.mac.map(|m| mac_text(&m)).unwrap_or_default(),
                mac_text(&want.dst)
            ),
        )),
        _ => None,
    }
}

fn neighbour_json(n: Option<&NeighbourEntry>) -> Value {
    match n {
        None => Value::Null,
        Some(n) => json!({
            "ip": n.addr.to_string(),
            "ifindex": n.ifindex,
            "state": format!("{:?}", n.state),
            "lladdr": n.mac.map(|m| mac_text(&m)),
        }),
    }
}

fn find_neighbour(entries: &[NeighbourEntry], ifindex: u32, ip: IpAddr) -> Option<NeighbourEntry> {
    entries
        .iter()
        .find(|n| n.ifindex == ifindex && n.addr == ip)
        .cloned()
}

fn run_neigh(check: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    // `ipv6`: the known (permanent) neighbour over IPv6, an ND table entry.
    let (resolve, family) = match variant {
        "known" => (false, Family::V4),
        "resolve" => (true, Family::V4),
        IPV6_VARIANT => (false, Family::V6),
        _ => bail!("unknown variant `{variant}` for {check}"),
    };
    let mut p = Forward::setup(check, ctx, family)?;
    let b_ip = p.pod_b()?;
    let (a, b) = (&p.node.pods[0], &p.node.pods[1]);
    let (lxc_a, lxc_b) = (a.lxc.clone(), b.lxc.clone());
    let want = WantL2 {
        dst: b.eth0.mac,
        src: lxc_b.mac,
    };
    // No MAC rewrite: the frames leave pod A addressed to its gateway (lxc A's
    // MAC); only the neighbour step can give them pod B's.
    let redirect = HookConfig {
        dport: PROBE_PORT,
        action: action::REDIRECT_NEIGH,
        target_ifindex: lxc_b.index,
        ..Default::default()
    };
    p.hook.configure(redirect)?;
    // `known`: the host's permanent entry for pod B (the topology adds it, as Cilium
    // does); `resolve`: none, the kernel must ARP for it.
    if resolve {
        p.node.host_rtnl.delete_neighbour(lxc_b.index, b_ip)?;
    }
    let neigh_before = find_neighbour(&p.node.host_rtnl.neighbours()?, lxc_b.index, b_ip);
    if resolve && neigh_before.is_some() {
        bail!(
            "the neighbour entry for pod B on {} is still there after deleting it: the resolve variant cannot run",
            lxc_b.name
        );
    }

    let (burst, forwarded) = p.positive()?;
    let neigh_after = find_neighbour(&p.node.host_rtnl.neighbours()?, lxc_b.index, b_ip);
    let src = p.hook.drain_events();
    let dst = p.observer.drain_events();
    // The premise: the frames came in addressed to someone other than pod B, so a
    // right header at pod B can only be the neighbour step's doing.
    if let Some(m) = src.iter().find(|m| m.eth_dst == want.dst) {
        bail!(
            "the check's premise failed: lxc A's hook saw a frame already addressed to pod B's eth0 ({}), so nothing here can show the kernel filled in L2",
            mac_text(&m.eth_dst)
        );
    }
    let ev = evidence([
        ("sent", json!(burst.sent)),
        ("send_error", json!(burst.send_error)),
        (
            "destination",
            json!(format!("{} in ns pod-b", SocketAddr::new(b_ip, PROBE_PORT))),
        ),
        ("family", json!(family.name())),
        ("attach", json!(p.mode.name())),
        ("delivered", seqs_json(&burst.arrivals)),
        (
            "redirect",
            json!({ "helper": "bpf_redirect_neigh", "target": lxc_b.name, "ifindex": lxc_b.index, "params": "NULL (the kernel's route and neighbour lookup)" }),
        ),
        (
            "want_l2",
            json!({ "dst": mac_text(&want.dst), "src": mac_text(&want.src), "arrived_with_dst": mac_text(&lxc_a.mac) }),
        ),
        ("neighbour_before", neighbour_json(neigh_before.as_ref())),
        ("neighbour_after", neighbour_json(neigh_after.as_ref())),
        ("hops", burst.hops.to_json()),
        ("host_ip_forw_datagrams_delta", json!(forwarded)),
        ("hook", hook_json(&p.hook, &src)?),
        ("observer", hook_json(&p.observer, &dst)?),
    ]);
    let entry = resolve.then_some(neigh_after.as_ref());
    let leg = Leg::judged(
        judge_neigh(&burst.hops, forwarded, &dst, want, entry),
        || {
            format!(
                "{BURST}/{BURST} datagrams redirected with bpf_redirect_neigh out of {} and delivered to pod B with dst {} src {} (HOST){}; host forwarded 0",
                lxc_b.name,
                mac_text(&want.dst),
                mac_text(&want.src),
                if resolve {
                    ", after the kernel resolved pod B's neighbour entry"
                } else {
                    ""
                }
            )
        },
        ev,
    );

    // Control: the neighbour step removed, and only it. A plain bpf_redirect to the
    // same device's egress, with no MAC rewrite, so the frames keep the L2 header
    // pod A gave them (the gateway's MAC). In `resolve` the entry is deleted again
    // (if the check's leg resolved one), so the control starts from the same
    // neighbour table as the check did.
    if resolve && neigh_after.is_some() {
        p.node.host_rtnl.delete_neighbour(lxc_b.index, b_ip)?;
    }
    p.hook.configure(HookConfig {
        action: action::REDIRECT,
        redirect_flags: 0,
        ..redirect
    })?;
    let seen_before = p.observer.counters()?.matched;
    let (control, forwarded) = p.send_control(&p.observer)?;
    let seen = p.observer.counters()?.matched - seen_before;
    let neigh_control = find_neighbour(&p.node.host_rtnl.neighbours()?, lxc_b.index, b_ip);
    let src = p.hook.drain_events();
    let dst = p.observer.drain_events();
    let view = L2View::of(&dst, want);
    let entry = resolve.then_some(neigh_control.as_ref());
    let test_held = judge_neigh(&control.hops, forwarded, &dst, want, entry).is_none();
    let account = format!(
        "plain bpf_redirect to {}'s egress: {}/{BURST} frames reached pod B's eth0, {} with the neighbour's L2 header{}, {}/{BURST} delivered{}",
        lxc_b.name,
        dst.len(),
        view.resolved,
        view.first_wrong
            .map(|m| format!(
                " (they kept dst {}, pkt_type {})",
                mac_text(&m.eth_dst),
                m.pkt_type
            ))
            .unwrap_or_default(),
        control.arrivals.len(),
        if view.resolved < view.seen {
            ": the check's \"L2 from the neighbour table\" witness fails without the neighbour step"
        } else {
            ""
        }
    );
    let control = ControlLeg {
        description: format!(
            "the same frames by a plain bpf_redirect to {}'s egress: no neighbour step, no MAC rewrite",
            lxc_b.name
        ),
        // Seen at pod B's eth0, where the check judges L2, and decided there: the
        // header wrong (the test fails, as it must) or right and delivered (blind).
        witnessed: seen >= u64::from(BURST) && (view.resolved < view.seen || test_held),
        test_held,
        account,
        evidence: evidence([
            ("delivered", seqs_json(&control.arrivals)),
            ("hops", control.hops.to_json()),
            ("host_ip_forw_datagrams_delta", json!(forwarded)),
            ("neighbour_after", neighbour_json(neigh_control.as_ref())),
            ("hook", hook_json(&p.hook, &src)?),
            ("observer", hook_json(&p.observer, &dst)?),
        ]),
    };
    Ok(observe(check, variant, started, leg, control))
}

// ---------------------------------------------------------------------------
// datapath.fib-lookup

/// What `bpf_fib_lookup` answers, or must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Answer {
    rc: i32,
    /// The output device (`SUCCESS`, `NO_NEIGH`); `None` where the kernel leaves
    /// the input device in place.
    ifindex: Option<u32>,
    /// `SUCCESS` only: the output device's MAC and the next hop's neighbour MAC.
    macs: Option<(Mac, Mac)>,
}

impl Answer {
    fn of(m: &SkbMeta) -> Self {
        match m.fib_rc {
            fib_rc::SUCCESS => Answer {
                rc: m.fib_rc,
                ifindex: Some(m.fib_ifindex),
                macs: Some((m.fib_smac, m.fib_dmac)),
            },
            fib_rc::NO_NEIGH => Answer {
                rc: m.fib_rc,
                ifindex: Some(m.fib_ifindex),
                macs: None,
            },
            rc => Answer {
                rc,
                ifindex: None,
                macs: None,
            },
        }
    }

    fn text(&self) -> String {
        let mut t = fib_rc::name(self.rc).to_string();
        if self.rc < 0 {
            t.push_str(&format!(" {}", self.rc));
        }
        if let Some(i) = self.ifindex {
            t.push_str(&format!(" via ifindex {i}"));
        }
        if let Some((s, d)) = self.macs {
            t.push_str(&format!(" smac {} dmac {}", mac_text(&s), mac_text(&d)));
        }
        t
    }
}

const RT_TABLE_LOCAL: u32 = 255;
const RT_TABLE_MAIN: u32 = 254;
const RT_TABLE_DEFAULT: u32 = 253;

/// Whether the route `net`/`prefix` covers `addr`: the same family, and the first
/// `prefix` bits equal.
fn covers(net: IpAddr, prefix: u8, addr: IpAddr) -> bool {
    let (net, addr, bits) = match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => (u128::from(u32::from(n)), u128::from(u32::from(a)), 32),
        (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
        _ => return false,
    };
    let prefix = u32::from(prefix).min(bits);
    if prefix == 0 {
        return true;
    }
    let shift = bits - prefix;
    net >> shift == addr >> shift
}

/// What the namespace's routes and neighbours say `bpf_fib_lookup` must answer for
/// `dst` arriving on a device with forwarding `forwarding` in `dst`'s family, the
/// way the kernel decides it (net/core/filter.c `bpf_ipv4_fib_lookup` and
/// `bpf_ipv6_fib_lookup`, default rules: tables local, main, default (IPv6 has no
/// rule for default, which is empty here anyway); longest prefix first, routes of
/// `dst`'s family only): no forwarding on the input device
/// → `FWD_DISABLED`; no route → `NOT_FWDED`; blackhole, unreachable, prohibit →
/// their codes; any other non-unicast route (local) → `NOT_FWDED`; unicast → the
/// route's device, and `SUCCESS` with its MAC and the next hop's neighbour MAC when
/// that entry is valid, else `NO_NEIGH`. Returns the answer and the route it
/// came from, for evidence.
fn expected_answer(
    routes: &[RouteEntry],
    neighbours: &[NeighbourEntry],
    device_mac: impl Fn(u32) -> Option<Mac>,
    forwarding: bool,
    dst: IpAddr,
) -> (Answer, Option<RouteEntry>) {
    let only = |rc| Answer {
        rc,
        ifindex: None,
        macs: None,
    };
    if !forwarding {
        return (only(fib_rc::FWD_DISABLED), None);
    }
    let contains = |r: &RouteEntry| covers(r.dst, r.prefix, dst);
    let route = [RT_TABLE_LOCAL, RT_TABLE_MAIN, RT_TABLE_DEFAULT]
        .iter()
        .find_map(|t| {
            routes
                .iter()
                .filter(|r| r.table == *t && contains(r))
                .max_by_key(|r| r.prefix)
        })
        .cloned();
    let Some(r) = route else {
        return (only(fib_rc::NOT_FWDED), None);
    };
    let answer = match r.kind {
        RouteType::BlackHole => only(fib_rc::BLACKHOLE),
        RouteType::Unreachable => only(fib_rc::UNREACHABLE),
        RouteType::Prohibit => only(fib_rc::PROHIBIT),
        RouteType::Unicast => {
            let oif = r.oif.unwrap_or(0);
            let next_hop = r.gateway.unwrap_or(dst);
            let neigh = neighbours
                .iter()
                .find(|n| n.ifindex == oif && n.addr == next_hop && n.valid());
            match (neigh.and_then(|n| n.mac), device_mac(oif)) {
                (Some(dmac), Some(smac)) => Answer {
                    rc: fib_rc::SUCCESS,
                    ifindex: Some(oif),
                    macs: Some((smac, dmac)),
                },
                _ => Answer {
                    rc: fib_rc::NO_NEIGH,
                    ifindex: Some(oif),
                    macs: None,
                },
            }
        }
        _ => only(fib_rc::NOT_FWDED),
    };
    (answer, Some(r))
}

/// One destination of the FIB check: what the routes say, what the program got.
struct Lookup {
    who: &'static str,
    dst: IpAddr,
    expected: Answer,
}

/// The destination address of a recorded packet, in its IP version.
fn event_dst(m: &SkbMeta) -> IpAddr {
    if m.ip_version == 6 {
        IpAddr::V6(Ipv6Addr::from(m.daddr6))
    } else {
        IpAddr::V4(Ipv4Addr::from(u32::from_be(m.daddr)))
    }
}

/// The FIB check's test: every packet of each burst got the answer the routes
/// give, and every burst arrived where that answer sends it, with no forwarding.
fn judge_fib(lookups: &[(&Lookup, &Accounting, &[SkbMeta])], forwarded: u64) -> Judgement {
    if let Some((_, hops, _)) = lookups
        .iter()
        .find(|(_, h, _)| h.failure() == Some(&HOOK_NOT_RUN))
    {
        return hops.loss().map(|r| (&HOOK_NOT_RUN, r));
    }
    let answers = |l: &Lookup, events: &[SkbMeta]| -> Vec<Answer> {
        events
            .iter()
            .filter(|m| event_dst(m) == l.dst && m.fib_called != 0)
            .map(Answer::of)
            .collect()
    };
    // A wrong answer first: it explains where its packets then went.
    for (l, hops, events) in lookups {
        let got = answers(l, events);
        if let Some(wrong) = got.iter().find(|a| **a != l.expected) {
            return Some((
                &FIB_MISMATCH,
                format!(
                    "{} ({}): bpf_fib_lookup answered {} for {} of {} packets; the routes and neighbours say {} ({})",
                    l.who,
                    l.dst,
                    wrong.text(),
                    got.iter().filter(|a| *a == wrong).count(),
                    got.len(),
                    l.expected.text(),
                    hops.summary()
                ),
            ));
        }
    }
    // Each burst arrived where its answer sent it.
    if let Some(j) = lookups
        .iter()
        .find_map(|(_, hops, _)| judge_delivery(hops, 0))
    {
        return Some(j);
    }
    for (l, _, events) in lookups {
        let got = answers(l, events).len();
        if got < BURST as usize {
            return Some((
                &FIB_MISMATCH,
                format!(
                    "{} ({}): delivered, but the program recorded a lookup for only {got}/{BURST} packets",
                    l.who, l.dst
                ),
            ));
        }
    }
    judge_forwarded(forwarded)
}

fn route_json(r: Option<&RouteEntry>) -> Value {
    match r {
        None => json!("no route"),
        Some(r) => json!({
            "table": r.table,
            "type": format!("{:?}", r.kind),
            "dst": format!("{}/{}", r.dst, r.prefix),
            "oif": r.oif,
            "gateway": r.gateway.map(|g| g.to_string()),
        }),
    }
}

fn run_fib(check: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let family = match variant {
        "default" => Family::V4,
        IPV6_VARIANT => Family::V6,
        _ => bail!("unknown variant `{variant}` for {check}"),
    };
    let mut p = Forward::setup(check, ctx, family)?;
    let b_ip = p.pod_b()?;
    let node_ip = family.node_ip();
    let (a, b) = (&p.node.pods[0], &p.node.pods[1]);
    let (lxc_a, lxc_b, b_ip4, b_ip6) = (a.lxc.clone(), b.lxc.clone(), b.ip, b.ip6);
    // bpf_fib_lookup answers FWD_DISABLED unless the input device forwards the
    // packet's family (IPv4 `IN_DEV_FORWARD`, IPv6 the device's
    // `cnf.forwarding`, checked first for every flag combination). A Cilium node
    // forwards; this lab's host namespace does not, so the redirect checks can show
    // the stack moved nothing. Turn it on for lxc A alone, in this check's own
    // namespace (no other check sees it); the forwarding counter at +0 is then what
    // shows that the program's redirect, not the stack, moved pod B's packets.
    let forwarding_sysctl = match family {
        Family::V4 => format!("/proc/sys/net/ipv4/conf/{}/forwarding", lxc_a.name),
        Family::V6 => format!("/proc/sys/net/ipv6/conf/{}/forwarding", lxc_a.name),
    };
    p.node.host.write(&forwarding_sysctl, "1")?;
    let forwarding = p.node.host.read_to_string(&forwarding_sysctl)?.trim() == "1";
    if family == Family::V6 {
        // An IPv6 device that forwards joins the all-routers groups and reports
        // them (MLD, out of lxc A into pod A): wait until those are out, so only
        // the check's datagrams move the counters.
        p.node
            .host
            .run(|| crate::topology::await_mld_quiet(traffic::LINK_READY_TIMEOUT))?;
    }
    let host_sock = traffic::bind(&p.node.host, node_ip, PROBE_PORT)?;
    let config = HookConfig {
        dport: PROBE_PORT,
        action: action::FIB_LOOKUP,
        fib_flags: 0,
        ..Default::default()
    };
    p.hook.configure(config)?;

    // The namespace's own view, over netlink, before any traffic.
    let routes = p.node.host_rtnl.routes()?;
    let neighbours = p.node.host_rtnl.neighbours()?;
    let devices = [
        p.node.pods[0].lxc.clone(),
        p.node.pods[1].lxc.clone(),
        p.node.cilium_host.clone(),
        p.node.cilium_net.clone(),
    ];
    let mac_of = |i: u32| devices.iter().find(|d| d.index == i).map(|d| d.mac);
    let (to_b, to_b_route) = expected_answer(&routes, &neighbours, mac_of, forwarding, b_ip);
    let (to_node, to_node_route) =
        expected_answer(&routes, &neighbours, mac_of, forwarding, node_ip);
    // The premise: the routes give pod B a forwarding answer and the node IP a local
    // one; if they do not, the topology is not what the check is about.
    if to_b.rc != fib_rc::SUCCESS || to_b.ifindex != Some(lxc_b.index) {
        bail!(
            "the check's premise failed: the host's routes give pod B {} ({}), not SUCCESS via {}",
            to_b.text(),
            route_json(to_b_route.as_ref()),
            lxc_b.name
        );
    }
    let pod_b = Lookup {
        who: "pod B",
        dst: b_ip,
        expected: to_b,
    };
    let node = Lookup {
        who: "the node IP",
        dst: node_ip,
        expected: to_node,
    };

    let (burst_b, forwarded_b) = p.positive()?;
    // To the node IP: the program hands NOT_FWDED packets to the stack, so they
    // take lxc A's receive path to the host socket.
    let node_path = Path::new()
        .tx(&p.node.pods[0].ns, "eth0", "pod A eth0")
        .rx(&p.node.host, &lxc_a.name, &lxc_a.name)
        .hook(&p.hook)
        .stack_of(&p.node.host, "host", family);
    let before = p.forwarded()?;
    let burst_node = send_along(
        &node_path,
        "pod A",
        "host",
        || Ok(traffic::send_burst(&p.sender, node_ip, POSITIVE_SEQS)),
        || traffic::collect_expected(&host_sock, POSITIVE_SEQS),
    )?;
    let forwarded = forwarded_b + (p.forwarded()? - before);
    let src = p.hook.drain_events();
    let dst = p.observer.drain_events();
    let ev = evidence([
        (
            "lookup",
            json!({ "helper": "bpf_fib_lookup", "family": family.name(), "flags": 0, "input": lxc_a.name, "input_forwarding": forwarding }),
        ),
        ("attach", json!(p.mode.name())),
        (
            "routes_say",
            json!({
                "pod_b": { "dst": b_ip.to_string(), "route": route_json(to_b_route.as_ref()), "answer": to_b.text() },
                "node": { "dst": node_ip.to_string(), "route": route_json(to_node_route.as_ref()), "answer": to_node.text() },
            }),
        ),
        (
            "to_pod_b",
            json!({ "sent": burst_b.sent, "send_error": burst_b.send_error, "delivered": seqs_json(&burst_b.arrivals), "hops": burst_b.hops.to_json() }),
        ),
        (
            "to_node",
            json!({ "sent": burst_node.sent, "send_error": burst_node.send_error, "delivered": seqs_json(&burst_node.arrivals), "hops": burst_node.hops.to_json() }),
        ),
        ("host_ip_forw_datagrams_delta", json!(forwarded)),
        ("hook", hook_json(&p.hook, &src)?),
        ("observer", hook_json(&p.observer, &dst)?),
    ]);
    let judged = judge_fib(
        &[
            (&pod_b, &burst_b.hops, &src),
            (&node, &burst_node.hops, &src),
        ],
        forwarded,
    );
    let leg = Leg::judged(
        judged,
        || {
            format!(
                "bpf_fib_lookup answered as the routes say: pod B {}, the node IP {}; {BURST}/{BURST} redirected by the answer reached pod B, {BURST}/{BURST} handed to the stack reached the host; host forwarded 0",
                to_b.text(),
                to_node.text()
            )
        },
        ev,
    );

    // Control: the route the lookup must find, removed. The same program and traffic
    // to pod B; the kernel must now answer NOT_FWDED, which the check's test, holding
    // the answer to pod B's route, must refuse. The stack then drops the packets.
    let prefix = match (family, b_ip6) {
        (Family::V6, Some(ip6)) => {
            p.node.host_rtnl.delete_route(&pod_route6(ip6, &lxc_b))?;
            128
        }
        _ => {
            p.node.host_rtnl.delete_route(&pod_route(b_ip4, &lxc_b))?;
            32
        }
    };
    let routes_now = p.node.host_rtnl.routes()?;
    let (now, now_route) = expected_answer(&routes_now, &neighbours, mac_of, forwarding, b_ip);
    let matched_before = p.hook.counters()?.matched;
    let (control, forwarded) = p.send_control(&p.hook)?;
    let matched = p.hook.counters()?.matched - matched_before;
    let src = p.hook.drain_events();
    let dst = p.observer.drain_events();
    let answers: Vec<Answer> = src
        .iter()
        .filter(|m| m.fib_called != 0)
        .map(Answer::of)
        .collect();
    let test_held = judge_fib(&[(&pod_b, &control.hops, &src)], forwarded).is_none();
    let got = answers
        .first()
        .map(Answer::text)
        .unwrap_or_else(|| "nothing".into());
    let account = format!(
        "pod B's /{prefix} route removed: bpf_fib_lookup answered {got} for {}/{BURST} packets (the routes now say {}), {}/{BURST} delivered{}",
        answers.len(),
        now.text(),
        control.arrivals.len(),
        if answers.iter().any(|a| *a != to_b) {
            format!(
                ": the check's \"answer matches the routes\" test, wanting {}, fails",
                to_b.text()
            )
        } else {
            String::new()
        }
    );
    let control = ControlLeg {
        description: format!(
            "the same lookups with pod B's /{prefix} route via {} removed",
            lxc_b.name
        ),
        witnessed: matched >= u64::from(BURST) && answers.len() >= BURST as usize,
        test_held,
        account,
        evidence: evidence([
            (
                "routes_now_say",
                json!({ "route": route_json(now_route.as_ref()), "answer": now.text() }),
            ),
            ("delivered", seqs_json(&control.arrivals)),
            ("hops", control.hops.to_json()),
            ("host_ip_forw_datagrams_delta", json!(forwarded)),
            ("hook", hook_json(&p.hook, &src)?),
            ("observer", hook_json(&p.observer, &dst)?),
        ]),
    };
    Ok(observe(check, variant, started, leg, control))
}

// ---------------------------------------------------------------------------
// datapath.redirect-egress

fn run_egress(check: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let mut p = Forward::setup(check, ctx, Family::V4)?;
    let b = &p.node.pods[1];
    let (b_ip, b_mac, lxc_b) = (b.ip, b.eth0.mac, b.lxc.clone());
    // Where the control's frames land instead: lxc B's ingress, in the host namespace.
    let mut landed = Hook::attach(
        &p.node.host,
        &lxc_b.name,
        Direction::Ingress,
        ctx.default_mode(),
        observe_only(),
    )?;
    let redirect = HookConfig {
        dport: PROBE_PORT,
        action: action::REDIRECT,
        target_ifindex: lxc_b.index,
        redirect_flags: 0,
        rewrite_dst_mac: 1,
        dst_mac: b_mac,
        ..Default::default()
    };
    p.hook.configure(redirect)?;

    let (burst, forwarded) = p.positive()?;
    let src = p.hook.drain_events();
    let dst = p.observer.drain_events();
    let landed_ev = landed.drain_events();
    let ev = evidence([
        ("sent", json!(burst.sent)),
        ("send_error", json!(burst.send_error)),
        (
            "destination",
            json!(format!("{b_ip}:{PROBE_PORT} in ns pod-b")),
        ),
        ("delivered", seqs_json(&burst.arrivals)),
        (
            "redirect",
            json!({ "helper": "bpf_redirect", "target": lxc_b.name, "ifindex": lxc_b.index, "flags": 0, "dst_mac": mac_text(&b_mac) }),
        ),
        ("hops", burst.hops.to_json()),
        ("host_ip_forw_datagrams_delta", json!(forwarded)),
        ("hook", hook_json(&p.hook, &src)?),
        ("observer", hook_json(&p.observer, &dst)?),
        ("target_ingress", hook_json(&landed, &landed_ev)?),
    ]);
    let leg = Leg::judged(
        judge_delivery(&burst.hops, forwarded),
        || {
            format!(
                "{BURST}/{BURST} datagrams redirected to {}'s egress, transmitted by it, received by pod B's eth0 and delivered; host forwarded 0",
                lxc_b.name
            )
        },
        ev,
    );

    // Control: the direction flipped and nothing else: BPF_F_INGRESS, so the frames
    // are received on lxc B in the host namespace instead of sent out of it. The
    // check's "lxc B transmitted 5" hop must see it.
    p.hook.configure(HookConfig {
        redirect_flags: BPF_F_INGRESS,
        ..redirect
    })?;
    let landed_before = landed.counters()?.matched;
    let (control, forwarded) = p.send_control(&landed)?;
    let landed_n = landed.counters()?.matched - landed_before;
    let test_held = judge_delivery(&control.hops, forwarded).is_none();
    let src = p.hook.drain_events();
    let dst = p.observer.drain_events();
    let landed_ev = landed.drain_events();
    let lxc_b_tx = control
        .hops
        .figures
        .iter()
        .find(|f| f.at == format!("{} tx", lxc_b.name))
        .map(|f| f.count)
        .unwrap_or(0);
    let account = format!(
        "bpf_redirect with BPF_F_INGRESS: {landed_n}/{BURST} landed on {}'s ingress, {} transmitted {lxc_b_tx}, {}/{BURST} delivered{}",
        lxc_b.name,
        lxc_b.name,
        control.arrivals.len(),
        if lxc_b_tx < u64::from(BURST) {
            format!(
                ": the check's \"{} transmitted {BURST}\" witness fails",
                lxc_b.name
            )
        } else {
            String::new()
        }
    );
    let control = ControlLeg {
        description: format!(
            "the same redirect to {} with BPF_F_INGRESS: its ingress instead of its egress",
            lxc_b.name
        ),
        witnessed: landed_n >= u64::from(BURST),
        test_held,
        account,
        evidence: evidence([
            ("delivered", seqs_json(&control.arrivals)),
            ("hops", control.hops.to_json()),
            ("host_ip_forw_datagrams_delta", json!(forwarded)),
            ("hook", hook_json(&p.hook, &src)?),
            ("observer", hook_json(&p.observer, &dst)?),
            ("target_ingress", hook_json(&landed, &landed_ev)?),
        ]),
    };
    Ok(observe(check, variant, started, leg, control))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hops::Figure;
    use crate::topology::{NODE_IP, NODE_IP6};
    use netlink_packet_route::neighbour::NeighbourState;

    const LXC_B: u32 = 5;
    const LXC_B_MAC: Mac = [2, 0, 0, 0, 0, 0xb];
    const POD_B_MAC: Mac = [2, 0, 0, 0, 1, 0xb];
    const POD_B: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 12);

    const POD_B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x42, 0, 0, 0, 0, 0, 0x12);

    fn route(
        table: u32,
        kind: RouteType,
        dst: impl Into<IpAddr>,
        prefix: u8,
        oif: u32,
    ) -> RouteEntry {
        RouteEntry {
            table,
            kind,
            dst: dst.into(),
            prefix,
            oif: Some(oif),
            gateway: None,
        }
    }

    fn node_routes() -> Vec<RouteEntry> {
        vec![
            route(RT_TABLE_LOCAL, RouteType::Local, NODE_IP, 32, 1),
            route(RT_TABLE_MAIN, RouteType::Unicast, POD_B, 32, LXC_B),
            route(
                RT_TABLE_MAIN,
                RouteType::Unicast,
                Ipv4Addr::new(10, 42, 0, 0),
                16,
                9,
            ),
        ]
    }

    fn neighbour(state: NeighbourState) -> NeighbourEntry {
        NeighbourEntry {
            ifindex: LXC_B,
            addr: POD_B.into(),
            state,
            mac: Some(POD_B_MAC),
        }
    }

    fn mac_of(i: u32) -> Option<Mac> {
        (i == LXC_B).then_some(LXC_B_MAC)
    }

    fn answer(routes: &[RouteEntry], neigh: &[NeighbourEntry], dst: impl Into<IpAddr>) -> Answer {
        expected_answer(routes, neigh, mac_of, true, dst.into()).0
    }

    /// The dual-stack node's IPv6 routes beside an IPv4 default route, and pod B's
    /// permanent ND entry.
    fn node_routes6() -> (Vec<RouteEntry>, Vec<NeighbourEntry>) {
        let routes = vec![
            route(
                RT_TABLE_MAIN,
                RouteType::Unicast,
                Ipv4Addr::UNSPECIFIED,
                0,
                9,
            ),
            route(RT_TABLE_LOCAL, RouteType::Local, NODE_IP6, 128, 1),
            route(
                RT_TABLE_LOCAL,
                RouteType::Multicast,
                Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
                8,
                LXC_B,
            ),
            route(RT_TABLE_MAIN, RouteType::Unicast, POD_B6, 128, LXC_B),
        ];
        let neigh = vec![
            neighbour(NeighbourState::Permanent),
            NeighbourEntry {
                addr: POD_B6.into(),
                ..neighbour(NeighbourState::Permanent)
            },
        ];
        (routes, neigh)
    }

    #[test]
    fn ipv6_routes_give_success_and_local_and_ipv4_routes_never_match() {
        let (routes, neigh) = node_routes6();
        assert_eq!(
            answer(&routes, &neigh, POD_B6),
            Answer {
                rc: fib_rc::SUCCESS,
                ifindex: Some(LXC_B),
                macs: Some((LXC_B_MAC, POD_B_MAC)),
            }
        );
        assert_eq!(answer(&routes, &neigh, NODE_IP6).rc, fib_rc::NOT_FWDED);
        // The IPv4 default route covers every IPv4 address, no IPv6 one.
        let other = Ipv6Addr::new(0xfd00, 0x42, 0, 0, 0, 0, 0, 0x13);
        assert_eq!(answer(&routes, &neigh, other).rc, fib_rc::NOT_FWDED);
        assert_eq!(
            answer(&routes, &neigh, Ipv4Addr::new(192, 0, 2, 1)).ifindex,
            Some(9)
        );
        // Without pod B's ND entry: NO_NEIGH via lxc B.
        assert_eq!(answer(&routes, &neigh[..1], POD_B6).rc, fib_rc::NO_NEIGH);
        assert!(covers(Ipv6Addr::UNSPECIFIED.into(), 0, POD_B6.into()));
        assert!(covers(
            Ipv6Addr::new(0xfd00, 0x42, 0, 0, 0, 0, 0, 0).into(),
            64,
            POD_B6.into()
        ));
        assert!(!covers(
            Ipv6Addr::new(0xfd00, 0x43, 0, 0, 0, 0, 0, 0).into(),
            64,
            POD_B6.into()
        ));
    }

    #[test]
    fn ipv6_answers_are_matched_by_the_events_ipv6_destination() {
        let (routes, neigh) = node_routes6();
        let l = Lookup {
            who: "pod B",
            dst: POD_B6.into(),
            expected: answer(&routes, &neigh, POD_B6),
        };
        let v6 = |rc, ifindex| SkbMeta {
            ip_version: 6,
            daddr6: POD_B6.octets(),
            ..fib_event(rc, ifindex)
        };
        let good = vec![v6(fib_rc::SUCCESS, LXC_B); 5];
        assert!(judge_fib(&[(&l, &delivered(5), &good)], 0).is_none());
        let wrong = vec![v6(fib_rc::NOT_FWDED, 3); 5];
        let (f, reason) = judge_fib(&[(&l, &delivered(0), &wrong)], 0).unwrap();
        assert_eq!(f.code, "fib-mismatch");
        assert!(reason.contains("fd00:42::12"), "{reason}");
        // IPv4 records of pod B's IPv4 address are not this lookup's.
        let v4 = vec![fib_event(fib_rc::SUCCESS, LXC_B); 5];
        let (f, reason) = judge_fib(&[(&l, &delivered(5), &v4)], 0).unwrap();
        assert_eq!(f.code, "fib-mismatch");
        assert!(reason.contains("only 0/5"), "{reason}");
    }

    #[test]
    fn routes_give_success_local_and_no_route() {
        let routes = node_routes();
        let neigh = [neighbour(NeighbourState::Permanent)];
        assert_eq!(
            answer(&routes, &neigh, POD_B),
            Answer {
                rc: fib_rc::SUCCESS,
                ifindex: Some(LXC_B),
                macs: Some((LXC_B_MAC, POD_B_MAC)),
            }
        );
        assert_eq!(answer(&routes, &neigh, NODE_IP).rc, fib_rc::NOT_FWDED);
        assert_eq!(
            answer(&routes, &neigh, Ipv4Addr::new(192, 0, 2, 1)).rc,
            fib_rc::NOT_FWDED
        );
        // The longest prefix wins: 10.42.0.13 takes the /16.
        assert_eq!(
            answer(&routes, &neigh, Ipv4Addr::new(10, 42, 0, 13)).ifindex,
            Some(9)
        );
        assert_eq!(
            expected_answer(&routes, &neigh, mac_of, false, POD_B.into())
                .0
                .rc,
            fib_rc::FWD_DISABLED
        );
    }

    #[test]
    fn no_valid_neighbour_is_no_neigh_and_blackhole_is_blackhole() {
        let routes = node_routes();
        for neigh in [vec![], vec![neighbour(NeighbourState::Incomplete)]] {
            assert_eq!(
                answer(&routes, &neigh, POD_B),
                Answer {
                    rc: fib_rc::NO_NEIGH,
                    ifindex: Some(LXC_B),
                    macs: None,
                }
            );
        }
        let mut routes = node_routes();
        routes[1].kind = RouteType::BlackHole;
        assert_eq!(answer(&routes, &[], POD_B).rc, fib_rc::BLACKHOLE);
    }

    fn delivered(n: u64) -> Accounting {
        let mut a = Accounting::new(BURST);
        a.push(Figure::path("pod A sent", BURST, None));
        a.push(Figure {
            failure: &HOOK_NOT_RUN,
            ..Figure::path("hook lxcXa ingress matched", BURST, None)
        });
        a.push(Figure::path("pod B socket", n, None));
        a
    }

    fn fib_event(rc: i32, ifindex: u32) -> SkbMeta {
        SkbMeta {
            daddr: u32::from(POD_B).to_be(),
            fib_called: 1,
            fib_rc: rc,
            fib_ifindex: ifindex,
            fib_smac: LXC_B_MAC,
            fib_dmac: POD_B_MAC,
            ..Default::default()
        }
    }

    #[test]
    fn a_wrong_answer_is_a_fib_mismatch_before_the_delivery() {
        let l = Lookup {
            who: "pod B",
            dst: POD_B.into(),
            expected: answer(
                &node_routes(),
                &[neighbour(NeighbourState::Permanent)],
                POD_B,
            ),
        };
        let good = vec![fib_event(fib_rc::SUCCESS, LXC_B); 5];
        assert!(judge_fib(&[(&l, &delivered(5), &good)], 0).is_none());
        let not_fwded = vec![fib_event(fib_rc::NOT_FWDED, 3); 5];
        let (f, reason) = judge_fib(&[(&l, &delivered(0), &not_fwded)], 0).unwrap();
        assert_eq!(f.code, "fib-mismatch");
        assert!(reason.contains("answered NOT_FWDED for 5 of 5"), "{reason}");
        let other_device = vec![fib_event(fib_rc::SUCCESS, 7); 5];
        assert_eq!(
            judge_fib(&[(&l, &delivered(5), &other_device)], 0)
                .unwrap()
                .0
                .code,
            "fib-mismatch"
        );
        assert_eq!(
            judge_fib(&[(&l, &delivered(5), &good[..3])], 0)
                .unwrap()
                .0
                .code,
            "fib-mismatch"
        );
        assert_eq!(
            judge_fib(&[(&l, &delivered(5), &good)], 5).unwrap().0.code,
            "forwarded"
        );
        assert_eq!(
            judge_fib(&[(&l, &delivered(2), &good)], 0).unwrap().0.code,
            "not-delivered"
        );
    }

    fn arrived(dst: Mac, src: Mac, pkt_type: u32) -> SkbMeta {
        SkbMeta {
            eth_dst: dst,
            eth_src: src,
            pkt_type,
            ..Default::default()
        }
    }

    const WANT: WantL2 = WantL2 {
        dst: POD_B_MAC,
        src: LXC_B_MAC,
    };

    #[test]
    fn the_neighbours_header_passes_the_gateways_does_not() {
        let right = vec![arrived(POD_B_MAC, LXC_B_MAC, PACKET_HOST); 5];
        assert!(judge_neigh(&delivered(5), 0, &right, WANT, None).is_none());
        // The control's frames: still addressed to the gateway (lxc A), OTHERHOST.
        let gateway = [9, 9, 9, 9, 9, 0xa];
        let wrong = vec![arrived(gateway, [2, 0, 0, 0, 1, 0xa], 3); 5];
        let (f, reason) = judge_neigh(&delivered(0), 0, &wrong, WANT, None).unwrap();
        assert_eq!(f.code, "not-resolved");
        assert!(reason.contains("5 of 5 frames"), "{reason}");
        assert_eq!(
            judge_neigh(&delivered(5), 3, &right, WANT, None)
                .unwrap()
                .0
                .code,
            "forwarded"
        );
    }

    #[test]
    fn resolve_needs_the_entry_that_appeared() {
        let right = vec![arrived(POD_B_MAC, LXC_B_MAC, PACKET_HOST); 5];
        let reachable = neighbour(NeighbourState::Reachable);
        assert!(judge_neigh(&delivered(5), 0, &right, WANT, Some(Some(&reachable))).is_none());
        assert_eq!(
            judge_neigh(&delivered(5), 0, &right, WANT, Some(None))
                .unwrap()
                .0
                .code,
            "not-resolved"
        );
        let failed = neighbour(NeighbourState::Failed);
        assert_eq!(
            judge_neigh(&delivered(5), 0, &right, WANT, Some(Some(&failed)))
                .unwrap()
                .0
                .code,
            "not-resolved"
        );
    }
}
