//! The checks, one module per family, and what they share: the run context, the
//! fault injection used to prove a broken datapath turns into a regression, and the
//! assembly of an [`Observation`] from a positive leg and its negative control.

mod attach;
mod redirect_peer;
mod routing;
mod stack_delivery;

use crate::hooks::{AttachMode, Direction, Hook};
use crate::netlink::Route;
use crate::topology::{GATEWAY_IP, Node};
use anyhow::{Result, anyhow, bail};
use conformance_contract::{CheckSpec, Control, ControlOutcome, Observation, Outcome};
use conformance_ebpf_common::{HookConfig, PROBE_PORT, action};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
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
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop" => Ok(Self::Drop),
            "no-route" => Ok(Self::NoRoute),
            _ => Err(format!("unknown fault `{s}` (known: drop, no-route)")),
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

    fn fault(&self, check: &str) -> Option<Fault> {
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
                let config = HookConfig {
                    dport: PROBE_PORT,
                    action: action::DROP,
                    ..Default::default()
                };
                Ok(Some(Hook::attach(
                    &pod.ns,
                    "eth0",
                    direction,
                    self.default_mode(),
                    config,
                )?))
            }
            Fault::NoRoute => {
                if host_sends || check.starts_with("datapath.pod-to-host") {
                    let route = crate::topology::pod_route(pod.ip, &pod.lxc);
                    node.host_rtnl.delete_route(&route)?;
                } else {
                    let route = Route {
                        dst: Ipv4Addr::UNSPECIFIED,
                        prefix: 0,
                        oif: pod.eth0.index,
                        gateway: Some(GATEWAY_IP),
                    };
                    pod.rtnl.delete_route(&route)?;
                }
                Ok(None)
            }
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
    /// A leg that passes when nothing went wrong: `problems` joined make the reason
    /// of a failure, `ok` the reason of a pass.
    pub fn judged(
        problems: Vec<String>,
        ok: impl FnOnce() -> String,
        evidence: Map<String, Value>,
    ) -> Self {
        let pass = problems.is_empty();
        Leg {
            pass,
            failure: (!pass).then(|| conformance_contract::catalogue::NOT_DELIVERED.code.to_string()),
            reason: if pass { ok() } else { problems.join("; ") },
            evidence,
        }
    }
}

/// The control leg of checks whose decisive step is a hook's action: reconfigure
/// `hook` to break it, send the control burst, and listen on `rx` until the hook
/// has counted the whole burst (the witness) plus a grace period.
pub fn hook_control(
    hook: &mut Hook,
    broken: HookConfig,
    description: &str,
    rx: &std::net::UdpSocket,
    send: impl FnOnce() -> Result<(u32, Option<String>)>,
) -> Result<ControlLeg> {
    hook.configure(broken)?;
    let before = hook.counters()?.matched;
    let (sent, send_error) = send()?;
    let (leaks, witnessed) = crate::traffic::collect_leaks(rx, CONTROL_SEQS, || {
        hook.counters()
            .map(|c| c.matched >= before + u64::from(crate::traffic::BURST))
            .unwrap_or(false)
    });
    let matched = hook.counters()?.matched - before;
    let events: Vec<Value> = hook
        .drain_events()
        .iter()
        .map(crate::hooks::meta_json)
        .collect();
    Ok(ControlLeg {
        description: description.to_string(),
        leaked: leaks.len(),
        witnessed,
        evidence: evidence([
            ("sent", json!(sent)),
            ("send_error", json!(send_error)),
            ("delivered", seqs_json(&leaks)),
            (
                "hook",
                json!({ "at": hook.label, "matched": matched, "events": events }),
            ),
        ]),
    })
}

/// The result of the negative control.
pub struct ControlLeg {
    pub description: String,
    /// Datagrams that arrived although the decisive step was broken.
    pub leaked: usize,
    /// The control's traffic was seen where the check breaks it (a hook counted it,
    /// a device received it); without that, "nothing arrived" proves nothing.
    pub witnessed: bool,
    pub evidence: Map<String, Value>,
}

impl ControlLeg {
    fn into_control(self, sent: u32) -> Control {
        let (outcome, reason) = if self.leaked > 0 {
            (
                ControlOutcome::Leaked,
                format!(
                    "{}/{sent} datagrams were delivered although the path was broken",
                    self.leaked
                ),
            )
        } else if !self.witnessed {
            (
                ControlOutcome::Error,
                "the control's traffic never reached the point it breaks; nothing can be concluded"
                    .to_string(),
            )
        } else {
            (
                ControlOutcome::Blocked,
                format!("0/{sent} datagrams delivered, as a broken path must"),
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
    sent: u32,
) -> Observation {
    Observation {
        check: check.to_string(),
        variant: variant.to_string(),
        outcome: if leg.pass {
            Outcome::Pass
        } else {
            Outcome::Fail
        },
        reason: leg.reason,
        evidence: leg.evidence,
        failure: leg.failure,
        missing_facts: Vec::new(),
        control: Some(control.into_control(sent)),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

/// Runs one check variant; setup failures become an `error` observation.
pub fn run(spec: &CheckSpec, variant: &str, ctx: &Ctx) -> Observation {
    let started = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatch(spec.id, variant, ctx, started)
    }));
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
    Observation {
        check: spec.id.to_string(),
        variant: variant.to_string(),
        outcome: Outcome::Error,
        reason: error,
        evidence: Map::new(),
        failure: None,
        missing_facts: Vec::new(),
        control: None,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

fn dispatch(id: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let mode = || {
        AttachMode::from_variant(variant)
            .ok_or_else(|| anyhow!("unknown variant `{variant}` for {id}"))
    };
    match id {
        "tc.attach.tcx" | "tc.attach.legacy" => attach::run(id, mode()?, ctx, started),
        "datapath.stack-delivery" => stack_delivery::run_pass(id, mode()?, ctx, started),
        "datapath.stack-delivery.redirect" => {
            stack_delivery::run_redirect(id, mode()?, ctx, started)
        }
        "datapath.redirect-peer" => redirect_peer::run(id, mode()?, ctx, started),
        "datapath.redirect-peer.scrub" => redirect_peer::run_scrub(id, variant, ctx, started),
        "datapath.pod-to-host" => routing::run(id, variant, false, ctx, started),
        "datapath.host-to-pod" => routing::run(id, variant, true, ctx, started),
        _ => bail!("no implementation for check {id}"),
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
