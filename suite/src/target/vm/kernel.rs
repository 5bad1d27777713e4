//! What a `--kernel SPEC` names, read from the package and the image, never guessed.
//!
//! A SPEC is one of:
//! - a tracked name (`fixtures/kernels.toml`, e.g. `6.12-arm64-16k`) that
//!   `cargo xtask kernels --fetch NAME` put into [`cache_dir`]: its `kernel.json`
//!   ([`KernelRecord`]) says where the image and modules are;
//! - a path ending in `.deb`: a Debian `linux-image-*` package, read with
//!   `dpkg-deb -f` and unpacked with `dpkg-deb -x` into a scratch folder that is
//!   removed when the [`GuestKernel`] (and every clone of it) is dropped;
//! - `IMAGE,MODULES_DIR`: a kernel image and its `lib/modules/<release>` folder.
//!
//! Whatever the form, the image's magic decides the architecture (x86 bzImage:
//! `HdrS` at 0x202; arm64 Image: `ARM\x64` at 0x38, possibly inside gzip), and it
//! must agree with the package's `Architecture` field and the kernel's config.

use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The tracked kernels, as shipped (`fixtures/kernels.toml`).
pub const TRACKED_TOML: &str = include_str!("../../../../fixtures/kernels.toml");
/// The file in `<cache>/<name>/` that describes a fetched kernel.
pub const RECORD_FILE: &str = "kernel.json";
/// Version of [`KernelRecord`]'s format.
pub const RECORD_SCHEMA: u32 = 1;

/// A kernel a guest boots, with the modules that belong to it.
#[derive(Debug, Clone)]
pub struct GuestKernel {
    /// Instance name for reports: the tracked name, the `.deb`'s file stem, or
    /// the release for `IMAGE,MODULES_DIR`.
    pub name: String,
    /// `x86_64` or `aarch64` (`uname -m` names), from the image's magic.
    pub arch: String,
    /// The image qemu boots (`-kernel`).
    pub vmlinuz: PathBuf,
    /// `.../lib/modules/<release>` (or `usr/lib/modules/<release>`).
    pub modules_dir: PathBuf,
    /// `uname -r`: the modules folder's name.
    pub release: String,
    /// `"<Package> <Version>"` of the Debian package, when it came from one.
    pub package: Option<String>,
    /// Page size in bytes: from the config (`CONFIG_ARM64_16K_PAGES=y` → 16384),
    /// else the arm64 image header's flags, else 4096.
    pub page_size: u64,
    /// The kernel's config (`boot/config-<release>`), when there is one.
    pub config: Option<PathBuf>,
    /// The image is a gzip-compressed arm64 `Image` (qemu's `-kernel` unpacks it).
    pub vmlinuz_gzip: bool,
    /// The unpacked `.deb`, removed when the last clone drops.
    scratch: Option<Arc<tempfile::TempDir>>,
}

/// Why a SPEC names no bootable kernel. One line each; [`KernelError::is_usage`]
/// tells bad usage (exit 2) from a broken environment or package (exit 3).
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(
        "unknown kernel {name:?}: give a tracked name ({known}), a path to a .deb, or IMAGE,MODULES_DIR"
    )]
    UnknownName { name: String, known: String },
    #[error(
        "kernel {name} is tracked but not fetched (cache {}): run cargo xtask kernels --fetch {name}",
        cache.display()
    )]
    NotCached { name: String, cache: PathBuf },
    #[error("{what} {}: no such file or directory", path.display())]
    NotFound { what: &'static str, path: PathBuf },
    #[error("malformed kernel SPEC {spec:?}: {why}")]
    Malformed { spec: String, why: String },
    #[error("architecture {arch}: no guest for it (amd64/x86_64 and arm64/aarch64 only)")]
    UnsupportedArch { arch: String },
    #[error(
        "{}: release {image_release}, but the modules in {} are for {release}",
        image.display(), modules.display()
    )]
    ReleaseMismatch {
        image: PathBuf,
        image_release: String,
        modules: PathBuf,
        release: String,
    },
    #[error("{}: dpkg-deb {action}: {message}", path.display())]
    Dpkg {
        path: PathBuf,
        action: &'static str,
        message: String,
    },
    #[error("{}: {why}", path.display())]
    Corrupt { path: PathBuf, why: String },
    #[error("{}: wrong architecture: {found}, expected {expected}", path.display())]
    WrongArch {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{package}: no vmlinuz in the package (looked for {looked})")]
    NoVmlinuz { package: String, looked: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("fixtures/kernels.toml: {0}")]
    Tracked(String),
}

impl KernelError {
    /// Bad usage or bad input (exit 2): an unknown name, a kernel not fetched yet, a
    /// missing file, a malformed SPEC, an image given with another release's
    /// modules. Everything else (a corrupt package or record, dpkg-deb failing, a
    /// package for another architecture or for one with no guest, no vmlinuz) is
    /// exit 3.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            KernelError::UnknownName { .. }
                | KernelError::NotCached { .. }
                | KernelError::NotFound { .. }
                | KernelError::Malformed { .. }
                | KernelError::ReleaseMismatch { .. }
        )
    }

    /// The exit code this error ends a run with: 2 (usage) or 3 (infrastructure).
    pub fn exit_code(&self) -> u8 {
        if self.is_usage() { 2 } else { 3 }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KernelError + '_ {
    move |source| KernelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where `cargo xtask kernels` keeps fetched kernels: `$CONFORMANCE_KERNEL_CACHE`,
/// else `$XDG_CACHE_HOME/cilium-conformance/kernels`, else
/// `$HOME/.cache/cilium-conformance/kernels`.
pub fn cache_dir() -> PathBuf {
    cache_dir_from(|key| std::env::var_os(key))
}

fn cache_dir_from(var: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let set = |key: &str| var(key).filter(|value| !value.is_empty());
    if let Some(dir) = set("CONFORMANCE_KERNEL_CACHE") {
        return PathBuf::from(dir);
    }
    // XDG: a relative XDG_CACHE_HOME is invalid and ignored.
    if let Some(dir) = set("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
    {
        return dir.join("cilium-conformance/kernels");
    }
    match set("HOME") {
        Some(home) => PathBuf::from(home).join(".cache/cilium-conformance/kernels"),
        None => std::env::temp_dir().join("cilium-conformance/kernels"),
    }
}

/// `uname -m` name of a Debian architecture (`amd64` → `x86_64`, `arm64` →
/// `aarch64`); the `uname -m` names map to themselves.
pub fn uname_arch(arch: &str) -> Result<&'static str, KernelError> {
    match arch {
        "amd64" | "x86_64" => Ok("x86_64"),
        "arm64" | "aarch64" => Ok("aarch64"),
        other => Err(KernelError::UnsupportedArch {
            arch: other.to_string(),
        }),
    }
}

/// One kernel of `fixtures/kernels.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackedKernel {
    pub name: String,
    /// Debian architecture of the package (`amd64`, `arm64`).
    pub arch: String,
    /// Debian suites to look in (`bookworm-security`); candidates are merged.
    pub suites: Vec<String>,
    /// Package name with `<N>` for the growing number.
    pub package: String,
    #[serde(default)]
    pub note: String,
}

