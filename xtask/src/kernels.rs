//! `cargo xtask kernels`: the guest kernels of the `vm` target, listed and fetched.
//!
//! The tracked kernels are `fixtures/kernels.toml`; the cache and the record of a
//! fetched kernel are `conformance_suite::target::vm::kernel`'s, so that
//! `--kernel NAME` finds what this fetched. Fetching goes through a private apt
//! configuration per suite and architecture under `<cache>/.apt/`: its own
//! sources (Debian's archive only), state, empty dpkg status and package cache,
//! none of the host's apt.conf.d, and the host's Debian archive keyring for the
//! signatures. `apt-get update` and `apt-get download` run there; nothing of the
//! host's apt or dpkg state changes, and nothing is installed.

use crate::conformance::Failure;
use conformance_suite::target::vm::kernel::{self, DebFields, KernelRecord, TrackedKernel};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

const USAGE: u8 = 2;
const INFRA: u8 = 3;

/// Debian's archive: the only places fetching talks to.
const ARCHIVE: &str = "http://deb.debian.org/debian";
const SECURITY: &str = "http://deb.debian.org/debian-security";
/// The host's Debian archive keyring (package debian-archive-keyring), or failing
/// that its trusted.gpg.d.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
const TRUSTED_PARTS: &str = "/etc/apt/trusted.gpg.d";

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Arch {
    #[value(name = "x86_64", alias = "amd64")]
    X86_64,
    #[value(name = "arm64", alias = "aarch64")]
    Arm64,
}

impl Arch {
    fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

#[derive(clap::Args)]
#[command(after_help = "\
Without --fetch: lists the tracked kernels (fixtures/kernels.toml): name, architecture, suites, \
whether it is in the cache (and which package and version), and the cache's path. \
`cargo xtask conformance --target vm --kernel NAME` boots a cached one; --kernel also takes a \
Debian linux-image .deb or IMAGE,MODULES_DIR without fetching anything.\n\n\
--fetch NAME... (or `all`, narrowed by --arch) downloads each kernel from Debian's archive \
(http://deb.debian.org/debian, and .../debian-security for the -security suites): the newest \
package matching the tracked pattern that downloads wins (a version the index lists but the mirror \
answers 404 for is skipped for the next older one). The package's Package, Version and Architecture \
fields are read back with `dpkg-deb -f` (an architecture other than the tracked one is an error), \
it is unpacked with `dpkg-deb -x` (nothing is installed) into <cache>/NAME/root beside a \
kernel.json that describes it (image, modules folder, release, page size). A fetch unpacks into a \
temporary folder first and renames it into place, so an interrupted fetch leaves nothing half-made; \
fetching a kernel cached at the newest version is a no-op, and so is one whose index cannot be \
updated (offline: the cached copy is kept, with a note).\n\n\
apt runs with a private configuration per suite and architecture under <cache>/.apt/ (own sources \
with Architectures set, own state and package cache, an empty dpkg status, none of the host's \
apt.conf.d), signatures checked against /usr/share/keyrings/debian-archive-keyring.gpg (else \
/etc/apt/trusted.gpg.d). The host's apt and dpkg state do not change: no foreign architecture, no \
source added. Needs apt-get, apt-cache and dpkg-deb (any Debian or Ubuntu host).\n\n\
Cache: $CONFORMANCE_KERNEL_CACHE, else $XDG_CACHE_HOME/cilium-conformance/kernels, else \
~/.cache/cilium-conformance/kernels. A cloud kernel is 20-35 MB to download, 6.12-arm64-16k (the \
full flavour) about 90 MB.\n\n\
Exit codes: 0 listed, or every kernel fetched or cached; 2 bad usage (an unknown name: the known \
ones are listed); 3 a kernel could not be fetched (one line each: the package and why: 404, \
signature, no candidate, wrong architecture).")]
pub struct Options {
    /// Only kernels of this architecture (`x86_64` or `amd64`, `arm64` or `aarch64`).
    #[arg(long, value_enum, value_name = "ARCH")]
    arch: Option<Arch>,
    /// Download, verify and unpack these tracked kernels into the cache; `all` for every
    /// one (of --arch).
    #[arg(long, value_name = "NAME", num_args = 1.., value_delimiter = ',')]
    fetch: Vec<String>,
}

fn fail(code: u8, message: impl std::fmt::Display) -> Failure {
    Failure {
        code,
        message: message.to_string(),
    }
}

pub fn run(opts: Options) -> Result<ExitCode, Failure> {
    let tracked = kernel::tracked().map_err(|e| fail(INFRA, e))?;
    let selected = select(&tracked, &opts)?;
    let cache = kernel::cache_dir();
    if opts.fetch.is_empty() {
        list(&selected, &cache);
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(&cache).map_err(|e| {
        fail(
            INFRA,
            format!("create the kernel cache {}: {e}", cache.display()),
        )
    })?;
    sweep_stale(&cache);
    let mut apt = Apt {
        cache: cache.clone(),
        roots: BTreeMap::new(),
    };
    let mut failed = 0;
    for tracked in &selected {
        match fetch_one(tracked, &mut apt) {
            Ok(line) => println!("{line}"),
            Err(why) => {
                eprintln!("error: {}: {why}", tracked.name);
                failed += 1;
            }
        }
    }
    println!("cache: {}", cache.display());
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(INFRA)
    })
}

