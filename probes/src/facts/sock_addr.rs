//! `cgroup.sock_addr`: whether cgroup v2 sock_addr programs (socket LB's
//! connect4, sendmsg4, recvmsg4, getpeername4 from `sock.bpf.o`) can be attached
//! here: to a scratch child of the probe's own cgroup, removed right after.

use super::bpf::Outcome;
use crate::cgroup::Cgroup;
use aya::programs::{CgroupAttachMode, CgroupSockAddr, ProgramError};

const PROGRAMS: [&str; 4] = [
    "slb_connect4",
    "slb_sendmsg4",
    "slb_recvmsg4",
    "slb_getpeer4",
];

fn text(e: &ProgramError) -> (Option<i32>, String) {
    let mut s = e.to_string();
    let mut errno = None;
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    match e {
        ProgramError::LoadError { io_error, .. } => errno = io_error.raw_os_error(),
        ProgramError::SyscallError(sc) => errno = sc.io_error.raw_os_error(),
        _ => {}
    }
    (errno, s)
}

/// Tries it; `cgroup2` is the cgroup v2 mount, if any.
pub fn measure(cgroup2: Option<&str>, object: &[u8]) -> Outcome {
    if cgroup2.is_none() {
        return Outcome::No("no cgroup v2 mount: nothing to attach cgroup programs to".into());
    }
    let cgroup = match Cgroup::create("facts", "sockaddr") {
        Ok(c) => c,
        Err(e) => {
            let errno = e
                .chain()
                .find_map(|c| c.downcast_ref::<std::io::Error>())
                .and_then(std::io::Error::raw_os_error);
            let why = format!("{e:#}");
            return match errno {
                Some(libc::EROFS) => Outcome::No(format!(
                    "{why}: the cgroup v2 tree is read-only here (a container's default), so no cgroup program can be attached"
                )),
                _ => Outcome::Unknown(why),
            };
        }
    };
    let mut ebpf = match crate::loader::load(object) {
        Ok(e) => e,
        Err(e) => return Outcome::Unknown(format!("load sock.bpf.o: {e}")),
    };
    for name in PROGRAMS {
        let Some(prog) = ebpf.program_mut(name) else {
            return Outcome::Unknown(format!("sock.bpf.o has no program {name}"));
        };
        let prog: &mut CgroupSockAddr = match prog.try_into() {
            Ok(p) => p,
            Err(e) => return Outcome::Unknown(format!("{name}: {e}")),
        };
        if let Err(e) = prog.load() {
            let (errno, why) = text(&e);
            return match errno {
                // An attach type the kernel does not know (recvmsg4 before 5.2,
                // getpeername4 before 5.8) is rejected as invalid.
                Some(libc::EINVAL) | Some(libc::E2BIG) => {
                    Outcome::No(format!("load {name}: {why}"))
                }
                _ => Outcome::Unknown(format!("load {name}: {why}")),
            };
        }
        if let Err(e) = prog.attach(&cgroup, CgroupAttachMode::Single) {
            let (errno, why) = text(&e);
            return match errno {
                Some(libc::EINVAL) => Outcome::No(format!("attach {name}: {why}")),
                _ => Outcome::Unknown(format!("attach {name}: {why}")),
            };
        }
    }
    // Detached as `ebpf` drops, before `cgroup` is removed.
    drop(ebpf);
    drop(cgroup);
    Outcome::Yes
}
