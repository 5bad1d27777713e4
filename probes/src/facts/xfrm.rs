//! Can this kernel make an ESP state, as Cilium's IPsec (and the XFRM scrub
//! check) needs?
//!
//! Asked the way the check asks: an ESP tunnel-mode state keyed with
//! `rfc4106(gcm(aes))` added over `NETLINK_XFRM` in the facts' throwaway
//! namespace (it goes with the namespace). The kernel builds the whole state
//! before it answers (the AEAD looked up in its crypto API, the ESP type, the
//! cipher instantiated), so its refusal says which piece is missing, and the note
//! keeps its words. A permission error or a refusal as malformed (`EINVAL`, a
//! request this kernel's XFRM ABI does not take) says nothing about ESP:
//! unmeasured.

use super::bpf::Outcome;
use crate::xfrm::{EspSa, Xfrm, XfrmError};
use std::net::Ipv4Addr;

/// A state no packet will ever use: documentation addresses (TEST-NET-1).
fn probe_sa() -> EspSa {
    EspSa {
        src: Ipv4Addr::new(192, 0, 2, 1),
        dst: Ipv4Addr::new(192, 0, 2, 2),
        spi: 0x5c4b_0fac,
        reqid: 1,
        key: [0x5c; crate::xfrm::AEAD_KEY_LEN],
    }
}

/// What the kernel's refusal of the state means, for the note.
fn hint(errno: i32) -> &'static str {
    match errno {
        libc::EPROTONOSUPPORT => {
            "the kernel has no ESP type: built without CONFIG_INET_ESP, or its esp4 module is not loaded"
        }
        libc::ENOSYS => {
            "its crypto API has no rfc4106(gcm(aes)): built without CONFIG_CRYPTO_GCM, or the gcm/ghash modules are not loaded"
        }
        _ => {
            "ESP could not set up the AEAD: a crypto piece it needs is missing (gcm, ghash, ctr, seqiv/echainiv and a default RNG such as drbg)"
        }
    }
}

/// Measures on the calling thread's network namespace.
pub fn measure() -> Outcome {
    let mut xfrm = match Xfrm::new() {
        Ok(x) => x,
        Err(e) => {
            let errno = e
                .chain()
                .find_map(|c| c.downcast_ref::<std::io::Error>())
                .and_then(std::io::Error::raw_os_error);
            return match errno {
                Some(libc::EPROTONOSUPPORT) => Outcome::No(format!(
                    "{e:#}: kernel built without CONFIG_XFRM_USER, or its xfrm_user module is not loaded"
                )),
                _ => Outcome::Unknown(format!("{e:#}")),
            };
        }
    };
    match xfrm.add_sa(&probe_sa()) {
        Ok(()) => Outcome::Yes,
        Err(e) => match e.downcast_ref::<XfrmError>() {
            Some(x) if matches!(x.errno, libc::EPERM | libc::EACCES | libc::EINVAL) => {
                Outcome::Unknown(format!("{e:#}"))
            }
            Some(x) => Outcome::No(format!("{e:#}: {}", hint(x.errno))),
            None => Outcome::Unknown(format!("{e:#}")),
        },
    }
}
