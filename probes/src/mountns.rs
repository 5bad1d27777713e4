//! A mount namespace of the calling thread's own (`unshare(CLONE_NEWNS)`), made a
//! slave of the one it came from: mounts of the place still reach it, and none
//! made in it ever propagates back to the place or the host. It lives as long as
//! the thread (and whatever holds a file in it).

use anyhow::{Context, Result};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

/// Moves the calling thread into such a namespace; `what` names it for errors.
pub fn enter_slave(what: &str) -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS)
        .with_context(|| format!("unshare(CLONE_NEWNS) for {what} (needs CAP_SYS_ADMIN)"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .with_context(|| format!("mount --make-rslave / in {what}'s namespace"))
}
