//! A small reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`), enough to find
//! where a member of a kernel struct sits. The scrub observer's TC program reads a
//! few `struct sk_buff` fields with `bpf_probe_read_kernel(ctx + offset)`, and
//! those offsets move between kernels and configs, so userspace looks them up in
//! the running kernel's BTF and hands them to the program.
//!
//! Format: the kernel's `Documentation/bpf/btf.rst` and `include/uapi/linux/btf.h`.
//! Only what a member lookup needs is kept; every kind is still walked, because a
//! type's kind-specific data has to be skipped to reach the next one.

use anyhow::{Context, Result, anyhow, bail};

/// Where the running kernel exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;

const KIND_INT: u8 = 1;
const KIND_ARRAY: u8 = 3;
const KIND_STRUCT: u8 = 4;
const KIND_UNION: u8 = 5;
const KIND_ENUM: u8 = 6;
const KIND_TYPEDEF: u8 = 8;
const KIND_VOLATILE: u8 = 9;
const KIND_CONST: u8 = 10;
const KIND_RESTRICT: u8 = 11;
const KIND_FUNC_PROTO: u8 = 13;
const KIND_VAR: u8 = 14;
const KIND_DATASEC: u8 = 15;
const KIND_DECL_TAG: u8 = 17;
const KIND_TYPE_TAG: u8 = 18;
const KIND_ENUM64: u8 = 19;

/// Deeper nesting (anonymous members, modifier chains) than any real kernel type
/// has; a guard against a malformed file whose types refer to themselves.
const MAX_DEPTH: usize = 32;

/// Parsed BTF: the types, indexed by type id (id 0 is `void`), and the string table.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
}

/// One `struct btf_type`, with the kind-specific data a member lookup uses.
struct Type {
    name_off: u32,
    kind: u8,
    kind_flag: bool,
    size_or_type: u32,
    /// `INT`: the u32 after the type (encoding, bit offset, bits).
    int_data: u32,
    /// `STRUCT` / `UNION`: its members.
    members: Vec<Member>,
    /// `ENUM` / `ENUM64`: `(name offset, value)` of each enumerator.
    enumerators: Vec<(u32, i64)>,
}

/// One `struct btf_member`.
struct Member {
    name_off: u32,
    type_id: u32,
    offset: u32,
}

/// Where a member sits, counted from the start of the outer struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberOffset {
    /// The byte holding the member's first bit.
    pub byte: u32,
    /// Set for a bitfield only.
    pub bitfield: Option<Bitfield>,
}

/// A bitfield member's position inside [`MemberOffset::byte`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bitfield {
    /// First bit within the byte (0..=7), in BTF's numbering (from the least
    /// significant bit on a little-endian kernel).
    pub bit: u8,
    /// Width in bits.
    pub bits: u8,
}

/// Reads integers in the byte order the file's magic announced: BTF is written in
/// the kernel's own byte order.
#[derive(Clone, Copy)]
struct Reader<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl Reader<'_> {
    fn u32(&self, at: usize) -> Result<u32> {
        let b: [u8; 4] = at
            .checked_add(4)
            .and_then(|end| self.bytes.get(at..end))
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| anyhow!("truncated at byte {at}"))?;
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
}

impl Btf {
    /// Parses a BTF blob held in memory.
    pub fn parse(bytes: &[u8]) -> Result<Btf> {
        let big_endian = match bytes.get(..2) {
            Some([0x9f, 0xeb]) => false,
            Some([0xeb, 0x9f]) => true,
            Some([a, b]) => bail!(
                "bad magic 0x{:04x} (want 0x{MAGIC:04x} in either byte order)",
                u16::from_le_bytes([*a, *b])
            ),
            _ => bail!("{} bytes, too short for a BTF header", bytes.len()),
        };
        let r = Reader { bytes, big_endian };
        if bytes.len() < HEADER_LEN {
            bail!("{} bytes, too short for a BTF header", bytes.len());
        }
        let version = bytes[2];
        if version != 1 {
            bail!("BTF version {version}, only version 1 is known");
        }
        // Later headers may grow; the sections are counted from the end of
        // whatever length this one declares.
        let hdr_len = r.u32(4)? as usize;
        if hdr_len < HEADER_LEN {
            bail!("header length {hdr_len}, less than {HEADER_LEN}");
        }
        let section = |off_at: usize, what: &str| -> Result<&[u8]> {
            let off = r.u32(off_at)? as usize;
            let len = r.u32(off_at + 4)? as usize;
            hdr_len
                .checked_add(off)
                .and_then(|start| Some(start..start.checked_add(len)?))
                .and_then(|range| bytes.get(range))
                .ok_or_else(|| {
                    anyhow!(
                        "{what} section (offset {off}, {len} bytes) beyond the file's {} bytes",
                        bytes.len()
                    )
                })
        };
        let type_section = section(8, "type")?;
        let strings = section(16, "string")?.to_vec();
        let types = parse_types(Reader {
            bytes: type_section,
            big_endian,
        })?;
        Ok(Btf { types, strings })
    }

