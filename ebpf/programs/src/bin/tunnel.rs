//! `tunnel`: the two TC programs of the tunnel checks (`tunnel.vxlan`,
//! `tunnel.geneve`), the encapsulation and decapsulation steps of Cilium's
//! `routingMode: tunnel` with collect-metadata (`external`) devices.
//!
//! - `tunnel_encap`, on node 1's host-side veth of pod A (ingress, where Cilium's
//!   `from-container` runs): a packet *matches* when it is IPv4 (not a non-first
//!   fragment) carrying UDP to `ENCAP_CONFIG[0].dport`. For a match it calls
//!   `bpf_skb_set_tunnel_key` (remote = the configured underlay address, tunnel id =
//!   the configured VNI, ttl, the configured key flags, e.g. `BPF_F_ZERO_CSUM_TX` as
//!   Cilium passes) and `bpf_redirect(tunnel ifindex, 0)`: the collect-metadata
//!   device (`cilium_vxlan` / `cilium_geneve`) encapsulates with that key. A key the
//!   helper refuses drops the packet (never sent unencapsulated).
//! - `tunnel_decap`, on node 2's tunnel device (ingress, Cilium's `from-overlay`):
//!   for every matching inner packet it reads the key the device attached
//!   (`bpf_skb_get_tunnel_key`: remote = the outer source address, tunnel id = the
//!   VNI), records it with the payload's sequence number in `EVENTS`, rewrites the
//!   Ethernet addresses to the configured ones (pod B's eth0 as destination) and
//!   calls `bpf_redirect(target ifindex, 0)` (pod B's host-side veth, egress). It
//!   redirects whatever key it saw: judging the key is the probe's business, so a
//!   wrong key shows up in the events, not as a silent drop.
//!
//! Both count in `COUNTERS` (per CPU, slots below). The key structure is passed
//! with the length `offsetof(struct bpf_tunnel_key, local_ipv4)` (28), the layout
//! every kernel since 4.x accepts (Cilium's `TUNNEL_KEY_WITHOUT_SRC_IP`); the full
//! 44-byte layout only exists from 6.0 on. Packet bytes are read with
//! `bpf_skb_load_bytes`. The layouts of the maps are mirrored in
//! `probes/src/tunnel_hooks.rs`, whose tests pin their sizes. Build with `cargo xtask ebpf`.
#![no_std]
#![no_main]

use core::mem::zeroed;
use core::ptr::{addr_of, read_volatile};

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, bpf_tunnel_key},
    helpers::{bpf_redirect, bpf_skb_get_tunnel_key, bpf_skb_set_tunnel_key},
    macros::{classifier, map},
    maps::{Array, PerCpuArray, RingBuf},
    programs::TcContext,
};

const ETH_HLEN: usize = 14;
const ETH_TYPE_OFF: usize = 12;
const ETH_P_IP: u16 = 0x0800;
const IPPROTO_UDP: u8 = 17;
const IPV4_MIN_HLEN: usize = 20;
const UDP_HLEN: usize = 8;
const IP_OFFSET_MASK: u16 = 0x1fff;
/// `offsetof(struct bpf_tunnel_key, local_ipv4)`.
const KEY_SIZE: u32 = 28;

/// Counter slots (`COUNTERS`).
mod slot {
    pub const SEEN: u32 = 0;
    pub const MATCHED: u32 = 1;
    /// `bpf_skb_set_tunnel_key` / `bpf_skb_get_tunnel_key` returned 0.
    pub const KEY_OK: u32 = 2;
    pub const KEY_FAILED: u32 = 3;
    /// `bpf_redirect` accepted the target.
    pub const REDIRECTED: u32 = 4;
    pub const EVENTS_LOST: u32 = 5;
    pub const LEN: u32 = 6;
}

