//! Types shared by the eBPF programs (`ebpf/programs`) and the probe.
//!
//! `no_std` and `repr(C)` so both sides agree on layout byte for byte. The eBPF
//! workspace builds this crate for `bpfel-unknown-none`; the probe builds it with
//! the `user` feature, which adds `aya::Pod`.
#![no_std]

/// UDP destination port the probe's test traffic uses (over IPv4 or IPv6); hooks
/// ignore everything else (ARP, neighbour discovery, MLD) so counters count only
/// what the check sent.
pub const PROBE_PORT: u16 = 47_474;

/// First four payload bytes of every probe datagram, then a big-endian sequence number.
pub const PAYLOAD_MAGIC: [u8; 4] = *b"CCnf";

/// What a hook program does with a matching packet after recording it.
pub mod action {
    /// Return `TC_ACT_OK`: hand the packet on (Cilium's "-> stack").
    pub const PASS: u32 = 0;
    /// Return `TC_ACT_SHOT`: drop (negative controls).
    pub const DROP: u32 = 1;
    /// `bpf_redirect(target_ifindex, flags)` and return its result.
    pub const REDIRECT: u32 = 2;
    /// `bpf_redirect_peer(target_ifindex, 0)` and return its result.
    pub const REDIRECT_PEER: u32 = 3;
    /// `bpf_redirect_neigh(target_ifindex, NULL, 0, 0)` and return its result: the
    /// kernel routes the packet out of the target and fills in its L2 header from
    /// the neighbour table, resolving the neighbour (ARP) when it has no entry.
    pub const REDIRECT_NEIGH: u32 = 4;
    /// `bpf_fib_lookup` on the packet's addresses (`AF_INET` or `AF_INET6`, by the
    /// packet's IP version), input device the hook's own,
    /// with [`HookConfig::fib_flags`]; the answer goes into the event
    /// (`fib_rc`, `fib_ifindex`, `fib_smac`, `fib_dmac`). On `BPF_FIB_LKUP_RET_SUCCESS`
    /// the frame's MACs are rewritten to the answer's and it is `bpf_redirect`ed to
    /// the answer's device (egress), as Cilium's FIB path does; on any other answer
    /// it is handed to the stack (`TC_ACT_OK`).
    pub const FIB_LOOKUP: u32 = 5;
    /// Return `TC_ACT_UNSPEC`: whatever comes next on the device runs (the next
    /// TCX program, then legacy tc filters such as a `mirred` one), as if the
    /// hook only watched.
    pub const CONTINUE: u32 = 6;
}

/// `BPF_FIB_LKUP_RET_*`: what `bpf_fib_lookup` answers (negative: an errno).
pub mod fib_rc {
    pub const SUCCESS: i32 = 0;
    pub const BLACKHOLE: i32 = 1;
    pub const UNREACHABLE: i32 = 2;
    pub const PROHIBIT: i32 = 3;
    pub const NOT_FWDED: i32 = 4;
    pub const FWD_DISABLED: i32 = 5;
    pub const UNSUPP_LWT: i32 = 6;
    pub const NO_NEIGH: i32 = 7;
    pub const FRAG_NEEDED: i32 = 8;
    pub const NO_SRC_ADDR: i32 = 9;

    /// The kernel's name for an answer, for evidence.
    pub fn name(rc: i32) -> &'static str {
        match rc {
            SUCCESS => "SUCCESS",
            BLACKHOLE => "BLACKHOLE",
            UNREACHABLE => "UNREACHABLE",
            PROHIBIT => "PROHIBIT",
            NOT_FWDED => "NOT_FWDED",
            FWD_DISABLED => "FWD_DISABLED",
            UNSUPP_LWT => "UNSUPP_LWT",
            NO_NEIGH => "NO_NEIGH",
            FRAG_NEEDED => "FRAG_NEEDED",
            NO_SRC_ADDR => "NO_SRC_ADDR",
            _ => "errno",
        }
    }
}

/// `flags` for [`action::REDIRECT`]: deliver to the target's ingress instead of its egress.
pub const BPF_F_INGRESS: u64 = 1;

