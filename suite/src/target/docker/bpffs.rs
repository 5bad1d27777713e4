//! Is the host's `/sys/fs/bpf` a bpffs that can be bound into a node container, and
//! with `rshared` propagation? Checked here, before create, so the answer names the
//! fix instead of the daemon's "not a shared mount"; read-only: the host's mounts and
//! their propagation are never changed here.

use super::DockerError;

/// The daemon's own `/sys/fs/bpf` can be checked from here only when the daemon runs
/// on this host, in this mount namespace's view: a Linux host whose hostname is the
/// daemon's. Elsewhere (Docker Desktop's VM, a remote `DOCKER_HOST`) the daemon's
/// error is what the caller gets.
pub(crate) fn check_local(daemon_hostname: &str, rshared: bool) -> Result<(), DockerError> {
    if !cfg!(target_os = "linux") || daemon_hostname != super::sweep::hostname() {
        return Ok(());
    }
    match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(text) => check(&text, rshared),
        Err(_) => Ok(()),
    }
}

/// The mountinfo rule: the last mount at `/sys/fs/bpf` (the one on top) must be
/// `bpf`, and `shared:` among its optional fields for `rshared`.
pub(crate) fn check(mountinfo: &str, rshared: bool) -> Result<(), DockerError> {
    let top = mountinfo
        .lines()
        .filter_map(parse)
        .rfind(|m| m.mount_point == "/sys/fs/bpf");
    match top {
        Some(m) if m.fs_type == "bpf" => {
            if rshared && !m.shared {
                Err(DockerError::Bpffs(
                    "the host's /sys/fs/bpf is not a shared mount, so an rshared bind cannot start: `mount --make-shared /sys/fs/bpf` on the Docker host (what K3D_FIX_MOUNTS does for /), or bind without rshared".into(),
                ))
            } else {
                Ok(())
            }
        }
        Some(m) => Err(DockerError::Bpffs(format!(
            "the host's /sys/fs/bpf is {}, not bpffs: `mount -t bpf bpf /sys/fs/bpf` on the Docker host (a Cilium node does this at boot), or use a private bpffs",
            m.fs_type
        ))),
        None => Err(DockerError::Bpffs(
            "the host has no bpffs at /sys/fs/bpf to bind: `mount -t bpf bpf /sys/fs/bpf` on the Docker host (a Cilium node does this at boot), or use a private bpffs".into(),
        )),
    }
}

struct MountLine<'a> {
    mount_point: &'a str,
    fs_type: &'a str,
    shared: bool,
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:2 - ext3 /dev/root rw`
fn parse(line: &str) -> Option<MountLine<'_>> {
    let (left, right) = line.split_once(" - ")?;
    let mut fields = left.split(' ');
    let mount_point = fields.nth(4)?;
    let shared = fields.skip(1).any(|f| f.starts_with("shared:"));
    let fs_type = right.split(' ').next()?;
    Some(MountLine {
        mount_point,
        fs_type,
        shared,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYS: &str = "25 1 0:23 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw\n";

    #[test]
    fn no_bpffs_says_how_to_mount_one() {
        let e = check(SYS, false).unwrap_err().to_string();
        assert!(e.contains("no bpffs at /sys/fs/bpf"), "{e}");
        assert!(e.contains("mount -t bpf bpf /sys/fs/bpf"), "{e}");
    }

    #[test]
    fn a_private_bpffs_binds_but_not_rshared() {
        let info = format!(
            "{SYS}40 25 0:35 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime - bpf bpf rw,mode=700\n"
        );
        check(&info, false).unwrap();
        let e = check(&info, true).unwrap_err().to_string();
        assert!(e.contains("mount --make-shared /sys/fs/bpf"), "{e}");
    }

    #[test]
    fn a_shared_bpffs_binds_rshared() {
        let info =
            format!("{SYS}40 25 0:35 / /sys/fs/bpf rw,relatime shared:7 - bpf bpf rw,mode=700\n");
        check(&info, true).unwrap();
    }

    #[test]
    fn the_top_mount_decides() {
        let info = format!(
            "{SYS}40 25 0:35 / /sys/fs/bpf rw shared:7 - bpf bpf rw\n41 40 0:36 / /sys/fs/bpf rw - tmpfs tmpfs rw\n"
        );
        let e = check(&info, false).unwrap_err().to_string();
        assert!(e.contains("is tmpfs, not bpffs"), "{e}");
    }
}
