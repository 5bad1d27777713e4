//! `cargo xtask ebpf`: rebuild the shipped eBPF objects in `ebpf/dist` and restamp
//! them; `--check` tells whether `ebpf/dist/STAMP` still matches the sources
//! (no toolchain needed); `--verify` rebuilds into a scratch directory and
//! compares the bytes with `ebpf/dist` (the same toolchain must reproduce them).
//! The build itself lives in `ebpf/builder.rs`, shared with `probes/build.rs`.

#[path = "../../ebpf/builder.rs"]
mod builder;

use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Options {
    /// Only check that ebpf/dist/STAMP matches the eBPF sources (exit 1 if not); needs no BPF toolchain.
    #[arg(long, conflicts_with = "verify")]
    check: bool,
    /// Rebuild into a scratch directory and compare with ebpf/dist byte for byte (exit 1 on any difference).
    #[arg(long)]
    verify: bool,
}

pub fn run(opts: Options) -> Result<ExitCode> {
    let ebpf_dir = workspace_root().join("ebpf");
    if opts.check {
        check(&ebpf_dir)
    } else if opts.verify {
        verify(&ebpf_dir)
    } else {
        rebuild(&ebpf_dir)
    }
}

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn dist_dir(ebpf_dir: &Path) -> PathBuf {
    ebpf_dir.join("dist")
}

fn check(ebpf_dir: &Path) -> Result<ExitCode> {
    let stamp = builder::stamp(ebpf_dir).context("hash the eBPF sources")?;
    let shipped = builder::shipped_stamp(ebpf_dir).context("read ebpf/dist/STAMP")?;
    let missing: Vec<&str> = builder::OBJECTS
        .iter()
        .map(|(_, file)| *file)
        .filter(|file| {
            fs::metadata(dist_dir(ebpf_dir).join(file))
                .map(|m| m.len() == 0)
                .unwrap_or(true)
        })
        .collect();
    match shipped {
        Some(shipped) if shipped == stamp && missing.is_empty() => {
            println!("ebpf/dist is up to date with the eBPF sources ({stamp})");
            Ok(ExitCode::SUCCESS)
        }
        Some(shipped) if shipped == stamp => {
            eprintln!(
                "ebpf/dist/STAMP matches the sources but ebpf/dist lacks {}.\n\
                 Fix: run `cargo xtask ebpf` (needs a BPF toolchain) and commit ebpf/dist.",
                missing.join(", ")
            );
            Ok(ExitCode::from(1))
        }
        Some(shipped) => {
            eprintln!(
                "ebpf/dist is stale: ebpf/dist/STAMP is {shipped} but the eBPF sources \
                 (ebpf/programs, ebpf/common) hash to {stamp}.\n\
                 Fix: run `cargo xtask ebpf` (needs a BPF toolchain) and commit ebpf/dist."
            );
            Ok(ExitCode::from(1))
        }
        None => {
            eprintln!(
                "ebpf/dist/STAMP is missing; the eBPF sources hash to {stamp}.\n\
                 Fix: run `cargo xtask ebpf` (needs a BPF toolchain) and commit ebpf/dist."
            );
            Ok(ExitCode::from(1))
        }
    }
}

fn rebuild(ebpf_dir: &Path) -> Result<ExitCode> {
    let before = builder::stamp(ebpf_dir).context("hash the eBPF sources")?;
    let toolchain = builder::detect()?;
    eprintln!("building the eBPF objects with the {toolchain}");
    let staging = builder::default_target_dir(ebpf_dir).join("dist-staging");
    let built = builder::build(&toolchain, ebpf_dir, &staging, true)?;
    let after = builder::stamp(ebpf_dir).context("hash the eBPF sources")?;
    if after != before {
        bail!(
            "the eBPF sources changed during the build ({before} -> {after}); run `cargo xtask ebpf` again"
        );
    }

    let dist = dist_dir(ebpf_dir);
    fs::create_dir_all(&dist).with_context(|| format!("create {}", dist.display()))?;
    for (file, path, size) in &built.objects {
        let new = fs::read(path).with_context(|| format!("read {}", path.display()))?;
        let target = dist.join(file);
        let old = fs::read(&target).ok();
        let change = match &old {
            None => "new".to_string(),
            Some(old) if *old == new => "unchanged".to_string(),
            Some(old) => format!("changed, was {} bytes", old.len()),
        };
        if old.as_deref() != Some(new.as_slice()) {
            write_atomically(&target, &new)?;
        }
        println!("ebpf/dist/{file}: {size} bytes ({change})");
    }
    let stamp_path = dist.join(builder::STAMP_FILE);
    let old_stamp = builder::shipped_stamp(ebpf_dir).context("read ebpf/dist/STAMP")?;
    let change = match old_stamp.as_deref() {
        None => "new".to_string(),
        Some(old) if old == after => "unchanged".to_string(),
        Some(old) => format!("was {old}"),
    };
    if old_stamp.as_deref() != Some(after.as_str()) {
        write_atomically(&stamp_path, format!("{after}\n").as_bytes())?;
    }
    println!("ebpf/dist/{}: {after} ({change})", builder::STAMP_FILE);
    println!(
        "built in {:.1}s with the {}",
        built.elapsed.as_secs_f64(),
        built.toolchain
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(ebpf_dir: &Path) -> Result<ExitCode> {
    let code = check(ebpf_dir)?;
    if code != ExitCode::SUCCESS {
        return Ok(code);
    }
    let toolchain = builder::detect()?;
    eprintln!("rebuilding the eBPF objects with the {toolchain} to compare with ebpf/dist");
    let scratch = builder::default_target_dir(ebpf_dir).join("verify");
    let built = builder::build(&toolchain, ebpf_dir, &scratch, true)?;
    let mut differ = Vec::new();
    for (file, path, _) in &built.objects {
        let new = fs::read(path).with_context(|| format!("read {}", path.display()))?;
        let shipped_path = dist_dir(ebpf_dir).join(file);
        let shipped =
            fs::read(&shipped_path).with_context(|| format!("read {}", shipped_path.display()))?;
        if new == shipped {
            println!("ebpf/dist/{file}: reproduced ({} bytes)", new.len());
        } else {
            println!(
                "ebpf/dist/{file}: DIFFERS (rebuilt {} bytes, shipped {} bytes)",
                new.len(),
                shipped.len()
            );
            differ.push(*file);
        }
    }
    if differ.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "the {} does not reproduce ebpf/dist ({}). Either ebpf/dist was built with another \
             toolchain, or the build is not reproducible. Fix: run `cargo xtask ebpf` and commit ebpf/dist.",
            built.toolchain,
            differ.join(", ")
        );
        Ok(ExitCode::from(1))
    }
}

/// Writes `bytes` to a sibling temporary file and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).with_context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("rename {} to {}", tmp.display(), path.display()))
}
