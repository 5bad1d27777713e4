//! `probe observe`: the observer half of `cluster.stack-delivery`, run as a
//! container of an echo pod (so in the pod's own netns, on its eth0). It
//! attaches the probe's `hook` to the pod's eth0 ingress, binds a UDP socket,
//! and serves sessions ([`ObserveRequest`]) from senders elsewhere in the
//! cluster: `arm` sets the hook to pass (the check) or drop (its control) and
//! takes the "before" counts; `report`, after the sender's burst, accounts for
//! the burst hop by hop ([`Accounting`]): the sender's count, the hook, the
//! pod's IP and UDP MIBs, the socket.
//!
//! The device's own rx counter is no hop here: a packet Cilium hands over with
//! `bpf_redirect_peer` skips the veth's transmit, and kernels before 6.8 did
//! not count it as received, so a healthy path would look short there. The
//! hook on ingress is the first witness inside the pod.
//!
//! Sessions run one at a time (a lock held for the whole session), so the hook's
//! configuration and counts belong to one burst. The hook is left passing
//! between sessions and whatever a session does. Unlike the echo, this needs
//! CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (the manifests name them).

use crate::hooks::{AttachMode, Direction, Hook, meta_json};
use crate::hops::{Accounting, Figure, Path};
use crate::netns::NetNs;
use crate::topology::Family;
use conformance_contract::pods::{ObserveArmed, ObserveReport, ObserveRequest};
use conformance_ebpf_common::{HookConfig, PAYLOAD_MAGIC, action};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a session waits for its sender's next line.
const SESSION_IDLE: Duration = Duration::from_secs(10);
/// How long `report` waits for the burst at the socket.
const DELIVERY_WAIT: Duration = Duration::from_millis(1500);
/// Once the hook has counted the whole burst, how long the socket gets to see it:
/// the packets are already in the pod, so what has not arrived by then was lost
/// in its stack.
const AFTER_HOOK: Duration = Duration::from_millis(300);
/// Skb metadata records kept per report.
const EVENTS_KEPT: usize = 5;

/// Which attach `probe observe --attach` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachChoice {
    /// TCX where the kernel has it, legacy tc otherwise.
    Auto,
    Only(AttachMode),
}

/// The datagram of `seq` in the session of `token`: the probe's payload (magic,
/// big-endian seq, which the hook records), then the token.
pub fn datagram(seq: u32, token: &str) -> Vec<u8> {
    let mut d = crate::traffic::payload(seq).to_vec();
    d.extend_from_slice(token.as_bytes());
    d
}

/// The seq of `bytes` if it is a datagram of `token`'s session.
fn seq_of(bytes: &[u8], token: &str) -> Option<u32> {
    if bytes.len() != 8 + token.len()
        || bytes[..4] != PAYLOAD_MAGIC
        || &bytes[8..] != token.as_bytes()
    {
        return None;
    }
    Some(u32::from_be_bytes(bytes[4..8].try_into().ok()?))
}

struct Inner {
    name: String,
    ns: NetNs,
    /// The attached hook, or why it could not be attached (reported to every
    /// session, never hidden).
    hook: Result<Hook, String>,
    sock: UdpSocket,
    port: u16,
}

pub struct Observer {
    inner: Arc<Mutex<Inner>>,
    listener: TcpListener,
    banner: String,
}