/// Configuration of one loaded hook program, in its `CONFIG` array at index 0.
/// The probe writes it before attaching; programs treat a missing entry as
/// "match nothing, pass everything".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookConfig {
    /// Which packets count as the check's traffic: UDP over IPv4 or IPv6 to this
    /// port (host order).
    pub dport: u16,
    /// Non-zero: rewrite the destination MAC to `dst_mac` before acting.
    pub rewrite_dst_mac: u8,
    pub _pad0: u8,
    /// One of [`action`].
    pub action: u32,
    /// Target of the redirect actions.
    pub target_ifindex: u32,
    /// Non-zero: set `skb->mark` to this value before acting.
    pub set_mark: u32,
    /// Flags for [`action::REDIRECT`].
    pub redirect_flags: u64,
    /// Non-zero: set `skb->tstamp` to this value before acting.
    pub set_tstamp: u64,
    pub dst_mac: [u8; 6],
    pub _pad1: [u8; 2],
    /// `flags` for [`action::FIB_LOOKUP`] (`BPF_FIB_LOOKUP_DIRECT` 1, `OUTPUT` 2, ...).
    pub fib_flags: u32,
    /// Which of `struct sk_buff`'s own fields the `hook_state` program reads
    /// ([`kern`] bits); the `hook` program ignores this and the offsets.
    pub kern_mask: u32,
    /// Byte offsets in the running kernel's `struct sk_buff` (from its BTF) of
    /// `_nfct`, `_skb_refdst` and `active_extensions`.
    pub kern_nfct_off: u16,
    pub kern_refdst_off: u16,
    pub kern_ext_off: u16,
    pub _pad2: u16,
}

/// Bits of [`HookConfig::kern_mask`] and [`SkbMeta::kern_read`]: the kernel's own
/// `struct sk_buff` fields that `__sk_buff` does not show, which the
/// CVE-2025-37959 scrub resets (`nf_reset_ct`, `skb_dst_drop`, `skb_ext_reset`).
pub mod kern {
    /// `skb->_nfct`: the conntrack entry (and ctinfo in its low 3 bits).
    pub const NFCT: u32 = 1;
    /// `skb->_skb_refdst`: the route (dst entry, low bit "no reference").
    pub const REFDST: u32 = 2;
    /// `skb->active_extensions`: one bit per skb extension (bit 0 the
    /// bridge-netfilter one, bit 1 the XFRM secpath, where configured).
    pub const EXT: u32 = 4;
}

/// What a hook saw of one matching packet, pushed to the `EVENTS` ring buffer.
/// Field names follow `struct __sk_buff`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkbMeta {
    pub ifindex: u32,
    pub ingress_ifindex: u32,
    pub mark: u32,
    /// `skb->hash` as it was (not recalculated): Cilium's trace `flow`.
    pub hash: u32,
    /// `skb->protocol`, network byte order as in `__sk_buff`.
    pub protocol: u32,
    /// 0 HOST, 1 BROADCAST, 2 MULTICAST, 3 OTHERHOST.
    pub pkt_type: u32,
    pub len: u32,
    /// IPv4 source and destination, network byte order; 0 for an IPv6 packet
    /// (its addresses are [`SkbMeta::saddr6`] and [`SkbMeta::daddr6`]).
    pub saddr: u32,
    pub daddr: u32,
    /// Sequence number from the payload (after [`PAYLOAD_MAGIC`]), big-endian decoded.
    pub seq: u32,
    pub tstamp: u64,
    /// Return value of the redirect helper, or the TC action returned.
    pub result: i64,
    /// The frame's Ethernet destination and source as the hook saw them, before
    /// any rewrite: an observer's view of the L2 header the packet arrived with.
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    /// Non-zero when the hook called `bpf_fib_lookup` for this packet.
    pub fib_called: u32,
    /// Its return value ([`fib_rc`]) and answer: output device, source and
    /// destination MAC (the latter two are meaningful on `SUCCESS` only).
    pub fib_rc: i32,
    pub fib_ifindex: u32,
    pub fib_smac: [u8; 6],
    pub fib_dmac: [u8; 6],
    /// The IP version of the packet the hook matched: 4 or 6.
    pub ip_version: u8,
    pub _pad: [u8; 3],
    /// IPv6 source and destination as they are in the packet; zero for IPv4.
    pub saddr6: [u8; 16],
    pub daddr6: [u8; 16],
    /// [`kern`] bits of the fields `hook_state` read (`bpf_probe_read_kernel`
    /// succeeded); zero from the `hook` program.
    pub kern_read: u32,
    /// `skb->active_extensions` as read.
    pub kern_ext: u8,
    pub _pad3: [u8; 3],
    /// `skb->_nfct` and `skb->_skb_refdst` as read (non-zero: the skb carries a
    /// conntrack entry, a route).
    pub kern_nfct: u64,
    pub kern_refdst: u64,
}

