//! Hypervisor and container detection.
//!
//! Every signal is read into plain data first ([`HypervisorSignals`],
//! [`ContainerSignals`]) and classified by pure functions, so tests can feed
//! samples from places the suite cannot reach (arm64 qemu, Hyper-V, a k3s pod).
//!
//! Hypervisor ids follow systemd-detect-virt's meaning: `kvm` is any KVM-accelerated
//! guest (qemu+KVM, Incus, Hetzner Cloud, EC2), `qemu` is qemu without KVM on x86 (TCG),
//! `firecracker` is a Firecracker microVM, plus `hyperv`, `vmware`, `xen`,
//! `virtualbox`, `parallels`, `bhyve`, `acrn`, `apple`, and `unknown` for a VM
//! whose kind is not recognised. On arm64 there is no CPUID: the accelerator
//! (KVM, HVF, TCG) is not visible from inside and a qemu guest reports `qemu`.

use super::parse::{self, Mount};
use std::fs;
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HypervisorSignals {
    /// `/proc/cpuinfo` had a `flags` (x86) or `Features` (arm64) line.
    pub cpu_flags_seen: bool,
    /// The `hypervisor` CPU flag (x86: CPUID.1:ECX bit 31).
    pub cpu_hypervisor_flag: bool,
    /// The CPU advertises hardware virtualization (`vmx`, `svm`) to this kernel:
    /// this machine could host VMs. It says nothing about what the machine runs in.
    pub cpu_virt_ext: bool,
    /// Vendor signatures from CPUID leaves 0x40000000 and 0x40000100 (x86, only
    /// when the hypervisor flag is set).
    pub cpuid_signatures: Vec<String>,
    pub dmi_sys_vendor: Option<String>,
    pub dmi_product_name: Option<String>,
    pub dmi_bios_vendor: Option<String>,
    /// OEM ID of the ACPI FACP/DSDT table header (`FIRECK`, `BOCHS`).
    pub acpi_oem_id: Option<String>,
    /// ACPI device ids under /sys/bus/acpi/devices (`AMZNC10C:00`).
    pub acpi_devices: Vec<String>,
    /// Device tree root `compatible` list (arm64).
    pub dt_compatible: Vec<String>,
    /// Device tree `/hypervisor` node `compatible` list (Xen on arm64).
    pub dt_hypervisor: Vec<String>,
    /// `/sys/hypervisor/type` (`xen`).
    pub sys_hypervisor_type: Option<String>,
    /// Devices on the virtio bus.
    pub virtio_devices: bool,
    /// virtio-mmio platform devices (Firecracker without PCI, qemu microvm).
    pub virtio_mmio: bool,
    /// Devices on a PCI bus.
    pub pci: bool,
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!text.is_empty()).then(|| text.to_string())
}

fn dir_names(path: &str) -> Vec<String> {
    fs::read_dir(path)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(target_arch = "x86_64")]
fn cpuid_signatures() -> Vec<String> {
    use std::arch::x86_64::__cpuid;
    [0x4000_0000u32, 0x4000_0100]
        .into_iter()
        .map(|leaf| {
            // CPUID is available on every x86_64 CPU and has no side effects.
            #[allow(unused_unsafe)]
            let r = unsafe { __cpuid(leaf) };
            let bytes: Vec<u8> = [r.ebx, r.ecx, r.edx]
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .collect();
            String::from_utf8_lossy(&bytes)
                .trim_end_matches('\0')
                .to_string()
        })
        .collect()
}

#[cfg(not(target_arch = "x86_64"))]
fn cpuid_signatures() -> Vec<String> {
    Vec::new()
}

