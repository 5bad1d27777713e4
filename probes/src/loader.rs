//! One aya loader per thread. `EbpfLoader::new` parses the kernel's BTF
//! (`/sys/kernel/btf/vmlinux`: about 30 ms of a 45 ms `Ebpf::load` on the CI
//! machine), and a run loads an object several times per check (the check's
//! hook, its observer, a fault's program), so a loader made once per thread and
//! reused for every load keeps that parse out of each check. A loader carries
//! no per-load state the checks set (no globals, map sizes or pin paths), so
//! reusing it loads exactly what `Ebpf::load` would.

use aya::{Ebpf, EbpfError, EbpfLoader};
use std::cell::RefCell;

thread_local! {
    static LOADER: RefCell<EbpfLoader<'static>> = RefCell::new(EbpfLoader::new());
}

/// Parses `object`, creates its maps and loads nothing yet, as `Ebpf::load` does.
pub fn load(object: &[u8]) -> Result<Ebpf, EbpfError> {
    LOADER.with(|loader| loader.borrow_mut().load(object))
}
