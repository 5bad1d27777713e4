//! `socket-lb.connect`: socket-level load balancing, as Cilium's kube-proxy
//! replacement does it (`bpf_sock.c`): cgroup programs rewrite a service address
//! to a backend where the application calls `connect`/`sendmsg`, and put the
//! service back where it reads the peer (`recvmsg`, `getpeername`).
//!
//! The client is pod A, through sockets created by a member of a run-scoped
//! cgroup ([`crate::cgroup`]) that has `ebpf/programs/src/bin/sock.rs` attached
//! (`connect4`, `sendmsg4`, `recvmsg4`, `getpeername4`). The service is
//! [`SERVICE`], an address nothing routes to: pod A's default route takes it to
//! the host, which has no route for it and does not forward, so untranslated
//! traffic is dropped there (`Ip InAddrErrors`). The backend is an echo server on
//! the node IP in the host namespace. `tcp`: [`BURST`] connections, each
//! translated by `connect4`, one request and reply each, `getpeername` must say
//! the service. `udp`: [`BURST`] datagrams on an unconnected socket (`sendmsg4`,
//! replies' source by `recvmsg4`) and [`BURST`] on a connected one (`connect4`,
//! `recvmsg4`, `getpeername4`). In both the backend must see pod A's own address
//! (socket LB translates the destination only: no SNAT).
//!
//! Control: the same programs stay attached, the service's entry is removed from
//! their map: the programs still run (witness: their call counters), traffic to
//! the service must not reach the backend.
//!
//! Faults: `no-route` removes pod A's default route (the translated traffic has
//! no way out); `drop` attaches `slb_drop_egress` (cgroup_skb egress) to the
//! client's cgroup: every packet of the client's sockets is dropped after the
//! translation (the shared TC drop hook parses UDP only, so it cannot stand for
//! a TCP drop).

use super::{CONTROL_SEQS, ControlLeg, Ctx, Fault, Leg, POSITIVE_SEQS, Registered, evidence};
use crate::cgroup::Cgroup;
use crate::counters::NsCounters;
use crate::hops::{Accounting, Figure, Role};
use crate::netns::NetNs;
use crate::topology::{NODE_IP, Node};
use crate::traffic::{self, Arrival, BURST, DELIVERY_TIMEOUT, LEAK_GRACE};
use anyhow::{Context, Result, anyhow, bail};
use aya::Ebpf;
use aya::maps::{HashMap as BpfHashMap, PerCpuArray};
use aya::programs::{
    CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, ProgramError,
};
use conformance_contract::Observation;
use conformance_contract::catalogue::{
    Failure, NOT_DELIVERED, NOT_TRANSLATED, PEER_NOT_SERVICE, SOURCE_NOT_KEPT,
};
use conformance_ebpf_common::PROBE_PORT;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// The service ("ClusterIP") the client asks for. Nothing listens or routes there.
pub const SERVICE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 43, 0, 10), 80);

/// The backend the programs translate the service to: an echo server on the node.
pub const BACKEND: SocketAddrV4 = SocketAddrV4::new(NODE_IP, PROBE_PORT);

/// Longest a control waits for its traffic to be dropped by the host.
const CONTROL_TIMEOUT: Duration = Duration::from_millis(300);

pub const CHECKS: &[Registered] = &[Registered {
    id: "socket-lb.connect",
    run,
}];

// ------------------------------------------------ the object's layout (sock.rs)

/// `ServiceKey` of sock.rs: addresses and ports as `struct bpf_sock_addr` holds them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct ServiceKey {
    ip: u32,
    port: u32,
    protocol: u32,
}

/// `Backend` of sock.rs.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Backend {
    ip: u32,
    port: u32,
}

// SAFETY: plain `repr(C)` integers, no padding.
unsafe impl aya::Pod for ServiceKey {}
// SAFETY: as above.
unsafe impl aya::Pod for Backend {}

/// `COUNTERS` indices of sock.rs (the whole layout, some only in `NAMES`).
#[allow(dead_code)]
mod counter {
    pub const CONNECT4_CALLED: u32 = 0;
    pub const CONNECT4_TRANSLATED: u32 = 1;
    pub const SENDMSG4_CALLED: u32 = 2;
    pub const SENDMSG4_TRANSLATED: u32 = 3;
    pub const RECVMSG4_CALLED: u32 = 4;
    pub const RECVMSG4_TRANSLATED: u32 = 5;
    pub const GETPEERNAME4_CALLED: u32 = 6;
    pub const GETPEERNAME4_TRANSLATED: u32 = 7;
    pub const REV_NAT_FULL: u32 = 8;
    pub const DROPPED: u32 = 9;
    pub const LEN: usize = 10;
    pub const NAMES: [&str; LEN] = [
        "connect4_called",
        "connect4_translated",
        "sendmsg4_called",
        "sendmsg4_translated",
        "recvmsg4_called",
        "recvmsg4_translated",
        "getpeername4_called",
        "getpeername4_translated",
        "rev_nat_full",
        "dropped",
    ];
}