impl HypervisorSignals {
    /// Reads every signal this machine exposes; unreadable ones stay empty.
    pub fn read(cpu_flags: &[String]) -> Self {
        let has = |f: &str| cpu_flags.iter().any(|x| x == f);
        let cpu_hypervisor_flag = has("hypervisor");
        let dmi = |f: &str| read_trimmed(format!("/sys/class/dmi/id/{f}"));
        let acpi_oem_id = ["FACP", "DSDT", "APIC"].iter().find_map(|t| {
            let table = fs::read(format!("/sys/firmware/acpi/tables/{t}")).ok()?;
            parse::acpi_oem_id(&table)
        });
        let dt = |p: &str| {
            ["/proc/device-tree", "/sys/firmware/devicetree/base"]
                .iter()
                .find_map(|base| fs::read(format!("{base}/{p}")).ok())
                .map(|b| parse::nul_list(&b))
                .unwrap_or_default()
        };
        Self {
            cpu_flags_seen: !cpu_flags.is_empty(),
            cpu_hypervisor_flag,
            cpu_virt_ext: has("vmx") || has("svm"),
            cpuid_signatures: if cpu_hypervisor_flag {
                cpuid_signatures()
            } else {
                Vec::new()
            },
            dmi_sys_vendor: dmi("sys_vendor"),
            dmi_product_name: dmi("product_name"),
            dmi_bios_vendor: dmi("bios_vendor"),
            acpi_oem_id,
            acpi_devices: dir_names("/sys/bus/acpi/devices"),
            dt_compatible: dt("compatible"),
            dt_hypervisor: dt("hypervisor/compatible"),
            sys_hypervisor_type: read_trimmed("/sys/hypervisor/type"),
            virtio_devices: !dir_names("/sys/bus/virtio/devices").is_empty(),
            virtio_mmio: dir_names("/sys/bus/platform/devices")
                .iter()
                .any(|d| d.contains("virtio") || d.starts_with("LNRO0005")),
            pci: !dir_names("/sys/bus/pci/devices").is_empty(),
        }
    }

    fn has_dmi(&self) -> bool {
        self.dmi_sys_vendor.is_some() || self.dmi_product_name.is_some()
    }

    /// Firecracker signs its ACPI tables `FIRECK` and exposes its VM generation
    /// counter as ACPI device `AMZNC10C`; `/sys/firmware` is hidden in containers
    /// but `/sys/bus/acpi` is not. It never provides DMI.
    fn looks_like_firecracker(&self) -> bool {
        self.acpi_oem_id.as_deref() == Some("FIRECK")
            || (!self.has_dmi() && self.acpi_devices.iter().any(|d| d.starts_with("AMZNC10C")))
    }
}

fn from_cpuid(signature: &str) -> Option<&'static str> {
    Some(match signature {
        "KVMKVMKVM" | "Linux KVM Hv" => "kvm",
        "TCGTCGTCGTCG" => "qemu",
        "Microsoft Hv" => "hyperv",
        "VMwareVMware" => "vmware",
        "XenVMMXenVMM" => "xen",
        "VBoxVBoxVBox" => "virtualbox",
        " lrpepyh  vr" | "prl hyperv  " => "parallels",
        "bhyve bhyve " => "bhyve",
        "ACRNACRNACRN" => "acrn",
        _ => return None,
    })
}

fn from_dmi(vendor: &str, product: &str) -> Option<&'static str> {
    let v = vendor.to_ascii_lowercase();
    let p = product.to_ascii_lowercase();
    Some(
        if v.starts_with("qemu") || p.starts_with("qemu") || v.starts_with("bochs") {
            "qemu"
        } else if v.starts_with("firecracker") {
            "firecracker"
        } else if v.starts_with("microsoft") && p.contains("virtual machine") {
            "hyperv"
        } else if v.starts_with("vmware") || p.starts_with("vmware") {
            "vmware"
        } else if v.starts_with("xen") || p.contains("hvm domu") {
            "xen"
        } else if v.starts_with("innotek") || p.starts_with("virtualbox") {
            "virtualbox"
        } else if v.starts_with("parallels") || p.starts_with("parallels") {
            "parallels"
        } else if v.starts_with("bhyve") {
            "bhyve"
        } else if v.starts_with("apple") && p.contains("virtual") {
            "apple"
        } else if v.starts_with("kvm")
            || p.starts_with("kvm")
            || v.starts_with("amazon ec2")
            || v.starts_with("hetzner")
            || v.starts_with("openstack")
            || v.starts_with("digitalocean")
            || v.starts_with("scaleway")
            || v.starts_with("alibaba cloud")
            || v.starts_with("linode")
            || p == "google compute engine"
        {
            "kvm"
        } else {
            return None;
        },
    )
}

