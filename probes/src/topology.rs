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
//!
//! IPv6 is off everywhere unless a check asks for a dual-stack node
//! ([`Node::build_for`] with [`Family::V6`], the checks' `ipv6` variants): then
//! every address, route and neighbour entry above has its IPv6 twin in the ULA
//! `fd00:42::/64` (pods `fd00:42::11` and `fd00:42::12`, gateway `fd00:42::1`,
//! all `/128`, `default via fd00:42::1 onlink`, a `/128` per pod on the host side)
//! with the node IP `fd00:198:18::10/128` on `lo`, IPv6 forwarding off. Every
//! IPv6 address is added `nodad` and every device gets no link-local address and
//! sends no router solicitation, so nothing waits for DAD. What IPv6 still sends
//! by itself are the MLD reports for each address's solicited-node group (from
//! pod A's and pod B's eth0 and from `cilium_host`): they would add to the very
//! counters the hop accounting reads (pod A eth0 tx, the host's `Ip6 InReceives`).
//! So MLD runs in v1 mode with a 1 ms unsolicited report interval, and the build
//! waits until no group has a report pending (`/proc/net/igmp6`) before any
//! check sends: from then on the namespaces are silent.

use crate::netlink::{Mac, Route, Route6, Rtnl};
use crate::netns::NetNs;
use anyhow::{Context, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 1);
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const POD_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 42, 0, 11), Ipv4Addr::new(10, 42, 0, 12)];

pub const GATEWAY_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x42, 0, 0, 0, 0, 0, 0x1);
pub const NODE_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 0x10);
const POD_IP6S: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0x42, 0, 0, 0, 0, 0, 0x11),
    Ipv6Addr::new(0xfd00, 0x42, 0, 0, 0, 0, 0, 0x12),
];

/// The IP family a check's traffic uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The node IP of this family (on the host namespace's `lo`).
    pub fn node_ip(self) -> IpAddr {
        match self {
            Self::V4 => NODE_IP.into(),
            Self::V6 => NODE_IP6.into(),
        }
    }

    /// The pods' gateway of this family.
    pub fn gateway(self) -> IpAddr {
        match self {
            Self::V4 => GATEWAY_IP.into(),
            Self::V6 => GATEWAY_IP6.into(),
        }
    }

    /// `IPv4` / `IPv6`, for evidence.
    pub fn name(self) -> &'static str {
        match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        }
    }
}

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
    /// The pod's IPv6 address on a dual-stack node.
    pub ip6: Option<Ipv6Addr>,
    /// `eth0` inside the pod.
    pub eth0: Device,
    /// The host-side end of the pod's veth (`lxc...`), in the host namespace.
    pub lxc: Device,
}

pub struct Node {
    /// [`Family::V6`]: dual-stack (IPv6 next to IPv4); [`Family::V4`]: IPv6 off.
    pub family: Family,
    pub host: NetNs,
    pub host_rtnl: Rtnl,
    pub cilium_host: Device,
    pub cilium_net: Device,
    pub pods: [Pod; 2],
}

/// Turns IPv6 off in a namespace before its devices exist: link-up router
/// solicitations and MLD reports would otherwise show up in the packet counters
/// the checks use as evidence. A kernel without IPv6 has nothing to turn off.
pub(crate) fn disable_ipv6(ns: &NetNs) -> Result<()> {
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

/// For a dual-stack node, before its devices exist: IPv6 on, but every device
/// gets no link-local address (`addr_gen_mode` 1, none), accepts no router
/// advertisement, sends no router solicitation and runs no DAD, so no device
/// sends anything by itself, and forwarding stays off. A kernel without IPv6
/// cannot build such a node: said in one line.
fn quiet_ipv6(ns: &NetNs) -> Result<()> {
    if !ns.run(|| Ok(std::path::Path::new("/proc/sys/net/ipv6").exists()))? {
        anyhow::bail!(
            "this kernel has no IPv6 (/proc/sys/net/ipv6 is missing in a new network namespace): the IPv6 variants cannot run"
        );
    }
    for conf in ["all", "default"] {
        for (key, value) in [
            ("disable_ipv6", "0"),
            ("addr_gen_mode", "1"),
            ("accept_ra", "0"),
            ("router_solicitations", "0"),
            ("accept_dad", "0"),
            ("forwarding", "0"),
            // MLDv1: a join's report goes out at once and its one repeat after
            // this interval (ms), so build() can wait until both are out.
            ("force_mld_version", "1"),
            ("mldv1_unsolicited_report_interval", "1"),
        ] {
            ns.write(&format!("/proc/sys/net/ipv6/conf/{conf}/{key}"), value)?;
        }
    }
    Ok(())
}

/// Waits, on the calling thread's namespace, until no multicast group has an MLD
/// report pending: `/proc/net/igmp6`'s flags column (`mca_flags`, hex) without
/// `MAF_TIMER_RUNNING` (0x01) on every line. The report is sent before the flag
/// is cleared, so afterwards nothing more leaves for a group already joined.
pub(crate) fn await_mld_quiet(timeout: std::time::Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string("/proc/thread-self/net/igmp6")
            .context("read /proc/thread-self/net/igmp6")?;
        let pending: Vec<String> = mld_pending(&text).collect();
        if pending.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "MLD reports still pending after {timeout:?} for {pending:?}: the namespace would not be quiet for the hop accounting"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// `device group` of each `/proc/net/igmp6` line (`idx dev group users flags
/// timer`) whose report timer runs.
fn mld_pending(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let flags = u32::from_str_radix(f.get(4)?, 16).ok()?;
        (flags & 0x01 != 0).then(|| format!("{} {}", f[1], f[2]))
    })
}

