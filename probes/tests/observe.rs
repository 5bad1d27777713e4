//! `cluster.stack-delivery` against the real kernel: `probe observe` inside a
//! pod's network namespace (the lab node's pod A, a real veth) attaches the hook
//! to the pod's eth0 ingress; `probe connect`'s sender runs from the node's host
//! namespace and from pod B, and the observation is checked: a healthy path
//! passes with its control blocked; a firewall rule in the pod after the hook,
//! and a drop on the node before the pod's interface, each fail with the hop
//! where the burst was last seen and the first where it was missing.
//!
//! These need root and BPF; where either is missing each test is reported as
//! ignored with the reason printed once, never as passed.

use conformance_contract::pods::{ConnectCheck, ConnectPlan, ConnectTarget};
use conformance_contract::{ControlOutcome, Observation, Outcome};
use conformance_ebpf_common::{HookConfig, action};
use conformance_probes::hooks::{AttachMode, Direction, Hook};
use conformance_probes::netns::NetNs;
use conformance_probes::pods::connect::{self, Options};
use conformance_probes::pods::observe::{AttachChoice, Observer};
use conformance_probes::topology::Node;
use libtest_mimic::{Arguments, Trial};
use std::net::IpAddr;

type TestResult = Result<(), String>;
type Test = fn() -> TestResult;

const UDP_PORT: u16 = 47090;
const SESSION_PORT: u16 = 47091;

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let missing = conformance_probes::kernel_support::lab_missing();
    if let Some(why) = &missing {
        eprintln!("observe tests are ignored here: {why}");
    }
    let tests: [(&str, Test); 5] = [
        (
            "a_burst_into_the_pod_passes_and_its_dropping_control_is_blocked",
            delivered_from_host_and_pod,
        ),
        (
            "a_firewall_in_the_pod_after_the_hook_is_named_as_the_loss",
            firewall_after_the_hook,
        ),
        (
            "a_drop_on_the_node_before_the_pod_s_interface_is_named",
            drop_before_the_pod,
        ),
        (
            "an_observer_without_its_hook_says_why",
            observer_without_hook,
        ),
        (
            "probe_observe_works_with_only_the_capabilities_its_manifest_grants",
            observe_with_manifest_capabilities,
        ),
    ];
    let cannot_drop = cannot_drop_to_observe_caps();
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            let drops = name.starts_with("probe_observe_works_with_only");
            if let (true, Some(why)) = (drops, &cannot_drop) {
                eprintln!("{name} is ignored here: {why}");
            }
            Trial::test(name, move || f().map_err(Into::into))
                .with_ignored_flag(missing.is_some() || (drops && cannot_drop.is_some()))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

fn e(e: anyhow::Error) -> String {
    format!("{e:#}")
}

/// Starts `probe observe`'s server inside pod A of `node`, watching `device`.
fn observe_in(ns: &NetNs, device: &str, attach: AttachChoice) -> TestResult {
    let observer = ns
        .run(|| {
            Observer::start("pod-a", device, UDP_PORT, SESSION_PORT, attach)
                .map_err(anyhow::Error::from)
        })
        .map_err(e)?;
    eprintln!("{}", observer.banner());
    std::thread::spawn(move || observer.serve());
    Ok(())
}

fn deliver_plan(client: &str, variant: &str, to: IpAddr) -> ConnectPlan {
    ConnectPlan {
        client: client.into(),
        node: "lab".into(),
        attempts: 3,
        timeout_ms: 2000,
        checks: vec![ConnectCheck {
            check: "cluster.stack-delivery".into(),
            variant: variant.into(),
            description: "pod-a (pod IP)".into(),
            target: ConnectTarget::Deliver {
                observer: "pod-a".into(),
                host: to.to_string(),
                port: UDP_PORT,
                session_port: SESSION_PORT,
            },
        }],
    }
}

/// Runs `plan`'s one check from inside `from`.
fn run_from(from: &NetNs, plan: &ConnectPlan) -> Result<Observation, String> {
    let mut all = from
        .run(|| Ok(connect::run(plan, &Options::default())))
        .map_err(e)?;
    assert_eq!(all.len(), 1);
    let obs = all.remove(0);
    eprintln!(
        "{}: {:?} in {:.1} ms: {}",
        plan.client, obs.outcome, obs.duration_ms, obs.reason
    );
    if let Some(c) = &obs.control {
        eprintln!("  control {:?}: {}", c.outcome, c.reason);
    }
    Ok(obs)
}

fn control_outcome(obs: &Observation) -> Option<ControlOutcome> {
    obs.control.as_ref().map(|c| c.outcome)
}

