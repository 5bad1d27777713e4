//! A minimal synchronous nf_tables client (`NETLINK_NETFILTER`): one table of base
//! chains whose rules match a UDP port, conntrack state and marks, set marks or the
//! trace flag, each rule with a counter that is read back by its label.
//!
//! The probe is a static binary that runs in FROM-scratch containers and as init of
//! minimal VM guests, where there is no `nft` binary, so it speaks the nf_tables
//! netlink protocol itself (include/uapi/linux/netfilter/nf_tables.h, nfnetlink.h).
//! It keeps to what Linux 4.x already has: the legacy register `NFT_REG_1`, the
//! boolean form of `bitwise`, and the `meta`, `ct`, `payload`, `cmp`, `immediate`
//! and `counter` expressions.
//!
//! Like [`Rtnl`](crate::netlink::Rtnl), an [`Nft`] acts on the network namespace it
//! was created in, whatever thread later uses it: create it inside
//! [`NetNs::run`](crate::netns::NetNs::run). Changes go in one batch, a transaction
//! the kernel commits whole or not at all.

use crate::nlmsg::{NLA_F_NESTED, NLA_HDRLEN, NLMSG_HDRLEN, align4, attrs, replies};
use anyhow::{Context, Result, bail};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE,
    NLMSG_ERROR,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

// nfnetlink.h
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNETLINK_V0: u8 = 0;

const NFGENMSG_LEN: usize = 4;

/// `NFPROTO_IPV4`: the tables made here are of family `ip`.
const NFPROTO_IPV4: u8 = 2;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;

// enum nf_tables_msg_types
const NFT_MSG_NEWTABLE: u8 = 0;
const NFT_MSG_DELTABLE: u8 = 2;
const NFT_MSG_NEWCHAIN: u8 = 3;
const NFT_MSG_NEWRULE: u8 = 6;
const NFT_MSG_GETRULE: u8 = 7;

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
/// `NFT_REG_VERDICT`: an immediate loaded here is the rule's verdict.
const NFT_REG_VERDICT: u32 = 0;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_META_SREG: u16 = 3;
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFTA_CT_SREG: u16 = 4;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;

/// The legacy 128-bit register 1 (its first 32 bits are `NFT_REG32_00`): every
/// kernel with nf_tables accepts it. Each match loads and compares in turn, so one
/// register is enough.
const REG: u32 = 1;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_META_MARK: u32 = 3;
const NFT_META_NFTRACE: u32 = 12;
const NFT_META_L4PROTO: u32 = 16;
const NFT_CT_STATE: u32 = 0;
const NFT_CT_MARK: u32 = 3;
const IPPROTO_UDP: u8 = 17;

/// libnftnl's rule comment (`NFTNL_UDATA_RULE_COMMENT`) inside `NFTA_RULE_USERDATA`,
/// a `type u8, len u8, value` record: `nft list` shows the label as the comment.
const UDATA_RULE_COMMENT: u8 = 0;
/// nft's comment limit, terminating NUL included.
const COMMENT_MAXLEN: usize = 128;

/// Ack and error replies come back in one datagram each, the larger dump replies
/// are read whole ([`Socket::recv_from_full`]).
const ACK_BUF: usize = 64 * 1024;

/// `ct state` bits (nf_conntrack_common.h), for [`Match::CtState`].
pub const CT_STATE_INVALID: u32 = 1;
pub const CT_STATE_ESTABLISHED: u32 = 2;
pub const CT_STATE_RELATED: u32 = 4;
pub const CT_STATE_NEW: u32 = 8;
pub const CT_STATE_UNTRACKED: u32 = 64;

/// Where a base chain hooks into the IPv4 stack (`enum nf_inet_hooks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    fn number(self) -> u32 {
        match self {
            Hook::Prerouting => 0,
            Hook::Input => 1,
            Hook::Forward => 2,
            Hook::Output => 3,
            Hook::Postrouting => 4,
        }
    }
}

/// A base chain of type `filter`, policy accept. Its priority orders it against
/// conntrack (-200) and other chains on the same hook: lower runs first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: &'static str,
    pub hook: Hook,
    pub priority: i32,
    pub rules: Vec<Rule>,
}

/// All `matches` must hold for the `statements` to run. Every rule also ends in a
/// counter, read back by `label` ([`Nft::counters`]); `nft list` shows the label
/// as the rule's comment (at most 127 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub label: &'static str,
    pub matches: Vec<Match>,
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// `udp dport N`: `meta l4proto udp`, then the 2 bytes at offset 2 of the
    /// transport header.
    UdpDport(u16),
    /// `ct state` has any of these bits ([`CT_STATE_INVALID`], ...). Before
    /// conntrack has run (a chain below priority -200) every packet is invalid.
    CtState(u32),
    /// `ct mark == value`; never true of a packet without a conntrack entry.
    CtMark(u32),
    /// `meta mark == value` (`skb->mark`).
    Mark(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statement {
    /// `ct mark set value`.
    SetCtMark(u32),
    /// `meta mark set value`.
    SetMark(u32),
    /// `meta nftrace set 1`: the packet shows in `nft monitor trace`.
    NfTrace,
    /// `drop`: the verdict ends the rule, so its counter runs before it (a
    /// fault that must be seen to have acted).
    Drop,
}

/// A table of family `ip` (`NFPROTO_IPV4`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub chains: Vec<Chain>,
}

