//! Building the eBPF objects: the source stamp, toolchain route detection and the
//! nested cargo build. Not a crate: `probes/build.rs` and `xtask/src/ebpf.rs` both
//! include this file with `#[path = ...] mod builder;`, so it uses only `std` and
//! `sha2` (which both includers depend on).
//!
//! # Stamp
//! `sha256:<hex>` over the eBPF sources: every file under `ebpf/programs/` except
//! `ebpf/programs/target/`, plus every file under `ebpf/common/`. Files are taken
//! by their path relative to `ebpf/` with `/` separators, sorted bytewise; the
//! hash is fed a version tag, then for each file the path length (u64 LE), the
//! path, the content length (u64 LE) and the content. Symlinks are followed.
//! `ebpf/dist/STAMP` holds the stamp of the sources its objects were built from.
//!
//! # Toolchain routes, tried in order
//! - `debian`: `/usr/bin/rustc` whose sysroot has `lib/rustlib/bpfel-unknown-none`
//!   (Debian's `libstd-rust-web-dev-bpf` ships a prebuilt `core` for it) and
//!   `/usr/bin/cargo`; runs with `RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1`.
//! - `rustup`: a rustup toolchain `nightly` with the `rust-src` component; runs
//!   `rustup run nightly cargo build -Z build-std=core` (same as `cargo +nightly`).
//!
//! Both need `bpf-linker` on `PATH` or in `$CARGO_HOME/bin` (`~/.cargo/bin`).
//!
//! # Reproducibility
//! The nested cargo runs with `--locked`, a cleaned environment, a fixed
//! `AYA_BPF_TARGET_ARCH`, and `--remap-path-prefix` for the checkout, the cargo
//! home and (rustup route, which compiles `core` from rust-src) the toolchain
//! sysroot, so the same toolchain gives byte-identical objects from any checkout
//! path. (`ebpf/common` is compiled into the programs as a module, not as a path
//! dependency, for the same reason: see `ebpf/programs/Cargo.toml`.) Different
//! toolchains (Debian rustc 1.96 vs a nightly) give different, equally valid bytes.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The BPF target the programs build for.
pub const TARGET: &str = "bpfel-unknown-none";

/// `(cargo bin name, object file name)` of every object the build produces.
pub const OBJECTS: &[(&str, &str)] = &[
    ("hook", "hook.bpf.o"),
    ("helper_probe", "helper_probe.bpf.o"),
    ("xdp", "xdp.bpf.o"),
    ("sock", "sock.bpf.o"),
    ("tunnel", "tunnel.bpf.o"),
];

/// Name of the stamp file next to the shipped objects in `ebpf/dist/`.
pub const STAMP_FILE: &str = "STAMP";

/// Rustup toolchain the `rustup` route uses.
pub const RUSTUP_TOOLCHAIN: &str = "nightly";

/// What to install, per route, when no route is usable.
pub const INSTALL_HELP: &str = "\
Install one of these toolchain routes for the eBPF programs (ebpf/programs):
  (a) Debian route (Debian bookworm with bookworm-security, as root; no rustup components needed):
        apt-get update
        apt-get install -y rustc-web cargo-web libstd-rust-web-dev-bpf llvm-22-dev
        LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker@0.13.0 --locked --no-default-features --features llvm-22
  (b) rustup route:
        rustup toolchain install nightly --component rust-src
        cargo install bpf-linker";

/// Bumped when the stamp's definition changes, so old and new stamps never collide.
const STAMP_TAG: &[u8] = b"cilium-conformance ebpf stamp v1\0";

/// Fixed arch for aya-ebpf-bindings' `bpf_target_arch` cfg: it only selects
/// `pt_regs` layouts (unused here), and fixing it keeps objects identical across hosts.
const BINDINGS_ARCH: &str = "x86_64";

