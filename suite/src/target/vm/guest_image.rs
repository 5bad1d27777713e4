//! What one guest boots with: an initramfs holding the static probe as `/init`,
//! its instructions (`/conformance/guest.json`) and the modules the checks need,
//! uncompressed and listed dependencies first.

use super::initramfs::Initramfs;
use super::kernel::GuestKernel;
use super::modules;
use super::qemu::{Accel, Machine};
use crate::target::ProbeArgs;
use conformance_contract::guest::{GUEST_CONFIG_PATH, GuestConfig, GuestModule};
use std::path::Path;

/// Modules without which no check can run: veth pairs, the clsact qdisc, TC BPF
/// classifiers and actions.
pub const REQUIRED_MODULES: &[&str] = &["veth", "sch_ingress", "cls_bpf", "act_bpf"];

/// Modules of the devices some checks use; a kernel without them has the feature
/// absent, which the facts record and the matrix judges (netkit before 6.7). The
/// scrub checks' topology (`probes/src/topology_scrub.rs`) needs the bridge with
/// br_netfilter, macvlan, nftables with conntrack, and the u32/mirred filter; the
/// XFRM scrub check an ESP tunnel with `rfc4106(gcm(aes))` (the `xfrm.esp` fact).
pub const OPTIONAL_MODULES: &[&str] = &[
    "vxlan",
    "geneve",
    "netkit",
    "bridge",
    "br_netfilter",
    "macvlan",
    // libcrc32c (under nf_conntrack and nf_tables) asks for the "crc32c" crypto
    // algorithm by alias (`softdep=pre: crc32c`); where it is a module (the arm64
    // 16K kernel) its file is crc32c_generic, which no alias lookup here finds.
    "crc32c_generic",
    "nf_conntrack",
    "nf_tables",
    "nft_ct",
    // 5.10 has nftables' counter as a module of its own (built into nf_tables since 5.11ish).
    "nft_counter",
    "cls_u32",
    "act_mirred",
    // ESP: nothing in the guest can autoload (no modprobe), so every piece of the
    // crypto the state needs is listed. seqiv/echainiv take their salt from the
    // default RNG, which 5.10 and 6.1 build as the drbg module (its HMAC-SHA512
    // core needs sha512_generic, its self-tests ctr, so both go first; without
    // them esp4 says "Kernel was unable to initialize cryptographic operations");
    // gcm needs ctr(aes) there too. 6.12 builds them in, and splits geniv and
    // crypto_null out as modules; names a kernel has built in are skipped.
    "sha512_generic",
    "ctr",
    "drbg",
    "xfrm_algo",
    "xfrm_user",
    "esp4",
    "crypto_null",
    "geniv",
    "gf128mul",
    "ghash-generic",
    "gcm",
    "seqiv",
    "echainiv",
];

/// Where modules sit in the initramfs.
const MODULE_DIR: &str = "/conformance/modules";

/// A built initramfs and what it holds.
pub struct GuestImage {
    pub bytes: Vec<u8>,
    pub config: GuestConfig,
}

/// The modules a guest of `kernel` loads ([`REQUIRED_MODULES`] must all be there).
pub fn modules_for(kernel: &GuestKernel) -> Result<modules::Resolved, String> {
    modules::resolve(kernel, REQUIRED_MODULES, OPTIONAL_MODULES).map_err(|e| e.to_string())
}

/// Assembles the initramfs: `probe` as init running `args`, the `resolved` modules.
pub fn build(
    resolved: &modules::Resolved,
    probe: &Path,
    args: &ProbeArgs,
    machine: &Machine,
    accel: Accel,
    accel_note: &str,
) -> Result<GuestImage, String> {
    let probe_bytes =
        std::fs::read(probe).map_err(|e| format!("read the probe {}: {e}", probe.display()))?;
    let mut fs = Initramfs::new();
    for dir in [
        "/dev",
        "/proc",
        "/sys",
        "/tmp",
        "/run",
        "/conformance",
        MODULE_DIR,
    ] {
        fs.dir(dir);
    }
    fs.char_device("/dev/console", 5, 1);
    fs.file("/init", 0o755, &probe_bytes);
    let mut listed = Vec::new();
    for module in &resolved.modules {
        let bytes = modules::read_module(module).map_err(|e| {
            format!(
                "read module {} ({}): {e}",
                module.name,
                module.path.display()
            )
        })?;
        let path = format!("{MODULE_DIR}/{}.ko", module.name);
        fs.file(&path, 0o644, &bytes);
        listed.push(GuestModule {
            required: REQUIRED_MODULES.contains(&module.name.replace('-', "_").as_str()),
            name: module.name.clone(),
            path,
        });
    }
    let config = GuestConfig {
        args: args.to_argv(),
        results: machine.results_port.to_string(),
        modules: listed,
        missing_modules: resolved.missing.clone(),
        accel: accel.name().to_string(),
        accel_note: accel_note.to_string(),
    };
    let json = serde_json::to_vec_pretty(&config).expect("guest config serializes");
    fs.file(GUEST_CONFIG_PATH, 0o644, &json);
    Ok(GuestImage {
        bytes: fs.finish(),
        config,
    })
}