fn hop_counts(obs: &Observation) -> Vec<(String, u64)> {
    obs.evidence["hops"]
        .as_array()
        .map(|hops| {
            hops.iter()
                .filter(|h| h["role"] == "path")
                .map(|h| {
                    (
                        h["at"].as_str().unwrap_or_default().to_string(),
                        h["count"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn delivered_from_host_and_pod() -> TestResult {
    let node = Node::build("observe").map_err(e)?;
    let pod_a = node.pods[0].ip.into();
    // Pod B reaches pod A through the node's routing, as over a plain veth CNI.
    node.host
        .write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(e)?;
    observe_in(&node.pods[0].ns, "eth0", AttachChoice::Auto)?;
    for (from, client, variant) in [
        (&node.host, "host-client", "from-host"),
        (&node.pods[1].ns, "client", "from-pod"),
    ] {
        let obs = run_from(from, &deliver_plan(client, variant, pod_a))?;
        if obs.outcome != Outcome::Pass {
            return Err(format!("{variant}: {:?}: {}", obs.outcome, obs.reason));
        }
        if control_outcome(&obs) != Some(ControlOutcome::Blocked) {
            return Err(format!("{variant}: control {:?}", obs.control));
        }
        let hops = hop_counts(&obs);
        // sender, hook, Ip InReceives, Udp InDatagrams, socket: each counted 5
        // (the IP layer also counts the session's own TCP segments).
        let counts: Vec<u64> = hops.iter().map(|(_, n)| *n).collect();
        if counts.len() != 5 || counts[2] < 5 || [0, 1, 3, 4].iter().any(|&i| counts[i] != 5) {
            return Err(format!("{variant}: hops {hops:?}"));
        }
        if !hops[1].0.contains("eth0 ingress") {
            return Err(format!(
                "{variant}: the hook is not on eth0 ingress: {hops:?}"
            ));
        }
        let control = obs.control.as_ref().expect("checked above");
        if control.evidence["matched"] != 5
            || control.evidence["delivered"] != serde_json::json!([])
        {
            return Err(format!(
                "{variant}: control evidence {:?}",
                control.evidence
            ));
        }
    }
    Ok(())
}

/// An nf_tables input rule in pod A drops the burst after the hook passed it.
fn firewall_after_the_hook() -> TestResult {
    use conformance_probes::nft::{Chain, Hook as NfHook, Match, Nft, Rule, Statement, Table};
    let node = Node::build("observe").map_err(e)?;
    let pod_a = node.pods[0].ip.into();
    observe_in(
        &node.pods[0].ns,
        "eth0",
        AttachChoice::Only(AttachMode::Tcx),
    )?;
    node.pods[0]
        .ns
        .run(|| {
            Nft::new()?.apply(&Table {
                name: "cc-observe-fault".into(),
                chains: vec![Chain {
                    name: "input",
                    hook: NfHook::Input,
                    priority: 0,
                    rules: vec![Rule {
                        label: "drop the burst",
                        matches: vec![Match::UdpDport(UDP_PORT)],
                        statements: vec![Statement::Drop],
                    }],
                }],
            })
        })
        .map_err(e)?;
    let obs = run_from(&node.host, &deliver_plan("host-client", "from-host", pod_a))?;
    let hops = hop_counts(&obs);
    let counts: Vec<u64> = hops.iter().map(|(_, n)| *n).collect();
    if obs.outcome != Outcome::Fail
        || obs.failure.as_deref() != Some("not-delivered")
        || counts.len() != 5
        || counts[..2] != [5, 5]
        || counts[2] < 5
        || counts[3..] != [0, 0]
    {
        return Err(format!(
            "{:?} {:?}: {} ({hops:?})",
            obs.outcome, obs.failure, obs.reason
        ));
    }
    // Last seen at the pod's IP layer, first missing at its UDP layer.
    if !obs
        .reason
        .contains("lost between pod-a Ip InReceives and pod-a Udp InDatagrams")
    {
        return Err(format!("reason: {}", obs.reason));
    }
    let counted = node.pods[0]
        .ns
        .run(|| Nft::new()?.counters("cc-observe-fault"))
        .map_err(e)?;
    // The positive burst and the control's: the control's never reached the rule.
    if counted.iter().map(|c| c.packets).sum::<u64>() != 5 {
        return Err(format!("rule counters: {counted:?}"));
    }
    // The hook still saw the control's burst and dropped it: the witness holds.
    if control_outcome(&obs) != Some(ControlOutcome::Blocked) {
        return Err(format!("control {:?}", obs.control));
    }
    Ok(())
}

/// A hook on the node's side of pod A's veth (its egress, towards the pod)
/// drops the burst: the observer never sees it.
fn drop_before_the_pod() -> TestResult {
    let node = Node::build("observe").map_err(e)?;
    let pod_a = node.pods[0].ip.into();
    observe_in(&node.pods[0].ns, "eth0", AttachChoice::Auto)?;
    let config = HookConfig {
        dport: UDP_PORT,
        action: action::DROP,
        ..Default::default()
    };
    let _fault = Hook::attach(
        &node.host,
        &node.pods[0].lxc.name,
        Direction::Egress,
        AttachMode::Tcx,
        config,
    )
    .map_err(e)?;
    let obs = run_from(&node.host, &deliver_plan("host-client", "from-host", pod_a))?;
    let hops = hop_counts(&obs);
    if obs.outcome != Outcome::Fail || hops.first().map(|h| h.1) != Some(5) || hops[1].1 != 0 {
        return Err(format!("{:?}: {} ({hops:?})", obs.outcome, obs.reason));
    }
    if !obs.reason.contains(
        "lost between sent from host-client (node lab)'s socket and observer eth0 ingress",
    ) {
        return Err(format!("reason: {}", obs.reason));
    }
    // Nothing reached the hook the control breaks at: the control cannot conclude.
    if control_outcome(&obs) != Some(ControlOutcome::Error) {
        return Err(format!("control {:?}", obs.control));
    }
    Ok(())
}

fn observer_without_hook() -> TestResult {
    let node = Node::build("observe").map_err(e)?;
    let pod_a = node.pods[0].ip.into();
    observe_in(&node.pods[0].ns, "nosuch0", AttachChoice::Auto)?;
    let obs = run_from(&node.host, &deliver_plan("host-client", "from-host", pod_a))?;
    if obs.outcome != Outcome::Error
        || !obs.reason.contains("cannot watch its interface")
        || !obs.reason.contains("nosuch0")
    {
        return Err(format!("{:?}: {}", obs.outcome, obs.reason));
    }
    Ok(())
}

/// The capabilities `suite/src/cluster/manifests.rs` gives the observer
/// container (BPF 39, NET_ADMIN 12, PERFMON 38, SYS_RESOURCE 24), as `CapEff`.
const OBSERVE_CAPS: u64 = (1 << 39) | (1 << 12) | (1 << 38) | (1 << 24);

/// Kills the child on every way out of the test.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The built `probe observe`, in pod A's netns, through `setpriv` with the
/// bounding set cut to the container's capabilities: no CAP_SYS_ADMIN (so no
/// setns), as in a pod. The check must still pass, with its control blocked.
fn observe_with_manifest_capabilities() -> TestResult {
    use std::io::{BufRead, BufReader};
    use std::os::fd::{AsFd, AsRawFd};
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let setpriv = which("setpriv").map_err(|()| "no setpriv".to_string())?;
    let node = Node::build("observe").map_err(e)?;
    let pod_a = node.pods[0].ip.into();
    let fd = node.pods[0].ns.as_fd().as_raw_fd();
    let mut cmd = Command::new(setpriv);
    cmd.args([
        "--bounding-set=-all,+bpf,+net_admin,+perfmon,+sys_resource",
        "--inh-caps=-all",
        "--",
        env!("CARGO_BIN_EXE_probe"),
        "observe",
        "--name",
        "pod-a",
        "--udp",
        &UDP_PORT.to_string(),
        "--session",
        &SESSION_PORT.to_string(),
    ])
    .stderr(Stdio::piped());
    // SAFETY: setns(2) on a descriptor the parent keeps open; async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = Child(cmd.spawn().map_err(|err| format!("spawn setpriv: {err}"))?);
    let stderr = child.0.stderr.take().expect("piped");
    let mut banner = String::new();
    BufReader::new(stderr)
        .read_line(&mut banner)
        .map_err(|err| err.to_string())?;
    eprintln!("{}", banner.trim_end());
    if !banner.contains("hook on eth0 ingress") {
        return Err(format!("the observer did not attach: {banner}"));
    }
    let eff = caps(&format!("/proc/{}/status", child.0.id()), "CapEff:")?;
    // What this test may hand on: a container running it may lack some (often
    // CAP_SYS_RESOURCE), and then so does the observer.
    let expected = OBSERVE_CAPS & caps("/proc/self/status", "CapBnd:")?;
    if eff != expected || eff & (1 << 21) != 0 {
        return Err(format!("CapEff {eff:#x}, expected {expected:#x}"));
    }
    let obs = run_from(&node.host, &deliver_plan("host-client", "from-host", pod_a))?;
    if obs.outcome != Outcome::Pass || control_outcome(&obs) != Some(ControlOutcome::Blocked) {
        return Err(format!(
            "{:?}: {} (control {:?})",
            obs.outcome, obs.reason, obs.control
        ));
    }
    Ok(())
}

/// Why this process cannot show the observer working with only its
/// container's capabilities: no `setpriv`, or a bounding set without the ones
/// it needs (a container engine that predates CAP_BPF and CAP_PERFMON hands
/// out neither; there bpf(2) works only through CAP_SYS_ADMIN).
fn cannot_drop_to_observe_caps() -> Option<String> {
    if which("setpriv").is_err() {
        return Some("no setpriv (util-linux) to drop capabilities with".into());
    }
    let needed = OBSERVE_CAPS & !(1 << 24);
    match caps("/proc/self/status", "CapBnd:") {
        Ok(bounding) if bounding & needed == needed => None,
        Ok(bounding) => Some(format!(
            "this process's capability bounding set ({bounding:#x}) lacks some of CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN ({needed:#x}), so the observer cannot be given them"
        )),
        Err(e) => Some(e),
    }
}

/// A capability set line of a `/proc/<pid>/status`.
fn caps(status: &str, field: &str) -> Result<u64, String> {
    std::fs::read_to_string(status)
        .map_err(|err| format!("{status}: {err}"))?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| format!("no {field} in {status}"))
}

fn which(tool: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .ok_or(())
}