    fn ty(&self, id: u32) -> Result<&Type> {
        self.types
            .get(id as usize)
            .ok_or_else(|| anyhow!("type id {id} beyond the last one, {}", self.types.len() - 1))
    }

    /// The NUL-terminated string at `off` in the string table.
    fn name(&self, off: u32) -> Result<&[u8]> {
        let rest = self
            .strings
            .get(off as usize..)
            .ok_or_else(|| anyhow!("name offset {off} beyond the string table"))?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| anyhow!("name at offset {off} has no terminating NUL"))?;
        Ok(&rest[..end])
    }

    /// The first struct or union named `name` that has a body: a forward
    /// declaration is a different kind, and a zero-sized one is no layout to use.
    fn find_struct(&self, name: &str) -> Result<Option<&Type>> {
        for t in &self.types {
            if matches!(t.kind, KIND_STRUCT | KIND_UNION)
                && t.size_or_type != 0
                && self.name(t.name_off)? == name.as_bytes()
            {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// Follows typedefs and qualifiers to the type they name.
    fn resolve(&self, mut id: u32) -> Result<&Type> {
        for _ in 0..MAX_DEPTH {
            let t = self.ty(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Ok(t),
            }
        }
        bail!("type id {id}: typedef or qualifier chain deeper than {MAX_DEPTH}")
    }

    /// Bit offset (from the start of `outer`) and bitfield width of `member`,
    /// looking inside anonymous struct and union members too.
    fn find_member(
        &self,
        outer: &Type,
        member: &[u8],
        depth: usize,
    ) -> Result<Option<(u32, Option<u8>)>> {
        if depth > MAX_DEPTH {
            bail!("anonymous members nested deeper than {MAX_DEPTH}");
        }
        for m in &outer.members {
            // Without kind_flag the offset is all bit offset; with it, the top
            // byte is the bitfield size (0 for an ordinary member).
            let (bit_offset, mut bits) = if outer.kind_flag {
                (
                    m.offset & 0x00ff_ffff,
                    Some((m.offset >> 24) as u8).filter(|&b| b != 0),
                )
            } else {
                (m.offset, None)
            };
            let name = self.name(m.name_off)?;
            if name.is_empty() {
                let inner = self.resolve(m.type_id)?;
                if matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                    && let Some((off, bits)) = self.find_member(inner, member, depth + 1)?
                {
                    let total = bit_offset
                        .checked_add(off)
                        .ok_or_else(|| anyhow!("member offset overflows"))?;
                    return Ok(Some((total, bits)));
                }
                continue;
            }
            if name != member {
                continue;
            }
            let mut bit_offset = bit_offset;
            if bits.is_none() {
                // An older encoder marks a bitfield by an int type narrower than
                // its size instead of by kind_flag.
                let t = self.resolve(m.type_id)?;
                if t.kind == KIND_INT {
                    let nr_bits = t.int_data & 0xff;
                    if nr_bits != t.size_or_type.saturating_mul(8) {
                        bits = Some(nr_bits as u8);
                        bit_offset = bit_offset
                            .checked_add((t.int_data >> 16) & 0xff)
                            .ok_or_else(|| anyhow!("member offset overflows"))?;
                    }
                }
            }
            return Ok(Some((bit_offset, bits)));
        }
        Ok(None)
    }
}

/// Walks the type section. Type ids count from 1 in file order, so every kind's
/// trailing data must be skipped exactly, and an unknown kind ends the walk.
fn parse_types(r: Reader) -> Result<Vec<Type>> {
    let mut types = vec![Type {
        name_off: 0,
        kind: 0,
        kind_flag: false,
        size_or_type: 0,
        int_data: 0,
        members: Vec::new(),
        enumerators: Vec::new(),
    }];
    let mut at = 0;
    while at < r.bytes.len() {
        let id = types.len();
        let ctx = || format!("type id {id} at byte {at} of the type section");
        let name_off = r.u32(at).with_context(ctx)?;
        let info = r.u32(at + 4).with_context(ctx)?;
        let size_or_type = r.u32(at + 8).with_context(ctx)?;
        let vlen = (info & 0xffff) as usize;
        let kind = ((info >> 24) & 0x1f) as u8;
        let kind_flag = info >> 31 != 0;
        let data = at + 12;
        let data_len = match kind {
            KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
            KIND_ARRAY => 12,
            KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
            KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
            // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
            2 | 7..=12 | 16 | 18 => 0,
            _ => bail!("{}: unknown kind {kind}", ctx()),
        };
        if data + data_len > r.bytes.len() {
            bail!("{}: kind {kind} data runs past the type section", ctx());
        }
        let int_data = if kind == KIND_INT { r.u32(data)? } else { 0 };
        let members = if matches!(kind, KIND_STRUCT | KIND_UNION) {
            (0..vlen)
                .map(|i| {
                    let m = data + 12 * i;
                    Ok(Member {
                        name_off: r.u32(m)?,
                        type_id: r.u32(m + 4)?,
                        offset: r.u32(m + 8)?,
                    })
                })
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        // ENUM: `{name_off, val}`, val signed when kind_flag says so; ENUM64:
        // `{name_off, val_lo32, val_hi32}`.
        let enumerators = match kind {
            KIND_ENUM => (0..vlen)
                .map(|i| {
                    let e = data + 8 * i;
                    let raw = r.u32(e + 4)?;
                    let val = if kind_flag {
                        i64::from(raw as i32)
                    } else {
                        i64::from(raw)
                    };
                    Ok((r.u32(e)?, val))
                })
                .collect::<Result<_>>()?,
            KIND_ENUM64 => (0..vlen)
                .map(|i| {
                    let e = data + 12 * i;
                    let val = u64::from(r.u32(e + 8)?) << 32 | u64::from(r.u32(e + 4)?);
                    Ok((r.u32(e)?, val as i64))
                })
                .collect::<Result<_>>()?,
            _ => Vec::new(),
        };
        types.push(Type {
            name_off,
            kind,
            kind_flag,
            size_or_type,
            int_data,
            members,
            enumerators,
        });
        at = data + data_len;
    }
    Ok(types)
}

/// Where `member` of `struct struct_name` sits: its byte, and for a bitfield the
/// bit and width. Anonymous struct and union members are searched through, since
/// kernel structs nest fields in them (`_skb_refdst`) and `struct_group()` can wrap
/// any field in one. `Ok(None)`: the struct has no such member (config off);
/// an error: the struct itself is missing or the BTF is malformed.
pub fn member_offset(btf: &Btf, struct_name: &str, member: &str) -> Result<Option<MemberOffset>> {
    let outer = btf
        .find_struct(struct_name)?
        .ok_or_else(|| anyhow!("no struct {struct_name} in BTF"))?;
    Ok(btf
        .find_member(outer, member.as_bytes(), 0)?
        .map(|(bit_offset, bits)| MemberOffset {
            byte: bit_offset / 8,
            bitfield: bits.map(|bits| Bitfield {
                bit: (bit_offset % 8) as u8,
                bits,
            }),
        }))
}

/// The value of the enumerator `name` in whichever enum of the BTF has it
/// (enumerator names are unique in C); `Ok(None)` when none does.
pub fn enum_value(btf: &Btf, name: &str) -> Result<Option<i64>> {
    for t in btf
        .types
        .iter()
        .filter(|t| matches!(t.kind, KIND_ENUM | KIND_ENUM64))
    {
        for &(name_off, value) in &t.enumerators {
            if btf.name(name_off)? == name.as_bytes() {
                return Ok(Some(value));
            }
        }
    }
    Ok(None)
}

/// Byte offsets in `struct sk_buff` of the fields the scrub observer reads; None
/// where the kernel's sk_buff has no such member (its config is off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkbOffsets {
    /// `_nfct`: the conntrack entry and ctinfo (`CONFIG_NF_CONNTRACK`).
    pub nfct: Option<u32>,
    /// `_skb_refdst`: the cached route (`dst_entry`), with a noref flag bit.
    pub refdst: Option<u32>,
    /// `active_extensions`, a u8 bitmap of skb extensions (`CONFIG_SKB_EXTENSIONS`).
    pub active_extensions: Option<u32>,
    /// The bit of `active_extensions` that is the XFRM secpath: `SKB_EXT_SEC_PATH`
    /// of `enum skb_ext_id`, whose members before it exist by config (the
    /// bridge-netfilter one first, so 1 on Debian's kernels); None without
    /// `CONFIG_XFRM`.
    pub sec_path_bit: Option<u32>,
}

impl SkbOffsets {
    /// Offsets for the running kernel, from [`VMLINUX_BTF`].
    pub fn from_sysfs() -> Result<SkbOffsets> {
        let bytes =
            std::fs::read(VMLINUX_BTF).with_context(|| format!("cannot read {VMLINUX_BTF}"))?;
        SkbOffsets::from_btf(&bytes).map_err(|e| anyhow!("{VMLINUX_BTF}: {e:#}"))
    }

    /// Offsets from a BTF blob (a kernel's `.BTF` section).
    pub fn from_btf(bytes: &[u8]) -> Result<SkbOffsets> {
        let btf = Btf::parse(bytes)?;
        // The program reads whole bytes; a bitfield would need a mask it lacks.
        let byte = |member: &str| -> Result<Option<u32>> {
            match member_offset(&btf, "sk_buff", member)? {
                Some(MemberOffset {
                    byte,
                    bitfield: None,
                }) => Ok(Some(byte)),
                Some(_) => bail!("sk_buff.{member} is a bitfield"),
                None => Ok(None),
            }
        };
        Ok(SkbOffsets {
            nfct: byte("_nfct")?,
            refdst: byte("_skb_refdst")?,
            active_extensions: byte("active_extensions")?,
            sec_path_bit: enum_value(&btf, "SKB_EXT_SEC_PATH")?
                .and_then(|v| u32::try_from(v).ok())
                .filter(|&bit| bit < 8),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob by hand, in either byte order.
    struct Blob {
        big_endian: bool,
        strings: Vec<u8>,
        types: Vec<u8>,
        next_id: u32,
    }

    impl Blob {
        fn new(big_endian: bool) -> Blob {
            Blob {
                big_endian,
                strings: vec![0],
                types: Vec::new(),
                next_id: 1,
            }
        }

        fn put(buf: &mut Vec<u8>, big_endian: bool, v: u32) {
            buf.extend(if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            });
        }

        fn u32(&mut self, v: u32) {
            Blob::put(&mut self.types, self.big_endian, v);
        }

        fn str(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend(s.as_bytes());
            self.strings.push(0);
            off
        }

        /// A `btf_type` header; returns its type id. Trailing data follows by `u32`.
        fn ty(&mut self, name: &str, kind: u8, kind_flag: bool, vlen: u32, size: u32) -> u32 {
            let name = self.str(name);
            self.u32(name);
            self.u32((kind_flag as u32) << 31 | (kind as u32) << 24 | vlen);
            self.u32(size);
            self.next_id += 1;
            self.next_id - 1
        }

        fn int(&mut self, name: &str, size: u32, bits: u32) -> u32 {
            let id = self.ty(name, KIND_INT, false, 0, size);
            self.u32(bits);
            id
        }

        fn strukt(
            &mut self,
            kind: u8,
            name: &str,
            kind_flag: bool,
            size: u32,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let id = self.ty(name, kind, kind_flag, members.len() as u32, size);
            for &(name, type_id, offset) in members {
                let name = self.str(name);
                self.u32(name);
                self.u32(type_id);
                self.u32(offset);
            }
            id
        }

        fn bytes(&self) -> Vec<u8> {
            let be = self.big_endian;
            let mut out = Vec::new();
            out.extend(if be { [0xeb, 0x9f] } else { [0x9f, 0xeb] });
            out.extend([1, 0]);
            for v in [
                HEADER_LEN as u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                Blob::put(&mut out, be, v);
            }
            out.extend(&self.types);
            out.extend(&self.strings);
            out
        }
    }

    /// A miniature `struct sk_buff`, preceded by one type of each kind that carries
    /// trailing data, so a wrong skip length would misparse everything after it.
    fn skb_blob(big_endian: bool) -> Vec<u8> {
        let mut b = Blob::new(big_endian);
        let int = b.int("int", 4, 32); // [1]
        let u8_ = b.int("unsigned char", 1, 8); // [2]
        let ulong = b.int("long unsigned int", 8, 64); // [3]
        b.ty("", 2, false, 0, int); // PTR
        b.ty("", KIND_ARRAY, false, 0, 0);
        for v in [u8_, int, 48] {
            b.u32(v);
        }
        b.ty("skb_ext_id", KIND_ENUM, false, 2, 4);
        for v in [b.str("SKB_EXT_BRIDGE_NF"), 0, b.str("SKB_EXT_SEC_PATH"), 1] {
            b.u32(v);
        }
        b.ty("sk_buff", 7, false, 0, 0); // FWD, to be ignored
        b.ty("", KIND_FUNC_PROTO, false, 1, int);
        for v in [0, int] {
            b.u32(v);
        }
        b.ty("v", KIND_VAR, false, 0, int);
        b.u32(1);
        b.ty(".data", KIND_DATASEC, false, 1, 4);
        for v in [b.next_id - 1, 0, 4] {
            b.u32(v);
        }
        b.ty("tag", KIND_DECL_TAG, false, 0, int);
        b.u32(u32::MAX);
        b.ty("tt", KIND_TYPE_TAG, false, 0, int);
        b.ty("e64", KIND_ENUM64, false, 1, 8);
        for v in [b.str("C"), 1, 2] {
            b.u32(v);
        }
        b.ty("f", 16, false, 0, 8); // FLOAT
        let ulong_t = b.ty("ulong_t", KIND_TYPEDEF, false, 0, ulong);
        let anon_struct = b.strukt(
            KIND_STRUCT,
            "",
            false,
            16,
            &[("_skb_refdst", ulong_t, 0), ("destructor", ulong, 64)],
        );
        let anon_union = b.strukt(
            KIND_UNION,
            "",
            false,
            16,
            &[("", anon_struct, 0), ("tcp_tsorted_anchor", ulong, 0)],
        );
        b.strukt(KIND_STRUCT, "sk_buff", false, 0, &[]); // zero-sized, to be ignored
        // kind_flag: each offset carries a bitfield size in its top byte.
        b.strukt(
            KIND_STRUCT,
            "sk_buff",
            true,
            64,
            &[
                ("len", int, 0),
                ("", anon_union, 8 * 8),
                ("_nfct", ulong, 24 * 8),
                ("pkt_type", u8_, 3 << 24 | (32 * 8 + 5)),
                ("active_extensions", u8_, 33 * 8),
            ],
        );
        b.bytes()
    }

    #[test]
    fn finds_direct_nested_and_bitfield_members() {
        for big_endian in [false, true] {
            let btf = Btf::parse(&skb_blob(big_endian)).unwrap();
            let at = |m: &str| member_offset(&btf, "sk_buff", m).unwrap();
            let byte = |byte| {
                Some(MemberOffset {
                    byte,
                    bitfield: None,
                })
            };
            assert_eq!(at("len"), byte(0));
            assert_eq!(at("_nfct"), byte(24));
            assert_eq!(at("_skb_refdst"), byte(8));
            assert_eq!(at("destructor"), byte(16));
            assert_eq!(
                at("pkt_type"),
                Some(MemberOffset {
                    byte: 32,
                    bitfield: Some(Bitfield { bit: 5, bits: 3 }),
                })
            );
            assert_eq!(at("active_extensions"), byte(33));
            assert_eq!(at("no_such_member"), None);
            assert_eq!(
                SkbOffsets::from_btf(&skb_blob(big_endian)).unwrap(),
                SkbOffsets {
                    nfct: Some(24),
                    refdst: Some(8),
                    active_extensions: Some(33),
                    sec_path_bit: Some(1),
                }
            );
        }
    }

    #[test]
    fn reads_enumerators_signed_unsigned_and_64_bit() {
        let mut b = Blob::new(false);
        b.ty("s", KIND_ENUM, true, 1, 4);
        for v in [b.str("NEG"), (-3i32) as u32] {
            b.u32(v);
        }
        b.ty("u", KIND_ENUM, false, 1, 4);
        for v in [b.str("BIG"), u32::MAX] {
            b.u32(v);
        }
        b.ty("w", KIND_ENUM64, false, 1, 8);
        for v in [b.str("WIDE"), 2, 1] {
            b.u32(v);
        }
        let btf = Btf::parse(&b.bytes()).unwrap();
        assert_eq!(enum_value(&btf, "NEG").unwrap(), Some(-3));
        assert_eq!(enum_value(&btf, "BIG").unwrap(), Some(i64::from(u32::MAX)));
        assert_eq!(enum_value(&btf, "WIDE").unwrap(), Some((1 << 32) + 2));
        assert_eq!(enum_value(&btf, "NONE").unwrap(), None);
    }

    #[test]
    fn finds_a_bitfield_marked_by_a_narrow_int() {
        let mut b = Blob::new(false);
        let three_bits = b.int("u8", 1, 3);
        b.strukt(
            KIND_STRUCT,
            "s",
            false,
            4,
            &[("a", three_bits, 8 + 2), ("b", three_bits, 16)],
        );
        let btf = Btf::parse(&b.bytes()).unwrap();
        let bf = |byte, bit| {
            Some(MemberOffset {
                byte,
                bitfield: Some(Bitfield { bit, bits: 3 }),
            })
        };
        assert_eq!(member_offset(&btf, "s", "a").unwrap(), bf(1, 2));
        assert_eq!(member_offset(&btf, "s", "b").unwrap(), bf(2, 0));
    }

    #[test]
    fn says_what_is_wrong() {
        let err = |bytes: &[u8]| format!("{:#}", Btf::parse(bytes).err().unwrap());
        let mut bad = skb_blob(false);
        bad[..2].copy_from_slice(&[0x7f, 0x45]);
        assert!(err(&bad).starts_with("bad magic 0x457f"), "{}", err(&bad));

        let mut b = Blob::new(false);
        b.int("int", 4, 32);
        b.ty("x", 25, false, 0, 0);
        assert!(
            err(&b.bytes()).contains("type id 2 "),
            "{}",
            err(&b.bytes())
        );
        assert!(
            err(&b.bytes()).contains("unknown kind 25"),
            "{}",
            err(&b.bytes())
        );

        let mut cut = skb_blob(false);
        cut.truncate(cut.len() - 10);
        assert!(err(&cut).contains("string section"), "{}", err(&cut));

        let mut b = Blob::new(false);
        b.int("int", 4, 32);
        let no_skb = SkbOffsets::from_btf(&b.bytes()).unwrap_err();
        assert_eq!(no_skb.to_string(), "no struct sk_buff in BTF");
    }

    #[test]
    fn reads_the_running_kernels_sk_buff() {
        let Ok(bytes) = std::fs::read(VMLINUX_BTF) else {
            eprintln!("skipped: no readable {VMLINUX_BTF}");
            return;
        };
        let offsets = SkbOffsets::from_btf(&bytes).unwrap();
        eprintln!("{VMLINUX_BTF}: {offsets:?}");
        let btf = Btf::parse(&bytes).unwrap();
        let size = btf.find_struct("sk_buff").unwrap().unwrap().size_or_type;
        let found = [offsets.nfct, offsets.refdst, offsets.active_extensions]
            .map(|o| o.expect("every member present on this kernel"));
        for o in found {
            assert!(o < size, "{offsets:?} beyond sk_buff's {size} bytes");
        }
        assert!(
            found[0] != found[1] && found[1] != found[2] && found[0] != found[2],
            "{offsets:?}"
        );
    }
}
