//! The real lab checks on this kernel: every check passes with evidence, every
//! negative control blocks, and a broken datapath turns exactly the right check
//! into a failure.

use crate::support::{Needs, Test, TestResult, ensure, run_probe};
use conformance_contract::{CATALOGUE, ControlOutcome, Line, Outcome};
use serde_json::Value;

pub const TESTS: &[(&str, Needs, Test)] = &[
    (
        "lab::every_check_passes_with_evidence",
        Needs::Root,
        every_check_passes_with_evidence,
    ),
    (
        "lab::every_negative_control_blocks",
        Needs::Root,
        every_negative_control_blocks,
    ),
    (
        "lab::stream_is_complete_and_ordered",
        Needs::Root,
        stream_is_complete_and_ordered,
    ),
    (
        "lab::drop_fault_fails_only_redirect_peer",
        Needs::Root,
        drop_fault_fails_only_redirect_peer,
    ),
    (
        "lab::no_route_fault_fails_only_pod_to_host",
        Needs::Root,
        no_route_fault_fails_only_pod_to_host,
    ),
];

fn array_len(v: Option<&Value>) -> usize {
    v.and_then(Value::as_array).map(Vec::len).unwrap_or(0)
}

fn every_check_passes_with_evidence() -> TestResult {
    let run = run_probe(&[])?;
    ensure(run.code == Some(0), || {
        format!("probe exit {:?}: {}", run.code, run.stderr)
    })?;
    for o in run.observations() {
        ensure(o.outcome == Outcome::Pass, || {
            format!("{}[{}] {:?}: {}", o.check, o.variant, o.outcome, o.reason)
        })?;
    }
    // Datagrams really arrived, and the evidence says where.
    for (check, variant) in [
        ("tc.attach.tcx", "tcx"),
        ("tc.attach.legacy", "legacy"),
        ("datapath.stack-delivery", "tcx"),
    ] {
        let o = run.observation(check, variant)?;
        ensure(array_len(o.evidence.get("delivered")) == 5, || {
            format!("{check}: delivered {:?}", o.evidence.get("delivered"))
        })?;
        let matched = o.evidence["hook"]["counters"]["matched"]
            .as_u64()
            .unwrap_or(0);
        ensure(matched >= 5, || format!("{check}: hook matched {matched}"))?;
        let events = array_len(o.evidence["hook"].get("events"));
        ensure(events == 5, || {
            format!("{check}: {events} skb metadata events")
        })?;
    }
    let sd = run.observation("datapath.stack-delivery", "legacy")?;
    let ev = &sd.evidence["hook"]["events"][0];
    ensure(
        ev["protocol"] == "0x0800"
            && ev["saddr"] == "10.42.0.11"
            && ev["ifindex"].as_u64() != Some(0),
        || format!("stack-delivery metadata: {ev}"),
    )?;
    ensure(
        sd.evidence["nix_2hd_signature"] == Value::Bool(false),
        || "nix-2hd signature on a healthy path".into(),
    )?;

    for variant in ["tcx", "legacy"] {
        let rp = run.observation("datapath.redirect-peer", variant)?;
        ensure(array_len(rp.evidence.get("delivered")) == 5, || {
            format!("redirect-peer[{variant}] delivered")
        })?;
        ensure(rp.evidence["host_ip_forw_datagrams_delta"] == 0, || {
            format!("host forwarded: {:?}", rp.evidence)
        })?;
        ensure(rp.evidence["target_veth_tx_packets_delta"] == 0, || {
            format!("veth transmitted: {:?}", rp.evidence)
        })?;
        let red = run.observation("datapath.stack-delivery.redirect", variant)?;
        ensure(
            red.evidence["observer"]["counters"]["matched"].as_u64() >= Some(5),
            || format!("cilium_net hook: {:?}", red.evidence),
        )?;
    }

    let scrub = run.observation("datapath.redirect-peer.scrub", "default")?;
    let src = &scrub.evidence["source"]["events"][0];
    let dst = &scrub.evidence["destination"]["events"][0];
    ensure(src["pkt_type"] == 3, || format!("source pkt_type {src}"))?;
    ensure(dst["pkt_type"] == 0, || {
        format!("destination pkt_type {dst}")
    })?;
    ensure(dst["mark"] == "0x5c4b0001", || {
        format!("destination mark {dst}")
    })?;

    for check in ["datapath.pod-to-host", "datapath.host-to-pod"] {
        let o = run.observation(check, "default")?;
        ensure(array_len(o.evidence.get("replies_arrived")) == 5, || {
            format!("{check}: {:?}", o.evidence)
        })?;
    }
    Ok(())
}

