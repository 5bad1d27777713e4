//! Facts: what the probe measures about where it runs, before any check.
//!
//! [`gather`] fills [`Facts`] on the machine the probe runs on (a host, a privileged
//! container, a qemu guest, a pod). Every fact is measured on its own; one that cannot
//! be measured keeps its empty value (`None`, `false`, absent helper) and gets a line
//! in `facts.notes` saying why, so a report can tell "not supported here" from "could
//! not look": the boolean facts that can fail to measure (`tcx`, `netkit`, `nested`)
//! are `None` then, never `false`. `gather` never fails and never panics.
//!
//! Anything that creates kernel objects (the TCX attach, the netkit device pair) runs
//! in a throwaway network namespace ([`NetNs`]): nothing touches the namespace the
//! probe started in, and everything is gone when the namespace's last descriptor closes.

mod bpf;
mod ipv6;
mod kernel;
mod netkit;
pub(crate) mod parse;
mod sock_addr;
mod tunnel;
mod virt;
mod xfrm;

use crate::netlink::TunnelKind;
use crate::netns::NetNs;
use bpf::Outcome;
use conformance_contract::KernelVersion;
use conformance_contract::facts::{Bpffs, Facts, HELPERS, Virtualization};
use std::collections::BTreeMap;
use std::ffi::CStr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// Measures every fact. `hook_obj` is an eBPF object with a TC classifier named
/// `hook`; `helper_obj` has one classifier `probe_<helper>` per entry of [`HELPERS`].
pub fn gather(hook_obj: &[u8], helper_obj: &[u8]) -> Facts {
    let mut g = Gatherer::default();
    let (kernel_release, arch) = g.run("uname", uname).unwrap_or_default();
    let kernel = KernelVersion::parse_release(&kernel_release);
    if kernel.is_none() {
        g.note(
            "kernel",
            format!("release {kernel_release:?} does not start with a version"),
        );
    }
    let origin = g.run("kernel.package", || {
        let proc_version = std::fs::read_to_string("/proc/version")
            .map_err(|e| format!("read /proc/version: {e}"));
        let signature = std::fs::read_to_string("/proc/version_signature").ok();
        Ok(kernel::classify(
            proc_version.as_deref().map_err(Clone::clone),
            signature.as_deref(),
            kernel,
        ))
    });
    let kernel_package = origin.and_then(|o| {
        g.note("kernel.package", o.package_note);
        g.note("kernel.upstream", o.upstream_note);
        o.package
    });
    let page_size = g.run("page_size", page_size).unwrap_or(0);

    let mountinfo = g
        .run("mountinfo", || {
            std::fs::read_to_string("/proc/self/mountinfo")
                .map_err(|e| format!("read /proc/self/mountinfo: {e}"))
        })
        .unwrap_or_default();
    let mounts = parse::parse_mountinfo(&mountinfo);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_else(|e| {
        g.note("cpuinfo", format!("read /proc/cpuinfo: {e}"));
        String::new()
    });
    let cpu_flags = parse::cpu_flags(&cpuinfo);

    let virtualization = g
        .run("virtualization", || {
            Ok(virtualization(&cpu_flags, &mounts, &arch))
        })
        .map(|(v, notes)| {
            for (key, note) in notes {
                g.note(key, note);
            }
            v
        });
    if virtualization.is_none() {
        g.note(
            "nested",
            "not measured: virtualization detection failed (see notes.virtualization)".into(),
        );
    }
    let system_vendor = read_trimmed("/sys/class/dmi/id/sys_vendor");
    if system_vendor.is_none() {
        let why = if Path::new("/sys/class/dmi/id").exists() {
            "/sys/class/dmi/id/sys_vendor is empty or unreadable"
        } else {
            "no DMI (/sys/class/dmi/id absent: no SMBIOS tables, or /sys hidden)"
        };
        g.note("system_vendor", why.into());
    }

    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    let (bpffs_mounted, propagation) = parse::bpffs(&mounts);
    if propagation.is_none() {
        g.note(
            "bpffs.propagation",
            "no mount holds /sys/fs/bpf in /proc/self/mountinfo".into(),
        );
    }
    let cgroup2 = parse::cgroup2_mount(&mounts);
    if cgroup2.is_none() {
        g.note("cgroup2", "no cgroup2 mount in /proc/self/mountinfo".into());
    }
    let cap_eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse::status_field(&s, "CapEff").map(str::to_string));
    if cap_eff.is_none() {
        g.note("cap_eff", "no CapEff in /proc/self/status".into());
    }

    // Programs: both objects are parsed with one loader (one parse of the kernel's
    // BTF); the helper programs then load on one thread while TCX and netkit are
    // tried in a throwaway namespace on another.
    let (hook_ebpf, helper_ebpf) = g
        .run("ebpf", || Ok(bpf::load_objects(hook_obj, helper_obj)))
        .unwrap_or_else(|| {
            (
                Err("object loading panicked".into()),
                Err("object loading panicked".into()),
            )
        });
    let (helper_results, ns_results, sock_addr_result) = std::thread::scope(|s| {
        let helpers = std::thread::Builder::new()
            .name("facts-helpers".into())
            .spawn_scoped(s, || guarded(|| Ok(bpf::helpers(helper_ebpf, HELPERS))));
        let sock_addr = std::thread::Builder::new()
            .name("facts-sockaddr".into())
            .spawn_scoped(s, || {
                guarded(|| Ok(sock_addr::measure(cgroup2.as_deref(), crate::objects::SOCK)))
            });
        let ns = guarded(|| {
            let ns = NetNs::new("facts").map_err(|e| format!("{e:#}"))?;
            let tcx = guarded(|| {
                ns.run(|| Ok(bpf::tcx(hook_ebpf)))
                    .map_err(|e| format!("{e:#}"))
            });
            let netkit = guarded(|| {
                ns.run(|| Ok(netkit::try_create("nkfacts0")))
                    .map_err(|e| format!("{e:#}"))
            });
            let tunnels = [TunnelKind::Vxlan, TunnelKind::Geneve].map(|kind| {
                guarded(|| {
                    ns.run(|| Ok(tunnel::try_create(&format!("{}facts0", kind.kind()), kind)))
                        .map_err(|e| format!("{e:#}"))
                })
            });
            let ipv6 = guarded(|| {
                ns.run(|| Ok(ipv6::classify(&ipv6::look())))
                    .map_err(|e| format!("{e:#}"))
            });
            let esp = guarded(|| ns.run(|| Ok(xfrm::measure())).map_err(|e| format!("{e:#}")));
            Ok((tcx, netkit, tunnels, ipv6, esp))
        });
        let helpers = match helpers {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|_| Err("helper thread panicked".into())),
            Err(e) => Err(format!("spawn a thread: {e}")),
        };
        let sock_addr = match sock_addr {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|_| Err("sock_addr thread panicked".into())),
            Err(e) => Err(format!("spawn a thread: {e}")),
        };
        (helpers, ns, sock_addr)
    });
    let cgroup_sock_addr = match sock_addr_result {
        Ok(Outcome::Yes) => Some(true),
        Ok(Outcome::No(why)) => {
            g.note("cgroup.sock_addr", why);
            Some(false)
        }
        Ok(Outcome::Unknown(why)) | Err(why) => {
            g.note("cgroup.sock_addr", format!("not measured: {why}"));
            None
        }
    };

    let mut helpers = BTreeMap::new();
    let mut jited = None;
    match helper_results {
        Err(why) => {
            for name in HELPERS {
                g.note(&format!("helper.{name}"), format!("not measured: {why}"));
            }
        }
        Ok((results, size)) => {
            jited = jited.max(size);
            for (name, outcome) in results {
                match outcome {
                    Outcome::Yes => {
                        helpers.insert(name, true);
                    }
                    Outcome::No(why) => {
                        helpers.insert(name.clone(), false);
                        g.note(&format!("helper.{name}"), why);
                    }
                    Outcome::Unknown(why) => {
                        g.note(&format!("helper.{name}"), format!("not measured: {why}"))
                    }
                }
            }
        }
    }
    let mut tcx = None;
    let mut netkit = None;
    let (tcx_result, netkit_result, tunnel_results, ipv6_result, esp_result) = match ns_results {
        Ok(results) => results,
        Err(why) => (
            Err(why.clone()),
            Err(why.clone()),
            [Err(why.clone()), Err(why.clone())],
            Err(why.clone()),
            Err(why),
        ),
    };
    let xfrm_esp = match esp_result {
        Ok(Outcome::Yes) => Some(true),
        Ok(Outcome::No(why)) => {
            g.note("xfrm.esp", why);
            Some(false)
        }
        Ok(Outcome::Unknown(why)) | Err(why) => {
            g.note("xfrm.esp", format!("not measured: {why}"));
            None
        }
    };
    let ipv6 = match ipv6_result {
        Ok(Outcome::Yes) => Some(true),
        Ok(Outcome::No(why)) => {
            g.note("ipv6", why);
            Some(false)
        }
        Ok(Outcome::Unknown(why)) | Err(why) => {
            g.note("ipv6", format!("not measured: {why}"));
            None
        }
    };
    let [vxlan, geneve] = {
        let [vxlan_result, geneve_result] = tunnel_results;
        [
            (TunnelKind::Vxlan, vxlan_result),
            (TunnelKind::Geneve, geneve_result),
        ]
        .map(|(kind, result)| {
            let key = kind.kind();
            match result {
                Ok(Ok(ack)) if ack.errno == 0 => Some(true),
                Ok(Ok(ack)) if ack.errno == libc::EOPNOTSUPP => {
                    g.note(
                        key,
                        format!(
                            "RTM_NEWLINK kind {key} external: {}: kernel built without the {key} driver (or its module cannot be loaded here)",
                            ack.describe()
                        ),
                    );
                    Some(false)
                }
                Ok(Ok(ack)) => {
                    g.note(
                        key,
                        format!("not measured: RTM_NEWLINK kind {key} external: {}", ack.describe()),
                    );
                    None
                }
                Ok(Err(e)) => {
                    g.note(key, format!("not measured: netlink: {e}"));
                    None
                }
                Err(why) => {
                    g.note(key, format!("not measured: {why}"));
                    None
                }
            }
        })
    };
    match tcx_result {
        Ok((outcome, size)) => {
            jited = jited.max(size);
            match outcome {
                Outcome::Yes => tcx = Some(true),
                Outcome::No(why) => {
                    tcx = Some(false);
                    g.note("tcx", why)
                }
                Outcome::Unknown(why) => g.note("tcx", format!("not measured: {why}")),
            }
        }
        Err(why) => g.note("tcx", format!("not measured: {why}")),
    }
    match netkit_result {
        Ok(Ok(ack)) if ack.errno == 0 => netkit = Some(true),
        Ok(Ok(ack)) if ack.errno == libc::EOPNOTSUPP => {
            netkit = Some(false);
            g.note(
                "netkit",
                format!(
                    "RTM_NEWLINK kind netkit: {}: kernel built without CONFIG_NETKIT (or older than 6.7)",
                    ack.describe()
                ),
            )
        }
        // EPERM, EACCES, or an answer that does not say the driver is missing.
        Ok(Ok(ack)) => g.note(
            "netkit",
            format!("not measured: RTM_NEWLINK kind netkit: {}", ack.describe()),
        ),
        Ok(Err(e)) => g.note("netkit", format!("not measured: netlink: {e}")),
        Err(why) => g.note("netkit", format!("not measured: {why}")),
    }

    let jit = match std::fs::read_to_string("/proc/sys/net/core/bpf_jit_enable") {
        Ok(s) => {
            let value = s.trim().parse::<u8>().ok();
            if value.is_none() {
                g.note("jit", format!("net.core.bpf_jit_enable is {:?}", s.trim()));
            }
            value
        }
        Err(e) => {
            // The sysctl exists only in the initial network namespace: containers and
            // pods do not see it. A loaded program's JIT size tells the same.
            match jited {
                Some(size) => {
                    g.note(
                        "jit",
                        format!(
                            "net.core.bpf_jit_enable unreadable ({e}; it is only visible in the initial network namespace): inferred from a loaded program's JIT size ({size} bytes)"
                        ),
                    );
                    Some(u8::from(size > 0))
                }
                None => {
                    g.note(
                        "jit",
                        format!(
                            "net.core.bpf_jit_enable unreadable ({e}) and no program loaded to tell"
                        ),
                    );
                    None
                }
            }
        }
    };

    g.note("cilium_version", "not in a cluster".into());
    g.note("k3s_version", "not in a cluster".into());

    Facts {
        kernel_release,
        kernel,
        kernel_package,
        arch,
        page_size,
        virtualization: virtualization.unwrap_or_default(),
        btf,
        jit,
        bpffs: Bpffs {
            mounted: bpffs_mounted,
            propagation,
        },
        cgroup2,
        cgroup_sock_addr,
        tcx,
        netkit,
        vxlan,
        geneve,
        ipv6,
        xfrm_esp,
        helpers,
        system_vendor,
        cap_eff,
        cilium_version: None,
        k3s_version: None,
        notes: g.notes,
    }
}

