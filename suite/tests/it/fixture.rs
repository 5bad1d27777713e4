//! A fixed run covering every verdict kind, for snapshots, schema validation
//! and the benchmark. Nothing here depends on time, the host or the shipped
//! matrices, so the snapshots change only when the renderers do.

#![allow(dead_code)] // shared with the benchmark, which uses a part

use conformance_contract::{
    Control, ControlOutcome, Facts, KernelVersion, Observation, Outcome, PlannedCheck,
};
use conformance_suite::cilium_values;
use conformance_suite::env::{Environment, EnvironmentSource};
use conformance_suite::matrix::Matrix;
use conformance_suite::readiness;
use conformance_suite::report::{InstanceMeta, InstanceRun, ProbeInfo, Run, RunMeta};
use conformance_suite::select::Selection;
use conformance_suite::stream::StreamProblem;
use conformance_suite::target::{InstanceId, TargetKind};
use conformance_suite::verdict::evaluate;
use serde_json::{Map, Value, json};
use std::path::Path;

/// The snapshot run's matrix: the real scrub condition, plus one expected
/// failure that passes so the unexpected-pass path is shown.
pub const MATRIX: &str = r#"schema = 1
environment = "vm"

[[expect]]
check = "datapath.stack-delivery"
outcome = "pass"
reason = "TC_ACT_OK must reach the host stack (nix-2hd)"
reference = "https://docs.cilium.io/en/stable/network/ebpf/intro/"

[[expect]]
check = "datapath.redirect-peer.scrub"
outcome = "pass"
reason = "fixed kernels scrub"
reference = "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git/commit/?id=c4327229948879814229b46aa26a750718888503"

[[expect.unless]]
when = "(kernel >= 6.2-rc1 and kernel < 6.6.91) or (kernel >= 6.7-rc1 and kernel < 6.12.29)"
outcome = "fail"
failure = "not-scrubbed"
reason = "CVE-2025-37959 unfixed before 6.6.91"
reference = "https://nvd.nist.gov/vuln/detail/CVE-2025-37959"

[[expect]]
check = "datapath.host-to-pod"
outcome = "fail"
failure = "not-delivered"
reason = "fixture: pretend host routes are known broken here"
reference = "https://example.invalid/fixture"

[[fact]]
fact = "helper.skb_store_bytes"
expected = "kernel >= 6.7"
reason = "fixture: pretend the helper arrived in 6.7"
"#;

pub fn matrix() -> Matrix {
    Matrix::parse(Path::new("fixtures/matrix/vm.toml"), MATRIX).expect("fixture matrix is valid")
}

/// `Facts::example()` on a 6.6 kernel without the scrub fix.
pub fn facts() -> Facts {
    let mut f = Facts::example();
    f.kernel_release = "6.6.80-example".into();
    f.kernel = Some(KernelVersion::new(6, 6, 80));
    f.helpers.insert("skb_store_bytes".into(), false);
    f
}

fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("evidence is an object"),
    }
}

fn blocked(description: &str) -> Option<Control> {
    Some(Control {
        description: description.into(),
        outcome: ControlOutcome::Blocked,
        reason: "0/5 datagrams delivered".into(),
        evidence: map(json!({"sent": 5, "received": 0})),
    })
}

pub fn obs(
    check: &str,
    variant: &str,
    outcome: Outcome,
    reason: &str,
    evidence: Value,
    control: Option<Control>,
    ms: f64,
) -> Observation {
    Observation {
        check: check.into(),
        variant: variant.into(),
        outcome,
        reason: reason.into(),
        evidence: map(evidence),
        failure: None,
        missing_facts: Vec::new(),
        control,
        duration_ms: ms,
    }
}

/// Builders for the fields only some observations carry.
pub trait ObservationExt {
    fn failing(self, code: &str) -> Self;
    fn missing(self, facts: &[&str]) -> Self;
}

impl ObservationExt for Observation {
    fn failing(mut self, code: &str) -> Self {
        self.failure = Some(code.into());
        self
    }
    fn missing(mut self, facts: &[&str]) -> Self {
        self.missing_facts = facts.iter().map(|f| f.to_string()).collect();
        self
    }
}

/// The run's plan, fixed so the snapshots do not change when the catalogue grows:
/// the checks the fixture's observations are written for; one is never observed.
const PLAN: &[&str] = &[
    "tc.attach.tcx",
    "tc.attach.legacy",
    "datapath.stack-delivery",
    "datapath.stack-delivery.redirect",
    "datapath.redirect-peer",
    "datapath.redirect-peer.scrub",
    "datapath.pod-to-host",
    "datapath.host-to-pod",
];