#[derive(Debug)]
pub enum Error {
    /// No toolchain route is usable; the text says what was found and what to install.
    NoToolchain(String),
    Io {
        what: String,
        source: io::Error,
    },
    /// The nested cargo (or a tool it needs) failed; `output` is its stderr/stdout.
    Build {
        what: String,
        output: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoToolchain(text) => f.write_str(text),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
            Error::Build { what, output } => {
                write!(f, "{what}")?;
                if !output.trim().is_empty() {
                    write!(f, "\n{}", output.trim_end())?;
                }
                Ok(())
            }
        }
    }
}

/// `Display` already includes the I/O error, so `source()` stays `None`
/// (anyhow's `{:#}` would print it twice otherwise).
impl std::error::Error for Error {}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

// ---------------------------------------------------------------- stamp

/// The stamp of the eBPF sources under `ebpf_dir` (the repository's `ebpf/`).
pub fn stamp(ebpf_dir: &Path) -> Result<String, Error> {
    let mut hasher = Sha256::new();
    hasher.update(STAMP_TAG);
    for rel in stamp_inputs(ebpf_dir)? {
        let path = ebpf_dir.join(&rel);
        let bytes = fs::read(&path).map_err(io_err(format!("read {}", path.display())))?;
        hasher.update((rel.len() as u64).to_le_bytes());
        hasher.update(rel.as_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256:{hex}"))
}

/// The files the stamp covers, relative to `ebpf_dir` with `/` separators, sorted.
pub fn stamp_inputs(ebpf_dir: &Path) -> Result<Vec<String>, Error> {
    let mut files = Vec::new();
    for top in ["programs", "common"] {
        let dir = ebpf_dir.join(top);
        if !dir.is_dir() {
            return Err(Error::Io {
                what: format!("read {}", dir.display()),
                source: io::Error::new(io::ErrorKind::NotFound, "not a directory"),
            });
        }
        collect(&dir, top, &mut files)?;
    }
    files.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(files)
}

fn collect(dir: &Path, rel: &str, files: &mut Vec<String>) -> Result<(), Error> {
    let entries = fs::read_dir(dir).map_err(io_err(format!("list {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_err(format!("list {}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let child_rel = format!("{rel}/{name}");
        if child_rel == "programs/target" {
            continue;
        }
        let path = entry.path();
        // Follows symlinks: a link is hashed as what it points at.
        let meta = fs::metadata(&path).map_err(io_err(format!("stat {}", path.display())))?;
        if meta.is_dir() {
            collect(&path, &child_rel, files)?;
        } else if meta.is_file() {
            files.push(child_rel);
        }
    }
    Ok(())
}

/// The stamp recorded in `ebpf_dir/dist/STAMP`, trimmed; `None` when the file is missing.
pub fn shipped_stamp(ebpf_dir: &Path) -> Result<Option<String>, Error> {
    let path = ebpf_dir.join("dist").join(STAMP_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(Error::Io {
            what: format!("read {}", path.display()),
            source: err,
        }),
    }
}

// ---------------------------------------------------------------- toolchain

/// How the nested cargo is run.
#[derive(Debug, Clone)]
pub enum Route {
    /// Debian's `rustc-web`/`cargo-web` with the prebuilt `core` for the BPF target.
    Debian {
        rustc: PathBuf,
        cargo: PathBuf,
        sysroot: PathBuf,
    },
    /// `rustup run nightly cargo build -Z build-std=core`.
    Rustup { rustup: PathBuf, sysroot: PathBuf },
}

/// A usable toolchain: a route plus the directory holding `bpf-linker`.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub route: Route,
    pub linker_dir: PathBuf,
    /// `rustc -V` of the route's compiler.
    pub rustc_version: String,
    /// `bpf-linker --version`.
    pub linker_version: String,
}

impl Toolchain {
    pub fn route_name(&self) -> &'static str {
        match self.route {
            Route::Debian { .. } => "debian",
            Route::Rustup { .. } => "rustup",
        }
    }
}

impl fmt::Display for Toolchain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} route ({}; {} from {})",
            self.route_name(),
            self.rustc_version,
            self.linker_version,
            self.linker_dir.display()
        )
    }
}

