//! Hop-by-hop accounting of a delivery leg. "0/5 arrived" does not say where the
//! packets went; the nix-2hd incident needed exactly that. A [`Path`] lists, in path
//! order, the places that count the check's packets (hook counts, device rx/tx, the
//! IP and UDP MIBs of a namespace); two snapshots of it give per-hop deltas, which a
//! check completes with what only it knows (what the sender accepted, what the
//! socket received) into an [`Accounting`]. Its [`Accounting::loss`] names the last
//! hop that saw the burst and the first that did not, plus the drop counters that moved.

use crate::counters::NsCounters;
use crate::hooks::Hook;
use crate::netns::NetNs;
use crate::topology::Family;
use anyhow::Result;
use conformance_contract::catalogue::{Failure, HOOK_NOT_RUN, NOT_DELIVERED};
use serde_json::{Value, json};

/// What a hop counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The burst must pass here: a count below it is where packets went missing.
    Path,
    /// A drop counter that stays still on a healthy path: when it moves, it says why.
    Loss,
}

/// Where a hop's count comes from.
enum Meter<'a> {
    /// The check's packets a hook matched.
    Matched(&'a Hook),
    /// Matched packets the hook's redirect helper accepted.
    Redirected(&'a Hook),
    Rx(&'a NetNs, &'a str),
    Tx(&'a NetNs, &'a str),
    Mib(&'a NetNs, &'static str, &'static str),
}

struct Hop<'a> {
    at: String,
    role: Role,
    /// What the check reports when this is the first hop the burst is missing at.
    failure: &'static Failure,
    meter: Meter<'a>,
}

/// The metered hops of one direction of a leg, in path order.
#[derive(Default)]
pub struct Path<'a> {
    hops: Vec<Hop<'a>>,
}

/// The hops' raw counts at one moment.
pub struct Snapshot(Vec<u64>);