/// One rule's counter as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCount {
    pub chain: String,
    pub label: String,
    pub packets: u64,
    pub bytes: u64,
}

/// The kernel refused a message: which one and the errno (positive), so a caller
/// can tell a missing feature (`EOPNOTSUPP`) from a mistake by `downcast_ref`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftError {
    /// "add rule carried-mark to chain pre of table ip cc-scrub".
    pub what: String,
    pub errno: i32,
    /// Messages after it in the same batch that failed too (usually its
    /// consequences: the rules of a chain that could not be added).
    pub later_failures: usize,
}

impl std::fmt::Display for NftError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let errno = std::io::Error::from_raw_os_error(self.errno);
        write!(f, "nft: {}: {errno}", self.what)?;
        if self.later_failures > 0 {
            write!(
                f,
                " (and {} later messages of the batch)",
                self.later_failures
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for NftError {}

/// Netlink attributes written one after another, each padded to 4 bytes; u32
/// values are big-endian, as nf_tables expects of its `NFTA_*` numbers.
#[derive(Default)]
struct Attrs {
    buf: Vec<u8>,
    /// An attribute longer than its u16 length field can say.
    too_long: bool,
}

impl Attrs {
    fn put(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = NLA_HDRLEN + payload.len();
        self.header(kind, len);
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    fn put_str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut payload = Vec::with_capacity(s.len() + 1);
        payload.extend_from_slice(s.as_bytes());
        payload.push(0);
        self.put(kind, &payload)
    }

    fn put_be32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.put(kind, &value.to_be_bytes())
    }

    /// A nested attribute (`NLA_F_NESTED`) holding whatever `f` writes.
    fn nest(&mut self, kind: u16, f: impl FnOnce(&mut Self)) -> &mut Self {
        let start = self.buf.len();
        self.header(kind | NLA_F_NESTED, 0);
        f(self);
        let len = self.buf.len() - start;
        let len16 = u16::try_from(len).unwrap_or_else(|_| {
            self.too_long = true;
            0
        });
        self.buf[start..start + 2].copy_from_slice(&len16.to_ne_bytes());
        self
    }

    /// `NFTA_*_DATA` holding one `NFTA_DATA_VALUE`.
    fn put_value(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        self.nest(kind, |a| {
            a.put(NFTA_DATA_VALUE, value);
        })
    }

    fn header(&mut self, kind: u16, len: usize) {
        let len16 = u16::try_from(len).unwrap_or_else(|_| {
            self.too_long = true;
            0
        });
        self.buf.extend_from_slice(&len16.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
    }

    fn pad(&mut self) {
        self.buf.resize(align4(self.buf.len()), 0);
    }
}

/// One expression of a rule, on register [`REG`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    MetaLoad(u32),
    MetaSet(u32),
    CtLoad(u32),
    CtSet(u32),
    Payload {
        base: u32,
        offset: u32,
        len: u32,
    },
    /// `reg = reg & mask` (xor 0), as long as the mask.
    And(Vec<u8>),
    Cmp {
        op: u32,
        data: Vec<u8>,
    },
    Immediate(Vec<u8>),
    /// An immediate into the verdict register (`NF_DROP`, ...).
    Verdict(u32),
    Counter,
}

impl Match {
    /// Register values are as the kernel stores them: marks and the ct state in
    /// host order, packet bytes (the port) in network order.
    fn exprs(self) -> Vec<Expr> {
        let eq = |data: &[u8]| Expr::Cmp {
            op: NFT_CMP_EQ,
            data: data.to_vec(),
        };
        match self {
            Match::UdpDport(port) => vec![
                Expr::MetaLoad(NFT_META_L4PROTO),
                eq(&[IPPROTO_UDP]),
                Expr::Payload {
                    base: NFT_PAYLOAD_TRANSPORT_HEADER,
                    offset: 2,
                    len: 2,
                },
                eq(&port.to_be_bytes()),
            ],
            Match::CtState(bits) => vec![
                Expr::CtLoad(NFT_CT_STATE),
                Expr::And(bits.to_ne_bytes().to_vec()),
                Expr::Cmp {
                    op: NFT_CMP_NEQ,
                    data: vec![0; 4],
                },
            ],
            Match::CtMark(mark) => vec![Expr::CtLoad(NFT_CT_MARK), eq(&mark.to_ne_bytes())],
            Match::Mark(mark) => vec![Expr::MetaLoad(NFT_META_MARK), eq(&mark.to_ne_bytes())],
        }
    }
}

impl Statement {
    fn exprs(self) -> Vec<Expr> {
        match self {
            Statement::SetCtMark(mark) => vec![
                Expr::Immediate(mark.to_ne_bytes().to_vec()),
                Expr::CtSet(NFT_CT_MARK),
            ],
            Statement::SetMark(mark) => vec![
                Expr::Immediate(mark.to_ne_bytes().to_vec()),
                Expr::MetaSet(NFT_META_MARK),
            ],
            // The trace flag is one byte wide.
            Statement::NfTrace => vec![Expr::Immediate(vec![1]), Expr::MetaSet(NFT_META_NFTRACE)],
            Statement::Drop => vec![Expr::Verdict(NF_DROP)],
        }
    }
}

impl Rule {
    fn exprs(&self) -> Vec<Expr> {
        let mut out: Vec<Expr> = self.matches.iter().flat_map(|m| m.exprs()).collect();
        out.extend(self.statements.iter().flat_map(|s| s.exprs()));
        // Nothing after a verdict runs: the counter goes before it.
        let at = out
            .iter()
            .position(|e| matches!(e, Expr::Verdict(_)))
            .unwrap_or(out.len());
        out.insert(at, Expr::Counter);
        out
    }
}

impl Expr {
    /// One `NFTA_LIST_ELEM` of `NFTA_RULE_EXPRESSIONS`: the expression's name and
    /// its `NFTA_EXPR_DATA`.
    fn encode(&self, list: &mut Attrs) {
        let name = match self {
            Expr::MetaLoad(_) | Expr::MetaSet(_) => "meta",
            Expr::CtLoad(_) | Expr::CtSet(_) => "ct",
            Expr::Payload { .. } => "payload",
            Expr::And(_) => "bitwise",
            Expr::Cmp { .. } => "cmp",
            Expr::Immediate(_) | Expr::Verdict(_) => "immediate",
            Expr::Counter => "counter",
        };
        list.nest(NFTA_LIST_ELEM, |elem| {
            elem.put_str(NFTA_EXPR_NAME, name);
            if *self == Expr::Counter {
                // No data: a counter starts at zero.
                return;
            }
            elem.nest(NFTA_EXPR_DATA, |d| match self {
                Expr::MetaLoad(key) => {
                    d.put_be32(NFTA_META_KEY, *key)
                        .put_be32(NFTA_META_DREG, REG);
                }
                Expr::MetaSet(key) => {
                    d.put_be32(NFTA_META_KEY, *key)
                        .put_be32(NFTA_META_SREG, REG);
                }
                Expr::CtLoad(key) => {
                    d.put_be32(NFTA_CT_KEY, *key).put_be32(NFTA_CT_DREG, REG);
                }
                Expr::CtSet(key) => {
                    d.put_be32(NFTA_CT_KEY, *key).put_be32(NFTA_CT_SREG, REG);
                }
                Expr::Payload { base, offset, len } => {
                    d.put_be32(NFTA_PAYLOAD_DREG, REG)
                        .put_be32(NFTA_PAYLOAD_BASE, *base)
                        .put_be32(NFTA_PAYLOAD_OFFSET, *offset)
                        .put_be32(NFTA_PAYLOAD_LEN, *len);
                }
                Expr::And(mask) => {
                    d.put_be32(NFTA_BITWISE_SREG, REG)
                        .put_be32(NFTA_BITWISE_DREG, REG)
                        .put_be32(NFTA_BITWISE_LEN, mask.len() as u32)
                        .put_value(NFTA_BITWISE_MASK, mask)
                        .put_value(NFTA_BITWISE_XOR, &vec![0; mask.len()]);
                }
                Expr::Cmp { op, data } => {
                    d.put_be32(NFTA_CMP_SREG, REG)
                        .put_be32(NFTA_CMP_OP, *op)
                        .put_value(NFTA_CMP_DATA, data);
                }
                Expr::Immediate(data) => {
                    d.put_be32(NFTA_IMMEDIATE_DREG, REG)
                        .put_value(NFTA_IMMEDIATE_DATA, data);
                }
                Expr::Verdict(code) => {
                    d.put_be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT).nest(
                        NFTA_IMMEDIATE_DATA,
                        |data| {
                            data.nest(NFTA_DATA_VERDICT, |v| {
                                v.put_be32(NFTA_VERDICT_CODE, *code);
                            });
                        },
                    );
                }
                Expr::Counter => {}
            });
        });
    }
}