/// Runs each measurement so that neither an error nor a panic escapes; both become notes.
#[derive(Default)]
struct Gatherer {
    notes: BTreeMap<String, String>,
}

impl Gatherer {
    fn note(&mut self, key: &str, text: String) {
        self.notes
            .entry(key.to_string())
            .and_modify(|old| {
                old.push_str("; ");
                old.push_str(&text);
            })
            .or_insert(text);
    }

    fn run<T>(&mut self, key: &str, f: impl FnOnce() -> Result<T, String>) -> Option<T> {
        guarded(f).map_err(|e| self.note(key, e)).ok()
    }
}

/// Runs `f`, turning a panic into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(format!("measurement panicked: {msg}"))
    })
}

fn read_trimmed(path: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// `uname -r` and `uname -m`.
fn uname() -> Result<(String, String), String> {
    // SAFETY: utsname is plain old data; uname(2) fills it and NUL-terminates each field.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(format!("uname: {}", std::io::Error::last_os_error()));
    }
    let field = |f: &[libc::c_char]| {
        // SAFETY: the kernel NUL-terminates every utsname field within its array.
        unsafe { CStr::from_ptr(f.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    Ok((field(&uts.release), field(&uts.machine)))
}

fn page_size() -> Result<u64, String> {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size)
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("sysconf(_SC_PAGESIZE): {}", std::io::Error::last_os_error()))
}

/// Hypervisor, container runtime and nesting, with notes for guesses.
fn virtualization(
    cpu_flags: &[String],
    mounts: &[parse::Mount],
    arch: &str,
) -> (Virtualization, Vec<(&'static str, String)>) {
    let mut notes = Vec::new();
    let hv = virt::HypervisorSignals::read(cpu_flags);
    let (hypervisor, hv_note) = virt::classify_hypervisor(&hv);
    if let Some(n) = hv_note {
        notes.push(("hypervisor", n));
    }
    let mut unread = Vec::new();
    let cs = virt::ContainerSignals::read(mounts, &mut unread);
    let (container, c_note) = virt::classify_container(&cs);
    if let Some(n) = c_note {
        notes.push(("container", n));
    }
    if container.is_none() && !unread.is_empty() {
        notes.push((
            "container",
            format!("judged from cgroups and mounts only: {}", unread.join(", ")),
        ));
    }
    let (nested, n_note) =
        virt::classify_nesting(hypervisor.as_deref(), container.as_deref(), arch, &hv);
    notes.push(("nested", n_note));
    let (container_mode, m_note) = container_mode(
        std::env::var(CONTAINER_MODE_VAR).ok().as_deref(),
        container.as_deref(),
    );
    if let Some(n) = m_note {
        notes.push(("container.mode", n));
    }
    let (vm_accel, a_note) = vm_accel(
        std::env::var(VM_ACCEL_VAR).ok().as_deref(),
        std::env::var(VM_ACCEL_NOTE_VAR).ok().as_deref(),
    );
    if let Some(n) = a_note {
        notes.push(("vm.accel", n));
    }
    (
        Virtualization {
            hypervisor,
            container,
            nested,
            container_mode,
            vm_accel,
        },
        notes,
    )
}

/// Set by the container target: how it started this probe's container. The
/// probe cannot see that itself (a near-privileged container looks privileged
/// from most angles), so it records what it was told, and only known words.
pub const CONTAINER_MODE_VAR: &str = "CONFORMANCE_CONTAINER_MODE";

/// The `container.mode` fact from what the target said, with a note where the
/// word is unknown or no container was detected to go with it.
fn container_mode(told: Option<&str>, container: Option<&str>) -> (Option<String>, Option<String>) {
    match told {
        None | Some("") => (None, None),
        Some(mode @ ("privileged" | "near-privileged")) => {
            let note = match container {
                Some(runtime) => {
                    format!("{mode}, as the container target started this {runtime} container")
                }
                None => format!(
                    "{mode}, as the container target said, although no container runtime was detected here"
                ),
            };
            (Some(mode.to_string()), Some(note))
        }
        Some(other) => (
            None,
            Some(format!(
                "{CONTAINER_MODE_VAR}={other:?} is not a mode this probe knows (privileged, near-privileged): not recorded"
            )),
        ),
    }
}

/// Set by the guest's init from what the `vm` target wrote: the accelerator qemu
/// ran the guest with, and why that one.
pub const VM_ACCEL_VAR: &str = "CONFORMANCE_VM_ACCEL";
pub const VM_ACCEL_NOTE_VAR: &str = "CONFORMANCE_VM_ACCEL_NOTE";

/// The `vm.accel` fact: only the accelerators qemu is started with here.
fn vm_accel(told: Option<&str>, why: Option<&str>) -> (Option<String>, Option<String>) {
    match told {
        None | Some("") => (None, None),
        Some(accel @ ("tcg" | "kvm")) => {
            let note = match why.filter(|w| !w.is_empty()) {
                Some(why) => format!("{accel}, as the vm target started this guest: {why}"),
                None => format!("{accel}, as the vm target started this guest"),
            };
            (Some(accel.to_string()), Some(note))
        }
        Some(other) => (
            None,
            Some(format!(
                "{VM_ACCEL_VAR}={other:?} is not an accelerator this probe knows (tcg, kvm): not recorded"
            )),
        ),
    }
}

#[cfg(test)]
mod vm_accel_tests {
    use super::vm_accel;

    #[test]
    fn only_known_accelerators_are_recorded() {
        assert_eq!(vm_accel(None, None), (None, None));
        let (accel, note) = vm_accel(Some("tcg"), Some("KVM refused at start"));
        assert_eq!(accel.as_deref(), Some("tcg"));
        assert!(note.unwrap().contains("KVM refused at start"));
        let (accel, note) = vm_accel(Some("hvf"), None);
        assert_eq!(accel, None);
        assert!(note.unwrap().contains("not recorded"));
    }
}

#[cfg(test)]
mod container_mode_tests {
    use super::container_mode;

    #[test]
    fn records_only_known_modes_the_target_announced() {
        assert_eq!(container_mode(None, Some("docker")), (None, None));
        let (mode, note) = container_mode(Some("near-privileged"), Some("docker"));
        assert_eq!(mode.as_deref(), Some("near-privileged"));
        assert!(note.unwrap().contains("docker container"));
        let (mode, note) = container_mode(Some("privileged"), None);
        assert_eq!(mode.as_deref(), Some("privileged"));
        assert!(note.unwrap().contains("no container runtime was detected"));
        let (mode, note) = container_mode(Some("root"), Some("docker"));
        assert_eq!(mode, None);
        assert!(note.unwrap().contains("not a mode this probe knows"));
    }
}
