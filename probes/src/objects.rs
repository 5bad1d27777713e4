//! The compiled eBPF objects embedded in the probe, chosen by `build.rs`: rebuilt
//! from `ebpf/programs` when a BPF toolchain was found, else the committed
//! `ebpf/dist` objects (only if their stamp matches the sources).
//! Program and map names are in `conformance_ebpf_common::names`.

/// `hook.bpf.o`: the TC program `hook` with its `CONFIG`, `EVENTS` and `COUNTERS` maps.
pub static HOOK: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hook.bpf.o"));

/// `helper_probe.bpf.o`: one TC program `probe_<helper>` per helper in
/// `conformance_contract::facts::HELPERS`; loading one tells whether the verifier knows it.
pub static HELPER_PROBE: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/helper_probe.bpf.o"));

/// `xdp.bpf.o`: the XDP program `xdp_probe` with its `CONFIG` and `COUNTERS` maps
/// (layout in `crate::xdp`), for `xdp.veth`.
pub static XDP: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp.bpf.o"));

/// `sock.bpf.o`: the cgroup programs `slb_connect4`, `slb_sendmsg4`, `slb_recvmsg4`,
/// `slb_getpeer4` (socket LB) and `slb_drop_egress` (its `drop` fault), with their
/// `SERVICES`, `REV_NAT` and `COUNTERS` maps (layout in `crate::checks::socket_lb`).
pub static SOCK: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sock.bpf.o"));

/// `tunnel.bpf.o`: the TC programs `tunnel_encap` and `tunnel_decap` with their
/// `ENCAP_CONFIG`, `DECAP_CONFIG`, `EVENTS` and `COUNTERS` maps (layout in
/// `crate::tunnel_hooks`), for `tunnel.vxlan` and `tunnel.geneve`.
pub static TUNNEL: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tunnel.bpf.o"));

/// Where the embedded objects came from: `rebuilt` or `shipped`.
pub const SOURCE: &str = env!("CONFORMANCE_EBPF_SOURCE");

/// `sha256:<hex>` of the eBPF sources the objects were built from (see `ebpf/builder.rs`).
pub const STAMP: &str = env!("CONFORMANCE_EBPF_STAMP");

#[cfg(test)]
mod tests {
    //! Loading these into the kernel is tested in probes/tests/kernel.rs (needs root).
    use super::*;

    #[test]
    fn embedded_objects_are_bpf_elf() {
        for (name, object) in [
            ("hook", HOOK),
            ("helper_probe", HELPER_PROBE),
            ("xdp", XDP),
            ("sock", SOCK),
            ("tunnel", TUNNEL),
        ] {
            assert!(object.starts_with(b"\x7fELF"), "{name} is not ELF");
            // e_machine (offset 18, little-endian) 247 = EM_BPF.
            assert_eq!(
                u16::from_le_bytes([object[18], object[19]]),
                247,
                "{name} is not a BPF object"
            );
        }
        assert!(matches!(SOURCE, "rebuilt" | "shipped"), "{SOURCE}");
        assert!(
            STAMP.starts_with("sha256:") && STAMP.len() == 7 + 64,
            "{STAMP}"
        );
    }
}