fn every_negative_control_blocks() -> TestResult {
    let run = run_probe(&[])?;
    for o in run.observations() {
        let control = o
            .control
            .as_ref()
            .ok_or_else(|| format!("{}[{}] ran no control", o.check, o.variant))?;
        ensure(control.outcome == ControlOutcome::Blocked, || {
            format!(
                "{}[{}] control {:?}: {} {:?}",
                o.check, o.variant, control.outcome, control.reason, control.evidence
            )
        })?;
        // The control's traffic reached the point it breaks, and nothing got through.
        let delivered = control
            .evidence
            .get("delivered")
            .or_else(|| control.evidence.get("delivered_to_pod_a"));
        ensure(array_len(delivered) == 0, || {
            format!("{}: control delivered {delivered:?}", o.check)
        })?;
    }
    Ok(())
}

fn stream_is_complete_and_ordered() -> TestResult {
    let run = run_probe(&[
        "--check",
        "datapath.redirect-peer",
        "--check",
        "tc.attach.legacy",
    ])?;
    let kinds: Vec<&str> = run
        .lines
        .iter()
        .map(|l| match l {
            Line::Facts { .. } => "facts",
            Line::Plan(_) => "plan",
            Line::Observation(_) => "observation",
            Line::Done(_) => "done",
        })
        .collect();
    ensure(
        kinds
            == [
                "facts",
                "plan",
                "observation",
                "observation",
                "observation",
                "done",
            ],
        || format!("{kinds:?}"),
    )?;
    let Some(Line::Facts { facts, .. }) = run.lines.first() else {
        return Err("no facts".into());
    };
    ensure(facts.kernel.is_some() && facts.btf, || {
        format!("facts: {facts:?}")
    })?;
    ensure(facts.helpers.get("redirect_peer") == Some(&true), || {
        format!("helpers: {:?}", facts.helpers)
    })
}

/// Runs with a fault on `check` and asserts that only that check's variants fail.
fn only_check_fails(fault: &str, check: &str) -> TestResult {
    let run = run_probe(&["--fault", &format!("{check}={fault}")])?;
    let observations = run.observations();
    ensure(
        observations.len() == CATALOGUE.iter().map(|c| c.variants.len()).sum::<usize>(),
        || "missing observations".into(),
    )?;
    for o in observations {
        if o.check == check {
            ensure(o.outcome == Outcome::Fail, || {
                format!(
                    "{}[{}] with fault {fault}: {:?} {}",
                    o.check, o.variant, o.outcome, o.reason
                )
            })?;
            ensure(
                o.reason.starts_with("[injected fault")
                    && o.evidence.contains_key("injected_fault"),
                || format!("a fault-injected observation must say so: {}", o.reason),
            )?;
        } else {
            ensure(o.outcome == Outcome::Pass, || {
                format!(
                    "{}[{}] hit by fault on {check}: {}",
                    o.check, o.variant, o.reason
                )
            })?;
        }
    }
    Ok(())
}

fn drop_fault_fails_only_redirect_peer() -> TestResult {
    only_check_fails("drop", "datapath.redirect-peer")
}

fn no_route_fault_fails_only_pod_to_host() -> TestResult {
    only_check_fails("no-route", "datapath.pod-to-host")
}
