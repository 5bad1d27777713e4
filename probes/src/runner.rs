//! One probe run: facts, plan, one observation per planned (check, variant), done,
//! each printed as a JSON line the moment it exists so a reader sees progress and a
//! killed probe leaves a visibly truncated stream.

use crate::checks::{self, Ctx, Fault};
use crate::{facts, objects};
use anyhow::{Context, Result, bail};
use conformance_contract::pods::is_pod_level;
use conformance_contract::{
    CATALOGUE, CheckSpec, Done, FactValue, Facts, Line, Observation, Outcome, Plan, PlannedCheck,
    SCHEMA,
};
use serde_json::Map;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

pub struct RunOptions {
    pub run_id: String,
    /// `check` or `check[variant]`; empty runs everything.
    pub select: Vec<String>,
    pub faults: BTreeMap<String, Fault>,
    /// Add `evidence.triage` to every observation that does not pass.
    pub triage: bool,
    /// Checks run at once; 0 picks [`default_jobs`]. Triage runs one at a time.
    pub jobs: usize,
}

/// Checks at once by default: most of a check's time is spent waiting for
/// packets and links, not on a CPU, so twice the CPUs (at most 8) keeps a
/// small machine busy without starving the controls' grace periods.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get() * 2)
        .clamp(2, 8)
}