/// `tunnel_encap`'s configuration; `dport` 0: not configured, pass everything.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EncapConfig {
    /// UDP destination port of the check's traffic (host order).
    pub dport: u16,
    pub ttl: u8,
    pub _pad: u8,
    /// Underlay address of the remote node, host order (`bpf_tunnel_key.remote_ipv4`).
    pub remote_ipv4: u32,
    /// VNI (Cilium: the source security identity).
    pub tunnel_id: u32,
    /// The collect-metadata tunnel device to redirect to.
    pub tunnel_ifindex: u32,
    /// `flags` of `bpf_skb_set_tunnel_key` (`BPF_F_ZERO_CSUM_TX` 2, `BPF_F_DONT_FRAGMENT` 4).
    pub key_flags: u64,
}

/// `tunnel_decap`'s configuration; `dport` 0: not configured, pass everything.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DecapConfig {
    pub dport: u16,
    pub _pad: u16,
    /// Where decapsulated packets go (`bpf_redirect(target_ifindex, 0)`).
    pub target_ifindex: u32,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// First four payload bytes of the check's datagrams, then a big-endian seq.
    pub magic: [u8; 4],
}

/// One decapsulated packet as `tunnel_decap` saw it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TunnelEvent {
    pub seq: u32,
    /// `bpf_skb_get_tunnel_key`'s return value.
    pub key_rc: i32,
    /// Outer source address, host order.
    pub remote_ipv4: u32,
    pub tunnel_id: u32,
    /// `skb->len` at the hook (the inner frame, Ethernet header included).
    pub len: u32,
    pub ifindex: u32,
    /// `bpf_redirect`'s return value.
    pub redirect_rc: i32,
    pub tunnel_ttl: u8,
    pub tunnel_tos: u8,
    pub _pad: [u8; 2],
}

#[map]
static ENCAP_CONFIG: Array<EncapConfig> = Array::with_max_entries(1, 0);

