//! Run-scoped cgroup v2 directories for checks whose programs attach to a cgroup
//! (`socket-lb.connect`), and sockets created by a member of one.
//!
//! A socket belongs to the cgroup of the task that created it (`sk_alloc` →
//! `cgroup_sk_alloc`), and cgroup programs run for the socket's cgroup, wherever
//! the socket is used from. So the probe never moves itself (cgroup v2 moves
//! whole processes, and the probe's other checks run on its other threads): a
//! forked child joins the cgroup, creates the sockets in the network namespace
//! it inherited from the forking thread, hands them back over `SCM_RIGHTS` and
//! exits ([`Cgroup::sockets`]). The probe then uses them like any other socket.
//!
//! The directory is `<cgroup2 mount><probe's cgroup>/cc-<pid>-<run id>-<purpose>`.
//! It is removed when the [`Cgroup`] is dropped (after its member exited and its
//! programs were detached). Unlike namespaces, a cgroup directory outlives a
//! killed probe: [`Cgroup::create`] sweeps `cc-<pid>-...` directories whose
//! process is gone and that are older than [`SWEEP_AGE`].

use anyhow::{Context, Result, anyhow, bail};
use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Prefix of every cgroup directory the probe creates.
pub const PREFIX: &str = "cc-";

/// A leftover directory is swept only when its process is gone and it is older
/// than this (a pid of another pid namespace may look gone from here).
pub const SWEEP_AGE: Duration = Duration::from_secs(60);

/// Most sockets one [`Cgroup::sockets`] call creates.
pub const MAX_SOCKETS: usize = 16;

/// The probe's own cgroup v2 directory: the cgroup2 mount plus the `0::` line
/// of `/proc/self/cgroup`.
pub fn own_dir() -> Result<PathBuf> {
    let mounts = crate::facts::parse::parse_mountinfo(
        &std::fs::read_to_string("/proc/self/mountinfo").context("read /proc/self/mountinfo")?,
    );
    let root = crate::facts::parse::cgroup2_mount(&mounts)
        .ok_or_else(|| anyhow!("no cgroup2 mount in /proc/self/mountinfo"))?;
    let text = std::fs::read_to_string("/proc/self/cgroup").context("read /proc/self/cgroup")?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| anyhow!("no cgroup v2 (0::) line in /proc/self/cgroup"))?;
    Ok(PathBuf::from(format!(
        "{}/{}",
        root.trim_end_matches('/'),
        rel.trim().trim_start_matches('/')
    )))
}

/// The directory name for `run_id` and `purpose` (only `[A-Za-z0-9_-]` kept).
pub fn dir_name(pid: u32, run_id: &str, purpose: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    };
    format!("{PREFIX}{pid}-{}-{}", clean(run_id), clean(purpose))
}

/// The pid a probe cgroup directory name starts with.
pub fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// A child cgroup of the probe's own, removed on drop.
pub struct Cgroup {
    path: PathBuf,
    dir: File,
}

impl Cgroup {
    /// Creates `cc-<pid>-<run_id>-<purpose>` under the probe's cgroup, after
    /// sweeping what killed earlier probes left there.
    pub fn create(run_id: &str, purpose: &str) -> Result<Self> {
        let parent = own_dir()?;
        sweep(&parent);
        let path = parent.join(dir_name(std::process::id(), run_id, purpose));
        std::fs::create_dir(&path).with_context(|| format!("create cgroup {}", path.display()))?;
        let dir = match File::open(&path) {
            Ok(dir) => dir,
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                return Err(e).with_context(|| format!("open cgroup {}", path.display()));
            }
        };
        Ok(Self { path, dir })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Processes in the cgroup now (its `cgroup.procs`).
    pub fn members(&self) -> Result<usize> {
        let procs = self.path.join("cgroup.procs");
        Ok(std::fs::read_to_string(&procs)
            .with_context(|| format!("read {}", procs.display()))?
            .lines()
            .count())
    }

    /// Creates one `AF_INET` socket per entry of `types` (`SOCK_STREAM`,
    /// `SOCK_DGRAM`) in this cgroup and in `ns`: a child forked on a thread inside
    /// `ns` joins the cgroup, creates them, sends them back and exits.
    pub fn sockets(&self, ns: &crate::netns::NetNs, types: &[libc::c_int]) -> Result<Vec<OwnedFd>> {
        if types.is_empty() || types.len() > MAX_SOCKETS {
            bail!("{} sockets asked, 1 to {MAX_SOCKETS} possible", types.len());
        }
        let procs = CString::new(self.path.join("cgroup.procs").as_os_str().as_bytes())
            .context("cgroup path has a NUL byte")?;
        ns.run(|| fork_sockets(&procs, types))
            .with_context(|| format!("create sockets in cgroup {}", self.path.display()))
    }
}

impl AsFd for Cgroup {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // The member has exited (and was reaped) before `sockets` returned; a
        // directory still busy for a moment is retried briefly.
        for _ in 0..50 {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }
}

/// What a terminating signal must undo: this probe's own `cc-<pid>-...`
/// directories, which would outlive the process (a member forked for sockets
/// exits on its own within moments, so a busy one is retried briefly).
pub fn on_terminate() {
    let Ok(parent) = own_dir() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(&parent) else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        if owner_pid(&entry.file_name().to_string_lossy()) != Some(me) {
            continue;
        }
        for _ in 0..50 {
            match std::fs::remove_dir(entry.path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                _ => break,
            }
        }
    }
}

