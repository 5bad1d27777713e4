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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

pub type Mac = [u8; 6];

/// How a route reaches its destination: IPv4 ([`Route`]) or IPv6 ([`Route6`]).
#[derive(Debug, Clone, Copy)]
pub struct Route<A = Ipv4Addr> {
    pub dst: A,
    pub prefix: u8,
    pub oif: u32,
    /// `None`: straight out of `oif` (Cilium's per-pod /32 or /128, scope link for
    /// IPv4); `Some`: via a gateway that is on no subnet of `oif` (`onlink`, as
    /// Cilium's pod routes are).
    pub gateway: Option<A>,
}

/// An IPv6 route, built and sent as [`Route`] is.
pub type Route6 = Route<Ipv6Addr>;

/// What a route's message takes from its address family.
pub trait RouteFamily: Copy + std::fmt::Display {
    const FAMILY: AddressFamily;
    /// The scope of a route without a gateway.
    const DIRECT_SCOPE: RouteScope;
    fn address(self) -> RouteAddress;
}

impl RouteFamily for Ipv4Addr {
    const FAMILY: AddressFamily = AddressFamily::Inet;
    const DIRECT_SCOPE: RouteScope = RouteScope::Link;
    fn address(self) -> RouteAddress {
        RouteAddress::Inet(self)
    }
}

impl RouteFamily for Ipv6Addr {
    const FAMILY: AddressFamily = AddressFamily::Inet6;
    const DIRECT_SCOPE: RouteScope = RouteScope::Universe;
    fn address(self) -> RouteAddress {
        RouteAddress::Inet6(self)
    }
}

/// An IPv4 or IPv6 route as the kernel lists it, in any table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// `RT_TABLE_MAIN` 254, `RT_TABLE_LOCAL` 255, ...
    pub table: u32,
    pub kind: RouteType,
    /// Its family's unspecified address for a default route.
    pub dst: IpAddr,
    pub prefix: u8,
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
}

/// An IPv4 (ARP) or IPv6 (neighbour discovery) neighbour entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourEntry {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub state: NeighbourState,
    pub mac: Option<Mac>,
}

impl NeighbourEntry {
    /// `NUD_VALID`: an entry the kernel transmits with (what `bpf_fib_lookup`
    /// requires before it answers with a MAC).
    pub fn valid(&self) -> bool {
        matches!(
            self.state,
            NeighbourState::Permanent
                | NeighbourState::Noarp
                | NeighbourState::Reachable
                | NeighbourState::Probe
                | NeighbourState::Stale
                | NeighbourState::Delay
        )
    }
}

/// `enum netkit_mode` (include/uapi/linux/if_link.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetkitMode {
    /// `NETKIT_L2`: Ethernet with random MACs and ARP (Cilium's `netkit-l2`).
    L2 = 0,
    /// `NETKIT_L3`: no ARP, no MAC address of its own (Cilium's `netkit`).
    L3 = 1,
}

/// `enum netkit_scrub`: what netkit clears (`skb->mark`, `skb->priority`) before
/// the transmitting side's programs run, when the pair spans two namespaces.
pub const NETKIT_SCRUB_NONE: u32 = 0;
pub const NETKIT_SCRUB_DEFAULT: u32 = 1;

const IFLA_NETKIT_PEER_INFO: u16 = 1;
const IFLA_NETKIT_MODE: u16 = 5;
const IFLA_NETKIT_SCRUB: u16 = 6;
const IFLA_NETKIT_PEER_SCRUB: u16 = 7;

/// How [`Rtnl::add_netkit`] sets a pair up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetkitSpec {
    pub mode: NetkitMode,
    /// `(primary, peer)` scrub modes to request; `None` sends neither attribute
    /// (the kernel's default, `NETKIT_SCRUB_DEFAULT` on both, where it has them).
    pub scrub: Option<(u32, u32)>,
}

fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut out = Vec::with_capacity((len + 3) & !3);
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize((len + 3) & !3, 0);
    out
}