/// Finds the first usable route. The error says what each route lacked and what to install.
pub fn detect() -> Result<Toolchain, Error> {
    let mut missing = Vec::new();
    let linker = find_bpf_linker();
    if let Err(why) = &linker {
        missing.push(format!("bpf-linker (both routes): {why}"));
    }
    let route = match debian_route() {
        Ok(route) => Some(route),
        Err(why) => {
            missing.push(format!("debian route: {why}"));
            match rustup_route() {
                Ok(route) => Some(route),
                Err(why) => {
                    missing.push(format!("rustup route: {why}"));
                    None
                }
            }
        }
    };
    match (route, linker) {
        (Some((route, rustc_version)), Ok((linker_dir, linker_version))) => Ok(Toolchain {
            route,
            linker_dir,
            rustc_version,
            linker_version,
        }),
        _ => {
            let mut text = String::from(
                "no BPF toolchain found to build the eBPF programs.\nWhat was missing:\n",
            );
            for line in &missing {
                text.push_str("  - ");
                text.push_str(line);
                text.push('\n');
            }
            text.push_str(INSTALL_HELP);
            Err(Error::NoToolchain(text))
        }
    }
}

fn debian_route() -> Result<(Route, String), String> {
    let rustc = PathBuf::from("/usr/bin/rustc");
    let cargo = PathBuf::from("/usr/bin/cargo");
    if !rustc.is_file() {
        return Err("/usr/bin/rustc not found".into());
    }
    let sysroot = PathBuf::from(capture(Command::new(&rustc).args(["--print", "sysroot"]))?);
    let target_lib = sysroot.join("lib/rustlib").join(TARGET);
    if !target_lib.is_dir() {
        return Err(format!(
            "{} not found (package libstd-rust-web-dev-bpf)",
            target_lib.display()
        ));
    }
    if !cargo.is_file() {
        return Err("/usr/bin/cargo not found".into());
    }
    let version = capture(Command::new(&rustc).arg("-V"))?;
    Ok((
        Route::Debian {
            rustc,
            cargo,
            sysroot,
        },
        version,
    ))
}

fn rustup_route() -> Result<(Route, String), String> {
    let rustup = find_program("rustup").ok_or("rustup not found on PATH or in ~/.cargo/bin")?;
    let mut cmd = rustup_run(&rustup);
    cmd.args(["rustc", "--print", "sysroot"]);
    let sysroot = PathBuf::from(
        capture(&mut cmd)
            .map_err(|why| format!("no usable `{RUSTUP_TOOLCHAIN}` toolchain ({why})"))?,
    );
    let core = sysroot.join("lib/rustlib/src/rust/library/core/Cargo.toml");
    if !core.is_file() {
        return Err(format!(
            "toolchain `{RUSTUP_TOOLCHAIN}` has no rust-src component ({} missing)",
            core.display()
        ));
    }
    let mut cmd = rustup_run(&rustup);
    cmd.arg("rustc").arg("-V");
    let version = capture(&mut cmd)?;
    Ok((Route::Rustup { rustup, sysroot }, version))
}

/// `rustup run nightly` with a cleaned environment; never installs a missing
/// toolchain behind the user's back (rustup may auto-install otherwise).
fn rustup_run(rustup: &Path) -> Command {
    let mut cmd = Command::new(rustup);
    clean_env(&mut cmd);
    cmd.env("RUSTUP_AUTO_INSTALL", "0")
        .args(["run", RUSTUP_TOOLCHAIN]);
    cmd
}

fn find_bpf_linker() -> Result<(PathBuf, String), String> {
    let path = find_program("bpf-linker").ok_or("not found on PATH or in ~/.cargo/bin")?;
    let version = capture(Command::new(&path).arg("--version"))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((dir, version))
}

