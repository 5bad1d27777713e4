//! Can a fresh network namespace here do IPv6, as the `[ipv6]` variants'
//! dual-stack node needs?
//!
//! Asked inside the facts' throwaway namespace, as the checks' namespaces are new
//! ones: the kernel has IPv6 there when its sysctls (`/proc/sys/net/ipv6`, which
//! the topology writes) and `/proc/net/if_inet6` exist and an `AF_INET6` socket can
//! be made. A kernel built without CONFIG_IPV6, or booted with `ipv6.disable=1`
//! (the module loads but registers nothing), answers `EAFNOSUPPORT`: IPv6 is
//! missing, and the note says which of the two it could tell. Anything else
//! (another errno, a socket but no sysctls, as where `/proc/sys` is hidden) is
//! unmeasured: nothing is known about IPv6 itself.

use super::bpf::Outcome;
use std::path::Path;

/// What was seen in the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub sysctls: bool,
    pub if_inet6: bool,
    /// `socket(AF_INET6, SOCK_DGRAM)`: `Ok` or the errno.
    pub socket: Result<(), i32>,
    /// `/sys/module/ipv6/parameters/disable`, trimmed, where readable.
    pub disable_param: Option<String>,
    /// `ipv6.disable=1` on `/proc/cmdline`.
    pub cmdline_disables: bool,
}

/// Looks, on the calling thread's network namespace.
pub fn look() -> Seen {
    // SAFETY: socket(2) has no memory preconditions; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    let socket = if fd >= 0 {
        // SAFETY: `fd` is the descriptor just opened, owned here only.
        unsafe { libc::close(fd) };
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    };
    Seen {
        sysctls: Path::new("/proc/sys/net/ipv6").exists(),
        if_inet6: Path::new("/proc/thread-self/net/if_inet6").exists(),
        socket,
        disable_param: std::fs::read_to_string("/sys/module/ipv6/parameters/disable")
            .ok()
            .map(|s| s.trim().to_string()),
        cmdline_disables: std::fs::read_to_string("/proc/cmdline")
            .map(|c| c.split_whitespace().any(|w| w == "ipv6.disable=1"))
            .unwrap_or(false),
    }
}

/// The `ipv6` fact from what was seen.
pub fn classify(seen: &Seen) -> Outcome {
    match seen.socket {
        Err(errno) if errno == libc::EAFNOSUPPORT => {
            let why = if seen.disable_param.as_deref() == Some("1") || seen.cmdline_disables {
                "IPv6 disabled at boot (ipv6.disable=1: the module is loaded but registers nothing; a reboot without it enables IPv6)"
            } else {
                "kernel built without IPv6 (CONFIG_IPV6), or its ipv6 module cannot be loaded here"
            };
            Outcome::No(format!(
                "socket(AF_INET6) in a new network namespace: EAFNOSUPPORT: {why}"
            ))
        }
        Err(errno) => Outcome::Unknown(format!(
            "socket(AF_INET6) in a new network namespace: {}",
            std::io::Error::from_raw_os_error(errno)
        )),
        Ok(()) if !seen.sysctls || !seen.if_inet6 => Outcome::Unknown(format!(
            "an AF_INET6 socket can be made, but a new network namespace shows {}: the dual-stack node cannot be configured from here",
            [
                (!seen.sysctls).then_some("no /proc/sys/net/ipv6"),
                (!seen.if_inet6).then_some("no /proc/net/if_inet6"),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" and ")
        )),
        Ok(()) => Outcome::Yes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen() -> Seen {
        Seen {
            sysctls: true,
            if_inet6: true,
            socket: Ok(()),
            disable_param: Some("0".into()),
            cmdline_disables: false,
        }
    }

    #[test]
    fn a_socket_and_the_proc_files_is_ipv6() {
        assert_eq!(classify(&seen()), Outcome::Yes);
    }

    #[test]
    fn eafnosupport_is_no_ipv6_and_says_whether_boot_disabled_it() {
        let mut s = seen();
        s.socket = Err(libc::EAFNOSUPPORT);
        s.sysctls = false;
        s.if_inet6 = false;
        s.disable_param = None;
        let Outcome::No(why) = classify(&s) else {
            panic!("{:?}", classify(&s))
        };
        assert!(why.contains("CONFIG_IPV6"), "{why}");
        s.disable_param = Some("1".into());
        let Outcome::No(why) = classify(&s) else {
            panic!()
        };
        assert!(why.contains("ipv6.disable=1"), "{why}");
        s.disable_param = None;
        s.cmdline_disables = true;
        assert!(matches!(classify(&s), Outcome::No(w) if w.contains("disabled at boot")));
    }

    #[test]
    fn anything_else_is_unmeasured() {
        let mut s = seen();
        s.socket = Err(libc::EACCES);
        assert!(matches!(classify(&s), Outcome::Unknown(_)));
        let mut s = seen();
        s.sysctls = false;
        assert!(
            matches!(classify(&s), Outcome::Unknown(w) if w.contains("no /proc/sys/net/ipv6") && !w.contains("if_inet6"))
        );
    }
}