impl<'a> Path<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    fn hop(mut self, at: String, role: Role, failure: &'static Failure, meter: Meter<'a>) -> Self {
        self.hops.push(Hop {
            at,
            role,
            failure,
            meter,
        });
        self
    }

    /// The check's own hook: a burst missing here means the program did not run on it.
    pub fn hook(self, hook: &'a Hook) -> Self {
        self.hop(
            format!("hook {} matched", hook.label),
            Role::Path,
            &HOOK_NOT_RUN,
            Meter::Matched(hook),
        )
    }

    /// What the check's hook redirected (the helper accepted the call).
    pub fn redirected(self, hook: &'a Hook) -> Self {
        self.hop(
            format!("hook {} redirected", hook.label),
            Role::Path,
            &NOT_DELIVERED,
            Meter::Redirected(hook),
        )
    }

    /// A passing hook that only watches: a burst missing here was lost before it.
    pub fn observer(self, hook: &'a Hook) -> Self {
        self.hop(
            format!("observer {} matched", hook.label),
            Role::Path,
            &NOT_DELIVERED,
            Meter::Matched(hook),
        )
    }

    /// `who` names the device for people, e.g. "pod A eth0".
    pub fn rx(self, ns: &'a NetNs, device: &'a str, who: &str) -> Self {
        self.hop(
            format!("{who} rx"),
            Role::Path,
            &NOT_DELIVERED,
            Meter::Rx(ns, device),
        )
    }

    pub fn tx(self, ns: &'a NetNs, device: &'a str, who: &str) -> Self {
        self.hop(
            format!("{who} tx"),
            Role::Path,
            &NOT_DELIVERED,
            Meter::Tx(ns, device),
        )
    }

    /// A namespace's IPv4 and UDP receive path up to the socket layer, with the drop
    /// counters that explain a loss on it. `who` names the namespace, e.g. "pod B".
    pub fn stack(self, ns: &'a NetNs, who: &str) -> Self {
        self.stack_of(ns, who, Family::V4)
    }

    /// [`Path::stack`] for the traffic's family: for IPv6, `Ip6 InReceives`, the
    /// drops `Ip6 InAddrErrors`, `InNoRoutes`, `InDiscards` and `Udp6 InErrors`,
    /// `NoPorts`, `RcvbufErrors`, then `Udp6 InDatagrams` (`/proc/net/snmp6`).
    pub fn stack_of(self, ns: &'a NetNs, who: &str, family: Family) -> Self {
        let path = |p: Self, group, field| {
            p.hop(
                format!("{who} {group} {field}"),
                Role::Path,
                &NOT_DELIVERED,
                Meter::Mib(ns, group, field),
            )
        };
        let loss = |p: Self, group, field| {
            p.hop(
                format!("{who} {group} {field}"),
                Role::Loss,
                &NOT_DELIVERED,
                Meter::Mib(ns, group, field),
            )
        };
        if family == Family::V6 {
            let p = path(self, "Ip6", "InReceives");
            let p = loss(p, "Ip6", "InAddrErrors");
            let p = loss(p, "Ip6", "InNoRoutes");
            let p = loss(p, "Ip6", "InDiscards");
            let p = loss(p, "Udp6", "InErrors");
            let p = loss(p, "Udp6", "NoPorts");
            let p = loss(p, "Udp6", "RcvbufErrors");
            // Counted when the application reads the datagram (udpv6_recvmsg).
            return path(p, "Udp6", "InDatagrams");
        }
        let p = path(self, "Ip", "InReceives");
        let p = loss(p, "Ip", "InAddrErrors");
        let p = loss(p, "IpExt", "InNoRoutes");
        let p = loss(p, "Udp", "InErrors");
        let p = loss(p, "Udp", "NoPorts");
        let p = loss(p, "Udp", "RcvbufErrors");
        // Counted when the application reads the datagram (udp_recvmsg).
        path(p, "Udp", "InDatagrams")
    }

    /// Reads every hop, each namespace once.
    pub fn read(&self) -> Result<Snapshot> {
        let mut namespaces: Vec<NsCounters> = Vec::new();
        let mut counts = Vec::with_capacity(self.hops.len());
        for hop in &self.hops {
            let count = match hop.meter {
                Meter::Matched(hook) => hook.counters()?.matched,
                Meter::Redirected(hook) => hook.counters()?.redirected,
                Meter::Rx(ns, dev) => of(&mut namespaces, ns)?.device(dev)?.rx_packets,
                Meter::Tx(ns, dev) => of(&mut namespaces, ns)?.device(dev)?.tx_packets,
                Meter::Mib(ns, group, field) => of(&mut namespaces, ns)?.mib(group, field)?,
            };
            counts.push(count);
        }
        Ok(Snapshot(counts))
    }

    /// Per-hop deltas between two snapshots of this path.
    pub fn figures(&self, before: &Snapshot, after: &Snapshot) -> Vec<Figure> {
        self.hops
            .iter()
            .zip(before.0.iter().zip(&after.0))
            .map(|(hop, (b, a))| Figure {
                at: hop.at.clone(),
                role: hop.role,
                count: a.saturating_sub(*b),
                failure: hop.failure,
                note: None,
            })
            .collect()
    }
}

/// `ns`'s counters from this snapshot, read on first use.
fn of<'n>(namespaces: &'n mut Vec<NsCounters>, ns: &NetNs) -> Result<&'n NsCounters> {
    let i = match namespaces.iter().position(|c| c.ns() == ns.name()) {
        Some(i) => i,
        None => {
            namespaces.push(NsCounters::read(ns)?);
            namespaces.len() - 1
        }
    };
    Ok(&namespaces[i])
}

/// One hop's count of a leg's packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    pub at: String,
    pub role: Role,
    pub count: u64,
    pub failure: &'static Failure,
    /// Why the count is short when the counting side knows (a send error).
    pub note: Option<String>,
}

impl Figure {
    /// A count the check knows itself: what a sender accepted, what a socket received.
    pub fn path(at: impl Into<String>, count: impl TryInto<u64>, note: Option<String>) -> Self {
        Self {
            at: at.into(),
            role: Role::Path,
            count: count.try_into().unwrap_or(u64::MAX),
            failure: &NOT_DELIVERED,
            note,
        }
    }

