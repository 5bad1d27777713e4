//! `xdp`: the XDP program of the `xdp.veth` check, attached in native (driver)
//! or generic mode to a pod's host-side veth.
//!
//! For every frame it bumps `COUNTERS[SEEN]`. A frame *matches* when it is IPv4
//! (not a non-first fragment) carrying UDP to `CONFIG[DPORT]`; anything else is
//! passed untouched with `XDP_PASS`, and so is everything while the port is 0
//! (the array entry exists from the start, zeroed: "not configured"). A matching
//! frame bumps `COUNTERS[MATCHED]` and gets `XDP_DROP` when `CONFIG[ACTION]` is
//! [`ACTION_DROP`] (the negative control), `XDP_PASS` otherwise.
//!
//! The layout is this object's contract with the probe (probes/src/xdp.rs), kept
//! here rather than in `ebpf/common` so the TC hook's shared types stay as they
//! are. Build with `cargo xtask ebpf`.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};

/// `CONFIG` slots (u32 each): the UDP destination port that matches (host order)
/// and what to do with a matching frame.
const DPORT: u32 = 0;
const ACTION: u32 = 1;
const CONFIG_LEN: u32 = 2;

/// `CONFIG[ACTION]`: return `XDP_DROP`; any other value passes.
const ACTION_DROP: u32 = 1;

/// `COUNTERS` slots, summed across CPUs by the probe.
const SEEN: u32 = 0;
const MATCHED: u32 = 1;
const COUNTERS_LEN: u32 = 2;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IPPROTO_UDP: u8 = 17;
const IPV4_MIN_HLEN: usize = 20;
const UDP_HLEN: usize = 8;
const IP_OFFSET_MASK: u16 = 0x1fff;

#[map]
static CONFIG: Array<u32> = Array::with_max_entries(CONFIG_LEN, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

#[xdp]
pub fn xdp_probe(ctx: XdpContext) -> u32 {
    bump(SEEN);
    let dport = match CONFIG.get(DPORT) {
        Some(p) if *p != 0 => *p as u16,
        _ => return XDP_PASS,
    };
    if !matches(&ctx, dport) {
        return XDP_PASS;
    }
    bump(MATCHED);
    match CONFIG.get(ACTION) {
        Some(a) if *a == ACTION_DROP => XDP_DROP,
        _ => XDP_PASS,
    }
}

#[inline(always)]
fn bump(slot: u32) {
    if let Some(value) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot of this map, only this CPU touches it now.
        unsafe { *value += 1 };
    }
}

/// A pointer to `len` bytes at `offset` into the frame, if they are inside it.
#[inline(always)]
fn at(ctx: &XdpContext, offset: usize, len: usize) -> Option<*const u8> {
    let start = ctx.data();
    if start + offset + len > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *const u8)
}

/// Ethernet -> IPv4 (honouring IHL, skipping non-first fragments) -> UDP to `dport`.
#[inline(always)]
fn matches(ctx: &XdpContext, dport: u16) -> bool {
    let Some(eth) = at(ctx, 0, ETH_HLEN) else {
        return false;
    };
    // SAFETY: `at` checked these bytes lie inside the frame.
    let ethertype = unsafe { u16::from_be_bytes([*eth.add(12), *eth.add(13)]) };
    if ethertype != ETH_P_IP {
        return false;
    }
    let Some(ip) = at(ctx, ETH_HLEN, IPV4_MIN_HLEN) else {
        return false;
    };
    // SAFETY: as above, the fixed IPv4 header is inside the frame.
    let (version_ihl, frag_off, protocol) = unsafe {
        (
            *ip,
            u16::from_be_bytes([*ip.add(6), *ip.add(7)]),
            *ip.add(9),
        )
    };
    if version_ihl >> 4 != 4 || protocol != IPPROTO_UDP || frag_off & IP_OFFSET_MASK != 0 {
        return false;
    }
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    if ihl < IPV4_MIN_HLEN {
        return false;
    }
    let Some(udp) = at(ctx, ETH_HLEN + ihl, UDP_HLEN) else {
        return false;
    };
    // SAFETY: as above, the UDP header is inside the frame.
    let port = unsafe { u16::from_be_bytes([*udp.add(2), *udp.add(3)]) };
    port == dport
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: nothing above can panic; the verifier would reject an endless loop anyway.
    unsafe { core::hint::unreachable_unchecked() }
}
