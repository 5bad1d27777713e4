//! `xdp.veth` and `device.netkit`: the pod devices Cilium can put its programs on
//! instead of (or before) TC.
//!
//! `xdp.veth`: an XDP program on pod A's host-side veth, attached native (the veth
//! driver runs it in its NAPI poll, as `loadBalancer.acceleration=native` needs) or
//! generic (the stack runs it on the skb), counts pod A's datagrams and passes
//! them; they must reach the host socket, hop by hop.
//!
//! `device.netkit`: a netkit pair (primary in the host namespace, peer as `eth0`
//! in a pod namespace, routed like the veth pods) with the `hook` program linked
//! where Cilium puts `cil_from_container`, the peer's list (`BPF_NETKIT_PEER`: netkit
//! runs the transmitting device's programs, so what the pod sends meets it), in L3
//! mode (Cilium's `netkit`) or L2 (`netkit-l2`). `scrub`: the pair as Cilium creates
//! it (`IFLA_NETKIT_SCRUB` none on the primary, `IFLA_NETKIT_PEER_SCRUB` default on
//! the peer): a pod's `SO_MARK` must be gone when the peer's program runs, and a
//! host socket's mark must still be there when the primary's program runs (Cilium's
//! endpoint routes hand identity to `cil_to_container` in it: HaveNetkitScrub).

use super::{
    Burst, CONTROL_SEQS, ControlLeg, Ctx, Fault, Leg, POSITIVE_SEQS, Registered, evidence, observe,
    send_along, seqs_json,
};
use crate::hooks::{Direction, Hook, NetkitSide, meta_json};
use crate::hops::{Accounting, Figure, Path, Role};
use crate::netlink::{
    NETKIT_SCRUB_DEFAULT, NETKIT_SCRUB_NONE, NetkitMode, NetkitSpec, Route, Rtnl,
};
use crate::netns::NetNs;
use crate::topology::{Device, GATEWAY_IP, NODE_IP, Node};
use crate::topology::{device, disable_ipv6};
use crate::traffic::{self, Arrival, BURST};
use crate::xdp::{Mode, XdpAction, XdpHook};
use anyhow::{Context, Result, anyhow};
use conformance_contract::Observation;
use conformance_contract::catalogue::{HOOK_NOT_RUN, MARK_LEAKED, MARK_NOT_KEPT};
use conformance_ebpf_common::{HookConfig, PROBE_PORT, action};
use serde_json::{Map, Value, json};
use std::net::{Ipv4Addr, UdpSocket};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::time::Instant;

pub const CHECKS: &[Registered] = &[
    Registered {
        id: "xdp.veth",
        run: run_xdp,
    },
    Registered {
        id: "device.netkit",
        run: run_netkit,
    },
];

// ---------------------------------------------------------------- xdp.veth

/// Pod A's datagrams to the node IP, through the XDP program on `lxc…a`.
struct XdpPath {
    node: Node,
    host_sock: UdpSocket,
    pod_sock: UdpSocket,
    xdp: XdpHook,
    _fault: Option<Hook>,
}

impl XdpPath {
    /// pod A eth0 tx → lxc…a rx (veth counts its peer's transmit as its receive,
    /// before any XDP program) → the XDP program → the host's IP/UDP receive path.
    /// The program's count is spliced in between the device and stack figures.
    fn send(&self, seqs: Range<u32>, wait: impl FnOnce() -> Vec<Arrival>) -> Result<Burst> {
        let pod = &self.node.pods[0];
        let before_xdp = Path::new().tx(&pod.ns, "eth0", "pod A eth0").rx(
            &self.node.host,
            &pod.lxc.name,
            &pod.lxc.name,
        );
        let after_xdp = Path::new().stack(&self.node.host, "host");
        let (b1, b2, x0) = (
            before_xdp.read()?,
            after_xdp.read()?,
            self.xdp.counters()?.matched,
        );
        let (sent, send_error) = traffic::send_burst(&self.pod_sock, NODE_IP, seqs);
        let arrivals = wait();
        let (a1, a2, x1) = (
            before_xdp.read()?,
            after_xdp.read()?,
            self.xdp.counters()?.matched,
        );
        let mut hops = Accounting::new(BURST);
        hops.push(Figure::path("pod A sent", sent, send_error.clone()));
        hops.extend(before_xdp.figures(&b1, &a1));
        hops.push(Figure {
            at: format!("{} matched", self.xdp.label),
            role: Role::Path,
            count: x1.saturating_sub(x0),
            failure: &HOOK_NOT_RUN,
            note: None,
        });
        hops.extend(after_xdp.figures(&b2, &a2));
        hops.push(Figure::path("host socket", arrivals.len(), None));
        Ok(Burst {
            sent,
            send_error,
            arrivals,
            hops,
        })
    }

