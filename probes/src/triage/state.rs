//! One network namespace's state as text lines, `ip`-like, from rtnetlink dumps:
//! links, addresses, routes (every table), neighbours, qdiscs and the BPF
//! programs on each device (TCX, legacy cls_bpf, XDP). The probe cannot shell out
//! to `ip` or `bpftool` (it runs in FROM-scratch images), so it asks the kernel.

use super::programs::{self, Attached};
use crate::netlink::Rtnl;
use crate::netns::NetNs;
use anyhow::Result;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkMessage, LinkXdp};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};
use netlink_packet_utils::nla::{Nla, NlasIterator};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// `TCA_BPF_NAME` and `TCA_BPF_ID` inside a cls_bpf filter's options.
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_ID: u16 = 11;

/// Everything about one namespace, as JSON for `evidence.triage.namespaces`.
pub fn namespace(ns: &NetNs) -> Value {
    match ns.run(|| collect(ns.name())) {
        Ok(v) => v,
        Err(e) => json!({ "name": ns.name(), "unavailable": format!("{e:#}") }),
    }
}

fn collect(name: &str) -> Result<Value> {
    let mut rtnl = Rtnl::new()?;
    let links = rtnl.dump(
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        "dump links",
    )?;
    let mut names = BTreeMap::new();
    let mut link_lines = Vec::new();
    let mut bpf = Vec::new();
    for m in &links {
        if let RouteNetlinkMessage::NewLink(l) = m {
            let (line, dev, xdp) = link_line(l);
            names.insert(l.header.index, dev.clone());
            link_lines.push(line);
            if let Some(id) = xdp {
                bpf.push(programs::describe(Attached {
                    device: dev.clone(),
                    ifindex: l.header.index,
                    attach: "xdp".into(),
                    prog_id: id,
                }));
            }
        }
    }
    let dev = |i: u32| names.get(&i).cloned().unwrap_or_else(|| format!("if{i}"));

    let addresses = rtnl
        .dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            "dump addresses",
        )?
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) => Some(address_line(a, &dev)),
            _ => None,
        })
        .collect::<Vec<_>>();
    let routes = rtnl
        .dump(
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            "dump routes",
        )?
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r) => Some(route_line(r, &dev)),
            _ => None,
        })
        .collect::<Vec<_>>();
    let neighbours = rtnl
        .dump(
            RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
            "dump neighbours",
        )?
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewNeighbour(n) => Some(neighbour_line(n, &dev)),
            _ => None,
        })
        .collect::<Vec<_>>();
    let qdiscs = rtnl
        .dump(
            RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()),
            "dump qdiscs",
        )?
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewQueueDiscipline(q) => Some(qdisc_line(q, &dev)),
            _ => None,
        })
        .collect::<Vec<_>>();

    let mut filters = Vec::new();
    for (&index, device) in &names {
        for (minor, dir) in [(0xfff2u16, "ingress"), (0xfff3, "egress")] {
            bpf.extend(
                programs::tcx(index, dir)
                    .into_iter()
                    .map(|prog_id| Attached {
                        device: device.clone(),
                        ifindex: index,
                        attach: format!("tcx {dir}"),
                        prog_id,
                    })
                    .map(programs::describe),
            );
            let mut msg = TcMessage::with_index(index as i32);
            msg.header.parent = TcHandle {
                major: 0xffff,
                minor,
            };
            // No clsact qdisc is ENOENT/EINVAL: nothing attached that way.
            let Ok(replies) = rtnl.dump(
                RouteNetlinkMessage::GetTrafficFilter(msg),
                "dump tc filters",
            ) else {
                continue;
            };
            for r in replies {
                if let RouteNetlinkMessage::NewTrafficFilter(f) = r {
                    let (line, prog) = filter_line(&f, device, dir);
                    filters.push(line);
                    if let Some(prog_id) = prog {
                        bpf.push(programs::describe(Attached {
                            device: device.clone(),
                            ifindex: index,
                            attach: format!("tc {dir}"),
                            prog_id,
                        }));
                    }
                }
            }
        }
    }
    Ok(json!({
        "name": name,
        "links": link_lines,
        "addresses": addresses,
        "routes": routes,
        "neighbours": neighbours,
        "qdiscs": qdiscs,
        "filters": filters,
        "bpf": bpf,
    }))
}

fn mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `4: lxc1a2b3ca mtu 1500 state Up link 2 52:..:..`, the device name, an XDP program.
fn link_line(l: &LinkMessage) -> (String, String, Option<u32>) {
    let mut name = String::new();
    let mut parts = Vec::new();
    let mut xdp = None;
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => name = n.clone(),
            LinkAttribute::Mtu(m) => parts.push(format!("mtu {m}")),
            LinkAttribute::OperState(s) => parts.push(format!("state {s:?}")),
            LinkAttribute::Link(i) => parts.push(format!("link {i}")),
            LinkAttribute::Controller(i) => parts.push(format!("master {i}")),
            LinkAttribute::Address(b) if !b.is_empty() => parts.push(mac(b)),
            LinkAttribute::Xdp(x) => {
                for f in x {
                    if let LinkXdp::ProgId(id) = f
                        && *id != 0
                    {
                        xdp = Some(*id);
                        parts.push(format!("xdp prog {id}"));
                    }
                }
            }
            _ => {}
        }
    }
    let line = format!(
        "{}: {name} flags {:?} {}",
        l.header.index,
        l.header.flags,
        parts.join(" ")
    );
    (line, name, xdp)
}

