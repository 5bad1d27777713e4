//! `hook`: the TC classifier every datapath check attaches (TCX or legacy clsact).
//!
//! For every packet it bumps `COUNTERS[SEEN]`. A packet *matches* when it is IPv4
//! (not a non-first fragment) carrying UDP to `CONFIG[0].dport`; anything else is
//! passed untouched with `TC_ACT_OK`, and so is everything while `dport` is 0
//! (the array entry exists from the start, zeroed: "not configured").
//!
//! For a matching packet it bumps `COUNTERS[MATCHED]` (and, after a redirect
//! helper, `REDIRECTED` or `REDIRECT_FAILED` by what the helper returned), snapshots the skb metadata
//! and the Ethernet addresses (before touching anything, so the source hook shows the
//! original `pkt_type`, `mark` and L2 header), applies the configured writes (mark,
//! tstamp, destination MAC), performs the configured action and pushes the snapshot
//! with the action's result (and, for `FIB_LOOKUP`, the kernel's answer) to
//! `EVENTS`. Packet bytes are read with `bpf_skb_load_bytes`, never by direct
//! packet access, so non-linear skbs and odd header lengths need no special care.
//!
//! Only helpers and `__sk_buff` fields that kernel 6.1 offers to TC programs are
//! used (no kfuncs, no `bpf_cast_to_kern_ctx`). Build with `cargo xtask ebpf`.
#![no_std]
#![no_main]

use core::mem::{size_of, zeroed};
use core::ptr::{addr_of, addr_of_mut, null_mut, read_volatile, write_volatile};

use aya_ebpf::{
    EbpfContext,
    bindings::{__sk_buff, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, bpf_fib_lookup},
    helpers::{bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer},
    macros::{classifier, map},
    maps::{Array, PerCpuArray, RingBuf},
    programs::TcContext,
};

/// `ebpf/common` (crate `conformance-ebpf-common`, the layout contract with the
/// probe), compiled in as a module instead of as a path dependency: cargo hashes
/// the absolute path of a path dependency that lies outside this workspace into
/// its crate hash, which ends up in the debug info and would make the object
/// depend on where the repository is checked out.
#[allow(dead_code, unexpected_cfgs, unused_attributes)]
#[path = "../../../common/src/lib.rs"]
mod common;

use common::{HookConfig, PAYLOAD_MAGIC, SkbMeta, action, counter};

const ETH_HLEN: usize = 14;
/// Offset of the EtherType in the Ethernet header.
const ETH_TYPE_OFF: usize = 12;
const ETH_P_IP: u16 = 0x0800;
const AF_INET: u8 = 2;
const IPPROTO_UDP: u8 = 17;
const IPV4_MIN_HLEN: usize = 20;
const UDP_HLEN: usize = 8;
/// Fragment offset bits of the IPv4 `frag_off` field (host order).
const IP_OFFSET_MASK: u16 = 0x1fff;

#[map]
static CONFIG: Array<HookConfig> = Array::with_max_entries(1, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::LEN, 0);

/// The fixed part of an IPv4 header as it sits in the packet.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv4Fixed {
    version_ihl: u8,
    tos: u8,
    tot_len: [u8; 2],
    id: [u8; 2],
    frag_off: [u8; 2],
    ttl: u8,
    protocol: u8,
    check: [u8; 2],
    /// Network byte order (the bytes as they are in the packet).
    saddr: u32,
    daddr: u32,
}

/// What the parser extracts from a matching packet.
struct Flow {
    saddr: u32,
    daddr: u32,
    tos: u8,
    /// UDP ports as they are in the packet (network byte order).
    sport: u16,
    dport: u16,
    seq: u32,
}

