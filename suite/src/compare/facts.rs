//! What changed about where the checks ran: an instance's facts, its
//! environment, matrix and probe, and the run's own settings, as
//! `fact: baseline → current` rows, so "redirect-peer regressed" sits next to
//! "kernel 6.12.29 → 6.12.41".

use crate::report::{InstanceRun, Run, fact_rows};
use serde::{Deserialize, Serialize};

/// One fact that differs; `None` where a run does not have it at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactChange {
    pub fact: String,
    pub baseline: Option<String>,
    pub current: Option<String>,
}

impl FactChange {
    /// `6.12.29 → 6.12.41`, `(absent)` for a missing side.
    pub fn arrow(&self) -> String {
        format!(
            "{} → {}",
            self.baseline.as_deref().unwrap_or("(absent)"),
            self.current.as_deref().unwrap_or("(absent)")
        )
    }
}

/// An instance's facts and settings as (name, value) rows: [`fact_rows`] with
/// each helper on its own row (`helper.redirect_peer`), after the environment,
/// the matrix and the probe that judged and produced them.
pub fn instance_rows(i: &InstanceRun) -> Vec<(String, String)> {
    let mut rows = vec![
        ("environment".to_string(), i.meta.environment.to_string()),
        ("matrix".to_string(), i.meta.matrix.clone()),
        ("probe".to_string(), i.meta.probe.version.clone()),
        (
            "ebpf_objects".to_string(),
            i.meta.probe.ebpf_objects.clone(),
        ),
    ];
    for (name, value) in fact_rows(&i.facts) {
        if name == "helpers" {
            rows.extend(
                i.facts
                    .helpers
                    .iter()
                    .map(|(h, ok)| (format!("helper.{h}"), ok.to_string())),
            );
        } else {
            rows.push((name, value));
        }
    }
    rows
}

/// The run's own settings: suite version, target, strictness, selection.
pub fn run_rows(run: &Run) -> Vec<(String, String)> {
    let selection = if run.meta.selection.is_empty() {
        "every check".to_string()
    } else {
        run.meta.selection.join(",")
    };
    vec![
        ("schema".to_string(), run.schema.to_string()),
        ("suite_version".to_string(), run.suite_version.clone()),
        ("target".to_string(), run.meta.target.clone()),
        ("strict".to_string(), run.meta.strict.to_string()),
        ("selection".to_string(), selection),
    ]
}

/// Rows that differ, in the baseline's order, then rows only the current has.
pub fn diff_rows(baseline: &[(String, String)], current: &[(String, String)]) -> Vec<FactChange> {
    let find = |rows: &[(String, String)], key: &str| {
        rows.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    };
    let mut changes: Vec<FactChange> = baseline
        .iter()
        .filter_map(|(k, b)| {
            let c = find(current, k);
            (c.as_deref() != Some(b.as_str())).then(|| FactChange {
                fact: k.clone(),
                baseline: Some(b.clone()),
                current: c,
            })
        })
        .collect();
    changes.extend(
        current
            .iter()
            .filter(|(k, _)| find(baseline, k).is_none())
            .map(|(k, c)| FactChange {
                fact: k.clone(),
                baseline: None,
                current: Some(c.clone()),
            }),
    );
    changes
}

/// The facts and settings of one instance that differ between two runs.
pub fn facts_diff(baseline: &InstanceRun, current: &InstanceRun) -> Vec<FactChange> {
    diff_rows(&instance_rows(baseline), &instance_rows(current))
}

/// The run settings that differ.
pub fn run_diff(baseline: &Run, current: &Run) -> Vec<FactChange> {
    diff_rows(&run_rows(baseline), &run_rows(current))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{Environment, EnvironmentSource};
    use crate::report::{InstanceMeta, ProbeInfo};
    use crate::target::{InstanceId, TargetKind};
    use conformance_contract::{Facts, KernelVersion};

    fn instance(facts: Facts) -> InstanceRun {
        InstanceRun::new(
            InstanceMeta {
                instance: InstanceId::new(TargetKind::Lab, "this host", "x86_64"),
                environment: Environment::Vm,
                environment_source: EnvironmentSource::Given,
                matrix: "fixtures/matrix/vm.toml".into(),
                probe: ProbeInfo {
                    version: "0.1.0".into(),
                    ebpf_objects: "shipped".into(),
                },
                duration_ms: 1.0,
            },
            facts,
            vec![],
            vec![],
        )
    }

    #[test]
    fn same_facts_no_rows() {
        let a = instance(Facts::example());
        assert_eq!(facts_diff(&a, &a.clone()), vec![]);
    }

    #[test]
    fn changed_facts_are_named_with_both_values() {
        let a = instance(Facts::example());
        let mut f = Facts::example();
        f.kernel_release = "6.12.41".into();
        f.kernel = Some(KernelVersion::new(6, 12, 41));
        f.arch = "aarch64".into();
        f.virtualization.nested = Some(true);
        f.virtualization.container = Some("docker".into());
        f.tcx = None;
        f.helpers.insert("redirect_peer".into(), false);
        f.bpffs.propagation = Some("shared".into());
        let mut b = instance(f);
        b.meta.environment = Environment::Container;
        b.meta.probe.version = "0.2.0".into();
        let changes = facts_diff(&a, &b);
        let got: Vec<(String, String)> = changes
            .iter()
            .map(|c| (c.fact.clone(), c.arrow()))
            .collect();
        let want: Vec<(String, String)> = [
            ("environment", "vm → container"),
            ("probe", "0.1.0 → 0.2.0"),
            ("kernel", "6.18.44-example → 6.12.41"),
            ("kernel.upstream", "6.18.44 → 6.12.41"),
            ("arch", "x86_64 → aarch64"),
            ("container", "none → docker"),
            ("nested", "false → true"),
            ("tcx", "true → not measured"),
            (
                "bpffs",
                "not mounted, propagation private → not mounted, propagation shared",
            ),
            ("helper.redirect_peer", "true → false"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_fact_only_one_side_has_is_absent_on_the_other() {
        let a = instance(Facts::example());
        let mut f = Facts::example();
        f.cilium_version = Some("1.18.2".into());
        f.helpers.remove("csum_level");
        let b = instance(f);
        let changes = facts_diff(&a, &b);
        assert_eq!(
            changes,
            vec![
                FactChange {
                    fact: "helper.csum_level".into(),
                    baseline: Some("true".into()),
                    current: None
                },
                FactChange {
                    fact: "cilium".into(),
                    baseline: None,
                    current: Some("1.18.2".into())
                },
            ]
        );
        assert_eq!(changes[0].arrow(), "true → (absent)");
    }
}
