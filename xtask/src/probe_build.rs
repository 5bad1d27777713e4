//! A static probe for the architecture where it will run (a Docker daemon's, later a
//! guest's): the image is `FROM scratch`, so the binary must need no loader and no libc.
//!
//! Routes, in order: `<arch>-unknown-linux-musl` linked with `rust-lld` (no cross gcc,
//! works from macOS too); on an x86_64 Linux gnu host without the musl target, the gnu
//! target with `+crt-static`. Targets are looked up in the sysroot, never installed:
//! rustup must not download anything behind the user's back.

use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A CPU architecture the probe is built for, named as Docker's `/info` and `uname -m` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// Maps Docker's `/info` `Architecture` (and the OCI/Go names) to an [`Arch`].
    pub fn from_docker(name: &str) -> Result<Arch, String> {
        match name.trim() {
            "x86_64" | "amd64" | "x86-64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" | "arm64/v8" => Ok(Arch::Aarch64),
            other => Err(format!(
                "architecture `{other}` has no static probe build (supported: x86_64, aarch64)"
            )),
        }
    }

    /// The `uname -m` name (also what `--arch` takes).
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The OCI platform (`docker build --platform`).
    pub fn oci_platform(self) -> &'static str {
        match self {
            Arch::X86_64 => "linux/amd64",
            Arch::Aarch64 => "linux/arm64",
        }
    }

    /// The musl target triple: a fully static binary on every route.
    pub fn musl_triple(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
        }
    }

    /// ELF `e_machine` of a binary for this architecture.
    fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62,
            Arch::Aarch64 => 183,
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Arch::from_docker(s)
    }
}

/// How a static probe gets built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `--target <musl triple>` linked by `rust-lld`.
    MuslLld { triple: &'static str },
    /// `--target x86_64-unknown-linux-gnu` with `-C target-feature=+crt-static` (static-pie).
    GnuCrtStatic,
}

const GNU_X86_64: &str = "x86_64-unknown-linux-gnu";

impl Route {
    pub fn triple(&self) -> &'static str {
        match self {
            Route::MuslLld { triple } => triple,
            Route::GnuCrtStatic => GNU_X86_64,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Route::MuslLld { triple } => format!("{triple}, rust-lld"),
            Route::GnuCrtStatic => format!("{GNU_X86_64}, +crt-static"),
        }
    }
}

/// The routes to try for `arch`, best first, given which targets' standard libraries
/// are installed and the host triple. Pure, so every combination is unit-tested.
pub fn candidate_routes(
    arch: Arch,
    installed: impl Fn(&str) -> bool,
    host: &str,
) -> Result<Vec<Route>, String> {
    let triple = arch.musl_triple();
    let mut routes = Vec::new();
    if installed(triple) {
        routes.push(Route::MuslLld { triple });
    }
    // glibc's static libraries come from the host system: only an x86_64 gnu host has them.
    if arch == Arch::X86_64 && host == GNU_X86_64 && installed(GNU_X86_64) {
        routes.push(Route::GnuCrtStatic);
    }
    if routes.is_empty() {
        return Err(format!(
            "no Rust standard library for {triple} here (a static {arch} probe needs it): run `rustup target add {triple}`"
        ));
    }
    Ok(routes)
}

/// The routes this machine's Rust toolchain has for `arch`: `Ok(Err(why))` when
/// it has none (a missing target is the user's to add), `Err` when rustc itself
/// cannot be asked.
pub fn routes_here(arch: Arch) -> Result<Result<Vec<Route>, String>> {
    let root = crate::conformance::workspace_root();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = rustc_output(&rustc, &root, &["--print", "sysroot"])?;
    let host = rustc_output(&rustc, &root, &["-vV"])?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .ok_or_else(|| anyhow!("`{rustc} -vV` names no host triple"))?;
    let installed = |triple: &str| {
        Path::new(&sysroot)
            .join("lib/rustlib")
            .join(triple)
            .join("lib")
            .is_dir()
    };
    Ok(candidate_routes(arch, installed, &host))
}

