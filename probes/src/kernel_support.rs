//! Can the lab run here? Asked of the kernel itself, once per process, for every
//! harness that needs root, BPF and namespaces (`probes/tests/kernel.rs`, the e2e
//! tests, later the xtask preflight).
//!
//! Why not a sysctl: `/proc/sys/net/core/bpf_jit_enable`, like most `net.core`
//! sysctls, exists only in the initial network namespace, so inside a container (a
//! k3d node, a CI job) it is absent although BPF works. Instead this does what the
//! lab does, in miniature: load a trivial TC classifier, unshare a network namespace
//! on a throwaway thread and create a veth pair in it. Everything it makes dies with
//! that thread (the program fd is closed at once).

use std::sync::OnceLock;

/// One thing the lab needs, in the order they are asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Effective uid 0 (the probe refuses to run otherwise).
    Root,
    /// CAP_SYS_ADMIN and CAP_NET_ADMIN in the effective set.
    Capabilities,
    /// `bpf(BPF_PROG_LOAD)` of a `sched_cls` program.
    BpfLoad,
    /// `unshare(CLONE_NEWNET)`.
    NetNs,
    /// A veth pair inside that namespace.
    Veth,
}

impl Need {
    fn what(self) -> &'static str {
        match self {
            Need::Root => "not root",
            Need::Capabilities => "root without the capabilities the lab needs",
            Need::BpfLoad => "cannot load a BPF program",
            Need::NetNs => "cannot create a network namespace",
            Need::Veth => "cannot create a veth pair in a new network namespace",
        }
    }
}

/// `None` when the lab can run here, else one line saying what is missing and why.
/// Asked once per process; later calls return the first answer.
pub fn lab_missing() -> Option<&'static str> {
    static ANSWER: OnceLock<Option<String>> = OnceLock::new();
    ANSWER.get_or_init(ask).as_deref()
}

/// One question to the kernel: `Err(why)` when the answer is no.
type Step<'a> = dyn Fn() -> Result<(), String> + 'a;

/// Asks the kernel, in [`Need`] order, stopping at the first thing missing.
fn ask() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let steps: [(Need, &Step<'_>); 5] = [
        (Need::Root, &|| root(euid)),
        (Need::Capabilities, &|| capabilities(cap_eff(&status))),
        (Need::BpfLoad, &load_trivial_program),
        (Need::NetNs, &|| in_new_netns(|| Ok(()))),
        (Need::Veth, &|| in_new_netns(make_veth)),
    ];
    first_missing(steps.iter().map(|(need, step)| (*need, step())))
}

/// The first failed step as "<what>: <why>", or `None`. Steps are lazy: nothing
/// after the first failure is asked.
fn first_missing(mut steps: impl Iterator<Item = (Need, Result<(), String>)>) -> Option<String> {
    steps.find_map(|(need, r)| r.err().map(|why| format!("{}: {why}", need.what())))
}

fn root(euid: u32) -> Result<(), String> {
    if euid == 0 {
        Ok(())
    } else {
        Err(format!(
            "effective uid {euid} (the probe needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN)"
        ))
    }
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// `CapEff` of `/proc/self/status`, a hex bit set.
fn cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

fn capabilities(cap_eff: Option<u64>) -> Result<(), String> {
    let Some(set) = cap_eff else {
        return Err("no CapEff in /proc/self/status".into());
    };
    let lacking: Vec<&str> = [
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
    ]
    .into_iter()
    .filter(|(bit, _)| set & (1 << bit) == 0)
    .map(|(_, name)| name)
    .collect();
    if lacking.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "CapEff {set:016x} lacks {} (a container needs --cap-add SYS_ADMIN --cap-add NET_ADMIN or --privileged)",
            lacking.join(" and ")
        ))
    }
}

