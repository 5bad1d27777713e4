//! `probe connect`: runs a client pod's [`ConnectPlan`], every check at once
//! (a thread each, so one slow path does not delay the others' verdicts), and
//! returns one [`Observation`] per check in plan order. The echo checks live
//! here; the DNS check in [`super::dns`], the stack-delivery check (with an
//! observer in the target pod) in [`super::deliver`].
//!
//! A pod sees only its own socket: what it sent and what came back. Reasons say
//! that much and no more (no hop between is visible from here).

use super::{deliver, dns};
use conformance_contract::pods::{ConnectCheck, ConnectPlan, ConnectTarget, EchoReply, Protocol};
use conformance_contract::{Control, ControlOutcome, Observation, Outcome};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the DNS check finds its resolver.
#[derive(Debug, Clone)]
pub struct Options {
    /// Read for its first `nameserver` (the pod's own, `/etc/resolv.conf`).
    pub resolv_conf: PathBuf,
    /// Used instead of `resolv_conf`'s nameserver port 53 (tests).
    pub resolver: Option<SocketAddr>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            resolver: None,
        }
    }
}

/// The plan in `json`; the error is serde's message (it names the field and
/// the line and column) or the setting no check could run with.
pub fn parse_plan(json: &str) -> Result<ConnectPlan, String> {
    let plan: ConnectPlan = serde_json::from_str(json).map_err(|e| e.to_string())?;
    if plan.attempts == 0 {
        return Err("attempts: must be at least 1 (a check of no attempts proves nothing)".into());
    }
    if plan.timeout_ms == 0 {
        return Err("timeout_ms: must be at least 1".into());
    }
    Ok(plan)
}

/// Every check of `plan`, at once; one observation each, in plan order.
pub fn run(plan: &ConnectPlan, opts: &Options) -> Vec<Observation> {
    std::thread::scope(|scope| {
        let running: Vec<_> = plan
            .checks
            .iter()
            .map(|check| scope.spawn(move || run_check(plan, check, opts)))
            .collect();
        running
            .into_iter()
            .zip(&plan.checks)
            .map(|(thread, check)| {
                thread.join().unwrap_or_else(|_| {
                    error_observation(check, "the probe's check thread panicked".into(), 0.0)
                })
            })
            .collect()
    })
}

fn run_check(plan: &ConnectPlan, check: &ConnectCheck, opts: &Options) -> Observation {
    match &check.target {
        ConnectTarget::Echo {
            protocol,
            host,
            port,
            control_port,
            expect_servers,
        } => echo_check(
            plan,
            check,
            EchoTarget {
                protocol: *protocol,
                host,
                port: *port,
                control_port: *control_port,
                expect_servers,
            },
        ),
        ConnectTarget::Dns {
            name,
            expect_address,
            control_name,
        } => dns::check(plan, check, name, expect_address, control_name, opts),
        ConnectTarget::Deliver {
            observer,
            host,
            port,
            session_port,
        } => deliver::check(
            plan,
            check,
            deliver::DeliverTarget {
                observer,
                host,
                port: *port,
                session_port: *session_port,
            },
        ),
    }
}

// ---- shared by the echo and DNS checks ----

/// How many of each kind (error kinds, rcodes, servers).
pub(crate) type Tally = BTreeMap<String, u64>;

pub(crate) fn tally_json(tally: &Tally) -> Value {
    Value::Object(tally.iter().map(|(k, n)| (k.clone(), json!(n))).collect())
}