/// A built static probe.
#[derive(Debug, Clone)]
pub struct StaticProbe {
    pub path: PathBuf,
    pub route: Route,
    pub elapsed: Duration,
}

/// Builds the release probe for `arch` as a static binary, checks that it is static and
/// for `arch`, and returns its path. `CONFORMANCE_EBPF` (which eBPF objects get embedded)
/// passes through to the probe's build script unchanged. Where the musl build fails and
/// the gnu route exists (x86_64 gnu hosts), it says why in one line and takes that route.
pub fn build_static_probe(arch: Arch, verbose: bool) -> Result<StaticProbe> {
    let started = Instant::now();
    let root = crate::conformance::workspace_root();
    let routes = routes_here(arch)?.map_err(|e| anyhow!(e))?;
    let mut failures = Vec::new();
    for (i, route) in routes.iter().enumerate() {
        match cargo_build(&root, route, verbose) {
            Ok(path) => {
                verify_static(&path, arch)?;
                return Ok(StaticProbe {
                    path,
                    route: route.clone(),
                    elapsed: started.elapsed(),
                });
            }
            Err(e) => {
                if let Some(next) = routes.get(i + 1) {
                    eprintln!(
                        "warning: the static probe build ({}) failed: {}; trying {}",
                        route.describe(),
                        e.headline,
                        next.describe()
                    );
                }
                failures.push(e);
            }
        }
    }
    let last = failures.pop().expect("at least one route was tried");
    bail!(
        "building the static probe ({}) failed:\n{}",
        last.route,
        last.tail
    )
}

/// Why one route's `cargo build` failed: its first error and the end of its output.
struct BuildFailure {
    route: String,
    headline: String,
    tail: String,
}

fn cargo_build(root: &Path, route: &Route, verbose: bool) -> Result<PathBuf, BuildFailure> {
    let triple = route.triple();
    let failure = |(headline, tail): (String, String)| BuildFailure {
        route: route.describe(),
        headline,
        tail,
    };
    release_probe(
        root,
        |cmd| {
            cmd.args(["--target", triple]);
            match route {
                Route::MuslLld { triple } => {
                    cmd.args(["--config", &format!("target.{triple}.linker=\"rust-lld\"")]);
                }
                Route::GnuCrtStatic => {
                    // With `--target`, RUSTFLAGS reach the probe's crates only, not build scripts.
                    let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
                    flags.push_str(" -C target-feature=+crt-static");
                    cmd.env("RUSTFLAGS", flags.trim());
                }
            }
        },
        verbose,
    )
    .map_err(failure)
}

/// `cargo build --release -p conformance-probes --bin probe`, with what `configure`
/// adds (a target, a linker), and the path cargo reports for the probe; on failure
/// the first error (one line) and the last lines of cargo's stderr. The one place
/// the probe is built, for the lab target's native probe and the static ones.
pub fn release_probe(
    root: &Path,
    configure: impl FnOnce(&mut Command),
    verbose: bool,
) -> Result<PathBuf, (String, String)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        // Never let a rustup proxy fetch a toolchain or target on its own.
        .env("RUSTUP_AUTO_INSTALL", "0")
        .args([
            "build",
            "--release",
            "-p",
            "conformance-probes",
            "--bin",
            "probe",
            "--message-format=json-render-diagnostics",
        ]);
    configure(&mut cmd);
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(if verbose {
            Stdio::inherit()
        } else {
            Stdio::piped()
        })
        .output()
        .map_err(|e| (format!("run cargo: {e}"), format!("run cargo: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        return Err((first_error(&stderr), tail));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "probe")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| {
            let why = "cargo build did not report the probe's executable".to_string();
            (why.clone(), why)
        })
}