/// The nested `IFLA_INFO_DATA` of a netkit pair: the peer's `ifinfomsg` and
/// attributes (`IFLA_NETKIT_PEER_INFO`), the mode and the scrub modes.
fn netkit_info_data(peer: &LinkMessage, spec: NetkitSpec) -> Vec<u8> {
    use netlink_packet_utils::Emitable;
    let mut peer_info = vec![0u8; peer.buffer_len()];
    peer.emit(&mut peer_info);
    let mut data = nla(IFLA_NETKIT_PEER_INFO, &peer_info);
    data.extend(nla(IFLA_NETKIT_MODE, &(spec.mode as u32).to_ne_bytes()));
    if let Some((primary, peer)) = spec.scrub {
        data.extend(nla(IFLA_NETKIT_SCRUB, &primary.to_ne_bytes()));
        data.extend(nla(IFLA_NETKIT_PEER_SCRUB, &peer.to_ne_bytes()));
    }
    data
}

/// The u32 attribute `kind` in a run of netlink attributes, if present.
fn nla_u32(mut data: &[u8], kind: u16) -> Option<u32> {
    while data.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([data[0], data[1]]));
        let this = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            return None;
        }
        if this == kind && len >= 8 {
            return Some(u32::from_ne_bytes(data[4..8].try_into().ok()?));
        }
        data = &data[((len + 3) & !3).min(data.len())..];
    }
    None
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

    /// Creates a passthru macvlan `name` on `lower` (an Ethernet device here, put
    /// in promiscuous mode by the kernel) and moves it into `ns`: what `lower`
    /// receives is handed to it by `macvlan_handle_frame` with only `skb->dev`
    /// changed, no scrub, so it is the scrub checks' path that keeps state.
    pub fn add_macvlan_passthru(
        &mut self,
        name: &str,
        lower: u32,
        ns: BorrowedFd<'_>,
    ) -> Result<()> {
        use netlink_packet_route::link::{InfoMacVlan, MacVlanMode};
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        msg.attributes.push(LinkAttribute::Link(lower));
        msg.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::MacVlan),
            LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Passthrough,
            )])),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &format!("create passthru macvlan {name} on link {lower}"),
        )?;
        Ok(())
    }

    /// A legacy tc filter on `index`'s clsact ingress (the qdisc must exist) at
    /// priority `prio` that matches every IPv4 packet and redirects it with
    /// `mirred` to the ingress of `target` (`tc filter add dev X ingress prio P
    /// protocol ip u32 match u32 0 0 action mirred ingress redirect dev T`).
    /// `mirred` resets conntrack but keeps the route on an ingress-to-ingress
    /// redirect, so it is the scrub checks' path that keeps the dst.
    pub fn add_mirred_ingress_redirect(
        &mut self,
        index: u32,
        prio: u16,
        target: u32,
    ) -> Result<()> {
        use netlink_packet_route::tc::{
            TcAction, TcActionAttribute, TcActionMirrorOption, TcActionOption, TcActionType,
            TcAttribute, TcFilterU32Option, TcHandle, TcMessage, TcMirror, TcMirrorActionType,
            TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
        };
        const ETH_P_IP: u16 = 0x0800;
        let mut msg = TcMessage::default();
        msg.header.index = index as i32;
        msg.header.parent = TcHandle {
            major: 0xffff,
            minor: TcHandle::MIN_INGRESS,
        };
        msg.header.info = (u32::from(prio) << 16) | u32::from(ETH_P_IP.to_be());
        let mut mirror = TcMirror::default();
        mirror.generic.action = TcActionType::Stolen;
        mirror.eaction = TcMirrorActionType::IngressRedir;
        mirror.ifindex = target;
        let mut action = TcAction::default();
        action.tab = 1;
        action.attributes = vec![
            TcActionAttribute::Kind("mirred".into()),
            TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
                mirror,
            ))]),
        ];
        let mut selector = TcU32Selector::default();
        selector.flags = TcU32SelectorFlags::Terminal;
        selector.nkeys = 1;
        selector.keys = vec![TcU32Key::default()];
        msg.attributes = vec![
            TcAttribute::Kind("u32".into()),
            TcAttribute::Options(vec![
                TcOption::U32(TcFilterU32Option::Selector(selector)),
                TcOption::U32(TcFilterU32Option::Action(vec![action])),
            ]),
        ];
        self.request(
            RouteNetlinkMessage::NewTrafficFilter(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &format!("add u32 mirred ingress redirect filter on link {index} to link {target}"),
        )?;
        Ok(())
    }

    /// Makes link `index` a port of the bridge (or other master) `master`.
    pub fn set_master(&mut self, index: u32, master: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Controller(master));
        self.request(
            RouteNetlinkMessage::SetLink(msg),
            NLM_F_ACK,
            &format!("enslave link {index} to {master}"),
        )?;
        Ok(())
    }

    /// Creates a netkit pair (`drivers/net/netkit.c`, 6.7+): the primary `name`
    /// here, the peer `peer` moved into `peer_ns`, both policies forward. `scrub`
    /// sends `IFLA_NETKIT_SCRUB` / `IFLA_NETKIT_PEER_SCRUB` (6.13, 6.12.4); a
    /// kernel without them ignores both (the nested data is parsed leniently), so
    /// only [`Rtnl::netkit_scrub`] tells whether they took.
    pub fn add_netkit(
        &mut self,
        name: &str,
        peer: &str,
        peer_ns: BorrowedFd<'_>,
        spec: NetkitSpec,
    ) -> Result<()> {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes.push(LinkAttribute::IfName(peer.into()));
        peer_msg
            .attributes
            .push(LinkAttribute::NetNsFd(peer_ns.as_raw_fd()));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Other("netkit".into())),
            LinkInfo::Data(InfoData::Other(netkit_info_data(&peer_msg, spec))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &format!("create netkit {name} <-> {peer} ({spec:?})"),
        )?;
        Ok(())
    }

    /// The scrub modes a netkit primary reports (`IFLA_NETKIT_SCRUB`,
    /// `IFLA_NETKIT_PEER_SCRUB`), `None` for each the kernel does not report:
    /// a kernel that predates netkit's scrub attributes reports neither.
    pub fn netkit_scrub(&mut self, name: &str) -> Result<(Option<u32>, Option<u32>)> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        let replies = self.request(
            RouteNetlinkMessage::GetLink(msg),
            NLM_F_ACK,
            &format!("look up netkit {name}"),
        )?;
        for reply in replies {
            if let RouteNetlinkMessage::NewLink(link) = reply {
                for a in link.attributes {
                    if let LinkAttribute::LinkInfo(infos) = a {
                        for info in infos {
                            if let LinkInfo::Data(InfoData::Other(data)) = info {
                                return Ok((
                                    nla_u32(&data, IFLA_NETKIT_SCRUB),
                                    nla_u32(&data, IFLA_NETKIT_PEER_SCRUB),
                                ));
                            }
                        }
                    }
                }
                return Ok((None, None));
            }
        }
        bail!("look up netkit {name}: no such link")
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

    /// Adds an IPv4 or IPv6 address. An IPv6 one is added `nodad`: usable at
    /// once, never tentative, and no duplicate address detection probe is sent.
    pub fn add_address(&mut self, index: u32, addr: impl Into<IpAddr>, prefix: u8) -> Result<()> {
        use netlink_packet_route::address::{AddressFlags, AddressHeaderFlags};
        let addr = addr.into();
        let mut msg = AddressMessage::default();
        msg.header.family = match addr {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        if addr.is_ipv6() {
            msg.header.flags = AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        msg.attributes.push(AddressAttribute::Local(addr));
        msg.attributes.push(AddressAttribute::Address(addr));
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &format!("add address {addr}/{prefix} on link {index}"),
        )?;
        Ok(())
    }

    fn route_message<A: RouteFamily>(route: &Route<A>) -> RouteMessage {
        let mut msg = RouteMessage::default();
        msg.header.address_family = A::FAMILY;
        msg.header.destination_prefix_length = route.prefix;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.kind = RouteType::Unicast;
        msg.header.scope = if route.gateway.is_some() {
            RouteScope::Universe
        } else {
            A::DIRECT_SCOPE
        };
        if route.prefix > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(route.dst.address()));
        }
        if let Some(gw) = route.gateway {
            msg.attributes.push(RouteAttribute::Gateway(gw.address()));
            // Cilium's pod routes name a gateway that is not on any subnet of the pod.
            msg.header.flags = RouteFlags::Onlink;
        }
        msg.attributes.push(RouteAttribute::Oif(route.oif));
        msg
    }

    /// Adds a route, or replaces the one to the same destination.
    pub fn replace_route<A: RouteFamily>(&mut self, route: &Route<A>) -> Result<()> {
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

    pub fn delete_route<A: RouteFamily>(&mut self, route: &Route<A>) -> Result<()> {
        self.request(
            RouteNetlinkMessage::DelRoute(Self::route_message(route)),
            NLM_F_ACK,
            &format!("delete route {}/{}", route.dst, route.prefix),
        )?;
        Ok(())
    }

    /// Adds a permanent neighbour entry, so no ARP (IPv6: no neighbour
    /// solicitation) is needed (Cilium answers both in BPF).
    pub fn add_neighbour(&mut self, index: u32, addr: impl Into<IpAddr>, mac: Mac) -> Result<()> {
        let addr = addr.into();
        let mut msg = NeighbourMessage::default();
        msg.header.ifindex = index;
        msg.header.state = NeighbourState::Permanent;
        msg.header.kind = RouteType::Unicast;
        let destination = match addr {
            IpAddr::V4(a) => {
                msg.header.family = AddressFamily::Inet;
                NeighbourAddress::Inet(a)
            }
            IpAddr::V6(a) => {
                msg.header.family = AddressFamily::Inet6;
                NeighbourAddress::Inet6(a)
            }
        };
        msg.attributes
            .push(NeighbourAttribute::Destination(destination));
        msg.attributes
            .push(NeighbourAttribute::LinkLocalAddress(mac.to_vec()));
        self.request(
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            &format!("add neighbour {addr} on link {index}"),
        )?;
        Ok(())
    }

    /// Removes a neighbour entry (the kernel must then resolve the address itself).
    pub fn delete_neighbour(&mut self, index: u32, addr: impl Into<IpAddr>) -> Result<()> {
        let addr = addr.into();
        let mut msg = NeighbourMessage::default();
        msg.header.ifindex = index;
        let destination = match addr {
            IpAddr::V4(a) => {
                msg.header.family = AddressFamily::Inet;
                NeighbourAddress::Inet(a)
            }
            IpAddr::V6(a) => {
                msg.header.family = AddressFamily::Inet6;
                NeighbourAddress::Inet6(a)
            }
        };
        msg.attributes
            .push(NeighbourAttribute::Destination(destination));
        self.request(
            RouteNetlinkMessage::DelNeighbour(msg),
            NLM_F_ACK,
            &format!("delete neighbour {addr} on link {index}"),
        )?;
        Ok(())
    }

    /// Every neighbour entry in this namespace, IPv4 (ARP) then IPv6 (ND).
    pub fn neighbours(&mut self) -> Result<Vec<NeighbourEntry>> {
        let mut entries = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut msg = NeighbourMessage::default();
            msg.header.family = family;
            let replies = self.dump(RouteNetlinkMessage::GetNeighbour(msg), "list neighbours")?;
            entries.extend(replies.into_iter().filter_map(|r| match r {
                RouteNetlinkMessage::NewNeighbour(n) => {
                    let mut addr = None;
                    let mut mac = None;
                    for a in n.attributes {
                        match a {
                            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                                addr = Some(IpAddr::V4(ip))
                            }
                            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                                addr = Some(IpAddr::V6(ip))
                            }
                            NeighbourAttribute::LinkLocalAddress(l) if l.len() == 6 => {
                                mac = Some([l[0], l[1], l[2], l[3], l[4], l[5]])
                            }
                            _ => {}
                        }
                    }
                    Some(NeighbourEntry {
                        ifindex: n.header.ifindex,
                        addr: addr?,
                        state: n.header.state,
                        mac,
                    })
                }
                _ => None,
            }));
        }
        Ok(entries)
    }

    /// Every route in every table of this namespace, IPv4 then IPv6.
    pub fn routes(&mut self) -> Result<Vec<RouteEntry>> {
        let mut entries = Vec::new();
        for (family, unspecified) in [
            (AddressFamily::Inet, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            (AddressFamily::Inet6, IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        ] {
            let mut msg = RouteMessage::default();
            msg.header.address_family = family;
            let replies = self.dump(RouteNetlinkMessage::GetRoute(msg), "list routes")?;
            entries.extend(replies.into_iter().filter_map(|r| match r {
                RouteNetlinkMessage::NewRoute(m) if m.header.address_family == family => {
                    let mut entry = RouteEntry {
                        table: u32::from(m.header.table),
                        kind: m.header.kind,
                        dst: unspecified,
                        prefix: m.header.destination_prefix_length,
                        oif: None,
                        gateway: None,
                    };
                    for a in m.attributes {
                        match a {
                            RouteAttribute::Table(t) => entry.table = t,
                            RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                                entry.dst = ip.into()
                            }
                            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => {
                                entry.dst = ip.into()
                            }
                            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => {
                                entry.gateway = Some(ip.into())
                            }
                            RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => {
                                entry.gateway = Some(ip.into())
                            }
                            RouteAttribute::Oif(i) => entry.oif = Some(i),
                            _ => {}
                        }
                    }
                    Some(entry)
                }
                _ => None,
            }));
        }
        Ok(entries)
    }
}