/// Removes `cc-<pid>-...` directories under `parent` whose process is gone and
/// that are older than [`SWEEP_AGE`]. Best effort: a busy one stays.
pub fn sweep(parent: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return 0;
    };
    let me = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = owner_pid(&name.to_string_lossy()) else {
            continue;
        };
        if pid == me || pid_alive(pid) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= SWEEP_AGE);
        if old && std::fs::remove_dir(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Room for `MAX_SOCKETS` descriptors in one `SCM_RIGHTS` control message.
const CMSG_BUF: usize = 128;
const _: () = assert!(CMSG_BUF >= 16 + MAX_SOCKETS * 4);

/// What the child sends with the descriptors: 0 for success, else the step
/// that failed and its errno.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Report {
    step: u32,
    errno: i32,
}

const STEP_OPEN: u32 = 1;
const STEP_JOIN: u32 = 2;
const STEP_SOCKET: u32 = 3;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Forks the member: it must only make async-signal-safe calls (the probe is
/// multi-threaded), so everything it needs is prepared here and it uses raw
/// syscalls on stack buffers only.
fn fork_sockets(procs: &CStr, types: &[libc::c_int]) -> Result<Vec<OwnedFd>> {
    let mut pair = [0 as RawFd; 2];
    // SAFETY: socketpair fills the two descriptors.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error()).context("socketpair");
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
    let mut types_buf = [0 as libc::c_int; MAX_SOCKETS];
    types_buf[..types.len()].copy_from_slice(types);
    let count = types.len();
    let child_end = std::os::fd::AsRawFd::as_raw_fd(&theirs);

    // SAFETY: fork in a multi-threaded process: the child below only calls
    // async-signal-safe functions (open, write, close, socket, sendmsg, _exit)
    // on memory prepared before the fork, and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        // SAFETY: see above; `procs` and `types_buf` were prepared before the fork.
        unsafe { member(procs.as_ptr(), &types_buf[..count], child_end) }
    }
    drop(theirs);
    let result = receive(&ours, count);
    let mut status = 0;
    // SAFETY: waits for the child forked above; it exits right after sending.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let (report, fds) = result?;
    match report.step {
        0 if fds.len() == count => Ok(fds),
        0 => bail!("the member sent {} of {count} sockets", fds.len()),
        step => {
            let what = match step {
                STEP_OPEN => "open cgroup.procs",
                STEP_JOIN => "join the cgroup (write cgroup.procs)",
                STEP_SOCKET => "socket()",
                _ => "unknown step",
            };
            Err(std::io::Error::from_raw_os_error(report.errno))
                .with_context(|| format!("member: {what}"))
        }
    }
}

/// The forked member. Never returns.
unsafe fn member(procs: *const libc::c_char, types: &[libc::c_int], sock: RawFd) -> ! {
    // SAFETY: raw syscalls on valid pointers; see `fork_sockets`.
    unsafe {
        let fail = |step: u32| -> ! {
            let report = Report {
                step,
                errno: errno(),
            };
            libc::send(
                sock,
                (&report as *const Report).cast(),
                std::mem::size_of::<Report>(),
                libc::MSG_NOSIGNAL,
            );
            libc::_exit(1)
        };
        let fd = libc::open(procs, libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            fail(STEP_OPEN);
        }
        if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
            fail(STEP_JOIN);
        }
        libc::close(fd);
        let mut fds = [0 as RawFd; MAX_SOCKETS];
        for (i, ty) in types.iter().enumerate() {
            let s = libc::socket(libc::AF_INET, *ty | libc::SOCK_CLOEXEC, 0);
            if s < 0 {
                fail(STEP_SOCKET);
            }
            fds[i] = s;
        }
        let report = Report::default();
        let mut iov = libc::iovec {
            iov_base: (&report as *const Report).cast_mut().cast(),
            iov_len: std::mem::size_of::<Report>(),
        };
        let mut cbuf = [0u64; CMSG_BUF / 8];
        let len = std::mem::size_of_val(types) as u32;
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(len) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(len) as _;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr().cast::<u8>(),
            libc::CMSG_DATA(cmsg),
            len as usize,
        );
        let sent = libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL);
        libc::_exit(if sent < 0 { 2 } else { 0 })
    }
}

/// The member's report and descriptors. A member that died without a word is
/// an error (end of stream), as is a silent one (2 s receive timeout).
fn receive(sock: &OwnedFd, count: usize) -> Result<(Report, Vec<OwnedFd>)> {
    let raw = std::os::fd::AsRawFd::as_raw_fd(sock);
    let timeout = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: setsockopt with a valid timeval.
    unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    let mut report = Report::default();
    let mut iov = libc::iovec {
        iov_base: (&mut report as *mut Report).cast(),
        iov_len: std::mem::size_of::<Report>(),
    };
    let mut cbuf = [0u64; CMSG_BUF / 8];
    // SAFETY: a zeroed msghdr is valid; the pointers below stay alive for the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = CMSG_BUF as _;
    // SAFETY: recvmsg into the buffers above.
    let n = unsafe { libc::recvmsg(raw, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error()).context("receive the member's sockets");
    }
    let mut fds = Vec::with_capacity(count);
    // SAFETY: walking the control messages recvmsg filled in.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if n == 0 {
        bail!("the member exited without sending its sockets");
    }
    if (n as usize) < std::mem::size_of::<Report>() {
        bail!("short report from the member ({n} bytes)");
    }
    Ok((report, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_pid_run_and_purpose_and_parse_back() {
        let name = dir_name(4242, "ab/12", "socklb-tcp");
        assert_eq!(name, "cc-4242-ab12-socklb-tcp");
        assert_eq!(owner_pid(&name), Some(4242));
        assert_eq!(owner_pid("cc-x-1"), None);
        assert_eq!(owner_pid("system.slice"), None);
    }
}