    fn evidence(&self, mode: Mode, burst: &Burst) -> Result<Map<String, Value>> {
        Ok(evidence([
            ("sent", json!(burst.sent)),
            ("send_error", json!(burst.send_error)),
            (
                "destination",
                json!(format!("{NODE_IP}:{PROBE_PORT} in ns host")),
            ),
            ("delivered", seqs_json(&burst.arrivals)),
            ("hops", burst.hops.to_json()),
            ("xdp", self.xdp.to_json()?),
            (
                "attach",
                json!(match mode {
                    Mode::Native => "XDP_FLAGS_DRV_MODE (veth driver, NAPI poll)",
                    Mode::Generic => "XDP_FLAGS_SKB_MODE (generic, on the skb)",
                }),
            ),
        ]))
    }
}

fn run_xdp(check: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let mode = Mode::from_variant(variant)
        .ok_or_else(|| anyhow!("unknown variant `{variant}` for {check}"))?;
    let mut node = Node::build(ctx.run_id)?;
    let fault = ctx.apply_fault(check, &mut node, false)?;
    let host_sock = traffic::bind(&node.host, NODE_IP, PROBE_PORT)?;
    let pod = &node.pods[0];
    let pod_sock = traffic::bind(&pod.ns, pod.ip, PROBE_PORT)?;
    let xdp = XdpHook::attach(&node.host, &pod.lxc.name, mode, PROBE_PORT, XdpAction::Pass)?;
    let mut path = XdpPath {
        node,
        host_sock,
        pod_sock,
        xdp,
        _fault: fault,
    };

    let burst = path.send(POSITIVE_SEQS, || {
        traffic::collect_expected(&path.host_sock, POSITIVE_SEQS)
    })?;
    let ok = || {
        format!(
            "{BURST}/{BURST} datagrams passed the {} XDP program (XDP_PASS) on {} and reached the host socket ({})",
            mode.name(),
            path.node.pods[0].lxc.name,
            burst.hops.summary()
        )
    };
    let leg = Leg::delivery(&burst.hops, ok, path.evidence(mode, &burst)?);

    // Control: the program drops what it matches.
    path.xdp.set_action(XdpAction::Drop)?;
    let before = path.xdp.counters()?.matched;
    let burst = {
        let xdp = &path.xdp;
        let host_sock = &path.host_sock;
        path.send(CONTROL_SEQS, || {
            traffic::collect_leaks(host_sock, CONTROL_SEQS, || {
                xdp.counters()
                    .map(|c| c.matched >= before + u64::from(BURST))
                    .unwrap_or(false)
            })
            .0
        })?
    };
    let matched = path.xdp.counters()?.matched - before;
    let control = ControlLeg {
        description: "the XDP program returns XDP_DROP".into(),
        witnessed: matched >= u64::from(BURST),
        test_held: burst.hops.complete(),
        account: burst.hops.summary(),
        evidence: path.evidence(mode, &burst)?,
    };
    Ok(observe(check, mode.name(), started, leg, control))
}

// ---------------------------------------------------------------- device.netkit

const NETKIT_POD_IP: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 13);
/// The control pair of `scrub` (its own pod namespace and address).
const NETKIT_CONTROL_IP: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 14);
/// What the pod's socket marks its datagrams with (`SO_MARK`), and the host's.
const POD_MARK: u32 = 0x0c0f_0001;
const HOST_MARK: u32 = 0x0c0f_0002;

/// A pod whose `eth0` is the peer of a netkit pair whose primary is in the host.
struct NetkitPod {
    ns: NetNs,
    rtnl: Rtnl,
    ip: Ipv4Addr,
    eth0: Device,
    primary: Device,
}

