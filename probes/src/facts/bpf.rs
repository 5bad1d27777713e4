//! BPF facts that need the kernel to say yes: TCX attach, helper availability
//! (the verifier's verdict on one tiny program per helper), JIT.

use super::parse;
use aya::programs::tc::TcAttachOptions;
use aya::programs::{LinkOrder, ProgramError, SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use std::io;

/// How an attempt to use the kernel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel accepted.
    Yes,
    /// The kernel refused: the feature is missing here. The string says how.
    No(String),
    /// The question could not be asked (permissions, broken object): unmeasured.
    Unknown(String),
}

/// An error with its sources (`failed to create map `X`: Operation not permitted`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

fn is_permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}

/// One line for a program load failure: the errno and the verifier's reason.
fn load_error(e: &ProgramError) -> (bool, String) {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let summary = parse::verifier_summary(&log);
            let permission = io_error.raw_os_error() == Some(libc::EPERM) && summary.is_none();
            let text = match summary {
                Some(s) => format!("BPF_PROG_LOAD: {io_error}: {s}"),
                None => format!("BPF_PROG_LOAD: {io_error}"),
            };
            (permission, text)
        }
        ProgramError::SyscallError(s) => (
            is_permission(&s.io_error),
            format!("{}: {}", s.call, s.io_error),
        ),
        other => (false, chain(other)),
    }
}

/// The program `name` of `ebpf` as a classifier.
fn classifier<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier, String> {
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("program {name} not in the object"))?;
    prog.try_into()
        .map_err(|e: ProgramError| format!("program {name} is not a classifier: {}", chain(&e)))
}

/// Parses both objects and creates their maps with one loader, so the kernel's
/// BTF (`/sys/kernel/btf/vmlinux`, ~20 ms to parse) is read once.
pub fn load_objects(
    hook_obj: &[u8],
    helper_obj: &[u8],
) -> (Result<Ebpf, String>, Result<Ebpf, String>) {
    let mut loader = EbpfLoader::new();
    let hook = loader
        .load(hook_obj)
        .map_err(|e| format!("load hook object: {}", chain(&e)));
    let helper = loader
        .load(helper_obj)
        .map_err(|e| format!("load helper object: {}", chain(&e)));
    (hook, helper)
}

/// Loads program `hook` and attaches it with TCX to `lo` of the calling thread's
/// network namespace, then detaches it. Returns the outcome and the JIT-compiled
/// size of the loaded program (0: interpreted), when it loaded.
pub fn tcx(ebpf: Result<Ebpf, String>) -> (Outcome, Option<u32>) {
    let mut ebpf = match ebpf {
        Ok(e) => e,
        Err(e) => return (Outcome::Unknown(e), None),
    };
    let prog = match classifier(&mut ebpf, "hook") {
        Ok(p) => p,
        Err(e) => return (Outcome::Unknown(e), None),
    };
    if let Err(e) = prog.load() {
        return (
            Outcome::Unknown(format!("load program hook: {}", load_error(&e).1)),
            None,
        );
    }
    let jited = prog.info().ok().map(|i| i.size_jitted());
    let attached = prog.attach_with_options(
        "lo",
        TcAttachType::Ingress,
        TcAttachOptions::TcxOrder(LinkOrder::default()),
    );
    let outcome = match attached {
        Ok(id) => {
            // Dropping the link detaches too; detach explicitly to see it work.
            let _ = prog.detach(id);
            Outcome::Yes
        }
        Err(ProgramError::SyscallError(s)) => match s.io_error.raw_os_error() {
            Some(libc::EINVAL) => Outcome::No(format!(
                "{}(BPF_TCX_INGRESS): EINVAL: kernel has no TCX (needs Linux >= 6.6 with CONFIG_NET_XGRESS)",
                s.call
            )),
            Some(libc::EPERM) | Some(libc::EACCES) => Outcome::Unknown(format!(
                "{}(BPF_TCX_INGRESS): {}: not permitted (needs CAP_NET_ADMIN and CAP_BPF or CAP_SYS_ADMIN)",
                s.call, s.io_error
            )),
            // Only EINVAL says the kernel does not know the attach type; anything
            // else (ENOMEM, EBUSY, ...) leaves the question open.
            _ => Outcome::Unknown(format!("{}(BPF_TCX_INGRESS): {}", s.call, s.io_error)),
        },
        Err(e) => Outcome::Unknown(format!("attach hook to lo with TCX: {}", chain(&e))),
    };
    (outcome, jited)
}

/// The verifier's verdict on `probe_<helper>` for each helper, all from the one
/// object. Also returns the largest JIT-compiled size seen.
pub fn helpers(
    ebpf: Result<Ebpf, String>,
    names: &[&str],
) -> (Vec<(String, Outcome)>, Option<u32>) {
    let mut ebpf = match ebpf {
        Ok(e) => e,
        Err(why) => {
            return (
                names
                    .iter()
                    .map(|n| (n.to_string(), Outcome::Unknown(why.clone())))
                    .collect(),
                None,
            );
        }
    };
    let mut jited = None;
    let results = names
        .iter()
        .map(|name| {
            let outcome = match classifier(&mut ebpf, &format!("probe_{name}")) {
                Err(e) => Outcome::Unknown(e),
                Ok(prog) => match prog.load() {
                    Ok(()) => {
                        if let Ok(info) = prog.info() {
                            jited = jited.max(Some(info.size_jitted()));
                        }
                        Outcome::Yes
                    }
                    Err(e) => match load_error(&e) {
                        (true, text) => Outcome::Unknown(text),
                        (false, text) => Outcome::No(text),
                    },
                },
            };
            (name.to_string(), outcome)
        })
        .collect();
    (results, jited)
}
