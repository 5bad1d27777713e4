//! Two Cilium nodes joined by an underlay, each with one pod and a collect-metadata
//! tunnel device: the lab's model of `routingMode: tunnel`.
//!
//! ```text
//!  node 1 (ns node-1)                                   node 2 (ns node-2)
//!  pod A 10.42.0.11/32                                  pod B 10.42.1.12/32
//!  eth0 ── veth ── lxc<run>a                            lxc<run>b ── veth ── eth0
//!                  cilium_vxlan (external, :8472)       cilium_vxlan (external, :8472)
//!                  ul<run> 192.0.2.1/24 ════ veth ════ ul<run> 192.0.2.2/24
//! ```
//!
//! Each pod is set up as [`crate::topology`] sets pods up (a /32 address, `default
//! via <gateway> onlink` with a permanent neighbour entry for the gateway, the
//! node's /32 route to it via the host-side veth); node 1's pods live in
//! 10.42.0.0/24 (gateway 10.42.0.1), node 2's in 10.42.1.0/24 (gateway 10.42.1.1).
//! No node has a route to the other node's pod CIDR and forwarding is off, so the
//! only way from pod A to pod B is the tunnel: a BPF program on `lxc…a` sets the
//! tunnel key and redirects to the tunnel device. The underlay addresses are from
//! TEST-NET-1 (192.0.2.0/24, RFC 5737), with permanent neighbour entries (no ARP in
//! the counters); IPv6 is off everywhere. Nothing leaves these namespaces.
//!
//! MTUs as Cilium sets them: the underlay is [`UNDERLAY_MTU`]; pod eth0 and its
//! host-side veth get the pod MTU the caller asks for (Cilium: underlay MTU minus
//! the tunnel overhead, [`TunnelKind::overhead`]); the tunnel devices keep the
//! kernel's default (no lower device: 1500), as `cilium_vxlan` does.

use crate::netlink::{Mac, Route, Rtnl, TunnelKind};
use crate::netns::NetNs;
use crate::topology::{Device, Pod, pod_route};
use crate::topology::{device, disable_ipv6};
use anyhow::{Context, Result};
use std::net::Ipv4Addr;

/// Underlay addresses of node 1 and node 2 (TEST-NET-1, never routed).
pub const UNDERLAY_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)];
pub const UNDERLAY_PREFIX: u8 = 24;
/// The underlay's MTU, a cloud VM's usual 1500.
pub const UNDERLAY_MTU: u32 = 1500;
/// Pod gateways (Cilium's `cilium_host` address) of node 1 and node 2.
pub const GATEWAYS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 42, 0, 1), Ipv4Addr::new(10, 42, 1, 1)];
/// Pod A on node 1, pod B on node 2.
pub const POD_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 42, 0, 11), Ipv4Addr::new(10, 42, 1, 12)];

/// One node: its host namespace, underlay end, tunnel device and pod.
pub struct TunnelNode {
    pub host: NetNs,
    pub host_rtnl: Rtnl,
    pub underlay: Device,
    pub underlay_ip: Ipv4Addr,
    pub tunnel: Device,
    pub pod: Pod,
    pub gateway: Ipv4Addr,
}

pub struct TwoNodes {
    pub kind: TunnelKind,
    pub nodes: [TunnelNode; 2],
}

/// A host namespace with forwarding and rp_filter off, `lo` up.
fn host(name: &str) -> Result<(NetNs, Rtnl)> {
    let ns = NetNs::new(name)?;
    disable_ipv6(&ns)?;
    let mut rtnl = ns.run(Rtnl::new)?;
    for path in [
        "/proc/sys/net/ipv4/conf/all/rp_filter",
        "/proc/sys/net/ipv4/conf/default/rp_filter",
    ] {
        ns.write(path, "0")?;
    }
    ns.write("/proc/sys/net/ipv4/ip_forward", "0")?;
    let lo = device(&mut rtnl, "lo")?;
    rtnl.set_up(lo.index)?;
    Ok((ns, rtnl))
}

