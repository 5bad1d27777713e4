//! The scrub checks' topology: a host namespace that hands packets carrying
//! state (a conntrack entry, a route, an skb extension) into a pod namespace,
//! once through `bpf_redirect_peer` and once through a path that does not scrub.
//!
//! ```text
//!  remote (10.43.0.2/24)            host namespace                          pod (lo 10.43.0.1/32)
//!  eth0 ── veth ── rmt<run>  ──port── br0 (10.43.0.1/24) ─ passthru macvlan ─▶ mv0  (10.43.1.3/32)
//!                                     lo (10.43.9.9/32)
//!                                     lxc<run>s ──────────── veth ───────────▶ eth0 (10.43.1.2/32)
//! ```
//!
//! Two sources of state, each measured on this kernel (`../shared/notes`, "Making
//! the scrub observable"):
//! - *bridged*: the remote sends to br0's address. With `bridge-nf-call-iptables`
//!   on, br_netfilter runs the host's netfilter hooks on the bridged frame, so it
//!   reaches br0's tc ingress with a conntrack entry (tagged with
//!   [`HOST_CT_MARK`] by the host's nftables) and the bridge-netfilter skb
//!   extension. The pod has br0's address on its `lo`, so it delivers the packet
//!   whichever path brought it.
//! - *local*: the host sends to [`SOURCE_ONLY_IP`], an address only the host has
//!   (on its `lo`). The packet reaches lo's tc ingress with the host's route to
//!   that local address attached. The pod does not have it: a pod that re-routes
//!   the packet drops it (`InNoRoutes`), one that reuses the host's route delivers it.
//!
//! The non-scrubbing path into the pod is the passthru macvlan on br0: its
//! rx handler hands what br0 receives to `mv0` with only `skb->dev` changed.
//! Local packets reach it through a `mirred` ingress redirect from lo to br0
//! (mirred resets conntrack, keeps the route). Everything lives in the
//! namespaces, so it all goes with them, nftables tables included.

use crate::netlink::Rtnl;
use crate::netns::NetNs;
use crate::nft::{self, Chain, Match, Nft, Rule, Statement, Table};
use crate::topology::Device;
use crate::topology::{device, disable_ipv6};
use anyhow::{Context, Result, bail};
use conformance_ebpf_common::PROBE_PORT;
use std::cell::RefCell;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsFd;

pub const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 2);
/// br0's address in the host, and on the pod's `lo`.
pub const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 1);
/// Local in the host only.
pub const SOURCE_ONLY_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 9, 9);
const POD_ETH0_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 1, 2);
const POD_MV0_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 1, 3);
/// The ct mark the host's nftables puts on the check's flow.
pub const HOST_CT_MARK: u32 = 0x5c4b_00c7;
/// The nftables table the suite creates in the host and the pod.
pub const TABLE: &str = "cc-scrub";
/// Priority of the `mirred` filter on lo: after the hook, whatever its mode.
const MIRRED_PRIO: u16 = 0xfff0;

pub struct ScrubNode {
    pub remote: NetNs,
    pub host: NetNs,
    pub pod: NetNs,
    host_rtnl: Rtnl,
    host_nft: RefCell<Nft>,
    pod_nft: RefCell<Nft>,
    pub br0: Device,
    /// The bridge port facing the remote.
    pub port: Device,
    /// The host side of the pod's veth: the peer redirect's target.
    pub lxc: Device,
    pub pod_eth0: Device,
    pub pod_mv0: Device,
    /// The pod's socket on `0.0.0.0:PROBE_PORT`.
    pub rx: UdpSocket,
}