#[classifier]
pub fn hook(ctx: TcContext) -> i32 {
    bump(counter::SEEN);
    let Some(cfg) = CONFIG.get(0) else {
        return TC_ACT_OK as i32;
    };
    if cfg.dport == 0 {
        return TC_ACT_OK as i32;
    }
    let Some(flow) = parse(&ctx, cfg.dport) else {
        return TC_ACT_OK as i32;
    };
    bump(counter::MATCHED);

    let skb = ctx.skb.skb;
    let mut meta = snapshot(&ctx, skb, &flow);

    if cfg.set_mark != 0 {
        // SAFETY: `skb` is the context pointer; `mark` is writable for TC programs.
        unsafe { write_volatile(addr_of_mut!((*skb).mark), cfg.set_mark) };
    }
    if cfg.set_tstamp != 0 {
        // SAFETY: as above; `tstamp` is writable for TC programs.
        unsafe { write_volatile(addr_of_mut!((*skb).tstamp), cfg.set_tstamp) };
    }
    if cfg.rewrite_dst_mac != 0 {
        let mac = cfg.dst_mac;
        // A failed store leaves the frame as it was; the event shows the outcome.
        let _ = ctx.store(0, &mac, 0);
    }

    let result: i64 = match cfg.action {
        action::DROP => i64::from(TC_ACT_SHOT),
        action::REDIRECT => {
            // SAFETY: plain helper call; it only records the target for after return.
            let ret = unsafe { bpf_redirect(cfg.target_ifindex, cfg.redirect_flags) };
            count_redirect(ret);
            ret
        }
        action::REDIRECT_PEER => {
            // SAFETY: as above.
            let ret = unsafe { bpf_redirect_peer(cfg.target_ifindex, 0) };
            count_redirect(ret);
            ret
        }
        action::REDIRECT_NEIGH => {
            // SAFETY: NULL parameters with length 0 is the documented "look the
            // neighbour up" form; the helper only records the target for after return.
            let ret = unsafe { bpf_redirect_neigh(cfg.target_ifindex, null_mut(), 0, 0) };
            count_redirect(ret);
            ret
        }
        action::FIB_LOOKUP => fib_forward(&ctx, cfg.fib_flags, &flow, &mut meta),
        // PASS, and any value this object does not know: hand the packet on.
        _ => i64::from(TC_ACT_OK),
    };

    meta.result = result;
    if EVENTS.output::<SkbMeta>(&meta, 0).is_err() {
        bump(counter::EVENTS_LOST);
    }
    result as i32
}

#[inline(always)]
fn bump(slot: u32) {
    if let Some(value) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot of this map, only this CPU touches it now.
        unsafe { *value += 1 };
    }
}

/// `bpf_fib_lookup` for the packet (input device: the one the hook runs on, as
/// Cilium looks up from its ingress device), the answer recorded in `meta`; on
/// success the MACs are rewritten to the answer's and the packet redirected to the
/// answer's device, else handed to the stack.
#[inline(always)]
fn fib_forward(ctx: &TcContext, flags: u32, flow: &Flow, meta: &mut SkbMeta) -> i64 {
    // SAFETY: an all-zero `bpf_fib_lookup` is a valid value of that C struct.
    let mut params: bpf_fib_lookup = unsafe { zeroed() };
    params.family = AF_INET;
    params.l4_protocol = IPPROTO_UDP;
    params.sport = flow.sport;
    params.dport = flow.dport;
    // tot_len stays 0: no MTU check against a length, the helper checks the skb.
    params.__bindgen_anon_2.tos = flow.tos;
    params.__bindgen_anon_3.ipv4_src = flow.saddr;
    params.__bindgen_anon_4.ipv4_dst = flow.daddr;
    params.ifindex = meta.ifindex;
    // SAFETY: `params` is initialised stack memory of the size passed.
    let rc = unsafe {
        fib_lookup(
            ctx.as_ptr(),
            &mut params,
            size_of::<bpf_fib_lookup>() as i32,
            flags,
        )
    } as i32;
    meta.fib_called = 1;
    meta.fib_rc = rc;
    meta.fib_ifindex = params.ifindex;
    meta.fib_smac = params.smac;
    meta.fib_dmac = params.dmac;
    if rc != 0 {
        return i64::from(TC_ACT_OK);
    }
    let (d, m) = (params.dmac, params.smac);
    let macs = [
        d[0], d[1], d[2], d[3], d[4], d[5], m[0], m[1], m[2], m[3], m[4], m[5],
    ];
    // A failed store leaves the frame as it was; pod B's observer shows the outcome.
    let _ = ctx.store(0, &macs, 0);
    // SAFETY: plain helper call; it only records the target for after return.
    let ret = unsafe { bpf_redirect(params.ifindex, 0) };
    count_redirect(ret);
    ret
}