    fn text(&self, expected: u64) -> String {
        let mut t = match self.role {
            Role::Path => format!("{} {}/{expected}", self.at, self.count),
            Role::Loss => format!("{} +{}", self.at, self.count),
        };
        if let Some(note) = &self.note {
            t.push_str(&format!(" ({note})"));
        }
        t
    }
}

/// A leg's packets, hop by hop, in path order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounting {
    /// Packets the leg sent: what every path hop must count.
    pub expected: u64,
    pub figures: Vec<Figure>,
}

impl Accounting {
    pub fn new(expected: u32) -> Self {
        Self {
            expected: u64::from(expected),
            figures: Vec::new(),
        }
    }

    pub fn push(&mut self, figure: Figure) -> &mut Self {
        self.figures.push(figure);
        self
    }

    pub fn extend(&mut self, figures: Vec<Figure>) -> &mut Self {
        self.figures.extend(figures);
        self
    }

    fn first_missing(&self) -> Option<usize> {
        self.figures
            .iter()
            .position(|f| f.role == Role::Path && f.count < self.expected)
    }

    /// Every path hop counted the whole burst.
    pub fn complete(&self) -> bool {
        self.first_missing().is_none()
    }

    /// The failure the first hop missing the burst stands for.
    pub fn failure(&self) -> Option<&'static Failure> {
        self.first_missing().map(|i| self.figures[i].failure)
    }

    /// Drop counters that moved, e.g. "pod B Udp NoPorts +5".
    fn moved_losses(&self) -> Vec<String> {
        self.figures
            .iter()
            .filter(|f| f.role == Role::Loss && f.count > 0)
            .map(|f| f.text(self.expected))
            .collect()
    }

    /// Where the burst went missing, `None` when every hop counted it: the path hops
    /// up to the first short one, then between which hops it was lost and which
    /// drop counters moved.
    pub fn loss(&self) -> Option<String> {
        let i = self.first_missing()?;
        let missing = &self.figures[i];
        let hops: Vec<String> = self.figures[..=i]
            .iter()
            .filter(|f| f.role == Role::Path)
            .map(|f| f.text(self.expected))
            .collect();
        let last_seen = self.figures[..i].iter().rfind(|f| f.role == Role::Path);
        let seen_again = self.figures[i + 1..]
            .iter()
            .find(|f| f.role == Role::Path && f.count >= self.expected);
        let lost = self.expected - missing.count;
        let mut reason = hops.join("; ");
        match (seen_again, last_seen) {
            (Some(later), _) => reason.push_str(&format!(
                ": {lost} not counted at {} although {} counted {}",
                missing.at, later.at, later.count
            )),
            (None, Some(prev)) => reason.push_str(&format!(
                ": {lost} lost between {} and {}",
                prev.at, missing.at
            )),
            (None, None) => reason.push_str(&format!(": {lost} lost at {}", missing.at)),
        }
        let moved = self.moved_losses();
        if !moved.is_empty() {
            reason.push_str(&format!(" ({})", moved.join(", ")));
        }
        Some(reason)
    }

    /// One line either way: where the burst was lost, or that every hop counted it.
    pub fn summary(&self) -> String {
        self.loss().unwrap_or_else(|| {
            let mut s = format!(
                "all {} hops counted {}/{}",
                self.figures.iter().filter(|f| f.role == Role::Path).count(),
                self.expected,
                self.expected
            );
            let moved = self.moved_losses();
            if !moved.is_empty() {
                s.push_str(&format!(" ({})", moved.join(", ")));
            }
            s
        })
    }

    /// The ordered per-hop figures, for evidence.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.figures
                .iter()
                .map(|f| {
                    let mut v = json!({
                        "at": f.at,
                        "role": match f.role { Role::Path => "path", Role::Loss => "loss" },
                        "count": f.count,
                    });
                    if f.role == Role::Path {
                        v["of"] = json!(self.expected);
                    }
                    if let Some(note) = &f.note {
                        v["note"] = json!(note);
                    }
                    v
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(at: &str, role: Role, count: u64) -> Figure {
        Figure {
            at: at.into(),
            role,
            count,
            failure: &NOT_DELIVERED,
            note: None,
        }
    }

    fn pod_to_pod(b_eth0: u64, in_receives: u64, no_ports: u64, socket: u64) -> Accounting {
        let mut a = Accounting::new(5);
        a.push(Figure::path("pod A sent", 5u32, None));
        a.push(Figure {
            failure: &HOOK_NOT_RUN,
            ..fig("hook lxcXa ingress matched", Role::Path, 5)
        });
        a.push(fig("hook lxcXa ingress redirected", Role::Path, 5));
        a.push(fig("pod B eth0 rx", Role::Path, b_eth0));
        a.push(fig("pod B Ip InReceives", Role::Path, in_receives));
        a.push(fig("pod B Ip InAddrErrors", Role::Loss, 0));
        a.push(fig("pod B Udp NoPorts", Role::Loss, no_ports));
        a.push(Figure::path("pod B socket", socket, None));
        a
    }

    #[test]
    fn a_complete_burst_has_no_loss() {
        let a = pod_to_pod(5, 5, 0, 5);
        assert!(a.complete());
        assert_eq!(a.loss(), None);
        assert_eq!(a.failure(), None);
        assert_eq!(a.summary(), "all 6 hops counted 5/5");
    }

    #[test]
    fn names_the_last_hop_seen_the_first_missing_and_the_drop_counter() {
        let a = pod_to_pod(5, 5, 5, 0);
        assert_eq!(
            a.loss().unwrap(),
            "pod A sent 5/5; hook lxcXa ingress matched 5/5; hook lxcXa ingress redirected 5/5; \
             pod B eth0 rx 5/5; pod B Ip InReceives 5/5; pod B socket 0/5: \
             5 lost between pod B Ip InReceives and pod B socket (pod B Udp NoPorts +5)"
        );
        assert_eq!(a.failure(), Some(&NOT_DELIVERED));
    }

    #[test]
    fn a_partial_loss_counts_what_is_missing() {
        let a = pod_to_pod(3, 3, 0, 3);
        let loss = a.loss().unwrap();
        assert!(
            loss.ends_with(
                "pod B eth0 rx 3/5: 2 lost between hook lxcXa ingress redirected and pod B eth0 rx"
            ),
            "{loss}"
        );
    }

    #[test]
    fn a_hook_that_missed_packets_seen_after_it_did_not_run() {
        let mut a = Accounting::new(5);
        a.push(fig("lxcXa rx", Role::Path, 5));
        a.push(Figure {
            failure: &HOOK_NOT_RUN,
            ..fig("hook lxcXa ingress matched", Role::Path, 0)
        });
        a.push(Figure::path("host socket", 5u32, None));
        assert_eq!(a.failure(), Some(&HOOK_NOT_RUN));
        assert_eq!(
            a.loss().unwrap(),
            "lxcXa rx 5/5; hook lxcXa ingress matched 0/5: 5 not counted at hook lxcXa ingress matched although host socket counted 5"
        );
    }

    #[test]
    fn a_burst_never_sent_says_so_with_the_send_error() {
        let mut a = Accounting::new(5);
        a.push(Figure::path(
            "host sent",
            0u32,
            Some("Network is unreachable".into()),
        ));
        a.push(fig("lxcXa tx", Role::Path, 0));
        assert_eq!(
            a.loss().unwrap(),
            "host sent 0/5 (Network is unreachable): 5 lost at host sent"
        );
    }

    #[test]
    fn evidence_lists_every_hop_in_order() {
        let v = pod_to_pod(5, 5, 0, 5).to_json();
        let at: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["at"].as_str().unwrap())
            .collect();
        assert_eq!(at[0], "pod A sent");
        assert_eq!(at[7], "pod B socket");
        assert_eq!(v[5]["role"], "loss");
        assert_eq!(v[3]["of"], 5);
    }
}
