//! The kernel's own drop reasons while a check runs: `skb:kfree_skb` events in a
//! tracefs instance of the probe's own (a buffer apart from everyone else's,
//! removed at the end of the run). Where tracefs is not mounted, it is mounted in
//! a throwaway mount namespace that nothing else sees; the open directory keeps
//! it usable after that namespace is gone. The events are system-wide (the
//! tracepoint carries no namespace), so the counts can include other traffic:
//! only IPv4 events are kept, and the reason says so.
//!
//! SIGTERM and SIGINT remove the instance before the probe exits
//! ([`on_terminate`]). An instance outlives a probe killed by SIGKILL; its name
//! carries the probe's pid and pid namespace, so the next run removes those whose
//! owner is gone.

use anyhow::{Context, Result, anyhow, bail};
use nix::mount::{MsFlags, mount};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;

const PREFIX: &str = "cc-";

/// The live instance's `enable` file and directory, for [`on_terminate`]: set once
/// the instance exists, read from a signal handler (an atomic load, no allocation).
static LIVE: std::sync::OnceLock<(std::ffi::CString, std::ffi::CString)> =
    std::sync::OnceLock::new();

/// On SIGTERM/SIGINT, from the probe's terminator thread while the others run on:
/// switches the event off and removes the instance, retrying for up to a second
/// while another thread still has one of its files open (EBUSY). No lock is
/// taken, so a thread stopped holding one cannot block this.
pub fn on_terminate() {
    let Some((enable, dir)) = LIVE.get() else {
        return;
    };
    let _ = std::fs::write(enable.to_string_lossy().as_ref(), "0");
    for _ in 0..100 {
        // SAFETY: rmdir(2) on a NUL-terminated path that lives forever.
        if unsafe { libc::rmdir(dir.as_ptr()) } == 0 {
            return;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EBUSY) => std::thread::sleep(std::time::Duration::from_millis(10)),
            _ => return,
        }
    }
}

pub struct DropTrace {
    root: File,
    instance: String,
}

/// `cc-<pid ns inode>-<pid>-<run id>`.
fn instance_name(run_id: &str) -> String {
    format!("{PREFIX}{}-{}-{run_id}", pid_ns(), std::process::id())
}

fn pid_ns() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid")
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// The tracefs root as an open directory.
fn open_root() -> Result<File> {
    for p in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if std::path::Path::new(&format!("{p}/instances")).is_dir() {
            return File::open(p).with_context(|| format!("open {p}"));
        }
    }
    std::thread::scope(|s| {
        s.spawn(|| -> Result<File> {
            crate::mountns::enter_slave("a private tracefs")?;
            mount(
                Some("tracefs"),
                "/sys/kernel/tracing",
                Some("tracefs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .context("mount tracefs at /sys/kernel/tracing (a private mount)")?;
            File::open("/sys/kernel/tracing").context("open the private tracefs")
        })
        .join()
        .map_err(|_| anyhow!("tracefs thread panicked"))?
    })
}

impl DropTrace {
    fn path(&self, rel: &str) -> String {
        format!("/proc/self/fd/{}/{rel}", self.root.as_raw_fd())
    }

    fn instance_path(&self, rel: &str) -> String {
        self.path(&format!("instances/{}/{rel}", self.instance))
    }

    /// Removes instances of dead probes of this pid namespace, then makes this one
    /// with `skb:kfree_skb` enabled.
    pub fn start(run_id: &str) -> Result<Self> {
        let root = open_root()?;
        let mut t = DropTrace {
            root,
            instance: instance_name(run_id),
        };
        t.sweep();
        let enable = t.instance_path("events/skb/kfree_skb/enable");
        let dir = t.path(&format!("instances/{}", t.instance));
        // Known to the signal handler before the instance exists, so a signal at
        // any point after this finds it.
        if let (Ok(e), Ok(d)) = (
            std::ffi::CString::new(enable.clone()),
            std::ffi::CString::new(dir.clone()),
        ) {
            let _ = LIVE.set((e, d));
        }
        std::fs::create_dir(&dir)
            .with_context(|| format!("create tracing instance {}", t.instance))?;
        if let Err(e) = std::fs::write(&enable, "1") {
            let _ = std::fs::remove_dir(t.path(&format!("instances/{}", t.instance)));
            t.instance.clear();
            bail!("enable skb:kfree_skb: {e}");
        }
        Ok(t)
    }

    fn sweep(&self) {
        let mine = format!("{PREFIX}{}-", pid_ns());
        let Ok(entries) = std::fs::read_dir(self.path("instances")) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(&mine) else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or_default();
            if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir(self.path(&format!("instances/{name}")));
            }
        }
    }

    /// Empties the buffer: what is read next belongs to the check that starts now.
    pub fn clear(&self) {
        let _ = std::fs::write(self.instance_path("trace"), "");
    }

    /// The IPv4 drops since [`clear`](Self::clear), by reason and location.
    pub fn read(&self) -> Value {
        match std::fs::read_to_string(self.instance_path("trace")) {
            Ok(text) => json!({
                "source": "tracefs skb:kfree_skb, IPv4 only, system-wide, while the check ran",
                "by_reason": summarise(&text),
            }),
            Err(e) => json!({ "unavailable": format!("read the trace buffer: {e}") }),
        }
    }
}