/// The kind of a collect-metadata (`external`) tunnel device, as Cilium's
/// `routingMode: tunnel` creates them (`cilium_vxlan`, `cilium_geneve`): one
/// device per node for every remote node, the remote and the VNI chosen per
/// packet by a BPF program (`bpf_skb_set_tunnel_key`) instead of by the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKind {
    Vxlan,
    Geneve,
}

impl TunnelKind {
    /// The rtnetlink kind (`IFLA_INFO_KIND`).
    pub fn kind(self) -> &'static str {
        match self {
            Self::Vxlan => "vxlan",
            Self::Geneve => "geneve",
        }
    }

    /// The device name Cilium gives it.
    pub fn cilium_name(self) -> &'static str {
        match self {
            Self::Vxlan => "cilium_vxlan",
            Self::Geneve => "cilium_geneve",
        }
    }

    /// Cilium's UDP destination port: 8472 for VXLAN (the Linux default, not IANA's
    /// 4789), 6081 for Geneve (`tunnelPort`).
    pub fn port(self) -> u16 {
        match self {
            Self::Vxlan => 8472,
            Self::Geneve => 6081,
        }
    }

    /// Bytes the encapsulation adds to an inner IPv4 packet over an IPv4 underlay:
    /// the inner Ethernet header (14), the VXLAN header or the Geneve base header
    /// without options (8), outer UDP (8) and outer IPv4 (20). Cilium's pod MTU is
    /// the underlay MTU minus this (1500 → 1450).
    pub fn overhead(self) -> u32 {
        match self {
            Self::Vxlan | Self::Geneve => 14 + 8 + 8 + 20,
        }
    }
}

