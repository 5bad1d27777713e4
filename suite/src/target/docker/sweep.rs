//! Labels that say whose a container is, and the sweep that removes what a killed run
//! left behind.
//!
//! The rule: a container labelled [`LABEL`] is removed when its owner, as recorded in
//! its labels at create, is provably gone: same host (hostname), and either another
//! boot (Linux boot id) or a pid that is not alive, or alive with another start time
//! (the pid was reused). A container without owner labels, or of another host, is left
//! alone: nothing proves its run is over. Containers of `keep_run` are always kept.

use super::DockerError;
use super::error::status;
use super::rt;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use std::collections::HashMap;

/// On every container this module creates: `1`.
pub const LABEL: &str = "io.cilium-conformance";
/// The run id.
pub const LABEL_RUN: &str = "io.cilium-conformance.run";
/// The owning process's hostname.
pub const LABEL_HOST: &str = "io.cilium-conformance.host";
/// The owning host's boot id (Linux), so a reboot makes every old pid dead.
pub const LABEL_BOOT: &str = "io.cilium-conformance.boot";
/// The owning process's pid.
pub const LABEL_PID: &str = "io.cilium-conformance.pid";
/// The owning process's start time in clock ticks since boot (Linux), against pid reuse.
pub const LABEL_PID_START: &str = "io.cilium-conformance.pid-start";

/// The process a container belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub host: String,
    pub boot: Option<String>,
    pub pid: u32,
    pub pid_start: Option<u64>,
}

impl Owner {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Owner {
            host: hostname(),
            boot: boot_id(),
            pid,
            pid_start: pid_start(pid),
        }
    }

    /// The labels that record it ([`LABEL`] included; the run label is the caller's).
    pub fn labels(&self) -> HashMap<String, String> {
        let mut l = HashMap::from([
            (LABEL.to_string(), "1".to_string()),
            (LABEL_HOST.to_string(), self.host.clone()),
            (LABEL_PID.to_string(), self.pid.to_string()),
        ]);
        if let Some(b) = &self.boot {
            l.insert(LABEL_BOOT.into(), b.clone());
        }
        if let Some(s) = self.pid_start {
            l.insert(LABEL_PID_START.into(), s.to_string());
        }
        l
    }

    /// Reads the owner back; `None` without a host or pid label.
    pub fn from_labels(labels: &HashMap<String, String>) -> Option<Self> {
        Some(Owner {
            host: labels.get(LABEL_HOST)?.clone(),
            boot: labels.get(LABEL_BOOT).cloned(),
            pid: labels.get(LABEL_PID)?.parse().ok()?,
            pid_start: labels.get(LABEL_PID_START).and_then(|s| s.parse().ok()),
        })
    }
}

/// Why a container is kept or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Remove,
    KeepRun,
    KeepUnowned,
    KeepOtherHost,
    KeepAlive,
}

/// The rule of this module's doc, with liveness passed in (tests fake it).
pub(crate) fn decide(
    labels: &HashMap<String, String>,
    keep_run: Option<&str>,
    me: &Owner,
    alive: impl Fn(&Owner) -> bool,
) -> Decision {
    if keep_run.is_some() && labels.get(LABEL_RUN).map(String::as_str) == keep_run {
        return Decision::KeepRun;
    }
    let Some(owner) = Owner::from_labels(labels) else {
        return Decision::KeepUnowned;
    };
    if owner.host != me.host {
        return Decision::KeepOtherHost;
    }
    if owner.boot.is_some() && me.boot.is_some() && owner.boot != me.boot {
        return Decision::Remove;
    }
    if alive(&owner) {
        Decision::KeepAlive
    } else {
        Decision::Remove
    }
}