/// `user_ip4` of an address.
fn sa_ip(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// `user_port` of a port: the network-order port in the low 16 bits.
fn sa_port(port: u16) -> u32 {
    u32::from(port.to_be())
}

const SOCK_ADDR_PROGRAMS: [&str; 4] = [
    "slb_connect4",
    "slb_sendmsg4",
    "slb_recvmsg4",
    "slb_getpeer4",
];

/// The sock.rs programs loaded and attached to one cgroup, with their maps.
struct SockLb {
    ebpf: Ebpf,
}

#[derive(Clone, Copy)]
struct Counts([u64; counter::LEN]);

impl Counts {
    fn delta(&self, before: &Counts, index: u32) -> u64 {
        self.0[index as usize].saturating_sub(before.0[index as usize])
    }

    fn to_json(self, before: &Counts) -> Value {
        let map: serde_json::Map<String, Value> = counter::NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), json!(self.0[i].saturating_sub(before.0[i]))))
            .collect();
        Value::Object(map)
    }
}

fn chain(e: &ProgramError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

impl SockLb {
    /// Loads sock.bpf.o and attaches its four socket-address programs to `cgroup`
    /// (and `slb_drop_egress` when `drop` is set: the injected fault).
    fn attach(cgroup: &Cgroup, drop: bool) -> Result<Self> {
        let mut ebpf = crate::loader::load(crate::objects::SOCK).context("load sock.bpf.o")?;
        for name in SOCK_ADDR_PROGRAMS {
            let prog: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("sock.bpf.o has no program {name}"))?
                .try_into()?;
            prog.load()
                .map_err(|e| anyhow!("load {name} (verifier): {}", chain(&e)))?;
            if let Ok(info) = prog.info() {
                crate::triage::own(info.id());
            }
            prog.attach(cgroup, CgroupAttachMode::Single).map_err(|e| {
                anyhow!(
                    "attach {name} to cgroup {}: {}",
                    cgroup.path().display(),
                    chain(&e)
                )
            })?;
        }
        if drop {
            let prog: &mut CgroupSkb = ebpf
                .program_mut("slb_drop_egress")
                .ok_or_else(|| anyhow!("sock.bpf.o has no program slb_drop_egress"))?
                .try_into()?;
            prog.load()
                .map_err(|e| anyhow!("load slb_drop_egress: {}", chain(&e)))?;
            // Not part of the check: triage reports it as a foreign program.
            prog.attach(
                cgroup,
                CgroupSkbAttachType::Egress,
                CgroupAttachMode::Single,
            )
            .map_err(|e| anyhow!("attach slb_drop_egress: {}", chain(&e)))?;
        }
        Ok(Self { ebpf })
    }

    fn services(&mut self) -> Result<BpfHashMap<&mut aya::maps::MapData, ServiceKey, Backend>> {
        let map = self
            .ebpf
            .map_mut("SERVICES")
            .ok_or_else(|| anyhow!("sock.bpf.o has no SERVICES map"))?;
        Ok(BpfHashMap::try_from(map)?)
    }

    fn key(protocol: i32) -> ServiceKey {
        ServiceKey {
            ip: sa_ip(*SERVICE.ip()),
            port: sa_port(SERVICE.port()),
            protocol: protocol as u32,
        }
    }

    /// `SERVICE` (for `protocol`) → `BACKEND`.
    fn set_service(&mut self, protocol: i32) -> Result<()> {
        let backend = Backend {
            ip: sa_ip(*BACKEND.ip()),
            port: sa_port(BACKEND.port()),
        };
        self.services()?
            .insert(Self::key(protocol), backend, 0)
            .context("insert the service into SERVICES")
    }

    /// The control's broken step: the service is no longer in the table.
    fn remove_service(&mut self, protocol: i32) -> Result<()> {
        self.services()?
            .remove(&Self::key(protocol))
            .context("remove the service from SERVICES")
    }

    fn counts(&self) -> Result<Counts> {
        let counters: PerCpuArray<_, u64> = PerCpuArray::try_from(
            self.ebpf
                .map("COUNTERS")
                .ok_or_else(|| anyhow!("sock.bpf.o has no COUNTERS map"))?,
        )?;
        let mut out = [0u64; counter::LEN];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = counters.get(&(i as u32), 0)?.iter().sum();
        }
        Ok(Counts(out))
    }
}

// ------------------------------------------------------------ counting hops

/// What the host and pod A counted, for per-hop deltas.
struct Meters<'a> {
    pod: &'a NetNs,
    host: &'a NetNs,
    lxc: &'a str,
}

