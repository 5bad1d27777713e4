//! What the probe measured about where it runs, before any check.
//!
//! Matrices condition expectations on facts by dotted key (`kernel`, `tcx`,
//! `helper.redirect_peer`, ...). [`FACT_KEYS`] is the closed list of those keys,
//! so a matrix naming an unknown fact is rejected when it is loaded, not ignored.

use crate::KernelVersion;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// BPF helpers whose availability is recorded as `helper.<name>` facts: the ones
/// the checks use and the ones Cilium's agent probes for TC programs.
pub const HELPERS: &[&str] = &[
    "redirect",
    "redirect_peer",
    "redirect_neigh",
    "fib_lookup",
    "skb_store_bytes",
    "skb_change_tail",
    "csum_level",
    "ringbuf_output",
    "skb_set_tunnel_key",
    "skb_get_tunnel_key",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Facts {
    /// `uname -r`.
    pub kernel_release: String,
    /// Parsed from `kernel_release`; `None` when it does not start with a version.
    pub kernel: Option<KernelVersion>,
    /// The distribution's kernel package, when the running kernel names it
    /// (`/proc/version` on Debian, `/proc/version_signature` on Ubuntu). A
    /// distribution backports fixes under a fixed `uname -r` (`6.1.0-56-cloud-amd64`
    /// is package 6.1.192-1): this is what a backported fix is tied to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_package: Option<KernelPackage>,
    /// `uname -m` (`x86_64`, `aarch64`).
    pub arch: String,
    /// Bytes per page (4096, 16384 on Apple-Silicon-like arm64 kernels).
    pub page_size: u64,
    pub virtualization: Virtualization,
    /// `/sys/kernel/btf/vmlinux` exists.
    pub btf: bool,
    /// `net.core.bpf_jit_enable` (0 off, 1 on, 2 debug); `None` if unreadable.
    pub jit: Option<u8>,
    pub bpffs: Bpffs,
    /// Mount point of the cgroup v2 hierarchy, if any.
    pub cgroup2: Option<String>,
    /// A TC program could be attached through TCX (`BPF_LINK_CREATE` with
    /// `BPF_TCX_INGRESS`): `false` when the kernel refused it as unknown, `None`
    /// when it could not be measured (EPERM, a failed load; `notes["tcx"]` says why).
    /// Lines before this was optional carry a plain boolean.
    pub tcx: Option<bool>,
    /// `cgroup.sock_addr`: cgroup v2 sock_addr programs (connect4, sendmsg4,
    /// recvmsg4, getpeername4) could be attached to a child of the probe's cgroup:
    /// `false` when the kernel refused them or there is no writable cgroup v2 tree
    /// to attach to, `None` when it could not be measured (`notes["cgroup.sock_addr"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_sock_addr: Option<bool>,
    /// A netkit device could be created: `false` when the kernel has no netkit
    /// driver, `None` when it could not be measured (`notes["netkit"]` says why).
    pub netkit: Option<bool>,
    /// `vxlan` / `geneve`: a collect-metadata (`external`) tunnel device of that kind
    /// could be created, as Cilium's `routingMode: tunnel` creates `cilium_vxlan` /
    /// `cilium_geneve`: `false` when the kernel does not know the kind (built without
    /// CONFIG_VXLAN / CONFIG_GENEVE, or the module cannot be loaded here), `None`
    /// when it could not be measured (`notes["vxlan"]`, `notes["geneve"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geneve: Option<bool>,
    /// A fresh network namespace can do IPv6, as the `[ipv6]` variants' dual-stack
    /// node needs: the kernel has IPv6 (`/proc/sys/net/ipv6` and
    /// `/proc/net/if_inet6` there, an `AF_INET6` socket can be made). `false` when
    /// it has none (built without CONFIG_IPV6, or `ipv6.disable=1` at boot;
    /// `notes["ipv6"]` says which it could tell), `None` when it could not be
    /// measured (`notes["ipv6"]`). Lines before this fact omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<bool>,
    /// `xfrm.esp`: an ESP tunnel-mode state (`rfc4106(gcm(aes))`, what Cilium's
    /// IPsec uses) could be added in a fresh network namespace over
    /// `NETLINK_XFRM`: `false` when the kernel refused it (no xfrm_user, no ESP
    /// type, no such AEAD in its crypto API; `notes["xfrm.esp"]` has the kernel's
    /// answer), `None` when it could not be measured. Lines before this fact omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xfrm_esp: Option<bool>,
    /// `helper.<name>`: a TC program calling the helper passed the verifier.
    pub helpers: BTreeMap<String, bool>,
    /// `/sys/class/dmi/id/sys_vendor` (`Hetzner` on Hetzner Cloud, `QEMU`), if readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_vendor: Option<String>,
    /// Effective capabilities of the probe process (hex, as in /proc/self/status).
    pub cap_eff: Option<String>,
    /// Cilium version, when the probe runs in a cluster that has Cilium.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cilium_version: Option<String>,
    /// k3s version, when the probe runs on a k3s node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k3s_version: Option<String>,
    /// Facts that could not be measured, with why (`"netkit": "EPERM ..."`), and
    /// where a judged or derived fact came from (`"nested"`, `"kernel.upstream"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub notes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Virtualization {
    /// Hypervisor seen from inside (`kvm`, `qemu`, `firecracker`, `hyperv`, `unknown`), or `None` on bare metal.
    pub hypervisor: Option<String>,
    /// Container runtime seen from inside (`docker`, `podman`, `containerd`, `lxc`), or `None`.
    pub container: Option<String>,
    /// Virtualization inside virtualization, from evidence only: `true` for a
    /// container inside a detected VM, `false` where nesting is ruled out (bare
    /// metal on x86, where every hardware-virtualized guest sees the `hypervisor`
    /// CPU flag, and no container), `None` when it cannot be told from inside (a VM
    /// never sees whether its host is itself a VM). `notes["nested"]` says what was
    /// and was not seen. Lines before this was optional carry a guessed boolean.
    pub nested: Option<bool>,
    /// How the target that started this probe's container ran it
    /// (`privileged`, `near-privileged`): the container target tries privileged
    /// first and falls back where that cannot start, and says which through
    /// `CONFORMANCE_CONTAINER_MODE`. `None` outside such a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_mode: Option<String>,
    /// How the `vm` target's qemu ran this guest (`tcg`, `kvm`), as it said through
    /// `CONFORMANCE_VM_ACCEL`: a guest cannot tell emulation from a hypervisor
    /// itself. `None` outside the `vm` target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_accel: Option<String>,
}

/// A distribution kernel package as the running kernel names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KernelPackage {
    /// `Debian`, `Ubuntu`.
    pub distribution: String,
    /// The package version as the distribution writes it (`6.1.192-1`,
    /// `6.12.117-1~deb12u1`, `5.15.0-91.101`).
    pub version: String,
    /// The upstream (stable) release the package is based on (`6.1.192`), when
    /// the distribution names one that agrees with `uname -r`'s major.minor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<KernelVersion>,
}