/// Is the owner's process still running on this host (same boot assumed)?
fn alive(owner: &Owner) -> bool {
    let Ok(pid) = libc::pid_t::try_from(owner.pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only checks that the pid exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    match (owner.pid_start, pid_start(owner.pid)) {
        (Some(recorded), Some(now)) => recorded == now,
        _ => true,
    }
}

/// Removes every labelled container whose run is provably over (see the module doc),
/// never those of `keep_run`. Returns how many were removed.
pub fn sweep(keep_run: Option<&str>) -> Result<usize, DockerError> {
    rt::block_on(async {
        let docker = rt::connect().await?;
        let filters = HashMap::from([("label", vec![format!("{LABEL}=1")])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = docker
            .list_containers(Some(options))
            .await
            .map_err(|e| DockerError::api("listing containers", &e))?;
        let me = Owner::current();
        let mut removed = 0;
        for c in list {
            let (Some(id), Some(labels)) = (c.id, c.labels) else {
                continue;
            };
            if decide(&labels, keep_run, &me, alive) != Decision::Remove {
                continue;
            }
            let force = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            match docker.remove_container(&id, Some(force)).await {
                Ok(()) => removed += 1,
                // Removed meanwhile (its own run's Drop, another sweep).
                Err(e) if status(&e) == Some(404) || status(&e) == Some(409) => {}
                Err(e) => return Err(DockerError::api(format!("removing container {id}"), &e)),
            }
        }
        Ok(removed)
    })?
}

pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string()).filter(|s| !s.is_empty())
}

/// Field 22 of `/proc/<pid>/stat` (after the parenthesised command, which may hold
/// spaces); `None` where there is no procfs.
fn pid_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start(&stat)
}

fn parse_start(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After the command: state (field 3) ... starttime (field 22).
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Owner {
        Owner {
            host: "laptop".into(),
            boot: Some("b1".into()),
            pid: 100,
            pid_start: Some(5),
        }
    }

    fn labels_of(owner: &Owner, run: &str) -> HashMap<String, String> {
        let mut l = owner.labels();
        l.insert(LABEL_RUN.into(), run.into());
        l
    }

    #[test]
    fn labels_round_trip() {
        let o = me();
        assert_eq!(Owner::from_labels(&o.labels()), Some(o));
        let bare = Owner {
            boot: None,
            pid_start: None,
            ..me()
        };
        assert_eq!(Owner::from_labels(&bare.labels()), Some(bare));
    }

    #[test]
    fn the_sweep_rule() {
        let dead = |_: &Owner| false;
        let live = |_: &Owner| true;
        let other_pid = Owner { pid: 7, ..me() };
        let l = labels_of(&other_pid, "r1");
        assert_eq!(decide(&l, None, &me(), dead), Decision::Remove);
        assert_eq!(decide(&l, None, &me(), live), Decision::KeepAlive);
        assert_eq!(decide(&l, Some("r1"), &me(), dead), Decision::KeepRun);
        assert_eq!(decide(&l, Some("r2"), &me(), dead), Decision::Remove);
        let elsewhere = labels_of(
            &Owner {
                host: "ci-runner".into(),
                ..me()
            },
            "r1",
        );
        assert_eq!(
            decide(&elsewhere, None, &me(), dead),
            Decision::KeepOtherHost
        );
        let rebooted = labels_of(
            &Owner {
                boot: Some("b0".into()),
                ..me()
            },
            "r1",
        );
        assert_eq!(decide(&rebooted, None, &me(), live), Decision::Remove);
        let unowned = HashMap::from([(LABEL.to_string(), "1".to_string())]);
        assert_eq!(decide(&unowned, None, &me(), dead), Decision::KeepUnowned);
    }

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let now = Owner::current();
        assert!(alive(&now));
        if let Some(start) = now.pid_start {
            assert!(!alive(&Owner {
                pid_start: Some(start + 1),
                ..now.clone()
            }));
        }
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!alive(&Owner { pid, ..now }));
    }

    #[test]
    fn start_time_is_read_after_the_command() {
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 0 0";
        assert_eq!(parse_start(stat), Some(987654));
        assert_eq!(parse_start("garbage"), None);
    }
}
