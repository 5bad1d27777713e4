//! BPF objects in a bpf filesystem, through bpf(2) directly: a one-entry array map
//! to pin, the pin itself, opening a pin, and a map's kernel id. The id is what
//! proves two mount namespaces see the same object, not merely a file of the same
//! name. No eBPF object is needed, so this works wherever bpf(2) does.

use anyhow::{Result, bail};
use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_MAP_TYPE_ARRAY: u32 = 2;

/// `statfs(2)` magic of a bpf filesystem (`BPF_FS_MAGIC`).
pub const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The leading fields of `union bpf_attr` for `BPF_MAP_CREATE`; the kernel accepts
/// a shorter attr and zero-fills the rest.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// `BPF_OBJ_PIN` / `BPF_OBJ_GET`.
#[repr(C)]
#[derive(Default)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The leading fields of `struct bpf_map_info`.
#[repr(C)]
#[derive(Default)]
struct MapInfo {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: [u8; 16],
}

/// bpf(2) with `attr`, a repr(C) prefix of `union bpf_attr` (the kernel may write
/// back into it, as BPF_PROG_QUERY does).
pub(crate) fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is a live repr(C) prefix of union bpf_attr and the size passed is
    // its own; pointers inside it point at memory that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as u32,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub(crate) fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: bpf(2) returned a new descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// A one-entry array map named `name` (at most 15 bytes).
pub fn create_map(name: &str) -> Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size: 8,
        max_entries: 1,
        ..Default::default()
    };
    let bytes = name.as_bytes();
    if bytes.len() > 15 {
        bail!("map name `{name}` is longer than 15 bytes");
    }
    attr.map_name[..bytes.len()].copy_from_slice(bytes);
    match bpf(BPF_MAP_CREATE, &mut attr) {
        Ok(fd) => Ok(owned(fd)),
        Err(e) => bail!("bpf(BPF_MAP_CREATE, array): {e}"),
    }
}

/// The kernel's id of the map behind `fd`.
pub fn map_id(fd: &OwnedFd) -> Result<u32> {
    use std::os::fd::AsRawFd;
    let mut info = MapInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<MapInfo>() as u32,
        info: &mut info as *mut MapInfo as u64,
    };
    if let Err(e) = bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) {
        bail!("bpf(BPF_OBJ_GET_INFO_BY_FD): {e}");
    }
    Ok(info.id)
}

/// Pins `fd` at `path`, which must be in a bpf filesystem.
pub fn pin(fd: &OwnedFd, path: &str) -> Result<()> {
    use std::os::fd::AsRawFd;
    let c = CString::new(path)?;
    let mut attr = ObjAttr {
        pathname: c.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        ..Default::default()
    };
    match bpf(BPF_OBJ_PIN, &mut attr) {
        Ok(_) => Ok(()),
        Err(e) => bail!("bpf(BPF_OBJ_PIN, {path}): {e}"),
    }
}

/// Opens the object pinned at `path`; `Ok(None)` when nothing is pinned there.
pub fn open_pinned(path: &str) -> Result<Option<OwnedFd>> {
    let c = CString::new(path)?;
    let mut attr = ObjAttr {
        pathname: c.as_ptr() as u64,
        ..Default::default()
    };
    match bpf(BPF_OBJ_GET, &mut attr) {
        Ok(fd) => Ok(Some(owned(fd))),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => bail!("bpf(BPF_OBJ_GET, {path}): {e}"),
    }
}

/// The filesystem at `path` by its statfs(2) magic, named for reasons.
pub fn fs_name(magic: i64) -> String {
    match magic {
        BPF_FS_MAGIC => "bpffs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x6265_6572 => "sysfs".into(),
        0x794c_7630 => "overlayfs".into(),
        0x6573_5546 => "fuse".into(),
        m => format!("a filesystem with magic {m:#x}"),
    }
}

/// `statfs(2)` magic of the filesystem `path` is on, in the calling thread's mount
/// namespace.
pub fn fs_magic(path: &str) -> Result<i64> {
    match nix::sys::statfs::statfs(path) {
        // f_type is i64 on glibc and an unsigned long on musl (the static probe).
        #[allow(clippy::unnecessary_cast)]
        Ok(s) => Ok(s.filesystem_type().0 as i64),
        Err(e) => bail!("statfs({path}): {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_filesystems_a_reason_meets() {
        assert_eq!(fs_name(BPF_FS_MAGIC), "bpffs");
        assert_eq!(fs_name(0x0102_1994), "tmpfs");
        assert_eq!(fs_name(0x1234), "a filesystem with magic 0x1234");
    }

    #[test]
    fn a_long_map_name_is_refused_before_the_kernel_is_asked() {
        let e = create_map("a_name_that_is_too_long").unwrap_err();
        assert!(e.to_string().contains("longer than 15 bytes"), "{e}");
    }
}