/// `2 timeout, 1 refused`.
pub(crate) fn tally_text(tally: &Tally) -> String {
    tally
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `client-0 (node a)`.
pub(crate) fn client(plan: &ConnectPlan) -> String {
    format!("{} (node {})", plan.client, plan.node)
}

/// What an I/O error says about the path, as an error kind (`refused`,
/// `timeout`, ...); `Err` when it says only that this pod could not try (no
/// descriptor, no buffer, no such address family): that is the probe's error,
/// never the datapath's.
pub(crate) fn classify(e: &std::io::Error) -> Result<String, String> {
    use std::io::ErrorKind as K;
    if let Some(
        libc::EMFILE
        | libc::ENFILE
        | libc::ENOBUFS
        | libc::ENOMEM
        | libc::EAFNOSUPPORT
        | libc::EPROTONOSUPPORT
        | libc::EADDRNOTAVAIL
        | libc::EINVAL,
    ) = e.raw_os_error()
    {
        return Err(e.to_string());
    }
    Ok(match e.kind() {
        K::ConnectionRefused => "refused",
        K::TimedOut | K::WouldBlock => "timeout",
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => "reset",
        K::HostUnreachable => "host-unreachable",
        K::NetworkUnreachable => "net-unreachable",
        K::PermissionDenied => "denied",
        K::UnexpectedEof => "closed",
        _ => {
            return Ok(match e.raw_os_error() {
                Some(errno) => format!("errno-{errno}"),
                None => e.kind().to_string().replace(' ', "-"),
            });
        }
    }
    .to_string())
}

/// The note for a refused attempt: what came back, from the client's side.
const REFUSED_NOTE: &str = "refused: a RST or ICMP unreachable came back (or a load balancer on the path refused for the host), so the host was reached but nothing served the port";

/// What a not-delivered reason adds for the errors that say something came
/// back: a refusal, and a reply that was not this attempt's (`bad_reply`).
pub(crate) fn error_notes(errors: &Tally, bad_reply: &str) -> String {
    let mut notes = String::new();
    if errors.contains_key("refused") {
        notes += &format!("; {REFUSED_NOTE}");
    }
    if errors.contains_key("bad-reply") {
        notes += &format!("; bad-reply: {bad_reply}");
    }
    notes
}

/// The address a plan names for `check`, or the reason nothing was sent.
pub(crate) fn target_ip(check: &ConnectCheck, host: &str) -> Result<IpAddr, String> {
    host.parse().map_err(|_| {
        format!(
            "host {host:?} of {} is not an IP address: nothing was sent",
            check.description
        )
    })
}

/// A check that could not be tried: no control, no evidence beyond the reason.
pub(crate) fn error_observation(
    check: &ConnectCheck,
    reason: String,
    duration_ms: f64,
) -> Observation {
    Observation {
        check: check.check.clone(),
        variant: check.variant.clone(),
        outcome: Outcome::Error,
        reason,
        evidence: Map::new(),
        failure: None,
        missing_facts: Vec::new(),
        control: None,
        duration_ms,
    }
}

/// The unspecified address of `addr`'s family, port 0: a UDP socket's own end.
pub(crate) fn any_of(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
        SocketAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
    }
}

/// What is left of `deadline`, at least a millisecond (a zero socket timeout
/// is refused by std).
pub(crate) fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

// ---- the echo checks ----

struct EchoTarget<'a> {
    protocol: Protocol,
    host: &'a str,
    port: u16,
    control_port: u16,
    expect_servers: &'a [String],
}

/// How one attempt ended.
enum Attempt {
    Answered {
        reply: EchoReply,
        rtt_ms: f64,
    },
    /// Not answered; `connected`: a TCP handshake had completed.
    Missed {
        kind: String,
        connected: bool,
    },
    /// This pod could not even try.
    Local(String),
}

impl Attempt {
    fn missed(e: &std::io::Error, connected: bool) -> Attempt {
        match classify(e) {
            Ok(kind) => Attempt::Missed { kind, connected },
            Err(local) => Attempt::Local(local),
        }
    }
}

/// What a series of attempts came to.
#[derive(Default)]
struct Attempts {
    sent: u64,
    answered: u64,
    servers: Tally,
    peers: BTreeSet<String>,
    errors: Tally,
    /// Unanswered TCP attempts whose handshake had completed, and whose had not.
    missed_connected: u64,
    missed_unconnected: u64,
    rtts: Vec<f64>,
    local: Option<String>,
}

impl Attempts {
    fn run(protocol: Protocol, to: SocketAddr, count: u32, timeout: Duration) -> Attempts {
        let mut a = Attempts::default();
        for _ in 0..count {
            let attempt = match protocol {
                Protocol::Tcp => tcp_attempt(to, timeout),
                Protocol::Udp => udp_attempt(to, timeout),
            };
            a.sent += 1;
            match attempt {
                Attempt::Answered { reply, rtt_ms } => {
                    a.answered += 1;
                    *a.servers.entry(reply.server).or_default() += 1;
                    a.peers.insert(reply.peer);
                    a.rtts.push(rtt_ms);
                }
                Attempt::Missed { kind, connected } => {
                    *a.errors.entry(kind).or_default() += 1;
                    if connected {
                        a.missed_connected += 1;
                    } else {
                        a.missed_unconnected += 1;
                    }
                }
                Attempt::Local(e) => {
                    *a.errors.entry("local".into()).or_default() += 1;
                    a.local.get_or_insert(e);
                }
            }
        }
        a
    }

    fn missed(&self) -> u64 {
        self.sent - self.answered
    }