/// The label as a libnftnl comment record, NUL included.
fn comment_udata(label: &str) -> Result<Vec<u8>> {
    if label.len() >= COMMENT_MAXLEN || label.contains('\0') {
        bail!("nft: rule label {label:?} must be under {COMMENT_MAXLEN} bytes, without NUL");
    }
    let mut out = vec![UDATA_RULE_COMMENT, (label.len() + 1) as u8];
    out.extend_from_slice(label.as_bytes());
    out.push(0);
    Ok(out)
}

/// The comment in a rule's userdata, or the whole userdata as text when it holds
/// no comment record (a rule somebody else made).
fn label_from_udata(mut udata: &[u8]) -> String {
    let whole = udata;
    while udata.len() >= 2 {
        let (kind, len) = (udata[0], usize::from(udata[1]));
        let Some(value) = udata.get(2..2 + len) else {
            break;
        };
        if kind == UDATA_RULE_COMMENT {
            let text = value.strip_suffix(&[0]).unwrap_or(value);
            return String::from_utf8_lossy(text).into_owned();
        }
        udata = &udata[2 + len..];
    }
    String::from_utf8_lossy(whole).into_owned()
}

/// An nfnetlink message: `nlmsghdr`, `nfgenmsg`, attributes.
fn put_message(
    buf: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &[u8],
) -> Result<()> {
    let len = u32::try_from(NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len())
        .context("nft: message too long")?;
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel
    buf.extend_from_slice(&[family, NFNETLINK_V0]);
    buf.extend_from_slice(&res_id.to_be_bytes());
    buf.extend_from_slice(attrs);
    Ok(())
}

fn nft_type(msg: u8) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | u16::from(msg)
}

/// Messages between `NFNL_MSG_BATCH_BEGIN` and `NFNL_MSG_BATCH_END`, each with
/// its own sequence number and what to call it in an error.
struct Batch {
    buf: Vec<u8>,
    next_seq: u32,
    /// `(seq, what)` of every message, the batch begin first.
    sent: Vec<(u32, String)>,
}