/// A pod namespace behind `lxc_name` in the host `host_rtnl` belongs to.
fn pod(
    host_rtnl: &mut Rtnl,
    letter: char,
    lxc_name: &str,
    ip: Ipv4Addr,
    gateway: Ipv4Addr,
    mtu: u32,
) -> Result<Pod> {
    let ns = NetNs::new(&format!("pod-{letter}"))?;
    disable_ipv6(&ns)?;
    host_rtnl.add_veth(lxc_name, "eth0", Some(std::os::fd::AsFd::as_fd(&ns)))?;
    let lxc = device(host_rtnl, lxc_name)?;
    host_rtnl.set_link_mtu(lxc.index, mtu)?;
    host_rtnl.set_up(lxc.index)?;

    let mut rtnl = ns.run(Rtnl::new)?;
    let lo = device(&mut rtnl, "lo")?;
    rtnl.set_up(lo.index)?;
    let eth0 = device(&mut rtnl, "eth0")?;
    rtnl.set_link_mtu(eth0.index, mtu)?;
    rtnl.add_address(eth0.index, ip, 32)?;
    rtnl.set_up(eth0.index)?;
    rtnl.replace_route(&Route {
        dst: gateway,
        prefix: 32,
        oif: eth0.index,
        gateway: None,
    })?;
    rtnl.replace_route(&Route {
        dst: Ipv4Addr::UNSPECIFIED,
        prefix: 0,
        oif: eth0.index,
        gateway: Some(gateway),
    })?;
    rtnl.add_neighbour(eth0.index, gateway, lxc.mac)?;
    host_rtnl.replace_route(&pod_route(ip, &lxc))?;
    host_rtnl.add_neighbour(lxc.index, ip, eth0.mac)?;
    Ok(Pod {
        ns,
        rtnl,
        ip,
        ip6: None,
        eth0,
        lxc,
    })
}

impl TwoNodes {
    /// Builds both nodes with `kind` tunnel devices and pods of MTU `pod_mtu`.
    /// `run_id` goes into the host-side device names.
    pub fn build(run_id: &str, kind: TunnelKind, pod_mtu: u32) -> Result<Self> {
        let short: String = run_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(6)
            .collect();
        let (h1, mut r1) = host("node-1")?;
        let (h2, r2) = host("node-2")?;
        let ul_name = format!("ul{short}");
        r1.add_veth(&ul_name, &ul_name, Some(std::os::fd::AsFd::as_fd(&h2)))?;

        let mut parts = Vec::with_capacity(2);
        for (i, (ns, mut rtnl)) in [(h1, r1), (h2, r2)].into_iter().enumerate() {
            let underlay = device(&mut rtnl, &ul_name)?;
            rtnl.set_link_mtu(underlay.index, UNDERLAY_MTU)?;
            rtnl.add_address(underlay.index, UNDERLAY_IPS[i], UNDERLAY_PREFIX)?;
            rtnl.set_up(underlay.index)?;
            rtnl.add_tunnel(kind.cilium_name(), kind).with_context(|| {
                format!(
                    "in ns {} (is the {} module loaded?)",
                    ns.name(),
                    kind.kind()
                )
            })?;
            let tunnel = device(&mut rtnl, kind.cilium_name())?;
            rtnl.set_up(tunnel.index)?;
            let letter = (b'a' + i as u8) as char;
            let pod = pod(
                &mut rtnl,
                letter,
                &format!("lxc{short}{letter}"),
                POD_IPS[i],
                GATEWAYS[i],
                pod_mtu,
            )?;
            parts.push((ns, rtnl, underlay, tunnel, pod));
        }
        // Each underlay end knows the other's MAC: no ARP on the underlay.
        let macs: Vec<Mac> = parts.iter().map(|p| p.2.mac).collect();
        for (i, part) in parts.iter_mut().enumerate() {
            let index = part.2.index;
            part.1
                .add_neighbour(index, UNDERLAY_IPS[1 - i], macs[1 - i])?;
        }
        let nodes: Vec<TunnelNode> = parts
            .into_iter()
            .enumerate()
            .map(|(i, (host, host_rtnl, underlay, tunnel, pod))| TunnelNode {
                host,
                host_rtnl,
                underlay,
                underlay_ip: UNDERLAY_IPS[i],
                tunnel,
                pod,
                gateway: GATEWAYS[i],
            })
            .collect();
        let nodes: [TunnelNode; 2] = nodes.try_into().map_err(|_| anyhow::anyhow!("two nodes"))?;
        // As in `Node::build`: wait until linkwatch has activated every link.
        for node in &nodes {
            for ns in [&node.host, &node.pod.ns] {
                ns.run(|| {
                    crate::traffic::await_links_operational(crate::traffic::LINK_READY_TIMEOUT)
                })
                .with_context(|| format!("links of ns {} not operational", ns.name()))?;
                crate::triage::register(ns);
            }
        }
        Ok(Self { kind, nodes })
    }

    /// Sets the pod MTU (both ends of both pods' veths), as Cilium's `MTU` setting does.
    pub fn set_pod_mtu(&mut self, mtu: u32) -> Result<()> {
        for node in &mut self.nodes {
            node.host_rtnl.set_link_mtu(node.pod.lxc.index, mtu)?;
            node.pod.rtnl.set_link_mtu(node.pod.eth0.index, mtu)?;
        }
        Ok(())
    }
}
