//! `helper_probe`: one tiny TC classifier per helper in `conformance_contract::facts::HELPERS`,
//! named `probe_<helper>`. Each calls only its helper, with arguments that would do
//! nothing harmful if it ever ran, and returns `TC_ACT_OK`. The probe never attaches
//! them: it loads each one, and the verifier accepting it is the fact
//! `helper.<name> = true` ("this kernel offers the helper to TC programs").
//!
//! Keep this list and `HELPERS` in step: the probe reports a missing program as an
//! error, not as an unavailable helper. Build with `cargo xtask ebpf`.
#![no_std]
#![no_main]

use core::{
    ffi::c_void,
    mem::{size_of, zeroed},
    ptr::{addr_of, null_mut, read_volatile},
};

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_CSUM_LEVEL_QUERY, TC_ACT_OK, bpf_fib_lookup, bpf_tunnel_key},
    helpers::{
        bpf_csum_level, bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh,
        bpf_redirect_peer, bpf_skb_change_tail, bpf_skb_get_tunnel_key,
        bpf_skb_set_tunnel_key, bpf_skb_store_bytes,
    },
    macros::{classifier, map},
    maps::RingBuf,
    programs::TcContext,
};

/// Target of `probe_ringbuf_output`. 64 KiB is a whole number of pages for 4K,
/// 16K and 64K page kernels (ring buffer sizes must be).
#[map]
static PROBE_RINGBUF: RingBuf = RingBuf::with_byte_size(64 * 1024, 0);

const OK: i32 = TC_ACT_OK as i32;

/// `bpf_redirect(0, 0)`: redirect to no device (would fail at delivery).
#[classifier]
pub fn probe_redirect(_ctx: TcContext) -> i32 {
    // SAFETY: helper call with plain scalar arguments.
    let _ = unsafe { bpf_redirect(0, 0) };
    OK
}

/// `bpf_redirect_peer(0, 0)`: no such device.
#[classifier]
pub fn probe_redirect_peer(_ctx: TcContext) -> i32 {
    // SAFETY: helper call with plain scalar arguments.
    let _ = unsafe { bpf_redirect_peer(0, 0) };
    OK
}

/// `bpf_redirect_neigh(0, NULL, 0, 0)`: no device, no neighbour parameters.
#[classifier]
pub fn probe_redirect_neigh(_ctx: TcContext) -> i32 {
    // SAFETY: NULL parameters with length 0 is the documented "look it up" form.
    let _ = unsafe { bpf_redirect_neigh(0, null_mut(), 0, 0) };
    OK
}

/// `bpf_fib_lookup` on a zeroed parameter block (family 0: -EINVAL at run time).
#[classifier]
pub fn probe_fib_lookup(ctx: TcContext) -> i32 {
    // SAFETY: an all-zero `bpf_fib_lookup` is a valid value of that C struct.
    let mut params: bpf_fib_lookup = unsafe { zeroed() };
    // SAFETY: `params` is initialised stack memory of the size passed.
    let _ = unsafe {
        fib_lookup(
            ctx.as_ptr(),
            &mut params,
            size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    OK
}

/// `bpf_skb_store_bytes` of one byte at an offset past any packet (-EFAULT at run time).
#[classifier]
pub fn probe_skb_store_bytes(ctx: TcContext) -> i32 {
    let byte = 0u8;
    // SAFETY: source is one initialised stack byte.
    let _ = unsafe {
        bpf_skb_store_bytes(
            ctx.as_ptr().cast(),
            u32::MAX,
            addr_of!(byte).cast::<c_void>(),
            1,
            0,
        )
    };
    OK
}

/// `bpf_skb_change_tail(skb, skb->len, 0)`: "resize" to the current length.
#[classifier]
pub fn probe_skb_change_tail(ctx: TcContext) -> i32 {
    let skb = ctx.skb.skb;
    // SAFETY: `skb` is the context pointer; `len` is readable by TC programs.
    let len = unsafe { read_volatile(addr_of!((*skb).len)) };
    // SAFETY: helper call on the program's own skb.
    let _ = unsafe { bpf_skb_change_tail(skb, len, 0) };
    OK
}

/// `bpf_csum_level(skb, BPF_CSUM_LEVEL_QUERY)`: read-only.
#[classifier]
pub fn probe_csum_level(ctx: TcContext) -> i32 {
    // SAFETY: helper call on the program's own skb; QUERY changes nothing.
    let _ = unsafe { bpf_csum_level(ctx.skb.skb, u64::from(BPF_CSUM_LEVEL_QUERY)) };
    OK
}

/// `bpf_ringbuf_output` of eight zero bytes into `PROBE_RINGBUF`.
#[classifier]
pub fn probe_ringbuf_output(_ctx: TcContext) -> i32 {
    let _ = PROBE_RINGBUF.output::<u64>(&0u64, 0);
    OK
}

/// `offsetof(struct bpf_tunnel_key, local_ipv4)`: the key layout every kernel
/// accepts (the full 44-byte one only from 6.0), as `tunnel.rs` passes it.
const TUNNEL_KEY_SIZE: u32 = 28;

/// `bpf_skb_set_tunnel_key` of a zeroed key, no flags (on an skb that is not
/// redirected to a tunnel device, the key is never used).
#[classifier]
pub fn probe_skb_set_tunnel_key(ctx: TcContext) -> i32 {
    // SAFETY: an all-zero `bpf_tunnel_key` is a valid value of that C struct.
    let mut key: bpf_tunnel_key = unsafe { zeroed() };
    // SAFETY: `key` is initialised stack memory of at least the size passed.
    let _ = unsafe { bpf_skb_set_tunnel_key(ctx.skb.skb, &mut key, TUNNEL_KEY_SIZE, 0) };
    OK
}

/// `bpf_skb_get_tunnel_key` into a stack key (-EINVAL at run time without tunnel metadata).
#[classifier]
pub fn probe_skb_get_tunnel_key(ctx: TcContext) -> i32 {
    // SAFETY: an all-zero `bpf_tunnel_key` is a valid value of that C struct.
    let mut key: bpf_tunnel_key = unsafe { zeroed() };
    // SAFETY: `key` is writable stack memory of at least the size passed.
    let _ = unsafe { bpf_skb_get_tunnel_key(ctx.skb.skb, &mut key, TUNNEL_KEY_SIZE, 0) };
    OK
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: nothing in these programs can panic.
    unsafe { core::hint::unreachable_unchecked() }
}