    /// `echo-0`, or `echo-0 (2), echo-1 (1)` for several.
    fn servers_text(&self) -> String {
        if self.servers.len() == 1 {
            return self.servers.keys().next().cloned().unwrap_or_default();
        }
        self.servers
            .iter()
            .map(|(s, n)| format!("{s} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The source addresses the servers saw, without their (ephemeral) ports.
    fn peer_ips(&self) -> String {
        let ips: BTreeSet<String> = self
            .peers
            .iter()
            .map(|p| match p.parse::<SocketAddr>() {
                Ok(a) => a.ip().to_string(),
                Err(_) => p.clone(),
            })
            .collect();
        ips.into_iter().collect::<Vec<_>>().join(", ")
    }

    fn evidence(&self, to: SocketAddr, protocol: Protocol, control: bool) -> Map<String, Value> {
        let mut e = Map::new();
        e.insert("target".into(), json!(to.to_string()));
        e.insert("sent".into(), json!(self.sent));
        e.insert("answered".into(), json!(self.answered));
        e.insert("errors".into(), tally_json(&self.errors));
        if !control || self.answered > 0 {
            e.insert("servers".into(), tally_json(&self.servers));
        }
        if control {
            return e;
        }
        e.insert("peers".into(), json!(self.peers));
        e.insert("protocol".into(), json!(proto_name(protocol)));
        if protocol == Protocol::Tcp {
            e.insert(
                "connected".into(),
                json!(self.answered + self.missed_connected),
            );
        }
        if let Some(rtt) = median(&self.rtts) {
            e.insert("rtt_ms".into(), json!(rtt));
        }
        e
    }
}

fn proto_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

fn proto_label(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

/// The reply in `bytes` (its first line) if it answers `token`.
fn answer(bytes: &[u8], token: &str, started: Instant, connected: bool) -> Attempt {
    if bytes.is_empty() {
        return Attempt::Missed {
            kind: "closed".into(),
            connected,
        };
    }
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    match serde_json::from_slice::<EchoReply>(line) {
        Ok(reply) if reply.token == token => Attempt::Answered {
            reply,
            rtt_ms: ms(started.elapsed()),
        },
        _ => Attempt::Missed {
            kind: "bad-reply".into(),
            connected,
        },
    }
}

/// One connection: connect, send the token and a newline, read one line; all
/// within `timeout`.
fn tcp_attempt(to: SocketAddr, timeout: Duration) -> Attempt {
    let token = super::token();
    let started = Instant::now();
    let deadline = started + timeout;
    let mut stream = match TcpStream::connect_timeout(&to, timeout) {
        Ok(s) => s,
        Err(e) => return Attempt::missed(&e, false),
    };
    let mut exchange = || -> std::io::Result<Vec<u8>> {
        stream.set_write_timeout(Some(left(deadline)))?;
        stream.write_all(format!("{token}\n").as_bytes())?;
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        while !got.contains(&b'\n') && got.len() < 4096 {
            if Instant::now() >= deadline {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            stream.set_read_timeout(Some(left(deadline)))?;
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    };
    match exchange() {
        Ok(got) => answer(&got, &token, started, true),
        Err(e) => Attempt::missed(&e, true),
    }
}

/// One datagram from a connected socket (so an ICMP port unreachable comes
/// back as `refused`), and the first reply that carries its token.
fn udp_attempt(to: SocketAddr, timeout: Duration) -> Attempt {
    let socket = match UdpSocket::bind(any_of(to)) {
        Ok(s) => s,
        Err(e) => return Attempt::Local(format!("udp socket: {e}")),
    };
    if let Err(e) = socket.connect(to) {
        return Attempt::missed(&e, false);
    }
    let token = super::token();
    let started = Instant::now();
    let deadline = started + timeout;
    if let Err(e) = socket.send(token.as_bytes()) {
        return Attempt::missed(&e, false);
    }
    let mut buf = [0u8; 4096];
    let mut bad = false;
    loop {
        if Instant::now() >= deadline {
            let kind = if bad { "bad-reply" } else { "timeout" };
            return Attempt::Missed {
                kind: kind.into(),
                connected: false,
            };
        }
        if let Err(e) = socket.set_read_timeout(Some(left(deadline))) {
            return Attempt::Local(format!("udp socket: {e}"));
        }
        match socket.recv(&mut buf) {
            Ok(n) => match answer(&buf[..n], &token, started, false) {
                done @ Attempt::Answered { .. } => return done,
                _ => bad = true,
            },
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Attempt::missed(&e, false),
        }
    }
}

fn echo_check(plan: &ConnectPlan, check: &ConnectCheck, t: EchoTarget) -> Observation {
    let started = Instant::now();
    let elapsed = || ms(started.elapsed());
    let ip = match target_ip(check, t.host) {
        Ok(ip) => ip,
        Err(reason) => return error_observation(check, reason, elapsed()),
    };
    let timeout = Duration::from_millis(plan.timeout_ms);
    let to = SocketAddr::new(ip, t.port);
    let proto = proto_label(t.protocol);
    let got = Attempts::run(t.protocol, to, plan.attempts, timeout);
    if let Some(local) = &got.local {
        let reason = format!(
            "{proto} attempts from {} to {} ({to}) could not be made: {local} (the pod's own failure, not the path's)",
            client(plan),
            check.description
        );
        return error_observation(check, reason, elapsed());
    }

    let control_to = SocketAddr::new(ip, t.control_port);
    let ctl = Attempts::run(t.protocol, control_to, plan.attempts, timeout);
    let control = echo_control(&ctl, control_to, t.protocol);

    let sent = format!(
        "{} {proto} attempts from {} to {} ({to})",
        got.sent,
        client(plan),
        check.description
    );
    let unexpected: Tally = got
        .servers
        .iter()
        .filter(|(s, _)| !t.expect_servers.contains(s))
        .map(|(s, n)| (s.clone(), *n))
        .collect();
    let (outcome, failure, reason) = if !unexpected.is_empty() {
        let wrong: u64 = unexpected.values().sum();
        let mut reason = format!(
            "{sent}: {} answered, {wrong} by a server not expected ({}); expected {}",
            got.answered,
            tally_text(&unexpected),
            t.expect_servers.join(" or ")
        );
        if got.missed() > 0 {
            reason += &format!(
                "; {} not answered ({})",
                got.missed(),
                tally_text(&got.errors)
            );
        }
        (
            Outcome::Fail,
            Some(conformance_contract::pods::WRONG_SERVER.code),
            reason,
        )
    } else if got.missed() > 0 {
        let answered = if got.answered == 0 {
            format!("none answered ({})", tally_text(&got.errors))
        } else {
            format!(
                "{} not answered ({}), {} answered by {}",
                got.missed(),
                tally_text(&got.errors),
                got.answered,
                got.servers_text()
            )
        };
        let client_socket = format!("{}'s socket", plan.client);
        let trail = match (t.protocol, got.missed_connected, got.missed_unconnected) {
            (Protocol::Tcp, 0, _) => format!(
                "last seen: the SYNs sent from {client_socket}; first missing: a handshake answer from {to} (a pod sees no hop between)"
            ),
            (Protocol::Tcp, _, 0) => format!(
                "last seen: the handshake with {to} completed and the token was sent; first missing: the echo's reply line"
            ),
            (Protocol::Tcp, c, u) => format!(
                "last seen: sent from {client_socket} ({u} never completed a handshake, {c} connected but got no reply line); first missing: an answer from {to} (a pod sees no hop between)"
            ),
            (Protocol::Udp, _, _) => format!(
                "last seen: sent from {client_socket}; first missing: an answer from {to} (a pod sees no hop between)"
            ),
        };
        let reason = format!(
            "{sent}: {answered}; {trail}{}",
            error_notes(
                &got.errors,
                "something answered, but not with this attempt's echo reply"
            )
        );
        (
            Outcome::Fail,
            Some(conformance_contract::catalogue::NOT_DELIVERED.code),
            reason,
        )
    } else {
        let reason = format!(
            "{}/{} {proto} attempts from {} to {} ({to}) answered by {} (seen from {})",
            got.answered,
            got.sent,
            client(plan),
            check.description,
            got.servers_text(),
            got.peer_ips()
        );
        (Outcome::Pass, None, reason)
    };
    Observation {
        check: check.check.clone(),
        variant: check.variant.clone(),
        outcome,
        reason,
        evidence: got.evidence(to, t.protocol, false),
        failure: failure.map(str::to_string),
        missing_facts: Vec::new(),
        control: Some(control),
        duration_ms: elapsed(),
    }
}

fn echo_control(ctl: &Attempts, to: SocketAddr, protocol: Protocol) -> Control {
    let proto = proto_label(protocol);
    let (outcome, reason) = if ctl.answered > 0 {
        (
            ControlOutcome::Leaked,
            format!(
                "{}/{} {proto} attempts to {to} answered, by {}: something serves the port that should serve nothing, so this check cannot show a broken path",
                ctl.answered,
                ctl.sent,
                ctl.servers_text()
            ),
        )
    } else if let Some(local) = &ctl.local {
        (
            ControlOutcome::Error,
            format!("{proto} attempts to {to} could not be made: {local}"),
        )
    } else {
        (
            ControlOutcome::Blocked,
            format!(
                "0/{} {proto} attempts to {to} answered ({})",
                ctl.sent,
                tally_text(&ctl.errors)
            ),
        )
    };
    Control {
        description: format!(
            "the same traffic to port {}, which nothing serves",
            to.port()
        ),
        outcome,
        reason,
        evidence: ctl.evidence(to, protocol, true),
    }
}
