//! A minimal synchronous XFRM client (`NETLINK_XFRM`): ESP tunnel-mode security
//! associations keyed with `rfc4106(gcm(aes))`, policies with one ESP tunnel
//! template, an SA's packet count, and the namespace's `/proc/net/xfrm_stat`.
//!
//! The probe runs as a VM guest's init and in FROM-scratch images, where there is
//! no `ip xfrm`, so it speaks the protocol of include/uapi/linux/xfrm.h itself.
//! Its structs are fixed-size C structs passed whole: they are written out below
//! as `repr(C)` with every padding byte an explicit field, and a test holds each
//! to the size and offsets the kernel's header gives (the same on x86_64 and
//! aarch64). Addresses are IPv4 only: that is all the scrub check needs.
//!
//! Like [`Rtnl`](crate::netlink::Rtnl), an [`Xfrm`] acts on the network namespace
//! it was created in: create it inside [`NetNs::run`](crate::netns::NetNs::run).
//! States and policies live in that namespace and go with it.

use crate::netns::NetNs;
use crate::nlmsg::{NLA_HDRLEN, NLMSG_HDRLEN, align4, attrs, replies};
use anyhow::{Context, Result, bail};
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_XFRM};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

// include/uapi/linux/xfrm.h
const XFRM_MSG_NEWSA: u16 = 0x10;
const XFRM_MSG_GETSA: u16 = 0x12;
const XFRM_MSG_NEWPOLICY: u16 = 0x13;
const XFRMA_TMPL: u16 = 5;
const XFRMA_ALG_AEAD: u16 = 18;
/// No limit, for a lifetime's byte and packet counts.
const XFRM_INF: u64 = u64::MAX;
const XFRM_MODE_TUNNEL: u8 = 1;
const XFRM_POLICY_ALLOW: u8 = 0;
const IPPROTO_ESP: u8 = 50;
const AF_INET: u16 = libc::AF_INET as u16;

// linux/netlink.h
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;

/// The AEAD Cilium's IPsec uses by default, with a 128-bit ICV.
pub const AEAD_NAME: &str = "rfc4106(gcm(aes))";
const AEAD_ICV_BITS: u32 = 128;
/// An AES-128 key and the 4-byte salt rfc4106 takes after it.
pub const AEAD_KEY_LEN: usize = 20;

/// `xfrm_address_t`: a union of an IPv4 and an IPv6 address, 16 bytes; an IPv4
/// address is its first 4 bytes in network order.
type Addr = [u8; 16];

fn addr(ip: Ipv4Addr) -> Addr {
    let mut a = [0; 16];
    a[..4].copy_from_slice(&ip.octets());
    a
}

/// `struct xfrm_selector` (56 bytes): which packets a policy or state applies to.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Selector {
    daddr: Addr,
    saddr: Addr,
    /// Ports and masks, network order; zero: any.
    dport: u16,
    dport_mask: u16,
    sport: u16,
    sport_mask: u16,
    /// `AF_UNSPEC` (0) matches either family.
    family: u16,
    prefixlen_d: u8,
    prefixlen_s: u8,
    proto: u8,
    _pad: [u8; 3],
    ifindex: i32,
    user: u32,
}

/// `struct xfrm_id` (24 bytes): the state a packet is looked up by on input.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Id {
    daddr: Addr,
    /// Network order.
    spi: u32,
    proto: u8,
    _pad: [u8; 3],
}

/// `struct xfrm_lifetime_cfg` (64 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct LifetimeCfg {
    soft_byte_limit: u64,
    hard_byte_limit: u64,
    soft_packet_limit: u64,
    hard_packet_limit: u64,
    soft_add_expires_seconds: u64,
    hard_add_expires_seconds: u64,
    soft_use_expires_seconds: u64,
    hard_use_expires_seconds: u64,
}

impl LifetimeCfg {
    /// No byte or packet limit, no expiry (what `ip xfrm` sends by default).
    fn infinite() -> Self {
        Self {
            soft_byte_limit: XFRM_INF,
            hard_byte_limit: XFRM_INF,
            soft_packet_limit: XFRM_INF,
            hard_packet_limit: XFRM_INF,
            ..Self::default()
        }
    }
}

/// `struct xfrm_lifetime_cur` (32 bytes): what a state has carried so far.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct LifetimeCur {
    bytes: u64,
    packets: u64,
    add_time: u64,
    use_time: u64,
}