/// The leading fields of `union bpf_attr` for `BPF_PROG_LOAD` (the kernel accepts a
/// shorter attr and zero-fills the rest).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// Loads `r0 = 0; exit` as a `sched_cls` program (the type every lab hook is) and
/// closes it at once. Named `cc_support`, never `hook`/`probe_*`, so the cleanup
/// tests' count of the probe's programs never sees it.
fn load_trivial_program() -> Result<(), String> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
    // mov64 r0, 0 ; exit
    let insns: [u64; 2] = [u64::from_le_bytes([0xb7, 0, 0, 0, 0, 0, 0, 0]), 0x95];
    let license = c"GPL";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SCHED_CLS,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..10].copy_from_slice(b"cc_support");
    // SAFETY: attr, insns and license outlive the call; the size passed is attr's.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>() as u32,
        )
    };
    if fd < 0 {
        return Err(bpf_error(std::io::Error::last_os_error()));
    }
    // SAFETY: the syscall returned a descriptor we own.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

fn bpf_error(e: std::io::Error) -> String {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) => {
            " (needs CAP_BPF or CAP_SYS_ADMIN; a seccomp profile may block bpf(2): --security-opt seccomp=unconfined)"
        }
        Some(libc::ENOSYS) => " (kernel without CONFIG_BPF_SYSCALL, or bpf(2) filtered)",
        Some(libc::EINVAL) => " (this kernel rejects a minimal sched_cls program)",
        _ => "",
    };
    format!("bpf(BPF_PROG_LOAD, sched_cls): {e}{hint}")
}

/// Runs `f` on a throwaway thread inside a fresh network namespace, which dies with
/// the thread.
fn in_new_netns(f: impl FnOnce() -> Result<(), String> + Send) -> Result<(), String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("unshare(CLONE_NEWNET): {e} (needs CAP_SYS_ADMIN)"))?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err("namespace thread panicked".into()))
    })
}

fn make_veth() -> Result<(), String> {
    crate::netlink::Rtnl::new()
        .and_then(|mut rtnl| rtnl.add_veth("ccsup0", "ccsup1", None))
        .map_err(|e| format!("{e:#} (needs CONFIG_VETH and CAP_NET_ADMIN)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_effective_capability_set() {
        let status = "Name:\tprobe\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
        assert_eq!(cap_eff(status), Some(0x1fffeffffff));
        assert_eq!(cap_eff("Name:\tx\n"), None);
    }

    #[test]
    fn names_each_missing_capability() {
        assert!(capabilities(Some(0x1fffeffffff)).is_ok());
        let none = capabilities(Some(0)).unwrap_err();
        assert!(none.contains("CAP_SYS_ADMIN and CAP_NET_ADMIN"), "{none}");
        let net_only = capabilities(Some(1 << CAP_NET_ADMIN)).unwrap_err();
        assert!(
            net_only.contains("CAP_SYS_ADMIN") && !net_only.contains("CAP_NET_ADMIN"),
            "{net_only}"
        );
        assert!(capabilities(None).is_err());
    }

    #[test]
    fn not_root_names_the_uid() {
        assert!(root(0).is_ok());
        assert!(root(1000).unwrap_err().contains("1000"));
    }

    #[test]
    fn reports_the_first_missing_step_and_asks_nothing_after_it() {
        let mut asked = Vec::new();
        let steps = [
            (Need::Root, Ok(())),
            (Need::BpfLoad, Err("EPERM".to_string())),
            (Need::NetNs, Err("never asked".to_string())),
        ];
        let got = first_missing(steps.into_iter().inspect(|(n, _)| asked.push(*n)));
        assert_eq!(got.as_deref(), Some("cannot load a BPF program: EPERM"));
        assert_eq!(asked, [Need::Root, Need::BpfLoad]);
        assert_eq!(first_missing([(Need::Root, Ok(()))].into_iter()), None);
    }

    #[test]
    fn bpf_errors_say_what_to_grant() {
        let eperm = bpf_error(std::io::Error::from_raw_os_error(libc::EPERM));
        assert!(
            eperm.contains("CAP_BPF") && eperm.contains("seccomp"),
            "{eperm}"
        );
        let enosys = bpf_error(std::io::Error::from_raw_os_error(libc::ENOSYS));
        assert!(enosys.contains("CONFIG_BPF_SYSCALL"), "{enosys}");
    }
}