impl Observer {
    /// Binds the UDP port (dual-stack where the pod has IPv6) and the session
    /// port, and attaches the hook on `device` ingress. A hook that cannot be
    /// attached is not fatal: every session is told why.
    pub fn start(
        name: &str,
        device: &str,
        port: u16,
        session_port: u16,
        attach: AttachChoice,
    ) -> std::io::Result<Observer> {
        let sock = bind_udp(port)?;
        let listener =
            TcpListener::bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), session_port))
                .or_else(|_| {
                    TcpListener::bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), session_port))
                })?;
        let ns = NetNs::current(name).map_err(std::io::Error::other)?;
        let config = pass(port);
        let hook = match attach {
            AttachChoice::Only(mode) => Hook::attach(&ns, device, Direction::Ingress, mode, config),
            AttachChoice::Auto => {
                Hook::attach(&ns, device, Direction::Ingress, AttachMode::Tcx, config).or_else(
                    |tcx| {
                        Hook::attach(&ns, device, Direction::Ingress, AttachMode::Legacy, config)
                            .map_err(|legacy| {
                                anyhow::anyhow!("tcx: {tcx:#}; legacy tc: {legacy:#}")
                            })
                    },
                )
            }
        }
        .map_err(|e| format!("{e:#}"));
        let banner = match &hook {
            Ok(h) => format!(
                "observe: {name}: hook on {}; UDP {port}, sessions on TCP {session_port}",
                h.label
            ),
            Err(e) => format!(
                "observe: {name}: no hook ({e}); sessions on TCP {session_port} will say so"
            ),
        };
        Ok(Observer {
            inner: Arc::new(Mutex::new(Inner {
                name: name.to_string(),
                ns,
                hook,
                sock,
                port,
            })),
            listener,
            banner,
        })
    }

    pub fn banner(&self) -> &str {
        &self.banner
    }

    /// Serves sessions until the process ends, a thread each.
    pub fn serve(self) -> ! {
        loop {
            match self.listener.accept() {
                Ok((conn, _)) => {
                    let inner = Arc::clone(&self.inner);
                    std::thread::spawn(move || {
                        if let Err(e) = session(conn, &inner) {
                            eprintln!("observe: session: {e}");
                        }
                    });
                }
                Err(e) => {
                    eprintln!("observe: accept: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

fn bind_udp(port: u16) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port))
        .or_else(|_| UdpSocket::bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port)))
}

fn pass(port: u16) -> HookConfig {
    HookConfig {
        dport: port,
        action: action::PASS,
        ..Default::default()
    }
}

fn read_request(reader: &mut impl BufRead) -> std::io::Result<ObserveRequest> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    serde_json::from_str(&line).map_err(std::io::Error::other)
}

fn write_line(conn: &mut TcpStream, value: &impl serde::Serialize) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    line.push(b'\n');
    conn.write_all(&line)
}

/// One sender's arm → burst → report.
fn session(mut conn: TcpStream, inner: &Mutex<Inner>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(SESSION_IDLE))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let (token, drop, family) = match read_request(&mut reader)? {
        ObserveRequest::Arm { token, drop, ipv6 } => {
            (token, drop, if ipv6 { Family::V6 } else { Family::V4 })
        }
        other => {
            let error = format!("expected arm first, got {other:?}");
            return write_line(
                &mut conn,
                &ObserveArmed {
                    hook: None,
                    error: Some(error),
                },
            );
        }
    };
    // A panicked session leaves the data intact: take it back.
    let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
    let Inner {
        name,
        ns,
        hook,
        sock,
        port,
    } = &mut *guard;
    let hook = match hook {
        Ok(hook) => hook,
        Err(e) => {
            let armed = ObserveArmed {
                hook: None,
                error: Some(e.clone()),
            };
            return write_line(&mut conn, &armed);
        }
    };
    let config = HookConfig {
        action: if drop { action::DROP } else { action::PASS },
        ..pass(*port)
    };
    let result = armed_session(
        &mut conn,
        &mut reader,
        (name, ns, &mut *hook, sock, *port),
        (&token, family),
        config,
    );
    // Passing again whatever happened: a control must never outlive its session.
    if let Err(e) = hook.configure(pass(*port)) {
        eprintln!("observe: restore the passing hook: {e:#}");
    }
    result
}