/// The kernels the options name, in the file's order.
fn select<'a>(
    tracked: &'a [TrackedKernel],
    opts: &Options,
) -> Result<Vec<&'a TrackedKernel>, Failure> {
    let of_arch =
        |kernel: &TrackedKernel| opts.arch.is_none_or(|arch| arch.debian() == kernel.arch);
    if opts.fetch.is_empty() || opts.fetch.iter().any(|name| name == "all") {
        return Ok(tracked.iter().filter(|kernel| of_arch(kernel)).collect());
    }
    let known = || {
        tracked
            .iter()
            .map(|kernel| kernel.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut selected: Vec<&TrackedKernel> = Vec::new();
    for name in &opts.fetch {
        let Some(kernel) = tracked.iter().find(|kernel| kernel.name == *name) else {
            return Err(fail(
                USAGE,
                format!("unknown kernel {name:?}; known: {}, or all", known()),
            ));
        };
        if !of_arch(kernel) {
            return Err(fail(
                USAGE,
                format!(
                    "kernel {name} is {}, not --arch {}",
                    kernel.arch,
                    opts.arch.map(Arch::debian).unwrap_or("")
                ),
            ));
        }
        if !selected.iter().any(|chosen| chosen.name == kernel.name) {
            selected.push(kernel);
        }
    }
    Ok(selected)
}

fn list(selected: &[&TrackedKernel], cache: &Path) {
    let rows: Vec<[String; 4]> = selected
        .iter()
        .map(|tracked| {
            let cached = match KernelRecord::read(&cache.join(&tracked.name)) {
                Ok(Some(record)) => format!(
                    "{} (release {}, {} KiB pages)",
                    record.package_version(),
                    record.release,
                    record.page_size / 1024
                ),
                Ok(None) => "no".into(),
                Err(err) => format!("broken ({err}): fetch it again"),
            };
            [
                tracked.name.clone(),
                tracked.uname_arch().to_string(),
                tracked.suites.join(","),
                cached,
            ]
        })
        .collect();
    let header = ["NAME", "ARCH", "SUITES", "CACHED"].map(String::from);
    let width = |col: usize| {
        rows.iter()
            .chain([&header])
            .map(|row| row[col].len())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    for row in [&header].into_iter().chain(&rows) {
        println!("{:w0$}  {:w1$}  {:w2$}  {}", row[0], row[1], row[2], row[3]);
    }
    println!("cache: {}", cache.display());
    if rows.iter().all(|row| row[3] == "no") && !rows.is_empty() {
        println!("fetch with: cargo xtask kernels --fetch NAME (or all)");
    }
}

fn progress(name: &str, message: impl std::fmt::Display) {
    eprintln!("kernels: [{name}] {message}");
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// One version of a package the index lists.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    package: String,
    version: String,
    number: u64,
    size: Option<u64>,
    suite: String,
}

/// Fetches one kernel; `Ok` is its summary line, `Err` why not (one line).
fn fetch_one(tracked: &TrackedKernel, apt: &mut Apt) -> Result<String, String> {
    let started = Instant::now();
    let name = &tracked.name;
    let cache = apt.cache.clone();
    let final_dir = cache.join(name);
    let cached = match KernelRecord::read(&final_dir) {
        Ok(record) => record,
        Err(err) => {
            progress(
                name,
                format!("the cached copy is broken ({err}): fetching it again"),
            );
            None
        }
    };
    let mut candidates = Vec::new();
    let mut index_errors = Vec::new();
    for suite in &tracked.suites {
        match apt.root(suite, &tracked.arch, name) {
            Ok(root) => candidates.extend(root.candidates(tracked)?),
            Err(err) => index_errors.push(err),
        }
    }
    let cached_line = |record: &KernelRecord| {
        format!(
            "{name}: cached {} (release {}, {}, {} KiB pages) in {}",
            record.package_version(),
            record.release,
            record.arch,
            record.page_size / 1024,
            final_dir.display()
        )
    };
    if candidates.is_empty() {
        if index_errors.is_empty() {
            return Err(format!(
                "{}: no candidate in {} ({})",
                tracked.package,
                tracked.suites.join(", "),
                tracked.arch
            ));
        }
        let why = format!("{}: {}", tracked.package, index_errors.join("; "));
        // Offline with the kernel at hand: keep it, say a newer one was not looked for.
        return match &cached {
            Some(record) => {
                progress(name, format!("not checked for a newer version: {why}"));
                Ok(cached_line(record))
            }
            None => Err(why),
        };
    }
    sort_candidates(&mut candidates);
    let mut skipped = Vec::new();
    for candidate in &candidates {
        if let Some(record) = &cached
            && record.package == candidate.package
            && record.version == candidate.version
        {
            return Ok(cached_line(record));
        }
        let root = apt.root(&candidate.suite, &tracked.arch, name)?;
        progress(
            name,
            format!(
                "downloading {} {} from {} ({})",
                candidate.package,
                candidate.version,
                candidate.suite,
                candidate
                    .size
                    .map(megabytes)
                    .unwrap_or_else(|| "size unknown".into())
            ),
        );
        let download = Scratch::new(&cache, "download", name)?;
        let step = Instant::now();
        let deb = match root.download(candidate, &download.0) {
            Ok(deb) => deb,
            Err(Download::NotFound(why)) => {
                progress(
                    name,
                    format!(
                        "{} {}: {why}; trying the next older one",
                        candidate.package, candidate.version
                    ),
                );
                skipped.push(format!("{}: {why}", candidate.version));
                continue;
            }
            Err(Download::Failed(why)) => {
                return Err(format!(
                    "{} {}: {why}",
                    candidate.package, candidate.version
                ));
            }
        };
        let bytes = std::fs::metadata(&deb).map(|meta| meta.len()).unwrap_or(0);
        progress(
            name,
            format!(
                "downloaded {} in {:.1} s; verifying",
                megabytes(bytes),
                step.elapsed().as_secs_f64()
            ),
        );
        let record = install(tracked, candidate, &deb, bytes, &cache)
            .map_err(|why| format!("{} {}: {why}", candidate.package, candidate.version))?;
        let mut line = format!(
            "{name}: fetched {} ({}, {:.1} s): release {}, {}, {} KiB pages, in {}",
            record.package_version(),
            megabytes(bytes),
            started.elapsed().as_secs_f64(),
            record.release,
            record.arch,
            record.page_size / 1024,
            final_dir.display()
        );
        if !skipped.is_empty() {
            line.push_str(&format!(
                " (newer listed but not downloadable: {})",
                skipped.join(", ")
            ));
        }
        return Ok(line);
    }
    Err(format!(
        "{}: every listed version failed to download: {}",
        tracked.package,
        skipped.join("; ")
    ))
}

/// Verifies the downloaded package and unpacks it into `<cache>/<name>`, through a
/// staging folder renamed into place.
fn install(
    tracked: &TrackedKernel,
    candidate: &Candidate,
    deb: &Path,
    bytes: u64,
    cache: &Path,
) -> Result<KernelRecord, String> {
    let name = &tracked.name;
    let fields: DebFields = kernel::deb_fields(deb).map_err(|e| e.to_string())?;
    if fields.package != candidate.package || fields.version != candidate.version {
        return Err(format!(
            "the downloaded file is {fields}, not what was asked for"
        ));
    }
    if fields.architecture != tracked.arch {
        return Err(format!(
            "wrong architecture: the package says {}, {name} is tracked as {}",
            fields.architecture, tracked.arch
        ));
    }
    let staging = Scratch::new(cache, "fetch", name)?;
    let root = staging.0.join("root");
    let step = Instant::now();
    progress(
        name,
        format!("unpacking {fields} (Architecture: {})", fields.architecture),
    );
    kernel::unpack_deb(deb, &root).map_err(|e| e.to_string())?;
    let guest = kernel::from_unpacked(&root, name, &fields).map_err(|e| e.to_string())?;
    let record = KernelRecord::new(
        &guest,
        &staging.0,
        &fields,
        Some(candidate.suite.clone()),
        Some(bytes),
    )
    .map_err(|e| e.to_string())?;
    record.write(&staging.0).map_err(|e| e.to_string())?;
    progress(
        name,
        format!(
            "unpacked in {:.1} s: release {}, {}, {} KiB pages",
            step.elapsed().as_secs_f64(),
            record.release,
            record.arch,
            record.page_size / 1024
        ),
    );
    let final_dir = cache.join(name);
    let old = Scratch::path(cache, "old", name);
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    if final_dir.exists() {
        std::fs::rename(&final_dir, &old.0)
            .map_err(|e| io(&format!("move the old {} aside", final_dir.display()), e))?;
    }
    std::fs::rename(&staging.0, &final_dir)
        .map_err(|e| io(&format!("rename into {}", final_dir.display()), e))?;
    Ok(record)
}

/// Newest first: the package's number, then the Debian version; each
/// package/version once (the first suite that lists it).
fn sort_candidates(candidates: &mut Vec<Candidate>) {
    candidates.sort_by(|a, b| {
        b.number
            .cmp(&a.number)
            .then_with(|| deb_version_cmp(&b.version, &a.version))
    });
    let mut seen = std::collections::BTreeSet::new();
    candidates.retain(|c| seen.insert((c.package.clone(), c.version.clone())));
}

/// A folder in the cache named `.<kind>-<name>-<pid>`, removed on drop (if still
/// there): the leftovers of a killed fetch are swept by the next one.
struct Scratch(PathBuf);

impl Scratch {
    fn path(cache: &Path, kind: &str, name: &str) -> Scratch {
        Scratch(cache.join(format!(".{kind}-{name}-{}", std::process::id())))
    }

    fn new(cache: &Path, kind: &str, name: &str) -> Result<Scratch, String> {
        let scratch = Scratch::path(cache, kind, name);
        let _ = std::fs::remove_dir_all(&scratch.0);
        std::fs::create_dir_all(&scratch.0)
            .map_err(|e| format!("create {}: {e}", scratch.0.display()))?;
        Ok(scratch)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes `.fetch-*`, `.download-*` and `.old-*` folders whose process is gone.
fn sweep_stale(cache: &Path) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !["fetch", "download", "old"]
            .iter()
            .any(|kind| name.starts_with(&format!(".{kind}-")))
        {
            continue;
        }
        let Some(pid) = name
            .rsplit('-')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!(
                "kernels: removing {} (left by an interrupted fetch)",
                entry.path().display()
            );
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The private apt roots of this run, each prepared and updated once.
struct Apt {
    cache: PathBuf,
    roots: BTreeMap<(String, String), Result<AptRoot, String>>,
}

impl Apt {
    fn root(&mut self, suite: &str, arch: &str, name: &str) -> Result<&AptRoot, String> {
        let key = (suite.to_string(), arch.to_string());
        if !self.roots.contains_key(&key) {
            let started = Instant::now();
            progress(name, format!("updating the index of {suite} ({arch})"));
            let root = AptRoot::prepare(&self.cache, suite, arch)
                .and_then(|root| root.update().map(|()| root));
            if root.is_ok() {
                progress(
                    name,
                    format!(
                        "index of {suite} ({arch}) updated in {:.1} s",
                        started.elapsed().as_secs_f64()
                    ),
                );
            }
            self.roots.insert(key.clone(), root);
        }
        self.roots[&key].as_ref().map_err(Clone::clone)
    }
}

/// One suite and architecture's private apt configuration.
struct AptRoot {
    dir: PathBuf,
    config: PathBuf,
    suite: String,
    arch: String,
}

enum Download {
    NotFound(String),
    Failed(String),
}

impl AptRoot {
    fn prepare(cache: &Path, suite: &str, arch: &str) -> Result<AptRoot, String> {
        let dir = cache.join(".apt").join(format!("{suite}-{arch}"));
        let text = dir.to_string_lossy();
        if text.contains(['"', '\n']) {
            return Err(format!(
                "the cache path {} has a quote or newline apt cannot take",
                cache.display()
            ));
        }
        for sub in [
            "etc/apt.conf.d",
            "etc/preferences.d",
            "etc/sources.list.d",
            "etc/trusted.gpg.d",
            "state/lists/partial",
            "cache/archives/partial",
        ] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| format!("create {}: {e}", dir.join(sub).display()))?;
        }
        let mirror = if suite.ends_with("-security") {
            SECURITY
        } else {
            ARCHIVE
        };
        let (signed_by, trusted_parts) = if Path::new(KEYRING).is_file() {
            (
                format!("Signed-By: {KEYRING}\n"),
                format!("{}/", dir.join("etc/trusted.gpg.d").display()),
            )
        } else if Path::new(TRUSTED_PARTS).is_dir() {
            (String::new(), format!("{TRUSTED_PARTS}/"))
        } else {
            return Err(format!(
                "no Debian archive keyring ({KEYRING} or {TRUSTED_PARTS}) to check signatures: apt-get install debian-archive-keyring"
            ));
        };
        let write = |rel: &str, body: String| {
            std::fs::write(dir.join(rel), body)
                .map_err(|e| format!("write {}: {e}", dir.join(rel).display()))
        };
        write(
            "etc/sources.list.d/debian.sources",
            format!(
                "Types: deb\nURIs: {mirror}\nSuites: {suite}\nComponents: main\nArchitectures: {arch}\n{signed_by}"
            ),
        )?;
        write("etc/sources.list", String::new())?;
        write("state/status", String::new())?;
        let d = |rel: &str| format!("{}/", dir.join(rel).display());
        let config = dir.join("apt.conf");
        write(
            "apt.conf",
            format!(
                "// Private apt configuration of `cargo xtask kernels`: nothing of the host's apt is read or written.\n\
                 Dir::Etc \"{etc}\";\n\
                 Dir::Etc::main \"{etc}apt.conf\";\n\
                 Dir::Etc::parts \"{etc}apt.conf.d/\";\n\
                 Dir::Etc::sourcelist \"{etc}sources.list\";\n\
                 Dir::Etc::sourceparts \"{etc}sources.list.d/\";\n\
                 Dir::Etc::preferences \"{etc}preferences\";\n\
                 Dir::Etc::preferencesparts \"{etc}preferences.d/\";\n\
                 Dir::Etc::trusted \"{etc}trusted.gpg\";\n\
                 Dir::Etc::trustedparts \"{trusted_parts}\";\n\
                 Dir::State \"{state}\";\n\
                 Dir::State::lists \"{state}lists/\";\n\
                 Dir::State::status \"{state}status\";\n\
                 Dir::Cache \"{cache_dir}\";\n\
                 Dir::Cache::archives \"{cache_dir}archives/\";\n\
                 Dir::Log \"{state}log/\";\n\
                 APT::Architecture \"{arch}\";\n\
                 APT::Architectures {{ \"{arch}\"; }};\n\
                 Acquire::Languages \"none\";\n\
                 // Indexes kept compressed and no binary caches: 20 MB rather than 120 MB for bookworm.\n\
                 Acquire::GzipIndexes \"true\";\n\
                 Dir::Cache::pkgcache \"\";\n\
                 Dir::Cache::srcpkgcache \"\";\n\
                 APT::Sandbox::User \"root\";\n",
                etc = d("etc"),
                state = d("state"),
                cache_dir = d("cache"),
            ),
        )?;
        Ok(AptRoot {
            dir,
            config,
            suite: suite.to_string(),
            arch: arch.to_string(),
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("APT_CONFIG", &self.config)
            .env("LC_ALL", "C")
            .env_remove("LANGUAGE");
        command
    }

    fn update(&self) -> Result<(), String> {
        let output = self
            .command("apt-get")
            .args(["-q", "update", "--error-on=any"])
            .output()
            .map_err(|e| {
                format!("cannot run apt-get ({e}): fetching kernels needs a Debian or Ubuntu host")
            })?;
        if output.status.success() {
            return Ok(());
        }
        Err(format!(
            "apt-get update of {} ({}) failed: {}",
            self.suite,
            self.arch,
            apt_error(&output)
        ))
    }

    fn candidates(&self, tracked: &TrackedKernel) -> Result<Vec<Candidate>, String> {
        let output = self
            .command("apt-cache")
            .args(["pkgnames", tracked.package_prefix()])
            .output()
            .map_err(|e| format!("cannot run apt-cache: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "apt-cache pkgnames in {}: {}",
                self.dir.display(),
                apt_error(&output)
            ));
        }
        let mut packages: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::trim)
            .filter(|package| tracked.package_number(package).is_some())
            .map(String::from)
            .collect();
        packages.sort();
        if packages.is_empty() {
            return Ok(Vec::new());
        }
        let output = self
            .command("apt-cache")
            .arg("show")
            .args(&packages)
            .output()
            .map_err(|e| format!("cannot run apt-cache: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "apt-cache show in {}: {}",
                self.dir.display(),
                apt_error(&output)
            ));
        }
        Ok(parse_stanzas(
            &String::from_utf8_lossy(&output.stdout),
            tracked,
            &self.suite,
        ))
    }

    fn download(&self, candidate: &Candidate, into: &Path) -> Result<PathBuf, Download> {
        let output = self
            .command("apt-get")
            .args(["-q", "download"])
            .arg(format!("{}={}", candidate.package, candidate.version))
            .current_dir(into)
            .output()
            .map_err(|e| Download::Failed(format!("cannot run apt-get: {e}")))?;
        if !output.status.success() {
            let why = apt_error(&output);
            return Err(if why.contains(" 404 ") || why.contains("404  Not Found") {
                Download::NotFound("404 Not Found".into())
            } else {
                Download::Failed(why)
            });
        }
        let debs: Vec<PathBuf> = std::fs::read_dir(into)
            .map_err(|e| Download::Failed(format!("read {}: {e}", into.display())))?
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "deb"))
            .collect();
        match debs.as_slice() {
            [deb] => Ok(deb.clone()),
            _ => Err(Download::Failed(format!(
                "apt-get download left {} .deb files in {}",
                debs.len(),
                into.display()
            ))),
        }
    }
}