impl ScrubNode {
    pub fn build(run_id: &str) -> Result<Self> {
        let short: String = run_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(6)
            .collect();
        let remote = NetNs::new("scrub-remote")?;
        let host = NetNs::new("scrub-host")?;
        let pod = NetNs::new("scrub-pod")?;
        let mut remote_rtnl = remote.run(Rtnl::new)?;
        let mut host_rtnl = host.run(Rtnl::new)?;
        let mut pod_rtnl = pod.run(Rtnl::new)?;
        for ns in [&remote, &host, &pod] {
            disable_ipv6(ns)?;
        }
        let (port_name, lxc_name) = (format!("rmt{short}"), format!("lxc{short}s"));

        // The wire: remote eth0 <-> the host's bridge port.
        host_rtnl.add_veth(&port_name, "eth0", Some(remote.as_fd()))?;
        host_rtnl.add_link_kind("br0", "bridge")?;
        let br0 = device(&mut host_rtnl, "br0")?;
        let port = device(&mut host_rtnl, &port_name)?;
        host_rtnl.set_master(port.index, br0.index)?;
        // The pod's veth, and the passthru macvlan on br0 moved into the pod.
        host_rtnl.add_veth(&lxc_name, "eth0", Some(pod.as_fd()))?;
        let lxc = device(&mut host_rtnl, &lxc_name)?;
        host_rtnl
            .add_macvlan_passthru("mv0", br0.index, pod.as_fd())
            .context("the scrub checks' non-scrubbing path needs macvlan")?;

        let (lo_host, _) = host_rtnl.link("lo")?;
        host_rtnl.set_up(lo_host)?;
        host_rtnl.add_address(lo_host, SOURCE_ONLY_IP, 32)?;
        host_rtnl.add_address(br0.index, BRIDGE_IP, 24)?;
        for dev in [&port, &br0, &lxc] {
            host_rtnl.set_up(dev.index)?;
        }
        // br_netfilter: the host's netfilter hooks see bridged IPv4 frames.
        let call = "/proc/sys/net/bridge/bridge-nf-call-iptables";
        if !host.run(|| Ok(std::path::Path::new(call).exists()))? {
            bail!(
                "no {call} in the host namespace: this kernel has no br_netfilter (CONFIG_BRIDGE_NETFILTER), or its module is not loaded; the bridged source of the scrub checks needs it"
            );
        }
        host.write(call, "1")?;

        // A bridge takes its MAC from its ports: read it now they are there.
        let br0 = device(&mut host_rtnl, "br0")?;

        let (lo_r, _) = remote_rtnl.link("lo")?;
        remote_rtnl.set_up(lo_r)?;
        let remote_eth0 = device(&mut remote_rtnl, "eth0")?;
        remote_rtnl.add_address(remote_eth0.index, REMOTE_IP, 24)?;
        remote_rtnl.set_up(remote_eth0.index)?;
        remote_rtnl.add_neighbour(remote_eth0.index, BRIDGE_IP, br0.mac)?;

        let (lo_p, _) = pod_rtnl.link("lo")?;
        pod_rtnl.set_up(lo_p)?;
        pod_rtnl.add_address(lo_p, BRIDGE_IP, 32)?;
        let pod_eth0 = device(&mut pod_rtnl, "eth0")?;
        let pod_mv0 = device(&mut pod_rtnl, "mv0")?;
        pod_rtnl.add_address(pod_eth0.index, POD_ETH0_IP, 32)?;
        pod_rtnl.add_address(pod_mv0.index, POD_MV0_IP, 32)?;
        pod_rtnl.set_up(pod_eth0.index)?;
        pod_rtnl.set_up(pod_mv0.index)?;
        // The pod has no route back to the senders: nothing may drop them for that.
        for conf in ["all", "default", "eth0", "mv0"] {
            pod.write(&format!("/proc/sys/net/ipv4/conf/{conf}/rp_filter"), "0")?;
        }

        let mut host_nft = host.run(Nft::new)?;
        let mut pod_nft = pod.run(Nft::new)?;
        host_nft
            .apply(&host_table())
            .context("nftables in the host namespace")?;
        pod_nft
            .apply(&pod_table())
            .context("nftables in the pod namespace")?;
        let rx = crate::traffic::bind(&pod, Ipv4Addr::UNSPECIFIED, PROBE_PORT)?;
        Ok(Self {
            remote,
            host,
            pod,
            host_rtnl,
            host_nft: RefCell::new(host_nft),
            pod_nft: RefCell::new(pod_nft),
            br0,
            port,
            lxc,
            pod_eth0,
            pod_mv0,
            rx,
        })
    }

    /// A socket in the remote that sends to br0's address.
    pub fn remote_sender(&self) -> Result<UdpSocket> {
        crate::traffic::bind(&self.remote, REMOTE_IP, PROBE_PORT)
    }

