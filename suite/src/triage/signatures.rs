//! Known failure signatures, matched from a run's report alone: each names a
//! situation seen before, why it looks like that, and where to read more.
//!
//! A match belongs to an instance and, when a row (check, variant) shows it, to
//! that row; facts-only matches (a node container whose bpffs is not shared, a
//! kernel without TCX) belong to the instance.

use super::detail::foreign_programs;
use super::hops::{Hop, hops};
use crate::report::{InstanceRun, Run};
use crate::verdict::{Verdict, VerdictKind};
use conformance_contract::Outcome;
use serde_json::{Map, Value};

/// A known signature.
#[derive(Debug, PartialEq, Eq)]
pub struct Signature {
    /// Stable id (`stack-delivery-lost`).
    pub id: &'static str,
    pub title: &'static str,
    /// Why it looks like this, and what to do.
    pub reason: &'static str,
    pub link: &'static str,
}

pub const STACK_DELIVERY_LOST: Signature = Signature {
    id: "stack-delivery-lost",
    title: "stack delivery lost after a TC program handed the packet to the stack (the nix-2hd incident)",
    reason: "The hook on the pod's host-side veth matched every packet and returned TC_ACT_OK, and a later hop in the host namespace saw fewer: the kernel lost them between the program's return and the host stack. This is the nix-2hd incident (k3s in NixOS VMs under Incus under Colima on Apple Silicon); Cilium's `-> stack` trace line (flow 0x0, ifindex 0, orig-ip 0.0.0.0) is normal there and says nothing of the loss. The first missing hop says where to look (Ip InReceives: before IP; Udp InDatagrams: between IP and UDP); drops.txt has the kernel's own reason where skb:kfree_skb was readable.",
    link: "README.md#the-checks",
};

pub const POD_STACK_DELIVERY_LOST: Signature = Signature {
    id: "pod-stack-delivery-lost",
    title: "stack delivery lost inside a pod, after the packets reached its eth0",
    reason: "The observer's hook on the pod's own eth0 ingress matched every packet Cilium delivered, and a later hop inside the pod (its IP or UDP counters, its socket) saw fewer: the pod's stack lost them after the interface, the nix-2hd class of failure on the pod's side. The first missing hop says where (Ip InReceives: before IP; Udp InDatagrams: between IP and UDP, a filter or a full socket buffer in the pod).",
    link: "README.md#the-cluster-target",
};

pub const POD_INGRESS_NOT_REACHED: Signature = Signature {
    id: "pod-ingress-not-reached",
    title: "packets for a pod never reached its eth0",
    reason: "The sender's socket sent every packet and the observer's hook on the pod's eth0 ingress saw fewer: they were lost on the node, in Cilium's to-container path (bpf_redirect_peer from the host or a native device, or the veth), before the pod. Look at the node's Cilium agent log (cluster/agent-logs/) and `cilium-dbg monitor --type drop` on that node.",
    link: "README.md#the-cluster-target",
};

pub const NESTED_ARM64: Signature = Signature {
    id: "nested-virtualization-arm64",
    title: "nested virtualization on arm64, with that stack-delivery loss",
    reason: "The loss after TC_ACT_OK on an aarch64 guest that runs nested (a VM in a VM, or a container in one) is the environment of the nix-2hd incident, where TCX and legacy tc, tunnel and native routing, BPF and legacy host routing all lost the packets alike. Compare with the same kernel booted one level up, and report the hypervisor chain (Colima/Lima, Incus, QEMU/HVF).",
    link: "README.md#cilium-conformance",
};

pub const TCX_LEGACY_DIFFER: Signature = Signature {
    id: "tcx-legacy-differ",
    title: "TCX and legacy tc differ on the same path",
    reason: "The same check passes with one attach mode and fails with the other, so the path works and the attach mode breaks it. A field report of this shape (arm64, kernel 6.12, monitor shows `-> stack`, tcpdump sees nothing) was resolved by switching Cilium to the mode that passes here (Helm `bpf.enableTCX`).",
    link: "https://docs.cilium.io/en/stable/helm-reference/",
};

pub const FOREIGN_PROGRAM: Signature = Signature {
    id: "foreign-program",
    title: "a BPF program this suite did not attach is on the path",
    reason: "Another program (a CNI, a security agent, a leftover of an earlier Cilium) runs where the check's packets pass and may drop, redirect or rewrite them. bpf.txt lists it with its id, name and tag (`bpftool prog show id N` tells more); detach it or run the check where it is not.",
    link: "https://github.com/torvalds/linux/blob/master/tools/bpf/bpftool/Documentation/bpftool-net.rst",
};

