//! `tc.attach.tcx` and `tc.attach.legacy`: a program attached each way runs on the
//! pod's traffic (its counter sees every datagram) and the traffic still arrives.

use super::stack_delivery::HostBound;
use super::{Ctx, Leg, Registered, attach_mode, observe};
use crate::topology::Family;
use crate::traffic::BURST;
use anyhow::Result;
use conformance_contract::Observation;
use conformance_ebpf_common::{HookConfig, PROBE_PORT, action};
use std::time::Instant;

pub const CHECKS: &[Registered] = &[
    Registered {
        id: "tc.attach.tcx",
        run,
    },
    Registered {
        id: "tc.attach.legacy",
        run,
    },
];

fn run(check: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let mode = attach_mode(check, variant)?;
    let config = |act| HookConfig {
        dport: PROBE_PORT,
        action: act,
        ..Default::default()
    };
    let mut path = HostBound::setup(check, (mode, Family::V4), ctx, config(action::PASS))?;
    let burst = path.positive()?;
    let ok = || {
        format!(
            "the {} program counted {BURST}/{BURST} datagrams and all reached the host socket",
            mode.name()
        )
    };
    let leg = Leg::delivery(&burst.hops, ok, path.evidence(&burst)?);
    let control = path.drop_control(
        config(action::DROP),
        "the same attach with a program returning TC_ACT_SHOT",
    )?;
    Ok(observe(check, mode.name(), started, leg, control))
}