impl Batch {
    fn new(first_seq: u32, what: String) -> Result<Self> {
        let mut batch = Self {
            buf: Vec::new(),
            next_seq: first_seq,
            sent: Vec::new(),
        };
        batch.control(NFNL_MSG_BATCH_BEGIN, what)?;
        Ok(batch)
    }

    fn control(&mut self, kind: u16, what: String) -> Result<()> {
        let seq = self.take_seq();
        put_message(
            &mut self.buf,
            kind,
            NLM_F_REQUEST,
            seq,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        )?;
        self.sent.push((seq, what));
        Ok(())
    }

    fn push(&mut self, msg: u8, flags: u16, attrs: &Attrs, what: String) -> Result<()> {
        if attrs.too_long {
            bail!("nft: {what}: an attribute is over 64 KiB");
        }
        let seq = self.take_seq();
        put_message(
            &mut self.buf,
            nft_type(msg),
            NLM_F_REQUEST | NLM_F_ACK | flags,
            seq,
            NFPROTO_IPV4,
            0,
            &attrs.buf,
        )?;
        self.sent.push((seq, what));
        Ok(())
    }

    fn finish(mut self) -> Result<Self> {
        self.control(NFNL_MSG_BATCH_END, "end batch".into())?;
        Ok(self)
    }

    fn take_seq(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        seq
    }
}

fn table_attrs(name: &str) -> Attrs {
    let mut a = Attrs::default();
    a.put_str(NFTA_TABLE_NAME, name);
    a
}

/// The batch [`Nft::apply`] sends: the table added, deleted (the previous one, if
/// any, with its chains and counters) and added again, then its chains and rules.
fn apply_batch(table: &Table, first_seq: u32) -> Result<Batch> {
    let t = &table.name;
    let mut batch = Batch::new(first_seq, format!("apply table ip {t}"))?;
    let this = table_attrs(t);
    batch.push(
        NFT_MSG_NEWTABLE,
        NLM_F_CREATE,
        &this,
        format!("add table ip {t}"),
    )?;
    batch.push(
        NFT_MSG_DELTABLE,
        0,
        &this,
        format!("delete the previous table ip {t}"),
    )?;
    batch.push(
        NFT_MSG_NEWTABLE,
        NLM_F_CREATE,
        &this,
        format!("create table ip {t}"),
    )?;
    for chain in &table.chains {
        let mut a = Attrs::default();
        a.put_str(NFTA_CHAIN_TABLE, t)
            .put_str(NFTA_CHAIN_NAME, chain.name)
            .nest(NFTA_CHAIN_HOOK, |h| {
                h.put_be32(NFTA_HOOK_HOOKNUM, chain.hook.number())
                    .put(NFTA_HOOK_PRIORITY, &chain.priority.to_be_bytes());
            })
            .put_be32(NFTA_CHAIN_POLICY, NF_ACCEPT)
            .put_str(NFTA_CHAIN_TYPE, "filter");
        batch.push(
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE,
            &a,
            format!("add chain {} to table ip {t}", chain.name),
        )?;
        for rule in &chain.rules {
            let mut a = Attrs::default();
            a.put_str(NFTA_RULE_TABLE, t)
                .put_str(NFTA_RULE_CHAIN, chain.name)
                .nest(NFTA_RULE_EXPRESSIONS, |list| {
                    for expr in rule.exprs() {
                        expr.encode(list);
                    }
                })
                .put(NFTA_RULE_USERDATA, &comment_udata(rule.label)?);
            batch.push(
                NFT_MSG_NEWRULE,
                NLM_F_CREATE | NLM_F_APPEND,
                &a,
                format!(
                    "add rule {} to chain {} of table ip {t}",
                    rule.label, chain.name
                ),
            )?;
        }
    }
    batch.finish()
}

