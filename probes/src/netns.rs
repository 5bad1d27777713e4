//! Anonymous network namespaces held by a file descriptor.
//!
//! The probe never mounts a namespace under /run/netns: each one lives exactly as
//! long as its [`NetNs`] value (and whatever sockets or devices it holds). Veths,
//! qdiscs, legacy tc filters and routes live inside these namespaces, and TCX links
//! die with the probe's file descriptors, so a probe killed by SIGKILL still leaves
//! nothing behind: the kernel reclaims it all when the last descriptor closes.
//!
//! `setns(2)` acts on the calling thread, so work inside a namespace runs on a
//! short-lived thread that enters it first ([`NetNs::run`]); the caller's thread
//! never changes namespace.

use anyhow::{Context, Result};
use nix::sched::{CloneFlags, setns, unshare};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};

pub struct NetNs {
    name: String,
    file: File,
}

impl NetNs {
    /// Creates a fresh network namespace (only `lo`, down) named `name` for messages.
    pub fn new(name: &str) -> Result<Self> {
        let file = std::thread::scope(|s| {
            s.spawn(|| -> Result<File> {
                unshare(CloneFlags::CLONE_NEWNET)
                    .context("unshare(CLONE_NEWNET) (needs CAP_SYS_ADMIN)")?;
                File::open("/proc/thread-self/ns/net").context("open /proc/thread-self/ns/net")
            })
            .join()
            .expect("netns creation thread panicked")
        })
        .with_context(|| format!("create network namespace {name}"))?;
        Ok(Self {
            name: name.to_string(),
            file,
        })
    }

    /// The namespace the probe started in (the host namespace of the lab target).
    pub fn current(name: &str) -> Result<Self> {
        let file =
            File::open("/proc/thread-self/ns/net").context("open /proc/thread-self/ns/net")?;
        Ok(Self {
            name: name.to_string(),
            file,
        })
    }

    /// Another handle on the same namespace (a duplicated descriptor).
    pub fn try_clone(&self) -> Result<Self> {
        Ok(Self {
            name: self.name.clone(),
            file: self.file.try_clone().context("dup namespace fd")?,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on a thread inside this namespace and returns its result. Sockets and
    /// netlink handles created by `f` stay bound to this namespace wherever they are used.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                // Already there (the namespace the probe runs in, as in a pod): no
                // setns, which would need CAP_SYS_ADMIN for nothing.
                if !self.is_current() {
                    setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET)
                        .with_context(|| format!("enter network namespace {}", self.name))?;
                }
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Whether the calling thread is in this namespace (same device and inode).
    fn is_current(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (
            self.file.metadata(),
            std::fs::metadata("/proc/thread-self/ns/net"),
        ) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    /// Reads a file as seen from inside the namespace (`/proc/thread-self/net/snmp`,
    /// `/proc/sys/net/...`), which depends on the reading thread's namespace.
    pub fn read_to_string(&self, path: &str) -> Result<String> {
        self.run(|| std::fs::read_to_string(path).with_context(|| format!("read {path}")))
    }

    /// Writes a sysctl-like file inside the namespace.
    pub fn write(&self, path: &str, value: &str) -> Result<()> {
        self.run(|| {
            std::fs::write(path, value).with_context(|| format!("write {value:?} to {path}"))
        })
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