fn address_line(a: &AddressMessage, dev: &impl Fn(u32) -> String) -> String {
    let addr = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Local(ip) | AddressAttribute::Address(ip) => Some(ip.to_string()),
        _ => None,
    });
    format!(
        "{} {}/{} scope {:?}",
        dev(a.header.index),
        addr.unwrap_or_else(|| "?".into()),
        a.header.prefix_len,
        a.header.scope
    )
}

fn route_address(a: &RouteAddress) -> String {
    match a {
        RouteAddress::Inet(ip) => ip.to_string(),
        RouteAddress::Inet6(ip) => ip.to_string(),
        other => format!("{other:?}"),
    }
}

/// `table 254 10.42.0.11/32 dev lxc…a scope Link proto Static type Unicast`.
fn route_line(r: &RouteMessage, dev: &impl Fn(u32) -> String) -> String {
    let mut dst = "default".to_string();
    let mut parts = Vec::new();
    let mut table = u32::from(r.header.table);
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(d) => {
                dst = format!(
                    "{}/{}",
                    route_address(d),
                    r.header.destination_prefix_length
                )
            }
            RouteAttribute::Gateway(g) => parts.push(format!("via {}", route_address(g))),
            RouteAttribute::Oif(i) => parts.push(format!("dev {}", dev(*i))),
            RouteAttribute::PrefSource(s) => parts.push(format!("src {}", route_address(s))),
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Priority(p) => parts.push(format!("metric {p}")),
            _ => {}
        }
    }
    format!(
        "table {table} {dst} {} scope {:?} proto {:?} type {:?} flags {:?}",
        parts.join(" "),
        r.header.scope,
        r.header.protocol,
        r.header.kind,
        r.header.flags
    )
}

fn neighbour_line(n: &NeighbourMessage, dev: &impl Fn(u32) -> String) -> String {
    let mut dst = "?".to_string();
    let mut ll = String::new();
    for a in &n.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => dst = ip.to_string(),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => dst = ip.to_string(),
            NeighbourAttribute::LinkLocalAddress(b) => ll = format!(" lladdr {}", mac(b)),
            _ => {}
        }
    }
    format!(
        "{dst} dev {}{ll} state {:?}",
        dev(n.header.ifindex),
        n.header.state
    )
}

fn kind(attrs: &[TcAttribute]) -> String {
    attrs
        .iter()
        .find_map(|a| match a {
            TcAttribute::Kind(k) => Some(k.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "?".into())
}

fn qdisc_line(q: &TcMessage, dev: &impl Fn(u32) -> String) -> String {
    format!(
        "qdisc {} dev {} handle {:x}: parent {:x}:{:x}",
        kind(&q.attributes),
        dev(q.header.index as u32),
        q.header.handle.major,
        q.header.parent.major,
        q.header.parent.minor
    )
}

/// A filter's line and, for cls_bpf, the program id in its options.
fn filter_line(f: &TcMessage, device: &str, dir: &str) -> (String, Option<u32>) {
    let kind = kind(&f.attributes);
    let mut prog = None;
    let mut name = None;
    // Kinds the crate does not know (bpf) keep TCA_OPTIONS as one raw nest.
    for a in &f.attributes {
        let TcAttribute::Options(opts) = a else {
            continue;
        };
        for o in opts {
            let TcOption::Other(nest) = o else {
                continue;
            };
            let mut buf = vec![0u8; nest.value_len()];
            nest.emit_value(&mut buf);
            for nla in NlasIterator::new(&buf[..]).flatten() {
                let v = nla.value();
                match nla.kind() {
                    TCA_BPF_ID if v.len() >= 4 => {
                        prog = Some(u32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
                    }
                    TCA_BPF_NAME => {
                        name = Some(
                            String::from_utf8_lossy(v)
                                .trim_end_matches('\0')
                                .to_string(),
                        )
                    }
                    _ => {}
                }
            }
        }
    }
    let mut line = format!(
        "filter {dir} dev {device} {kind} pref {} handle {:x}",
        f.header.info >> 16,
        (u32::from(f.header.handle.major) << 16) | u32::from(f.header.handle.minor)
    );
    if let Some(n) = name {
        line.push_str(&format!(" {n}"));
    }
    if let Some(id) = prog {
        line.push_str(&format!(" id {id}"));
    }
    (line, prog)
}
