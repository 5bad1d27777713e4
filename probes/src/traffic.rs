//! Test traffic: numbered UDP datagrams sent from one namespace and counted by a
//! socket in another. Every datagram carries `PAYLOAD_MAGIC` and a sequence number,
//! so a receiver counts only this leg's packets (never a late one from an earlier leg).

use crate::netlink::Mac;
use crate::netns::NetNs;
use anyhow::{Context, Result, anyhow};
use conformance_ebpf_common::{PAYLOAD_MAGIC, PROBE_PORT};
use pnet_packet::MutablePacket;
use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::{self, MutableIpv4Packet};
use pnet_packet::udp::{self, MutableUdpPacket};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::ops::Range;
use std::time::{Duration, Instant};

/// How long a positive leg waits for its datagrams. Generous for TCG guests;
/// a working path delivers within a millisecond, so this is only paid on failure.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_millis(1000);

/// After a control's traffic was witnessed at its decisive point (a hook counted it,
/// a device received it), how long to keep listening for a leak. Everything on these
/// paths runs in the same softirq or the next backlog run, well inside this.
pub const LEAK_GRACE: Duration = Duration::from_millis(25);

/// Datagrams per leg.
pub const BURST: u32 = 5;

pub fn payload(seq: u32) -> [u8; 8] {
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&PAYLOAD_MAGIC);
    p[4..].copy_from_slice(&seq.to_be_bytes());
    p
}

fn parse_payload(buf: &[u8]) -> Option<u32> {
    (buf.len() >= 8 && buf[..4] == PAYLOAD_MAGIC)
        .then(|| u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]))
}

/// A UDP socket bound inside a namespace, once the namespace's links can carry
/// traffic (see [`await_links_operational`]); `AF_INET6` for an IPv6 address.
pub fn bind(ns: &NetNs, ip: impl Into<IpAddr>, port: u16) -> Result<UdpSocket> {
    let addr = SocketAddr::new(ip.into(), port);
    ns.run(|| {
        await_links_operational(LINK_READY_TIMEOUT)?;
        let sock = UdpSocket::bind(addr).with_context(|| format!("bind udp {addr}"))?;
        sock.set_nonblocking(true)?;
        Ok(sock)
    })
    .with_context(|| format!("in ns {}", ns.name()))
}

/// A datagram that arrived: its sequence number and sender.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub seq: u32,
    pub from: SocketAddr,
}