impl fmt::Display for KernelPackage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.distribution, self.version)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Bpffs {
    /// A bpf filesystem is mounted at `/sys/fs/bpf`.
    pub mounted: bool,
    /// Mount propagation of `/sys/fs/bpf` (`shared`, `slave`, `private`), or of
    /// its parent mount when bpffs is not mounted; Cilium needs shared or slave.
    pub propagation: Option<String>,
}

/// The type of a fact as conditions compare it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactKind {
    Version,
    Text,
    Number,
    Bool,
}

/// A fact's value as conditions compare it.
#[derive(Debug, Clone, PartialEq)]
pub enum FactValue {
    Version(KernelVersion),
    Text(String),
    Number(u64),
    Bool(bool),
}

impl fmt::Display for FactValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FactValue::Version(v) => write!(f, "{v}"),
            FactValue::Text(s) => write!(f, "\"{s}\""),
            FactValue::Number(n) => write!(f, "{n}"),
            FactValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Every fact key a matrix condition may name, with its type. `helper.<name>`
/// keys come from [`HELPERS`].
pub const FACT_KEYS: &[(&str, FactKind)] = &[
    ("kernel", FactKind::Version),
    ("arch", FactKind::Text),
    ("kernel.upstream", FactKind::Version),
    ("kernel.package", FactKind::Text),
    ("page_size", FactKind::Number),
    ("hypervisor", FactKind::Text),
    ("container", FactKind::Text),
    ("nested", FactKind::Bool),
    ("btf", FactKind::Bool),
    ("jit", FactKind::Bool),
    ("bpffs", FactKind::Bool),
    ("bpffs.propagation", FactKind::Text),
    ("cgroup2", FactKind::Bool),
    ("cgroup.sock_addr", FactKind::Bool),
    ("tcx", FactKind::Bool),
    ("netkit", FactKind::Bool),
    ("vxlan", FactKind::Bool),
    ("geneve", FactKind::Bool),
    ("ipv6", FactKind::Bool),
    ("xfrm.esp", FactKind::Bool),
    ("cilium", FactKind::Version),
    ("k3s", FactKind::Text),
    ("container.mode", FactKind::Text),
    ("vm.accel", FactKind::Text),
    ("system_vendor", FactKind::Text),
];

