//! `cluster.stack-delivery`, the sender's half: two sessions with an observer
//! (`probe observe`, [`super::observe`]): the check (the hook passes) and its
//! control (the same hook returns `TC_ACT_SHOT`), each a burst of datagrams
//! between `arm` and `report`. The observer counts them hop by hop inside the
//! pod, so the reason names the last hop that saw them and the first that did
//! not: the sender, the pod's eth0 ingress, its IP/UDP counters, its socket.

use super::connect::{client, error_observation, ms, target_ip};
use crate::checks::ControlLeg;
use conformance_contract::pods::{
    ConnectCheck, ConnectPlan, ObserveArmed, ObserveReport, ObserveRequest,
};
use conformance_contract::{Control, ControlOutcome, Observation, Outcome};
use serde_json::{Map, Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// Datagrams per burst, as the node probe's checks send.
const BURST: u32 = crate::traffic::BURST;
/// A session's wait for the observer's `report` (its own wait is at most 1.5 s).
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// A session's wait for `arm`'s answer: the observer runs one session at a
/// time, and another sender's (about 2 s at most when its burst is lost) may
/// be first.
const ARM_TIMEOUT: Duration = Duration::from_secs(8);

/// Where the check sends.
pub(super) struct DeliverTarget<'a> {
    pub observer: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub session_port: u16,
}

/// What one session came to.
enum Session {
    Reported {
        report: ObserveReport,
        sent: u32,
    },
    /// The observer could not arm (no hook, a counter it cannot read).
    Refused(String),
    /// No session: the observer could not be reached or answered nonsense.
    Failed(String),
}

pub(super) fn check(plan: &ConnectPlan, check: &ConnectCheck, t: DeliverTarget) -> Observation {
    let started = Instant::now();
    let elapsed = || ms(started.elapsed());
    let ip = match target_ip(check, t.host) {
        Ok(ip) => ip,
        Err(reason) => return error_observation(check, reason, elapsed()),
    };
    let timeout = Duration::from_millis(plan.timeout_ms);
    let sessions = SocketAddr::new(ip, t.session_port);
    let to = SocketAddr::new(ip, t.port);
    let sender = client(plan);
    let (report, sent) = match session(sessions, to, &sender, false, timeout) {
        Session::Reported { report, sent } => (report, sent),
        Session::Refused(why) => {
            let reason = format!(
                "the observer in {} ({sessions}) cannot watch its interface: {why}; nothing was sent",
                t.observer
            );
            return error_observation(check, reason, elapsed());
        }
        Session::Failed(why) => {
            let reason = format!(
                "no session with the observer in {} at {sessions} from {sender}: {why}; nothing was sent (the cluster.host-to-pod and pod-to-pod checks say whether the pod is reachable at all)",
                t.observer
            );
            return error_observation(check, reason, elapsed());
        }
    };
    let control = control(session(sessions, to, &sender, true, timeout), t.observer);
    let mut evidence = report_evidence(&report, sent);
    evidence.insert("target".into(), json!(to.to_string()));
    evidence.insert("observer".into(), json!(t.observer));
    let (outcome, failure, reason) = if report.complete {
        (
            Outcome::Pass,
            None,
            format!(
                "{sent}/{sent} datagrams from {sender} to {} ({to}) passed the hook on its {} and reached its socket ({})",
                check.description, report.hook, report.summary
            ),
        )
    } else {
        let loss = report
            .loss
            .clone()
            .unwrap_or_else(|| report.summary.clone());
        (
            Outcome::Fail,
            Some(
                report
                    .failure
                    .clone()
                    .unwrap_or_else(|| conformance_contract::catalogue::NOT_DELIVERED.code.into()),
            ),
            format!(
                "{sent} datagrams from {sender} to {} ({to}): {loss}",
                check.description
            ),
        )
    };
    Observation {
        check: check.check.clone(),
        variant: check.variant.clone(),
        outcome,
        reason,
        evidence,
        failure,
        missing_facts: Vec::new(),
        control: Some(control),
        duration_ms: elapsed(),
    }
}

