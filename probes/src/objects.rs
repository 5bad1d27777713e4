//! The compiled eBPF objects embedded in the probe, chosen by `build.rs`: rebuilt
//! from `ebpf/programs` when a BPF toolchain was found, else the committed
//! `ebpf/dist` objects (only if their stamp matches the sources).
//! Program and map names are in `conformance_ebpf_common::names`.

/// `hook.bpf.o`: the TC program `hook` with its `CONFIG`, `EVENTS` and `COUNTERS` maps.
pub static HOOK: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hook.bpf.o"));

/// `helper_probe.bpf.o`: one TC program `probe_<helper>` per helper in
/// `conformance_contract::facts::HELPERS`; loading one tells whether the verifier knows it.
pub static HELPER_PROBE: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/helper_probe.bpf.o"));

/// Where the embedded objects came from: `rebuilt` or `shipped`.
pub const SOURCE: &str = env!("CONFORMANCE_EBPF_SOURCE");

/// `sha256:<hex>` of the eBPF sources the objects were built from (see `ebpf/builder.rs`).
pub const STAMP: &str = env!("CONFORMANCE_EBPF_STAMP");