/// The errno (positive, 0 for an ack) of an `NLMSG_ERROR` or `NLMSG_DONE` payload.
fn reply_errno(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .map_or(0, |b| -i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn attr(data: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(data).find_map(|(k, p)| (k == kind).then_some(p))
}

fn attr_str(data: &[u8], kind: u16) -> Option<String> {
    let p = attr(data, kind)?;
    let p = p.split(|&b| b == 0).next().unwrap_or(p);
    Some(String::from_utf8_lossy(p).into_owned())
}

fn attr_be64(data: &[u8], kind: u16) -> Option<u64> {
    Some(u64::from_be_bytes(
        attr(data, kind)?.get(..8)?.try_into().ok()?,
    ))
}

/// The table and counter of a `NFT_MSG_NEWRULE` dump reply (its payload, after the
/// `nfgenmsg`); `None` for a rule without a counter.
fn parse_rule(payload: &[u8]) -> Option<(String, RuleCount)> {
    let a = payload.get(NFGENMSG_LEN..)?;
    let table = attr_str(a, NFTA_RULE_TABLE)?;
    let counter = attrs(attr(a, NFTA_RULE_EXPRESSIONS)?)
        .filter(|(k, _)| *k == NFTA_LIST_ELEM)
        .find(|(_, e)| attr_str(e, NFTA_EXPR_NAME).as_deref() == Some("counter"))?
        .1;
    let data = attr(counter, NFTA_EXPR_DATA)?;
    Some((
        table,
        RuleCount {
            chain: attr_str(a, NFTA_RULE_CHAIN).unwrap_or_default(),
            label: attr(a, NFTA_RULE_USERDATA)
                .map(label_from_udata)
                .unwrap_or_default(),
            packets: attr_be64(data, NFTA_COUNTER_PACKETS)?,
            bytes: attr_be64(data, NFTA_COUNTER_BYTES)?,
        },
    ))
}

/// What the replies to a batch say: the first refused message, or an error when a
/// message got no reply at all.
fn batch_outcome(sent: &[(u32, String)], acks: &[(u32, i32)]) -> Result<()> {
    let what = |seq: u32| {
        sent.iter()
            .find(|(s, _)| *s == seq)
            .map_or_else(|| format!("message {seq}"), |(_, w)| w.clone())
    };
    let mut failed: Vec<(u32, i32)> = acks.iter().copied().filter(|(_, e)| *e != 0).collect();
    failed.sort_by_key(|(seq, _)| sent.iter().position(|(s, _)| s == seq));
    if let Some(&(seq, errno)) = failed.first() {
        return Err(NftError {
            what: what(seq),
            errno,
            later_failures: failed.len() - 1,
        }
        .into());
    }
    // Every message but the batch begin and end asked for an ack.
    let inner = sent
        .get(1..sent.len().saturating_sub(1))
        .unwrap_or_default();
    if let Some((_, w)) = inner
        .iter()
        .find(|(s, _)| !acks.iter().any(|(a, _)| a == s))
    {
        bail!("nft: {w}: no acknowledgement from the kernel");
    }
    Ok(())
}

/// An nf_tables netlink socket in the network namespace it was created in.
pub struct Nft {
    socket: Socket,
    seq: u32,
}

impl Nft {
    /// Opens a `NETLINK_NETFILTER` socket in the calling thread's network namespace.
    pub fn new() -> Result<Self> {
        let mut socket = Socket::new(NETLINK_NETFILTER)
            .context("nft: open NETLINK_NETFILTER socket (no nfnetlink in this kernel?)")?;
        socket.bind_auto().context("nft: bind netlink socket")?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .context("nft: connect netlink socket")?;
        // Error replies then carry the refused message's header only (4.3+; without
        // it they carry the whole message, which is fine too).
        let _ = socket.set_cap_ack(true);
        Ok(Self { socket, seq: 0 })
    }

    /// Makes `table` exactly as given, in one transaction: a table of the same name
    /// is replaced (its counters start again from zero), and nothing changes when
    /// any message is refused.
    pub fn apply(&mut self, table: &Table) -> Result<()> {
        let batch = apply_batch(table, self.seq.wrapping_add(1))?;
        self.transact(batch)
    }

    /// Deletes the `ip` table `name` with its chains and rules; a missing table is
    /// not an error.
    pub fn delete_table(&mut self, name: &str) -> Result<()> {
        let mut batch = Batch::new(self.seq.wrapping_add(1), format!("delete table ip {name}"))?;
        batch.push(
            NFT_MSG_DELTABLE,
            0,
            &table_attrs(name),
            format!("delete table ip {name}"),
        )?;
        match self.transact(batch.finish()?) {
            Err(e)
                if e.downcast_ref::<NftError>()
                    .is_some_and(|n| n.errno == libc::ENOENT) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// The counter of every rule of the `ip` table `table`, in chain and rule order;
    /// empty when there is no such table.
    pub fn counters(&mut self, table: &str) -> Result<Vec<RuleCount>> {
        // A dump interrupted by a concurrent ruleset change (NLM_F_DUMP_INTR) may
        // have skipped rules: ask again.
        for _ in 0..3 {
            if let Some(counts) = self.dump_counters(table)? {
                return Ok(counts);
            }
        }
        bail!("nft: list rules of table ip {table}: the ruleset kept changing during the dump")
    }

    fn dump_counters(&mut self, table: &str) -> Result<Option<Vec<RuleCount>>> {
        let what = format!("list rules of table ip {table}");
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut a = Attrs::default();
        // Kernels since 4.x filter the dump by table; older ones are filtered here.
        a.put_str(NFTA_RULE_TABLE, table);
        let mut buf = Vec::new();
        put_message(
            &mut buf,
            nft_type(NFT_MSG_GETRULE),
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            NFPROTO_IPV4,
            0,
            &a.buf,
        )?;
        self.socket
            .send(&buf, 0)
            .with_context(|| format!("nft: {what}: netlink send"))?;
        let mut counts = Vec::new();
        let mut interrupted = false;
        loop {
            let (data, _) = self
                .socket
                .recv_from_full()
                .with_context(|| format!("nft: {what}: netlink recv"))?;
            for reply in replies(&data).filter(|r| r.seq == seq) {
                interrupted |= reply.flags & NLM_F_DUMP_INTR != 0;
                match reply.kind {
                    NLMSG_DONE | NLMSG_ERROR => {
                        let errno = reply_errno(reply.payload);
                        if errno != 0 {
                            return Err(NftError {
                                what,
                                errno,
                                later_failures: 0,
                            }
                            .into());
                        }
                        return Ok((!interrupted).then_some(counts));
                    }
                    k if k == nft_type(NFT_MSG_NEWRULE) => {
                        if let Some((t, count)) = parse_rule(reply.payload)
                            && t == table
                        {
                            counts.push(count);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Sends a batch and reads every reply to it. The kernel handles a batch inside
    /// `sendmsg`, so all its replies are queued when `send` returns: they are read
    /// without waiting, and a message left without one is an error, not a hang.
    fn transact(&mut self, batch: Batch) -> Result<()> {
        self.seq = batch.next_seq.wrapping_sub(1);
        let what = &batch.sent[0].1;
        self.socket
            .send(&batch.buf, 0)
            .with_context(|| format!("nft: {what}: netlink send"))?;
        let mut acks = Vec::new();
        let mut buf = Vec::with_capacity(ACK_BUF);
        loop {
            buf.clear();
            match self.socket.recv(&mut buf, libc::MSG_DONTWAIT) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).with_context(|| format!("nft: {what}: netlink recv")),
            }
            acks.extend(
                replies(&buf)
                    .filter(|r| r.kind == NLMSG_ERROR)
                    .map(|r| (r.seq, reply_errno(r.payload))),
            );
        }
        batch_outcome(&batch.sent, &acks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nlmsg::NLA_TYPE_MASK;

    /// Every attribute in `buf`, recursively into nests: checks that each length
    /// fits its parent, that padding keeps the next one 4-byte aligned and that
    /// nests carry `NLA_F_NESTED`; returns `(depth, type, payload)`.
    fn walk(buf: &[u8], depth: usize, out: &mut Vec<(usize, u16, Vec<u8>)>) {
        let mut off = 0;
        while off < buf.len() {
            assert!(off + 4 <= buf.len(), "truncated header at {off}");
            let len = usize::from(u16::from_ne_bytes([buf[off], buf[off + 1]]));
            let raw = u16::from_ne_bytes([buf[off + 2], buf[off + 3]]);
            assert!(len >= 4 && off + len <= buf.len(), "length {len} at {off}");
            let padded = (len + 3) & !3;
            assert!(off + padded <= buf.len(), "padding past the end at {off}");
            assert!(
                buf[off + len..off + padded].iter().all(|&b| b == 0),
                "padding not zero at {off}"
            );
            let payload = &buf[off + 4..off + len];
            out.push((depth, raw & NLA_TYPE_MASK, payload.to_vec()));
            if raw & NLA_F_NESTED != 0 {
                walk(payload, depth + 1, out);
            }
            off += padded;
        }
        assert_eq!(off, buf.len());
    }

    fn messages(buf: &[u8]) -> Vec<(u16, u16, u32, Vec<u8>)> {
        let all: Vec<_> = replies(buf)
            .map(|r| (r.kind, r.flags, r.seq, r.payload.to_vec()))
            .collect();
        let total: usize = all.iter().map(|m| NLMSG_HDRLEN + m.3.len()).sum();
        assert_eq!(total, buf.len(), "messages do not cover the buffer");
        all
    }

    fn table() -> Table {
        Table {
            name: "cc-scrub".into(),
            chains: vec![Chain {
                name: "pre",
                hook: Hook::Prerouting,
                priority: -300,
                rules: vec![Rule {
                    label: "raw-untracked",
                    matches: vec![Match::UdpDport(47474), Match::CtState(CT_STATE_INVALID)],
                    statements: vec![Statement::SetCtMark(0x5c4b), Statement::NfTrace],
                }],
            }],
        }
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn newtable_bytes_are_exact() {
        let mut batch = Batch::new(7, "b".into()).unwrap();
        batch
            .push(
                NFT_MSG_NEWTABLE,
                NLM_F_CREATE,
                &table_attrs("t"),
                "t".into(),
            )
            .unwrap();
        let batch = batch.finish().unwrap();
        #[rustfmt::skip]
        let want: &[u8] = &[
            // BATCH_BEGIN: len 20, type 0x10, NLM_F_REQUEST, seq 7, pid 0,
            // nfgenmsg AF_UNSPEC, v0, res_id NFNL_SUBSYS_NFTABLES (big-endian).
            20, 0, 0, 0, 0x10, 0, 1, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10,
            // NEWTABLE: len 28, type 0x0a00, REQUEST|ACK|CREATE, seq 8, pid 0,
            // nfgenmsg NFPROTO_IPV4, v0, res_id 0,
            28, 0, 0, 0, 0x00, 0x0a, 0x05, 0x04, 8, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
            // NFTA_TABLE_NAME "t\0", len 6, padded to 8.
            6, 0, 1, 0, b't', 0, 0, 0,
            // BATCH_END: type 0x11, seq 9.
            20, 0, 0, 0, 0x11, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10,
        ];
        assert_eq!(batch.buf, want);
        assert_eq!(batch.next_seq, 10);
        assert_eq!(
            batch.sent,
            [(7, "b".into()), (8, "t".into()), (9, "end batch".into())]
        );
    }

    #[test]
    fn apply_batch_is_well_formed() {
        let batch = apply_batch(&table(), 1).unwrap();
        let msgs = messages(&batch.buf);
        let kinds: Vec<u16> = msgs.iter().map(|m| m.0).collect();
        assert_eq!(
            kinds,
            [
                NFNL_MSG_BATCH_BEGIN,
                nft_type(NFT_MSG_NEWTABLE),
                nft_type(NFT_MSG_DELTABLE),
                nft_type(NFT_MSG_NEWTABLE),
                nft_type(NFT_MSG_NEWCHAIN),
                nft_type(NFT_MSG_NEWRULE),
                NFNL_MSG_BATCH_END,
            ]
        );
        let seqs: Vec<u32> = msgs.iter().map(|m| m.2).collect();
        assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
        for (kind, flags, _, payload) in &msgs {
            let mut all = Vec::new();
            walk(&payload[NFGENMSG_LEN..], 0, &mut all);
            assert!(flags & NLM_F_REQUEST != 0);
            if *kind == nft_type(NFT_MSG_NEWRULE) {
                assert_eq!(
                    *flags,
                    NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND
                );
            }
        }

        // The chain: hook number 0 and priority -300, both big-endian, nested.
        let chain = &msgs[4].3[NFGENMSG_LEN..];
        let hook = attr(chain, NFTA_CHAIN_HOOK).unwrap();
        assert_eq!(attr(hook, NFTA_HOOK_HOOKNUM).unwrap(), [0, 0, 0, 0]);
        assert_eq!(
            attr(hook, NFTA_HOOK_PRIORITY).unwrap(),
            (-300i32).to_be_bytes()
        );
        assert_eq!(attr(chain, NFTA_CHAIN_POLICY).unwrap(), [0, 0, 0, 1]);
        assert_eq!(attr_str(chain, NFTA_CHAIN_TYPE).unwrap(), "filter");

        // The rule: expression names in order, the counter last.
        let rule = &msgs[5].3[NFGENMSG_LEN..];
        let names: Vec<String> = attrs(attr(rule, NFTA_RULE_EXPRESSIONS).unwrap())
            .map(|(_, e)| attr_str(e, NFTA_EXPR_NAME).unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "meta",
                "cmp",
                "payload",
                "cmp",
                "ct",
                "bitwise",
                "cmp",
                "immediate",
                "ct",
                "immediate",
                "meta",
                "counter"
            ]
        );
        assert_eq!(
            attr(rule, NFTA_RULE_USERDATA).unwrap(),
            b"\x00\x0eraw-untracked\x00"
        );
    }

    /// Encoded expressions of one match, as `(name, data)`.
    fn encoded(exprs: &[Expr]) -> Vec<(String, Vec<u8>)> {
        let mut list = Attrs::default();
        for e in exprs {
            e.encode(&mut list);
        }
        let mut all = Vec::new();
        walk(&list.buf, 0, &mut all);
        attrs(&list.buf)
            .map(|(_, e)| {
                (
                    attr_str(e, NFTA_EXPR_NAME).unwrap(),
                    attr(e, NFTA_EXPR_DATA).unwrap_or_default().to_vec(),
                )
            })
            .collect()
    }

    #[test]
    fn udp_dport_loads_l4proto_then_the_port_in_network_order() {
        let e = encoded(&Match::UdpDport(0x1234).exprs());
        assert_eq!(attr(&e[0].1, NFTA_META_KEY).unwrap(), [0, 0, 0, 16]);
        assert_eq!(attr(&e[0].1, NFTA_META_DREG).unwrap(), [0, 0, 0, 1]);
        let cmp = attr(&e[1].1, NFTA_CMP_DATA).unwrap();
        // NFTA_DATA_VALUE of one byte: len 5, padded to 8.
        assert_eq!(cmp, [5, 0, 1, 0, 17, 0, 0, 0]);
        assert_eq!(attr(&e[2].1, NFTA_PAYLOAD_BASE).unwrap(), [0, 0, 0, 2]);
        assert_eq!(attr(&e[2].1, NFTA_PAYLOAD_OFFSET).unwrap(), [0, 0, 0, 2]);
        assert_eq!(attr(&e[2].1, NFTA_PAYLOAD_LEN).unwrap(), [0, 0, 0, 2]);
        let port = attr(&e[3].1, NFTA_CMP_DATA).unwrap();
        assert_eq!(attr(port, NFTA_DATA_VALUE).unwrap(), [0x12, 0x34]);
        assert_eq!(attr(&e[3].1, NFTA_CMP_OP).unwrap(), [0, 0, 0, 0]);
    }

    #[test]
    fn ct_state_masks_in_host_order_and_compares_non_zero() {
        let e = encoded(&Match::CtState(CT_STATE_INVALID | CT_STATE_NEW).exprs());
        assert_eq!(e[0].0, "ct");
        assert_eq!(attr(&e[0].1, NFTA_CT_KEY).unwrap(), [0, 0, 0, 0]);
        assert_eq!(e[1].0, "bitwise");
        assert_eq!(attr(&e[1].1, NFTA_BITWISE_LEN).unwrap(), [0, 0, 0, 4]);
        let mask = attr(&e[1].1, NFTA_BITWISE_MASK).unwrap();
        assert_eq!(attr(mask, NFTA_DATA_VALUE).unwrap(), 9u32.to_ne_bytes());
        let xor = attr(&e[1].1, NFTA_BITWISE_XOR).unwrap();
        assert_eq!(attr(xor, NFTA_DATA_VALUE).unwrap(), [0; 4]);
        assert_eq!(attr(&e[2].1, NFTA_CMP_OP).unwrap(), [0, 0, 0, 1]);
    }

    #[test]
    fn statements_load_an_immediate_then_set_from_it() {
        let e = encoded(&Statement::SetCtMark(0x5c4b).exprs());
        let data = attr(&e[0].1, NFTA_IMMEDIATE_DATA).unwrap();
        assert_eq!(
            attr(data, NFTA_DATA_VALUE).unwrap(),
            0x5c4bu32.to_ne_bytes()
        );
        assert_eq!(attr(&e[1].1, NFTA_CT_KEY).unwrap(), [0, 0, 0, 3]);
        assert_eq!(attr(&e[1].1, NFTA_CT_SREG).unwrap(), [0, 0, 0, 1]);
        let e = encoded(&Statement::NfTrace.exprs());
        let data = attr(&e[0].1, NFTA_IMMEDIATE_DATA).unwrap();
        assert_eq!(attr(data, NFTA_DATA_VALUE).unwrap(), [1]);
        assert_eq!(attr(&e[1].1, NFTA_META_KEY).unwrap(), [0, 0, 0, 12]);
        // A counter has a name and no data.
        assert_eq!(encoded(&[Expr::Counter]), [("counter".into(), vec![])]);
    }

    #[test]
    fn a_drop_is_a_verdict_immediate_with_the_counter_before_it() {
        let rule = Rule {
            label: "drop",
            matches: vec![Match::UdpDport(8090)],
            statements: vec![Statement::Drop],
        };
        let exprs = rule.exprs();
        let n = exprs.len();
        assert_eq!(exprs[n - 2..], [Expr::Counter, Expr::Verdict(NF_DROP)]);
        let e = encoded(&exprs[n - 1..]);
        assert_eq!(e[0].0, "immediate");
        assert_eq!(attr(&e[0].1, NFTA_IMMEDIATE_DREG).unwrap(), [0, 0, 0, 0]);
        let data = attr(&e[0].1, NFTA_IMMEDIATE_DATA).unwrap();
        let verdict = attr(data, NFTA_DATA_VERDICT).unwrap();
        assert_eq!(attr(verdict, NFTA_VERDICT_CODE).unwrap(), [0, 0, 0, 0]);
    }

    #[test]
    fn labels_round_trip_through_userdata() {
        assert_eq!(label_from_udata(&comment_udata("tag").unwrap()), "tag");
        assert_eq!(label_from_udata(b"\x05\x01xplain"), "\x05\x01xplain");
        assert!(comment_udata(&"x".repeat(COMMENT_MAXLEN)).is_err());
        assert!(comment_udata("a\0b").is_err());
    }

    /// A dump reply as the kernel would send it, parsed back.
    #[test]
    fn counters_are_read_from_a_rule_reply() {
        let mut a = Attrs::default();
        a.put_str(NFTA_RULE_TABLE, "cc-scrub")
            .put_str(NFTA_RULE_CHAIN, "pre")
            .nest(NFTA_RULE_EXPRESSIONS, |list| {
                Expr::CtLoad(NFT_CT_MARK).encode(list);
                list.nest(NFTA_LIST_ELEM, |e| {
                    e.put_str(NFTA_EXPR_NAME, "counter")
                        .nest(NFTA_EXPR_DATA, |d| {
                            d.put(NFTA_COUNTER_BYTES, &180u64.to_be_bytes())
                                .put(NFTA_COUNTER_PACKETS, &5u64.to_be_bytes());
                        });
                });
            })
            .put(NFTA_RULE_USERDATA, &comment_udata("tag").unwrap());
        let mut buf = Vec::new();
        put_message(&mut buf, nft_type(NFT_MSG_NEWRULE), 2, 3, 2, 0, &a.buf).unwrap();
        let reply = replies(&buf).next().unwrap();
        let (table, count) = parse_rule(reply.payload).unwrap();
        assert_eq!(table, "cc-scrub");
        assert_eq!(
            count,
            RuleCount {
                chain: "pre".into(),
                label: "tag".into(),
                packets: 5,
                bytes: 180
            }
        );
    }

    #[test]
    fn a_refused_message_is_named_with_its_errno() {
        let batch = apply_batch(&table(), 1).unwrap();
        let acks = [(2, 0), (3, 0), (4, 0), (5, 0), (6, libc::EOPNOTSUPP)];
        let err = batch_outcome(&batch.sent, &acks).unwrap_err();
        let nft = err.downcast_ref::<NftError>().unwrap();
        assert_eq!(nft.errno, libc::EOPNOTSUPP);
        assert!(
            err.to_string().starts_with(
                "nft: add rule raw-untracked to chain pre of table ip cc-scrub: \
                 Operation not supported"
            ),
            "{err}"
        );
        // A batch-level refusal answers the batch begin.
        let err = batch_outcome(&batch.sent, &[(1, libc::EPERM)]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("nft: apply table ip cc-scrub: Operation not permitted"),
            "{err}"
        );
        // Silence is an error too.
        let err = batch_outcome(&batch.sent, &acks[..3]).unwrap_err();
        assert!(err.to_string().contains("no acknowledgement"), "{err}");
        let all: Vec<(u32, i32)> = (2..=6).map(|s| (s, 0)).collect();
        batch_outcome(&batch.sent, &all).unwrap();
    }

    #[test]
    fn error_replies_decode_their_errno() {
        let mut buf = Vec::new();
        let mut payload = (-libc::ENOENT).to_ne_bytes().to_vec();
        payload.extend_from_slice(&[0; 16]); // the refused header (NETLINK_CAP_ACK)
        buf.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        buf.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        buf.extend_from_slice(&0u16.to_ne_bytes());
        buf.extend_from_slice(&9u32.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&payload);
        let r = replies(&buf).next().unwrap();
        assert_eq!((r.kind, r.seq), (NLMSG_ERROR, 9));
        assert_eq!(reply_errno(r.payload), libc::ENOENT);
        assert!(replies(&buf[..10]).next().is_none());
    }
}
