//! The lab's model of a Cilium node: a host namespace and two pod namespaces.
//!
//! ```text
//!  pod A (10.42.0.11/32)        host namespace                     pod B (10.42.0.12/32)
//!  eth0 ── veth ── lxc<run>a    cilium_host (10.42.0.1/32) ═ cilium_net    lxc<run>b ── veth ── eth0
//!                               lo: node IP 198.18.0.10/32, forwarding off
//! ```
//!
//! Routed the way Cilium routes pods: each pod has `default via 10.42.0.1 onlink`
//! with a permanent neighbour entry for the gateway (Cilium answers ARP in BPF),
//! the host has a scope-link /32 route per pod via its host-side veth. Forwarding
//! is off in the host namespace, so only BPF redirects can move packets between pods.
//! Addresses are private to these namespaces: no packet ever leaves them.

use crate::netlink::{Mac, Route, Rtnl};
use crate::netns::NetNs;
use anyhow::{Context, Result};
use std::net::Ipv4Addr;

pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 1);
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const POD_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 42, 0, 11), Ipv4Addr::new(10, 42, 0, 12)];

/// A device as the checks need it: where it is, its index and MAC.
#[derive(Debug, Clone)]
pub struct Device {
    pub name: String,
    pub index: u32,
    pub mac: Mac,
}

pub struct Pod {
    pub ns: NetNs,
    pub rtnl: Rtnl,
    pub ip: Ipv4Addr,
    /// `eth0` inside the pod.
    pub eth0: Device,
    /// The host-side end of the pod's veth (`lxc...`), in the host namespace.
    pub lxc: Device,
}

pub struct Node {
    pub host: NetNs,
    pub host_rtnl: Rtnl,
    pub cilium_host: Device,
    pub cilium_net: Device,
    pub pods: [Pod; 2],
}

/// Turns IPv6 off in a namespace before its devices exist: link-up router
/// solicitations and MLD reports would otherwise show up in the packet counters
/// the checks use as evidence. A kernel without IPv6 has nothing to turn off.
fn disable_ipv6(ns: &NetNs) -> Result<()> {
    for path in [
        "/proc/sys/net/ipv6/conf/all/disable_ipv6",
        "/proc/sys/net/ipv6/conf/default/disable_ipv6",
    ] {
        if ns.run(|| Ok(std::path::Path::new(path).exists()))? {
            ns.write(path, "1")?;
        }
    }
    Ok(())
}

fn device(rtnl: &mut Rtnl, name: &str) -> Result<Device> {
    let (index, mac) = rtnl.link(name)?;
    Ok(Device {
        name: name.to_string(),
        index,
        mac,
    })
}

/// The /32 route the host uses to reach a pod.
pub fn pod_route(pod_ip: Ipv4Addr, via: &Device) -> Route {
    Route {
        dst: pod_ip,
        prefix: 32,
        oif: via.index,
        gateway: None,
    }
}

impl Node {
    /// Builds the node. `run_id` goes into the host-side device names so a report
    /// (and anyone looking at a live run) can tell whose devices these are.
    pub fn build(run_id: &str) -> Result<Self> {
        let short: String = run_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(6)
            .collect();
        let host = NetNs::new("host")?;
        disable_ipv6(&host)?;
        let mut host_rtnl = host.run(Rtnl::new)?;
        for path in [
            "/proc/sys/net/ipv4/conf/all/rp_filter",
            "/proc/sys/net/ipv4/conf/default/rp_filter",
        ] {
            host.write(path, "0")?;
        }
        host.write("/proc/sys/net/ipv4/ip_forward", "0")?;
        let lo = device(&mut host_rtnl, "lo")?;
        host_rtnl.set_up(lo.index)?;
        host_rtnl.add_address(lo.index, NODE_IP, 32)?;

        host_rtnl.add_veth("cilium_host", "cilium_net", None)?;
        let cilium_host = device(&mut host_rtnl, "cilium_host")?;
        let cilium_net = device(&mut host_rtnl, "cilium_net")?;
        host_rtnl.add_address(cilium_host.index, GATEWAY_IP, 32)?;
        for dev in [&cilium_host, &cilium_net] {
            host_rtnl.set_up(dev.index)?;
        }

        let mut pods = Vec::with_capacity(2);
        for (i, ip) in POD_IPS.into_iter().enumerate() {
            let letter = (b'a' + i as u8) as char;
            let ns = NetNs::new(&format!("pod-{letter}"))?;
            disable_ipv6(&ns)?;
            let lxc_name = format!("lxc{short}{letter}");
            host_rtnl.add_veth(&lxc_name, "eth0", Some(std::os::fd::AsFd::as_fd(&ns)))?;
            let lxc = device(&mut host_rtnl, &lxc_name)?;
            host_rtnl.set_up(lxc.index)?;

            let mut rtnl = ns.run(Rtnl::new)?;
            let lo = device(&mut rtnl, "lo")?;
            rtnl.set_up(lo.index)?;
            let eth0 = device(&mut rtnl, "eth0")?;
            rtnl.add_address(eth0.index, ip, 32)?;
            rtnl.set_up(eth0.index)?;
            rtnl.replace_route(&Route {
                dst: GATEWAY_IP,
                prefix: 32,
                oif: eth0.index,
                gateway: None,
            })?;
            rtnl.replace_route(&Route {
                dst: Ipv4Addr::UNSPECIFIED,
                prefix: 0,
                oif: eth0.index,
                gateway: Some(GATEWAY_IP),
            })?;
            rtnl.add_neighbour(eth0.index, GATEWAY_IP, lxc.mac)?;

            host_rtnl.replace_route(&pod_route(ip, &lxc))?;
            host_rtnl.add_neighbour(lxc.index, ip, eth0.mac)?;
            pods.push(Pod {
                ns,
                rtnl,
                ip,
                eth0,
                lxc,
            });
        }
        let pods: [Pod; 2] = pods
            .try_into()
            .map_err(|_| anyhow::anyhow!("two pods"))
            .context("build pods")?;
        // A veth whose carrier just came on drops everything (noop qdisc) until
        // linkwatch activates it; under load that is late enough to eat a burst.
        // Wait here for every namespace, not only those a socket is bound in: the
        // redirect-peer control transmits from the host side of pod B's veth.
        for ns in [&host, &pods[0].ns, &pods[1].ns] {
            ns.run(|| crate::traffic::await_links_operational(crate::traffic::LINK_READY_TIMEOUT))
                .with_context(|| format!("links of ns {} not operational", ns.name()))?;
        }
        for ns in [&host, &pods[0].ns, &pods[1].ns] {
            crate::triage::register(ns);
        }
        Ok(Self {
            host,
            host_rtnl,
            cilium_host,
            cilium_net,
            pods,
        })
    }
}