/// `struct xfrm_stats` (12 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Stats {
    replay_window: u32,
    replay: u32,
    integrity_failed: u32,
}

/// `struct xfrm_usersa_info` (224 bytes): the body of `XFRM_MSG_NEWSA`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct UsersaInfo {
    sel: Selector,
    id: Id,
    saddr: Addr,
    lft: LifetimeCfg,
    curlft: LifetimeCur,
    stats: Stats,
    seq: u32,
    reqid: u32,
    family: u16,
    mode: u8,
    replay_window: u8,
    flags: u8,
    _pad: [u8; 7],
}

/// `struct xfrm_usersa_id` (24 bytes): the body of `XFRM_MSG_GETSA`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct UsersaId {
    daddr: Addr,
    spi: u32,
    family: u16,
    proto: u8,
    _pad: u8,
}

/// `struct xfrm_userpolicy_info` (168 bytes): the body of `XFRM_MSG_NEWPOLICY`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct UserpolicyInfo {
    sel: Selector,
    lft: LifetimeCfg,
    curlft: LifetimeCur,
    priority: u32,
    index: u32,
    dir: u8,
    action: u8,
    flags: u8,
    share: u8,
    _pad: [u8; 4],
}

/// `struct xfrm_user_tmpl` (64 bytes): one transform a policy requires
/// (`XFRMA_TMPL`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct UserTmpl {
    id: Id,
    family: u16,
    _pad0: [u8; 2],
    saddr: Addr,
    reqid: u32,
    mode: u8,
    share: u8,
    /// Zero: the transform is required (`level required`), not `use`.
    optional: u8,
    _pad1: u8,
    aalgos: u32,
    ealgos: u32,
    calgos: u32,
}

/// The fixed part of `struct xfrm_algo_aead` (72 bytes), the key follows it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AlgoAead {
    alg_name: [u8; 64],
    /// In bits.
    alg_key_len: u32,
    alg_icv_len: u32,
}

/// Plain old data sent to the kernel as it lies in memory.
///
/// # Safety
/// `repr(C)`, made of integers and byte arrays only, with every padding byte an
/// explicit field: no uninitialized byte anywhere.
unsafe trait Wire: Copy {
    fn bytes(&self) -> &[u8] {
        // SAFETY: by the trait's contract every byte of `Self` is initialized.
        unsafe { std::slice::from_raw_parts((self as *const Self).cast::<u8>(), size_of::<Self>()) }
    }
}

// SAFETY: all repr(C), integers and byte arrays, padding written out (the layout
// test checks each size against the kernel's).
unsafe impl Wire for UsersaInfo {}
unsafe impl Wire for UsersaId {}
unsafe impl Wire for UserpolicyInfo {}
unsafe impl Wire for UserTmpl {}
unsafe impl Wire for AlgoAead {}

/// An ESP security association in tunnel mode between two IPv4 addresses,
/// `rfc4106(gcm(aes))` with a 128-bit ICV: what
/// `ip xfrm state add src SRC dst DST proto esp spi SPI reqid REQID mode tunnel
/// aead 'rfc4106(gcm(aes))' 0xKEY 128` makes. Its selector is empty (any inner
/// packet), its lifetime infinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspSa {
    /// The tunnel's outer source and destination.
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Host order.
    pub spi: u32,
    pub reqid: u32,
    pub key: [u8; AEAD_KEY_LEN],
}

/// The direction a policy applies to (`XFRM_POLICY_IN`, `XFRM_POLICY_OUT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    In = 0,
    Out = 1,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
        }
    }
}

/// An `allow` policy for IPv4 packets from `src/src_prefix` to `dst/dst_prefix`
/// (any protocol) that requires one ESP tunnel transform: `ip xfrm policy add
/// src .. dst .. dir DIR tmpl src TSRC dst TDST proto esp [spi SPI] reqid REQID
/// mode tunnel level required`. Outbound it encrypts through the matching SA,
/// inbound it drops what was not decrypted by one (`XfrmInTmplMismatch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspPolicy {
    pub dir: Dir,
    pub src: Ipv4Addr,
    pub src_prefix: u8,
    pub dst: Ipv4Addr,
    pub dst_prefix: u8,
    /// The template's tunnel endpoints; unspecified matches any.
    pub tmpl_src: Ipv4Addr,
    pub tmpl_dst: Ipv4Addr,
    /// Host order; 0 matches any SPI.
    pub tmpl_spi: u32,
    /// 0 matches any reqid.
    pub tmpl_reqid: u32,
}