/// Sends one datagram per sequence number to `dst:PROBE_PORT`. Returns how many the
/// kernel accepted and the first send error (e.g. ENETUNREACH when a route is gone).
pub fn send_burst(
    sock: &UdpSocket,
    dst: impl Into<IpAddr>,
    seqs: Range<u32>,
) -> (u32, Option<String>) {
    let dst = SocketAddr::new(dst.into(), PROBE_PORT);
    let mut sent = 0;
    let mut first_error = None;
    for seq in seqs {
        match sock.send_to(&payload(seq), dst) {
            Ok(_) => sent += 1,
            Err(e) => {
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    (sent, first_error)
}

/// Drains `sock` until every sequence number in `want` arrived or `until` says stop.
/// Datagrams outside `want` are ignored (late packets of another leg).
pub fn collect(
    sock: &UdpSocket,
    want: Range<u32>,
    mut until: impl FnMut(usize) -> bool,
) -> Vec<Arrival> {
    let mut got: Vec<Arrival> = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Some(seq) = parse_payload(&buf[..n])
                    && want.contains(&seq)
                    && !got.iter().any(|a| a.seq == seq)
                {
                    got.push(Arrival { seq, from });
                }
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {}
        }
        if got.len() == want.len() || until(got.len()) {
            return got;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Waits for every datagram of `want`, up to [`DELIVERY_TIMEOUT`].
pub fn collect_expected(sock: &UdpSocket, want: Range<u32>) -> Vec<Arrival> {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    collect(sock, want, |_| Instant::now() >= deadline)
}

/// For a negative control: waits until `witnessed()` confirms the traffic reached the
/// point where the check breaks it (up to [`DELIVERY_TIMEOUT`]), then listens for
/// [`LEAK_GRACE`] more. Returns what leaked and whether the witness ever confirmed.
pub fn collect_leaks(
    sock: &UdpSocket,
    want: Range<u32>,
    mut witnessed: impl FnMut() -> bool,
) -> (Vec<Arrival>, bool) {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let mut seen_at: Option<Instant> = None;
    let got = collect(sock, want, |_| {
        let now = Instant::now();
        if seen_at.is_none() && witnessed() {
            seen_at = Some(now);
        }
        match seen_at {
            Some(t) => now >= t + LEAK_GRACE,
            None => now >= deadline,
        }
    });
    (got, seen_at.is_some())
}

/// Sends raw Ethernet frames carrying probe datagrams out of `ifname` in `ns`, with
/// addresses of our choosing (a foreign destination MAC, for the scrub check).
pub struct FrameSender {
    tx: Box<dyn pnet_datalink::DataLinkSender>,
}

/// Addresses of a hand-built frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameSpec {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
}

impl FrameSender {
    pub fn open(ns: &NetNs, ifname: &str) -> Result<Self> {
        ns.run(|| {
            await_links_operational(LINK_READY_TIMEOUT)?;
            let iface = pnet_datalink::interfaces()
                .into_iter()
                .find(|i| i.name == ifname)
                .ok_or_else(|| anyhow!("no interface {ifname}"))?;
            match pnet_datalink::channel(&iface, pnet_datalink::Config::default())
                .with_context(|| format!("open AF_PACKET channel on {ifname}"))?
            {
                pnet_datalink::Channel::Ethernet(tx, _rx) => Ok(Self { tx }),
                _ => Err(anyhow!("unexpected channel type on {ifname}")),
            }
        })
    }

    pub fn send_burst(&mut self, spec: &FrameSpec, seqs: Range<u32>) -> Result<u32> {
        let mut sent = 0;
        for seq in seqs {
            let frame = build_frame(spec, seq);
            match self.tx.send_to(&frame, None) {
                Some(Ok(())) => sent += 1,
                Some(Err(e)) => return Err(e).context("send raw frame"),
                None => return Err(anyhow!("send raw frame: no buffer")),
            }
        }
        Ok(sent)
    }
}

/// Ethernet + IPv4 + UDP to `PROBE_PORT` with a probe payload and valid checksums.
pub fn build_frame(spec: &FrameSpec, seq: u32) -> Vec<u8> {
    let payload = payload(seq);
    let udp_len = 8 + payload.len();
    let ip_len = 20 + udp_len;
    let mut frame = vec![0u8; 14 + ip_len];
    {
        let mut eth = MutableEthernetPacket::new(&mut frame).expect("frame fits");
        eth.set_destination(spec.dst_mac.into());
        eth.set_source(spec.src_mac.into());
        eth.set_ethertype(EtherTypes::Ipv4);
    }
    {
        let mut ip = MutableIpv4Packet::new(&mut frame[14..]).expect("ip fits");
        ip.set_version(4);
        ip.set_header_length(5);
        ip.set_total_length(ip_len as u16);
        ip.set_ttl(64);
        ip.set_identification(seq as u16);
        ip.set_next_level_protocol(IpNextHeaderProtocols::Udp);
        ip.set_source(spec.src_ip);
        ip.set_destination(spec.dst_ip);
        {
            let mut u = MutableUdpPacket::new(ip.payload_mut()).expect("udp fits");
            u.set_source(PROBE_PORT);
            u.set_destination(PROBE_PORT);
            u.set_length(udp_len as u16);
            u.set_payload(&payload);
            let sum = udp::ipv4_checksum(&u.to_immutable(), &spec.src_ip, &spec.dst_ip);
            u.set_checksum(sum);
        }
        let sum = ipv4::checksum(&ip.to_immutable());
        ip.set_checksum(sum);
    }
    frame
}

/// Upper bound for [`await_links_operational`]: only paid when the kernel never gets
/// there; normally the wait is under a millisecond.
pub const LINK_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits, on the calling thread's namespace, until no device is *up with carrier but
/// not yet operational*.
///
/// Why: a veth whose carrier just came on transmits through the noop qdisc until the
/// kernel's linkwatch work activates its queues (and sets operstate UP, `IFF_RUNNING`);
/// until then every packet is dropped, `sendto` still succeeds and only the device's
/// tx_dropped moves. Linkwatch needs the RTNL lock, so while other runs create and
/// delete namespaces it comes late: with four concurrent runs on 2 cores, a control's
/// whole burst vanished this way (`QDISC_DROP` in `__dev_queue_xmit`) and its witness
/// never moved. The carrier query (`ETHTOOL_GLINK`) takes RTNL itself, so when it
/// follows an `IFF_RUNNING` reading, that linkwatch run has finished activating.
pub fn await_links_operational(timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket for link queries");
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    loop {
        let dev = std::fs::read_to_string("/proc/thread-self/net/dev")
            .context("read /proc/thread-self/net/dev")?;
        let pending: Vec<&str> = device_names(&dev)
            .filter(|name| link_pending(&sock, name))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(anyhow!(
                "links {pending:?} have carrier but were not made operational within {timeout:?} (the kernel's linkwatch never ran for them)"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Device names from `/proc/net/dev` (two header lines, then `name: counters`).
fn device_names(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim()))
}

/// Up and with carrier, but not yet `IFF_RUNNING`. A device that is down, has no
/// carrier (its peer is down) or is gone is not waited for.
fn link_pending(sock: &impl std::os::fd::AsRawFd, name: &str) -> bool {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_GLINK: u32 = 0x0000_000a;
    let Some(mut req) = ifreq(name) else {
        return false;
    };
    // SAFETY: SIOCGIFFLAGS reads ifr_name and writes ifr_flags of a valid ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } < 0 {
        return false;
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    let flags = i32::from(unsafe { req.ifr_ifru.ifru_flags });
    let mut link = [ETHTOOL_GLINK, 0u32];
    let Some(mut req) = ifreq(name) else {
        return false;
    };
    req.ifr_ifru.ifru_data = link.as_mut_ptr().cast();
    // SAFETY: ETHTOOL_GLINK writes one struct ethtool_value { cmd, data } at ifr_data,
    // which points at `link`, alive for the call.
    let carrier = if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req) } == 0 {
        link[1] != 0
    } else {
        false
    };
    pending_from(flags, carrier)
}

fn pending_from(flags: i32, carrier: bool) -> bool {
    flags & libc::IFF_UP != 0 && carrier && flags & libc::IFF_RUNNING == 0
}

fn ifreq(name: &str) -> Option<libc::ifreq> {
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return None;
    }
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Some(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_up_links_with_carrier_not_yet_running_are_waited_for() {
        let (up, running) = (libc::IFF_UP, libc::IFF_RUNNING);
        assert!(pending_from(up, true));
        assert!(!pending_from(up | running, true));
        assert!(
            !pending_from(up, false),
            "no carrier: peer down, never waited for"
        );
        assert!(!pending_from(0, true), "down: never waited for");
    }

    #[test]
    fn device_names_skip_the_headers() {
        let text = "Inter-|   Receive\n face |bytes\n    lo: 0 0\n  lxcab12a: 1 2\n";
        assert_eq!(device_names(text).collect::<Vec<_>>(), ["lo", "lxcab12a"]);
        assert!(ifreq("a-name-longer-than-15").is_none());
    }
    use pnet_packet::Packet;
    use pnet_packet::ipv4::Ipv4Packet;
    use pnet_packet::udp::UdpPacket;

    #[test]
    fn frames_carry_valid_checksums_and_payload() {
        let spec = FrameSpec {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 0x99],
            src_ip: Ipv4Addr::new(10, 42, 0, 11),
            dst_ip: Ipv4Addr::new(10, 42, 0, 12),
        };
        let frame = build_frame(&spec, 7);
        let ip = Ipv4Packet::new(&frame[14..]).unwrap();
        assert_eq!(ipv4::checksum(&ip), ip.get_checksum());
        let u = UdpPacket::new(ip.payload()).unwrap();
        assert_eq!(
            udp::ipv4_checksum(&u, &spec.src_ip, &spec.dst_ip),
            u.get_checksum()
        );
        assert_eq!(parse_payload(u.payload()), Some(7));
        assert_eq!(parse_payload(b"nope1234"), None);
    }
}