/// `RTM_NEWLINK` for a collect-metadata tunnel device named `name`: VXLAN with
/// `IFLA_VXLAN_COLLECT_METADATA` 1, `IFLA_VXLAN_PORT` and `IFLA_VXLAN_LEARNING` 0
/// (`ip link add NAME type vxlan external dstport 8472 nolearning`); Geneve with
/// the `IFLA_GENEVE_COLLECT_METADATA` flag and `IFLA_GENEVE_PORT` (`ip link add
/// NAME type geneve external dstport 6081`). No lower device, no remote, no VNI:
/// that is what external mode means (include/uapi/linux/if_link.h).
pub fn tunnel_link_message(name: &str, kind: TunnelKind) -> LinkMessage {
    use netlink_packet_route::link::{InfoGeneve, InfoVxlan};
    let data = match kind {
        TunnelKind::Vxlan => InfoData::Vxlan(vec![
            InfoVxlan::CollectMetadata(true),
            InfoVxlan::Port(kind.port()),
            InfoVxlan::Learning(false),
        ]),
        TunnelKind::Geneve => InfoData::Geneve(vec![
            InfoGeneve::CollectMetadata,
            InfoGeneve::Port(kind.port()),
        ]),
    };
    let info_kind = match kind {
        TunnelKind::Vxlan => InfoKind::Vxlan,
        TunnelKind::Geneve => InfoKind::Geneve,
    };
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.into()));
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(info_kind),
        LinkInfo::Data(data),
    ]));
    msg
}