pub const BPFFS_PROPAGATION: Signature = Signature {
    id: "bpffs-propagation-k3d",
    title: "bpffs mount propagation missing in a k3d node",
    reason: "Cilium's agent mounts a bpffs at /sys/fs/bpf through a Bidirectional hostPath and fails with \"/sys/fs/bpf is not a shared or slave mount\" unless the node makes its mounts shared. k3d's K3D_FIX_MOUNTS (`mount --make-rshared /` in the node entrypoint) does that, on by default since k3d 5.6.1; on older k3d set K3D_FIX_MOUNTS=1, and on macOS see k3d #363.",
    link: "https://github.com/k3d-io/k3d/pull/1268",
};

pub const TCX_UNSUPPORTED: Signature = Signature {
    id: "tcx-unsupported",
    title: "TCX unsupported on this kernel",
    reason: "The kernel refused a TCX link (BPF_TCX_INGRESS): TCX arrived in 6.6. Cilium then attaches with legacy tc (clsact + cls_bpf), which the legacy variants check; netkit, which forces TCX, is not available.",
    link: "https://docs.cilium.io/en/stable/operations/system_requirements/",
};

pub const SCRUB_UNFIXED: Signature = Signature {
    id: "scrub-unfixed-cve-2025-37959",
    title: "kernel without the CVE-2025-37959 scrub fix",
    reason: "bpf_redirect_peer did not scrub the skb: the frames kept pkt_type OTHERHOST in the peer namespace and were dropped, the signature of a kernel without commit c4327229948879814229b46aa26a750718888503 (fixed in 6.15-rc6 and stable 6.1.139, 6.6.91, 6.12.29, 6.14.7). For Cilium this drops IPsec traffic decrypted on the host in the pod (XfrmInNoPols). Update the kernel, or the Docker VM's kernel for a k3d node.",
    link: "https://nvd.nist.gov/vuln/detail/CVE-2025-37959",
};

/// Every signature, in the order a summary lists them.
pub const SIGNATURES: &[&Signature] = &[
    &STACK_DELIVERY_LOST,
    &POD_STACK_DELIVERY_LOST,
    &POD_INGRESS_NOT_REACHED,
    &NESTED_ARM64,
    &TCX_LEGACY_DIFFER,
    &FOREIGN_PROGRAM,
    &BPFFS_PROPAGATION,
    &TCX_UNSUPPORTED,
    &SCRUB_UNFIXED,
];

/// A signature seen in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub signature: &'static Signature,
    /// The instance's label (`lab/this host`).
    pub instance: String,
    /// `(check, variant)` when a row shows it; `None` for a facts-only match.
    pub row: Option<(String, String)>,
    /// What in the run matched: `hook lxc1 ... matched 5/5, then host Ip InReceives 0/5`.
    pub evidence: String,
}

/// Every match over every instance, instance by instance, in [`SIGNATURES`] order
/// within an instance, then row order.
pub fn find(run: &Run) -> Vec<Match> {
    let mut out = Vec::new();
    for instance in &run.instances {
        let mut found = instance_matches(instance);
        found.sort_by_key(|m| SIGNATURES.iter().position(|s| *s == m.signature));
        out.extend(found);
    }
    out
}

fn failed(v: &Verdict) -> bool {
    v.verdict != VerdictKind::Pass
        && v.observation
            .as_ref()
            .is_some_and(|o| o.outcome == Outcome::Fail)
}

fn evidence(v: &Verdict) -> Option<&Map<String, Value>> {
    v.observation.as_ref().map(|o| &o.evidence)
}

/// The nix-2hd shape: a `hook ... matched` hop saw every packet, and a later
/// path hop in the host namespace saw fewer.
fn stack_loss(hops: &[Hop]) -> Option<String> {
    let full = |h: &Hop| h.of.is_some_and(|of| of > 0 && h.count >= of);
    let hook = hops.iter().position(|h| {
        h.role == "path" && h.at.starts_with("hook ") && h.at.ends_with(" matched") && full(h)
    })?;
    let later = hops[hook + 1..].iter().find(|h| {
        h.role == "path" && h.at.starts_with("host ") && h.of.is_some_and(|of| h.count < of)
    })?;
    Some(format!("{}, then {}", hops[hook].show(), later.show()))
}

/// `cluster.stack-delivery`'s two shapes: the observer on the pod's eth0 saw
/// every packet and a later hop in the pod fewer (`Ok`), or the sender sent
/// them all and the observer saw fewer (`Err`).
fn pod_loss(hops: &[Hop]) -> Option<Result<String, String>> {
    let full = |h: &Hop| h.of.is_some_and(|of| of > 0 && h.count >= of);
    let short = |h: &Hop| h.of.is_some_and(|of| h.count < of);
    let observer = hops.iter().position(|h| {
        h.role == "path" && h.at.starts_with("observer ") && h.at.ends_with(" matched")
    })?;
    let sent = hops[..observer]
        .iter()
        .find(|h| h.role == "path" && h.at.starts_with("sent from "));
    if short(&hops[observer]) {
        let sent = sent.filter(|h| full(h))?;
        return Some(Err(format!(
            "{}, then {}",
            sent.show(),
            hops[observer].show()
        )));
    }
    let later = hops[observer + 1..]
        .iter()
        .find(|h| h.role == "path" && short(h))?;
    Some(Ok(format!(
        "{}, then {}",
        hops[observer].show(),
        later.show()
    )))
}

