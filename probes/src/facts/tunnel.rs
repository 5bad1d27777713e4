//! Can this kernel create the collect-metadata tunnel devices Cilium's
//! `routingMode: tunnel` uses (`vxlan external`, `geneve external`)?
//!
//! The same request the tunnel checks' topology sends
//! ([`crate::netlink::tunnel_link_message`]), on a netlink socket opened inside the
//! facts' throwaway namespace (the device dies with it), answered as
//! [`super::netkit`] reads answers: `EOPNOTSUPP` ("Unknown device type") means the
//! kernel has no such driver (CONFIG_VXLAN / CONFIG_GENEVE off, or the module not
//! loadable here).

use super::netkit::{Ack, parse_ack};
use crate::netlink::{TunnelKind, tunnel_link_message};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::io;

/// Asks the kernel for a `kind` device named `name` in the calling thread's
/// network namespace. `Ok(ack)` is the kernel's answer (errno 0: created).
pub fn try_create(name: &str, kind: TunnelKind) -> io::Result<Ack> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let _ = socket.set_ext_ack(true);
    let _ = socket.set_cap_ack(true);
    let seq = 1;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(
        header,
        RouteNetlinkMessage::NewLink(tunnel_link_message(name, kind)).into(),
    );
    packet.finalize();
    let mut request = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut request);
    socket.send(&request, 0)?;
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