/// The catalogue's entries for [`PLAN`], with the variants the fixture's
/// observations are written for: a variant added later (the `ipv6` ones) is
/// left out, as a check added later is.
fn catalogue() -> Vec<conformance_contract::CheckSpec> {
    use conformance_contract::catalogue::{ATTACH_MODES, ATTACH_MODES_AND_IPV6};
    conformance_contract::CATALOGUE
        .iter()
        .filter(|c| PLAN.contains(&c.id))
        .map(|c| {
            let mut c = *c;
            if c.variants == ATTACH_MODES_AND_IPV6 {
                c.variants = ATTACH_MODES;
            }
            c
        })
        .collect()
}

pub fn plan() -> Vec<PlannedCheck> {
    Selection::all().plan(&catalogue())
}

/// Readiness judged against the fixed plan's checks only, so the snapshots do
/// not change when the catalogue grows (a needed check outside [`PLAN`] reads as
/// not checked by this suite yet).
fn pin_readiness(instance: &mut InstanceRun) {
    instance.readiness = readiness::assess_with(
        conformance_contract::SETTINGS,
        &catalogue(),
        &instance.verdicts,
    );
}

/// A team's Helm values for [`values_run`]: kube-proxy-free, BPF masquerading,
/// native routing, TCX by default.
pub const VALUES: &str = "kubeProxyReplacement: true\nk8sServiceHost: 127.0.0.1\nroutingMode: native\nbpf:\n  masquerade: true\n";

/// [`run`] with `--cilium-values cilium-values.yaml` ([`VALUES`]): the lab's TCX
/// stack delivery is broken, so the values' base datapath and TCX attach cannot
/// run there (exit 1 even without the regression).
pub fn values_run(strict: bool) -> Run {
    let mut run = run(strict);
    let values = cilium_values::parse(Path::new("cilium-values.yaml"), VALUES)
        .expect("fixture values parse");
    run.apply_cilium_values(&values);
    run
}

pub fn observations() -> Vec<Observation> {
    let ok = |check: &str, variant: &str, ms: f64| {
        obs(
            check,
            variant,
            Outcome::Pass,
            "5/5 datagrams reached 10.42.0.1:47474 in ns host",
            json!({"sent": 5, "received": 5}),
            blocked("program returns TC_ACT_SHOT"),
            ms,
        )
    };
    vec![
        ok("tc.attach.tcx", "tcx", 38.5),
        ok("tc.attach.legacy", "legacy", 44.0),
        obs(
            "datapath.stack-delivery",
            "tcx",
            Outcome::Fail,
            "5/5 passed the hook at lxc1a2b3a ingress (tcx); host Ip InReceives +0: lost between the hook and the host's IP layer; 0/5 at 198.18.0.10:47474",
            json!({"sent": 5, "received": 0, "hops": [{"hop": "lxc1a2b3a ingress hook", "count": 5}, {"hop": "host Ip InReceives", "count": 0}, {"hop": "socket 198.18.0.10:47474", "count": 0}]}),
            blocked("program returns TC_ACT_SHOT"),
            41.25,
        )
        .failing("not-delivered"),
        obs(
            "datapath.stack-delivery",
            "legacy",
            Outcome::Pass,
            "5/5 datagrams reached 10.42.0.1:47474 in ns host",
            json!({"sent": 5, "received": 5}),
            Some(Control {
                description: "program returns TC_ACT_SHOT".into(),
                outcome: ControlOutcome::Leaked,
                reason: "5/5 datagrams delivered although the program drops them".into(),
                evidence: map(json!({"sent": 5, "received": 5})),
            }),
            52.0,
        ),
        obs(
            "datapath.stack-delivery.redirect",
            "tcx",
            Outcome::Unsupported,
            "needs helper.skb_store_bytes here",
            json!({}),
            None,
            0.0,
        )
        .missing(&["helper.skb_store_bytes"]),
        obs(
            "datapath.stack-delivery.redirect",
            "legacy",
            Outcome::Error,
            "attach tc ingress on veth-c1a2: netlink said \"Operation not permitted\" <EPERM> & gave up",
            json!({"errno": 1, "step": "qdisc_add_clsact"}),
            None,
            3.0,
        ),
        ok("datapath.redirect-peer", "tcx", 61.0),
        // datapath.redirect-peer[legacy]: the stream ends before it.
        obs(
            "datapath.redirect-peer.scrub",
            "default",
            Outcome::Fail,
            "0/5 frames with a foreign destination MAC delivered; pkt_type stayed OTHERHOST (3)",
            json!({"sent": 5, "received": 0, "pkt_type_at_source": 3, "pkt_type_at_destination": 3, "mark_kept": true}),
            blocked("plain bpf_redirect to pod B's host-side veth instead of bpf_redirect_peer"),
            73.0,
        )
        .failing("not-scrubbed"),
        ok("datapath.pod-to-host", "default", 12.0),
        ok("datapath.host-to-pod", "default", 11.5),
    ]
}

