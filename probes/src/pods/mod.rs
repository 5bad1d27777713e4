//! The cluster target's pod-level checks (`cluster.*`), as the probe runs them
//! inside Kubernetes pods: `probe echo` answers tokens, `probe connect` sends
//! them (and DNS queries, and stack-delivery bursts) as a
//! [`conformance_contract::pods::ConnectPlan`] says and prints one observation
//! per check, and `probe observe` watches the echo pod's own eth0 for the
//! stack-delivery check.
//!
//! The echo and the clients run unprivileged (non-root, no capabilities, a
//! read-only root, a FROM-scratch image), so their code is plain std sockets.
//! Only the observer loads BPF: its container alone gets CAP_BPF, CAP_NET_ADMIN
//! and CAP_PERFMON.

pub mod connect;
pub mod deliver;
pub mod dns;
pub mod echo;
pub mod observe;

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

/// Random bytes from /dev/urandom; where it cannot be read (a pod without /dev
/// mounted), the pid, a counter and the clock, which still never repeat within
/// a run: tokens only have to tell one attempt's reply from another's.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut bytes = [0u8; N];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mix = nanos
            ^ (u64::from(std::process::id()) << 32)
            ^ COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (mix.rotate_left(8 * i as u32) & 0xff) as u8;
        }
    }
    bytes
}

/// A fresh token for one attempt: 16 hex digits.
pub(crate) fn token() -> String {
    random_bytes::<8>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