    /// A socket in the host bound to [`SOURCE_ONLY_IP`], which it sends to.
    pub fn host_sender(&self) -> Result<UdpSocket> {
        crate::traffic::bind(&self.host, SOURCE_ONLY_IP, PROBE_PORT + 1)
    }

    /// The `mirred` filter that hands what lo receives to br0's ingress: the
    /// local source's non-scrubbing path (lo's clsact is made here if the hook
    /// did not make it).
    pub fn mirror_lo_to_bridge(&mut self) -> Result<()> {
        self.host.run(|| {
            if let Err(e) = aya::programs::tc::qdisc_add_clsact("lo") {
                let text = e.to_string();
                if !text.contains("exists") && !text.contains("Exclusivity") {
                    return Err(anyhow::anyhow!(e)).context("add clsact qdisc on lo");
                }
            }
            Ok(())
        })?;
        let (lo, _) = self.host_rtnl.link("lo")?;
        self.host_rtnl
            .add_mirred_ingress_redirect(lo, MIRRED_PRIO, self.br0.index)
    }

    /// The nftables counters, by rule label, of the host and of the pod.
    pub fn counters(&self) -> Result<NftCounts> {
        let host = self.host_nft.borrow_mut().counters(TABLE)?;
        let pod = self.pod_nft.borrow_mut().counters(TABLE)?;
        let get = |rows: &[nft::RuleCount], label: &str| {
            rows.iter()
                .filter(|r| r.label == label)
                .map(|r| r.packets)
                .sum::<u64>()
        };
        Ok(NftCounts {
            tagged: get(&host, "tag"),
            untracked: get(&pod, "untracked"),
            carried: get(&pod, "carried"),
            tracked: get(&pod, "tracked"),
        })
    }
}

/// The nftables counters the scrub checks read (packets of the check's flow).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NftCounts {
    /// Host, prerouting after conntrack: bridged packets given [`HOST_CT_MARK`].
    pub tagged: u64,
    /// Pod, prerouting before its conntrack (raw priority): no conntrack entry.
    pub untracked: u64,
    /// Pod, same place: a conntrack entry with the host's mark.
    pub carried: u64,
    /// Pod, prerouting after its conntrack: tracked (its own entry or a carried one).
    pub tracked: u64,
}

impl NftCounts {
    pub fn delta(self, before: Self) -> Self {
        Self {
            tagged: self.tagged - before.tagged,
            untracked: self.untracked - before.untracked,
            carried: self.carried - before.carried,
            tracked: self.tracked - before.tracked,
        }
    }

    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "host_ct_mark_set": self.tagged,
            "pod_raw_ct_state_invalid": self.untracked,
            "pod_raw_ct_mark_host": self.carried,
            "pod_tracked_after_conntrack": self.tracked,
        })
    }
}

fn host_table() -> Table {
    Table {
        name: TABLE.into(),
        chains: vec![Chain {
            name: "tag",
            hook: nft::Hook::Prerouting,
            priority: -150,
            rules: vec![Rule {
                label: "tag",
                matches: vec![Match::UdpDport(PROBE_PORT)],
                statements: vec![Statement::SetCtMark(HOST_CT_MARK)],
            }],
        }],
    }
}

fn pod_table() -> Table {
    Table {
        name: TABLE.into(),
        chains: vec![
            Chain {
                name: "raw",
                hook: nft::Hook::Prerouting,
                priority: -300,
                rules: vec![
                    Rule {
                        label: "untracked",
                        matches: vec![
                            Match::UdpDport(PROBE_PORT),
                            Match::CtState(nft::CT_STATE_INVALID),
                        ],
                        statements: vec![],
                    },
                    Rule {
                        label: "carried",
                        matches: vec![Match::UdpDport(PROBE_PORT), Match::CtMark(HOST_CT_MARK)],
                        statements: vec![],
                    },
                ],
            },
            Chain {
                name: "tracked",
                hook: nft::Hook::Prerouting,
                priority: 0,
                rules: vec![Rule {
                    label: "tracked",
                    matches: vec![
                        Match::UdpDport(PROBE_PORT),
                        Match::CtState(nft::CT_STATE_NEW | nft::CT_STATE_ESTABLISHED),
                    ],
                    statements: vec![],
                }],
            },
        ],
    }
}