pub fn meta(strict: bool) -> RunMeta {
    RunMeta {
        run_id: "r20250601-120000-abc123".into(),
        started_at: "2025-06-01T12:00:00Z".into(),
        duration_ms: 12_345.6,
        target: "lab".into(),
        strict,
        selection: vec![],
        cilium_values: None,
    }
}

/// The lab host's instance, judged by the fixture matrix as `vm`.
pub fn instance_meta() -> InstanceMeta {
    InstanceMeta {
        instance: InstanceId::new(TargetKind::Lab, "this host", "x86_64"),
        environment: Environment::Vm,
        environment_source: EnvironmentSource::Given,
        matrix: "fixtures/matrix/vm.toml".into(),
        probe: ProbeInfo {
            version: "0.1.0".into(),
            ebpf_objects: "committed objects, sha256 0123abcd".into(),
        },
        duration_ms: 11_800.0,
    }
}

/// The lab host: every verdict kind, and a stream cut short.
pub fn lab_instance() -> InstanceRun {
    let facts = facts();
    let verdicts = evaluate(&matrix(), &facts, &plan(), &observations());
    let problems = vec![
        StreamProblem::NoDone { observations: 10 },
        StreamProblem::Missing {
            planned: 11,
            seen: 10,
        },
    ];
    let mut instance = InstanceRun::new(instance_meta(), facts, verdicts, problems);
    pin_readiness(&mut instance);
    instance
}

pub fn run(strict: bool) -> Run {
    Run::new(meta(strict), vec![lab_instance()])
}

/// A node container on an arm64 6.12 kernel with the scrub fix, judged as
/// `container` (detected), whose stream started after two lines of container logs.
pub fn container_instance() -> InstanceRun {
    let matrix = Matrix::parse(
        Path::new("fixtures/matrix/container.toml"),
        &MATRIX.replace("environment = \"vm\"", "environment = \"container\""),
    )
    .expect("fixture matrix is valid");
    let mut facts = facts();
    facts.kernel_release = "6.12.30-orbstack".into();
    facts.kernel = Some(KernelVersion::new(6, 12, 30));
    facts.arch = "aarch64".into();
    facts.page_size = 16384;
    facts.virtualization.container = Some("docker".into());
    facts.virtualization.container_mode = Some("privileged".into());
    facts.helpers.insert("skb_store_bytes".into(), true);
    let observations: Vec<Observation> = plan()
        .iter()
        .map(|p| {
            obs(
                &p.check,
                &p.variant,
                Outcome::Pass,
                "5/5 datagrams reached 10.42.0.1:47474 in ns host",
                json!({"sent": 5, "received": 5}),
                blocked("program returns TC_ACT_SHOT"),
                20.0,
            )
        })
        .collect();
    let verdicts = evaluate(&matrix, &facts, &plan(), &observations);
    let meta = InstanceMeta {
        instance: InstanceId::new(TargetKind::Container, "cc-abc123", "aarch64"),
        environment: Environment::Container,
        environment_source: EnvironmentSource::Detected {
            why: "running inside a container (runtime: docker)".into(),
        },
        matrix: "fixtures/matrix/container.toml".into(),
        probe: ProbeInfo {
            version: "0.1.0, started docker".into(),
            ebpf_objects: "committed objects, sha256 0123abcd".into(),
        },
        duration_ms: 2_100.0,
    };
    let mut instance = InstanceRun::new(meta, facts, verdicts, vec![]);
    pin_readiness(&mut instance);
    instance.preamble = vec![
        "time=\"2025-06-01T12:00:01Z\" level=info msg=\"starting node\"".into(),
        "mounting bpffs at /sys/fs/bpf".into(),
    ];
    instance
}

/// `--target lab,container`: the lab host and a node container side by side.
pub fn two_instance_run(strict: bool) -> Run {
    let mut meta = meta(strict);
    meta.target = "lab,container".into();
    Run::new(meta, vec![lab_instance(), container_instance()])
}
