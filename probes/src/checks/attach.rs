//! `tc.attach.tcx` and `tc.attach.legacy`: a program attached each way runs on the
//! pod's traffic (its counter sees every datagram) and the traffic still arrives.

use super::stack_delivery::{HostBound, burst_evidence, failure_reason};
use super::{Ctx, Leg, observe};
use crate::hooks::AttachMode;
use crate::traffic::BURST;
use anyhow::Result;
use conformance_contract::Observation;
use conformance_ebpf_common::{HookConfig, PROBE_PORT, action};
use std::time::Instant;

pub fn run(check: &str, mode: AttachMode, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let config = |act| HookConfig {
        dport: PROBE_PORT,
        action: act,
        ..Default::default()
    };
    let mut path = HostBound::setup(check, mode, ctx, config(action::PASS))?;
    let burst = path.positive()?;
    let reason = failure_reason(
        &burst,
        &[(&path.hook.label, &burst.events, burst.counters.matched)],
    );
    let leg = Leg {
        pass: reason.is_none(),
        failure: reason
            .is_some()
            .then(|| conformance_contract::catalogue::NOT_DELIVERED.code.to_string()),
        reason: reason.unwrap_or_else(|| {
            format!(
                "the {} program counted {}/{BURST} datagrams and all reached the host socket",
                mode.name(),
                burst.counters.matched
            )
        }),
        evidence: burst_evidence(&burst, &path.hook.label),
    };
    let control = path.control(
        config(action::DROP),
        "the same attach with a program returning TC_ACT_SHOT",
    )?;
    Ok(observe(check, mode.name(), started, leg, control, BURST))
}
