//! Kernel counters read from inside a namespace: they show where packets went
//! (forwarded by the host? transmitted by a veth?) without touching them.

use crate::netns::NetNs;
use anyhow::{Context, Result, bail};

/// Packet counters of one device, from `/proc/thread-self/net/dev`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DevCounters {
    pub rx_packets: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
}

pub fn dev_counters(ns: &NetNs, device: &str) -> Result<DevCounters> {
    let text = ns.read_to_string("/proc/thread-self/net/dev")?;
    parse_dev(&text, device).with_context(|| format!("counters of {device} in ns {}", ns.name()))
}

fn parse_dev(text: &str, device: &str) -> Result<DevCounters> {
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() != device {
            continue;
        }
        let fields: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        if fields.len() < 10 {
            bail!("short line in /proc/net/dev: {line}");
        }
        return Ok(DevCounters {
            rx_packets: fields[1],
            rx_dropped: fields[3],
            tx_packets: fields[9],
        });
    }
    bail!("no device {device} in /proc/net/dev")
}

/// Everything a namespace counts, read at one moment on one thread: its devices and
/// its IPv4, IPv6 and UDP MIBs. Hop accounting reads each namespace on a path once
/// per snapshot.
pub struct NsCounters {
    ns: String,
    dev: String,
    snmp: String,
    netstat: String,
    /// `/proc/net/snmp6`; empty on a kernel without IPv6.
    snmp6: String,
}

impl NsCounters {
    pub fn read(ns: &NetNs) -> Result<Self> {
        let read =
            |path: &str| std::fs::read_to_string(path).with_context(|| format!("read {path}"));
        ns.run(|| {
            Ok(Self {
                ns: ns.name().to_string(),
                dev: read("/proc/thread-self/net/dev")?,
                snmp: read("/proc/thread-self/net/snmp")?,
                netstat: read("/proc/thread-self/net/netstat")?,
                snmp6: match std::fs::read_to_string("/proc/thread-self/net/snmp6") {
                    Ok(text) => text,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                    Err(e) => return Err(e).context("read /proc/thread-self/net/snmp6"),
                },
            })
        })
    }

    /// The namespace's name, as [`NetNs::name`] gives it.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    pub fn device(&self, device: &str) -> Result<DevCounters> {
        parse_dev(&self.dev, device)
            .with_context(|| format!("counters of {device} in ns {}", self.ns))
    }

    /// A MIB counter: `Ip`/`IpExt`/`Udp` groups from `/proc/net/snmp` and
    /// `netstat`, the IPv6 groups `Ip6`/`Udp6` from `/proc/net/snmp6` (where the
    /// counter is one `Ip6InReceives 5` line).
    pub fn mib(&self, group: &str, field: &str) -> Result<u64> {
        if group.ends_with('6') {
            return parse_snmp6(&self.snmp6, &format!("{group}{field}")).with_context(|| {
                format!(
                    "no {group}{field} in /proc/net/snmp6 of ns {} (a kernel without IPv6?)",
                    self.ns
                )
            });
        }
        parse_snmp(&self.snmp, group, field)
            .or_else(|| parse_snmp(&self.netstat, group, field))
            .with_context(|| {
                format!(
                    "no {group}:{field} in /proc/net/snmp or netstat of ns {}",
                    self.ns
                )
            })
    }
}

/// `/proc/net/snmp6`: one `Name value` pair per line.
fn parse_snmp6(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(name)).then(|| it.next()?.parse().ok())?
    })
}

fn parse_snmp(text: &str, group: &str, field: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let names = names.split_whitespace().skip(1);
        let values = values.split_whitespace().skip(1);
        if let Some((_, v)) = names.zip(values).find(|(n, _)| *n == field) {
            return v.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\n  eth0:     840      12    0    2    0     0          0         0      420       6    0    0    0     0       0          0\n";
        assert_eq!(
            parse_dev(text, "eth0").unwrap(),
            DevCounters {
                rx_packets: 12,
                rx_dropped: 2,
                tx_packets: 6
            }
        );
        assert!(parse_dev(text, "eth1").is_err());
    }

    #[test]
    fn parses_snmp_pairs() {
        let text = "Ip: Forwarding DefaultTTL InReceives ForwDatagrams\nIp: 2 64 10 3\nUdp: InDatagrams NoPorts\nUdp: 7 1\n";
        assert_eq!(parse_snmp(text, "Ip", "ForwDatagrams"), Some(3));
        assert_eq!(parse_snmp(text, "Udp", "NoPorts"), Some(1));
        assert_eq!(parse_snmp(text, "Ip", "Nope"), None);
    }

    #[test]
    fn parses_snmp6_lines() {
        let text = "Ip6InReceives                   \t7\nIp6OutForwDatagrams             \t0\nUdp6InDatagrams                 \t5\n";
        assert_eq!(parse_snmp6(text, "Ip6InReceives"), Some(7));
        assert_eq!(parse_snmp6(text, "Udp6InDatagrams"), Some(5));
        assert_eq!(parse_snmp6(text, "Ip6In"), None);
    }
}