impl TrackedKernel {
    /// `x86_64` or `aarch64`.
    pub fn uname_arch(&self) -> &'static str {
        uname_arch(&self.arch).unwrap_or("unknown")
    }

    /// The package name up to `<N>`, for `apt-cache pkgnames PREFIX`.
    pub fn package_prefix(&self) -> &str {
        self.package.split("<N>").next().unwrap_or(&self.package)
    }

    /// The `<N>` of a package name that matches the pattern, or `None`.
    pub fn package_number(&self, package: &str) -> Option<u64> {
        let (head, tail) = self.package.split_once("<N>")?;
        let digits = package.strip_prefix(head)?.strip_suffix(tail)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrackedFile {
    schema: u32,
    kernel: Vec<TrackedKernel>,
}

/// The tracked kernels, validated (unique names, known architectures, one `<N>`
/// per package pattern, at least one suite).
pub fn tracked() -> Result<Vec<TrackedKernel>, KernelError> {
    parse_tracked(TRACKED_TOML)
}

fn parse_tracked(text: &str) -> Result<Vec<TrackedKernel>, KernelError> {
    let file: TrackedFile =
        toml::from_str(text).map_err(|err| KernelError::Tracked(err.to_string()))?;
    if file.schema != 1 {
        return Err(KernelError::Tracked(format!(
            "schema {} (this build reads 1)",
            file.schema
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for kernel in &file.kernel {
        let bad = |why: String| {
            Err(KernelError::Tracked(format!(
                "kernel {}: {why}",
                kernel.name
            )))
        };
        if !seen.insert(kernel.name.as_str()) {
            return bad("listed twice".into());
        }
        if kernel.name.is_empty()
            || kernel.name.contains([',', '/'])
            || kernel.name.ends_with(".deb")
        {
            return bad("a name must not be empty, hold ',' or '/', or end in .deb".into());
        }
        if uname_arch(&kernel.arch).is_err() || kernel.arch != "amd64" && kernel.arch != "arm64" {
            return bad(format!("arch {:?} (amd64 or arm64)", kernel.arch));
        }
        if kernel.package.matches("<N>").count() != 1 {
            return bad(format!(
                "package {:?} needs exactly one <N>",
                kernel.package
            ));
        }
        if kernel.suites.is_empty() {
            return bad("no suites".into());
        }
    }
    Ok(file.kernel)
}

/// The `Package`, `Version` and `Architecture` fields of a `.deb`, as
/// `dpkg-deb -f` reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebFields {
    pub package: String,
    pub version: String,
    pub architecture: String,
}

impl std::fmt::Display for DebFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.package, self.version)
    }
}

fn dpkg_deb(
    args: &[&std::ffi::OsStr],
    path: &Path,
    action: &'static str,
) -> Result<String, KernelError> {
    let output = Command::new("dpkg-deb")
        .args(args)
        .output()
        .map_err(|err| KernelError::Dpkg {
            path: path.to_path_buf(),
            action,
            message: format!("cannot run dpkg-deb: {err} (it comes with dpkg)"),
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = stderr
            .lines()
            .map(|line| {
                line.trim()
                    .trim_start_matches("dpkg-deb: ")
                    .trim_start_matches("error: ")
            })
            .find(|line| !line.is_empty())
            .unwrap_or("failed without a message")
            .to_string();
        return Err(KernelError::Dpkg {
            path: path.to_path_buf(),
            action,
            message,
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Reads a `.deb`'s fields (`dpkg-deb -f DEB Package Version Architecture`).
pub fn deb_fields(deb: &Path) -> Result<DebFields, KernelError> {
    if !deb.is_file() {
        return Err(KernelError::NotFound {
            what: "package",
            path: deb.to_path_buf(),
        });
    }
    let text = dpkg_deb(
        &[
            "-f".as_ref(),
            deb.as_os_str(),
            "Package".as_ref(),
            "Version".as_ref(),
            "Architecture".as_ref(),
        ],
        deb,
        "-f",
    )?;
    parse_deb_fields(&text).map_err(|why| KernelError::Corrupt {
        path: deb.to_path_buf(),
        why,
    })
}

fn parse_deb_fields(text: &str) -> Result<DebFields, String> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(|value| value.trim().to_string())
            .filter(|value| !value.is_empty())
            .ok_or_else(|| format!("no {name} field in the package's control file"))
    };
    Ok(DebFields {
        package: field("Package")?,
        version: field("Version")?,
        architecture: field("Architecture")?,
    })
}

/// Unpacks a `.deb`'s files into `dest` (`dpkg-deb -x`); nothing is installed.
pub fn unpack_deb(deb: &Path, dest: &Path) -> Result<(), KernelError> {
    dpkg_deb(
        &["-x".as_ref(), deb.as_os_str(), dest.as_os_str()],
        deb,
        "-x",
    )
    .map(drop)
}

/// What an image's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// `x86_64` or `aarch64`.
    pub arch: &'static str,
    /// A gzip-compressed arm64 `Image`.
    pub gzip: bool,
    /// The arm64 header's page-size flag (bits 1-2 of `flags`), when set.
    pub page_size: Option<u64>,
    /// The release the image names (bzImage `kernel_version`, arm64 `Linux version`
    /// banner), when it could be read.
    pub release: Option<String>,
}

/// Reads an image's magic: x86 bzImage (`HdrS` at 0x202) or arm64 `Image`
/// (`ARM\x64` at 0x38), the latter possibly gzip-compressed.
pub fn image_info(path: &Path) -> Result<ImageInfo, KernelError> {
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            KernelError::NotFound {
                what: "kernel image",
                path: path.to_path_buf(),
            }
        } else {
            KernelError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    parse_image(&bytes).map_err(|why| KernelError::Corrupt {
        path: path.to_path_buf(),
        why,
    })
}

const ARM64_MAGIC: &[u8; 4] = b"ARM\x64";

fn parse_image(bytes: &[u8]) -> Result<ImageInfo, String> {
    if bytes.get(0x202..0x206) == Some(b"HdrS") {
        return Ok(ImageInfo {
            arch: "x86_64",
            gzip: false,
            page_size: None,
            release: bzimage_release(bytes),
        });
    }
    if bytes.get(0x38..0x3c) == Some(ARM64_MAGIC) {
        return Ok(ImageInfo {
            arch: "aarch64",
            gzip: false,
            page_size: arm64_page_size(bytes),
            release: banner_release(bytes),
        });
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut head = [0u8; 64];
        flate2::read::GzDecoder::new(bytes)
            .read_exact(&mut head)
            .map_err(|err| format!("gzip-compressed, but it does not unpack: {err}"))?;
        if &head[0x38..0x3c] == ARM64_MAGIC {
            return Ok(ImageInfo {
                arch: "aarch64",
                gzip: true,
                page_size: arm64_page_size(&head),
                release: None,
            });
        }
        return Err(
            "gzip-compressed, but not an arm64 Image inside (no ARM\\x64 magic at 0x38)".into(),
        );
    }
    if bytes.starts_with(b"MZ") && bytes.get(4..8) == Some(b"zimg") {
        return Err(
            "an EFI zboot image (compressed, self-decompressing under UEFI only): \
                    direct kernel boot needs the plain Image"
                .into(),
        );
    }
    if bytes.starts_with(b"\x7fELF") {
        return Err("an ELF file (vmlinux?), not a bootable image: give the vmlinuz".into());
    }
    Err("not a kernel image: neither an x86 bzImage (HdrS at 0x202) nor an arm64 Image (ARM\\x64 at 0x38)".into())
}

/// bzImage: `kernel_version` (u16 at 0x20e, protocol >= 2.00) points at a
/// NUL-terminated string 0x200 bytes further: "6.1.0-56-cloud-amd64 (debian...) #1 ...".
fn bzimage_release(bytes: &[u8]) -> Option<String> {
    let offset = u16::from_le_bytes(bytes.get(0x20e..0x210)?.try_into().ok()?) as usize;
    if offset == 0 {
        return None;
    }
    let text = bytes.get(offset + 0x200..)?;
    let end = text.iter().position(|&b| b == 0 || b == b' ')?;
    let release = std::str::from_utf8(&text[..end]).ok()?;
    (!release.is_empty()).then(|| release.to_string())
}

/// The release after "Linux version " in the image (the banner), preferring one that
/// starts with a digit (format strings do not).
fn banner_release(bytes: &[u8]) -> Option<String> {
    const NEEDLE: &[u8] = b"Linux version ";
    let mut at = 0;
    while let Some(found) = find(&bytes[at..], NEEDLE) {
        let start = at + found + NEEDLE.len();
        let rest = &bytes[start..bytes.len().min(start + 256)];
        let end = rest
            .iter()
            .position(|&b| b == b' ' || b == 0)
            .unwrap_or(rest.len());
        if let Ok(release) = std::str::from_utf8(&rest[..end])
            && release.starts_with(|c: char| c.is_ascii_digit())
        {
            return Some(release.to_string());
        }
        at = start;
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// arm64 header `flags` (u64 at 0x18), bits 1-2: 0 unspecified, 1 4K, 2 16K, 3 64K.
fn arm64_page_size(header: &[u8]) -> Option<u64> {
    let flags = u64::from_le_bytes(header.get(0x18..0x20)?.try_into().ok()?);
    match (flags >> 1) & 3 {
        1 => Some(4096),
        2 => Some(16384),
        3 => Some(65536),
        _ => None,
    }
}

/// The page size a kernel config sets: `CONFIG_ARM64_16K_PAGES=y` → 16384,
/// `CONFIG_ARM64_64K_PAGES=y` → 65536, `CONFIG_ARM64_4K_PAGES=y` or an x86_64
/// config → 4096; `None` when the config does not say.
pub fn page_size_from_config(config: &str) -> Option<u64> {
    let set = |symbol: &str| {
        config
            .lines()
            .any(|line| line.trim() == format!("{symbol}=y"))
    };
    if set("CONFIG_ARM64_64K_PAGES") || set("CONFIG_PAGE_SIZE_64KB") {
        Some(65536)
    } else if set("CONFIG_ARM64_16K_PAGES") || set("CONFIG_PAGE_SIZE_16KB") {
        Some(16384)
    } else if set("CONFIG_ARM64_4K_PAGES") || set("CONFIG_PAGE_SIZE_4KB") || set("CONFIG_X86_64") {
        Some(4096)
    } else {
        None
    }
}

/// The architecture a kernel config is for (`CONFIG_X86_64=y`, `CONFIG_ARM64=y`).
pub fn arch_from_config(config: &str) -> Option<&'static str> {
    let set = |symbol: &str| {
        config
            .lines()
            .any(|line| line.trim() == format!("{symbol}=y"))
    };
    if set("CONFIG_X86_64") {
        Some("x86_64")
    } else if set("CONFIG_ARM64") {
        Some("aarch64")
    } else {
        None
    }
}

/// Checks an image, its config and its modules folder against each other and
/// against the expected architecture (`uname -m` name), and builds the kernel.
fn assemble(
    name: String,
    vmlinuz: PathBuf,
    modules_dir: PathBuf,
    config: Option<PathBuf>,
    package: Option<String>,
    expected_arch: Option<&str>,
) -> Result<GuestKernel, KernelError> {
    let release = modules_dir
        .file_name()
        .and_then(|name| name.to_str())
        .filter(|name| !name.is_empty())
        .ok_or_else(|| KernelError::Malformed {
            spec: modules_dir.display().to_string(),
            why: "a modules folder is named after its release (lib/modules/<release>)".into(),
        })?
        .to_string();
    let image = image_info(&vmlinuz)?;
    if let Some(expected) = expected_arch
        && expected != image.arch
    {
        return Err(KernelError::WrongArch {
            path: vmlinuz,
            expected: expected.to_string(),
            found: format!("{} image", image.arch),
        });
    }
    if let Some(image_release) = &image.release
        && *image_release != release
    {
        return Err(KernelError::ReleaseMismatch {
            image: vmlinuz,
            image_release: image_release.clone(),
            modules: modules_dir,
            release,
        });
    }
    let mut page_size = image.page_size;
    if let Some(config_path) = &config {
        let text = std::fs::read_to_string(config_path).map_err(io_err(config_path))?;
        if let Some(config_arch) = arch_from_config(&text)
            && config_arch != image.arch
        {
            return Err(KernelError::WrongArch {
                path: config_path.clone(),
                expected: image.arch.to_string(),
                found: format!("config for {config_arch}"),
            });
        }
        if let Some(from_config) = page_size_from_config(&text) {
            if let Some(from_image) = image.page_size
                && from_image != from_config
            {
                return Err(KernelError::Corrupt {
                    path: config_path.clone(),
                    why: format!(
                        "config sets {from_config}-byte pages, but the image {} says {from_image}",
                        vmlinuz.display()
                    ),
                });
            }
            page_size = Some(from_config);
        }
    }
    Ok(GuestKernel {
        name,
        arch: image.arch.to_string(),
        vmlinuz,
        modules_dir,
        release,
        package,
        page_size: page_size.unwrap_or(4096),
        config,
        vmlinuz_gzip: image.gzip,
        scratch: None,
    })
}

/// The `lib/modules/<release>` (or merged-/usr `usr/lib/modules/<release>`) folder
/// of an unpacked package: exactly one.
fn find_modules_dir(root: &Path, label: &str) -> Result<PathBuf, KernelError> {
    let mut found = Vec::new();
    for base in ["lib/modules", "usr/lib/modules"] {
        let base = root.join(base);
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for entry in entries {
            let entry = entry.map_err(io_err(&base))?;
            if entry.file_type().map_err(io_err(&base))?.is_dir() {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(KernelError::Corrupt {
            path: root.to_path_buf(),
            why: format!("{label}: no lib/modules/<release> or usr/lib/modules/<release> folder"),
        }),
        _ => Err(KernelError::Corrupt {
            path: root.to_path_buf(),
            why: format!(
                "{label}: several module folders ({}): which release?",
                found
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// A kernel from an unpacked `linux-image-*` package: `boot/vmlinuz-<release>` (or
/// `<modules>/vmlinuz`), `boot/config-<release>`, the one modules folder. `deb`
/// gives the package's fields: its architecture must be the image's.
pub fn from_unpacked(root: &Path, name: &str, deb: &DebFields) -> Result<GuestKernel, KernelError> {
    let expected = uname_arch(&deb.architecture)?;
    let label = deb.to_string();
    let modules_dir = find_modules_dir(root, &label)?;
    let release = modules_dir
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let images = [
        root.join(format!("boot/vmlinuz-{release}")),
        modules_dir.join("vmlinuz"),
    ];
    let Some(vmlinuz) = images.iter().find(|path| path.is_file()).cloned() else {
        return Err(KernelError::NoVmlinuz {
            package: label,
            looked: images
                .iter()
                .map(|path| {
                    path.strip_prefix(root)
                        .unwrap_or(path)
                        .display()
                        .to_string()
                })
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let configs = [
        root.join(format!("boot/config-{release}")),
        modules_dir.join("config"),
    ];
    let config = configs.into_iter().find(|path| path.is_file());
    assemble(
        name.to_string(),
        vmlinuz,
        modules_dir,
        config,
        Some(label),
        Some(expected),
    )
}

/// A kernel from a `.deb`: fields read, unpacked into a scratch folder that lives
/// as long as the kernel (and its clones).
pub fn from_deb(deb: &Path) -> Result<GuestKernel, KernelError> {
    let fields = deb_fields(deb)?;
    uname_arch(&fields.architecture)?;
    sweep_deb_scratch();
    let scratch = tempfile::Builder::new()
        .prefix(&format!("{DEB_SCRATCH_PREFIX}{}-", std::process::id()))
        .tempdir()
        .map_err(io_err(&std::env::temp_dir()))?;
    unpack_deb(deb, scratch.path())?;
    let name = deb
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| fields.package.clone());
    let mut kernel = from_unpacked(scratch.path(), &name, &fields)?;
    kernel.scratch = Some(Arc::new(scratch));
    Ok(kernel)
}

/// Scratch folders of unpacked `.deb`s in the temp dir: `<prefix><pid>-<random>`.
const DEB_SCRATCH_PREFIX: &str = "cilium-conformance-kernel-";

/// Removes the unpacked `.deb`s of processes that are gone (killed before their
/// kernel dropped): a 16K-page package is 190 MB unpacked.
fn sweep_deb_scratch() {
    super::sweep_scratch(DEB_SCRATCH_PREFIX);
}

/// A kernel from an image and its modules folder; the config is looked for beside
/// the image (`config-<release>`) and in the modules folder (`config`,
/// `build/.config`).
pub fn from_image(image: &Path, modules_dir: &Path) -> Result<GuestKernel, KernelError> {
    if !image.is_file() {
        return Err(KernelError::NotFound {
            what: "kernel image",
            path: image.to_path_buf(),
        });
    }
    if !modules_dir.is_dir() {
        return Err(KernelError::NotFound {
            what: "modules folder",
            path: modules_dir.to_path_buf(),
        });
    }
    // A trailing slash or `.` would hide the release in the folder's name.
    let modules_dir = modules_dir.canonicalize().map_err(io_err(modules_dir))?;
    let release = modules_dir
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut configs = vec![
        modules_dir.join("config"),
        modules_dir.join("build/.config"),
    ];
    if let Some(dir) = image.parent() {
        configs.insert(0, dir.join(format!("config-{release}")));
    }
    let config = configs.into_iter().find(|path| path.is_file());
    assemble(
        release,
        image.to_path_buf(),
        modules_dir,
        config,
        None,
        None,
    )
}

/// What `kernel.json` in `<cache>/<name>/` says about a fetched kernel; paths are
/// relative to that folder, so the cache can move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelRecord {
    pub schema: u32,
    pub name: String,
    /// `x86_64` or `aarch64`.
    pub arch: String,
    pub release: String,
    pub page_size: u64,
    pub vmlinuz: PathBuf,
    #[serde(default)]
    pub vmlinuz_gzip: bool,
    pub modules_dir: PathBuf,
    #[serde(default)]
    pub config: Option<PathBuf>,
    pub package: String,
    pub version: String,
    /// The package's `Architecture` field (`amd64`, `arm64`).
    pub deb_architecture: String,
    /// The suite it came from (`bookworm-security`).
    #[serde(default)]
    pub suite: Option<String>,
    /// Size of the downloaded `.deb`.
    #[serde(default)]
    pub deb_bytes: Option<u64>,
}

impl KernelRecord {
    /// Describes `kernel`, whose files are under `dir`.
    pub fn new(
        kernel: &GuestKernel,
        dir: &Path,
        deb: &DebFields,
        suite: Option<String>,
        deb_bytes: Option<u64>,
    ) -> Result<Self, KernelError> {
        let relative = |path: &Path| {
            path.strip_prefix(dir)
                .map(Path::to_path_buf)
                .map_err(|_| KernelError::Corrupt {
                    path: path.to_path_buf(),
                    why: format!("not under {}", dir.display()),
                })
        };
        Ok(KernelRecord {
            schema: RECORD_SCHEMA,
            name: kernel.name.clone(),
            arch: kernel.arch.clone(),
            release: kernel.release.clone(),
            page_size: kernel.page_size,
            vmlinuz: relative(&kernel.vmlinuz)?,
            vmlinuz_gzip: kernel.vmlinuz_gzip,
            modules_dir: relative(&kernel.modules_dir)?,
            config: kernel.config.as_deref().map(relative).transpose()?,
            package: deb.package.clone(),
            version: deb.version.clone(),
            deb_architecture: deb.architecture.clone(),
            suite,
            deb_bytes,
        })
    }

    /// Reads `<dir>/kernel.json`; `Ok(None)` when there is none (not fetched).
    pub fn read(dir: &Path) -> Result<Option<Self>, KernelError> {
        let path = dir.join(RECORD_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(KernelError::Io { path, source }),
        };
        let record: KernelRecord =
            serde_json::from_str(&text).map_err(|err| KernelError::Corrupt {
                path: path.clone(),
                why: format!("{err}; fetch the kernel again"),
            })?;
        if record.schema != RECORD_SCHEMA {
            return Err(KernelError::Corrupt {
                path,
                why: format!(
                    "schema {} (this build reads {RECORD_SCHEMA}); fetch the kernel again",
                    record.schema
                ),
            });
        }
        Ok(Some(record))
    }

    /// Writes `<dir>/kernel.json` (a temporary file, then rename).
    pub fn write(&self, dir: &Path) -> Result<(), KernelError> {
        let path = dir.join(RECORD_FILE);
        let mut text = serde_json::to_string_pretty(self).expect("a record serializes");
        text.push('\n');
        let temp = dir.join(format!(".{RECORD_FILE}.tmp"));
        std::fs::write(&temp, text).map_err(io_err(&temp))?;
        std::fs::rename(&temp, &path).map_err(io_err(&path))
    }

    /// `"<package> <version>"`.
    pub fn package_version(&self) -> String {
        format!("{} {}", self.package, self.version)
    }

    /// The kernel it describes, files under `dir`, the image checked again.
    pub fn guest(&self, dir: &Path) -> Result<GuestKernel, KernelError> {
        let vmlinuz = dir.join(&self.vmlinuz);
        let modules_dir = dir.join(&self.modules_dir);
        for path in [&vmlinuz, &modules_dir] {
            if !path.exists() {
                return Err(KernelError::Corrupt {
                    path: path.clone(),
                    why: format!(
                        "missing from the cached kernel {}; fetch it again",
                        self.name
                    ),
                });
            }
        }
        let config = self
            .config
            .as_ref()
            .map(|config| dir.join(config))
            .filter(|path| path.is_file());
        let kernel = assemble(
            self.name.clone(),
            vmlinuz,
            modules_dir,
            config,
            Some(self.package_version()),
            Some(&self.arch),
        )?;
        if kernel.release != self.release || kernel.page_size != self.page_size {
            return Err(KernelError::Corrupt {
                path: dir.join(RECORD_FILE),
                why: format!(
                    "says release {} with {}-byte pages, the files say {} with {}; fetch it again",
                    self.release, self.page_size, kernel.release, kernel.page_size
                ),
            });
        }
        Ok(kernel)
    }
}

/// Resolves a `--kernel SPEC` (see the module's doc), tracked names in [`cache_dir`].
pub fn resolve(spec: &str) -> Result<GuestKernel, KernelError> {
    resolve_in(spec, &cache_dir())
}

/// [`resolve`] with the cache folder given.
pub fn resolve_in(spec: &str, cache: &Path) -> Result<GuestKernel, KernelError> {
    let malformed = |why: &str| KernelError::Malformed {
        spec: spec.to_string(),
        why: why.to_string(),
    };
    if spec.trim().is_empty() {
        return Err(malformed("empty"));
    }
    if spec.ends_with(".deb") {
        return from_deb(Path::new(spec));
    }
    if let Some((image, modules)) = spec.split_once(',') {
        if image.is_empty() || modules.is_empty() || modules.contains(',') {
            return Err(malformed("IMAGE,MODULES_DIR takes two paths, one comma"));
        }
        return from_image(Path::new(image), Path::new(modules));
    }
    let tracked = tracked()?;
    if let Some(kernel) = tracked.iter().find(|kernel| kernel.name == spec) {
        let dir = cache.join(&kernel.name);
        let record = KernelRecord::read(&dir)?.ok_or_else(|| KernelError::NotCached {
            name: kernel.name.clone(),
            cache: cache.to_path_buf(),
        })?;
        if record.name != kernel.name {
            return Err(KernelError::Corrupt {
                path: dir.join(RECORD_FILE),
                why: format!(
                    "describes {}, not {}; fetch it again",
                    record.name, kernel.name
                ),
            });
        }
        return record.guest(&dir);
    }
    if Path::new(spec).exists() {
        return Err(malformed(
            "a path, but neither a .deb nor IMAGE,MODULES_DIR",
        ));
    }
    Err(KernelError::UnknownName {
        name: spec.to_string(),
        known: tracked
            .iter()
            .map(|kernel| kernel.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Synthetic images and unpacked packages for tests here and in [`super::modules`].
#[cfg(test)]
pub(crate) mod fake {
    use std::path::Path;

    /// A minimal x86 bzImage: `HdrS` at 0x202, `kernel_version` naming `release`.
    pub fn bzimage(release: &str) -> Vec<u8> {
        let mut bytes = vec![0u8; 0x400];
        bytes[0x202..0x206].copy_from_slice(b"HdrS");
        bytes[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        bytes[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        let text = format!("{release} (debian-kernel@lists.debian.org) #1 SMP\0");
        bytes[0x300..0x300 + text.len()].copy_from_slice(text.as_bytes());
        bytes
    }

    /// A minimal arm64 Image: magic at 0x38, page-size flag, a banner.
    pub fn arm64_image(release: &str, page_size: u64) -> Vec<u8> {
        let mut bytes = vec![0u8; 0x200];
        let bits: u64 = match page_size {
            4096 => 1,
            16384 => 2,
            65536 => 3,
            _ => 0,
        };
        bytes[0x18..0x20].copy_from_slice(&((bits << 1) | (1 << 3)).to_le_bytes());
        bytes[0x38..0x3c].copy_from_slice(b"ARM\x64");
        bytes.extend_from_slice(b"Linux version %s\0");
        bytes.extend_from_slice(format!("Linux version {release} (gcc) #1 SMP\0").as_bytes());
        bytes
    }

    /// An unpacked package under `root`: `boot/vmlinuz-R`, `boot/config-R`,
    /// `<modules_base>/R/kernel/` and `modules.builtin`.
    pub fn unpacked(root: &Path, modules_base: &str, release: &str, image: &[u8], config: &str) {
        std::fs::create_dir_all(root.join("boot")).unwrap();
        std::fs::write(root.join(format!("boot/vmlinuz-{release}")), image).unwrap();
        std::fs::write(root.join(format!("boot/config-{release}")), config).unwrap();
        let modules = root.join(modules_base).join(release);
        std::fs::create_dir_all(modules.join("kernel")).unwrap();
        std::fs::write(modules.join("modules.builtin"), "").unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{arm64_image, bzimage, unpacked};
    use super::*;
    use std::io::Write;

    const ARM64_16K: &str =
        "CONFIG_ARM64=y\nCONFIG_ARM64_16K_PAGES=y\n# CONFIG_ARM64_4K_PAGES is not set\n";
    const X86: &str = "CONFIG_X86_64=y\nCONFIG_64BIT=y\n";

    fn fields(arch: &str) -> DebFields {
        DebFields {
            package: "linux-image-test".into(),
            version: "1.0-1".into(),
            architecture: arch.into(),
        }
    }

    #[test]
    fn tracked_kernels_parse_and_match_their_packages() {
        let tracked = tracked().unwrap();
        let names: Vec<_> = tracked.iter().map(|k| k.name.as_str()).collect();
        for name in [
            "5.10-amd64",
            "6.1-amd64",
            "6.12-amd64",
            "6.1-arm64",
            "6.12-arm64",
            "6.12-arm64-16k",
        ] {
            assert!(names.contains(&name), "{name} tracked");
        }
        let k16 = tracked.iter().find(|k| k.name == "6.12-arm64-16k").unwrap();
        assert_eq!(k16.uname_arch(), "aarch64");
        assert_eq!(
            k16.package_number("linux-image-6.12.117+deb12-arm64-16k-unsigned"),
            Some(117)
        );
        assert_eq!(
            k16.package_number("linux-image-6.12.117+deb12-arm64-16k-dbg"),
            None
        );
        assert_eq!(
            k16.package_number("linux-image-6.12.x+deb12-arm64-16k-unsigned"),
            None
        );
        assert_eq!(k16.package_prefix(), "linux-image-6.12.");
        let k510 = tracked.iter().find(|k| k.name == "5.10-amd64").unwrap();
        assert_eq!(
            k510.package_number("linux-image-5.10.0-43-cloud-amd64-unsigned"),
            Some(43)
        );
        assert_eq!(k510.uname_arch(), "x86_64");
    }

    #[test]
    fn tracked_file_is_validated() {
        let one = |body: &str| format!("schema = 1\n[[kernel]]\n{body}");
        let ok = "name = \"a\"\narch = \"arm64\"\nsuites = [\"s\"]\npackage = \"p-<N>\"\n";
        assert!(parse_tracked(&one(ok)).is_ok());
        let err = parse_tracked(&one(&ok.replace("arm64", "armhf")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("armhf"), "{err}");
        assert!(parse_tracked(&one(&ok.replace("p-<N>", "p"))).is_err());
        assert!(parse_tracked(&one(&ok.replace("[\"s\"]", "[]"))).is_err());
        assert!(
            parse_tracked(&format!("{}[[kernel]]\n{ok}", one(ok)))
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(parse_tracked(&one(&format!("{ok}extra = 1\n"))).is_err());
    }

    #[test]
    fn cache_dir_precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            cache_dir_from(env(&[
                ("CONFORMANCE_KERNEL_CACHE", "/c"),
                ("XDG_CACHE_HOME", "/x"),
                ("HOME", "/h")
            ])),
            PathBuf::from("/c")
        );
        assert_eq!(
            cache_dir_from(env(&[
                ("CONFORMANCE_KERNEL_CACHE", ""),
                ("XDG_CACHE_HOME", "/x"),
                ("HOME", "/h")
            ])),
            PathBuf::from("/x/cilium-conformance/kernels")
        );
        assert_eq!(
            cache_dir_from(env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")])),
            PathBuf::from("/h/.cache/cilium-conformance/kernels")
        );
        assert_eq!(
            cache_dir_from(env(&[("HOME", "/h")])),
            PathBuf::from("/h/.cache/cilium-conformance/kernels")
        );
    }

    #[test]
    fn image_magic() {
        let x86 = parse_image(&bzimage("6.1.0-56-cloud-amd64")).unwrap();
        assert_eq!(
            (x86.arch, x86.gzip, x86.release.as_deref()),
            ("x86_64", false, Some("6.1.0-56-cloud-amd64"))
        );
        let arm = parse_image(&arm64_image("6.12.117+deb12-arm64-16k", 16384)).unwrap();
        assert_eq!(arm.arch, "aarch64");
        assert_eq!(arm.page_size, Some(16384));
        assert_eq!(
            arm.release.as_deref(),
            Some("6.12.117+deb12-arm64-16k"),
            "the banner, not the format string"
        );

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&arm64_image("6.1.0-56-cloud-arm64", 4096))
            .unwrap();
        let gz = parse_image(&gz.finish().unwrap()).unwrap();
        assert_eq!(
            (gz.arch, gz.gzip, gz.page_size),
            ("aarch64", true, Some(4096))
        );

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[0u8; 128]).unwrap();
        assert!(
            parse_image(&gz.finish().unwrap())
                .unwrap_err()
                .contains("not an arm64 Image")
        );
        assert!(
            parse_image(b"\x7fELF\x02\x01\x01")
                .unwrap_err()
                .contains("ELF")
        );
        let mut zboot = b"MZ\0\0zimg".to_vec();
        zboot.resize(0x100, 0);
        assert!(parse_image(&zboot).unwrap_err().contains("zboot"));
        assert!(
            parse_image(b"hello")
                .unwrap_err()
                .contains("not a kernel image")
        );
    }

    #[test]
    fn config_page_size_and_arch() {
        assert_eq!(page_size_from_config(ARM64_16K), Some(16384));
        assert_eq!(
            page_size_from_config("CONFIG_ARM64=y\nCONFIG_ARM64_64K_PAGES=y\n"),
            Some(65536)
        );
        assert_eq!(
            page_size_from_config("CONFIG_ARM64=y\nCONFIG_ARM64_4K_PAGES=y\n"),
            Some(4096)
        );
        assert_eq!(page_size_from_config(X86), Some(4096));
        assert_eq!(
            page_size_from_config("# CONFIG_ARM64_16K_PAGES is not set\n"),
            None
        );
        assert_eq!(
            page_size_from_config("CONFIG_PAGE_SIZE_16KB=y\n"),
            Some(16384)
        );
        assert_eq!(arch_from_config(ARM64_16K), Some("aarch64"));
        assert_eq!(arch_from_config(X86), Some("x86_64"));
        assert_eq!(arch_from_config(""), None);
    }

    #[test]
    fn debian_arch_names() {
        assert_eq!(uname_arch("amd64").unwrap(), "x86_64");
        assert_eq!(uname_arch("arm64").unwrap(), "aarch64");
        let err = uname_arch("armhf").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("architecture armhf: no guest for it"),
            "{err}"
        );
        assert!(
            !err.is_usage(),
            "a package for an architecture with no guest is exit 3"
        );
    }

    #[test]
    fn deb_fields_text() {
        let text = "Package: linux-image-6.12.117+deb12-arm64-16k-unsigned\nVersion: 6.12.117-1~deb12u1\nArchitecture: arm64\n";
        let fields = parse_deb_fields(text).unwrap();
        assert_eq!(fields.architecture, "arm64");
        assert_eq!(
            fields.to_string(),
            "linux-image-6.12.117+deb12-arm64-16k-unsigned 6.12.117-1~deb12u1"
        );
        assert!(
            parse_deb_fields("Package: x\nVersion: 1\n")
                .unwrap_err()
                .contains("Architecture")
        );
    }

    #[test]
    fn unpacked_package_and_record_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let release = "6.12.117+deb12-arm64-16k";
        unpacked(
            &root,
            "lib/modules",
            release,
            &arm64_image(release, 16384),
            ARM64_16K,
        );
        let kernel = from_unpacked(&root, "6.12-arm64-16k", &fields("arm64")).unwrap();
        assert_eq!(kernel.arch, "aarch64");
        assert_eq!(kernel.page_size, 16384);
        assert_eq!(kernel.release, release);
        assert_eq!(kernel.modules_dir, root.join("lib/modules").join(release));
        assert_eq!(kernel.package.as_deref(), Some("linux-image-test 1.0-1"));

        let record = KernelRecord::new(
            &kernel,
            dir.path(),
            &fields("arm64"),
            Some("bookworm-security".into()),
            Some(7),
        )
        .unwrap();
        assert_eq!(
            record.vmlinuz,
            PathBuf::from(format!("root/boot/vmlinuz-{release}"))
        );
        record.write(dir.path()).unwrap();
        let read = KernelRecord::read(dir.path()).unwrap().unwrap();
        assert_eq!(read, record);
        // The cache can move: paths are relative.
        let moved = tempfile::tempdir().unwrap();
        let target = moved.path().join("k");
        std::fs::rename(dir.path(), &target).unwrap();
        let again = read.guest(&target).unwrap();
        assert_eq!(
            (again.arch.as_str(), again.page_size, again.release.as_str()),
            ("aarch64", 16384, release)
        );
        assert_eq!(
            again.vmlinuz,
            target.join(format!("root/boot/vmlinuz-{release}"))
        );
        assert_eq!(
            KernelRecord::read(moved.path()).unwrap(),
            None,
            "no record, not fetched"
        );
    }

    #[test]
    fn merged_usr_and_wrong_architecture() {
        let dir = tempfile::tempdir().unwrap();
        let release = "6.12.107+deb13-cloud-amd64";
        unpacked(
            dir.path(),
            "usr/lib/modules",
            release,
            &bzimage(release),
            X86,
        );
        let kernel = from_unpacked(dir.path(), "trixie", &fields("amd64")).unwrap();
        assert_eq!(
            kernel.modules_dir,
            dir.path().join("usr/lib/modules").join(release)
        );
        assert_eq!((kernel.arch.as_str(), kernel.page_size), ("x86_64", 4096));

        let err = from_unpacked(dir.path(), "trixie", &fields("arm64")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("wrong architecture")
                && text.contains("x86_64")
                && text.contains("aarch64"),
            "{text}"
        );
        assert!(
            text.contains(&format!("vmlinuz-{release}")),
            "names the file: {text}"
        );
        assert!(!err.is_usage());

        let err = from_unpacked(dir.path(), "trixie", &fields("armhf")).unwrap_err();
        assert!(
            !err.is_usage() && err.to_string().contains("armhf: no guest for it"),
            "a package for another architecture is exit 3: {err}"
        );
    }

    #[test]
    fn no_vmlinuz_and_no_modules() {
        let dir = tempfile::tempdir().unwrap();
        unpacked(
            dir.path(),
            "lib/modules",
            "6.1.0-1-cloud-amd64",
            &bzimage("6.1.0-1-cloud-amd64"),
            X86,
        );
        std::fs::remove_file(dir.path().join("boot/vmlinuz-6.1.0-1-cloud-amd64")).unwrap();
        let err = from_unpacked(dir.path(), "x", &fields("amd64")).unwrap_err();
        assert!(matches!(err, KernelError::NoVmlinuz { .. }), "{err}");
        assert!(
            err.to_string().contains("boot/vmlinuz-6.1.0-1-cloud-amd64"),
            "{err}"
        );
        assert!(!err.is_usage());
        let empty = tempfile::tempdir().unwrap();
        let err = from_unpacked(empty.path(), "x", &fields("amd64")).unwrap_err();
        assert!(err.to_string().contains("no lib/modules"), "{err}");
    }

    #[test]
    fn config_disagreeing_with_image() {
        let dir = tempfile::tempdir().unwrap();
        let release = "6.12.117+deb12-cloud-arm64";
        unpacked(
            dir.path(),
            "lib/modules",
            release,
            &arm64_image(release, 4096),
            ARM64_16K,
        );
        let err = from_unpacked(dir.path(), "x", &fields("arm64")).unwrap_err();
        assert!(err.to_string().contains("16384-byte pages"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        unpacked(
            dir.path(),
            "lib/modules",
            release,
            &arm64_image(release, 4096),
            X86,
        );
        let err = from_unpacked(dir.path(), "x", &fields("arm64")).unwrap_err();
        assert!(matches!(err, KernelError::WrongArch { .. }), "{err}");
    }

    #[test]
    fn image_and_modules_spec() {
        let dir = tempfile::tempdir().unwrap();
        let release = "6.1.0-56-cloud-amd64";
        unpacked(dir.path(), "lib/modules", release, &bzimage(release), X86);
        let image = dir.path().join(format!("boot/vmlinuz-{release}"));
        let modules = dir.path().join("lib/modules").join(release);
        let spec = format!("{},{}/", image.display(), modules.display());
        let kernel = resolve_in(&spec, dir.path()).unwrap();
        assert_eq!(
            (
                kernel.name.as_str(),
                kernel.arch.as_str(),
                kernel.release.as_str()
            ),
            (release, "x86_64", release)
        );
        assert_eq!(
            kernel.config,
            Some(dir.path().join(format!("boot/config-{release}")))
        );
        assert_eq!(kernel.package, None);

        let other = dir.path().join("lib/modules/6.1.0-57-cloud-amd64");
        std::fs::create_dir_all(&other).unwrap();
        let err = resolve_in(
            &format!("{},{}", image.display(), other.display()),
            dir.path(),
        )
        .unwrap_err();
        assert!(
            matches!(err, KernelError::ReleaseMismatch { .. }) && err.is_usage(),
            "{err}"
        );

        let err = resolve_in(
            &format!(
                "{},{}",
                dir.path().join("nope").display(),
                modules.display()
            ),
            dir.path(),
        )
        .unwrap_err();
        assert!(
            matches!(err, KernelError::NotFound { .. }) && err.is_usage(),
            "{err}"
        );
        let not_image = dir.path().join(format!("boot/config-{release}"));
        let err = resolve_in(
            &format!("{},{}", not_image.display(), modules.display()),
            dir.path(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("not a kernel image") && !err.is_usage(),
            "{err}"
        );
    }

    #[test]
    fn spec_forms_and_usage_errors() {
        let cache = tempfile::tempdir().unwrap();
        for bad in ["", " ", ",x", "x,", "a,b,c"] {
            let err = resolve_in(bad, cache.path()).unwrap_err();
            assert!(
                matches!(err, KernelError::Malformed { .. }) && err.is_usage(),
                "{bad:?}: {err}"
            );
        }
        let err = resolve_in("7.0-riscv", cache.path()).unwrap_err();
        let text = err.to_string();
        assert!(
            err.is_usage() && text.contains("6.12-arm64-16k") && text.contains("5.10-amd64"),
            "{text}"
        );
        let err = resolve_in("6.12-arm64-16k", cache.path()).unwrap_err();
        assert!(err.is_usage(), "{err}");
        assert!(
            err.to_string()
                .contains("run cargo xtask kernels --fetch 6.12-arm64-16k"),
            "{err}"
        );
        let err = resolve_in("/no/such/kernel.deb", cache.path()).unwrap_err();
        assert!(
            matches!(err, KernelError::NotFound { .. }) && err.is_usage(),
            "{err}"
        );
        let err = resolve_in(&cache.path().display().to_string(), cache.path()).unwrap_err();
        assert!(matches!(err, KernelError::Malformed { .. }), "{err}");
    }

    #[test]
    fn tracked_name_from_the_cache() {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join("6.12-arm64-16k");
        let release = "6.12.117+deb12-arm64-16k";
        unpacked(
            &dir.join("root"),
            "lib/modules",
            release,
            &arm64_image(release, 16384),
            ARM64_16K,
        );
        let deb = fields("arm64");
        let kernel = from_unpacked(&dir.join("root"), "6.12-arm64-16k", &deb).unwrap();
        KernelRecord::new(&kernel, &dir, &deb, None, None)
            .unwrap()
            .write(&dir)
            .unwrap();
        let resolved = resolve_in("6.12-arm64-16k", cache.path()).unwrap();
        assert_eq!(
            (resolved.name.as_str(), resolved.page_size),
            ("6.12-arm64-16k", 16384)
        );

        // An image swapped underneath the record is caught.
        std::fs::write(
            dir.join(format!("root/boot/vmlinuz-{release}")),
            bzimage(release),
        )
        .unwrap();
        let err = resolve_in("6.12-arm64-16k", cache.path()).unwrap_err();
        assert!(matches!(err, KernelError::WrongArch { .. }), "{err}");
        std::fs::write(dir.join(RECORD_FILE), "{").unwrap();
        let err = resolve_in("6.12-arm64-16k", cache.path()).unwrap_err();
        assert!(
            matches!(err, KernelError::Corrupt { .. }) && !err.is_usage(),
            "{err}"
        );
    }

    /// Builds a real `.deb` with `dpkg-deb --build` (where dpkg-deb exists) and
    /// resolves it: fields read from the package, scratch removed on drop.
    #[test]
    fn deb_spec_unpacks_into_scratch() {
        if Command::new("dpkg-deb").arg("--version").output().is_err() {
            println!("skipped: dpkg-deb not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let build = |arch: &str, image: Vec<u8>, name: &str| {
            let root = dir.path().join(format!("pkg-{name}"));
            let release = "6.12.117+deb12-cloud-arm64";
            unpacked(
                &root,
                "lib/modules",
                release,
                &image,
                "CONFIG_ARM64=y\nCONFIG_ARM64_4K_PAGES=y\n",
            );
            std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
            std::fs::write(
                root.join("DEBIAN/control"),
                format!(
                    "Package: linux-image-fake\nVersion: 6.12.117-1\nArchitecture: {arch}\nMaintainer: t <t@example.invalid>\nDescription: test\n"
                ),
            )
            .unwrap();
            let deb = dir.path().join(format!("{name}.deb"));
            let out = Command::new("dpkg-deb")
                .args(["--root-owner-group", "-Znone", "--build"])
                .arg(&root)
                .arg(&deb)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            deb
        };
        let deb = build(
            "arm64",
            arm64_image("6.12.117+deb12-cloud-arm64", 4096),
            "good",
        );
        let kernel = resolve_in(&deb.display().to_string(), dir.path()).unwrap();
        assert_eq!(kernel.name, "good");
        assert_eq!(kernel.arch, "aarch64");
        assert_eq!(
            kernel.package.as_deref(),
            Some("linux-image-fake 6.12.117-1")
        );
        let scratch = kernel.scratch.as_ref().unwrap().path().to_path_buf();
        assert!(kernel.vmlinuz.starts_with(&scratch) && kernel.vmlinuz.is_file());
        let clone = kernel.clone();
        drop(kernel);
        assert!(scratch.exists(), "a clone keeps it");
        drop(clone);
        assert!(!scratch.exists(), "removed with the last clone");

        let deb = build(
            "amd64",
            arm64_image("6.12.117+deb12-cloud-arm64", 4096),
            "liar",
        );
        let err = resolve_in(&deb.display().to_string(), dir.path()).unwrap_err();
        assert!(
            matches!(err, KernelError::WrongArch { .. }) && !err.is_usage(),
            "{err}"
        );

        let junk = dir.path().join("junk.deb");
        std::fs::write(&junk, "not a package").unwrap();
        let err = resolve_in(&junk.display().to_string(), dir.path()).unwrap_err();
        assert!(
            matches!(err, KernelError::Dpkg { .. }) && !err.is_usage(),
            "{err}"
        );
    }
}