/// The first error apt printed (`E: ...`, else `W: ...`, else the last line), without
/// the mirror's address.
fn apt_error(output: &std::process::Output) -> String {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    // A signature failure's reason is on its `W: GPG error` line; the `E:` after it
    // only says "is not signed".
    let line = lines
        .iter()
        .find(|line| line.starts_with("W: GPG error"))
        .or_else(|| lines.iter().find(|line| line.starts_with("E: ")))
        .or_else(|| lines.iter().find(|line| line.starts_with("W: ")))
        .or(lines.last())
        .copied()
        .unwrap_or("failed without a message");
    let line = line.trim_start_matches("E: ").trim_start_matches("W: ");
    let line = line.split(" [IP: ").next().unwrap_or(line);
    format!(
        "{line} (exit {})",
        output
            .status
            .code()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "signal".into())
    )
}

/// `apt-cache show` stanzas → candidates of the tracked pattern and architecture.
fn parse_stanzas(text: &str, tracked: &TrackedKernel, suite: &str) -> Vec<Candidate> {
    text.split("\n\n")
        .filter_map(|stanza| {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|line| line.strip_prefix(name)?.strip_prefix(": ").map(str::trim))
            };
            let package = field("Package")?;
            if field("Architecture")? != tracked.arch {
                return None;
            }
            Some(Candidate {
                number: tracked.package_number(package)?,
                package: package.to_string(),
                version: field("Version")?.to_string(),
                size: field("Size").and_then(|size| size.parse().ok()),
                suite: suite.to_string(),
            })
        })
        .collect()
}