impl NetkitPod {
    /// Creates the pair from the host side and routes it as topology.rs routes a
    /// veth pod: the pod's /32 and `default via 10.42.0.1 onlink`, the host's /32
    /// scope-link route to it (L2: permanent neighbours both ways).
    fn build(
        node: &mut Node,
        run_id: &str,
        tag: char,
        ip: Ipv4Addr,
        spec: NetkitSpec,
    ) -> Result<Self> {
        let short: String = run_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(6)
            .collect();
        let ns = NetNs::new(&format!("pod-nk{tag}"))?;
        disable_ipv6(&ns)?;
        let name = format!("nk{short}{tag}");
        node.host_rtnl
            .add_netkit(&name, "eth0", std::os::fd::AsFd::as_fd(&ns), spec)?;
        let primary = device(&mut node.host_rtnl, &name)?;
        node.host_rtnl.set_up(primary.index)?;

        let mut rtnl = ns.run(Rtnl::new)?;
        let lo = device(&mut rtnl, "lo")?;
        rtnl.set_up(lo.index)?;
        let eth0 = device(&mut rtnl, "eth0")?;
        rtnl.add_address(eth0.index, ip, 32)?;
        rtnl.set_up(eth0.index)?;
        rtnl.replace_route(&Route {
            dst: GATEWAY_IP,
            prefix: 32,
            oif: eth0.index,
            gateway: None,
        })?;
        rtnl.replace_route(&Route {
            dst: Ipv4Addr::UNSPECIFIED,
            prefix: 0,
            oif: eth0.index,
            gateway: Some(GATEWAY_IP),
        })?;
        node.host_rtnl
            .replace_route(&crate::topology::pod_route(ip, &primary))?;
        if spec.mode == NetkitMode::L2 {
            rtnl.add_neighbour(eth0.index, GATEWAY_IP, primary.mac)?;
            node.host_rtnl.add_neighbour(primary.index, ip, eth0.mac)?;
        }
        for n in [&node.host, &ns] {
            n.run(|| traffic::await_links_operational(traffic::LINK_READY_TIMEOUT))
                .with_context(|| format!("links of ns {} not operational", n.name()))?;
        }
        crate::triage::register(&ns);
        Ok(Self {
            ns,
            rtnl,
            ip,
            eth0,
            primary,
        })
    }

    /// The injected fault, on this pod as `Ctx::apply_fault` does on pod A:
    /// `drop` on eth0's egress before netkit's own programs, `no-route` removes the
    /// pod's default route.
    fn apply_fault(&mut self, ctx: &Ctx, check: &str) -> Result<Option<Hook>> {
        match ctx.fault(check) {
            None | Some(Fault::NoScrub) => Ok(None),
            Some(Fault::Drop) => {
                let config = HookConfig {
                    dport: PROBE_PORT,
                    action: action::DROP,
                    ..Default::default()
                };
                let hook = Hook::attach(
                    &self.ns,
                    "eth0",
                    Direction::Egress,
                    ctx.default_mode(),
                    config,
                )?;
                crate::triage::disown_last();
                Ok(Some(hook))
            }
            Some(Fault::NoRoute) => {
                self.rtnl.delete_route(&Route {
                    dst: Ipv4Addr::UNSPECIFIED,
                    prefix: 0,
                    oif: self.eth0.index,
                    gateway: Some(GATEWAY_IP),
                })?;
                Ok(None)
            }
        }
    }
}

fn set_mark(sock: &UdpSocket, mark: u32) -> Result<()> {
    // SAFETY: setsockopt(SO_MARK) with a u32 that lives for the call.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            (&mark as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).context("setsockopt(SO_MARK)");
    }
    Ok(())
}

fn pass_config(act: u32) -> HookConfig {
    HookConfig {
        dport: PROBE_PORT,
        action: act,
        ..Default::default()
    }
}

fn hook_json(hook: &mut Hook) -> Result<(Value, Vec<u32>)> {
    let counters = hook.counters()?;
    let events = hook.drain_events();
    let marks = events.iter().map(|m| m.mark).collect();
    let events: Vec<Value> = events.iter().map(meta_json).collect();
    Ok((
        json!({ "at": hook.label, "counters": counters.to_json(), "events": events }),
        marks,
    ))
}