/// Tunnel devices and MTUs (the tunnel checks' topology).
impl Rtnl {
    /// Creates a collect-metadata tunnel device (see [`tunnel_link_message`]).
    pub fn add_tunnel(&mut self, name: &str, kind: TunnelKind) -> Result<()> {
        self.request(
            RouteNetlinkMessage::NewLink(tunnel_link_message(name, kind)),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &format!(
                "create {} device {name} (external, dstport {})",
                kind.kind(),
                kind.port()
            ),
        )?;
        Ok(())
    }

    /// Sets a link's MTU (`ip link set dev X mtu N`).
    pub fn set_link_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        self.request(
            RouteNetlinkMessage::SetLink(msg),
            NLM_F_ACK,
            &format!("set mtu {mtu} on link {index}"),
        )?;
        Ok(())
    }

    /// A link's MTU, its kind (`IFLA_INFO_KIND`, `None` for a device without one,
    /// like `lo`) and whether it is a collect-metadata tunnel device
    /// (`IFLA_VXLAN_COLLECT_METADATA` 1 or the `IFLA_GENEVE_COLLECT_METADATA` flag)
    /// with its UDP port, as the kernel reports them.
    pub fn link_details(&mut self, name: &str) -> Result<LinkDetails> {
        use netlink_packet_route::link::{InfoGeneve, InfoVxlan};
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        let replies = self.request(
            RouteNetlinkMessage::GetLink(msg),
            NLM_F_ACK,
            &format!("look up link {name}"),
        )?;
        let Some(link) = replies.into_iter().find_map(|r| match r {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        }) else {
            bail!("look up link {name}: no such link");
        };
        let mut details = LinkDetails {
            index: link.header.index,
            ..LinkDetails::default()
        };
        for attr in link.attributes {
            match attr {
                LinkAttribute::Mtu(m) => details.mtu = m,
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(k) => details.kind = Some(k.to_string()),
                            LinkInfo::Data(InfoData::Vxlan(nlas)) => {
                                for nla in nlas {
                                    match nla {
                                        InfoVxlan::CollectMetadata(on) => {
                                            details.collect_metadata = on
                                        }
                                        InfoVxlan::Port(p) => details.port = Some(p),
                                        _ => {}
                                    }
                                }
                            }
                            LinkInfo::Data(InfoData::Geneve(nlas)) => {
                                for nla in nlas {
                                    match nla {
                                        InfoGeneve::CollectMetadata => {
                                            details.collect_metadata = true
                                        }
                                        InfoGeneve::Port(p) => details.port = Some(p),
                                        _ => {}
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(details)
    }
}

/// What [`Rtnl::link_details`] reports of a link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkDetails {
    pub index: u32,
    pub mtu: u32,
    pub kind: Option<String>,
    pub collect_metadata: bool,
    pub port: Option<u16>,
}

#[cfg(test)]
mod tunnel_tests {
    use super::*;
    use netlink_packet_utils::Emitable as _;

    fn bytes(msg: &LinkMessage) -> Vec<u8> {
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        buf
    }

    /// `(type, payload)` of every attribute nested anywhere in `buf` that has the
    /// given type, by walking netlink attributes (4-byte aligned `len, type, payload`).
    fn find(buf: &[u8], kind: u16) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut off = 0;
        while off + 4 <= buf.len() {
            let len = usize::from(u16::from_ne_bytes([buf[off], buf[off + 1]]));
            let ty = u16::from_ne_bytes([buf[off + 2], buf[off + 3]]) & 0x3fff;
            if len < 4 || off + len > buf.len() {
                break;
            }
            let payload = &buf[off + 4..off + len];
            if ty == kind {
                out.push(payload.to_vec());
            }
            out.extend(find(payload, kind));
            off += (len + 3) & !3;
        }
        out
    }

    #[test]
    fn vxlan_is_external_on_cilium_port_without_learning() {
        let b = bytes(&tunnel_link_message("cilium_vxlan", TunnelKind::Vxlan));
        let attrs = &b[16..]; // after struct ifinfomsg
        assert!(b.windows(6).any(|w| w == b"vxlan\0"));
        // IFLA_VXLAN_PORT (15), big-endian 8472.
        assert!(find(attrs, 15).contains(&8472u16.to_be_bytes().to_vec()));
        // IFLA_VXLAN_COLLECT_METADATA (25) = 1, IFLA_VXLAN_LEARNING (7) = 0.
        assert!(find(attrs, 25).contains(&vec![1]));
        assert!(find(attrs, 7).contains(&vec![0]));
    }

    #[test]
    fn geneve_is_external_on_cilium_port() {
        let b = bytes(&tunnel_link_message("cilium_geneve", TunnelKind::Geneve));
        let attrs = &b[16..];
        assert!(b.windows(7).any(|w| w == b"geneve\0"));
        // IFLA_GENEVE_PORT (5), big-endian 6081; IFLA_GENEVE_COLLECT_METADATA (6), a flag.
        assert!(find(attrs, 5).contains(&6081u16.to_be_bytes().to_vec()));
        assert!(find(attrs, 6).contains(&Vec::new()));
    }

    #[test]
    fn overhead_is_what_cilium_subtracts() {
        for kind in [TunnelKind::Vxlan, TunnelKind::Geneve] {
            assert_eq!(1500 - kind.overhead(), 1450, "{kind:?}");
        }
    }
}

#[cfg(test)]
mod netkit_tests {
    use super::*;

    #[test]
    fn netkit_data_nests_peer_mode_and_scrub() {
        let mut peer = LinkMessage::default();
        peer.attributes.push(LinkAttribute::IfName("eth0".into()));
        let spec = NetkitSpec {
            mode: NetkitMode::L3,
            scrub: Some((NETKIT_SCRUB_NONE, NETKIT_SCRUB_DEFAULT)),
        };
        let data = netkit_info_data(&peer, spec);
        // IFLA_NETKIT_PEER_INFO first: a 16-byte ifinfomsg, then IFLA_IFNAME "eth0\0".
        assert_eq!(
            u16::from_ne_bytes([data[2], data[3]]),
            IFLA_NETKIT_PEER_INFO
        );
        assert!(data.windows(5).any(|w| w == b"eth0\0"));
        assert_eq!(nla_u32(&data, IFLA_NETKIT_MODE), Some(1));
        assert_eq!(nla_u32(&data, IFLA_NETKIT_SCRUB), Some(NETKIT_SCRUB_NONE));
        assert_eq!(
            nla_u32(&data, IFLA_NETKIT_PEER_SCRUB),
            Some(NETKIT_SCRUB_DEFAULT)
        );
        let plain = netkit_info_data(
            &peer,
            NetkitSpec {
                mode: NetkitMode::L2,
                scrub: None,
            },
        );
        assert_eq!(nla_u32(&plain, IFLA_NETKIT_MODE), Some(0));
        assert_eq!(nla_u32(&plain, IFLA_NETKIT_SCRUB), None);
        assert_eq!(nla_u32(&[1, 0], IFLA_NETKIT_SCRUB), None);
    }
}