/// What the observer reported of a burst, for evidence.
fn report_evidence(report: &ObserveReport, sent: u32) -> Map<String, Value> {
    let mut e = Map::new();
    e.insert("sent".into(), json!(sent));
    e.insert("hook".into(), json!(report.hook));
    e.insert("matched".into(), json!(report.matched));
    e.insert("delivered".into(), json!(report.delivered));
    e.insert("hops".into(), report.hops.clone());
    e.insert("events".into(), json!(report.events));
    e
}

/// The control's session, judged as every check's control is
/// ([`ControlLeg`]): the hook must count the burst (its witness) and the
/// check's own test, every hop full, must fail.
fn control(session: Session, observer: &str) -> Control {
    let description =
        format!("the observer's hook on {observer}'s eth0 ingress returns TC_ACT_SHOT");
    match session {
        Session::Reported { report, sent } => ControlLeg {
            description,
            witnessed: report.matched >= u64::from(sent),
            test_held: report.complete,
            account: format!(
                "hook matched {}/{sent}, socket received {}/{sent}",
                report.matched,
                report.delivered.len()
            ),
            evidence: report_evidence(&report, sent),
        }
        .into_control(),
        Session::Refused(why) | Session::Failed(why) => Control {
            description,
            outcome: ControlOutcome::Error,
            reason: format!("the control's session failed: {why}"),
            evidence: Map::new(),
        },
    }
}

/// arm → burst → report over one connection to `sessions`.
fn session(
    sessions: SocketAddr,
    to: SocketAddr,
    sender: &str,
    drop: bool,
    timeout: Duration,
) -> Session {
    let token = super::token();
    let run = || -> Result<Session, String> {
        let mut conn = TcpStream::connect_timeout(&sessions, timeout).map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(ARM_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(conn.try_clone().map_err(|e| e.to_string())?);
        let arm = ObserveRequest::Arm {
            token: token.clone(),
            drop,
            ipv6: to.is_ipv6(),
        };
        send_line(&mut conn, &arm)?;
        let armed: ObserveArmed = read_line(&mut reader)?;
        if let Some(error) = armed.error {
            return Ok(Session::Refused(error));
        }
        let sock = UdpSocket::bind(super::connect::any_of(to)).map_err(|e| e.to_string())?;
        let mut sent = 0;
        for seq in 0..BURST {
            if sock
                .send_to(&super::observe::datagram(seq, &token), to)
                .is_ok()
            {
                sent += 1;
            }
        }
        let report = ObserveRequest::Report {
            burst: BURST,
            sent,
            sender: format!("{sender}'s socket"),
        };
        send_line(&mut conn, &report)?;
        conn.set_read_timeout(Some(REPORT_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let report: ObserveReport = read_line(&mut reader)?;
        Ok(Session::Reported {
            report,
            sent: BURST,
        })
    };
    run().unwrap_or_else(Session::Failed)
}

fn send_line(conn: &mut TcpStream, value: &impl serde::Serialize) -> Result<(), String> {
    let mut line = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    line.push(b'\n');
    conn.write_all(&line).map_err(|e| e.to_string())
}

fn read_line<T: serde::de::DeserializeOwned>(reader: &mut impl BufRead) -> Result<T, String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => Err("the observer closed the session".into()),
        Ok(_) => match serde_json::from_str(&line) {
            Ok(v) => Ok(v),
            // An error reply to `report` comes as ObserveArmed.
            Err(e) => match serde_json::from_str::<ObserveArmed>(&line) {
                Ok(ObserveArmed {
                    error: Some(err), ..
                }) => Err(format!("the observer: {err}")),
                _ => Err(format!("the observer's reply is not understood: {e}")),
            },
        },
        Err(e) => Err(e.to_string()),
    }
}
