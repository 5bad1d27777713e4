//! The checks, one module per family, and what they share: the registry that
//! pairs each catalogue id with its runner, the run context, the fault injection
//! used to prove a broken datapath turns into a regression, and the assembly of
//! an [`Observation`] from a positive leg and its negative control.
//!
//! A family module says which checks it runs in its `CHECKS`; adding a check to
//! a family touches only that module here (and the catalogue), a new family adds
//! one line to [`FAMILIES`].

mod attach;
mod bpffs;
mod devices;
mod host_routing;
mod redirect_peer;
mod routing;
mod scrub;
mod scrub_xfrm;
mod socket_lb;
mod stack_delivery;
mod tunnel;

use crate::hooks::{AttachMode, Direction, Hook};
use crate::hops::{Accounting, Figure, Path};
use crate::netlink::{Route, Route6};
use crate::topology::{Family, GATEWAY_IP, GATEWAY_IP6, Node};
use crate::traffic::Arrival;
use anyhow::{Result, anyhow, bail};
use conformance_contract::catalogue::{Failure, IPV6_VARIANT};
use conformance_contract::{CheckSpec, Control, ControlOutcome, Observation, Outcome};
use conformance_ebpf_common::{HookConfig, PROBE_PORT, action};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
use std::time::Instant;

/// A deliberate break of the datapath, for testing the suite itself: the check it
/// is applied to must turn into a regression, and only that check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A program that drops the check's traffic on pod A's eth0 (egress, or ingress
    /// when the host sends), before any hook of the check sees it.
    Drop,
    /// The route the traffic needs is removed: the host's /32 to pod A for the
    /// routing checks, pod A's default route otherwise.
    NoRoute,
    /// The scrub checks' peer redirect replaced by their control's path, which
    /// keeps the state: the check must see it carried (it is not blind).
    NoScrub,
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop" => Ok(Self::Drop),
            "no-route" => Ok(Self::NoRoute),
            "no-scrub" => Ok(Self::NoScrub),
            _ => Err(format!(
                "unknown fault `{s}` (known: drop, no-route, no-scrub)"
            )),
        }
    }
}

/// What every check gets: who is running and what the facts allow.
pub struct Ctx<'a> {
    pub run_id: &'a str,
    /// TCX works here; attach modes that are not the check's subject use it when true.
    pub tcx: bool,
    pub faults: &'a BTreeMap<String, Fault>,
}

impl Ctx<'_> {
    /// The attach mode for hooks that are not what the check is about.
    pub fn default_mode(&self) -> AttachMode {
        if self.tcx {
            AttachMode::Tcx
        } else {
            AttachMode::Legacy
        }
    }

    pub(crate) fn fault(&self, check: &str) -> Option<Fault> {
        self.faults.get(check).copied()
    }

    /// Applies the fault injected for `check`, if any. The returned hook (for `drop`)
    /// must live as long as the traffic.
    pub fn apply_fault(
        &self,
        check: &str,
        node: &mut Node,
        host_sends: bool,
    ) -> Result<Option<Hook>> {
        let Some(fault) = self.fault(check) else {
            return Ok(None);
        };
        let pod = &mut node.pods[0];
        match fault {
            Fault::Drop => {
                let direction = if host_sends {
                    Direction::Ingress
                } else {
                    Direction::Egress
                };
                self.drop_on_eth0(pod, direction).map(Some)
            }
            Fault::NoRoute if host_sends || check.starts_with("datapath.pod-to-host") => {
                match (node.family, pod.ip6) {
                    (Family::V6, Some(ip6)) => node
                        .host_rtnl
                        .delete_route(&crate::topology::pod_route6(ip6, &pod.lxc))?,
                    _ => node
                        .host_rtnl
                        .delete_route(&crate::topology::pod_route(pod.ip, &pod.lxc))?,
                }
                Ok(None)
            }
            // A dual-stack node carries the check's traffic over IPv6: its IPv6
            // default route is the one the traffic needs.
            Fault::NoRoute if node.family == Family::V6 => {
                pod.rtnl.delete_route(&Route6 {
                    dst: Ipv6Addr::UNSPECIFIED,
                    prefix: 0,
                    oif: pod.eth0.index,
                    gateway: Some(GATEWAY_IP6),
                })?;
                Ok(None)
            }
            Fault::NoRoute => {
                delete_default_route(pod, GATEWAY_IP)?;
                Ok(None)
            }
            // Only the scrub checks (`scrub.rs`) list it; it changes their handoff.
            Fault::NoScrub => Ok(None),
        }
    }

    /// `drop`'s program: drops the check's traffic on `pod`'s eth0 before any of
    /// the check's hooks sees it.
    fn drop_on_eth0(&self, pod: &crate::topology::Pod, direction: Direction) -> Result<Hook> {
        let config = HookConfig {
            dport: PROBE_PORT,
            action: action::DROP,
            ..Default::default()
        };
        let hook = Hook::attach(&pod.ns, "eth0", direction, self.default_mode(), config)?;
        // Not part of the check: triage reports it as a program on the path
        // that the check did not put there, as a foreign one would be.
        crate::triage::disown_last();
        Ok(hook)
    }
}