/// Waits until each of `addrs` has its route in table local (255) of `rtnl`'s
/// namespace: the kernel's own sign that a datagram to it is delivered there.
fn await_local_routes(rtnl: &mut Rtnl, addrs: &[Ipv6Addr], ns: &str) -> Result<()> {
    const RT_TABLE_LOCAL: u32 = 255;
    let deadline = std::time::Instant::now() + crate::traffic::LINK_READY_TIMEOUT;
    loop {
        let routes = rtnl.routes()?;
        let missing: Vec<&Ipv6Addr> = addrs
            .iter()
            .filter(|a| {
                !routes.iter().any(|r| {
                    r.table == RT_TABLE_LOCAL && r.prefix == 128 && r.dst == IpAddr::V6(**a)
                })
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "ns {ns}: {missing:?} still without a local route after {:?}: the kernel would not deliver to them",
                crate::traffic::LINK_READY_TIMEOUT
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The /128 route the host uses to reach a pod over IPv6.
pub fn pod_route6(pod_ip: Ipv6Addr, via: &Device) -> Route6 {
    Route6 {
        dst: pod_ip,
        prefix: 128,
        oif: via.index,
        gateway: None,
    }
}

impl Pod {
    /// The pod's address in `family`; IPv6 only on a dual-stack node.
    pub fn addr(&self, family: Family) -> Result<IpAddr> {
        match family {
            Family::V4 => Ok(self.ip.into()),
            Family::V6 => self
                .ip6
                .map(IpAddr::from)
                .ok_or_else(|| anyhow::anyhow!("pod has no IPv6 address: not a dual-stack node")),
        }
    }
}

/// A device's index and MAC by name, through `rtnl` (in the device's namespace).
pub(crate) fn device(rtnl: &mut Rtnl, name: &str) -> Result<Device> {
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
        Self::build_for(run_id, Family::V4)
    }

    /// [`Node::build`]; with [`Family::V6`] a dual-stack node (see the module docs).
    pub fn build_for(run_id: &str, family: Family) -> Result<Self> {
        let v6 = family == Family::V6;
        let quiet = |ns: &NetNs| if v6 { quiet_ipv6(ns) } else { disable_ipv6(ns) };
        let short: String = run_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(6)
            .collect();
        let host = NetNs::new("host")?;
        quiet(&host)?;
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
        if v6 {
            host_rtnl.add_address(lo.index, NODE_IP6, 128)?;
        }

        host_rtnl.add_veth("cilium_host", "cilium_net", None)?;
        let cilium_host = device(&mut host_rtnl, "cilium_host")?;
        let cilium_net = device(&mut host_rtnl, "cilium_net")?;
        host_rtnl.add_address(cilium_host.index, GATEWAY_IP, 32)?;
        if v6 {
            host_rtnl.add_address(cilium_host.index, GATEWAY_IP6, 128)?;
        }
        for dev in [&cilium_host, &cilium_net] {
            host_rtnl.set_up(dev.index)?;
        }

        let mut pods = Vec::with_capacity(2);
        for (i, ip) in POD_IPS.into_iter().enumerate() {
            let letter = (b'a' + i as u8) as char;
            let ns = NetNs::new(&format!("pod-{letter}"))?;
            quiet(&ns)?;
            let ip6 = v6.then_some(POD_IP6S[i]);
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
            if let Some(ip6) = ip6 {
                rtnl.add_address(eth0.index, ip6, 128)?;
                rtnl.replace_route(&Route6 {
                    dst: GATEWAY_IP6,
                    prefix: 128,
                    oif: eth0.index,
                    gateway: None,
                })?;
                rtnl.replace_route(&Route6 {
                    dst: Ipv6Addr::UNSPECIFIED,
                    prefix: 0,
                    oif: eth0.index,
                    gateway: Some(GATEWAY_IP6),
                })?;
                rtnl.add_neighbour(eth0.index, GATEWAY_IP6, lxc.mac)?;
                host_rtnl.replace_route(&pod_route6(ip6, &lxc))?;
                host_rtnl.add_neighbour(lxc.index, ip6, eth0.mac)?;
            }
            pods.push(Pod {
                ns,
                rtnl,
                ip,
                ip6,
                eth0,
                lxc,
            });
        }
        let mut pods: [Pod; 2] = pods
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
        if v6 {
            // An IPv6 address is local only once addrconf's work queue has added
            // its route to table local, even with nodad; under load that can come
            // after the first datagrams, which pod B then drops (InAddrErrors).
            await_local_routes(&mut host_rtnl, &[NODE_IP6, GATEWAY_IP6], "host")?;
            for pod in &mut pods {
                if let Some(ip6) = pod.ip6 {
                    await_local_routes(&mut pod.rtnl, &[ip6], pod.ns.name())?;
                }
            }
            for ns in [&host, &pods[0].ns, &pods[1].ns] {
                ns.run(|| await_mld_quiet(crate::traffic::LINK_READY_TIMEOUT))
                    .with_context(|| format!("ns {}", ns.name()))?;
            }
        }
        for ns in [&host, &pods[0].ns, &pods[1].ns] {
            crate::triage::register(ns);
        }
        Ok(Self {
            family,
            host,
            host_rtnl,
            cilium_host,
            cilium_net,
            pods,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_groups_with_a_running_report_timer_are_pending() {
        let text = "1    lo              ff020000000000000000000000000001     1 0000000C 0\n\
                    2    eth0            ff0200000000000000000001ff000011     1 00000007 3\n\
                    2    eth0            ff020000000000000000000000000001     1 0000000C 0\n";
        assert_eq!(
            mld_pending(text).collect::<Vec<_>>(),
            ["eth0 ff0200000000000000000001ff000011"]
        );
        assert_eq!(mld_pending("").count(), 0);
    }
}