/// `name` on PATH, else in `$CARGO_HOME/bin`, else in `~/.cargo/bin`.
fn find_program(name: &str) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(cargo_home().map(|home| home.join("bin")))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".cargo"))
        })
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// Runs `cmd` and returns its trimmed stdout, or why it failed.
fn capture(cmd: &mut Command) -> Result<String, String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("run {program}: {err}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{program} failed ({}): {}",
            out.status,
            stderr.trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Removes what an outer cargo (or a build script's environment) would leak into
/// the nested build: every `CARGO*`/`__CARGO*` variable except the user's cargo
/// home, network and registry settings; every `RUSTC*`, `RUSTFLAGS`, `RUSTDOC*`,
/// `RUSTUP_TOOLCHAIN`, `CLIPPY_*`; and the build-script variables (`OUT_DIR`,
/// `TARGET`, `HOST`, `PROFILE`, `OPT_LEVEL`, `DEBUG`, `NUM_JOBS`).
pub fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_none_or(leaks_into_nested_build) {
            cmd.env_remove(&key);
        }
    }
}

fn leaks_into_nested_build(key: &str) -> bool {
    let cargo_kept = key == "CARGO_HOME"
        || key == "CARGO_TERM_COLOR"
        || [
            "CARGO_NET_",
            "CARGO_HTTP_",
            "CARGO_REGISTRIES_",
            "CARGO_REGISTRY_",
        ]
        .iter()
        .any(|p| key.starts_with(p));
    if key.starts_with("CARGO") || key.starts_with("__CARGO") {
        return !cargo_kept;
    }
    key.starts_with("RUSTC")
        || key.starts_with("RUSTDOC")
        || key == "RUSTFLAGS"
        || key == "RUSTUP_TOOLCHAIN"
        || key.starts_with("CLIPPY_")
        || key == "AYA_BPF_TARGET_ARCH"
        || matches!(
            key,
            "OUT_DIR" | "TARGET" | "HOST" | "PROFILE" | "OPT_LEVEL" | "DEBUG" | "NUM_JOBS"
        )
}

// ---------------------------------------------------------------- build

/// The result of [`build`].
#[derive(Debug)]
pub struct Built {
    pub toolchain: Toolchain,
    /// `(object file name, path in out_dir, size in bytes)`, in [`OBJECTS`] order.
    pub objects: Vec<(&'static str, PathBuf, u64)>,
    pub elapsed: Duration,
}

/// Where the nested cargo keeps its build state by default: `ebpf/programs/target`
/// (git-ignored; shared by `probes/build.rs` and `cargo xtask ebpf`, never the
/// outer build's target dir, so the two cargo invocations never wait on each other).
pub fn default_target_dir(ebpf_dir: &Path) -> PathBuf {
    ebpf_dir.join("programs").join("target")
}

/// Builds every object in [`OBJECTS`] into `out_dir` (created if needed) with
/// `toolchain` (see [`detect`]), keeping cargo's state in [`default_target_dir`].
/// With `show_output` the nested cargo's progress goes to this process's stderr;
/// otherwise it is captured and shown only on failure.
pub fn build(
    toolchain: &Toolchain,
    ebpf_dir: &Path,
    out_dir: &Path,
    show_output: bool,
) -> Result<Built, Error> {
    let target_dir = default_target_dir(ebpf_dir);
    let start = Instant::now();
    let ebpf_dir =
        fs::canonicalize(ebpf_dir).map_err(io_err(format!("resolve {}", ebpf_dir.display())))?;
    let manifest = ebpf_dir.join("programs").join("Cargo.toml");

    let mut cmd = match &toolchain.route {
        Route::Debian { rustc, cargo, .. } => {
            let mut cmd = Command::new(cargo);
            clean_env(&mut cmd);
            cmd.env("RUSTC", rustc)
                .env("RUSTC_BOOTSTRAP", "1")
                .arg("build");
            cmd
        }
        Route::Rustup { rustup, .. } => {
            let mut cmd = rustup_run(rustup);
            cmd.args(["cargo", "build", "-Z", "build-std=core"]);
            cmd
        }
    };
    cmd.arg("--release")
        .arg("--locked")
        .args(["--target", TARGET])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(ebpf_dir.join("programs"))
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            encoded_rustflags(toolchain, &ebpf_dir),
        )
        .env("AYA_BPF_TARGET_ARCH", BINDINGS_ARCH)
        .env("PATH", path_with(&toolchain.linker_dir))
        .stdin(Stdio::null());
    for (bin, _) in OBJECTS {
        cmd.args(["--bin", bin]);
    }