struct Reading {
    pod: NsCounters,
    host: NsCounters,
}

impl Meters<'_> {
    fn read(&self) -> Result<Reading> {
        Ok(Reading {
            pod: NsCounters::read(self.pod)?,
            host: NsCounters::read(self.host)?,
        })
    }
}

fn dev_delta(a: &NsCounters, b: &NsCounters, dev: &str, tx: bool) -> Result<u64> {
    let (a, b) = (a.device(dev)?, b.device(dev)?);
    Ok(if tx {
        b.tx_packets.saturating_sub(a.tx_packets)
    } else {
        b.rx_packets.saturating_sub(a.rx_packets)
    })
}

fn mib_delta(a: &NsCounters, b: &NsCounters, group: &str, field: &str) -> Result<u64> {
    Ok(b.mib(group, field)?.saturating_sub(a.mib(group, field)?))
}

fn figure(
    at: impl Into<String>,
    count: u64,
    failure: &'static Failure,
    note: Option<String>,
) -> Figure {
    Figure {
        at: at.into(),
        role: Role::Path,
        count,
        failure,
        note,
    }
}

fn loss(at: impl Into<String>, count: u64) -> Figure {
    Figure {
        at: at.into(),
        role: Role::Loss,
        count,
        failure: &NOT_DELIVERED,
        note: None,
    }
}

/// The device and stack hops between pod A and the host, both ways.
fn wire_figures(
    m: &Meters,
    a: &Reading,
    b: &Reading,
    transport: &str,
    note: Option<String>,
) -> Result<(Vec<Figure>, Vec<Figure>)> {
    let request = vec![
        figure(
            "pod A eth0 tx",
            dev_delta(&a.pod, &b.pod, "eth0", true)?,
            &NOT_DELIVERED,
            note,
        ),
        figure(
            format!("host {} rx", m.lxc),
            dev_delta(&a.host, &b.host, m.lxc, false)?,
            &NOT_DELIVERED,
            None,
        ),
        figure(
            "host Ip InReceives",
            mib_delta(&a.host, &b.host, "Ip", "InReceives")?,
            &NOT_DELIVERED,
            None,
        ),
        loss(
            "host Ip InAddrErrors",
            mib_delta(&a.host, &b.host, "Ip", "InAddrErrors")?,
        ),
        loss(
            "host IpExt InNoRoutes",
            mib_delta(&a.host, &b.host, "IpExt", "InNoRoutes")?,
        ),
        if transport == "Tcp" {
            figure(
                "host Tcp PassiveOpens",
                mib_delta(&a.host, &b.host, "Tcp", "PassiveOpens")?,
                &NOT_DELIVERED,
                None,
            )
        } else {
            figure(
                "host Udp InDatagrams",
                mib_delta(&a.host, &b.host, "Udp", "InDatagrams")?,
                &NOT_DELIVERED,
                None,
            )
        },
    ];
    let reply = vec![
        figure(
            format!("host {} tx", m.lxc),
            dev_delta(&a.host, &b.host, m.lxc, true)?,
            &NOT_DELIVERED,
            None,
        ),
        figure(
            "pod A eth0 rx",
            dev_delta(&a.pod, &b.pod, "eth0", false)?,
            &NOT_DELIVERED,
            None,
        ),
    ];
    Ok((request, reply))
}

/// Untranslated traffic the host dropped (no route, not forwarded).
fn host_drops(host: &NetNs, before: &NsCounters) -> u64 {
    NsCounters::read(host)
        .ok()
        .map(|now| {
            mib_delta(before, &now, "Ip", "InAddrErrors").unwrap_or(0)
                + mib_delta(before, &now, "IpExt", "InNoRoutes").unwrap_or(0)
        })
        .unwrap_or(0)
}

// ------------------------------------------------------------------ the run

