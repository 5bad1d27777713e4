//! The real lab checks on this kernel: every check passes with evidence, every
//! negative control blocks, and a broken datapath turns exactly the right check
//! into a failure.

use crate::support::{Needs, ProbeRun, Test, TestResult, ensure, expected_observations, run_probe};
use conformance_contract::{ControlOutcome, Line, Outcome};
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
        "lab::controls_break_only_the_decisive_step",
        Needs::Root,
        controls_break_only_the_decisive_step,
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

/// The evidence as a `Value`, so a key a check no longer writes reads as null
/// (and fails the assertion that needs it) instead of panicking.
fn evidence_of(o: &conformance_contract::Observation) -> Value {
    Value::Object(o.evidence.clone())
}

fn array_len(v: Option<&Value>) -> usize {
    v.and_then(Value::as_array).map(Vec::len).unwrap_or(0)
}

/// A full run exited 0 and printed one observation per catalogue variant and a
/// `done` line: the loops over its observations below then cover every check.
fn complete(run: &ProbeRun) -> TestResult {
    ensure(run.code == Some(0), || {
        format!("probe exit {:?}: {}", run.code, run.stderr)
    })?;
    let n = run.observations().len();
    ensure(n == expected_observations(), || {
        format!(
            "{n} observations, the catalogue has {} variants: {}",
            expected_observations(),
            run.stderr
        )
    })?;
    ensure(matches!(run.lines.last(), Some(Line::Done(_))), || {
        "no done line: the stream is truncated".into()
    })
}