/// Resolves selectors (`id` or `id[variant]`; none: all of this probe's checks)
/// to planned (check, variant) pairs in catalogue order.
pub fn plan(select: &[String]) -> Result<Vec<(&'static CheckSpec, &'static str)>> {
    let mut wanted: Vec<(&str, Option<&str>)> = Vec::new();
    for s in select {
        let (id, variant) = match s.split_once('[') {
            Some((id, rest)) => (id, Some(rest.trim_end_matches(']'))),
            None => (s.as_str(), None),
        };
        let Some(spec) = conformance_contract::find_check(id) else {
            bail!(
                "unknown check `{id}` (known: {})",
                CATALOGUE
                    .iter()
                    .map(|c| c.id)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        if let Some(v) = variant
            && !spec.variants.contains(&v)
        {
            bail!(
                "check `{id}` has no variant `{v}` (has: {})",
                spec.variants.join(", ")
            );
        }
        wanted.push((id, variant));
    }
    let mut out = Vec::new();
    // Pod-level checks run in the cluster target's client pods, never here: a
    // selection naming them (and nothing else) plans nothing for this probe.
    for spec in CATALOGUE.iter().filter(|c| !is_pod_level(c.id)) {
        for variant in spec.variants {
            if wanted.is_empty()
                || wanted
                    .iter()
                    .any(|(id, v)| *id == spec.id && v.is_none_or(|v| v == *variant))
            {
                out.push((spec, *variant));
            }
        }
    }
    Ok(out)
}

/// Why a variant cannot run here: the facts it needs that were measured false
/// (the variant is `unsupported`, and the suite asks the matrix whether that is
/// expected), or that could not be measured at all (the run says nothing about
/// the primitive, so the observation is an `error`, never `unsupported`).
#[derive(Debug, Default, PartialEq, Eq)]
struct Missing {
    absent: Vec<String>,
    unmeasured: Vec<String>,
}

fn missing_requirements(spec: &CheckSpec, variant: &str, facts: &Facts) -> Missing {
    let mut missing = Missing::default();
    for key in spec.requirements(variant) {
        match facts.get(key) {
            Some(FactValue::Bool(true)) => {}
            Some(_) => missing.absent.push(key.to_string()),
            None => missing.unmeasured.push(key.to_string()),
        }
    }
    missing
}

/// `tcx (BPF_LINK_CREATE: EINVAL)`: a fact key with the note that says why.
fn with_note(key: &str, facts: &Facts) -> String {
    match facts.notes.get(key) {
        Some(note) => format!("{key} ({note})"),
        None => key.to_string(),
    }
}

fn not_run(spec: &CheckSpec, variant: &str, missing: Missing, facts: &Facts) -> Observation {
    let notes = |keys: &[String]| {
        keys.iter()
            .map(|k| with_note(k, facts))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (outcome, reason, missing_facts) = if missing.unmeasured.is_empty() {
        (
            Outcome::Unsupported,
            format!("needs {} here", notes(&missing.absent)),
            missing.absent,
        )
    } else {
        (
            Outcome::Error,
            format!(
                "could not measure {}, which this check needs: whether it works here is unknown",
                notes(&missing.unmeasured)
            ),
            Vec::new(),
        )
    };
    Observation {
        check: spec.id.to_string(),
        variant: variant.to_string(),
        outcome,
        reason,
        evidence: Map::new(),
        failure: None,
        missing_facts,
        control: None,
        duration_ms: 0.0,
    }
}

fn emit(out: &mut impl Write, line: &Line) -> Result<()> {
    writeln!(out, "{}", line.to_json()).context("write to stdout")?;
    out.flush().context("flush stdout")
}

pub fn run(opts: &RunOptions, out: &mut impl Write) -> Result<()> {
    let started = Instant::now();
    let planned = plan(&opts.select)?;
    for check in opts.faults.keys() {
        if conformance_contract::find_check(check).is_none() {
            bail!("--fault names unknown check `{check}`");
        }
    }
    let facts = facts::gather(objects::HOOK, objects::HELPER_PROBE);
    let probe_version = format!(
        "{} (ebpf {} {})",
        env!("CARGO_PKG_VERSION"),
        objects::SOURCE,
        objects::STAMP
    );
    emit(
        out,
        &Line::Facts {
            schema: SCHEMA,
            probe_version,
            run_id: opts.run_id.clone(),
            facts: facts.clone(),
        },
    )?;
    let checks = planned
        .iter()
        .map(|(s, v)| PlannedCheck {
            check: s.id.to_string(),
            variant: v.to_string(),
        })
        .collect();
    emit(out, &Line::Plan(Plan { checks }))?;

    let _triage = opts
        .triage
        .then(|| crate::triage::Session::start(&opts.run_id));
    let ctx = Ctx {
        run_id: &opts.run_id,
        tcx: facts.tcx == Some(true),
        faults: &opts.faults,
    };
    let run_one = |spec: &'static CheckSpec, variant: &'static str| {
        let missing = missing_requirements(spec, variant, &facts);
        if missing == Missing::default() {
            checks::run(spec, variant, &ctx)
        } else {
            not_run(spec, variant, missing, &facts)
        }
    };
    // Triage scopes its evidence to "the check running now", so it runs one at a time.
    let jobs = match (opts.triage, opts.jobs) {
        (true, _) => 1,
        (false, 0) => default_jobs(),
        (false, n) => n,
    }
    .min(planned.len().max(1));
    if jobs == 1 {
        for (spec, variant) in &planned {
            emit(out, &Line::Observation(run_one(spec, variant)))?;
        }
    } else {
        // Each check builds its own namespaces, devices, programs and sockets, so
        // checks share nothing but the facts; observations are printed as they
        // finish (the plan line says what to expect).
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (tx, rx) = std::sync::mpsc::channel::<Observation>();
        std::thread::scope(|scope| -> Result<()> {
            for _ in 0..jobs {
                let tx = tx.clone();
                let (next, planned, run_one) = (&next, &planned, &run_one);
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((spec, variant)) = planned.get(i) else {
                            break;
                        };
                        if tx.send(run_one(spec, variant)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            for observation in rx {
                emit(out, &Line::Observation(observation))?;
            }
            Ok(())
        })?;
    }
    emit(
        out,
        &Line::Done(Done {
            observations: planned.len(),
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_all_or_selected_variants() {
        let all = plan(&[]).unwrap();
        assert_eq!(
            all.len(),
            CATALOGUE
                .iter()
                .filter(|c| !is_pod_level(c.id))
                .map(|c| c.variants.len())
                .sum::<usize>()
        );
        assert!(all.iter().all(|(s, _)| !is_pod_level(s.id)));
        // Only pod-level checks named: nothing for this probe (not everything).
        assert!(plan(&["cluster.dns[default]".into()]).unwrap().is_empty());
        let one = plan(&["datapath.redirect-peer[legacy]".into()]).unwrap();
        assert_eq!(
            one.iter().map(|(s, v)| (s.id, *v)).collect::<Vec<_>>(),
            vec![("datapath.redirect-peer", "legacy")]
        );
        assert!(
            plan(&["datapath.nope".into()])
                .unwrap_err()
                .to_string()
                .contains("unknown check")
        );
        assert!(
            plan(&["datapath.redirect-peer[xdp]".into()])
                .unwrap_err()
                .to_string()
                .contains("no variant")
        );
    }

    #[test]
    fn absent_facts_make_a_variant_unsupported_unmeasured_ones_an_error() {
        let spec = conformance_contract::find_check("datapath.redirect-peer").unwrap();
        let mut facts = Facts::example();
        facts.tcx = Some(false);
        facts
            .notes
            .insert("tcx".into(), "BPF_LINK_CREATE: EINVAL".into());
        let missing = missing_requirements(spec, "tcx", &facts);
        assert_eq!(missing.absent, vec!["tcx".to_string()]);
        let o = not_run(spec, "tcx", missing, &facts);
        assert_eq!(o.outcome, Outcome::Unsupported);
        assert_eq!(o.missing_facts, vec!["tcx".to_string()]);
        assert_eq!(o.reason, "needs tcx (BPF_LINK_CREATE: EINVAL) here");
        assert_eq!(
            missing_requirements(spec, "legacy", &facts),
            Missing::default()
        );
        // TCX that could not be measured (EPERM) is not absent either.
        facts.tcx = None;
        let missing = missing_requirements(spec, "tcx", &facts);
        assert_eq!(missing.unmeasured, vec!["tcx".to_string()]);
        assert_eq!(
            not_run(spec, "tcx", missing, &facts).outcome,
            Outcome::Error
        );
        facts.tcx = Some(false);

        // A helper the probe could not test (a failed load, EPERM) is not absent.
        facts.helpers.remove("redirect_peer");
        facts.notes.insert(
            "helper.redirect_peer".into(),
            "not measured: load: EPERM".into(),
        );
        let missing = missing_requirements(spec, "legacy", &facts);
        assert_eq!(missing.unmeasured, vec!["helper.redirect_peer".to_string()]);
        let o = not_run(spec, "legacy", missing, &facts);
        assert_eq!(o.outcome, Outcome::Error);
        assert!(o.missing_facts.is_empty());
        assert!(
            o.reason
                .starts_with("could not measure helper.redirect_peer (not measured: load: EPERM)"),
            "{}",
            o.reason
        );
    }

    #[test]
    fn a_kernel_without_ipv6_makes_every_ipv6_variant_unsupported_and_nothing_else() {
        let mut facts = Facts::example();
        facts.ipv6 = Some(false);
        facts.notes.insert(
            "ipv6".into(),
            "socket(AF_INET6) in a new network namespace: EAFNOSUPPORT".into(),
        );
        for spec in conformance_contract::CATALOGUE {
            for variant in spec.variants {
                let missing = missing_requirements(spec, variant, &facts);
                if *variant != "ipv6" {
                    assert!(
                        !missing.absent.iter().any(|f| f == "ipv6"),
                        "{}[{variant}]",
                        spec.id
                    );
                    continue;
                }
                assert_eq!(missing.absent, vec!["ipv6".to_string()], "{}", spec.id);
                let o = not_run(spec, variant, missing, &facts);
                assert_eq!(o.outcome, Outcome::Unsupported, "{}", spec.id);
                assert!(o.reason.contains("EAFNOSUPPORT"), "{}", o.reason);
            }
        }
        // Not measured: an error, as for every other fact.
        facts.ipv6 = None;
        let spec = conformance_contract::find_check("datapath.fib-lookup").unwrap();
        let missing = missing_requirements(spec, "ipv6", &facts);
        assert_eq!(missing.unmeasured, vec!["ipv6".to_string()]);
    }
}
