//! The `cluster.dns` check: real DNS queries (RFC 1035, over UDP) to the pod's
//! own resolver, the first `nameserver` of its resolv.conf, as any program in
//! the pod would ask, so the path tested is kube-dns's ClusterIP through the
//! datapath, not a resolver library's cache.
//!
//! The query is A (AAAA when the expected address is IPv6) for the name as
//! given, with no search domains: the plan names it fully.

use super::connect::{
    Options, Tally, any_of, classify, client, error_notes, error_observation, left, median, ms,
    tally_json, tally_text,
};
use conformance_contract::pods::{ConnectCheck, ConnectPlan, WRONG_ADDRESS};
use conformance_contract::{Control, ControlOutcome, Observation, Outcome};
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_AAAA: u16 = 28;
pub const CLASS_IN: u16 = 1;

pub const NOERROR: u8 = 0;
pub const SERVFAIL: u8 = 2;
pub const NXDOMAIN: u8 = 3;

/// The first `nameserver` of the resolv.conf at `path` (a zone suffix,
/// `%eth0`, is dropped).
pub fn nameserver(path: &Path) -> Result<IpAddr, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next() else { continue };
        let addr = addr.split('%').next().unwrap_or(addr);
        return addr.parse().map_err(|_| {
            format!(
                "{}: nameserver {addr:?} is not an IP address",
                path.display()
            )
        });
    }
    Err(format!("{}: no nameserver line", path.display()))
}

/// A query: header with `id`, RD set, one question `name` `qtype` IN.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD 1, AN NS AR 0
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err("an empty name".into());
    }
    for label in trimmed.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{name:?}: a label must be 1 to 63 bytes"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    if q.len() - 12 > 256 {
        return Err(format!("{name:?}: longer than 255 bytes"));
    }
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

/// What a response said about the question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub rcode: u8,
    /// The `qtype` records of the name, or of the names its CNAMEs lead to.
    pub addresses: Vec<IpAddr>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a response to this query (another id, not QR, another question):
    /// keep waiting for ours.
    NotOurs,
    /// Ours, but it cannot be read.
    Malformed(String),
}

fn malformed(what: &str) -> DecodeError {
    DecodeError::Malformed(what.to_string())
}

fn be16(buf: &[u8], at: usize) -> Result<u16, DecodeError> {
    buf.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| malformed("truncated"))
}

/// The name at `at`, lower case without the final dot, following compression
/// pointers; and where the name ends in the record (after the first pointer,
/// or after the root label).
pub fn read_name(buf: &[u8], at: usize) -> Result<(String, usize), DecodeError> {
    let mut labels: Vec<String> = Vec::new();
    let mut pos = at;
    let mut end = None;
    let mut jumps = 0;
    let mut length = 0;
    loop {
        let len = *buf
            .get(pos)
            .ok_or_else(|| malformed("name runs past the end"))? as usize;
        match len & 0xc0 {
            0x00 if len == 0 => break,
            0x00 => {
                let label = buf
                    .get(pos + 1..pos + 1 + len)
                    .ok_or_else(|| malformed("label runs past the end"))?;
                length += len + 1;
                if length > 255 {
                    return Err(malformed("name longer than 255 bytes"));
                }
                labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
                pos += 1 + len;
            }
            0xc0 => {
                let low =
                    *buf.get(pos + 1)
                        .ok_or_else(|| malformed("pointer cut off"))? as usize;
                end.get_or_insert(pos + 2);
                jumps += 1;
                if jumps > 64 {
                    return Err(malformed("compression pointers loop"));
                }
                pos = ((len & 0x3f) << 8) | low;
            }
            _ => return Err(malformed("reserved label type")),
        }
    }
    Ok((labels.join("."), end.unwrap_or(pos + 1)))
}