impl EspSa {
    fn info(&self) -> UsersaInfo {
        UsersaInfo {
            id: Id {
                daddr: addr(self.dst),
                spi: self.spi.to_be(),
                proto: IPPROTO_ESP,
                ..Id::default()
            },
            saddr: addr(self.src),
            lft: LifetimeCfg::infinite(),
            reqid: self.reqid,
            family: AF_INET,
            mode: XFRM_MODE_TUNNEL,
            ..UsersaInfo::default()
        }
    }

    /// `XFRMA_ALG_AEAD`'s payload: the algorithm, then the key.
    fn aead(&self) -> Vec<u8> {
        let mut alg_name = [0; 64];
        alg_name[..AEAD_NAME.len()].copy_from_slice(AEAD_NAME.as_bytes());
        let algo = AlgoAead {
            alg_name,
            alg_key_len: (AEAD_KEY_LEN * 8) as u32,
            alg_icv_len: AEAD_ICV_BITS,
        };
        let mut out = algo.bytes().to_vec();
        out.extend_from_slice(&self.key);
        out
    }

    /// `proto esp spi 0x.. src -> dst reqid N mode tunnel ...` (no key).
    pub fn describe(&self) -> String {
        format!(
            "proto esp spi {:#x} {} -> {} reqid {} mode tunnel aead {AEAD_NAME} {AEAD_ICV_BITS}",
            self.spi, self.src, self.dst, self.reqid
        )
    }
}

impl EspPolicy {
    fn info(&self) -> UserpolicyInfo {
        UserpolicyInfo {
            sel: Selector {
                daddr: addr(self.dst),
                saddr: addr(self.src),
                family: AF_INET,
                prefixlen_d: self.dst_prefix,
                prefixlen_s: self.src_prefix,
                ..Selector::default()
            },
            lft: LifetimeCfg::infinite(),
            dir: self.dir as u8,
            action: XFRM_POLICY_ALLOW,
            ..UserpolicyInfo::default()
        }
    }

    fn tmpl(&self) -> UserTmpl {
        UserTmpl {
            id: Id {
                daddr: addr(self.tmpl_dst),
                spi: self.tmpl_spi.to_be(),
                proto: IPPROTO_ESP,
                ..Id::default()
            },
            family: AF_INET,
            saddr: addr(self.tmpl_src),
            reqid: self.tmpl_reqid,
            mode: XFRM_MODE_TUNNEL,
            // Any algorithm.
            aalgos: u32::MAX,
            ealgos: u32::MAX,
            calgos: u32::MAX,
            ..UserTmpl::default()
        }
    }

    /// As `ip xfrm policy` shows it.
    pub fn describe(&self) -> String {
        format!(
            "src {}/{} dst {}/{} dir {} tmpl {} -> {} proto esp reqid {} mode tunnel level required",
            self.src,
            self.src_prefix,
            self.dst,
            self.dst_prefix,
            self.dir.name(),
            self.tmpl_src,
            self.tmpl_dst,
            self.tmpl_reqid
        )
    }
}

/// The kernel refused a request: which one, the errno (positive) and the
/// extended ack text when it sent one ("Requested type not found").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XfrmError {
    pub what: String,
    pub errno: i32,
    pub message: Option<String>,
}

impl std::fmt::Display for XfrmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let errno = std::io::Error::from_raw_os_error(self.errno);
        write!(f, "xfrm: {}: {errno}", self.what)?;
        if let Some(m) = &self.message {
            write!(f, " ({m})")?;
        }
        Ok(())
    }
}

impl std::error::Error for XfrmError {}