/// `no-route` on the sending pod: its default route via `gateway` removed.
fn delete_default_route(pod: &mut crate::topology::Pod, gateway: Ipv4Addr) -> Result<()> {
    pod.rtnl.delete_route(&Route {
        dst: Ipv4Addr::UNSPECIFIED,
        prefix: 0,
        oif: pod.eth0.index,
        gateway: Some(gateway),
    })
}

impl Ctx<'_> {
    /// [`Ctx::apply_fault`] for a topology of a check's own (the tunnel checks' two
    /// nodes, `crate::topology_two_nodes`), where the pod that sends is not
    /// `Node::pods[0]`: `drop` attaches the dropping program on `pod`'s eth0
    /// egress, `no-route` removes `pod`'s default route via `gateway`. The
    /// returned hook (for `drop`) must live as long as the traffic.
    pub fn apply_pod_fault(
        &self,
        check: &str,
        pod: &mut crate::topology::Pod,
        gateway: Ipv4Addr,
    ) -> Result<Option<Hook>> {
        let Some(fault) = self.fault(check) else {
            return Ok(None);
        };
        match fault {
            Fault::Drop => self.drop_on_eth0(pod, Direction::Egress).map(Some),
            Fault::NoRoute => {
                delete_default_route(pod, gateway)?;
                Ok(None)
            }
            Fault::NoScrub => Ok(None),
        }
    }
}

/// The result of the positive leg: did traffic take the path, and why we think so.
pub struct Leg {
    pub pass: bool,
    /// For a failing leg: the code of the check's named failure (`CheckSpec::failures`).
    pub failure: Option<String>,
    pub reason: String,
    pub evidence: Map<String, Value>,
}

impl Leg {
    pub fn passed(reason: String, evidence: Map<String, Value>) -> Self {
        Leg {
            pass: true,
            failure: None,
            reason,
            evidence,
        }
    }

    pub fn failed(failure: &Failure, reason: String, evidence: Map<String, Value>) -> Self {
        Leg {
            pass: false,
            failure: Some(failure.code.to_string()),
            reason,
            evidence,
        }
    }

    /// A leg from a check's own judgement: `None` passes with `ok`, `Some` fails
    /// with the named failure and its reason.
    pub fn judged(
        judgement: Option<(&Failure, String)>,
        ok: impl FnOnce() -> String,
        evidence: Map<String, Value>,
    ) -> Self {
        match judgement {
            None => Self::passed(ok(), evidence),
            Some((failure, reason)) => Self::failed(failure, reason, evidence),
        }
    }

    /// Passes with `ok` when every hop counted the burst; otherwise fails with the
    /// failure of the first hop that missed it and the hop-by-hop reason.
    pub fn delivery(
        hops: &Accounting,
        ok: impl FnOnce() -> String,
        evidence: Map<String, Value>,
    ) -> Self {
        match (hops.loss(), hops.failure()) {
            (Some(reason), Some(failure)) => Self::failed(failure, reason, evidence),
            _ => Self::passed(ok(), evidence),
        }
    }
}

/// One burst sent along a metered path and what each hop counted of it.
pub struct Burst {
    pub sent: u32,
    pub send_error: Option<String>,
    pub arrivals: Vec<Arrival>,
    pub hops: Accounting,
}

/// Snapshots `path`, sends with `send`, waits with `wait`, snapshots again: the hops
/// are `<sender> sent`, the path's own, then `<receiver> socket`.
pub fn send_along(
    path: &Path,
    sender: &str,
    receiver: &str,
    send: impl FnOnce() -> Result<(u32, Option<String>)>,
    wait: impl FnOnce() -> Vec<Arrival>,
) -> Result<Burst> {
    let before = path.read()?;
    let (sent, send_error) = send()?;
    let arrivals = wait();
    let after = path.read()?;
    let mut hops = Accounting::new(crate::traffic::BURST);
    hops.push(Figure::path(
        format!("{sender} sent"),
        sent,
        send_error.clone(),
    ));
    hops.extend(path.figures(&before, &after));
    hops.push(Figure::path(
        format!("{receiver} socket"),
        arrivals.len(),
        None,
    ));
    Ok(Burst {
        sent,
        send_error,
        arrivals,
        hops,
    })
}