fn instance_matches(instance: &InstanceRun) -> Vec<Match> {
    let label = instance.label();
    let facts = &instance.facts;
    let mut out = Vec::new();
    let mut push = |signature: &'static Signature, v: Option<&Verdict>, evidence: String| {
        out.push(Match {
            signature,
            instance: label.clone(),
            row: v.map(|v| (v.check.clone(), v.variant.clone())),
            evidence,
        })
    };
    let nested_arm64 = facts.arch == "aarch64" && facts.virtualization.nested == Some(true);
    for v in &instance.verdicts {
        let Some(ev) = evidence(v) else { continue };
        if v.check == "datapath.stack-delivery"
            && failed(v)
            && let Some(what) = stack_loss(&hops(ev))
        {
            push(&STACK_DELIVERY_LOST, Some(v), what.clone());
            if nested_arm64 {
                push(
                    &NESTED_ARM64,
                    Some(v),
                    format!(
                        "arch {}, nested (facts: {}); {what}",
                        facts.arch,
                        facts
                            .notes
                            .get("nested")
                            .map_or("nested true", String::as_str)
                    ),
                );
            }
        }
        if v.check == "cluster.stack-delivery"
            && failed(v)
            && let Some(loss) = pod_loss(&hops(ev))
        {
            match loss {
                Ok(what) => push(&POD_STACK_DELIVERY_LOST, Some(v), what),
                Err(what) => push(&POD_INGRESS_NOT_REACHED, Some(v), what),
            }
        }
        let triages = [
            ev.get("triage"),
            v.observation
                .as_ref()
                .and_then(|o| o.control.as_ref())
                .and_then(|c| c.evidence.get("triage")),
        ];
        let foreign: Vec<String> = triages
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .flat_map(foreign_programs)
            .collect();
        if !foreign.is_empty() {
            push(&FOREIGN_PROGRAM, Some(v), foreign.join("; "));
        }
        if v.check == "datapath.redirect-peer.scrub"
            && v.observation.as_ref().and_then(|o| o.failure.as_deref()) == Some("not-scrubbed")
        {
            push(
                &SCRUB_UNFIXED,
                Some(v),
                format!(
                    "failure not-scrubbed on kernel {} (upstream {})",
                    facts.kernel_release,
                    facts
                        .notes
                        .get("kernel.upstream")
                        .map_or("not known", String::as_str)
                ),
            );
        }
        if v.check == "env.bpffs.propagation" && failed(v) && v.verdict != VerdictKind::ExpectedFail
        {
            push(
                &BPFFS_PROPAGATION,
                Some(v),
                format!(
                    "{} failed ({}) where it is expected to pass",
                    v.name(),
                    v.observation
                        .as_ref()
                        .and_then(|o| o.failure.as_deref())
                        .unwrap_or("no failure code")
                ),
            );
        }
        let tcx_missing = v.variant == "tcx"
            && v.observation.as_ref().is_some_and(|o| {
                o.outcome == Outcome::Unsupported && o.missing_facts.iter().any(|f| f == "tcx")
            });
        if tcx_missing {
            push(
                &TCX_UNSUPPORTED,
                Some(v),
                format!("{} is {} (missing fact tcx)", v.name(), v.verdict),
            );
        }
    }
    // TCX and legacy on the same check: one passes, the other fails.
    for v in instance.verdicts.iter().filter(|v| failed(v)) {
        let other = match v.variant.as_str() {
            "tcx" => "legacy",
            "legacy" => "tcx",
            _ => continue,
        };
        if let Some(pass) = instance
            .verdicts
            .iter()
            .find(|p| p.check == v.check && p.variant == other && p.verdict == VerdictKind::Pass)
        {
            push(
                &TCX_LEGACY_DIFFER,
                Some(v),
                format!("{} pass, {} {}", pass.name(), v.name(), v.verdict),
            );
        }
    }
    // Facts alone.
    let propagation = facts.bpffs.propagation.as_deref();
    if let Some(runtime) = &facts.virtualization.container
        && propagation != Some("shared")
    {
        push(
            &BPFFS_PROPAGATION,
            None,
            format!(
                "in a {runtime} container whose /sys/fs/bpf propagation is {} (fact bpffs.propagation)",
                propagation.unwrap_or("not measured")
            ),
        );
    }
    if facts.tcx == Some(false) {
        push(
            &TCX_UNSUPPORTED,
            None,
            format!(
                "fact tcx is false on kernel {}{}",
                facts.kernel_release,
                facts
                    .notes
                    .get("tcx")
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ),
        );
    }
    out
}