fn run(check: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let protocol = match variant {
        "tcp" => libc::IPPROTO_TCP,
        "udp" => libc::IPPROTO_UDP,
        _ => bail!("unknown variant `{variant}` for {check}"),
    };
    let mut node = Node::build(ctx.run_id)?;
    // Declared before the programs, so they are detached before it is removed.
    let cgroup = Cgroup::create(ctx.run_id, &format!("socklb-{variant}"))?;
    let drop_fault = ctx.fault(check) == Some(Fault::Drop);
    let mut lb = SockLb::attach(&cgroup, drop_fault)?;
    let _fault = if drop_fault {
        None
    } else {
        ctx.apply_fault(check, &mut node, false)?
    };
    let types: Vec<i32> = match protocol {
        libc::IPPROTO_TCP => vec![libc::SOCK_STREAM; 2 * BURST as usize],
        _ => vec![libc::SOCK_DGRAM; 2 + BURST as usize],
    };
    let mut sockets = cgroup.sockets(&node.pods[0].ns, &types)?;
    let members = cgroup.members()?;
    if members != 0 {
        bail!(
            "cgroup {} still has {members} member(s) after its sockets were made",
            cgroup.path().display()
        );
    }
    let control_socks = sockets.split_off(if protocol == libc::IPPROTO_TCP {
        BURST as usize
    } else {
        1 + BURST as usize
    });
    let a = &node.pods[0];
    let meters = Meters {
        pod: &a.ns,
        host: &node.host,
        lxc: &a.lxc.name,
    };
    lb.set_service(protocol)?;
    let common = [
        ("service", json!(SERVICE.to_string())),
        ("backend", json!(BACKEND.to_string())),
        ("client", json!(a.ip.to_string())),
        ("cgroup", json!(cgroup.path().display().to_string())),
    ];
    let (leg, control) = if protocol == libc::IPPROTO_TCP {
        let listener = node.host.run(|| {
            let l =
                TcpListener::bind(BACKEND).with_context(|| format!("listen on tcp {BACKEND}"))?;
            l.set_nonblocking(true)?;
            Ok(l)
        })?;
        let leg = tcp_leg(&lb, &meters, &listener, sockets, a.ip, &common)?;
        lb.remove_service(protocol)?;
        let control = tcp_control(&lb, &meters, &listener, control_socks)?;
        (leg, control)
    } else {
        let backend = traffic::bind(&node.host, *BACKEND.ip(), BACKEND.port())?;
        let leg = udp_leg(&lb, &meters, &backend, sockets, a.ip, &common)?;
        lb.remove_service(protocol)?;
        let control = udp_control(&lb, &meters, &backend, control_socks)?;
        (leg, control)
    };
    let obs = super::observe(check, variant, started, leg, control);
    drop(lb);
    drop(cgroup);
    Ok(obs)
}

// ------------------------------------------------------------------ TCP

/// Starts a non-blocking connect on every socket and waits for all of them
/// until `deadline` or until `give_up()` says nothing more can come.
fn connect_all(
    socks: &[OwnedFd],
    dst: SocketAddrV4,
    deadline: Instant,
    mut give_up: impl FnMut() -> bool,
) -> Vec<Result<(), std::io::Error>> {
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: dst.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    let mut results: Vec<Option<Result<(), std::io::Error>>> = Vec::with_capacity(socks.len());
    for s in socks {
        let fd = s.as_raw_fd();
        // SAFETY: fcntl/connect on a socket we own, with a valid sockaddr_in.
        let rc = unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
            libc::connect(
                fd,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        let err = std::io::Error::last_os_error();
        results.push(if rc == 0 {
            Some(Ok(()))
        } else if err.raw_os_error() == Some(libc::EINPROGRESS) {
            None
        } else {
            Some(Err(err))
        });
    }
    while results.iter().any(Option::is_none) {
        for (i, s) in socks.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            let mut pfd = libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: poll on one valid pollfd, no wait.
            if unsafe { libc::poll(&mut pfd, 1, 0) } > 0 {
                let mut err: libc::c_int = 0;
                let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                // SAFETY: SO_ERROR into a c_int.
                unsafe {
                    libc::getsockopt(
                        s.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_ERROR,
                        (&mut err as *mut libc::c_int).cast(),
                        &mut len,
                    )
                };
                results[i] = Some(if err == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::from_raw_os_error(err))
                });
            }
        }
        if Instant::now() >= deadline || give_up() {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(std::io::Error::from_raw_os_error(libc::ETIMEDOUT))))
        .collect()
}