/// Debian version order (dpkg's): epoch, then upstream version, then revision,
/// each compared as alternating non-digit and digit runs, `~` before anything.
fn deb_version_cmp(a: &str, b: &str) -> Ordering {
    fn split(version: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match version.split_once(':') {
            Some((epoch, rest)) if epoch.bytes().all(|b| b.is_ascii_digit()) => {
                (epoch.parse().unwrap_or(0), rest)
            }
            _ => (0, version),
        };
        match rest.rsplit_once('-') {
            Some((upstream, revision)) => (epoch, upstream, revision),
            None => (epoch, rest, ""),
        }
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua, ub))
        .then_with(|| verrevcmp(ra, rb))
}

fn verrevcmp(a: &str, b: &str) -> Ordering {
    fn order(c: Option<u8>) -> i32 {
        match c {
            None => 0,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => c as i32,
            Some(b'~') => -1,
            Some(c) => c as i32 + 256,
        }
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(name: &str) -> TrackedKernel {
        kernel::tracked()
            .unwrap()
            .into_iter()
            .find(|k| k.name == name)
            .unwrap()
    }

    #[test]
    fn debian_version_order() {
        use Ordering::*;
        for (a, b, want) in [
            ("6.12.115-2~deb12u1", "6.12.115-1~deb12u1", Greater),
            ("1.0~rc1-1", "1.0-1", Less),
            ("5.10.251-5", "5.10.257-1", Less),
            ("1:1.0-1", "2.0-1", Greater),
            ("6.1.192-3", "6.1.192-3", Equal),
            ("6.1.192-10", "6.1.192-9", Greater),
            ("1.0a", "1.0", Greater),
            ("1.0+b1", "1.0", Greater),
            ("1.0~", "1.0", Less),
            ("1.01", "1.1", Equal),
        ] {
            assert_eq!(deb_version_cmp(a, b), want, "{a} vs {b}");
            assert_eq!(deb_version_cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn candidates_newest_first_each_once() {
        let k = tracked("5.10-amd64");
        let text = "\
Package: linux-image-5.10.0-43-cloud-amd64-unsigned\nVersion: 5.10.251-5\nArchitecture: amd64\nSize: 21000000\n\n\
Package: linux-image-5.10.0-46-cloud-amd64-unsigned\nVersion: 5.10.262-1\nArchitecture: amd64\n\n\
Package: linux-image-5.10.0-46-cloud-amd64-unsigned-dbg\nVersion: 5.10.262-1\nArchitecture: amd64\n\n\
Package: linux-image-5.10.0-44-cloud-amd64-unsigned\nVersion: 5.10.257-1\nArchitecture: i386\n\n\
Package: linux-image-5.10.0-9-cloud-amd64-unsigned\nVersion: 5.10.70-1\nArchitecture: amd64\n";
        let mut candidates = parse_stanzas(text, &k, "bullseye-security");
        candidates.extend(parse_stanzas(text, &k, "bullseye"));
        sort_candidates(&mut candidates);
        let got: Vec<_> = candidates
            .iter()
            .map(|c| (c.number, c.version.as_str(), c.suite.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (46, "5.10.262-1", "bullseye-security"),
                (43, "5.10.251-5", "bullseye-security"),
                (9, "5.10.70-1", "bullseye-security")
            ],
            "numeric order (46 > 9), no -dbg, no other arch, each once"
        );
        assert_eq!(candidates[1].size, Some(21_000_000));
    }

    #[test]
    fn apt_errors_are_one_line() {
        use std::os::unix::process::ExitStatusExt;
        let output = std::process::Output {
            status: std::process::ExitStatus::from_raw(100 << 8),
            stdout: b"Get:1 http://deb.debian.org/debian-security bullseye-security/main amd64 x\n".to_vec(),
            stderr: b"W: something\nE: Failed to fetch http://deb.debian.org/x.deb  404  Not Found [IP: 1.2.3.4 80]\n".to_vec(),
        };
        assert_eq!(
            apt_error(&output),
            "Failed to fetch http://deb.debian.org/x.deb  404  Not Found (exit 100)"
        );
    }

    #[test]
    fn selection_and_usage_errors() {
        let all = kernel::tracked().unwrap();
        let opts = |arch: Option<Arch>, fetch: &[&str]| Options {
            arch,
            fetch: fetch.iter().map(|s| s.to_string()).collect(),
        };
        let names = |opts: Options| match select(&all, &opts) {
            Ok(kernels) => kernels.iter().map(|k| k.name.clone()).collect::<Vec<_>>(),
            Err(failure) => panic!("{}", failure.message),
        };
        let failure = |opts: Options| match select(&all, &opts) {
            Ok(_) => panic!("selected"),
            Err(failure) => failure,
        };
        assert_eq!(names(opts(None, &[])).len(), all.len());
        assert_eq!(
            names(opts(Some(Arch::Arm64), &["all"])),
            ["6.1-arm64", "6.12-arm64", "6.12-arm64-16k"]
        );
        assert_eq!(
            names(opts(None, &["6.12-amd64", "5.10-amd64", "6.12-amd64"])),
            ["6.12-amd64", "5.10-amd64"]
        );
        let err = failure(opts(None, &["7.0-riscv"]));
        assert_eq!(err.code, USAGE);
        assert!(
            err.message.contains("6.12-arm64-16k") && err.message.contains("7.0-riscv"),
            "{}",
            err.message
        );
        assert_eq!(
            failure(opts(Some(Arch::X86_64), &["6.12-arm64"])).code,
            USAGE
        );
    }

    #[test]
    fn private_apt_configuration_stays_in_the_cache() {
        let cache = tempfile_dir();
        let root = AptRoot::prepare(&cache, "bookworm-security", "arm64").unwrap();
        let config = std::fs::read_to_string(&root.config).unwrap();
        for line in config.lines().filter(|line| line.starts_with("Dir::")) {
            let path = line.split('"').nth(1).unwrap();
            assert!(
                path.is_empty()
                    || path.starts_with(cache.to_str().unwrap())
                    || path == "/etc/apt/trusted.gpg.d/",
                "{line} leaves the cache"
            );
        }
        assert!(config.contains("APT::Architecture \"arm64\";"));
        let sources =
            std::fs::read_to_string(root.dir.join("etc/sources.list.d/debian.sources")).unwrap();
        assert!(
            sources.contains("URIs: http://deb.debian.org/debian-security\n"),
            "{sources}"
        );
        assert!(sources.contains("Architectures: arm64\n"));
        assert_eq!(
            std::fs::read_to_string(root.dir.join("state/status")).unwrap(),
            ""
        );
        let root = AptRoot::prepare(&cache, "bookworm", "amd64").unwrap();
        let sources =
            std::fs::read_to_string(root.dir.join("etc/sources.list.d/debian.sources")).unwrap();
        assert!(
            sources.contains("URIs: http://deb.debian.org/debian\n"),
            "{sources}"
        );
        // With apt installed: apt itself reads only these directories.
        if let Ok(output) = root.command("apt-config").arg("dump").output() {
            let dump = String::from_utf8_lossy(&output.stdout);
            assert!(
                dump.contains(&format!("Dir::State::status \"{}", cache.display())),
                "{dump}"
            );
            assert!(
                !dump.contains("Post-Invoke"),
                "the host's apt.conf.d hooks are not read"
            );
        }
        std::fs::remove_dir_all(&cache).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-kernels-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