impl Drop for DropTrace {
    fn drop(&mut self) {
        if !self.instance.is_empty() {
            let _ = std::fs::write(self.instance_path("events/skb/kfree_skb/enable"), "0");
            let _ = std::fs::remove_dir(self.path(&format!("instances/{}", self.instance)));
        }
    }
}

/// `… kfree_skb: skbaddr=… rx_sk=… protocol=2048 location=__udp4_lib_rcv+0x4bc/0xd00 reason: NO_SOCKET`
/// → counts per (reason, location), location without its offset.
fn summarise(text: &str) -> Value {
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    for line in text.lines().filter(|l| l.contains("kfree_skb:")) {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(str::to_string)
        };
        if field("protocol=").as_deref() != Some("2048") {
            continue;
        }
        let location = field("location=")
            .map(|l| l.split('+').next().unwrap_or_default().to_string())
            .unwrap_or_default();
        let reason = line
            .rsplit_once("reason: ")
            .map(|(_, r)| r.trim().to_string())
            .unwrap_or_else(|| "?".into());
        *counts.entry((reason, location)).or_default() += 1;
    }
    let mut rows: Vec<_> = counts.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    json!(
        rows.into_iter()
            .map(|((reason, location), count)| json!({
                "reason": reason, "location": location, "count": count
            }))
            .collect::<Vec<_>>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_ipv4_drops_by_reason_and_function() {
        let text = "\
# tracer: nop
 python3-2562 [001] .Ns1. 1015.09: kfree_skb: skbaddr=0000a rx_sk=0000 protocol=2048 location=__udp4_lib_rcv+0x4bc/0xd00 reason: NO_SOCKET
 python3-2562 [001] ..s1. 1015.10: kfree_skb: skbaddr=0000b rx_sk=0000 protocol=2048 location=__udp4_lib_rcv+0x4bc/0xd00 reason: NO_SOCKET
 <idle>-0 [000] ..s1. 1015.11: kfree_skb: skbaddr=0000c rx_sk=0000 protocol=2048 location=tcf_classify+0x10/0x20 reason: TC_EGRESS
 <idle>-0 [000] ..s1. 1015.12: kfree_skb: skbaddr=0000d rx_sk=0000 protocol=34525 location=ip6_rcv+0x1/0x2 reason: IPV6DISABLED
";
        assert_eq!(
            summarise(text),
            json!([
                {"reason": "NO_SOCKET", "location": "__udp4_lib_rcv", "count": 2},
                {"reason": "TC_EGRESS", "location": "tcf_classify", "count": 1},
            ])
        );
    }

    #[test]
    fn instance_names_carry_pid_namespace_and_pid() {
        let n = instance_name("ab12");
        assert!(n.starts_with("cc-"), "{n}");
        assert!(n.ends_with(&format!("-{}-ab12", std::process::id())), "{n}");
    }
}
