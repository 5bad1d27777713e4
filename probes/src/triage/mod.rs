//! Triage evidence (`probe run --triage`): for every observation that does not
//! pass, or whose control was not blocked, what a person needs to see why, taken
//! while the check's namespaces, programs and counters still exist:
//! `evidence.triage` with each namespace's state (links, addresses, routes,
//! neighbours, qdiscs, filters, the BPF programs on each device), the programs on
//! the probe's cgroup, netfilter BPF links, the kernel's drop reasons while the
//! check ran, and the sysctls and kernel config lines the checks depend on. A part
//! that cannot be collected says why under `unavailable`; nothing here can fail a
//! check.
//!
//! Off unless asked: a plain run pays nothing. Checks run one at a time on the
//! runner's thread, so the state here is per check: [`begin_check`] resets it,
//! [`Node::build`](crate::topology::Node::build) registers its namespaces, whose
//! duplicated descriptors keep them (and their devices) alive until the check's
//! observation is built.

mod drops;
mod programs;
mod state;

use crate::netns::NetNs;
use serde_json::{Map, Value, json};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);
static NAMESPACES: Mutex<Vec<NetNs>> = Mutex::new(Vec::new());
/// Ids of the programs the running check attached itself.
static OURS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static TRACE: Mutex<Option<Result<drops::DropTrace, String>>> = Mutex::new(None);

/// Collection for one run: on from [`Session::start`] until the session is
/// dropped, which removes the drop trace's instance on every way out of the run.
pub struct Session(());

impl Session {
    /// Turns collection on and starts the drop trace.
    pub fn start(run_id: &str) -> Session {
        ENABLED.store(true, Ordering::SeqCst);
        let trace = drops::DropTrace::start(run_id).map_err(|e| format!("{e:#}"));
        *TRACE.lock().unwrap_or_else(|p| p.into_inner()) = Some(trace);
        Session(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::SeqCst);
        TRACE.lock().unwrap_or_else(|p| p.into_inner()).take();
        NAMESPACES.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// What a terminating signal must undo before the probe exits: the drop trace's
/// tracing instance, a kernel object that would outlive the process.
pub fn on_terminate() {
    drops::on_terminate();
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::SeqCst)
}

/// A new check starts: forget the last one's namespaces, empty the drop buffer.
pub fn begin_check() {
    if !enabled() {
        return;
    }
    NAMESPACES.lock().unwrap_or_else(|p| p.into_inner()).clear();
    OURS.lock().unwrap_or_else(|p| p.into_inner()).clear();
    if let Some(Ok(t)) = TRACE.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        t.clear();
    }
}

/// Remembers a namespace of the running check (a duplicated descriptor, dropped at
/// the next [`begin_check`] or [`end_check`]).
pub fn register(ns: &NetNs) {
    if !enabled() {
        return;
    }
    if let Ok(ns) = ns.try_clone() {
        NAMESPACES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ns);
    }
}

/// The check is over: its namespaces may go.
pub fn end_check() {
    NAMESPACES.lock().unwrap_or_else(|p| p.into_inner()).clear();
    OURS.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// The running check attached program `id` as part of itself.
pub fn own(id: u32) {
    if enabled() {
        OURS.lock().unwrap_or_else(|p| p.into_inner()).push(id);
    }
}

/// The program attached last is not the check's (an injected fault).
pub fn disown_last() {
    OURS.lock().unwrap_or_else(|p| p.into_inner()).pop();
}

/// Whether the running check attached program `id` itself.
pub(crate) fn is_ours(id: u32) -> bool {
    OURS.lock().unwrap_or_else(|p| p.into_inner()).contains(&id)
}

/// Sysctls whose value changes what the checks' packets do.
const SYSCTLS: &[&str] = &[
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/ipv4/conf/all/rp_filter",
    "/proc/sys/net/ipv4/conf/default/rp_filter",
    "/proc/sys/net/ipv4/conf/all/forwarding",
    "/proc/sys/net/core/bpf_jit_enable",
    "/proc/sys/net/ipv4/ip_early_demux",
    "/proc/sys/net/ipv4/udp_early_demux",
    "/proc/sys/kernel/unprivileged_bpf_disabled",
];

/// Kernel config options the checks' primitives need.
const CONFIG: &[&str] = &[
    "CONFIG_BPF_SYSCALL",
    "CONFIG_BPF_JIT",
    "CONFIG_NET_CLS_BPF",
    "CONFIG_NET_SCH_INGRESS",
    "CONFIG_NET_CLS_ACT",
    "CONFIG_NET_XGRESS",
    "CONFIG_VETH",
    "CONFIG_NETKIT",
    "CONFIG_DEBUG_INFO_BTF",
    "CONFIG_CGROUP_BPF",
    "CONFIG_BPF_EVENTS",
    "CONFIG_NETFILTER_BPF_LINK",
    "CONFIG_XFRM",
];

fn sysctls() -> Value {
    let mut m = Map::new();
    for p in SYSCTLS {
        let key = p.trim_start_matches("/proc/sys/").replace('/', ".");
        if let Ok(v) = std::fs::read_to_string(p) {
            m.insert(key, json!(v.trim()));
        }
    }
    Value::Object(m)
}

/// The options above from `/proc/config.gz` (gzip, read with flate2's decoder) or
/// `/boot/config-<release>`; absent options are `not set`.
fn kernel_config() -> Result<Value, String> {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = read_config_gz("/proc/config.gz")
        .or_else(|_| {
            std::fs::read_to_string(format!("/boot/config-{release}"))
                .map_err(|e| format!("/boot/config-{release}: {e}"))
        })
        .map_err(|e| format!("no kernel config: /proc/config.gz and {e}"))?;
    let mut m = Map::new();
    for opt in CONFIG {
        let value = text.lines().find_map(|l| {
            l.strip_prefix(opt)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::to_string)
        });
        m.insert(
            opt.to_string(),
            json!(value.unwrap_or_else(|| "not set".into())),
        );
    }
    Ok(Value::Object(m))
}

fn read_config_gz(path: &str) -> Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut s = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut s)
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(s)
}

/// Whether an observation needs triage evidence: it did not pass, or its control
/// was not blocked.
pub fn needed(pass: bool, control_blocked: bool) -> bool {
    enabled() && (!pass || !control_blocked)
}

/// Everything, as `evidence.triage`.
pub fn collect() -> Value {
    let mut unavailable = Map::new();
    let namespaces: Vec<Value> = NAMESPACES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(state::namespace)
        .collect();
    let drops = match TRACE.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        Some(Ok(t)) => Some(t.read()),
        Some(Err(e)) => {
            unavailable.insert("drops".into(), json!(e));
            None
        }
        None => None,
    };
    let mut v = json!({
        "namespaces": namespaces,
        "cgroup": programs::cgroup(),
        "netfilter_links": programs::netfilter_links(),
        "sysctls": sysctls(),
    });
    if let Some(d) = drops {
        v["drops"] = d;
    }
    match kernel_config() {
        Ok(c) => v["kernel_config"] = c,
        Err(e) => {
            unavailable.insert("kernel_config".into(), json!(e));
        }
    }
    if !unavailable.is_empty() {
        v["unavailable"] = Value::Object(unavailable);
    }
    v
}