/// Slots of the `COUNTERS` per-CPU array; userspace sums across CPUs
/// (the BPF target has no atomic add that works everywhere).
pub mod counter {
    /// Every packet the program ran on.
    pub const SEEN: u32 = 0;
    /// Packets that matched [`super::HookConfig::dport`].
    pub const MATCHED: u32 = 1;
    /// Matched packets whose redirect helper refused the call (`TC_ACT_SHOT`), which
    /// it does only for invalid flags. A missing or wrong target is *not* seen here:
    /// the helper only records it, and `skb_do_redirect` drops the packet after the
    /// program returned; the hop accounting after the hook shows that loss.
    pub const REDIRECT_FAILED: u32 = 2;
    /// Events that did not fit in the ring buffer.
    pub const EVENTS_LOST: u32 = 3;
    /// Matched packets whose redirect helper accepted the call (`TC_ACT_REDIRECT`):
    /// the hook's own count of what it handed on, the first hop after `MATCHED`.
    pub const REDIRECTED: u32 = 4;
    pub const LEN: u32 = 5;
}

/// Names of the programs and maps in each object, as the probe looks them up.
pub mod names {
    /// `hook.bpf.o`: records matching packets and passes, drops or redirects them.
    pub const HOOK_PROGRAM: &str = "hook";
    /// `hook.bpf.o`'s second program: `hook`, and it also reads the [`super::kern`]
    /// fields of `struct sk_buff` with `bpf_probe_read_kernel`. A separate program
    /// so a kernel whose verifier refuses that read still loads `hook`.
    pub const HOOK_STATE_PROGRAM: &str = "hook_state";
    /// `helper_probe.bpf.o`: one program per helper; loading it tells whether the verifier knows the helper.
    pub const HELPER_PROGRAM_PREFIX: &str = "probe_";
    pub const CONFIG_MAP: &str = "CONFIG";
    pub const EVENTS_MAP: &str = "EVENTS";
    pub const COUNTERS_MAP: &str = "COUNTERS";
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: both types are repr(C), Copy, made of integers, with explicit padding.
    unsafe impl aya::Pod for super::HookConfig {}
    unsafe impl aya::Pod for super::SkbMeta {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<HookConfig>(), 56);
        assert_eq!(core::mem::size_of::<SkbMeta>(), 152);
        // Each field where the one before it ends: no gap the compiler filled in.
        use core::mem::offset_of;
        assert_eq!(offset_of!(HookConfig, redirect_flags), 16);
        assert_eq!(offset_of!(HookConfig, dst_mac), 32);
        assert_eq!(offset_of!(HookConfig, fib_flags), 40);
        assert_eq!(offset_of!(HookConfig, kern_mask), 44);
        assert_eq!(offset_of!(HookConfig, kern_nfct_off), 48);
        assert_eq!(offset_of!(HookConfig, _pad2), 54);
        assert_eq!(offset_of!(SkbMeta, tstamp), 40);
        assert_eq!(offset_of!(SkbMeta, result), 48);
        assert_eq!(offset_of!(SkbMeta, eth_dst), 56);
        assert_eq!(offset_of!(SkbMeta, eth_src), 62);
        assert_eq!(offset_of!(SkbMeta, fib_called), 68);
        assert_eq!(offset_of!(SkbMeta, fib_rc), 72);
        assert_eq!(offset_of!(SkbMeta, fib_ifindex), 76);
        assert_eq!(offset_of!(SkbMeta, fib_smac), 80);
        assert_eq!(offset_of!(SkbMeta, fib_dmac), 86);
        assert_eq!(offset_of!(SkbMeta, ip_version), 92);
        assert_eq!(offset_of!(SkbMeta, _pad), 93);
        assert_eq!(offset_of!(SkbMeta, saddr6), 96);
        assert_eq!(offset_of!(SkbMeta, daddr6), 112);
        assert_eq!(offset_of!(SkbMeta, kern_read), 128);
        assert_eq!(offset_of!(SkbMeta, kern_ext), 132);
        assert_eq!(offset_of!(SkbMeta, kern_nfct), 136);
        assert_eq!(offset_of!(SkbMeta, kern_refdst), 144);
    }
}
