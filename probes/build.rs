//! Decides which eBPF objects the probe embeds (see `src/objects.rs`) and puts
//! them in `$OUT_DIR`, one `<name>.bpf.o` per entry of `builder::OBJECTS`.
//!
//! `CONFORMANCE_EBPF` chooses:
//! - `auto` (default): with a BPF toolchain (see `ebpf/builder.rs`), rebuild from
//!   `ebpf/programs` and embed that, warning if `ebpf/dist` is stale; without one,
//!   embed the committed `ebpf/dist` if its STAMP matches the sources, else fail
//!   and say what to install.
//! - `shipped`: embed `ebpf/dist`; fail if its STAMP does not match the sources.
//! - `rebuild`: require a toolchain and rebuild (CI).
//!
//! The probe sees `CONFORMANCE_EBPF_SOURCE` (`rebuilt` or `shipped`) and
//! `CONFORMANCE_EBPF_STAMP` (the sources' stamp) at compile time.

#[path = "../ebpf/builder.rs"]
mod builder;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const POLICY_VAR: &str = "CONFORMANCE_EBPF";

#[derive(Clone, Copy, PartialEq)]
enum Policy {
    Auto,
    Shipped,
    Rebuild,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // Cargo shows a failed build script's stderr; keep it readable.
            eprintln!("\nerror: {message}\n");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .ok_or("probes has no parent directory")?
        .to_path_buf();
    let ebpf_dir = root.join("ebpf");
    let out_dir = PathBuf::from(env("OUT_DIR")?);

    println!("cargo:rerun-if-env-changed={POLICY_VAR}");
    for input in [
        "programs/src",
        "programs/Cargo.toml",
        "programs/Cargo.lock",
        "common",
        "dist",
        "builder.rs",
    ] {
        println!("cargo:rerun-if-changed={}", ebpf_dir.join(input).display());
    }

    let policy = match std::env::var(POLICY_VAR).as_deref() {
        Err(_) | Ok("") | Ok("auto") => Policy::Auto,
        Ok("shipped") => Policy::Shipped,
        Ok("rebuild") => Policy::Rebuild,
        Ok(other) => {
            return Err(format!(
                "{POLICY_VAR}={other:?} is not one of auto, shipped, rebuild"
            ));
        }
    };

    let stamp = builder::stamp(&ebpf_dir).map_err(|err| format!("hash the eBPF sources: {err}"))?;
    println!("cargo:rustc-env=CONFORMANCE_EBPF_STAMP={stamp}");

    // The objects are only embedded into the Linux probe (lib.rs is Linux-only);
    // building the workspace for another OS needs no BPF toolchain.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        println!("cargo:rustc-env=CONFORMANCE_EBPF_SOURCE=none");
        return Ok(());
    }

    let shipped = builder::shipped_stamp(&ebpf_dir).map_err(|err| err.to_string())?;
    let dist_fresh = shipped.as_deref() == Some(stamp.as_str());
    let stale_note = match &shipped {
        Some(shipped) => format!(
            "ebpf/dist is stale: ebpf/dist/STAMP is {shipped}, the eBPF sources hash to {stamp}"
        ),
        None => format!("ebpf/dist/STAMP is missing; the eBPF sources hash to {stamp}"),
    };
    let refresh =
        "`cargo xtask ebpf` (with a BPF toolchain) refreshes ebpf/dist; commit the result";

    let source = match policy {
        Policy::Shipped => {
            if !dist_fresh {
                return Err(format!(
                    "{POLICY_VAR}=shipped, but {stale_note}.\n{refresh}."
                ));
            }
            embed_shipped(&ebpf_dir, &out_dir)?;
            "shipped"
        }
        Policy::Rebuild | Policy::Auto => match builder::detect() {
            Ok(toolchain) => {
                rebuild(&toolchain, &ebpf_dir, &out_dir)?;
                if !dist_fresh {
                    println!("cargo:warning={stale_note}; {refresh}");
                }
                "rebuilt"
            }
            Err(_) if policy == Policy::Auto && dist_fresh => {
                // No toolchain, but the committed objects match the sources.
                embed_shipped(&ebpf_dir, &out_dir)?;
                "shipped"
            }
            Err(err) => {
                let why = if policy == Policy::Rebuild {
                    format!("{POLICY_VAR}=rebuild needs a BPF toolchain")
                } else {
                    format!(
                        "cannot embed the eBPF objects: {stale_note}, and there is no BPF toolchain to rebuild them"
                    )
                };
                return Err(format!("{why}.\n{err}"));
            }
        },
    };
    println!("cargo:rustc-env=CONFORMANCE_EBPF_SOURCE={source}");
    Ok(())
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (not run by cargo?)"))
}

fn embed_shipped(ebpf_dir: &Path, out_dir: &Path) -> Result<(), String> {
    for (_, file) in builder::OBJECTS {
        let from = ebpf_dir.join("dist").join(file);
        let to = out_dir.join(file);
        fs::copy(&from, &to)
            .map_err(|err| format!("copy {} to {}: {err}", from.display(), to.display()))?;
    }
    Ok(())
}

fn rebuild(toolchain: &builder::Toolchain, ebpf_dir: &Path, out_dir: &Path) -> Result<(), String> {
    builder::build(toolchain, ebpf_dir, out_dir, false).map_err(|err| {
        format!(
            "{err}\n(to build the probe with the committed objects instead: {POLICY_VAR}=shipped, \
             which needs ebpf/dist/STAMP to match the sources)"
        )
    })?;
    Ok(())
}
