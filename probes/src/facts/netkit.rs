//! Can this kernel create a netkit device pair?
//!
//! netkit's rtnl ops (`drivers/net/netkit.c`, since 6.7) accept `RTM_NEWLINK` with
//! `IFLA_INFO_KIND "netkit"` and no `IFLA_INFO_DATA` at all: the mode defaults to
//! L3, both policies to forward, and the peer is created with an enumerated name
//! (`nk%d`) in the same namespace, just as veth does without peer info. Setting a
//! MAC address is refused in L3 mode, so none is sent. Without the driver,
//! rtnetlink answers `EOPNOTSUPP` with the extended ack "Unknown device type".
//!
//! The request runs on a netlink socket opened inside a throwaway namespace: the
//! pair dies with it.

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::io;

const NLMSG_ERROR: u16 = 2;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLM_F_CAPPED: u16 = 0x100;
const NLMSGERR_ATTR_MSG: u16 = 1;

/// The kernel's answer to one netlink request: errno 0 for success, and the
/// extended ack message when the kernel sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub errno: i32,
    pub message: Option<String>,
}

impl Ack {
    /// `EOPNOTSUPP (Unknown device type)`.
    pub fn describe(&self) -> String {
        let name = errno_name(self.errno);
        match &self.message {
            Some(m) => format!("{name} ({m})"),
            None => name,
        }
    }
}

fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::EINVAL => "EINVAL",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOMEM => "ENOMEM",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        _ => return format!("errno {errno} ({})", io::Error::from_raw_os_error(errno)),
    };
    name.to_string()
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Finds the `NLMSG_ERROR` reply to `seq` in a datagram and decodes it, including
/// the extended ack TLVs (`NLMSGERR_ATTR_MSG`).
pub fn parse_ack(buf: &[u8], seq: u32) -> Option<Ack> {
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32_at(buf, at)? as usize;
        if len < 16 || at + len > buf.len() {
            return None;
        }
        let kind = u16_at(buf, at + 4)?;
        let flags = u16_at(buf, at + 6)?;
        let msg_seq = u32_at(buf, at + 8)?;
        if kind == NLMSG_ERROR && msg_seq == seq {
            let payload = &buf[at + 16..at + len];
            let error = i32::from_ne_bytes(payload.get(0..4)?.try_into().ok()?);
            let mut message = None;
            if flags & NLM_F_ACK_TLVS != 0 {
                // After the error code comes the request: its header only when
                // the reply is capped, the whole request otherwise.
                let request_len = if flags & NLM_F_CAPPED != 0 {
                    16
                } else {
                    u32_at(payload, 4)? as usize
                };
                let mut tlv = 4 + ((request_len + 3) & !3);
                while tlv + 4 <= payload.len() {
                    let tlv_len = u16_at(payload, tlv)? as usize;
                    let tlv_type = u16_at(payload, tlv + 2)? & 0x3fff;
                    if tlv_len < 4 || tlv + tlv_len > payload.len() {
                        break;
                    }
                    if tlv_type == NLMSGERR_ATTR_MSG {
                        let text = &payload[tlv + 4..tlv + tlv_len];
                        let text = text.split(|b| *b == 0).next().unwrap_or_default();
                        message = Some(String::from_utf8_lossy(text).into_owned());
                    }
                    tlv += (tlv_len + 3) & !3;
                }
            }
            return Some(Ack {
                errno: -error,
                message,
            });
        }
        at += (len + 3) & !3;
    }
    None
}

/// The bytes of `RTM_NEWLINK` for a netkit device named `name`.
pub fn newlink_request(name: &str, seq: u32) -> Vec<u8> {
    let mut link = LinkMessage::default();
    link.attributes
        .push(LinkAttribute::IfName(name.to_string()));
    link.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Other("netkit".to_string()),
        )]));
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(header, RouteNetlinkMessage::NewLink(link).into());
    packet.finalize();
    let mut buf = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buf);
    buf
}

/// Asks the kernel for a netkit pair in the calling thread's network namespace.
/// `Ok(ack)` is the kernel's answer (errno 0: created); `Err` means the question
/// could not be asked (no netlink socket).
pub fn try_create(name: &str) -> io::Result<Ack> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    // Best effort: older kernels lack these options and still answer.
    let _ = socket.set_ext_ack(true);
    let _ = socket.set_cap_ack(true);
    let seq = 1;
    socket.send(&newlink_request(name, seq), 0)?;
    let mut buf = vec![0u8; 16 * 1024];
    for _ in 0..8 {
        let n = socket.recv(&mut &mut buf[..], 0)?;
        if let Some(ack) = parse_ack(&buf[..n], seq) {
            return Ok(ack);
        }
    }
    Err(io::Error::other(
        "no netlink acknowledgement for RTM_NEWLINK",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `NLMSG_ERROR` datagram as the kernel builds it with `NETLINK_CAP_ACK`
    /// and `NETLINK_EXT_ACK`: header, -errno, the request's header, a message TLV.
    fn error_reply(seq: u32, errno: i32, msg: Option<&str>) -> Vec<u8> {
        let mut payload = Vec::new();
        payload.extend_from_slice(&(-errno).to_ne_bytes());
        let mut request_header = [0u8; 16];
        request_header[0..4].copy_from_slice(&64u32.to_ne_bytes());
        request_header[4..6].copy_from_slice(&16u16.to_ne_bytes());
        request_header[8..12].copy_from_slice(&seq.to_ne_bytes());
        payload.extend_from_slice(&request_header);
        let mut flags = NLM_F_CAPPED;
        if let Some(msg) = msg {
            flags |= NLM_F_ACK_TLVS;
            let mut text = msg.as_bytes().to_vec();
            text.push(0);
            let tlv_len = 4 + text.len();
            payload.extend_from_slice(&(tlv_len as u16).to_ne_bytes());
            payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
            payload.extend_from_slice(&text);
            payload.resize((payload.len() + 3) & !3, 0);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&payload);
        out
    }

    #[test]
    fn parses_errors_with_and_without_extended_ack() {
        let nack = parse_ack(
            &error_reply(1, libc::EOPNOTSUPP, Some("Unknown device type")),
            1,
        )
        .unwrap();
        assert_eq!(nack.errno, libc::EOPNOTSUPP);
        assert_eq!(nack.describe(), "EOPNOTSUPP (Unknown device type)");
        let ack = parse_ack(&error_reply(7, 0, None), 7).unwrap();
        assert_eq!(
            ack,
            Ack {
                errno: 0,
                message: None
            }
        );
        assert_eq!(parse_ack(&error_reply(7, 0, None), 8), None);
        assert_eq!(parse_ack(&[1, 2, 3], 1), None);
    }

    #[test]
    fn request_names_the_netkit_kind() {
        let req = newlink_request("nkfacts0", 3);
        assert_eq!(u32_at(&req, 0).unwrap() as usize, req.len());
        assert_eq!(u16_at(&req, 4), Some(16)); // RTM_NEWLINK
        assert!(req.windows(7).any(|w| w == b"netkit\0"));
        assert!(req.windows(8).any(|w| w == b"nkfacts0"));
    }
}