/// The type of a fact key, or `None` if no such fact exists.
pub fn fact_kind(key: &str) -> Option<FactKind> {
    if let Some(helper) = key.strip_prefix("helper.") {
        return HELPERS.contains(&helper).then_some(FactKind::Bool);
    }
    FACT_KEYS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, kind)| *kind)
}

/// All fact keys, for error messages that list what is valid.
pub fn all_fact_keys() -> Vec<String> {
    FACT_KEYS
        .iter()
        .map(|(k, _)| k.to_string())
        .chain(HELPERS.iter().map(|h| format!("helper.{h}")))
        .collect()
}

impl Facts {
    /// The value of a fact key; `None` when the key is unknown or the fact was not measured.
    pub fn get(&self, key: &str) -> Option<FactValue> {
        if let Some(helper) = key.strip_prefix("helper.") {
            return self.helpers.get(helper).map(|b| FactValue::Bool(*b));
        }
        Some(match key {
            "kernel" => FactValue::Version(self.kernel?),
            "kernel.upstream" => FactValue::Version(self.kernel_upstream()?),
            "kernel.package" => FactValue::Text(
                self.kernel_package
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ),
            "arch" => FactValue::Text(self.arch.clone()),
            "page_size" => FactValue::Number(self.page_size),
            "hypervisor" => {
                FactValue::Text(self.virtualization.hypervisor.clone().unwrap_or_default())
            }
            "container" => {
                FactValue::Text(self.virtualization.container.clone().unwrap_or_default())
            }
            "nested" => FactValue::Bool(self.virtualization.nested?),
            "btf" => FactValue::Bool(self.btf),
            "jit" => FactValue::Bool(self.jit? > 0),
            "bpffs" => FactValue::Bool(self.bpffs.mounted),
            "bpffs.propagation" => {
                FactValue::Text(self.bpffs.propagation.clone().unwrap_or_default())
            }
            "cgroup2" => FactValue::Bool(self.cgroup2.is_some()),
            "cgroup.sock_addr" => FactValue::Bool(self.cgroup_sock_addr?),
            "tcx" => FactValue::Bool(self.tcx?),
            "netkit" => FactValue::Bool(self.netkit?),
            "vxlan" => FactValue::Bool(self.vxlan?),
            "geneve" => FactValue::Bool(self.geneve?),
            "ipv6" => FactValue::Bool(self.ipv6?),
            "xfrm.esp" => FactValue::Bool(self.xfrm_esp?),
            "cilium" => FactValue::Version(KernelVersion::parse_release(
                self.cilium_version.as_deref()?.trim_start_matches('v'),
            )?),
            "k3s" => FactValue::Text(self.k3s_version.clone()?),
            "container.mode" => FactValue::Text(
                self.virtualization
                    .container_mode
                    .clone()
                    .unwrap_or_default(),
            ),
            "vm.accel" => FactValue::Text(self.virtualization.vm_accel.clone().unwrap_or_default()),
            "system_vendor" => FactValue::Text(self.system_vendor.clone().unwrap_or_default()),
            _ => return None,
        })
    }

    /// The upstream release the running kernel is based on: the one its
    /// distribution package names (Debian's `6.1.0-56` is 6.1.192), else the
    /// version `uname -r` starts with. Matrices that gate on a fix condition on
    /// this (`kernel.upstream`), not on `kernel`.
    pub fn kernel_upstream(&self) -> Option<KernelVersion> {
        self.kernel_package
            .as_ref()
            .and_then(|p| p.upstream)
            .or(self.kernel)
    }

    /// Facts of a place no probe ran on (a guest the suite could not start): nothing
    /// measured, every boolean empty, `notes["not-run"]` says why.
    pub fn not_measured(arch: &str, why: &str) -> Self {
        Facts {
            kernel_release: String::new(),
            kernel: None,
            kernel_package: None,
            arch: arch.into(),
            page_size: 0,
            virtualization: Virtualization::default(),
            btf: false,
            jit: None,
            bpffs: Bpffs::default(),
            cgroup2: None,
            cgroup_sock_addr: None,
            tcx: None,
            netkit: None,
            vxlan: None,
            geneve: None,
            ipv6: None,
            xfrm_esp: None,
            helpers: BTreeMap::new(),
            system_vendor: None,
            cap_eff: None,
            cilium_version: None,
            k3s_version: None,
            notes: BTreeMap::from([("not-run".to_string(), why.to_string())]),
        }
    }