/// The first `error...` line of cargo's output with its `-->` location, as one line.
fn first_error(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).collect();
    let Some(i) = lines.iter().position(|l| l.starts_with("error")) else {
        return "cargo build failed (run with -v to see why)".into();
    };
    match lines[i + 1..].iter().take(3).find(|l| l.starts_with("-->")) {
        Some(at) => format!("{} at {}", lines[i], at.trim_start_matches("-->").trim()),
        None => lines[i].to_string(),
    }
}

fn rustc_output(rustc: &str, dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(rustc)
        .current_dir(dir)
        .env("RUSTUP_AUTO_INSTALL", "0")
        .args(args)
        .output()
        .with_context(|| format!("run `{rustc} {}`", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{rustc} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The architecture of `path` if it is a 64-bit little-endian ELF executable with no
/// program interpreter (`PT_INTERP`): what runs alone in a `FROM scratch` image.
/// Read by hand: `file` and `readelf` are not on every machine.
pub fn static_arch(path: &Path) -> Result<Arch> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    static_elf_arch(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Fails unless `path` is a static executable for `arch` (see [`static_arch`]).
pub fn verify_static(path: &Path, arch: Arch) -> Result<()> {
    let found = static_arch(path)?;
    if found != arch {
        bail!("{} is a static {found} probe, not {arch}", path.display());
    }
    Ok(())
}

fn static_elf_arch(bytes: &[u8]) -> Result<Arch, String> {
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    if bytes.get(4..6) != Some(&[2, 1]) {
        return Err("not a 64-bit little-endian ELF".into());
    }
    let truncated = || "truncated ELF header".to_string();
    let machine = u16_at(18).ok_or_else(truncated)?;
    let arch = [Arch::X86_64, Arch::Aarch64]
        .into_iter()
        .find(|a| a.elf_machine() == machine)
        .ok_or_else(|| format!("ELF machine {machine} is neither x86_64 nor aarch64"))?;
    let phoff = u64_at(32).ok_or_else(truncated)? as usize;
    let phentsize = u16_at(54).ok_or_else(truncated)? as usize;
    let phnum = u16_at(56).ok_or_else(truncated)? as usize;
    for i in 0..phnum {
        let p_type = u32_at(phoff + i * phentsize).ok_or_else(truncated)?;
        const PT_INTERP: u32 = 3;
        if p_type == PT_INTERP {
            return Err(
                "dynamically linked (it has a program interpreter): it cannot run FROM scratch"
                    .into(),
            );
        }
    }
    Ok(arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_architectures_map_to_musl_triples() {
        assert_eq!(Arch::from_docker("x86_64"), Ok(Arch::X86_64));
        assert_eq!(Arch::from_docker("amd64"), Ok(Arch::X86_64));
        assert_eq!(Arch::from_docker("aarch64"), Ok(Arch::Aarch64));
        assert_eq!(Arch::from_docker("arm64"), Ok(Arch::Aarch64));
        assert_eq!(Arch::X86_64.musl_triple(), "x86_64-unknown-linux-musl");
        assert_eq!(Arch::Aarch64.musl_triple(), "aarch64-unknown-linux-musl");
        assert_eq!(Arch::Aarch64.oci_platform(), "linux/arm64");
        let err = Arch::from_docker("s390x").unwrap_err();
        assert!(
            err.contains("s390x") && err.contains("x86_64, aarch64"),
            "{err}"
        );
        for arch in [Arch::X86_64, Arch::Aarch64] {
            assert_eq!(arch.name().parse::<Arch>(), Ok(arch));
        }
    }

    const HOST: &str = "x86_64-unknown-linux-gnu";

    #[test]
    fn musl_is_preferred_when_installed() {
        let all = |_: &str| true;
        assert_eq!(
            candidate_routes(Arch::X86_64, all, HOST),
            Ok(vec![
                Route::MuslLld {
                    triple: "x86_64-unknown-linux-musl"
                },
                Route::GnuCrtStatic
            ])
        );
        assert_eq!(
            candidate_routes(Arch::Aarch64, all, "aarch64-apple-darwin"),
            Ok(vec![Route::MuslLld {
                triple: "aarch64-unknown-linux-musl"
            }])
        );
        // A gnu x86_64 host building for aarch64 has no second route.
        assert_eq!(candidate_routes(Arch::Aarch64, all, HOST).unwrap().len(), 1);
    }

    #[test]
    fn x86_64_falls_back_to_gnu_crt_static_on_a_gnu_host_only() {
        let gnu_only = |t: &str| t == HOST;
        assert_eq!(
            candidate_routes(Arch::X86_64, gnu_only, HOST),
            Ok(vec![Route::GnuCrtStatic])
        );
        let err = candidate_routes(Arch::X86_64, gnu_only, "aarch64-apple-darwin").unwrap_err();
        assert!(
            err.contains("rustup target add x86_64-unknown-linux-musl"),
            "{err}"
        );
    }

    #[test]
    fn aarch64_without_its_target_names_the_rustup_command() {
        let err = candidate_routes(Arch::Aarch64, |t: &str| t == HOST, HOST).unwrap_err();
        assert!(
            err.contains("rustup target add aarch64-unknown-linux-musl"),
            "{err}"
        );
        assert!(!err.contains('\n'));
    }

    #[test]
    fn first_error_names_the_error_and_where() {
        let stderr = "   Compiling conformance-probes v0.1.0\nerror[E0308]: mismatched types\n    --> probes/src/traffic.rs:278:47\n     |\nerror: could not compile\n";
        assert_eq!(
            first_error(stderr),
            "error[E0308]: mismatched types at probes/src/traffic.rs:278:47"
        );
        assert_eq!(
            first_error("error: linker `rust-lld` not found\n"),
            "error: linker `rust-lld` not found"
        );
        assert!(first_error("").contains("-v"));
    }

    /// A minimal ELF64 header with one program header of type `p_type`.
    fn elf(machine: u16, p_type: u32) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&p_type.to_le_bytes());
        b
    }

    #[test]
    fn static_elf_is_recognised() {
        const PT_LOAD: u32 = 1;
        assert_eq!(static_elf_arch(&elf(62, PT_LOAD)), Ok(Arch::X86_64));
        assert_eq!(static_elf_arch(&elf(183, PT_LOAD)), Ok(Arch::Aarch64));
        let dynamic = static_elf_arch(&elf(62, 3)).unwrap_err();
        assert!(dynamic.contains("dynamically linked"), "{dynamic}");
        let other = static_elf_arch(&elf(40, PT_LOAD)).unwrap_err();
        assert!(other.contains("neither x86_64 nor aarch64"), "{other}");
        assert!(static_elf_arch(b"#!/bin/sh\n").is_err());
        assert!(static_elf_arch(&elf(62, PT_LOAD)[..40]).is_err());
    }

    #[test]
    fn a_probe_for_another_architecture_is_refused() {
        let dir = std::env::temp_dir().join(format!("xtask-elf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("probe");
        std::fs::write(&path, elf(183, 1)).unwrap();
        let err = verify_static(&path, Arch::X86_64).unwrap_err().to_string();
        assert!(
            err.ends_with("is a static aarch64 probe, not x86_64"),
            "{err}"
        );
        assert!(verify_static(&path, Arch::Aarch64).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn this_test_binary_is_not_mistaken_for_a_static_one() {
        // The test harness itself is dynamically linked on gnu hosts.
        let me = std::env::current_exe().unwrap();
        let bytes = std::fs::read(&me).unwrap();
        if cfg!(all(
            target_os = "linux",
            target_env = "gnu",
            target_arch = "x86_64"
        )) {
            assert!(static_elf_arch(&bytes).is_err());
        }
    }
}