fn normal(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The response in `buf` to query `id` for `name` `qtype`.
pub fn decode_response(
    buf: &[u8],
    id: u16,
    name: &str,
    qtype: u16,
) -> Result<Response, DecodeError> {
    if buf.len() < 12 || be16(buf, 0)? != id {
        return Err(DecodeError::NotOurs);
    }
    let flags = be16(buf, 2)?;
    if flags & 0x8000 == 0 {
        return Err(DecodeError::NotOurs);
    }
    let rcode = (flags & 0x000f) as u8;
    let (qd, an) = (be16(buf, 4)?, be16(buf, 6)?);
    let want = normal(name);
    let mut pos = 12;
    for i in 0..qd {
        let (qname, end) = read_name(buf, pos)?;
        if i == 0 && qname != want {
            return Err(DecodeError::NotOurs);
        }
        pos = end + 4;
    }
    let mut cnames = Vec::new();
    let mut records = Vec::new();
    for _ in 0..an {
        let (owner, end) = read_name(buf, pos)?;
        let (rtype, class) = (be16(buf, end)?, be16(buf, end + 2)?);
        let rdlen = be16(buf, end + 8)? as usize;
        let start = end + 10;
        let rdata = buf
            .get(start..start + rdlen)
            .ok_or_else(|| malformed("record data runs past the end"))?;
        pos = start + rdlen;
        if class != CLASS_IN {
            continue;
        }
        match (rtype, rdata.len()) {
            (TYPE_CNAME, _) => cnames.push((owner, read_name(buf, start)?.0)),
            (TYPE_A, 4) if qtype == TYPE_A => {
                let b: [u8; 4] = rdata.try_into().expect("4 bytes");
                records.push((owner, IpAddr::from(Ipv4Addr::from(b))));
            }
            (TYPE_AAAA, 16) if qtype == TYPE_AAAA => {
                let b: [u8; 16] = rdata.try_into().expect("16 bytes");
                records.push((owner, IpAddr::from(Ipv6Addr::from(b))));
            }
            _ => {}
        }
    }
    // The name and whatever its CNAME chain leads to (in any order in the answer).
    let mut names: HashSet<String> = HashSet::from([want]);
    while let Some(next) = cnames
        .iter()
        .find(|(from, to)| names.contains(from) && !names.contains(to))
    {
        names.insert(next.1.clone());
    }
    let addresses = records
        .into_iter()
        .filter(|(owner, _)| names.contains(owner))
        .map(|(_, a)| a)
        .collect();
    Ok(Response { rcode, addresses })
}

pub fn rcode_name(rcode: u8) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

enum Attempt {
    Response { response: Response, rtt_ms: f64 },
    Missed(String),
    Local(String),
}

impl Attempt {
    fn missed(e: &std::io::Error) -> Attempt {
        match classify(e) {
            Ok(kind) => Attempt::Missed(kind),
            Err(local) => Attempt::Local(local),
        }
    }
}

/// One query from a connected UDP socket (so an ICMP port unreachable comes
/// back as `refused`); datagrams that are not its response are skipped.
fn query(resolver: SocketAddr, name: &str, qtype: u16, timeout: Duration) -> Attempt {
    let id = u16::from_be_bytes(super::random_bytes::<2>());
    let packet = match encode_query(id, name, qtype) {
        Ok(p) => p,
        Err(e) => return Attempt::Local(format!("no query can ask for {e}")),
    };
    let socket = match UdpSocket::bind(any_of(resolver)) {
        Ok(s) => s,
        Err(e) => return Attempt::Local(format!("udp socket: {e}")),
    };
    if let Err(e) = socket.connect(resolver) {
        return Attempt::missed(&e);
    }
    let started = Instant::now();
    let deadline = started + timeout;
    if let Err(e) = socket.send(&packet) {
        return Attempt::missed(&e);
    }
    let mut buf = [0u8; 4096];
    let mut bad = false;
    loop {
        if Instant::now() >= deadline {
            return Attempt::Missed(if bad { "bad-reply" } else { "timeout" }.into());
        }
        if let Err(e) = socket.set_read_timeout(Some(left(deadline))) {
            return Attempt::Local(format!("udp socket: {e}"));
        }
        match socket.recv(&mut buf) {
            Ok(n) => match decode_response(&buf[..n], id, name, qtype) {
                Ok(response) => {
                    return Attempt::Response {
                        response,
                        rtt_ms: ms(started.elapsed()),
                    };
                }
                Err(DecodeError::NotOurs) => {}
                Err(DecodeError::Malformed(_)) => bad = true,
            },
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Attempt::missed(&e),
        }
    }
}

/// What a series of queries came to.
#[derive(Default)]
struct Queries {
    sent: u64,
    /// Responses of any rcode.
    answered: u64,
    /// NOERROR or NXDOMAIN without the expected address: the resolver said
    /// what the name is, and it is not that.
    wrong: u64,
    /// Responses that carry the expected address.
    with_expected: u64,
    /// Responses that carry any address.
    resolved: u64,
    rcodes: Tally,
    addresses: BTreeSet<IpAddr>,
    errors: Tally,
    rtts: Vec<f64>,
    local: Option<String>,
}

impl Queries {
    fn run(
        resolver: SocketAddr,
        name: &str,
        qtype: u16,
        expect: Option<IpAddr>,
        plan: &ConnectPlan,
    ) -> Queries {
        let timeout = Duration::from_millis(plan.timeout_ms);
        let mut q = Queries::default();
        for _ in 0..plan.attempts {
            q.sent += 1;
            match query(resolver, name, qtype, timeout) {
                Attempt::Response { response, rtt_ms } => {
                    q.answered += 1;
                    q.rtts.push(rtt_ms);
                    *q.rcodes.entry(rcode_name(response.rcode)).or_default() += 1;
                    if !response.addresses.is_empty() {
                        q.resolved += 1;
                    }
                    if expect.is_some_and(|e| response.addresses.contains(&e)) {
                        q.with_expected += 1;
                    } else if matches!(response.rcode, NOERROR | NXDOMAIN) {
                        q.wrong += 1;
                    }
                    q.addresses.extend(response.addresses);
                }
                Attempt::Missed(kind) => *q.errors.entry(kind).or_default() += 1,
                Attempt::Local(e) => {
                    *q.errors.entry("local".into()).or_default() += 1;
                    q.local.get_or_insert(e);
                }
            }
        }
        q
    }

    fn addresses_text(&self) -> String {
        if self.addresses.is_empty() {
            return "no address".into();
        }
        let list: Vec<String> = self.addresses.iter().map(IpAddr::to_string).collect();
        list.join(", ")
    }

    fn evidence(&self, resolver: SocketAddr, name: &str) -> Map<String, Value> {
        let mut e = Map::new();
        e.insert("resolver".into(), json!(resolver.to_string()));
        e.insert("name".into(), json!(name));
        e.insert("sent".into(), json!(self.sent));
        e.insert("answered".into(), json!(self.answered));
        e.insert("rcodes".into(), tally_json(&self.rcodes));
        let addresses: Vec<String> = self.addresses.iter().map(IpAddr::to_string).collect();
        e.insert("addresses".into(), json!(addresses));
        e.insert("errors".into(), tally_json(&self.errors));
        if let Some(rtt) = median(&self.rtts) {
            e.insert("rtt_ms".into(), json!(rtt));
        }
        e
    }
}

/// The `cluster.dns` check: `name` must resolve to `expect_address` on every
/// attempt; `control_name` must not resolve at all.
pub fn check(
    plan: &ConnectPlan,
    check: &ConnectCheck,
    name: &str,
    expect_address: &str,
    control_name: &str,
    opts: &Options,
) -> Observation {
    let started = Instant::now();
    let elapsed = || ms(started.elapsed());
    let resolver = match opts.resolver {
        Some(r) => r,
        None => match nameserver(&opts.resolv_conf) {
            Ok(ip) => SocketAddr::new(ip, 53),
            Err(e) => {
                return error_observation(check, format!("no resolver to ask: {e}"), elapsed());
            }
        },
    };
    let Ok(expect) = expect_address.parse::<IpAddr>() else {
        let reason =
            format!("expect_address {expect_address:?} is not an IP address: nothing was sent");
        return error_observation(check, reason, elapsed());
    };
    let (qtype, qlabel) = match expect {
        IpAddr::V4(_) => (TYPE_A, "A"),
        IpAddr::V6(_) => (TYPE_AAAA, "AAAA"),
    };
    let got = Queries::run(resolver, name, qtype, Some(expect), plan);
    if let Some(local) = &got.local {
        let reason = format!(
            "{qlabel} queries from {} for {name} to resolver {resolver} ({}) could not be made: {local} (the pod's own failure, not the path's)",
            client(plan),
            check.description
        );
        return error_observation(check, reason, elapsed());
    }
    let ctl = Queries::run(resolver, control_name, qtype, None, plan);
    let control = dns_control(&ctl, resolver, control_name, qlabel);

    let sent = format!(
        "{} {qlabel} queries from {} for {name} to resolver {resolver} ({})",
        got.sent,
        client(plan),
        check.description
    );
    let wrong = got.wrong;
    let (outcome, failure, reason) = if wrong > 0 {
        let reason = format!(
            "{sent}: {wrong} of {} answers without {expect} ({}; {})",
            got.answered,
            tally_text(&got.rcodes),
            got.addresses_text()
        );
        (Outcome::Fail, Some(WRONG_ADDRESS.code), reason)
    } else if got.with_expected < got.sent {
        let unanswered = got.sent - got.answered;
        let mut what = Vec::new();
        if unanswered > 0 {
            what.push(format!(
                "{unanswered} got no answer ({})",
                tally_text(&got.errors)
            ));
        }
        let failed: Tally = got
            .rcodes
            .iter()
            .filter(|(r, _)| r.as_str() != "NOERROR" && r.as_str() != "NXDOMAIN")
            .map(|(r, n)| (r.clone(), *n))
            .collect();
        if !failed.is_empty() {
            what.push(format!(
                "{} answers: the resolver was reached but said nothing about the name",
                tally_text(&failed)
            ));
        }
        let reason = format!(
            "{sent}: {}; last seen: sent from {}'s socket; first missing: an answer about the name from {resolver} (a pod sees no hop between){}",
            what.join(", "),
            plan.client,
            error_notes(
                &got.errors,
                "a response with this query's id that could not be read"
            )
        );
        (
            Outcome::Fail,
            Some(conformance_contract::catalogue::NOT_DELIVERED.code),
            reason,
        )
    } else {
        let reason = format!(
            "{}/{} {qlabel} queries from {} for {name} to resolver {resolver} ({}) answered with {expect}",
            got.with_expected,
            got.sent,
            client(plan),
            check.description
        );
        (Outcome::Pass, None, reason)
    };
    Observation {
        check: check.check.clone(),
        variant: check.variant.clone(),
        outcome,
        reason,
        evidence: got.evidence(resolver, name),
        failure: failure.map(str::to_string),
        missing_facts: Vec::new(),
        control: Some(control),
        duration_ms: elapsed(),
    }
}

fn dns_control(ctl: &Queries, resolver: SocketAddr, name: &str, qlabel: &str) -> Control {
    let (outcome, reason) = if ctl.resolved > 0 {
        (
            ControlOutcome::Leaked,
            format!(
                "{}/{} {qlabel} queries for {name} to {resolver} resolved, to {}: a name nobody made resolves, so this check cannot show a wrong answer",
                ctl.resolved,
                ctl.sent,
                ctl.addresses_text()
            ),
        )
    } else if let Some(local) = &ctl.local {
        (
            ControlOutcome::Error,
            format!("{qlabel} queries for {name} to {resolver} could not be made: {local}"),
        )
    } else {
        let mut outcomes = ctl.rcodes.clone();
        outcomes.extend(ctl.errors.iter().map(|(k, n)| (k.clone(), *n)));
        (
            ControlOutcome::Blocked,
            format!(
                "0/{} {qlabel} queries for {name} to {resolver} resolved ({})",
                ctl.sent,
                tally_text(&outcomes)
            ),
        )
    };
    Control {
        description: format!("the same query for {name}, a name nobody made"),
        outcome,
        reason,
        evidence: ctl.evidence(resolver, name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_rfc_1035_with_rd_and_one_question() {
        let q = encode_query(0xbeef, "echo.ns.svc.", TYPE_A).unwrap();
        let mut want = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(b"\x04echo\x02ns\x03svc\x00\x00\x01\x00\x01");
        assert_eq!(q, want);
        assert!(encode_query(1, "", TYPE_A).is_err());
        assert!(encode_query(1, "a..b", TYPE_A).is_err());
        assert!(encode_query(1, &"x".repeat(64), TYPE_A).is_err());
    }

    /// A response as a resolver compresses it: the question's name at 12, an
    /// answer `alias` -> CNAME whose target ends in a pointer back into the
    /// question, then that target's A records owned through a pointer into
    /// the CNAME's data, and an A record of an unrelated name.
    fn compressed_response(id: u16, rcode: u8) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&id.to_be_bytes());
        r.extend_from_slice(&(0x8180u16 | u16::from(rcode)).to_be_bytes());
        r.extend_from_slice(&[0, 1, 0, 4, 0, 0, 0, 0]);
        // 12: question "alias.ns.svc" A IN
        r.extend_from_slice(b"\x05alias\x02ns\x03svc\x00\x00\x01\x00\x01");
        // answer 1: owner -> 12, CNAME, data "echo" + pointer to "ns.svc" at 18
        r.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 30, 0, 7]);
        let cname_data = r.len();
        r.extend_from_slice(b"\x04echo\xc0\x12");
        // answer 2 and 3: owner -> the CNAME's target, A 10.43.0.20 and 10.43.0.21
        for last in [20, 21] {
            r.extend_from_slice(&[0xc0, cname_data as u8, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
            r.extend_from_slice(&[10, 43, 0, last]);
        }
        // answer 4: "other" (labels, then a pointer to "svc" at 21) A 192.0.2.1: not ours
        r.extend_from_slice(b"\x05other\xc0\x15\x00\x01\x00\x01\x00\x00\x00\x1e\x00\x04");
        r.extend_from_slice(&[192, 0, 2, 1]);
        r
    }

    #[test]
    fn a_response_with_compression_pointers_yields_the_cname_chains_addresses() {
        let r = compressed_response(7, NOERROR);
        assert_eq!(read_name(&r, 12).unwrap(), ("alias.ns.svc".to_string(), 26));
        let got = decode_response(&r, 7, "Alias.NS.svc.", TYPE_A).unwrap();
        assert_eq!(got.rcode, NOERROR);
        assert_eq!(
            got.addresses,
            vec![IpAddr::from([10, 43, 0, 20]), IpAddr::from([10, 43, 0, 21])]
        );
        // An AAAA question takes no A record.
        let mut aaaa = r.clone();
        aaaa[28..30].copy_from_slice(&TYPE_AAAA.to_be_bytes());
        assert!(
            decode_response(&aaaa, 7, "alias.ns.svc", TYPE_AAAA)
                .unwrap()
                .addresses
                .is_empty()
        );
    }

    #[test]
    fn a_response_not_to_this_query_or_unreadable_is_told_apart() {
        let r = compressed_response(7, NXDOMAIN);
        assert_eq!(
            decode_response(&r, 8, "alias.ns.svc", TYPE_A),
            Err(DecodeError::NotOurs)
        );
        assert_eq!(
            decode_response(&r, 7, "echo.ns.svc", TYPE_A),
            Err(DecodeError::NotOurs)
        );
        let mut query = r.clone();
        query[2] &= 0x7f; // QR clear: a query, not a response
        assert_eq!(
            decode_response(&query, 7, "alias.ns.svc", TYPE_A),
            Err(DecodeError::NotOurs)
        );
        let cut = &r[..r.len() - 2];
        assert!(matches!(
            decode_response(cut, 7, "alias.ns.svc", TYPE_A),
            Err(DecodeError::Malformed(_))
        ));
        // A pointer to itself never ends.
        let mut looped = r[..12].to_vec();
        looped.extend_from_slice(&[0xc0, 12]);
        assert!(matches!(
            read_name(&looped, 12),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(rcode_name(NXDOMAIN), "NXDOMAIN");
    }

    #[test]
    fn the_resolver_is_the_first_nameserver_line() {
        let path = std::env::temp_dir().join(format!("pods-resolv-{}.conf", std::process::id()));
        std::fs::write(
            &path,
            "# generated\nsearch ns.svc.cluster.local svc.cluster.local\nnameserver 10.43.0.10\nnameserver 8.8.8.8\noptions ndots:5\n",
        )
        .unwrap();
        assert_eq!(nameserver(&path), Ok(IpAddr::from([10, 43, 0, 10])));
        std::fs::write(&path, "nameserver fe80::1%eth0\n").unwrap();
        assert_eq!(nameserver(&path), Ok("fe80::1".parse().unwrap()));
        std::fs::write(&path, "search x\n").unwrap();
        assert!(
            nameserver(&path)
                .unwrap_err()
                .contains("no nameserver line")
        );
        std::fs::remove_file(&path).unwrap();
        assert!(nameserver(&path).is_err());
    }
}