fn every_check_passes_with_evidence() -> TestResult {
    let run = run_probe(&[])?;
    complete(&run)?;
    for o in run.observations() {
        let want = crate::support::clean_outcome(&o.check, &o.variant);
        ensure(o.outcome == want, || {
            format!(
                "{}[{}] {:?}, want {want:?}: {}",
                o.check, o.variant, o.outcome, o.reason
            )
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
        let e = evidence_of(o);
        let matched = e["hook"]["counters"]["matched"].as_u64().unwrap_or(0);
        ensure(matched >= 5, || format!("{check}: hook matched {matched}"))?;
        let events = array_len(e["hook"].get("events"));
        ensure(events == 5, || {
            format!("{check}: {events} skb metadata events")
        })?;
    }
    let sd = run.observation("datapath.stack-delivery", "legacy")?;
    let sd = evidence_of(sd);
    let ev = &sd["hook"]["events"][0];
    ensure(
        ev["protocol"] == "0x0800"
            && ev["saddr"] == "10.42.0.11"
            && ev["ifindex"].as_u64() != Some(0),
        || format!("stack-delivery metadata: {ev}"),
    )?;

    // The IPv6 variants sent IPv6: the hooks recorded 0x86dd frames between the
    // dual-stack plan's addresses, and the hops are the Ip6/Udp6 counters.
    for (check, daddr) in [
        ("datapath.stack-delivery", "fd00:198:18::10"),
        ("datapath.stack-delivery.redirect", "fd00:198:18::10"),
        ("datapath.redirect-peer", "fd00:42::12"),
        ("datapath.redirect-neigh", "fd00:42::12"),
    ] {
        let e = evidence_of(run.observation(check, "ipv6")?);
        let ev = &e["hook"]["events"][0];
        ensure(
            e["family"] == "IPv6"
                && ev["protocol"] == "0x86dd"
                && ev["saddr"] == "fd00:42::11"
                && ev["daddr"] == daddr
                && array_len(e.get("delivered")) == 5,
            || format!("{check}[ipv6] evidence: {e}"),
        )?;
        let hops = e["hops"].as_array().cloned().unwrap_or_default();
        ensure(
            hops.iter().any(|h| {
                h["at"]
                    .as_str()
                    .is_some_and(|a| a.ends_with("Udp6 InDatagrams"))
                    && h["count"] == 5
            }) && hops
                .iter()
                .filter(|h| h["role"] == "path")
                .all(|h| h["count"] == 5),
            || {
                format!(
                    "{check}[ipv6] hops (every path hop exactly 5: nothing but the datagrams): {hops:?}"
                )
            },
        )?;
    }

    // bpf_fib_lookup with AF_INET6: the answers the IPv6 routes give, both bursts
    // delivered where the answers send them, nothing forwarded by the host.
    let e = evidence_of(run.observation("datapath.fib-lookup", "ipv6")?);
    let ev = &e["hook"]["events"][0];
    ensure(
        e["lookup"]["family"] == "IPv6"
            && e["lookup"]["input_forwarding"] == true
            && ev["protocol"] == "0x86dd"
            && e["routes_say"]["pod_b"]["dst"] == "fd00:42::12"
            && e["routes_say"]["pod_b"]["answer"]
                .as_str()
                .is_some_and(|a| a.starts_with("SUCCESS via ifindex") && a.contains("dmac"))
            && e["routes_say"]["node"]["dst"] == "fd00:198:18::10"
            && e["routes_say"]["node"]["answer"] == "NOT_FWDED"
            && array_len(e["to_pod_b"].get("delivered")) == 5
            && array_len(e["to_node"].get("delivered")) == 5
            && e["host_ip_forw_datagrams_delta"] == 0,
        || format!("datapath.fib-lookup[ipv6] evidence: {e}"),
    )?;

    for variant in ["tcx", "legacy", "ipv6"] {
        let rp = run.observation("datapath.redirect-peer", variant)?;
        ensure(array_len(rp.evidence.get("delivered")) == 5, || {
            format!("redirect-peer[{variant}] delivered")
        })?;
        ensure(evidence_of(rp)["host_ip_forw_datagrams_delta"] == 0, || {
            format!("host forwarded: {:?}", rp.evidence)
        })?;
        ensure(evidence_of(rp)["target_veth_tx_packets_delta"] == 0, || {
            format!("veth transmitted: {:?}", rp.evidence)
        })?;
        // The hook counts what the helper really redirected (TC_ACT_REDIRECT).
        ensure(
            evidence_of(rp)["hook"]["counters"]["redirected"].as_u64() >= Some(5),
            || format!("hook redirected: {:?}", rp.evidence),
        )?;
        let red = run.observation("datapath.stack-delivery.redirect", variant)?;
        ensure(
            evidence_of(red)["observer"]["counters"]["matched"].as_u64() >= Some(5),
            || format!("cilium_net hook: {:?}", red.evidence),
        )?;
    }

    let scrub = run.observation("datapath.redirect-peer.scrub", "default")?;
    let scrub = evidence_of(scrub);
    let src = &scrub["source"]["events"][0];
    let dst = &scrub["destination"]["events"][0];
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
    complete(&run)?;
    for o in run.observations() {
        // Not run here (its precondition fact is missing): no control to judge;
        // `every_check_passes_with_evidence` checks it is reported unsupported.
        if crate::support::unsupported_here(&o.check, &o.variant) {
            continue;
        }
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
        // Blocked means the control failed the check's own test; a control may still
        // deliver (a plain redirect instead of the peer redirect), so what it shows
        // is in its evidence, which must be there.
        ensure(!control.evidence.is_empty(), || {
            format!("{}[{}]: control without evidence", o.check, o.variant)
        })?;
    }
    Ok(())
}

/// A control differs from its check only in the decisive step, so the witness the
/// check relies on must visibly move on the control's traffic: the bypass witness
/// on a plain redirect, the pkt_type witness on a path that does not scrub, the
/// redirect witness when the redirect is skipped.
fn controls_break_only_the_decisive_step() -> TestResult {
    let run = run_probe(&[
        "--check",
        "datapath.redirect-peer",
        "--check",
        "datapath.redirect-peer.scrub",
        "--check",
        "datapath.stack-delivery.redirect",
    ])?;
    ensure(run.code == Some(0) && run.observations().len() == 7, || {
        format!(
            "exit {:?}, {} observations",
            run.code,
            run.observations().len()
        )
    })?;
    let control = |check: &str, variant: &str| -> Result<Value, String> {
        let o = run.observation(check, variant)?;
        let c = o
            .control
            .as_ref()
            .ok_or_else(|| format!("{check}[{variant}] ran no control"))?;
        ensure(c.outcome == ControlOutcome::Blocked, || {
            format!("{check}[{variant}] control {:?}: {}", c.outcome, c.reason)
        })?;
        Ok(Value::Object(c.evidence.clone()))
    };
    for variant in ["tcx", "legacy", "ipv6"] {
        // Peer flag cleared: delivered, and pod B's host-side veth transmits it.
        let c = control("datapath.redirect-peer", variant)?;
        ensure(
            array_len(c.get("delivered")) == 5
                && c["target_veth_tx_packets_delta"].as_u64() >= Some(5),
            || format!("redirect-peer[{variant}] control: {c}"),
        )?;
        // Redirect skipped: delivered, and cilium_net's ingress sees none of it.
        let c = control("datapath.stack-delivery.redirect", variant)?;
        ensure(
            array_len(c.get("delivered")) == 5 && array_len(c["observer"].get("events")) == 0,
            || format!("stack-delivery.redirect[{variant}] control: {c}"),
        )?;
    }
    // No scrub on the way: pod B's observer sees the frames as OTHERHOST, and
    // none is delivered, which is what an unfixed kernel shows on the peer path.
    let c = control("datapath.redirect-peer.scrub", "default")?;
    let events = c["destination"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure(
        events.len() == 5
            && events.iter().all(|e| e["pkt_type"] == 3)
            && array_len(c.get("delivered")) == 0,
        || format!("scrub control: {c}"),
    )?;
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
    complete(&run)?;
    for o in run.observations() {
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
            let want = crate::support::clean_outcome(&o.check, &o.variant);
            ensure(o.outcome == want, || {
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