/// Waits for a control burst that must not arrive: until `hook` has matched the
/// whole burst (the witness that it reached the broken step), then a grace period.
pub fn wait_for_leaks(rx: &UdpSocket, hook: &Hook) -> impl FnOnce() -> Vec<Arrival> {
    let before = hook.counters().map(|c| c.matched).unwrap_or(u64::MAX);
    move || {
        crate::traffic::collect_leaks(rx, CONTROL_SEQS, || {
            hook.counters()
                .map(|c| c.matched >= before.saturating_add(u64::from(crate::traffic::BURST)))
                .unwrap_or(false)
        })
        .0
    }
}

/// The result of the negative control: the same traffic with the decisive step
/// broken, judged by the check's own pass test.
pub struct ControlLeg {
    pub description: String,
    /// The control's traffic was seen at the point where the control breaks the
    /// path (a hook counted it, a device received it); without that, whatever the
    /// check's test says about it proves nothing.
    pub witnessed: bool,
    /// The check's own pass test held on the control's traffic: the check is blind.
    pub test_held: bool,
    /// What the control's traffic did, in the terms of the check's test, e.g.
    /// "delivered 5/5 but lxc…b transmitted 5: the check's tx +0 witness fails on a
    /// plain redirect".
    pub account: String,
    pub evidence: Map<String, Value>,
}

impl ControlLeg {
    pub fn into_control(self) -> Control {
        let (outcome, reason) = if !self.witnessed {
            (
                ControlOutcome::Error,
                format!(
                    "{}; the control's traffic never reached the point it breaks: nothing can be concluded",
                    self.account
                ),
            )
        } else if self.test_held {
            (
                ControlOutcome::Leaked,
                format!(
                    "{}: the check's own test passed on the broken path, so the check is blind",
                    self.account
                ),
            )
        } else {
            (
                ControlOutcome::Blocked,
                format!("{}, as it must", self.account),
            )
        };
        Control {
            description: self.description,
            outcome,
            reason,
            evidence: self.evidence,
        }
    }
}

/// Builds an observation from both legs.
pub fn observe(
    check: &str,
    variant: &str,
    started: Instant,
    leg: Leg,
    control: ControlLeg,
) -> Observation {
    let control = control.into_control();
    let mut evidence = leg.evidence;
    if crate::triage::needed(leg.pass, control.outcome == ControlOutcome::Blocked) {
        evidence.insert("triage".into(), crate::triage::collect());
    }
    Observation {
        check: check.to_string(),
        variant: variant.to_string(),
        outcome: if leg.pass {
            Outcome::Pass
        } else {
            Outcome::Fail
        },
        reason: leg.reason,
        evidence,
        failure: leg.failure,
        missing_facts: Vec::new(),
        control: Some(control),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

/// Runs one check variant; setup failures become an `error` observation.
pub fn run(spec: &CheckSpec, variant: &str, ctx: &Ctx) -> Observation {
    let started = Instant::now();
    crate::triage::begin_check();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatch(spec.id, variant, ctx, started)
    }));
    let obs = finish_run(spec, variant, ctx, started, result);
    crate::triage::end_check();
    obs
}

fn finish_run(
    spec: &CheckSpec,
    variant: &str,
    ctx: &Ctx,
    started: Instant,
    result: std::thread::Result<Result<Observation>>,
) -> Observation {
    let error = match result {
        Ok(Ok(mut obs)) => {
            // A deliberately broken run must never be mistaken for a real finding.
            if let Some(fault) = ctx.fault(spec.id) {
                obs.reason = format!("[injected fault: {fault:?}] {}", obs.reason);
                obs.evidence
                    .insert("injected_fault".into(), json!(format!("{fault:?}")));
            }
            return obs;
        }
        Ok(Err(e)) => format!("{e:#}"),
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            format!("probe panicked: {}", text.unwrap_or_default())
        }
    };
    let mut evidence = Map::new();
    if crate::triage::needed(false, false) {
        evidence.insert("triage".into(), crate::triage::collect());
    }
    Observation {
        check: spec.id.to_string(),
        variant: variant.to_string(),
        outcome: Outcome::Error,
        reason: error,
        evidence,
        failure: None,
        missing_facts: Vec::new(),
        control: None,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

/// Runs one variant of a check: `(catalogue id, variant, ctx, started)`.
pub type Runner = fn(&str, &str, &Ctx, Instant) -> Result<Observation>;

/// A catalogue id and the code that runs it.
pub struct Registered {
    pub id: &'static str,
    pub run: Runner,
}

/// Every family's `CHECKS`; `registry_matches_the_catalogue` keeps it and the
/// catalogue in step.
const FAMILIES: &[&[Registered]] = &[
    attach::CHECKS,
    stack_delivery::CHECKS,
    redirect_peer::CHECKS,
    scrub::CHECKS,
    scrub_xfrm::CHECKS,
    routing::CHECKS,
    bpffs::CHECKS,
    host_routing::CHECKS,
    devices::CHECKS,
    socket_lb::CHECKS,
    tunnel::CHECKS,
];

fn registered() -> impl Iterator<Item = &'static Registered> {
    FAMILIES.iter().flat_map(|f| f.iter())
}

