//! Reading raw netlink replies: the message and attribute framing that the
//! hand-written nf_tables ([`crate::nft`]) and XFRM ([`crate::xfrm`]) clients
//! share (route netlink goes through `netlink-packet-route` instead).

// linux/netlink.h
pub(crate) const NLMSG_HDRLEN: usize = 16;
pub(crate) const NLA_HDRLEN: usize = 4;
pub(crate) const NLA_F_NESTED: u16 = 1 << 15;
/// An attribute's type without its `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER` flags.
pub(crate) const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));

/// One netlink message of a reply.
pub(crate) struct Reply<'a> {
    pub(crate) kind: u16,
    pub(crate) flags: u16,
    pub(crate) seq: u32,
    pub(crate) payload: &'a [u8],
}

/// The netlink messages of one datagram (stops at a malformed one).
pub(crate) fn replies(mut data: &[u8]) -> impl Iterator<Item = Reply<'_>> {
    std::iter::from_fn(move || {
        if data.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(data[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > data.len() {
            return None;
        }
        let reply = Reply {
            kind: u16::from_ne_bytes([data[4], data[5]]),
            flags: u16::from_ne_bytes([data[6], data[7]]),
            seq: u32::from_ne_bytes(data[8..12].try_into().ok()?),
            payload: &data[NLMSG_HDRLEN..len],
        };
        data = &data[align4(len).min(data.len())..];
        Some(reply)
    })
}

/// `(type, payload)` of each attribute in a run, flags masked off (stops at a
/// malformed one).
pub(crate) fn attrs(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < NLA_HDRLEN {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([data[0], data[1]]));
        let kind = u16::from_ne_bytes([data[2], data[3]]) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > data.len() {
            return None;
        }
        let payload = &data[NLA_HDRLEN..len];
        data = &data[align4(len).min(data.len())..];
        Some((kind, payload))
    })
}

/// Netlink's 4-byte alignment (`NLMSG_ALIGN`, `NLA_ALIGN`).
pub(crate) fn align4(len: usize) -> usize {
    (len + 3) & !3
}