#[map]
static DECAP_CONFIG: Array<DecapConfig> = Array::with_max_entries(1, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(64 * 1024, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(slot::LEN, 0);

#[inline(always)]
fn bump(s: u32) {
    if let Some(value) = COUNTERS.get_ptr_mut(s) {
        // SAFETY: per-CPU slot of this map, only this CPU touches it now.
        unsafe { *value += 1 };
    }
}

/// Offset of the UDP payload when the frame is IPv4 UDP to `dport` and not a
/// non-first fragment.
#[inline(always)]
fn udp_payload(ctx: &TcContext, dport: u16) -> Option<usize> {
    let ethertype: u16 = ctx.load(ETH_TYPE_OFF).ok()?;
    if u16::from_be(ethertype) != ETH_P_IP {
        return None;
    }
    let ip: [u8; IPV4_MIN_HLEN] = ctx.load(ETH_HLEN).ok()?;
    if ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ihl < IPV4_MIN_HLEN {
        return None;
    }
    if u16::from_be_bytes([ip[6], ip[7]]) & IP_OFFSET_MASK != 0 || ip[9] != IPPROTO_UDP {
        return None;
    }
    let l4 = ETH_HLEN + ihl;
    let udp: [u8; UDP_HLEN] = ctx.load(l4).ok()?;
    if u16::from_be_bytes([udp[2], udp[3]]) != dport {
        return None;
    }
    Some(l4 + UDP_HLEN)
}

#[classifier]
pub fn tunnel_encap(ctx: TcContext) -> i32 {
    bump(slot::SEEN);
    let Some(cfg) = ENCAP_CONFIG.get(0) else {
        return TC_ACT_OK as i32;
    };
    if cfg.dport == 0 || udp_payload(&ctx, cfg.dport).is_none() {
        return TC_ACT_OK as i32;
    }
    bump(slot::MATCHED);
    // SAFETY: an all-zero `bpf_tunnel_key` is a valid value of that C struct.
    let mut key: bpf_tunnel_key = unsafe { zeroed() };
    key.tunnel_id = cfg.tunnel_id;
    key.__bindgen_anon_1.remote_ipv4 = cfg.remote_ipv4;
    key.tunnel_ttl = cfg.ttl;
    // SAFETY: `key` is initialised stack memory of at least KEY_SIZE bytes.
    let rc = unsafe { bpf_skb_set_tunnel_key(ctx.skb.skb, &mut key, KEY_SIZE, cfg.key_flags) };
    if rc != 0 {
        bump(slot::KEY_FAILED);
        return TC_ACT_SHOT as i32;
    }
    bump(slot::KEY_OK);
    // SAFETY: plain helper call; it only records the target for after return.
    let ret = unsafe { bpf_redirect(cfg.tunnel_ifindex, 0) };
    if ret == i64::from(TC_ACT_REDIRECT) {
        bump(slot::REDIRECTED);
    }
    ret as i32
}

#[classifier]
pub fn tunnel_decap(ctx: TcContext) -> i32 {
    bump(slot::SEEN);
    let Some(cfg) = DECAP_CONFIG.get(0) else {
        return TC_ACT_OK as i32;
    };
    if cfg.dport == 0 {
        return TC_ACT_OK as i32;
    }
    let Some(payload) = udp_payload(&ctx, cfg.dport) else {
        return TC_ACT_OK as i32;
    };
    bump(slot::MATCHED);
    let seq = match ctx.load::<[u8; 8]>(payload) {
        Ok(p) if [p[0], p[1], p[2], p[3]] == cfg.magic => {
            u32::from_be_bytes([p[4], p[5], p[6], p[7]])
        }
        _ => u32::MAX,
    };
    // SAFETY: an all-zero `bpf_tunnel_key` is a valid value of that C struct.
    let mut key: bpf_tunnel_key = unsafe { zeroed() };
    // SAFETY: `key` is writable stack memory of at least KEY_SIZE bytes.
    let key_rc = unsafe { bpf_skb_get_tunnel_key(ctx.skb.skb, &mut key, KEY_SIZE, 0) } as i32;
    if key_rc == 0 {
        bump(slot::KEY_OK);
    } else {
        bump(slot::KEY_FAILED);
    }
    let skb = ctx.skb.skb;
    // SAFETY: `skb` is the context pointer; these fields are readable by TC programs.
    let (len, ifindex) = unsafe {
        (
            read_volatile(addr_of!((*skb).len)),
            read_volatile(addr_of!((*skb).ifindex)),
        )
    };
    let (d, s) = (cfg.dst_mac, cfg.src_mac);
    let macs = [
        d[0], d[1], d[2], d[3], d[4], d[5], s[0], s[1], s[2], s[3], s[4], s[5],
    ];
    // A failed store leaves the frame as it was; pod B's counters show the outcome.
    let _ = ctx.store(0, &macs, 0);
    // SAFETY: plain helper call; it only records the target for after return.
    let ret = unsafe { bpf_redirect(cfg.target_ifindex, 0) };
    if ret == i64::from(TC_ACT_REDIRECT) {
        bump(slot::REDIRECTED);
    }
    let event = TunnelEvent {
        seq,
        key_rc,
        // SAFETY: the union's IPv4 member, which the helper filled (no TUNINFO_IPV6).
        remote_ipv4: unsafe { key.__bindgen_anon_1.remote_ipv4 },
        tunnel_id: key.tunnel_id,
        len,
        ifindex,
        redirect_rc: ret as i32,
        tunnel_ttl: key.tunnel_ttl,
        tunnel_tos: key.tunnel_tos,
        _pad: [0; 2],
    };
    if EVENTS.output::<TunnelEvent>(&event, 0).is_err() {
        bump(slot::EVENTS_LOST);
    }
    ret as i32
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: nothing above can panic (constant indexing only, no overflowing
    // arithmetic); the verifier would reject an endless loop anyway.
    unsafe { core::hint::unreachable_unchecked() }
}