fn from_acpi_oem(oem: &str) -> Option<&'static str> {
    Some(match oem {
        "FIRECK" => "firecracker",
        "BOCHS" => "qemu",
        "VRTUAL" => "hyperv",
        "VMWARE" => "vmware",
        "Xen" => "xen",
        "VBOX" => "virtualbox",
        "CLOUDH" | "AMAZON" => "kvm",
        _ => return None,
    })
}

/// The hypervisor the signals point to, and a note when the answer is a guess.
pub fn classify_hypervisor(s: &HypervisorSignals) -> (Option<String>, Option<String>) {
    let found = |id: &str| (Some(id.to_string()), None);
    if s.looks_like_firecracker() {
        return found("firecracker");
    }
    // x86: the CPUID vendor signature names the hypervisor that runs the vCPUs.
    // KVM's own signature at 0x40000100 wins over a Hyper-V one at 0x40000000
    // (KVM offering Hyper-V enlightenments to the guest).
    let cpuid: Vec<&'static str> = s
        .cpuid_signatures
        .iter()
        .filter_map(|sig| from_cpuid(sig))
        .collect();
    let cpuid = if cpuid.contains(&"kvm") {
        Some("kvm")
    } else {
        cpuid.first().copied()
    };
    if let Some(id) = cpuid {
        if id == "kvm" && !s.has_dmi() && s.acpi_oem_id.is_none() && s.virtio_mmio && !s.pci {
            return (
                Some("firecracker".into()),
                Some("guessed from KVM with virtio-mmio devices and no DMI, ACPI or PCI (a qemu microvm looks the same)".into()),
            );
        }
        return found(id);
    }
    if s.sys_hypervisor_type.as_deref() == Some("xen")
        || s.dt_hypervisor.iter().any(|c| c.starts_with("xen"))
    {
        return found("xen");
    }
    let dmi = from_dmi(
        s.dmi_sys_vendor.as_deref().unwrap_or_default(),
        s.dmi_product_name.as_deref().unwrap_or_default(),
    )
    .or_else(|| from_dmi(s.dmi_bios_vendor.as_deref().unwrap_or_default(), ""));
    if let Some(id) = dmi {
        return found(id);
    }
    if let Some(id) = s.acpi_oem_id.as_deref().and_then(from_acpi_oem) {
        return found(id);
    }
    if s.dt_compatible.iter().any(|c| c == "linux,dummy-virt") {
        return found("qemu");
    }
    if s.cpu_hypervisor_flag {
        let sig = s
            .cpuid_signatures
            .first()
            .map(String::as_str)
            .unwrap_or_default();
        return (
            Some("unknown".into()),
            Some(format!(
                "hypervisor CPU flag set, CPUID signature {sig:?} not recognised"
            )),
        );
    }
    if s.virtio_devices {
        return (
            Some("unknown".into()),
            Some("virtio devices present but no DMI, ACPI, device-tree or CPUID hypervisor signature".into()),
        );
    }
    (None, None)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSignals {
    /// `container=` from pid 1's environment (podman, lxc, systemd-nspawn set it).
    pub pid1_container_env: Option<String>,
    /// `/run/host/container-manager` (systemd's container interface).
    pub host_container_manager: Option<String>,
    /// `/run/.containerenv` exists (podman).
    pub containerenv: bool,
    /// `/proc/1/cgroup` and `/proc/self/cgroup`.
    pub cgroups: Vec<String>,
    pub mounts: Vec<Mount>,
    /// `KUBERNETES_SERVICE_HOST` is set (a pod).
    pub kubernetes_env: bool,
}

impl ContainerSignals {
    /// Reads the signals; returns notes for the ones that could not be read.
    pub fn read(mounts: &[Mount], notes: &mut Vec<String>) -> Self {
        let pid1_container_env = match fs::read("/proc/1/environ") {
            Ok(bytes) => parse::nul_list(&bytes)
                .into_iter()
                .find_map(|kv| kv.strip_prefix("container=").map(str::to_string)),
            Err(e) => {
                notes.push(format!("/proc/1/environ: {e}"));
                None
            }
        };
        Self {
            pid1_container_env,
            host_container_manager: read_trimmed("/run/host/container-manager"),
            containerenv: Path::new("/run/.containerenv").exists(),
            cgroups: ["/proc/1/cgroup", "/proc/self/cgroup"]
                .iter()
                .filter_map(|p| fs::read_to_string(p).ok())
                .collect(),
            mounts: mounts.to_vec(),
            kubernetes_env: std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
        }
    }
}

/// The container runtime the signals point to (`docker`, `containerd`, `podman`,
/// `cri-o`, `lxc`, `systemd-nspawn`), `unknown` for a container whose runtime is not
/// recognised, `None` outside containers; with a note when the answer is a guess.
/// `/.dockerenv` is deliberately not a signal: VM images built from Docker images keep it.
pub fn classify_container(s: &ContainerSignals) -> (Option<String>, Option<String>) {
    let explicit = s
        .pid1_container_env
        .as_deref()
        .or(s.host_container_manager.as_deref())
        .filter(|v| !v.is_empty());
    if let Some(v) = explicit {
        return (
            Some(if v == "oci" {
                "unknown".into()
            } else {
                v.to_string()
            }),
            None,
        );
    }
    if s.containerenv {
        return (Some("podman".into()), None);
    }
    let from_cgroup = s
        .cgroups
        .iter()
        .flat_map(|text| parse::cgroup_paths(text))
        .filter_map(parse::runtime_from_cgroup_path)
        .min_by_key(|r| *r == "kubernetes");
    let runtime = match (parse::runtime_from_mounts(&s.mounts), from_cgroup) {
        (Some("kubernetes"), Some(r)) | (Some(r), _) | (None, Some(r)) => Some(r),
        (None, None) => None,
    };
    match runtime {
        Some("kubernetes") => {
            return (
                Some("unknown".into()),
                Some("in a Kubernetes pod; the container runtime is not recognisable".into()),
            );
        }
        Some(r) => return (Some(r.into()), None),
        None => {}
    }
    if s.kubernetes_env {
        return (
            Some("unknown".into()),
            Some(
                "KUBERNETES_SERVICE_HOST is set; the container runtime is not recognisable".into(),
            ),
        );
    }
    if let Some(signal) = parse::container_mounts(&s.mounts) {
        return (
            Some("unknown".into()),
            Some(format!("{signal}, but no runtime left a signature")),
        );
    }
    // An overlay root alone is no container: NixOS, Incus and live images boot VMs
    // from overlay roots too.
    if let Some(root) = parse::mount_containing(&s.mounts, "/")
        && (root.fstype == "overlay" || root.fstype.ends_with("overlayfs"))
    {
        return (
            None,
            Some(format!(
                "root filesystem is {}, but nothing else says container (no runtime's environment, cgroup or mounts): a booted system with an overlay root",
                root.fstype
            )),
        );
    }
    (None, None)
}

/// Whether this is virtualization inside virtualization, from evidence only, and
/// a note saying what was and was not seen. `arch` is `uname -m`.
///
/// - `Some(true)`: a container inside a detected VM.
/// - `Some(false)`: bare metal, where that can be told: on x86 every
///   hardware-virtualized guest sees the `hypervisor` CPU flag; no hypervisor
///   signature anywhere else either, and not in a container.
/// - `None`: everything else. A VM cannot see whether its host is a VM (vmx/svm in
///   its CPU flags only say it could host VMs); an arm64 guest need not show any
///   hypervisor signal; a container cannot see whether it runs in another one.
pub fn classify_nesting(
    hypervisor: Option<&str>,
    container: Option<&str>,
    arch: &str,
    s: &HypervisorSignals,
) -> (Option<bool>, String) {
    let virt_ext = if s.cpu_virt_ext {
        "; the CPU offers vmx/svm, which says it could host VMs, not what it runs in"
    } else {
        ""
    };
    let x86 = matches!(arch, "x86_64" | "i386" | "i486" | "i586" | "i686");
    let not_metal_for_sure = if !x86 {
        Some(format!(
            "on {} a guest need not show any hypervisor signal (there is no hypervisor CPU flag)",
            if arch.is_empty() {
                "this architecture"
            } else {
                arch
            }
        ))
    } else if !s.cpu_flags_seen {
        Some("the CPU flags could not be read".to_string())
    } else {
        None
    };
    match (hypervisor, container, not_metal_for_sure) {
        (Some(hv), Some(c), _) => (
            Some(true),
            format!("container ({c}) inside a VM ({hv}): container-in-VM"),
        ),
        (Some(hv), None, _) => (
            None,
            format!(
                "a VM ({hv}), not in a container; whether its host is itself a VM is not visible from inside{virt_ext}"
            ),
        ),
        (None, None, Some(why)) => (
            None,
            format!("no hypervisor signal seen, but {why}: bare metal or a VM{virt_ext}"),
        ),
        (None, Some(c), Some(why)) => (
            None,
            format!(
                "container ({c}); no hypervisor signal seen, but {why}: on bare metal or in a VM"
            ),
        ),
        (None, None, None) => (
            Some(false),
            format!(
                "bare metal: no hypervisor CPU flag (every hardware-virtualized x86 guest sees it), no hypervisor signature in CPUID, DMI, ACPI or device tree, not in a container{virt_ext}"
            ),
        ),
        (None, Some(c), None) => (
            None,
            format!(
                "container ({c}) on bare metal (no hypervisor CPU flag); whether it runs inside another container (a pod in a k3d node) is not visible from inside"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(s: &str) -> Vec<String> {
        vec![s.to_string(), String::new()]
    }

    /// What this machine (Firecracker with ACPI and PCI, no DMI) exposes.
    fn this_vm() -> HypervisorSignals {
        HypervisorSignals {
            cpu_hypervisor_flag: true,
            cpuid_signatures: sig("KVMKVMKVM"),
            acpi_oem_id: Some("FIRECK".into()),
            acpi_devices: vec![
                "ACPI0013:00".into(),
                "AMZNC10C:00".into(),
                "VMGENCTR:00".into(),
            ],
            virtio_devices: true,
            pci: true,
            ..Default::default()
        }
    }

    #[test]
    fn firecracker_with_and_without_acpi_tables() {
        assert_eq!(
            classify_hypervisor(&this_vm()).0.as_deref(),
            Some("firecracker")
        );
        // In a container /sys/firmware is a tmpfs: the ACPI device id remains.
        let masked = HypervisorSignals {
            acpi_oem_id: None,
            ..this_vm()
        };
        assert_eq!(
            classify_hypervisor(&masked).0.as_deref(),
            Some("firecracker")
        );
        // Older Firecracker: no ACPI, no PCI, virtio-mmio.
        let old = HypervisorSignals {
            cpu_hypervisor_flag: true,
            cpuid_signatures: sig("KVMKVMKVM"),
            virtio_devices: true,
            virtio_mmio: true,
            ..Default::default()
        };
        let (id, note) = classify_hypervisor(&old);
        assert_eq!(id.as_deref(), Some("firecracker"));
        assert!(note.is_some());
    }

    #[test]
    fn x86_hypervisors_by_cpuid() {
        let qemu_kvm = HypervisorSignals {
            cpu_hypervisor_flag: true,
            cpuid_signatures: sig("KVMKVMKVM"),
            dmi_sys_vendor: Some("QEMU".into()),
            dmi_product_name: Some("Standard PC (Q35 + ICH9, 2009)".into()),
            acpi_oem_id: Some("BOCHS".into()),
            virtio_devices: true,
            pci: true,
            ..Default::default()
        };
        assert_eq!(classify_hypervisor(&qemu_kvm), (Some("kvm".into()), None));
        let hetzner = HypervisorSignals {
            dmi_sys_vendor: Some("Hetzner".into()),
            dmi_product_name: Some("vServer".into()),
            ..qemu_kvm.clone()
        };
        assert_eq!(classify_hypervisor(&hetzner).0.as_deref(), Some("kvm"));
        let tcg = HypervisorSignals {
            cpuid_signatures: sig("TCGTCGTCGTCG"),
            ..qemu_kvm.clone()
        };
        assert_eq!(classify_hypervisor(&tcg).0.as_deref(), Some("qemu"));
        let kvm_with_hyperv_enlightenments = HypervisorSignals {
            cpuid_signatures: vec!["Microsoft Hv".into(), "KVMKVMKVM".into()],
            ..qemu_kvm.clone()
        };
        assert_eq!(
            classify_hypervisor(&kvm_with_hyperv_enlightenments)
                .0
                .as_deref(),
            Some("kvm")
        );
        let wsl2 = HypervisorSignals {
            cpu_hypervisor_flag: true,
            cpuid_signatures: vec!["Microsoft Hv".into(), String::new()],
            ..Default::default()
        };
        assert_eq!(classify_hypervisor(&wsl2).0.as_deref(), Some("hyperv"));
        let odd = HypervisorSignals {
            cpu_hypervisor_flag: true,
            cpuid_signatures: sig("NewVisorXYZW"),
            ..Default::default()
        };
        let (id, note) = classify_hypervisor(&odd);
        assert_eq!(id.as_deref(), Some("unknown"));
        assert!(note.unwrap().contains("NewVisorXYZW"));
    }

    #[test]
    fn arm64_guests_without_cpuid() {
        // qemu -M virt, direct kernel boot: device tree only.
        let qemu_virt = HypervisorSignals {
            dt_compatible: parse::nul_list(b"linux,dummy-virt\0"),
            virtio_devices: true,
            virtio_mmio: true,
            ..Default::default()
        };
        assert_eq!(classify_hypervisor(&qemu_virt), (Some("qemu".into()), None));
        // qemu -M virt with UEFI firmware: DMI and ACPI.
        let qemu_uefi = HypervisorSignals {
            dmi_sys_vendor: Some("QEMU".into()),
            dmi_product_name: Some("KVM Virtual Machine".into()),
            acpi_oem_id: Some("BOCHS".into()),
            ..Default::default()
        };
        assert_eq!(classify_hypervisor(&qemu_uefi).0.as_deref(), Some("qemu"));
        let xen = HypervisorSignals {
            dt_compatible: vec!["xen,xenvm-4.17".into(), "xen,xenvm".into()],
            dt_hypervisor: parse::nul_list(b"xen,xen-4.17\0xen,xen\0"),
            ..Default::default()
        };
        assert_eq!(classify_hypervisor(&xen).0.as_deref(), Some("xen"));
        let apple = HypervisorSignals {
            dmi_sys_vendor: Some("Apple Inc.".into()),
            dmi_product_name: Some("Apple Virtualization Generic Platform".into()),
            ..Default::default()
        };
        assert_eq!(classify_hypervisor(&apple).0.as_deref(), Some("apple"));
        let virtio_only = HypervisorSignals {
            virtio_devices: true,
            ..Default::default()
        };
        let (id, note) = classify_hypervisor(&virtio_only);
        assert_eq!(id.as_deref(), Some("unknown"));
        assert!(note.is_some());
    }

    #[test]
    fn bare_metal() {
        let metal = HypervisorSignals {
            cpu_virt_ext: true,
            dmi_sys_vendor: Some("Dell Inc.".into()),
            dmi_product_name: Some("PowerEdge R650".into()),
            acpi_oem_id: Some("DELL".into()),
            pci: true,
            ..Default::default()
        };
        assert_eq!(classify_hypervisor(&metal), (None, None));
    }

    fn mounts(text: &str) -> Vec<Mount> {
        parse::parse_mountinfo(text)
    }

    #[test]
    fn containers() {
        // This VM: /.dockerenv exists but nothing else says container.
        let host = ContainerSignals {
            cgroups: vec!["9:name=systemd:/\n0::/\n".into()],
            mounts: mounts(
                "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n42 27 254:0 /var/lib/docker /var/lib/docker rw shared:1 - ext4 /dev/vda rw\n",
            ),
            ..Default::default()
        };
        assert_eq!(classify_container(&host), (None, None));
        // Docker with cgroup v2 and a private cgroup namespace: only the mounts tell.
        let docker_cgns = ContainerSignals {
            cgroups: vec!["0::/\n".into()],
            mounts: mounts(
                "69 45 0:39 / / rw master:2 - overlay overlay rw\n87 69 254:0 /var/lib/docker/containers/79cffb68fe42c4b17bf58e7e5389fccd276524f45d888f5dc60d519d86f89c35/hostname /etc/hostname rw - ext4 /dev/vda rw\n",
            ),
            ..Default::default()
        };
        assert_eq!(
            classify_container(&docker_cgns),
            (Some("docker".into()), None)
        );
        let docker_v1 = ContainerSignals {
            cgroups: vec!["4:memory:/docker/79cffb68fe42c4b17bf58e7e5389fccd276524f45d888f5dc60d519d86f89c35\n".into()],
            ..Default::default()
        };
        assert_eq!(classify_container(&docker_v1).0.as_deref(), Some("docker"));
        let podman = ContainerSignals {
            pid1_container_env: Some("podman".into()),
            containerenv: true,
            ..Default::default()
        };
        assert_eq!(classify_container(&podman).0.as_deref(), Some("podman"));
        let lxc = ContainerSignals {
            pid1_container_env: Some("lxc".into()),
            ..Default::default()
        };
        assert_eq!(classify_container(&lxc).0.as_deref(), Some("lxc"));
        // A pod whose cgroup shows kubepods (cgroupfs driver) and whose mounts name containerd.
        let pod = ContainerSignals {
            cgroups: vec!["0::/kubepods/besteffort/pod5d1e3c52/4f1c2a9b8e7d6c5b4a39\n".into()],
            mounts: mounts(
                "902 900 8:1 /var/lib/rancher/k3s/agent/containerd/io.containerd.grpc.v1.cri/sandboxes/4f1c2a9b8e7d/hostname /etc/hostname rw - ext4 /dev/sda1 rw\n",
            ),
            kubernetes_env: true,
            ..Default::default()
        };
        assert_eq!(classify_container(&pod), (Some("containerd".into()), None));
        let opaque_pod = ContainerSignals {
            kubernetes_env: true,
            cgroups: vec!["0::/\n".into()],
            ..Default::default()
        };
        let (id, note) = classify_container(&opaque_pod);
        assert_eq!(id.as_deref(), Some("unknown"));
        assert!(note.is_some());
    }

    #[test]
    fn an_overlay_root_alone_is_no_container() {
        // A NixOS/Incus VM or a live image: overlay root, nothing else.
        let overlay_only = ContainerSignals {
            cgroups: vec!["0::/init.scope\n".into()],
            mounts: mounts(
                "1 0 0:39 / / rw - overlay overlay rw,lowerdir=/nix/.ro-store,upperdir=/rw/upper\n22 1 0:21 / /proc rw - proc proc rw\n",
            ),
            ..Default::default()
        };
        let (id, note) = classify_container(&overlay_only);
        assert_eq!(id, None);
        assert!(note.unwrap().contains("root filesystem is overlay"));
        // The same root in a container whose runtime is not recognisable: the
        // runtime's file bind mounts and masked paths are what say container.
        let opaque = ContainerSignals {
            cgroups: vec!["0::/\n".into()],
            mounts: mounts(
                "600 500 0:50 / / rw master:9 - fuse.fuse-overlayfs fuse-overlayfs rw\n610 600 254:0 /srv/rt/c0ffee/hostname /etc/hostname rw - ext4 /dev/vda rw\n",
            ),
            ..Default::default()
        };
        let (id, note) = classify_container(&opaque);
        assert_eq!(id.as_deref(), Some("unknown"));
        assert!(note.unwrap().contains("/etc/hostname"));
        let masked = ContainerSignals {
            mounts: mounts(
                "600 500 0:50 / / rw - overlay overlay rw\n620 600 0:5 /null /proc/kcore rw,nosuid - tmpfs tmpfs rw\n",
            ),
            ..Default::default()
        };
        assert_eq!(classify_container(&masked).0.as_deref(), Some("unknown"));
    }

    #[test]
    fn nesting_from_evidence_only() {
        let x86_kvm_guest = HypervisorSignals {
            cpu_flags_seen: true,
            cpu_virt_ext: true, // nested virtualization offered: says nothing
            ..this_vm()
        };
        let (hv, _) = classify_hypervisor(&x86_kvm_guest);
        let (nested, note) = classify_nesting(hv.as_deref(), None, "x86_64", &x86_kvm_guest);
        assert_eq!(nested, None, "a VM cannot see its host");
        assert!(note.contains("a VM (firecracker)"), "{note}");
        assert!(note.contains("vmx/svm"), "{note}");

        // The incident: arm64 qemu guest (Incus under Colima on Apple Silicon), no
        // hypervisor CPU flag, DMI says QEMU.
        let arm64_guest = HypervisorSignals {
            cpu_flags_seen: true,
            dmi_sys_vendor: Some("QEMU".into()),
            dmi_product_name: Some("KVM Virtual Machine".into()),
            virtio_devices: true,
            pci: true,
            ..Default::default()
        };
        let (hv, _) = classify_hypervisor(&arm64_guest);
        assert_eq!(hv.as_deref(), Some("qemu"));
        assert_eq!(
            classify_nesting(hv.as_deref(), None, "aarch64", &arm64_guest).0,
            None
        );
        // ... and k3s in that guest: a pod inside the VM is container-in-VM.
        let (nested, note) =
            classify_nesting(hv.as_deref(), Some("containerd"), "aarch64", &arm64_guest);
        assert_eq!(nested, Some(true));
        assert_eq!(
            note,
            "container (containerd) inside a VM (qemu): container-in-VM"
        );

        // arm64 with no signal at all: bare metal or a guest that hides, unknown.
        let arm64_silent = HypervisorSignals {
            cpu_flags_seen: true,
            ..Default::default()
        };
        let (nested, note) = classify_nesting(None, None, "aarch64", &arm64_silent);
        assert_eq!(nested, None);
        assert!(note.contains("on aarch64 a guest need not show"), "{note}");

        // x86 bare metal: the hypervisor flag is reliable, so nesting is ruled out.
        let metal = HypervisorSignals {
            cpu_flags_seen: true,
            cpu_virt_ext: true,
            dmi_sys_vendor: Some("Dell Inc.".into()),
            pci: true,
            ..Default::default()
        };
        assert_eq!(classify_hypervisor(&metal).0, None);
        let (nested, note) = classify_nesting(None, None, "x86_64", &metal);
        assert_eq!(nested, Some(false));
        assert!(note.starts_with("bare metal"), "{note}");
        // ... unless the flags could not be read.
        let unread = HypervisorSignals {
            cpu_flags_seen: false,
            ..metal.clone()
        };
        assert_eq!(classify_nesting(None, None, "x86_64", &unread).0, None);

        // A container on x86 bare metal: it may be a pod in a k3d node container.
        let (nested, note) = classify_nesting(None, Some("docker"), "x86_64", &metal);
        assert_eq!(nested, None);
        assert!(note.contains("container (docker) on bare metal"), "{note}");

        // A container in a VM (a k3d node on this Firecracker VM).
        let (nested, _) =
            classify_nesting(Some("firecracker"), Some("docker"), "x86_64", &this_vm());
        assert_eq!(nested, Some(true));
    }
}