/// Counts what the redirect helper said: accepted (`TC_ACT_REDIRECT`) or refused
/// (`TC_ACT_SHOT`, invalid flags only; a bad target fails after the program returns).
#[inline(always)]
fn count_redirect(ret: i64) {
    if ret == i64::from(TC_ACT_REDIRECT) {
        bump(counter::REDIRECTED);
    } else if ret == i64::from(TC_ACT_SHOT) {
        bump(counter::REDIRECT_FAILED);
    }
}

/// Ethernet -> IPv4 (honouring IHL, skipping non-first fragments) -> UDP to `dport`.
#[inline(always)]
fn parse(ctx: &TcContext, dport: u16) -> Option<Flow> {
    let ethertype: u16 = ctx.load(ETH_TYPE_OFF).ok()?;
    if u16::from_be(ethertype) != ETH_P_IP {
        return None;
    }
    let ip: Ipv4Fixed = ctx.load(ETH_HLEN).ok()?;
    if ip.version_ihl >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip.version_ihl & 0x0f) * 4;
    if ihl < IPV4_MIN_HLEN {
        return None;
    }
    if u16::from_be_bytes(ip.frag_off) & IP_OFFSET_MASK != 0 || ip.protocol != IPPROTO_UDP {
        return None;
    }
    let l4 = ETH_HLEN + ihl;
    let udp: [u8; UDP_HLEN] = ctx.load(l4).ok()?;
    if u16::from_be_bytes([udp[2], udp[3]]) != dport {
        return None;
    }
    // Payload: PAYLOAD_MAGIC then a big-endian sequence number. A datagram that
    // matches the port but not this layout is still the check's traffic: seq 0.
    let seq = match ctx.load::<[u8; 8]>(l4 + UDP_HLEN) {
        Ok(p) if [p[0], p[1], p[2], p[3]] == PAYLOAD_MAGIC => {
            u32::from_be_bytes([p[4], p[5], p[6], p[7]])
        }
        _ => 0,
    };
    Some(Flow {
        saddr: ip.saddr,
        daddr: ip.daddr,
        tos: ip.tos,
        sport: u16::from_ne_bytes([udp[0], udp[1]]),
        dport: u16::from_ne_bytes([udp[2], udp[3]]),
        seq,
    })
}

/// Reads the `__sk_buff` fields as they are now, one exact-width access each
/// (the verifier rejects merged or widened context loads), and the Ethernet addresses.
#[inline(always)]
fn snapshot(ctx: &TcContext, skb: *mut __sk_buff, flow: &Flow) -> SkbMeta {
    // Parsed above, so the header is there; zeroes if the load failed anyway.
    let eth: [u8; 12] = ctx.load(0).unwrap_or([0; 12]);
    let eth_dst = [eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]];
    let eth_src = [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]];
    // SAFETY: `skb` is the program's context pointer; all fields are readable by TC programs.
    unsafe {
        SkbMeta {
            ifindex: read_volatile(addr_of!((*skb).ifindex)),
            ingress_ifindex: read_volatile(addr_of!((*skb).ingress_ifindex)),
            mark: read_volatile(addr_of!((*skb).mark)),
            hash: read_volatile(addr_of!((*skb).hash)),
            protocol: read_volatile(addr_of!((*skb).protocol)),
            pkt_type: read_volatile(addr_of!((*skb).pkt_type)),
            len: read_volatile(addr_of!((*skb).len)),
            saddr: flow.saddr,
            daddr: flow.daddr,
            seq: flow.seq,
            tstamp: read_volatile(addr_of!((*skb).tstamp)),
            result: 0,
            eth_dst,
            eth_src,
            ..SkbMeta::default()
        }
    }
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: nothing above can panic (no indexing out of constant bounds, no
    // arithmetic that overflows); the verifier would reject an endless loop anyway.
    unsafe { core::hint::unreachable_unchecked() }
}