/// pod → host through the peer's program: sent, the hook, pod eth0 tx (netkit
/// counts it after the program passed), the primary's rx, the host stack, socket.
fn pod_to_host(
    node: &Node,
    pod: &NetkitPod,
    hook: &Hook,
    pod_sock: &UdpSocket,
    host_sock: &UdpSocket,
    seqs: Range<u32>,
    control: bool,
) -> Result<Burst> {
    let path = Path::new()
        .hook(hook)
        .tx(&pod.ns, "eth0", "pod eth0")
        .rx(&node.host, &pod.primary.name, &pod.primary.name)
        .stack(&node.host, "host");
    let before = hook.counters()?.matched;
    send_along(
        &path,
        "pod",
        "host",
        || Ok(traffic::send_burst(pod_sock, NODE_IP, seqs.clone())),
        || {
            if control {
                traffic::collect_leaks(host_sock, seqs.clone(), || {
                    hook.counters()
                        .map(|c| c.matched >= before + u64::from(BURST))
                        .unwrap_or(false)
                })
                .0
            } else {
                traffic::collect_expected(host_sock, seqs.clone())
            }
        },
    )
}

/// host → pod through the primary's program.
fn host_to_pod(
    node: &Node,
    pod: &NetkitPod,
    hook: &Hook,
    host_sock: &UdpSocket,
    pod_sock: &UdpSocket,
    seqs: Range<u32>,
) -> Result<Burst> {
    let path = Path::new()
        .hook(hook)
        .tx(&node.host, &pod.primary.name, &pod.primary.name)
        .rx(&pod.ns, "eth0", "pod eth0")
        .stack(&pod.ns, "pod");
    send_along(
        &path,
        "host",
        "pod",
        || Ok(traffic::send_burst(host_sock, pod.ip, seqs.clone())),
        || traffic::collect_expected(pod_sock, seqs.clone()),
    )
}

fn mode_of(variant: &str) -> Option<NetkitMode> {
    match variant {
        "l3" | "scrub" => Some(NetkitMode::L3),
        "l2" => Some(NetkitMode::L2),
        _ => None,
    }
}

fn run_netkit(check: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let mode =
        mode_of(variant).ok_or_else(|| anyhow!("unknown variant `{variant}` for {check}"))?;
    if variant == "scrub" {
        return run_netkit_scrub(check, ctx, started);
    }
    let mut node = Node::build(ctx.run_id)?;
    let spec = NetkitSpec { mode, scrub: None };
    let mut pod = NetkitPod::build(&mut node, ctx.run_id, 'a', NETKIT_POD_IP, spec)?;
    let _fault = pod.apply_fault(ctx, check)?;
    let host_sock = traffic::bind(&node.host, NODE_IP, PROBE_PORT)?;
    let pod_sock = traffic::bind(&pod.ns, pod.ip, PROBE_PORT)?;
    let mut hook = Hook::attach_netkit(
        &node.host,
        &pod.primary.name,
        NetkitSide::Peer,
        pass_config(action::PASS),
    )?;
    let describe = |burst: &Burst, hook: &mut Hook| -> Result<Map<String, Value>> {
        let (hook_ev, _) = hook_json(hook)?;
        Ok(evidence([
            ("sent", json!(burst.sent)),
            ("send_error", json!(burst.send_error)),
            (
                "destination",
                json!(format!("{NODE_IP}:{PROBE_PORT} in ns host")),
            ),
            ("delivered", seqs_json(&burst.arrivals)),
            ("hops", burst.hops.to_json()),
            ("hook", hook_ev),
            (
                "pair",
                json!({ "primary": pod.primary.name, "peer": "eth0", "mode": format!("{mode:?}") }),
            ),
        ]))
    };

    let burst = pod_to_host(
        &node,
        &pod,
        &hook,
        &pod_sock,
        &host_sock,
        POSITIVE_SEQS,
        false,
    )?;
    let ok = || {
        format!(
            "{BURST}/{BURST} datagrams from the pod passed the netkit peer program (NETKIT_PASS) of {} ({mode:?}) and reached the host socket ({})",
            pod.primary.name,
            burst.hops.summary()
        )
    };
    let leg = Leg::delivery(&burst.hops, ok, describe(&burst, &mut hook)?);

    hook.configure(pass_config(action::DROP))?;
    let before = hook.counters()?.matched;
    let burst = pod_to_host(
        &node,
        &pod,
        &hook,
        &pod_sock,
        &host_sock,
        CONTROL_SEQS,
        true,
    )?;
    let matched = hook.counters()?.matched - before;
    let control = ControlLeg {
        description: "the netkit peer program returns TC_ACT_SHOT (NETKIT_DROP)".into(),
        witnessed: matched >= u64::from(BURST),
        test_held: burst.hops.complete(),
        account: burst.hops.summary(),
        evidence: describe(&burst, &mut hook)?,
    };
    Ok(observe(check, variant, started, leg, control))
}