    let what = format!("build the eBPF programs with the {toolchain}");
    if show_output {
        let status = cmd.status().map_err(io_err(format!(
            "run cargo for the {} route",
            toolchain.route_name()
        )))?;
        if !status.success() {
            return Err(Error::Build {
                what: format!("{what}: cargo {status} (output above)"),
                output: String::new(),
            });
        }
    } else {
        let out = cmd.output().map_err(io_err(format!(
            "run cargo for the {} route",
            toolchain.route_name()
        )))?;
        if !out.status.success() {
            let mut output = String::from_utf8_lossy(&out.stderr).into_owned();
            output.push_str(&String::from_utf8_lossy(&out.stdout));
            return Err(Error::Build {
                what: format!("{what}: cargo {}", out.status),
                output,
            });
        }
    }

    fs::create_dir_all(out_dir).map_err(io_err(format!("create {}", out_dir.display())))?;
    let built_dir = target_dir.join(TARGET).join("release");
    let mut objects = Vec::new();
    for (bin, file) in OBJECTS {
        let from = built_dir.join(bin);
        let to = out_dir.join(file);
        let size = fs::copy(&from, &to).map_err(io_err(format!(
            "copy {} to {}",
            from.display(),
            to.display()
        )))?;
        objects.push((*file, to, size));
    }
    Ok(Built {
        toolchain: toolchain.clone(),
        objects,
        elapsed: start.elapsed(),
    })
}

/// Flags for the BPF target crates (not build scripts: `--target` keeps them apart),
/// joined with 0x1f as `CARGO_ENCODED_RUSTFLAGS` wants, so paths with spaces survive.
fn encoded_rustflags(toolchain: &Toolchain, ebpf_dir: &Path) -> OsString {
    let mut flags: Vec<OsString> = vec!["-C".into(), "link-arg=--btf".into()];
    let mut remap = |from: &Path, to: &str| {
        let mut flag = OsString::from("--remap-path-prefix=");
        flag.push(from.as_os_str());
        flag.push("=");
        flag.push(to);
        flags.push(flag);
    };
    // rustc applies the last matching mapping: most specific last. Debian's core
    // is prebuilt (its paths are fixed by the package), so only the rustup route,
    // which compiles core from rust-src, needs its sysroot mapped.
    if let Route::Rustup { sysroot, .. } = &toolchain.route {
        remap(sysroot, "/rust-sysroot");
    }
    if let Some(home) = cargo_home() {
        remap(&home, "/cargo");
        if let Ok(real) = fs::canonicalize(&home)
            && real != home
        {
            remap(&real, "/cargo");
        }
    }
    remap(ebpf_dir, "/cilium-conformance/ebpf");
    let mut encoded = OsString::new();
    for (i, flag) in flags.iter().enumerate() {
        if i > 0 {
            encoded.push("\u{1f}");
        }
        encoded.push(flag);
    }
    encoded
}

fn path_with(dir: &Path) -> OsString {
    let mut dirs = vec![dir.to_path_buf()];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).unwrap_or_else(|_| dir.as_os_str().to_owned())
}