/// Accepts up to `want` connections until `deadline` or `give_up()`.
fn accept_all(
    listener: &TcpListener,
    want: usize,
    deadline: Instant,
    mut give_up: impl FnMut() -> bool,
) -> Vec<(TcpStream, SocketAddr)> {
    let mut got = Vec::new();
    while got.len() < want {
        match listener.accept() {
            Ok(c) => {
                got.push(c);
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {}
        }
        if Instant::now() >= deadline || give_up() {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    got
}

fn first_error(results: &[Result<(), std::io::Error>]) -> Option<String> {
    results
        .iter()
        .find_map(|r| r.as_ref().err().map(|e| e.to_string()))
}

fn tcp_leg(
    lb: &SockLb,
    m: &Meters,
    listener: &TcpListener,
    socks: Vec<OwnedFd>,
    client_ip: Ipv4Addr,
    common: &[(&'static str, Value)],
) -> Result<Leg> {
    let (c0, r0) = (lb.counts()?, m.read()?);
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let connects = connect_all(&socks, SERVICE, deadline, || false);
    let connected = connects.iter().filter(|r| r.is_ok()).count();
    let accepted = accept_all(listener, connected, deadline, || false);
    let mut clients: Vec<TcpStream> = socks.into_iter().map(TcpStream::from).collect();
    // One request per connection, echoed by the backend.
    let mut echoed = 0u64;
    let mut echo_error = None;
    for (i, client) in clients.iter_mut().enumerate() {
        if connects[i].is_ok() {
            let _ = client.set_nonblocking(false);
            let _ = client.set_read_timeout(Some(DELIVERY_TIMEOUT));
            let _ = client.write_all(&traffic::payload(i as u32));
        }
    }
    let backend_saw: Vec<SocketAddr> = accepted.iter().map(|(_, from)| *from).collect();
    for (mut conn, _) in accepted {
        let mut buf = [0u8; 8];
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(DELIVERY_TIMEOUT));
        match conn
            .read_exact(&mut buf)
            .and_then(|()| conn.write_all(&buf))
        {
            Ok(()) => echoed += 1,
            Err(e) => {
                echo_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let mut replies = 0u64;
    let mut peers = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        if connects[i].is_err() {
            continue;
        }
        let mut buf = [0u8; 8];
        if client.read_exact(&mut buf).is_ok() && buf == traffic::payload(i as u32) {
            replies += 1;
        }
        if let Ok(peer) = client.peer_addr() {
            peers.push(peer);
        }
    }
    let (c1, r1) = (lb.counts()?, m.read()?);
    let from_client = backend_saw
        .iter()
        .filter(|a| a.ip() == std::net::IpAddr::V4(client_ip))
        .count();
    let peer_is_service = peers
        .iter()
        .filter(|p| **p == SocketAddr::V4(SERVICE))
        .count();
    let (request, reply) = wire_figures(m, &r0, &r1, "Tcp", first_error(&connects))?;
    let mut hops = Accounting::new(BURST);
    hops.push(figure(
        "pod A connect4 translated",
        c1.delta(&c0, counter::CONNECT4_TRANSLATED),
        &NOT_TRANSLATED,
        called_note(&c0, &c1, counter::CONNECT4_CALLED),
    ))
    .push(loss(
        "pod A cgroup egress dropped",
        c1.delta(&c0, counter::DROPPED),
    ))
    .extend(request)
    .push(figure(
        "backend accepted",
        backend_saw.len() as u64,
        &NOT_DELIVERED,
        None,
    ))
    .push(figure(
        "backend saw pod A's address",
        from_client as u64,
        &SOURCE_NOT_KEPT,
        None,
    ))
    .push(figure("backend echoed", echoed, &NOT_DELIVERED, echo_error))
    .extend(reply)
    .push(figure("pod A replies", replies, &NOT_DELIVERED, None))
    .push(figure(
        "pod A getpeername4 translated",
        c1.delta(&c0, counter::GETPEERNAME4_TRANSLATED),
        &PEER_NOT_SERVICE,
        None,
    ))
    .push(figure(
        "pod A peer is the service",
        peer_is_service as u64,
        &PEER_NOT_SERVICE,
        peers
            .iter()
            .find(|p| **p != SocketAddr::V4(SERVICE))
            .map(|p| format!("getpeername says {p}")),
    ));
    let mut ev = evidence(common.iter().cloned());
    ev.insert(
        "backend_saw".into(),
        json!(
            backend_saw
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        ),
    );
    ev.insert(
        "client_peers".into(),
        json!(peers.iter().map(ToString::to_string).collect::<Vec<_>>()),
    );
    ev.insert(
        "connect_errors".into(),
        json!(
            connects
                .iter()
                .filter_map(|r| r.as_ref().err().map(ToString::to_string))
                .collect::<Vec<_>>()
        ),
    );
    ev.insert("program_counters".into(), c1.to_json(&c0));
    ev.insert("hops".into(), hops.to_json());
    Ok(Leg::delivery(
        &hops,
        || {
            format!(
                "{BURST}/{BURST} TCP connections to {SERVICE} translated by connect4 to {BACKEND}, accepted from pod A's own address {client_ip} (no SNAT), echoed, and getpeername on each says {SERVICE}"
            )
        },
        ev,
    ))
}

fn called_note(c0: &Counts, c1: &Counts, called: u32) -> Option<String> {
    let n = c1.delta(c0, called);
    (n < u64::from(BURST))
        .then(|| format!("the program ran {n} times: not attached to the client's cgroup?"))
}

fn tcp_control(
    lb: &SockLb,
    m: &Meters,
    listener: &TcpListener,
    socks: Vec<OwnedFd>,
) -> Result<ControlLeg> {
    let (c0, r0) = (lb.counts()?, m.read()?);
    let started = Instant::now();
    let deadline = started + CONTROL_TIMEOUT;
    // Nothing more can arrive once the host dropped every SYN: then a grace period.
    let mut dropped_at: Option<Instant> = None;
    let mut settled = || {
        if dropped_at.is_none() && host_drops(m.host, &r0.host) >= u64::from(BURST) {
            dropped_at = Some(Instant::now());
        }
        dropped_at.is_some_and(|t| t.elapsed() >= LEAK_GRACE)
    };
    let connects = connect_all(&socks, SERVICE, deadline, &mut settled);
    let accepted = accept_all(listener, BURST as usize, deadline, &mut settled);
    let connected = connects.iter().filter(|r| r.is_ok()).count();
    let mut peers = Vec::new();
    for s in &socks {
        let stream = TcpStream::from(s.try_clone()?);
        if let Ok(p) = stream.peer_addr() {
            peers.push(p);
        }
    }
    let c1 = lb.counts()?;
    let r1 = m.read()?;
    let called = c1.delta(&c0, counter::CONNECT4_CALLED);
    let translated = c1.delta(&c0, counter::CONNECT4_TRANSLATED);
    let host_dropped = mib_delta(&r0.host, &r1.host, "Ip", "InAddrErrors")?
        + mib_delta(&r0.host, &r1.host, "IpExt", "InNoRoutes")?;
    let peer_is_service = peers
        .iter()
        .filter(|p| **p == SocketAddr::V4(SERVICE))
        .count();
    let test_held = accepted.len() >= BURST as usize && peer_is_service >= BURST as usize;
    let account = format!(
        "connect4 ran {called} times and translated {translated} (no entry for {SERVICE}); {connected}/{BURST} connects completed ({}), the host dropped {host_dropped} packets to the service, the backend accepted {}/{BURST}{}",
        first_error(&connects).unwrap_or_else(|| "no error".into()),
        accepted.len(),
        if test_held {
            ""
        } else {
            ": the check's \"backend received, peer is the service\" test fails without the translation"
        }
    );
    Ok(ControlLeg {
        description: format!(
            "the programs stay attached to the client's cgroup, but SERVICES has no entry for {SERVICE}"
        ),
        witnessed: called >= u64::from(BURST) && translated == 0,
        test_held,
        account,
        evidence: evidence([
            ("program_counters", c1.to_json(&c0)),
            (
                "connect_errors",
                json!(
                    connects
                        .iter()
                        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
                        .collect::<Vec<_>>()
                ),
            ),
            ("backend_accepted", json!(accepted.len())),
            ("host_dropped", json!(host_dropped)),
            ("waited_ms", json!(started.elapsed().as_secs_f64() * 1000.0)),
        ]),
    })
}

// ------------------------------------------------------------------ UDP

/// Answers each request with its own payload, back to its sender.
fn echo(server: &UdpSocket, requests: &[Arrival]) -> (u64, Option<String>) {
    let mut sent = 0;
    let mut error = None;
    for r in requests {
        match server.send_to(&traffic::payload(r.seq), r.from) {
            Ok(_) => sent += 1,
            Err(e) => {
                error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    (sent, error)
}

/// One UDP exchange's hops: translated by `translated`, sent, wire, backend,
/// echoed, wire back, replies, reversed by recvmsg4, reply source the service.
struct UdpTrip {
    hops: Accounting,
    requests: Vec<Arrival>,
    replies: Vec<Arrival>,
    peer: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn udp_trip(
    lb: &SockLb,
    m: &Meters,
    backend: &UdpSocket,
    client: &UdpSocket,
    connected: bool,
    seqs: std::ops::Range<u32>,
    client_ip: Ipv4Addr,
) -> Result<UdpTrip> {
    let (c0, r0) = (lb.counts()?, m.read()?);
    let mut connect_error = None;
    if connected && let Err(e) = client.connect(SERVICE) {
        connect_error = Some(format!("connect: {e}"));
    }
    let mut sent = 0u64;
    let mut send_error = connect_error.clone();
    for seq in seqs.clone() {
        let r = if connected {
            client.send(&traffic::payload(seq))
        } else {
            client.send_to(&traffic::payload(seq), SERVICE)
        };
        match r {
            Ok(_) => sent += 1,
            Err(e) => {
                send_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    // Nothing the kernel refused can arrive: no need to wait for it.
    let requests = if sent > 0 {
        traffic::collect_expected(backend, seqs.clone())
    } else {
        Vec::new()
    };
    let (echoed, echo_error) = echo(backend, &requests);
    let replies = if echoed > 0 {
        traffic::collect_expected(client, seqs.clone())
    } else {
        Vec::new()
    };
    let peer = connected.then(|| {
        client
            .peer_addr()
            .map(|p| p.to_string())
            .unwrap_or_else(|e| format!("error: {e}"))
    });
    let (c1, r1) = (lb.counts()?, m.read()?);
    let (translate_name, translated, called) = if connected {
        (
            "pod A connect4 translated",
            counter::CONNECT4_TRANSLATED,
            counter::CONNECT4_CALLED,
        )
    } else {
        (
            "pod A sendmsg4 translated",
            counter::SENDMSG4_TRANSLATED,
            counter::SENDMSG4_CALLED,
        )
    };
    let kind = if connected {
        "connected"
    } else {
        "unconnected"
    };
    let (request, reply) = wire_figures(m, &r0, &r1, "Udp", None)?;
    let from_client = requests
        .iter()
        .filter(|r| r.from.ip() == std::net::IpAddr::V4(client_ip))
        .count();
    let from_service = replies
        .iter()
        .filter(|r| r.from == SocketAddr::V4(SERVICE))
        .count();
    let mut hops = Accounting::new(BURST);
    if connected {
        // One connect for the whole burst: it either translated the socket or not.
        let n = c1.delta(&c0, translated);
        hops.push(figure(
            translate_name,
            if n >= 1 { u64::from(BURST) } else { 0 },
            &NOT_TRANSLATED,
            Some(format!("1 connect, translated {n}")),
        ));
    } else {
        hops.push(figure(
            translate_name,
            c1.delta(&c0, translated),
            &NOT_TRANSLATED,
            called_note(&c0, &c1, called),
        ));
    }
    hops.push(figure(
        format!("pod A sent ({kind})"),
        sent,
        &NOT_DELIVERED,
        send_error,
    ))
    .push(loss(
        "pod A cgroup egress dropped",
        c1.delta(&c0, counter::DROPPED),
    ))
    .extend(request)
    .push(figure(
        "backend received",
        requests.len() as u64,
        &NOT_DELIVERED,
        None,
    ))
    .push(figure(
        "backend saw pod A's address",
        from_client as u64,
        &SOURCE_NOT_KEPT,
        requests
            .iter()
            .find(|r| r.from.ip() != std::net::IpAddr::V4(client_ip))
            .map(|r| format!("a request came from {}", r.from)),
    ))
    .push(figure("backend echoed", echoed, &NOT_DELIVERED, echo_error))
    .extend(reply)
    .push(figure(
        format!("pod A replies ({kind})"),
        replies.len() as u64,
        &NOT_DELIVERED,
        None,
    ))
    .push(figure(
        "pod A recvmsg4 translated",
        c1.delta(&c0, counter::RECVMSG4_TRANSLATED),
        &PEER_NOT_SERVICE,
        None,
    ))
    .push(figure(
        "pod A reply source is the service",
        from_service as u64,
        &PEER_NOT_SERVICE,
        replies
            .iter()
            .find(|r| r.from != SocketAddr::V4(SERVICE))
            .map(|r| format!("a reply came from {}", r.from)),
    ));
    if let Some(p) = &peer {
        let ok = p == &SERVICE.to_string();
        hops.push(figure(
            "pod A getpeername is the service",
            if ok { u64::from(BURST) } else { 0 },
            &PEER_NOT_SERVICE,
            (!ok).then(|| format!("getpeername says {p}")),
        ));
    }
    Ok(UdpTrip {
        hops,
        requests,
        replies,
        peer,
    })
}

fn udp_leg(
    lb: &SockLb,
    m: &Meters,
    backend: &UdpSocket,
    socks: Vec<OwnedFd>,
    client_ip: Ipv4Addr,
    common: &[(&'static str, Value)],
) -> Result<Leg> {
    let mut socks = socks.into_iter().map(UdpSocket::from);
    let unconnected = socks
        .next()
        .ok_or_else(|| anyhow!("no unconnected socket"))?;
    let connected = socks.next().ok_or_else(|| anyhow!("no connected socket"))?;
    for s in [&unconnected, &connected] {
        s.set_nonblocking(true)?;
    }
    let c0 = lb.counts()?;
    let first = udp_trip(
        lb,
        m,
        backend,
        &unconnected,
        false,
        POSITIVE_SEQS,
        client_ip,
    )?;
    let second_seqs = POSITIVE_SEQS.end..POSITIVE_SEQS.end + BURST;
    let second = udp_trip(lb, m, backend, &connected, true, second_seqs, client_ip)?;
    let c1 = lb.counts()?;
    let mut ev = evidence(common.iter().cloned());
    ev.insert(
        "unconnected".into(),
        json!({
            "backend_saw": first.requests.iter().map(|r| r.from.to_string()).collect::<Vec<_>>(),
            "reply_sources": first.replies.iter().map(|r| r.from.to_string()).collect::<Vec<_>>(),
            "hops": first.hops.to_json(),
        }),
    );
    ev.insert(
        "connected".into(),
        json!({
            "backend_saw": second.requests.iter().map(|r| r.from.to_string()).collect::<Vec<_>>(),
            "reply_sources": second.replies.iter().map(|r| r.from.to_string()).collect::<Vec<_>>(),
            "peer": second.peer,
            "hops": second.hops.to_json(),
        }),
    );
    ev.insert("program_counters".into(), c1.to_json(&c0));
    let failed = [
        ("unconnected (sendmsg4)", &first.hops),
        ("connected (connect4)", &second.hops),
    ]
    .into_iter()
    .find_map(|(name, hops)| Some((hops.failure()?, format!("{name}: {}", hops.loss()?))));
    Ok(Leg::judged(
        failed,
        || {
            format!(
                "{BURST}/{BURST} datagrams to {SERVICE} by sendto (sendmsg4) and {BURST}/{BURST} on a socket connected to it (connect4) reached {BACKEND} from pod A's own address {client_ip} (no SNAT); every reply's source (recvmsg4) and getpeername (getpeername4) say {SERVICE}"
            )
        },
        ev,
    ))
}

fn udp_control(
    lb: &SockLb,
    m: &Meters,
    backend: &UdpSocket,
    socks: Vec<OwnedFd>,
) -> Result<ControlLeg> {
    let client = UdpSocket::from(
        socks
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no control socket"))?,
    );
    client.set_nonblocking(true)?;
    let (c0, r0) = (lb.counts()?, m.read()?);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut send_error = None;
    for seq in CONTROL_SEQS {
        match client.send_to(&traffic::payload(seq), SERVICE) {
            Ok(_) => sent += 1,
            Err(e) => {
                send_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let deadline = started + CONTROL_TIMEOUT;
    let mut dropped_at: Option<Instant> = None;
    let arrived = traffic::collect(backend, CONTROL_SEQS, |_| {
        if dropped_at.is_none() && host_drops(m.host, &r0.host) >= sent {
            dropped_at = Some(Instant::now());
        }
        Instant::now() >= deadline || dropped_at.is_some_and(|t| t.elapsed() >= LEAK_GRACE)
    });
    let (echoed, _) = echo(backend, &arrived);
    let replies = if echoed > 0 {
        traffic::collect_expected(&client, CONTROL_SEQS)
    } else {
        Vec::new()
    };
    let (c1, r1) = (lb.counts()?, m.read()?);
    let called = c1.delta(&c0, counter::SENDMSG4_CALLED);
    let translated = c1.delta(&c0, counter::SENDMSG4_TRANSLATED);
    let host_dropped = mib_delta(&r0.host, &r1.host, "Ip", "InAddrErrors")?
        + mib_delta(&r0.host, &r1.host, "IpExt", "InNoRoutes")?;
    let from_service = replies
        .iter()
        .filter(|r| r.from == SocketAddr::V4(SERVICE))
        .count();
    let test_held = arrived.len() >= BURST as usize && from_service >= BURST as usize;
    let account = format!(
        "sendmsg4 ran {called} times and translated {translated} (no entry for {SERVICE}); {sent}/{BURST} sent{}, the host dropped {host_dropped} to the service, the backend received {}/{BURST}{}",
        send_error
            .as_ref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default(),
        arrived.len(),
        if test_held {
            ""
        } else {
            ": the check's \"backend received, reply from the service\" test fails without the translation"
        }
    );
    Ok(ControlLeg {
        description: format!(
            "the programs stay attached to the client's cgroup, but SERVICES has no entry for {SERVICE}"
        ),
        witnessed: called >= u64::from(BURST) && translated == 0,
        test_held,
        account,
        evidence: evidence([
            ("program_counters", c1.to_json(&c0)),
            ("backend_received", super::seqs_json(&arrived)),
            ("host_dropped", json!(host_dropped)),
            ("send_error", json!(send_error)),
            ("waited_ms", json!(started.elapsed().as_secs_f64() * 1000.0)),
        ]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sock_addr_representation_is_what_the_kernel_stores() {
        // user_ip4 holds the address bytes in network order; user_port the
        // network-order port in its low 16 bits.
        assert_eq!(
            sa_ip(Ipv4Addr::new(10, 43, 0, 10)).to_ne_bytes(),
            [10, 43, 0, 10]
        );
        assert_eq!((sa_port(80) as u16).to_ne_bytes(), 80u16.to_be_bytes());
        assert_eq!(counter::NAMES.len(), counter::LEN);
        assert_eq!(counter::DROPPED as usize + 1, counter::LEN);
    }

    #[test]
    fn the_service_is_not_an_address_the_lab_routes() {
        assert!(!SERVICE.ip().is_loopback());
        assert_ne!(SERVICE.ip().octets()[..2], [10, 42], "pod CIDR");
        assert_ne!(*SERVICE.ip(), NODE_IP);
    }
}