fn armed_session(
    conn: &mut TcpStream,
    reader: &mut impl BufRead,
    (name, ns, hook, sock, port): (&str, &NetNs, &mut Hook, &UdpSocket, u16),
    (token, family): (&str, Family),
    config: HookConfig,
) -> std::io::Result<()> {
    let fail = |conn: &mut TcpStream, e: anyhow::Error| {
        write_line(
            conn,
            &ObserveArmed {
                hook: None,
                error: Some(format!("{e:#}")),
            },
        )
    };
    if let Err(e) = hook.configure(config) {
        return fail(conn, e);
    }
    drain(sock);
    hook.drain_events();
    let label = hook.label.clone();
    let (figures, matched, delivered) = {
        let hook: &Hook = hook;
        let path = Path::new().observer(hook).stack_of(ns, name, family);
        let (before, matched_before) = match (path.read(), hook.counters()) {
            (Ok(b), Ok(c)) => (b, c.matched),
            (Err(e), _) | (_, Err(e)) => return fail(conn, e),
        };
        write_line(
            conn,
            &ObserveArmed {
                hook: Some(label.clone()),
                error: None,
            },
        )?;
        let (burst, sent, sender) = match read_request(reader)? {
            ObserveRequest::Report {
                burst,
                sent,
                sender,
            } => (burst, sent, sender),
            other => {
                return Err(std::io::Error::other(format!(
                    "expected report, got {other:?}"
                )));
            }
        };
        let matched = || {
            hook.counters()
                .map(|c| c.matched - matched_before)
                .unwrap_or(0)
        };
        let delivered = collect(sock, token, burst, matched);
        let after = match path.read() {
            Ok(a) => a,
            Err(e) => return fail(conn, e),
        };
        let refused =
            (sent < burst).then(|| format!("the sender's socket refused {}", burst - sent));
        let mut hops = Accounting::new(burst);
        hops.push(Figure::path(format!("sent from {sender}"), sent, refused))
            .extend(path.figures(&before, &after))
            .push(Figure::path(
                format!("{name}'s UDP socket (port {port})"),
                delivered.len(),
                None,
            ));
        (hops, matched(), delivered)
    };
    let events = hook
        .drain_events()
        .iter()
        .take(EVENTS_KEPT)
        .map(meta_json)
        .collect();
    let report = ObserveReport {
        observer: name.to_string(),
        hook: label,
        complete: figures.complete(),
        failure: figures.failure().map(|f| f.code.to_string()),
        loss: figures.loss(),
        summary: figures.summary(),
        matched,
        delivered,
        hops: figures.to_json(),
        events,
    };
    write_line(conn, &report)
}

/// Throws away whatever an earlier session left queued.
fn drain(sock: &UdpSocket) {
    let mut buf = [0u8; 256];
    let _ = sock.set_nonblocking(true);
    while sock.recv_from(&mut buf).is_ok() {}
    let _ = sock.set_nonblocking(false);
}

/// The session's datagrams at the socket, until all `sent` arrived, or the hook
/// has counted them all and [`AFTER_HOOK`] passed, or [`DELIVERY_WAIT`] ran out.
fn collect(sock: &UdpSocket, token: &str, sent: u32, matched: impl Fn() -> u64) -> Vec<u32> {
    let started = Instant::now();
    let mut deadline = started + DELIVERY_WAIT;
    let mut hook_done = false;
    let mut seqs = Vec::new();
    let mut buf = [0u8; 256];
    while seqs.len() < sent as usize {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if !hook_done && matched() >= u64::from(sent) {
            hook_done = true;
            deadline = deadline.min(now + AFTER_HOOK);
        }
        let wait = (deadline - now)
            .min(Duration::from_millis(20))
            .max(Duration::from_millis(1));
        let _ = sock.set_read_timeout(Some(wait));
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && let Some(seq) = seq_of(&buf[..n], token)
            && !seqs.contains(&seq)
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    seqs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_is_recognised_only_with_its_own_token() {
        let d = datagram(7, "00ff00ff00ff00ff");
        assert_eq!(seq_of(&d, "00ff00ff00ff00ff"), Some(7));
        assert_eq!(seq_of(&d, "1111111111111111"), None);
        assert_eq!(seq_of(&d[..10], "00ff00ff00ff00ff"), None);
        let mut bad = d.clone();
        bad[0] = b'X';
        assert_eq!(seq_of(&bad, "00ff00ff00ff00ff"), None);
    }
}
