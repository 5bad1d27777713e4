//! The pod-level checks of the `cluster` target (`cluster.*` in the catalogue):
//! what the suite asks a client pod to do ([`ConnectPlan`], passed to
//! `probe connect --plan JSON`) and what an echo server answers ([`EchoReply`],
//! from `probe echo`).
//!
//! The client pods run only once the echo pods are Ready, so the plan names
//! real addresses (pod IPs, node IPs, the service's ClusterIP and NodePort).
//! Each check ends as one [`crate::Observation`] line on the client's stdout,
//! with its control; the suite appends those to the node's probe stream.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The prefix of every check a client pod runs; the node's probe never plans them.
pub const CLUSTER_PREFIX: &str = "cluster.";

/// Whether `check` is a pod-level check (run by the cluster target's client
/// pods, not by a probe).
pub fn is_pod_level(check: &str) -> bool {
    check.starts_with(CLUSTER_PREFIX)
}

/// Attempts per check (TCP: a connection each; UDP and DNS: a datagram each).
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// How long one attempt waits for its answer.
pub const DEFAULT_TIMEOUT_MS: u64 = 2000;

/// Everything one client pod does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectPlan {
    /// The client's own name (its pod), for reasons and evidence.
    pub client: String,
    /// The node it runs on.
    pub node: String,
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    pub checks: Vec<ConnectCheck>,
}

fn default_attempts() -> u32 {
    DEFAULT_ATTEMPTS
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// One (check, variant) and how the client tests it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectCheck {
    pub check: String,
    pub variant: String,
    /// Where the traffic goes, for reasons: "echo-1 on node b (pod IP)".
    pub description: String,
    pub target: ConnectTarget,
}

/// What a check sends, what counts as its answer, and its control: the same
/// traffic with the decisive step broken (a port nothing serves, a name that
/// does not exist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ConnectTarget {
    /// To an echo server: each attempt must be answered, with its token, by one
    /// of `expect_servers`. Control: the same host, `control_port`, where nothing
    /// serves: no attempt may be answered.
    Echo {
        protocol: Protocol,
        host: String,
        port: u16,
        control_port: u16,
        /// `EchoReply::server` values that count (a service may answer from any backend).
        expect_servers: Vec<String>,
    },
    /// A DNS A query to the pod's resolver (`/etc/resolv.conf`'s first
    /// nameserver): `name` must resolve to `expect_address`. Control:
    /// `control_name`, a name in the same zone nobody made, must not resolve.
    Dns {
        name: String,
        expect_address: String,
        control_name: String,
    },
    /// A burst of UDP datagrams to an observer (`probe observe`, in the echo
    /// pod's netns) whose TC hook on the pod's own eth0 ingress counts them
    /// before its stack does; the observer accounts for them hop by hop
    /// ([`ObserveReport`]). Sessions go over TCP to `session_port`. Control: the
    /// same burst with the same hook returning `TC_ACT_SHOT`.
    Deliver {
        /// The observer's pod, for reasons.
        observer: String,
        host: String,
        /// The UDP port the burst goes to (the hook matches it).
        port: u16,
        session_port: u16,
    },
}

/// What a sender asks the observer, one JSON line each over one TCP
/// connection: `arm`, then (after the burst) `report`. The connection is the
/// session: the observer runs one at a time, so one session's counts are its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ObserveRequest {
    /// Configure the hook for this burst (`drop`: the control's TC_ACT_SHOT) and
    /// take the "before" counts of the burst's family's stack (`ipv6`).
    Arm {
        token: String,
        drop: bool,
        #[serde(default)]
        ipv6: bool,
    },
    /// Of a burst of `burst` datagrams of the session's token, `sender`'s
    /// socket accepted `sent`: count where they went.
    Report {
        burst: u32,
        sent: u32,
        sender: String,
    },
}

/// The observer's answer to `arm`: ready, with where its hook is, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ObserveArmed {
    /// `eth0 ingress (tcx) in ns echo-0`; `None` with `error` set.
    pub hook: Option<String>,
    pub error: Option<String>,
}

/// The observer's account of one burst, from its own netns: the sender's count,
/// the hook on eth0 ingress, the pod's IP and UDP counters, the socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ObserveReport {
    pub observer: String,
    pub hook: String,
    /// Every path hop counted the whole burst.
    pub complete: bool,
    /// The failure code of the first hop that missed it.
    pub failure: Option<String>,
    /// Where it was lost: the hops up to the first short one, and between which.
    pub loss: Option<String>,
    /// One line either way.
    pub summary: String,
    /// Datagrams of this session the hook matched (the control's witness).
    pub matched: u64,
    /// Sequence numbers of this session's datagrams the socket received.
    pub delivered: Vec<u32>,
    /// The per-hop figures (`[{at, role, count, of}]`).
    pub hops: serde_json::Value,
    /// The hook's skb metadata records of the burst (the first few).
    pub events: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// What `probe echo` answers to a token (TCP: one line; UDP: one datagram),
/// as one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EchoReply {
    /// The server's name (its pod, or the node for the host's echo).
    pub server: String,
    /// The source address the server saw, `ip:port`: shows whether the path
    /// translated it (masquerade) or kept the client's own.
    pub peer: String,
    /// The token the client sent, so a reply is matched to its attempt.
    pub token: String,
}

/// `cluster.pod-to-pod` and the other echo checks: an answer came, but from a
/// server not expected (a wrong backend, a stale address).
pub const WRONG_SERVER: crate::Failure = crate::Failure {
    code: "wrong-server",
    meaning: "answers came, but from a server other than the one the path leads to (a wrong backend or a stale address)",
};

/// `cluster.dns`: the resolver answered with an address other than the service's.
pub const WRONG_ADDRESS: crate::Failure = crate::Failure {
    code: "wrong-address",
    meaning: "the name resolved, but not to the service's ClusterIP",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_round_trips_and_defaults_its_attempts() {
        let json = r#"{"client":"client-0","node":"a","checks":[
            {"check":"cluster.pod-to-pod","variant":"same-node","description":"echo-0",
             "target":{"kind":"echo","protocol":"tcp","host":"10.42.0.5","port":8080,
                       "control_port":8082,"expect_servers":["echo-0"]}},
            {"check":"cluster.dns","variant":"default","description":"kube-dns",
             "target":{"kind":"dns","name":"echo.ns.svc.cluster.local",
                       "expect_address":"10.43.0.20","control_name":"absent.ns.svc.cluster.local"}}]}"#;
        let plan: ConnectPlan = serde_json::from_str(json).unwrap();
        assert_eq!(plan.attempts, DEFAULT_ATTEMPTS);
        assert_eq!(plan.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert!(matches!(
            plan.checks[0].target,
            ConnectTarget::Echo {
                protocol: Protocol::Tcp,
                port: 8080,
                ..
            }
        ));
        let again: ConnectPlan =
            serde_json::from_str(&serde_json::to_string(&plan).unwrap()).unwrap();
        assert_eq!(again, plan);
        assert!(is_pod_level("cluster.dns"));
        assert!(!is_pod_level("datapath.pod-to-host"));
    }
}
