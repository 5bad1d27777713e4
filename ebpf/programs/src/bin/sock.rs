//! `sock`: socket-level load balancing as Cilium's kube-proxy replacement does it
//! (`bpf_sock.c`), reduced to one service table, for `socket-lb.connect`.
//!
//! - `slb_connect4` (`cgroup/connect4`, TCP and connected UDP) and `slb_sendmsg4`
//!   (`cgroup/sendmsg4`, unconnected UDP) look the destination up in `SERVICES`
//!   (service address, port and protocol → backend address and port). On a hit
//!   they rewrite the destination to the backend and remember, by socket cookie,
//!   which service the socket talked to (`REV_NAT`).
//! - `slb_recvmsg4` (`cgroup/recvmsg4`) and `slb_getpeer4` (`cgroup/getpeername4`)
//!   put the service back where the application reads the peer: a datagram's source
//!   (`recvfrom`) and `getpeername`, when it is the backend the socket was sent to.
//! - `slb_drop_egress` (`cgroup_skb/egress`) drops every packet; the probe attaches
//!   it only for the check's injected `drop` fault.
//!
//! Every program bumps `COUNTERS[<hook>_CALLED]` on each call and
//! `COUNTERS[<hook>_TRANSLATED]` on each rewrite. Addresses and ports are kept in
//! the maps exactly as `struct bpf_sock_addr` holds them (`user_ip4` network byte
//! order; `user_port` the network-order port in the low 16 bits), so no byte
//! swapping happens here. The layouts and indices are mirrored in
//! `probes/src/checks/socket_lb.rs`. Build with `cargo xtask ebpf`.
#![no_std]
#![no_main]

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use aya_ebpf::{
    EbpfContext,
    bindings::bpf_sock_addr,
    helpers::bpf_get_socket_cookie,
    macros::{cgroup_skb, cgroup_sock_addr, map},
    maps::{HashMap, PerCpuArray},
    programs::{SkBuffContext, SockAddrContext},
};

/// A service: `user_ip4`, `user_port` as in `bpf_sock_addr`, and `IPPROTO_*`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ServiceKey {
    pub ip: u32,
    pub port: u32,
    pub protocol: u32,
}

/// A backend, in the same representation.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Backend {
    pub ip: u32,
    pub port: u32,
}

/// What a translated socket talked to: the service it asked for and the backend
/// it was sent to.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RevNat {
    pub service_ip: u32,
    pub service_port: u32,
    pub backend_ip: u32,
    pub backend_port: u32,
}

const CONNECT4_CALLED: u32 = 0;
const CONNECT4_TRANSLATED: u32 = 1;
const SENDMSG4_CALLED: u32 = 2;
const SENDMSG4_TRANSLATED: u32 = 3;
const RECVMSG4_CALLED: u32 = 4;
const RECVMSG4_TRANSLATED: u32 = 5;
const GETPEERNAME4_CALLED: u32 = 6;
const GETPEERNAME4_TRANSLATED: u32 = 7;
/// `REV_NAT` had no room: a reply will show the backend, not the service.
const REV_NAT_FULL: u32 = 8;
const DROPPED: u32 = 9;
const COUNTERS_LEN: u32 = 10;

#[map]
static SERVICES: HashMap<ServiceKey, Backend> = HashMap::with_max_entries(16, 0);

#[map]
static REV_NAT: HashMap<u64, RevNat> = HashMap::with_max_entries(256, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

/// `connect(2)` and `sendmsg` may go on; recvmsg/getpeername programs must return 1.
const ALLOW: i32 = 1;

fn bump(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot, written only by this CPU while this program runs.
        unsafe { *slot += 1 };
    }
}

/// Destination → backend when it is a service; remembers the reverse by cookie.
fn translate(ctx: &SockAddrContext, called: u32, translated: u32) -> i32 {
    bump(called);
    let sa = ctx.sock_addr;
    // SAFETY: `sa` is the context the kernel passed; these are 4-byte accesses to
    // fields the verifier allows connect4/sendmsg4 to read and write.
    unsafe {
        let key = ServiceKey {
            ip: read_volatile(addr_of!((*sa).user_ip4)),
            port: read_volatile(addr_of!((*sa).user_port)),
            protocol: read_volatile(addr_of!((*sa).protocol)),
        };
        let Some(backend) = SERVICES.get(&key) else {
            return ALLOW;
        };
        let backend = *backend;
        write_volatile(addr_of_mut!((*sa).user_ip4), backend.ip);
        write_volatile(addr_of_mut!((*sa).user_port), backend.port);
        let rev = RevNat {
            service_ip: key.ip,
            service_port: key.port,
            backend_ip: backend.ip,
            backend_port: backend.port,
        };
        let cookie = bpf_get_socket_cookie(ctx.as_ptr());
        if REV_NAT.insert(&cookie, &rev, 0).is_err() {
            bump(REV_NAT_FULL);
        }
    }
    bump(translated);
    ALLOW
}

/// The peer the application reads → the service, when it is the backend this
/// socket was translated to.
fn reverse(ctx: &SockAddrContext, called: u32, translated: u32) -> i32 {
    bump(called);
    let sa: *mut bpf_sock_addr = ctx.sock_addr;
    // SAFETY: as in `translate`; recvmsg4 and getpeername4 may rewrite user_ip4/port.
    unsafe {
        let cookie = bpf_get_socket_cookie(ctx.as_ptr());
        let Some(rev) = REV_NAT.get(&cookie) else {
            return ALLOW;
        };
        let rev = *rev;
        if read_volatile(addr_of!((*sa).user_ip4)) != rev.backend_ip
            || read_volatile(addr_of!((*sa).user_port)) != rev.backend_port
        {
            return ALLOW;
        }
        write_volatile(addr_of_mut!((*sa).user_ip4), rev.service_ip);
        write_volatile(addr_of_mut!((*sa).user_port), rev.service_port);
    }
    bump(translated);
    ALLOW
}

#[cgroup_sock_addr(connect4)]
pub fn slb_connect4(ctx: SockAddrContext) -> i32 {
    translate(&ctx, CONNECT4_CALLED, CONNECT4_TRANSLATED)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn slb_sendmsg4(ctx: SockAddrContext) -> i32 {
    translate(&ctx, SENDMSG4_CALLED, SENDMSG4_TRANSLATED)
}

#[cgroup_sock_addr(recvmsg4)]
pub fn slb_recvmsg4(ctx: SockAddrContext) -> i32 {
    reverse(&ctx, RECVMSG4_CALLED, RECVMSG4_TRANSLATED)
}

#[cgroup_sock_addr(getpeername4)]
pub fn slb_getpeer4(ctx: SockAddrContext) -> i32 {
    reverse(&ctx, GETPEERNAME4_CALLED, GETPEERNAME4_TRANSLATED)
}

/// The `drop` fault: every packet the client's sockets send is dropped.
#[cgroup_skb(egress)]
pub fn slb_drop_egress(_ctx: SkBuffContext) -> i32 {
    bump(DROPPED);
    0
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: nothing above can panic (no indexing, no overflowing arithmetic
    // outside a per-CPU counter that would take centuries to wrap).
    unsafe { core::hint::unreachable_unchecked() }
}
