//! A small synchronous rtnetlink client: just what topologies need (veth pairs,
//! addresses, routes, neighbours, link lookups).
//!
//! A netlink socket acts on the network namespace it was created in, whatever
//! thread later uses it: create one with [`NetNs::run`](crate::netns::NetNs::run)
//! and keep it. The probe is a static binary that must run in a FROM-scratch
//! image, so it cannot shell out to `ip`.

use anyhow::{Context, Result, anyhow, bail};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressMessage},
    link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
    route::{
        RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol,
        RouteScope, RouteType,
    },
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

pub type Mac = [u8; 6];

/// How a route reaches its destination.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub prefix: u8,
    pub oif: u32,
    /// `None`: a scope-link route straight out of `oif` (Cilium's per-pod /32).
    pub gateway: Option<Ipv4Addr>,
}

pub struct Rtnl {
    socket: Socket,
    seq: u32,
}

impl Rtnl {
    /// Opens a route netlink socket in the calling thread's network namespace.
    pub fn new() -> Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE).context("open NETLINK_ROUTE socket")?;
        socket.bind_auto().context("bind netlink socket")?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .context("connect netlink socket")?;
        Ok(Self { socket, seq: 0 })
    }

    /// Sends one request and collects replies until the ACK (or DONE for dumps).
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .with_context(|| format!("netlink send ({what})"))?;

        let mut replies = Vec::new();
        loop {
            let (data, _) = self
                .socket
                .recv_from_full()
                .with_context(|| format!("netlink recv ({what})"))?;
            let mut offset = 0;
            while offset < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                    .map_err(|e| anyhow!("netlink decode ({what}): {e}"))?;
                let len = reply.header.length as usize;
                if reply.header.sequence_number == self.seq {
                    match reply.payload {
                        NetlinkPayload::Error(err) => {
                            return match err.code {
                                None => Ok(replies),
                                Some(code) => {
                                    let errno = std::io::Error::from_raw_os_error(-code.get());
                                    Err(anyhow!("{what}: {errno}"))
                                }
                            };
                        }
                        NetlinkPayload::Done(_) => return Ok(replies),
                        NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                offset += len;
            }
        }
    }

    /// A dump request (links, addresses, routes, neighbours, qdiscs, filters): every
    /// reply message, for triage's text rendering.
    pub fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.request(msg, NLM_F_DUMP, what)
    }

    /// Creates a veth pair: `name` here, `peer` moved into the namespace `peer_ns`
    /// (or left here when `None`).
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_ns: Option<BorrowedFd<'_>>,
    ) -> Result<()> {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes.push(LinkAttribute::IfName(peer.into()));
        if let Some(ns) = peer_ns {
            peer_msg
                .attributes
                .push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &format!("create veth {name} <-> {peer}"),
        )?;
        Ok(())
    }

    /// Creates a link of an arbitrary kind with no kind-specific data (used to
    /// learn whether the kernel knows the kind at all).
    pub fn add_link_kind(&mut self, name: &str, kind: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Other(kind.into()),
            )]));
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &format!("create {kind} link {name}"),
        )?;
        Ok(())
    }

    /// Index and MAC address of a link by name.
    pub fn link(&mut self, name: &str) -> Result<(u32, Mac)> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        let replies = self.request(
            RouteNetlinkMessage::GetLink(msg),
            NLM_F_ACK,
            &format!("look up link {name}"),
        )?;
        for reply in replies {
            if let RouteNetlinkMessage::NewLink(link) = reply {
                let mac = link
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        LinkAttribute::Address(addr) if addr.len() == 6 => {
                            Some([addr[0], addr[1], addr[2], addr[3], addr[4], addr[5]])
                        }
                        _ => None,
                    })
                    .unwrap_or_default();
                return Ok((link.header.index, mac));
            }
        }
        bail!("look up link {name}: no such link")
    }

    /// Names of all links in this namespace.
    pub fn link_names(&mut self) -> Result<Vec<String>> {
        let replies = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            "list links",
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewLink(link) => {
                    link.attributes.into_iter().find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n),
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(
            RouteNetlinkMessage::SetLink(msg),
            NLM_F_ACK,
            &format!("set link {index} up"),
        )?;
        Ok(())
    }

    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes
            .push(AddressAttribute::Local(IpAddr::V4(addr)));
        msg.attributes
            .push(AddressAttribute::Address(IpAddr::V4(addr)));
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &format!("add address {addr}/{prefix} on link {index}"),
        )?;
        Ok(())
    }

    fn route_message(route: &Route) -> RouteMessage {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = route.prefix;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.kind = RouteType::Unicast;
        msg.header.scope = if route.gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        if route.prefix > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(route.dst)));
        }
        if let Some(gw) = route.gateway {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
            // Cilium's pod routes name a gateway that is not on any subnet of the pod.
            msg.header.flags = RouteFlags::Onlink;
        }
        msg.attributes.push(RouteAttribute::Oif(route.oif));
        msg
    }

    /// Adds a route, or replaces the one to the same destination.
    pub fn replace_route(&mut self, route: &Route) -> Result<()> {
        self.request(
            RouteNetlinkMessage::NewRoute(Self::route_message(route)),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            &format!(
                "add route {}/{} via link {}",
                route.dst, route.prefix, route.oif
            ),
        )?;
        Ok(())
    }

    pub fn delete_route(&mut self, route: &Route) -> Result<()> {
        self.request(
            RouteNetlinkMessage::DelRoute(Self::route_message(route)),
            NLM_F_ACK,
            &format!("delete route {}/{}", route.dst, route.prefix),
        )?;
        Ok(())
    }

    /// Adds a permanent neighbour entry, so no ARP is needed (Cilium answers ARP in BPF).
    pub fn add_neighbour(&mut self, index: u32, addr: Ipv4Addr, mac: Mac) -> Result<()> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = index;
        msg.header.state = NeighbourState::Permanent;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                addr,
            )));
        msg.attributes
            .push(NeighbourAttribute::LinkLocalAddress(mac.to_vec()));
        self.request(
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            &format!("add neighbour {addr} on link {index}"),
        )?;
        Ok(())
    }
}