/// One pair's two legs with marks: pod → host seen by the peer's program, host →
/// pod seen by the primary's.
struct ScrubLegs {
    up: Burst,
    down: Burst,
    up_marks: Vec<u32>,
    down_marks: Vec<u32>,
    reported: (Option<u32>, Option<u32>),
    evidence: Map<String, Value>,
}

impl ScrubLegs {
    fn run(
        node: &mut Node,
        pod: &NetkitPod,
        requested: (u32, u32),
        seqs: Range<u32>,
    ) -> Result<Self> {
        let host_sock = traffic::bind(&node.host, NODE_IP, PROBE_PORT)?;
        let host_tx = traffic::bind(&node.host, GATEWAY_IP, PROBE_PORT)?;
        let pod_sock = traffic::bind(&pod.ns, pod.ip, PROBE_PORT)?;
        set_mark(&pod_sock, POD_MARK)?;
        set_mark(&host_tx, HOST_MARK)?;
        let mut peer = Hook::attach_netkit(
            &node.host,
            &pod.primary.name,
            NetkitSide::Peer,
            pass_config(action::PASS),
        )?;
        let mut primary = Hook::attach_netkit(
            &node.host,
            &pod.primary.name,
            NetkitSide::Primary,
            pass_config(action::PASS),
        )?;
        let up = pod_to_host(node, pod, &peer, &pod_sock, &host_sock, seqs.clone(), false)?;
        let down = host_to_pod(node, pod, &primary, &host_tx, &pod_sock, seqs)?;
        let reported = node.host_rtnl.netkit_scrub(&pod.primary.name)?;
        let (peer_ev, up_marks) = hook_json(&mut peer)?;
        let (primary_ev, down_marks) = hook_json(&mut primary)?;
        let scrub_name = |s: Option<u32>| match s {
            Some(NETKIT_SCRUB_NONE) => json!("none"),
            Some(NETKIT_SCRUB_DEFAULT) => json!("default"),
            Some(other) => json!(other),
            None => Value::Null,
        };
        let evidence = evidence([
            (
                "pair",
                json!({
                    "primary": pod.primary.name,
                    "peer": "eth0",
                    "mode": "L3",
                    "requested": { "scrub": scrub_name(Some(requested.0)), "peer_scrub": scrub_name(Some(requested.1)) },
                    "reported": { "scrub": scrub_name(reported.0), "peer_scrub": scrub_name(reported.1) },
                }),
            ),
            (
                "pod_to_host",
                json!({
                    "so_mark": format!("{POD_MARK:#x}"),
                    "delivered": seqs_json(&up.arrivals),
                    "hops": up.hops.to_json(),
                    "hook": peer_ev,
                }),
            ),
            (
                "host_to_pod",
                json!({
                    "so_mark": format!("{HOST_MARK:#x}"),
                    "delivered": seqs_json(&down.arrivals),
                    "hops": down.hops.to_json(),
                    "hook": primary_ev,
                }),
            ),
        ]);
        Ok(Self {
            up,
            down,
            up_marks,
            down_marks,
            reported,
            evidence,
        })
    }

    fn marks(marks: &[u32]) -> String {
        let mut m: Vec<String> = marks.iter().map(|m| format!("{m:#x}")).collect();
        m.dedup();
        if m.is_empty() {
            "none recorded".into()
        } else {
            m.join(", ")
        }
    }

    /// The check's test: the pod's mark scrubbed at the peer, the host's kept at
    /// the primary, on every datagram.
    fn scrubbed_up(&self) -> bool {
        self.up_marks.len() >= BURST as usize && self.up_marks.iter().all(|m| *m == 0)
    }

    fn kept_down(&self) -> bool {
        self.down_marks.len() >= BURST as usize && self.down_marks.iter().all(|m| *m == HOST_MARK)
    }

