//! The shape of `run.json` (schema 2): run-wide fields at the top, one entry per
//! instance (its identity, environment, matrix, probe, facts, stream problems and
//! counts), and one flat list of verdicts, each naming its instance.
//!
//! Flat verdicts keep questions across instances one filter away
//! (`.verdicts[] | select(.verdict == "regression")`), and a one-instance report
//! reads as schema 1 did where it matters to tools: `verdicts`, `counts`, `probe`.

use super::{Counts, InstanceRun, ProbeInfo, Run, RunMeta};
use crate::verdict::Verdict;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub(super) struct RunDoc {
    schema: u32,
    suite_version: String,
    #[serde(flatten)]
    meta: RunMeta,
    /// The probes that ran: one instance's, or each distinct value joined by `; `.
    /// Each instance has its own in `instances[].probe`.
    probe: ProbeInfo,
    /// Over every instance.
    counts: Counts,
    instances: Vec<InstanceRun>,
    verdicts: Vec<InstanceVerdict>,
    /// With several instances (a kernel matrix, host beside guests): the check ×
    /// instance table the terminal and summary.md show, one verdict word per cell
    /// in `columns` order (`-` where an instance has no verdict for the row).
    /// Derived from `verdicts`; ignored when a report is read back.
    #[serde(default, skip_serializing_if = "Option::is_none", skip_deserializing)]
    table: Option<Table>,
}

#[derive(Serialize, Deserialize)]
struct Table {
    /// Instance labels (`lab/this host`, `vm/6.12-arm64-16k`).
    columns: Vec<String>,
    rows: Vec<TableRow>,
}

#[derive(Serialize, Deserialize)]
struct TableRow {
    check: String,
    variant: String,
    verdicts: Vec<String>,
}

impl Table {
    fn of(run: &Run) -> Option<Table> {
        if run.instances.len() < 2 {
            return None;
        }
        let rows = run
            .check_rows()
            .into_iter()
            .map(|(check, variant)| TableRow {
                verdicts: run
                    .instances
                    .iter()
                    .map(|i| {
                        i.verdict(&check, &variant)
                            .map_or("-", |v| v.verdict.as_str())
                            .to_string()
                    })
                    .collect(),
                check,
                variant,
            })
            .collect();
        Some(Table {
            columns: run.instances.iter().map(|i| i.label()).collect(),
            rows,
        })
    }
}

/// A verdict with the label (`lab/this host`) of the instance it belongs to.
#[derive(Serialize, Deserialize)]
struct InstanceVerdict {
    instance: String,
    #[serde(flatten)]
    verdict: Verdict,
}

impl From<Run> for RunDoc {
    fn from(run: Run) -> RunDoc {
        let probe = probe_summary(&run.instances);
        let table = Table::of(&run);
        let mut verdicts = Vec::new();
        let mut instances = run.instances;
        for i in &mut instances {
            let label = i.label();
            verdicts.extend(std::mem::take(&mut i.verdicts).into_iter().map(|verdict| {
                InstanceVerdict {
                    instance: label.clone(),
                    verdict,
                }
            }));
        }
        RunDoc {
            schema: run.schema,
            suite_version: run.suite_version,
            meta: run.meta,
            probe,
            counts: run.counts,
            instances,
            verdicts,
            table,
        }
    }
}

impl TryFrom<RunDoc> for Run {
    type Error = String;
    fn try_from(doc: RunDoc) -> Result<Run, String> {
        let mut instances = doc.instances;
        for v in doc.verdicts {
            let owner = instances
                .iter_mut()
                .find(|i| i.label() == v.instance)
                .ok_or_else(|| {
                    format!("a verdict names instance `{}`, not in the run", v.instance)
                })?;
            owner.verdicts.push(v.verdict);
        }
        Ok(Run {
            schema: doc.schema,
            suite_version: doc.suite_version,
            meta: doc.meta,
            instances,
            counts: doc.counts,
        })
    }
}

fn probe_summary(instances: &[InstanceRun]) -> ProbeInfo {
    let mut distinct: Vec<&ProbeInfo> = Vec::new();
    for i in instances {
        if !distinct.contains(&&i.meta.probe) {
            distinct.push(&i.meta.probe);
        }
    }
    let join = |f: fn(&ProbeInfo) -> &str| {
        let parts: Vec<&str> = distinct.iter().map(|p| f(p)).collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join("; ")
        }
    };
    ProbeInfo {
        version: join(|p| &p.version),
        ebpf_objects: join(|p| &p.ebpf_objects),
    }
}
