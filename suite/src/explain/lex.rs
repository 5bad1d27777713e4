//! Splitting a monitor line into its parts: the `cilium monitor -v` prefix, the
//! `key value` header, identities, addresses and the packet summary after the colon.

use regex::Regex;
use std::net::IpAddr;
use std::sync::LazyLock;

/// Collapses runs of whitespace and separates an `identity` glued to the word before
/// it: some Cilium versions print `interface lxc1234identity 1->2` and `state
/// newidentity 1->2` (their `DumpVerbose` wrote no separator before `identity`).
pub fn normalize(text: &str) -> String {
    static GLUED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\S)identity ").unwrap());
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    GLUED.replace_all(&collapsed, "$1, identity ").into_owned()
}

/// The `cilium monitor -v` prefix every verbose event shares:
/// `CPU NN: MARK 0x<hash> [ IP-TRACE-ID = N ] FROM <source> <point>: <tail>`
/// (`pkg/monitor/datapath_trace.go`, `datapath_drop.go`, `datapath_debug.go`).
#[derive(Debug)]
pub struct Verbose<'a> {
    pub cpu: &'a str,
    pub mark: &'a str,
    pub trace_id: Option<&'a str>,
    pub source: &'a str,
    /// An observation point name (`to-stack`), `DROP` or `DEBUG`.
    pub point: &'a str,
    pub tail: &'a str,
}

impl<'a> Verbose<'a> {
    pub fn parse(text: &'a str) -> Option<Verbose<'a>> {
        static PREFIX: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(
                r"^CPU (\d+): MARK (\S+)(?: \[ ?IP-TRACE-ID ?= ?(\d+) ?\]?)? FROM (\d+) ([A-Za-z0-9-]+): ?(.*)$",
            )
            .unwrap()
        });
        let c = PREFIX.captures(text)?;
        let get = |i: usize| c.get(i).map(|m| m.as_str());
        Some(Verbose {
            cpu: get(1)?,
            mark: get(2)?,
            trace_id: get(3),
            source: get(4)?,
            point: get(5)?,
            tail: get(6).unwrap_or(""),
        })
    }
}

/// Splits `header: packet summary` at the first `": "`. No header field of a trace,
/// drop or policy line contains `": "` (IPv6 addresses have colons, never
/// colon-space), so the first one ends the header.
pub fn split_summary(text: &str) -> (&str, Option<&str>) {
    match text.find(": ") {
        Some(i) => (&text[..i], Some(text[i + 2..].trim())),
        None => match text.strip_suffix(':') {
            Some(header) => (header, None),
            None => (text, None),
        },
    }
}

/// The words of a header, commas dropped: `flow 0x0 , identity 1->2 state new`
/// and a hand-copied `flow 0x0, identity 1->2, state new` give the same words.
pub struct Words<'a> {
    words: Vec<&'a str>,
    pos: usize,
}

impl<'a> Words<'a> {
    pub fn new(text: &'a str) -> Words<'a> {
        Words {
            words: text
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|w| !w.is_empty())
                .collect(),
            pos: 0,
        }
    }

    pub fn next_word(&mut self) -> Option<&'a str> {
        let w = self.words.get(self.pos).copied();
        if w.is_some() {
            self.pos += 1;
        }
        w
    }

    pub fn peek(&self) -> Option<&'a str> {
        self.words.get(self.pos).copied()
    }

    /// Consumes `word` if it is next.
    pub fn eat(&mut self, word: &str) -> bool {
        if self.peek() == Some(word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// The value after a key, or the error naming what was expected.
    pub fn value(&mut self, key: &str, what: &str) -> Result<&'a str, String> {
        self.next_word()
            .ok_or_else(|| format!("expected {what} after `{key}`, found the end of the line"))
    }

    /// Consumes `[ ip-trace-id = N ]` (Cilium 1.18+), if next.
    pub fn ip_trace_id(&mut self) -> Result<Option<&'a str>, String> {
        if self.peek() != Some("[") {
            return Ok(None);
        }
        self.pos += 1;
        let ok = self.eat("ip-trace-id") || self.eat("IP-TRACE-ID");
        let ok = ok && self.eat("=");
        let id = self.next_word();
        match (ok, id) {
            (true, Some(id)) if id.parse::<u64>().is_ok() => {
                self.eat("]");
                Ok(Some(id))
            }
            _ => Err("expected `[ ip-trace-id = N ]`".into()),
        }
    }
}

