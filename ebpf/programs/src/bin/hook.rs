//! `hook`: the TC classifier every datapath check attaches (TCX or legacy clsact).
//!
//! For every packet it bumps `COUNTERS[SEEN]`. A packet *matches* when it carries
//! UDP to `CONFIG[0].dport` over IPv4 (not a non-first fragment) or over IPv6
//! (EtherType 0x86DD whose fixed header's next header is UDP, 17: a packet with
//! any extension header, a fragment header included, is not matched, which is
//! enough for the probe's own datagrams, which carry none); anything else is
//! passed untouched with `TC_ACT_OK`, and so is everything while `dport` is 0
//! (the array entry exists from the start, zeroed: "not configured"). Both
//! families are counted and recorded alike, and every action applies to both: the
//! redirects act on the L2 frame, and `FIB_LOOKUP` asks with `AF_INET6` for IPv6.
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
//! The record is built in a per-CPU scratch slot (`SCRATCH`), not on the stack:
//! with IPv6 addresses it no longer fits the 512-byte BPF stack beside the
//! `bpf_fib_lookup` parameters; a TC program runs to completion on its CPU, so
//! the slot is this packet's until the program returns.
//!
//! Only helpers and `__sk_buff` fields that kernel 6.1 offers to TC programs are
//! used (no kfuncs, no `bpf_cast_to_kern_ctx`). The second program, `hook_state`,
//! is the same and also reads a few of the kernel's own `struct sk_buff` fields
//! (`read_kernel_fields`) for the scrub checks. Build with `cargo xtask ebpf`.
#![no_std]
#![no_main]

use core::ffi::c_void;
use core::mem::{size_of, zeroed};
use core::ptr::{addr_of, addr_of_mut, null_mut, read_volatile, write_volatile};

use aya_ebpf::{
    EbpfContext,
    bindings::{__sk_buff, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, bpf_fib_lookup},
    helpers::{
        bpf_fib_lookup as fib_lookup, bpf_probe_read_kernel, bpf_redirect, bpf_redirect_neigh,
        bpf_redirect_peer, bpf_skb_load_bytes,
    },
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

use common::{HookConfig, PAYLOAD_MAGIC, SkbMeta, action, counter, kern};

const ETH_HLEN: usize = 14;
/// Offset of the EtherType in the Ethernet header.
const ETH_TYPE_OFF: usize = 12;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// The fixed IPv6 header; extension headers would follow it.
const IPV6_HLEN: usize = 40;
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

/// Where the event record of the packet being handled is built (see the module docs).
#[map]
static SCRATCH: PerCpuArray<SkbMeta> = PerCpuArray::with_max_entries(1, 0);

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

/// The first 8 bytes of the fixed IPv6 header; its addresses follow (offsets
/// [`IPV6_SADDR_OFF`], [`IPV6_DADDR_OFF`]) and are loaded straight into the record.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv6Start {
    /// Version (4 bits), traffic class (8), flow label (20).
    vtc_flow: [u8; 4],
    payload_len: [u8; 2],
    nexthdr: u8,
    hop_limit: u8,
}

const IPV6_SADDR_OFF: u32 = (ETH_HLEN + 8) as u32;
const IPV6_DADDR_OFF: u32 = (ETH_HLEN + 24) as u32;

/// What the parser extracts from a matching packet.
struct Flow {
    /// 4 or 6.
    version: u8,
    /// IPv4 addresses (network byte order); 0 for IPv6.
    saddr: u32,
    daddr: u32,
    tos: u8,
    /// IPv6 traffic class and flow label as in the packet (`ip6_flowinfo`), for
    /// `bpf_fib_lookup`'s `flowinfo`; 0 for IPv4.
    flowinfo: u32,
    /// UDP ports as they are in the packet (network byte order).
    sport: u16,
    dport: u16,
    seq: u32,
}

#[classifier]
pub fn hook(ctx: TcContext) -> i32 {
    run(ctx, false)
}

/// `hook`, and it also reads the [`common::kern`] fields of `struct sk_buff`
/// named by `kern_mask` at the offsets userspace found in the kernel's BTF.
#[classifier]
pub fn hook_state(ctx: TcContext) -> i32 {
    run(ctx, true)
}