/// The attach mode a `tcx`/`legacy` variant names.
pub fn attach_mode(check: &str, variant: &str) -> Result<AttachMode> {
    AttachMode::from_variant(variant)
        .ok_or_else(|| anyhow!("unknown variant `{variant}` for {check}"))
}

/// The attach mode and IP family of a `tcx`/`legacy`/`ipv6` variant: `tcx` and
/// `legacy` send IPv4; `ipv6` sends IPv6 on a dual-stack node, attached as Cilium
/// attaches here (TCX where the kernel has it, legacy tc otherwise; the
/// evidence's `attach` says which), so its precondition facts are the same on
/// every kernel.
pub fn attach_and_family(check: &str, variant: &str, ctx: &Ctx) -> Result<(AttachMode, Family)> {
    if variant == IPV6_VARIANT {
        return Ok((ctx.default_mode(), Family::V6));
    }
    Ok((attach_mode(check, variant)?, Family::V4))
}

fn dispatch(id: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    match registered().find(|r| r.id == id) {
        Some(r) => (r.run)(id, variant, ctx, started),
        None => bail!("no implementation for check {id}"),
    }
}

/// Sequence numbers of the positive leg and of the control, disjoint so a late
/// datagram of one leg is never counted in the other.
pub const POSITIVE_SEQS: std::ops::Range<u32> = 0..crate::traffic::BURST;
pub const CONTROL_SEQS: std::ops::Range<u32> = 1000..1000 + crate::traffic::BURST;

/// `[a, b, ...]` of arrived sequence numbers, for evidence.
pub fn seqs_json(arrivals: &[crate::traffic::Arrival]) -> Value {
    let mut seqs: Vec<u32> = arrivals.iter().map(|a| a.seq).collect();
    seqs.sort_unstable();
    json!(seqs)
}

/// Shorthand for building evidence maps.
pub fn evidence(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(witnessed: bool, test_held: bool) -> Control {
        ControlLeg {
            description: "plain redirect".into(),
            witnessed,
            test_held,
            account: "delivered 5/5 but lxcXb transmitted 5".into(),
            evidence: Map::new(),
        }
        .into_control()
    }

    #[test]
    fn every_catalogue_fault_is_one_the_probe_injects() {
        for kind in conformance_contract::catalogue::FAULT_KINDS {
            assert!(kind.parse::<Fault>().is_ok(), "{kind}");
        }
    }

    #[test]
    fn registry_matches_the_catalogue() {
        let mut seen = std::collections::HashSet::new();
        for r in registered() {
            assert!(seen.insert(r.id), "{} registered twice", r.id);
            assert!(
                conformance_contract::find_check(r.id).is_some(),
                "{} is registered but not in the catalogue",
                r.id
            );
        }
        // Pod-level checks run in the cluster target's client pods (`probe connect`).
        for spec in conformance_contract::CATALOGUE
            .iter()
            .filter(|c| !conformance_contract::pods::is_pod_level(c.id))
        {
            assert!(
                seen.contains(spec.id),
                "{} is in the catalogue but has no runner",
                spec.id
            );
        }
    }

    #[test]
    fn a_control_is_judged_by_the_checks_own_test() {
        let c = control(true, false);
        assert_eq!(c.outcome, ControlOutcome::Blocked);
        assert_eq!(
            c.reason,
            "delivered 5/5 but lxcXb transmitted 5, as it must"
        );
        assert_eq!(control(true, true).outcome, ControlOutcome::Leaked);
        assert!(control(true, true).reason.contains("check is blind"));
        // Unwitnessed traffic proves nothing, whatever the test said.
        assert_eq!(control(false, false).outcome, ControlOutcome::Error);
        assert_eq!(control(false, true).outcome, ControlOutcome::Error);
    }
}