    /// A plausible fact set for tests and snapshots (no I/O).
    pub fn example() -> Self {
        Facts {
            kernel_release: "6.18.44-example".into(),
            kernel: Some(KernelVersion::new(6, 18, 44)),
            kernel_package: None,
            arch: "x86_64".into(),
            page_size: 4096,
            virtualization: Virtualization {
                hypervisor: Some("kvm".into()),
                container: None,
                nested: Some(false),
                container_mode: None,
                vm_accel: None,
            },
            btf: true,
            jit: Some(1),
            bpffs: Bpffs {
                mounted: false,
                propagation: Some("private".into()),
            },
            cgroup2: Some("/sys/fs/cgroup".into()),
            cgroup_sock_addr: Some(true),
            tcx: Some(true),
            netkit: Some(false),
            vxlan: Some(true),
            geneve: Some(true),
            ipv6: Some(true),
            xfrm_esp: Some(true),
            helpers: HELPERS.iter().map(|h| (h.to_string(), true)).collect(),
            system_vendor: Some("QEMU".into()),
            cap_eff: Some("000001ffffffffff".into()),
            cilium_version: None,
            k3s_version: None,
            notes: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_value_in_the_example_or_is_cluster_only() {
        let facts = Facts::example();
        for key in all_fact_keys() {
            let kind = fact_kind(&key).expect("listed key has a kind");
            match facts.get(&key) {
                Some(FactValue::Version(_)) => assert_eq!(kind, FactKind::Version, "{key}"),
                Some(FactValue::Text(_)) => assert_eq!(kind, FactKind::Text, "{key}"),
                Some(FactValue::Number(_)) => assert_eq!(kind, FactKind::Number, "{key}"),
                Some(FactValue::Bool(_)) => assert_eq!(kind, FactKind::Bool, "{key}"),
                None => assert!(key == "cilium" || key == "k3s", "{key} has no value"),
            }
        }
        assert_eq!(fact_kind("helper.nope"), None);
        assert_eq!(fact_kind("kernal"), None);
    }

    #[test]
    fn unmeasured_facts_have_no_value_measured_absence_is_false() {
        let mut f = Facts::example();
        assert_eq!(f.get("tcx"), Some(FactValue::Bool(true)));
        assert_eq!(f.get("netkit"), Some(FactValue::Bool(false)));
        assert_eq!(f.get("nested"), Some(FactValue::Bool(false)));
        f.tcx = None;
        f.netkit = None;
        f.virtualization.nested = None;
        assert_eq!(f.get("tcx"), None);
        assert_eq!(f.get("netkit"), None);
        assert_eq!(f.get("nested"), None);
    }

    #[test]
    fn kernel_upstream_is_the_package_base_else_uname() {
        let mut f = Facts::example();
        assert_eq!(
            f.get("kernel.upstream"),
            Some(FactValue::Version(KernelVersion::new(6, 18, 44)))
        );
        assert_eq!(
            f.get("kernel.package"),
            Some(FactValue::Text(String::new()))
        );
        f.kernel_release = "6.1.0-56-cloud-amd64".into();
        f.kernel = Some(KernelVersion::new(6, 1, 0));
        f.kernel_package = Some(KernelPackage {
            distribution: "Debian".into(),
            version: "6.1.192-1".into(),
            upstream: Some(KernelVersion::new(6, 1, 192)),
        });
        assert_eq!(
            f.get("kernel.upstream"),
            Some(FactValue::Version(KernelVersion::new(6, 1, 192)))
        );
        assert_eq!(
            f.get("kernel"),
            Some(FactValue::Version(KernelVersion::new(6, 1, 0)))
        );
        assert_eq!(
            f.get("kernel.package"),
            Some(FactValue::Text("Debian 6.1.192-1".into()))
        );
        // A package that names no upstream release falls back to uname -r.
        f.kernel_package.as_mut().unwrap().upstream = None;
        assert_eq!(
            f.get("kernel.upstream"),
            Some(FactValue::Version(KernelVersion::new(6, 1, 0)))
        );
        f.kernel = None;
        assert_eq!(f.get("kernel.upstream"), None);
    }

    #[test]
    fn old_lines_with_plain_booleans_still_read() {
        let mut v = serde_json::to_value(Facts::example()).unwrap();
        assert_eq!(v["tcx"], serde_json::json!(true));
        assert!(v.get("kernel_package").is_none(), "skipped when absent");
        v["tcx"] = serde_json::json!(false);
        v["netkit"] = serde_json::json!(true);
        v["virtualization"]["nested"] = serde_json::json!(true);
        let f: Facts = serde_json::from_value(v.clone()).unwrap();
        assert_eq!((f.tcx, f.netkit), (Some(false), Some(true)));
        assert_eq!(f.virtualization.nested, Some(true));
        assert_eq!(f.kernel_package, None);
        // Unmeasured is written as null and read back as None.
        let mut g = Facts::example();
        g.tcx = None;
        g.virtualization.nested = None;
        let w = serde_json::to_value(&g).unwrap();
        assert_eq!(w["tcx"], serde_json::Value::Null);
        assert_eq!(w["virtualization"]["nested"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<Facts>(w).unwrap(), g);
    }
}