#[inline(always)]
fn run(ctx: TcContext, read_state: bool) -> i32 {
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
    // Index 0 of a one-entry array always exists; without it nothing is recorded.
    let Some(meta) = SCRATCH.get_ptr_mut(0) else {
        bump(counter::EVENTS_LOST);
        return TC_ACT_OK as i32;
    };
    // SAFETY: this CPU's slot of SCRATCH, used by this program run only.
    let meta = unsafe { &mut *meta };
    snapshot(&ctx, skb, &flow, meta);
    if read_state {
        read_kernel_fields(skb, cfg, meta);
    }

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
        action::FIB_LOOKUP => fib_forward(&ctx, cfg.fib_flags, &flow, meta),
        action::CONTINUE => -1, // TC_ACT_UNSPEC
        // PASS, and any value this object does not know: hand the packet on.
        _ => i64::from(TC_ACT_OK),
    };

    meta.result = result;
    if EVENTS.output::<SkbMeta>(meta, 0).is_err() {
        bump(counter::EVENTS_LOST);
    }
    result as i32
}

/// Reads the configured fields of the kernel's `struct sk_buff` behind the
/// context pointer (a TC program's context *is* the `sk_buff`; `__sk_buff` is the
/// verifier's view of it) with `bpf_probe_read_kernel`, which needs no BTF in the
/// object and works from kernel 5.5 on where the verifier lets networking
/// programs call it. A field whose read fails stays unset in `kern_read`.
#[inline(always)]
fn read_kernel_fields(skb: *mut __sk_buff, cfg: &HookConfig, meta: &mut SkbMeta) {
    let base = skb as *const u8;
    if cfg.kern_mask & kern::NFCT != 0 {
        // SAFETY: bpf_probe_read_kernel copies or fails; it never faults.
        if let Ok(v) = unsafe { bpf_probe_read_kernel(base.wrapping_add(usize::from(cfg.kern_nfct_off)) as *const u64) } {
            meta.kern_nfct = v;
            meta.kern_read |= kern::NFCT;
        }
    }
    if cfg.kern_mask & kern::REFDST != 0 {
        // SAFETY: as above.
        if let Ok(v) = unsafe { bpf_probe_read_kernel(base.wrapping_add(usize::from(cfg.kern_refdst_off)) as *const u64) } {
            meta.kern_refdst = v;
            meta.kern_read |= kern::REFDST;
        }
    }
    if cfg.kern_mask & kern::EXT != 0 {
        // SAFETY: as above.
        if let Ok(v) = unsafe { bpf_probe_read_kernel(base.wrapping_add(usize::from(cfg.kern_ext_off)) as *const u8) } {
            meta.kern_ext = v;
            meta.kern_read |= kern::EXT;
        }
    }
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
    params.l4_protocol = IPPROTO_UDP;
    params.sport = flow.sport;
    params.dport = flow.dport;
    // tot_len stays 0: no MTU check against a length, the helper checks the skb.
    if flow.version == 6 {
        params.family = AF_INET6;
        params.__bindgen_anon_2.flowinfo = flow.flowinfo;
        params.__bindgen_anon_3.ipv6_src = words(&meta.saddr6);
        params.__bindgen_anon_4.ipv6_dst = words(&meta.daddr6);
    } else {
        params.family = AF_INET;
        params.__bindgen_anon_2.tos = flow.tos;
        params.__bindgen_anon_3.ipv4_src = flow.saddr;
        params.__bindgen_anon_4.ipv4_dst = flow.daddr;
    }
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

/// An IPv6 address as `bpf_fib_lookup`'s `__u32[4]`: the bytes as in the packet.
#[inline(always)]
fn words(a: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
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

/// Ethernet -> IPv4 (honouring IHL, skipping non-first fragments) or IPv6 (the
/// fixed header, next header UDP) -> UDP to `dport`.
#[inline(always)]
fn parse(ctx: &TcContext, dport: u16) -> Option<Flow> {
    let ethertype: u16 = ctx.load(ETH_TYPE_OFF).ok()?;
    let (mut flow, l4) = match u16::from_be(ethertype) {
        ETH_P_IP => parse_ipv4(ctx)?,
        ETH_P_IPV6 => parse_ipv6(ctx)?,
        _ => return None,
    };
    let udp: [u8; UDP_HLEN] = ctx.load(l4).ok()?;
    if u16::from_be_bytes([udp[2], udp[3]]) != dport {
        return None;
    }
    // Payload: PAYLOAD_MAGIC then a big-endian sequence number. A datagram that
    // matches the port but not this layout is still the check's traffic: seq 0.
    flow.seq = match ctx.load::<[u8; 8]>(l4 + UDP_HLEN) {
        Ok(p) if [p[0], p[1], p[2], p[3]] == PAYLOAD_MAGIC => {
            u32::from_be_bytes([p[4], p[5], p[6], p[7]])
        }
        _ => 0,
    };
    flow.sport = u16::from_ne_bytes([udp[0], udp[1]]);
    flow.dport = u16::from_ne_bytes([udp[2], udp[3]]);
    Some(flow)
}

/// An IPv4 header carrying UDP, first fragment or whole: the flow without its
/// ports and sequence number, and the UDP header's offset.
#[inline(always)]
fn parse_ipv4(ctx: &TcContext) -> Option<(Flow, usize)> {
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
    let flow = Flow {
        version: 4,
        saddr: ip.saddr,
        daddr: ip.daddr,
        tos: ip.tos,
        flowinfo: 0,
        sport: 0,
        dport: 0,
        seq: 0,
    };
    Some((flow, ETH_HLEN + ihl))
}

/// An IPv6 fixed header whose next header is UDP (no extension headers): the
/// flow without its ports and sequence number, and the UDP header's offset.
#[inline(always)]
fn parse_ipv6(ctx: &TcContext) -> Option<(Flow, usize)> {
    let ip: Ipv6Start = ctx.load(ETH_HLEN).ok()?;
    if ip.vtc_flow[0] >> 4 != 6 || ip.nexthdr != IPPROTO_UDP {
        return None;
    }
    let v = ip.vtc_flow;
    let flow = Flow {
        version: 6,
        saddr: 0,
        daddr: 0,
        tos: 0,
        flowinfo: u32::from_ne_bytes([v[0] & 0x0f, v[1], v[2], v[3]]),
        sport: 0,
        dport: 0,
        seq: 0,
    };
    Some((flow, ETH_HLEN + IPV6_HLEN))
}

/// Writes the record of this packet into `meta`, every field: the `__sk_buff`
/// fields as they are now, one exact-width access each (the verifier rejects
/// merged or widened context loads), the Ethernet addresses, the IP addresses of
/// the packet's family (IPv6 ones loaded from the packet straight into the
/// record), and zeroes where this packet has nothing (the slot keeps the last
/// packet's record).
#[inline(always)]
fn snapshot(ctx: &TcContext, skb: *mut __sk_buff, flow: &Flow, meta: &mut SkbMeta) {
    // Parsed above, so the header is there; zeroes if the load failed anyway.
    let eth: [u8; 12] = ctx.load(0).unwrap_or([0; 12]);
    meta.eth_dst = [eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]];
    meta.eth_src = [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]];
    // SAFETY: `skb` is the program's context pointer; all fields are readable by TC programs.
    unsafe {
        meta.ifindex = read_volatile(addr_of!((*skb).ifindex));
        meta.ingress_ifindex = read_volatile(addr_of!((*skb).ingress_ifindex));
        meta.mark = read_volatile(addr_of!((*skb).mark));
        meta.hash = read_volatile(addr_of!((*skb).hash));
        meta.protocol = read_volatile(addr_of!((*skb).protocol));
        meta.pkt_type = read_volatile(addr_of!((*skb).pkt_type));
        meta.len = read_volatile(addr_of!((*skb).len));
        meta.tstamp = read_volatile(addr_of!((*skb).tstamp));
    }
    meta.saddr = flow.saddr;
    meta.daddr = flow.daddr;
    meta.seq = flow.seq;
    meta.ip_version = flow.version;
    meta.result = 0;
    meta.fib_called = 0;
    meta.fib_rc = 0;
    meta.fib_ifindex = 0;
    meta.fib_smac = [0; 6];
    meta.fib_dmac = [0; 6];
    meta._pad = [0; 3];
    meta.saddr6 = [0; 16];
    meta.daddr6 = [0; 16];
    meta.kern_read = 0;
    meta.kern_ext = 0;
    meta._pad3 = [0; 3];
    meta.kern_nfct = 0;
    meta.kern_refdst = 0;
    if flow.version == 6 {
        // A failed load leaves zeroes, which the event shows.
        // SAFETY: both destinations are 16 bytes of this map value.
        unsafe {
            let _ = bpf_skb_load_bytes(
                ctx.as_ptr(),
                IPV6_SADDR_OFF,
                meta.saddr6.as_mut_ptr() as *mut c_void,
                16,
            );
            let _ = bpf_skb_load_bytes(
                ctx.as_ptr(),
                IPV6_DADDR_OFF,
                meta.daddr6.as_mut_ptr() as *mut c_void,
                16,
            );
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