/// A `%#x` value as Go prints it (`0x0`, `0x3b1e0022`).
pub fn parse_hex_u32(text: &str) -> Option<u32> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))?;
    if digits.is_empty() {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// One side of `identity A->B`: a number, or a reserved identity's name
/// (`NumericIdentity.String()` in `pkg/identity/numericidentity.go`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRef {
    pub text: String,
    pub number: Option<u32>,
}

pub fn parse_identities(text: &str) -> Option<(IdentityRef, IdentityRef)> {
    let (src, dst) = text.split_once("->")?;
    Some((parse_identity(src)?, parse_identity(dst)?))
}

pub fn parse_identity(text: &str) -> Option<IdentityRef> {
    if text.is_empty() {
        return None;
    }
    let number = text
        .parse::<u32>()
        .ok()
        .or_else(|| super::codes::reserved_identity_by_name(text));
    Some(IdentityRef {
        text: text.to_string(),
        number,
    })
}

/// The packet summary after the colon (`GetConnectionSummary` in
/// `pkg/monitor/dissect.go`): `sIP:sPort -> dIP:dPort proto [TCP flags]`,
/// `sIP -> dIP <ICMP type>`, `sMAC -> dMAC <EtherType>`, `[unknown]`, `[error]`,
/// each optionally followed by `[tunnel sIP:sPort -> dIP:dPort vxlan|geneve]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub text: String,
    pub src: Option<String>,
    pub dst: Option<String>,
    pub src_ip: Option<IpAddr>,
    pub dst_ip: Option<IpAddr>,
    /// `tcp`, `udp`, `sctp`, `icmp`, an EtherType (`ARP`), `IPsecESP`...
    pub proto: Option<String>,
    /// TCP flags or the ICMP type.
    pub detail: Option<String>,
    pub tunnel: Option<String>,
    /// `[unknown]` or `[error]`: monitor could not dissect the captured bytes.
    pub undecoded: Option<String>,
}

pub fn parse_packet(text: &str) -> Packet {
    let text = text.trim();
    let mut p = Packet {
        text: text.to_string(),
        src: None,
        dst: None,
        src_ip: None,
        dst_ip: None,
        proto: None,
        detail: None,
        tunnel: None,
        undecoded: None,
    };
    let mut body = text;
    if let Some(i) = body.find(" [tunnel ") {
        p.tunnel = Some(
            body[i + 1..]
                .trim_matches(|c| c == '[' || c == ']')
                .to_string(),
        );
        body = &body[..i];
    }
    if body == "[unknown]" || body == "[error]" {
        p.undecoded = Some(body.to_string());
        return p;
    }
    let Some((src, rest)) = body.split_once(" -> ") else {
        return p;
    };
    let mut right = rest.splitn(2, ' ');
    let dst = right.next().unwrap_or_default();
    let after = right.next().map(str::trim).filter(|s| !s.is_empty());
    p.src_ip = endpoint_ip(src);
    p.dst_ip = endpoint_ip(dst);
    p.src = Some(src.to_string());
    p.dst = Some(dst.to_string());
    if let Some(after) = after {
        let mut parts = after.splitn(2, ' ');
        let first = parts.next().unwrap_or_default();
        match first {
            "tcp" | "udp" | "sctp" | "icmp" | "esp" | "IPsecAH" | "IPsecESP" | "vrrp" | "igmp" => {
                p.proto = Some(first.to_string());
                p.detail = parts.next().map(str::to_string);
            }
            _ if p.src_ip.is_some() => {
                // `sIP -> dIP EchoRequest`: an ICMP type (gopacket's TypeCode.String()).
                p.proto = Some("icmp".into());
                p.detail = Some(after.to_string());
            }
            _ => p.proto = Some(after.to_string()),
        }
    }
    p
}

/// The address of `1.2.3.4:80`, `[fd00::1]:80`, `1.2.3.4` or `fd00::1`.
fn endpoint_ip(text: &str) -> Option<IpAddr> {
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    let (host, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok()
}

/// An address as `net.IP.String()` prints it, possibly with the header's trailing colon.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse()
        .ok()
        .or_else(|| text.strip_suffix(':').and_then(|t| t.parse().ok()))
}