/// A netlink message: header, the fixed body, then attributes (each padded to 4).
fn message(kind: u16, flags: u16, seq: u32, body: &[u8], attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut out = vec![0; NLMSG_HDRLEN];
    out.extend_from_slice(body);
    out.resize(align4(out.len()), 0);
    for (kind, payload) in attrs {
        let len = (NLA_HDRLEN + payload.len()) as u16;
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(align4(out.len()), 0);
    }
    let len = out.len() as u32;
    out[0..4].copy_from_slice(&len.to_ne_bytes());
    out[4..6].copy_from_slice(&kind.to_ne_bytes());
    out[6..8].copy_from_slice(&flags.to_ne_bytes());
    out[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel.
    out
}

const CREATE: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;

fn newsa_request(sa: &EspSa, seq: u32) -> Vec<u8> {
    let aead = sa.aead();
    message(
        XFRM_MSG_NEWSA,
        CREATE,
        seq,
        sa.info().bytes(),
        &[(XFRMA_ALG_AEAD, &aead)],
    )
}

fn newpolicy_request(policy: &EspPolicy, seq: u32) -> Vec<u8> {
    let tmpl = policy.tmpl();
    message(
        XFRM_MSG_NEWPOLICY,
        CREATE,
        seq,
        policy.info().bytes(),
        &[(XFRMA_TMPL, tmpl.bytes())],
    )
}

fn getsa_request(daddr: Ipv4Addr, spi: u32, seq: u32) -> Vec<u8> {
    let id = UsersaId {
        daddr: addr(daddr),
        spi: spi.to_be(),
        family: AF_INET,
        proto: IPPROTO_ESP,
        _pad: 0,
    };
    message(XFRM_MSG_GETSA, NLM_F_REQUEST, seq, id.bytes(), &[])
}

/// An `NLMSG_ERROR` payload: the errno (positive, 0 for an ack) and the extended
/// ack's message, which follows the echoed request (only its header when capped).
fn error_reply(flags: u16, payload: &[u8]) -> Option<(i32, Option<String>)> {
    let errno = -i32::from_ne_bytes(payload.get(..4)?.try_into().ok()?);
    if flags & NLM_F_ACK_TLVS == 0 {
        return Some((errno, None));
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        u32::from_ne_bytes(payload.get(4..8)?.try_into().ok()?) as usize
    };
    let extack = payload.get(4 + align4(echoed)..).unwrap_or_default();
    if let Some((_, text)) = attrs(extack).find(|(kind, _)| *kind == NLMSGERR_ATTR_MSG) {
        let text = text.split(|&b| b == 0).next().unwrap_or_default();
        return Some((errno, Some(String::from_utf8_lossy(text).into_owned())));
    }
    Some((errno, None))
}

/// `curlft.packets` of an `XFRM_MSG_NEWSA` reply's `xfrm_usersa_info`.
fn sa_packets(payload: &[u8]) -> Option<u64> {
    let at = std::mem::offset_of!(UsersaInfo, curlft) + std::mem::offset_of!(LifetimeCur, packets);
    Some(u64::from_ne_bytes(
        payload.get(at..at + 8)?.try_into().ok()?,
    ))
}

/// A `NETLINK_XFRM` socket in the network namespace it was created in.
pub struct Xfrm {
    socket: Socket,
    seq: u32,
}

impl Xfrm {
    /// Opens a `NETLINK_XFRM` socket in the calling thread's network namespace. A
    /// kernel without `CONFIG_XFRM_USER` (or its module not loaded) refuses it with
    /// `EPROTONOSUPPORT`, kept as the error's source for [`std::io::Error`] callers.
    pub fn new() -> Result<Self> {
        let mut socket = Socket::new(NETLINK_XFRM)
            .context("xfrm: open NETLINK_XFRM socket (no xfrm_user in this kernel?)")?;
        socket.bind_auto().context("xfrm: bind netlink socket")?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .context("xfrm: connect netlink socket")?;
        // The kernel's reason in words (4.12+), the refused request's header only.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(Self { socket, seq: 0 })
    }

    /// Adds `sa` (an existing state with its id is an error, `EEXIST`).
    pub fn add_sa(&mut self, sa: &EspSa) -> Result<()> {
        let seq = self.next_seq();
        self.ack(
            &newsa_request(sa, seq),
            seq,
            format!("add state {}", sa.describe()),
        )
    }

    /// Adds `policy`.
    pub fn add_policy(&mut self, policy: &EspPolicy) -> Result<()> {
        let seq = self.next_seq();
        self.ack(
            &newpolicy_request(policy, seq),
            seq,
            format!("add policy {}", policy.describe()),
        )
    }

    /// The packets the ESP state `(daddr, spi)` has carried so far (its
    /// `curlft.packets`: encrypted on output, decrypted on input).
    pub fn sa_packets(&mut self, daddr: Ipv4Addr, spi: u32) -> Result<u64> {
        let seq = self.next_seq();
        let what = format!("get state proto esp spi {spi:#x} dst {daddr}");
        self.socket
            .send(&getsa_request(daddr, spi, seq), 0)
            .with_context(|| format!("xfrm: {what}: netlink send"))?;
        for _ in 0..8 {
            let (data, _) = self
                .socket
                .recv_from_full()
                .with_context(|| format!("xfrm: {what}: netlink recv"))?;
            for reply in replies(&data).filter(|r| r.seq == seq) {
                match reply.kind {
                    XFRM_MSG_NEWSA => {
                        return sa_packets(reply.payload)
                            .with_context(|| format!("xfrm: {what}: short reply"));
                    }
                    NLMSG_ERROR => {
                        let (errno, message) = error_reply(reply.flags, reply.payload)
                            .with_context(|| format!("xfrm: {what}: short error reply"))?;
                        return Err(XfrmError {
                            what,
                            errno,
                            message,
                        }
                        .into());
                    }
                    _ => {}
                }
            }
        }
        bail!("xfrm: {what}: no reply from the kernel")
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends a request that asked for an ack and reads it: an error errno is an
    /// [`XfrmError`], so a caller can tell a missing feature by `downcast_ref`.
    fn ack(&mut self, request: &[u8], seq: u32, what: String) -> Result<()> {
        self.socket
            .send(request, 0)
            .with_context(|| format!("xfrm: {what}: netlink send"))?;
        for _ in 0..8 {
            let (data, _) = self
                .socket
                .recv_from_full()
                .with_context(|| format!("xfrm: {what}: netlink recv"))?;
            let Some(reply) = replies(&data).find(|r| r.seq == seq && r.kind == NLMSG_ERROR) else {
                continue;
            };
            let (errno, message) = error_reply(reply.flags, reply.payload)
                .with_context(|| format!("xfrm: {what}: short error reply"))?;
            if errno == 0 {
                return Ok(());
            }
            return Err(XfrmError {
                what,
                errno,
                message,
            }
            .into());
        }
        bail!("xfrm: {what}: no acknowledgement from the kernel")
    }
}

/// A namespace's XFRM MIB (`/proc/net/xfrm_stat`, `CONFIG_XFRM_STATISTICS`):
/// `XfrmInNoPols`, `XfrmInTmplMismatch`, ... by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XfrmStats(pub BTreeMap<String, u64>);

impl XfrmStats {
    pub const PATH: &'static str = "/proc/thread-self/net/xfrm_stat";

    /// Reads `ns`'s counters.
    pub fn read(ns: &NetNs) -> Result<Self> {
        let text = ns.read_to_string(Self::PATH).with_context(|| {
            format!(
                "XFRM statistics of ns {} (a kernel without CONFIG_XFRM_STATISTICS has none)",
                ns.name()
            )
        })?;
        Ok(Self::parse(&text))
    }

    fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter_map(|line| {
                    let mut words = line.split_whitespace();
                    let name = words.next()?;
                    let value = words.next()?.parse().ok()?;
                    Some((name.to_string(), value))
                })
                .collect(),
        )
    }

    /// A counter; 0 when this kernel does not have it.
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// The counters that moved since `before`.
    pub fn delta(&self, before: &Self) -> Self {
        Self(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.saturating_sub(before.get(k))))
                .filter(|(_, v)| *v > 0)
                .collect(),
        )
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// Sizes and offsets as include/uapi/linux/xfrm.h lays them out on x86_64 and
    /// aarch64 (checked against the header with a C compiler).
    #[test]
    fn structs_match_the_kernel_layout() {
        assert_eq!(size_of::<Selector>(), 56);
        assert_eq!(offset_of!(Selector, dport), 32);
        assert_eq!(offset_of!(Selector, family), 40);
        assert_eq!(offset_of!(Selector, prefixlen_d), 42);
        assert_eq!(offset_of!(Selector, proto), 44);
        assert_eq!(offset_of!(Selector, ifindex), 48);
        assert_eq!(offset_of!(Selector, user), 52);
        assert_eq!(size_of::<Id>(), 24);
        assert_eq!(offset_of!(Id, spi), 16);
        assert_eq!(offset_of!(Id, proto), 20);
        assert_eq!(size_of::<LifetimeCfg>(), 64);
        assert_eq!(size_of::<LifetimeCur>(), 32);
        assert_eq!(size_of::<Stats>(), 12);

        assert_eq!(size_of::<UsersaInfo>(), 224);
        assert_eq!(offset_of!(UsersaInfo, id), 56);
        assert_eq!(offset_of!(UsersaInfo, saddr), 80);
        assert_eq!(offset_of!(UsersaInfo, lft), 96);
        assert_eq!(offset_of!(UsersaInfo, curlft), 160);
        assert_eq!(offset_of!(UsersaInfo, stats), 192);
        assert_eq!(offset_of!(UsersaInfo, seq), 204);
        assert_eq!(offset_of!(UsersaInfo, reqid), 208);
        assert_eq!(offset_of!(UsersaInfo, family), 212);
        assert_eq!(offset_of!(UsersaInfo, mode), 214);
        assert_eq!(offset_of!(UsersaInfo, replay_window), 215);
        assert_eq!(offset_of!(UsersaInfo, flags), 216);

        assert_eq!(size_of::<UsersaId>(), 24);
        assert_eq!(offset_of!(UsersaId, spi), 16);
        assert_eq!(offset_of!(UsersaId, family), 20);
        assert_eq!(offset_of!(UsersaId, proto), 22);

        assert_eq!(size_of::<UserpolicyInfo>(), 168);
        assert_eq!(offset_of!(UserpolicyInfo, lft), 56);
        assert_eq!(offset_of!(UserpolicyInfo, curlft), 120);
        assert_eq!(offset_of!(UserpolicyInfo, priority), 152);
        assert_eq!(offset_of!(UserpolicyInfo, index), 156);
        assert_eq!(offset_of!(UserpolicyInfo, dir), 160);
        assert_eq!(offset_of!(UserpolicyInfo, action), 161);
        assert_eq!(offset_of!(UserpolicyInfo, flags), 162);
        assert_eq!(offset_of!(UserpolicyInfo, share), 163);

        assert_eq!(size_of::<UserTmpl>(), 64);
        assert_eq!(offset_of!(UserTmpl, family), 24);
        assert_eq!(offset_of!(UserTmpl, saddr), 28);
        assert_eq!(offset_of!(UserTmpl, reqid), 44);
        assert_eq!(offset_of!(UserTmpl, mode), 48);
        assert_eq!(offset_of!(UserTmpl, share), 49);
        assert_eq!(offset_of!(UserTmpl, optional), 50);
        assert_eq!(offset_of!(UserTmpl, aalgos), 52);
        assert_eq!(offset_of!(UserTmpl, ealgos), 56);
        assert_eq!(offset_of!(UserTmpl, calgos), 60);

        assert_eq!(size_of::<AlgoAead>(), 72);
        assert_eq!(offset_of!(AlgoAead, alg_key_len), 64);
        assert_eq!(offset_of!(AlgoAead, alg_icv_len), 68);
    }

    fn sa() -> EspSa {
        EspSa {
            src: Ipv4Addr::new(10, 44, 0, 2),
            dst: Ipv4Addr::new(10, 44, 0, 1),
            spi: 0x5c4b_0001,
            reqid: 1,
            key: *b"0123456789abcdefSALT",
        }
    }

    fn header(msg: &[u8]) -> (u32, u16, u16, u32) {
        (
            u32::from_ne_bytes(msg[0..4].try_into().unwrap()),
            u16::from_ne_bytes([msg[4], msg[5]]),
            u16::from_ne_bytes([msg[6], msg[7]]),
            u32::from_ne_bytes(msg[8..12].try_into().unwrap()),
        )
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn newsa_carries_the_state_then_the_aead() {
        let msg = newsa_request(&sa(), 7);
        let (len, kind, flags, seq) = header(&msg);
        // Header, the 224-byte state, XFRMA_ALG_AEAD: 4 + 72 + 20.
        assert_eq!(len as usize, msg.len());
        assert_eq!(msg.len(), 16 + 224 + 96);
        assert_eq!((kind, seq), (XFRM_MSG_NEWSA, 7));
        assert_eq!(flags, 0x0001 | 0x0004 | 0x0400 | 0x0200);
        let info = &msg[16..16 + 224];
        assert!(info[..56].iter().all(|&b| b == 0), "empty selector");
        assert_eq!(&info[56..60], &[10, 44, 0, 1], "id.daddr");
        assert_eq!(
            &info[72..76],
            &[0x5c, 0x4b, 0, 1],
            "id.spi in network order"
        );
        assert_eq!(info[76], 50, "id.proto esp");
        assert_eq!(&info[80..84], &[10, 44, 0, 2], "saddr");
        for limit in 0..4 {
            assert_eq!(u64_at(info, 96 + 8 * limit), u64::MAX, "lft limit {limit}");
        }
        for expiry in 4..8 {
            assert_eq!(u64_at(info, 96 + 8 * expiry), 0, "lft expiry {expiry}");
        }
        assert_eq!(u32_at(info, 208), 1, "reqid");
        assert_eq!(u16::from_ne_bytes([info[212], info[213]]), 2, "AF_INET");
        assert_eq!(info[214], 1, "mode tunnel");
        assert!(info[215..].iter().all(|&b| b == 0));

        let attr = &msg[16 + 224..];
        assert_eq!(u16::from_ne_bytes([attr[0], attr[1]]), 96);
        assert_eq!(u16::from_ne_bytes([attr[2], attr[3]]), XFRMA_ALG_AEAD);
        let aead = &attr[4..];
        assert_eq!(&aead[..18], b"rfc4106(gcm(aes))\0");
        assert!(aead[18..64].iter().all(|&b| b == 0));
        assert_eq!(u32_at(aead, 64), 160, "key bits");
        assert_eq!(u32_at(aead, 68), 128, "ICV bits");
        assert_eq!(&aead[72..], b"0123456789abcdefSALT");
    }

    #[test]
    fn newpolicy_carries_the_selector_then_one_template() {
        let policy = EspPolicy {
            dir: Dir::In,
            src: Ipv4Addr::UNSPECIFIED,
            src_prefix: 0,
            dst: Ipv4Addr::new(10, 44, 1, 2),
            dst_prefix: 32,
            tmpl_src: Ipv4Addr::new(10, 44, 0, 2),
            tmpl_dst: Ipv4Addr::new(10, 44, 0, 1),
            tmpl_spi: 0,
            tmpl_reqid: 2,
        };
        let msg = newpolicy_request(&policy, 3);
        let (len, kind, _, seq) = header(&msg);
        assert_eq!(len as usize, msg.len());
        assert_eq!(msg.len(), 16 + 168 + 4 + 64);
        assert_eq!((kind, seq), (XFRM_MSG_NEWPOLICY, 3));
        let info = &msg[16..16 + 168];
        assert_eq!(&info[..4], &[10, 44, 1, 2], "sel.daddr");
        assert!(info[16..32].iter().all(|&b| b == 0), "sel.saddr any");
        assert_eq!(u16::from_ne_bytes([info[40], info[41]]), 2, "sel.family");
        assert_eq!(
            (info[42], info[43], info[44]),
            (32, 0, 0),
            "prefixes, proto"
        );
        assert_eq!(u64_at(info, 56), u64::MAX);
        assert_eq!((info[160], info[161]), (0, 0), "dir in, action allow");
        let attr = &msg[16 + 168..];
        assert_eq!(u16::from_ne_bytes([attr[0], attr[1]]), 68);
        assert_eq!(u16::from_ne_bytes([attr[2], attr[3]]), XFRMA_TMPL);
        let t = &attr[4..];
        assert_eq!(&t[..4], &[10, 44, 0, 1], "tmpl daddr");
        assert_eq!(u32_at(t, 16), 0, "any spi");
        assert_eq!(t[20], 50, "esp");
        assert_eq!(u16::from_ne_bytes([t[24], t[25]]), 2);
        assert_eq!(&t[28..32], &[10, 44, 0, 2], "tmpl saddr");
        assert_eq!(u32_at(t, 44), 2, "reqid");
        assert_eq!(
            (t[48], t[49], t[50]),
            (1, 0, 0),
            "tunnel, share any, required"
        );
        for at in [52, 56, 60] {
            assert_eq!(u32_at(t, at), u32::MAX);
        }
    }

    #[test]
    fn getsa_asks_by_destination_spi_and_protocol() {
        let msg = getsa_request(Ipv4Addr::new(10, 44, 0, 1), 0x5c4b_0001, 9);
        let (len, kind, flags, _) = header(&msg);
        assert_eq!((len, kind, flags), (16 + 24, XFRM_MSG_GETSA, 1));
        let id = &msg[16..];
        assert_eq!(&id[..4], &[10, 44, 0, 1]);
        assert_eq!(&id[16..20], &[0x5c, 0x4b, 0, 1]);
        assert_eq!((u16::from_ne_bytes([id[20], id[21]]), id[22]), (2, 50));

        // A reply's state: curlft.packets at byte 168.
        let mut info = sa().info();
        info.curlft.packets = 5;
        assert_eq!(sa_packets(info.bytes()), Some(5));
        assert_eq!(sa_packets(&info.bytes()[..170]), None);
    }

    #[test]
    fn errors_decode_with_their_extended_ack() {
        // errno, the echoed request header (capped), then NLMSGERR_ATTR_MSG.
        let mut payload = (-libc::EPROTONOSUPPORT).to_ne_bytes().to_vec();
        payload.extend_from_slice(&[0; 16]);
        let text = b"Requested type not found\0";
        payload.extend_from_slice(&((4 + text.len()) as u16).to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(text);
        let reply = message(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, 4, &payload, &[]);
        let r = replies(&reply).next().unwrap();
        assert_eq!((r.kind, r.seq), (NLMSG_ERROR, 4));
        assert_eq!(
            error_reply(r.flags, r.payload),
            Some((
                libc::EPROTONOSUPPORT,
                Some("Requested type not found".into())
            ))
        );
        // A plain ack.
        assert_eq!(error_reply(0, &0i32.to_ne_bytes()), Some((0, None)));
        let e = XfrmError {
            what: "add state x".into(),
            errno: libc::EPROTONOSUPPORT,
            message: Some("Requested type not found".into()),
        };
        assert_eq!(
            e.to_string(),
            "xfrm: add state x: Protocol not supported (os error 93) (Requested type not found)"
        );
    }

    /// The running kernel accepts the requests as well formed (root only, in a
    /// namespace of its own): the policy is added; the state is added, or refused
    /// for want of ESP or its crypto, never as malformed (`EINVAL`).
    #[test]
    fn the_running_kernel_accepts_the_requests() {
        let Ok(ns) = NetNs::new("xfrm-test") else {
            eprintln!("skipped: cannot create a network namespace (not root?)");
            return;
        };
        let outcome = ns.run(|| {
            let mut x = match Xfrm::new() {
                Ok(x) => x,
                Err(e) => return Ok(format!("skipped: {e:#}")),
            };
            let policy = EspPolicy {
                dir: Dir::Out,
                src: Ipv4Addr::UNSPECIFIED,
                src_prefix: 0,
                dst: Ipv4Addr::new(10, 44, 1, 2),
                dst_prefix: 32,
                tmpl_src: sa().src,
                tmpl_dst: sa().dst,
                tmpl_spi: sa().spi,
                tmpl_reqid: 1,
            };
            x.add_policy(&policy)?;
            let refused = match x.add_sa(&sa()) {
                Ok(()) => {
                    assert_eq!(x.sa_packets(sa().dst, sa().spi)?, 0);
                    return Ok("state added".into());
                }
                Err(e) => e,
            };
            let errno = refused.downcast_ref::<XfrmError>().map(|e| e.errno);
            assert!(errno.is_some_and(|e| e != libc::EINVAL), "{refused:#}");
            let missing = x.sa_packets(sa().dst, sa().spi).unwrap_err();
            assert_eq!(
                missing.downcast_ref::<XfrmError>().map(|e| e.errno),
                Some(libc::ESRCH),
                "{missing:#}"
            );
            Ok(format!("state refused: {refused:#}"))
        });
        eprintln!("{}", outcome.unwrap());
    }

    #[test]
    fn stats_parse_and_subtract() {
        let before = XfrmStats::parse("XfrmInError             \t0\nXfrmInNoPols\t3\n");
        let after = XfrmStats::parse("XfrmInError 0\nXfrmInNoPols 8\nXfrmInTmplMismatch 2\nbad\n");
        assert_eq!(after.get("XfrmInNoPols"), 8);
        assert_eq!(after.get("XfrmOutNoStates"), 0);
        let d = after.delta(&before);
        assert_eq!(
            d.0,
            BTreeMap::from([
                ("XfrmInNoPols".to_string(), 5),
                ("XfrmInTmplMismatch".to_string(), 2)
            ])
        );
    }
}