    fn reported_text(&self) -> String {
        match self.reported {
            (None, None) => "the kernel reports no IFLA_NETKIT_SCRUB for the pair (it predates netkit's scrub attributes and ignored them)".into(),
            (s, p) => format!("the kernel reports scrub {s:?}, peer scrub {p:?} (0 none, 1 default)"),
        }
    }
}

fn run_netkit_scrub(check: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let mut node = Node::build(ctx.run_id)?;
    // Cilium's pair (pkg/datapath/connector): the primary keeps the mark for
    // cil_to_container, what leaves the pod is scrubbed.
    let cilium = (NETKIT_SCRUB_NONE, NETKIT_SCRUB_DEFAULT);
    let spec = NetkitSpec {
        mode: NetkitMode::L3,
        scrub: Some(cilium),
    };
    let mut pod = NetkitPod::build(&mut node, ctx.run_id, 'a', NETKIT_POD_IP, spec)?;
    let _fault = pod.apply_fault(ctx, check)?;
    let legs = ScrubLegs::run(&mut node, &pod, cilium, POSITIVE_SEQS)?;

    let leg = if let (Some(reason), Some(failure)) = (legs.up.hops.loss(), legs.up.hops.failure()) {
        Leg::failed(
            failure,
            format!("pod → host: {reason}"),
            legs.evidence.clone(),
        )
    } else if let (Some(reason), Some(failure)) = (legs.down.hops.loss(), legs.down.hops.failure())
    {
        Leg::failed(
            failure,
            format!("host → pod: {reason}"),
            legs.evidence.clone(),
        )
    } else if !legs.scrubbed_up() {
        Leg::failed(
            &MARK_LEAKED,
            format!(
                "the pod's SO_MARK {POD_MARK:#x} reached the netkit peer's program (marks seen: {}) although the pair's peer scrub is default: netkit did not scrub skb->mark leaving the pod's namespace; {}",
                ScrubLegs::marks(&legs.up_marks),
                legs.reported_text()
            ),
            legs.evidence.clone(),
        )
    } else if !legs.kept_down() {
        Leg::failed(
            &MARK_NOT_KEPT,
            format!(
                "the host's SO_MARK {HOST_MARK:#x} was gone when the netkit primary's program ran (marks seen: {}) although the pair was created with IFLA_NETKIT_SCRUB none: Cilium's HaveNetkitScrub fails here and netkit with endpoint routes is refused; {}",
                ScrubLegs::marks(&legs.down_marks),
                legs.reported_text()
            ),
            legs.evidence.clone(),
        )
    } else {
        Leg::passed(
            format!(
                "as Cilium creates the pair (scrub none, peer scrub default): the pod's SO_MARK {POD_MARK:#x} was 0 at the peer's program and the host's {HOST_MARK:#x} kept at the primary's, {BURST}/{BURST} delivered each way ({}; {})",
                legs.up.hops.summary(),
                legs.down.hops.summary()
            ),
            legs.evidence.clone(),
        )
    };

    // Control: the opposite pair (scrub default, peer scrub none) in its own pod:
    // the host's mark must be scrubbed at the primary and the pod's kept at the
    // peer, so both halves of the check's test are shown able to fail.
    let inverse = (NETKIT_SCRUB_DEFAULT, NETKIT_SCRUB_NONE);
    let control_pod = NetkitPod::build(
        &mut node,
        ctx.run_id,
        'c',
        NETKIT_CONTROL_IP,
        NetkitSpec {
            mode: NetkitMode::L3,
            scrub: Some(inverse),
        },
    )?;
    let c = ScrubLegs::run(&mut node, &control_pod, inverse, CONTROL_SEQS)?;
    let witnessed = c.up_marks.len() >= BURST as usize && c.down_marks.len() >= BURST as usize;
    let test_held = c.scrubbed_up() && c.kept_down();
    let account = format!(
        "on a pair created with scrub default, peer scrub none: the pod's mark at the peer's program {}, the host's at the primary's {} ({})",
        ScrubLegs::marks(&c.up_marks),
        ScrubLegs::marks(&c.down_marks),
        c.reported_text()
    );
    let control = ControlLeg {
        description: "the inverse pair: IFLA_NETKIT_SCRUB default, IFLA_NETKIT_PEER_SCRUB none"
            .into(),
        witnessed,
        test_held,
        account,
        evidence: c.evidence,
    };
    Ok(observe(check, "scrub", started, leg, control))
}
