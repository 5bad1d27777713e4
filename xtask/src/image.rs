//! `cargo xtask image`: the probe image, `FROM scratch` around the static probe, built
//! through the Docker API (no registry to pull from; no docker CLI needed).
//!
//! The Dockerfile has one step (`COPY`): each extra step costs ~0.6 s with the classic
//! builder, so entrypoint and command are set when a container is created. The image is
//! tagged `cilium-conformance-probe:<version>-<rev>[-dirty]` and `:latest`; an older image
//! that lost its tags to this build is removed, so no `<none>` images pile up.

use crate::conformance::{Failure, workspace_root};
use crate::probe_build::{self, Arch, StaticProbe};
use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// The image repository; tags say which probe it holds.
pub const REPOSITORY: &str = "cilium-conformance-probe";
const DOCKERFILE: &str = "FROM scratch\nCOPY probe /probe\n";

const USAGE: u8 = 2;
const INFRA: u8 = 3;

#[derive(clap::Args)]
pub struct Options {
    /// Architecture of the probe in the image: x86_64 or aarch64. Default: the Docker daemon's.
    #[arg(long, value_name = "ARCH")]
    arch: Option<Arch>,
    /// Put this static probe in the image instead of building one.
    #[arg(long, value_name = "PATH")]
    probe: Option<PathBuf>,
    /// Print only the image reference on stdout (no progress lines).
    #[arg(long)]
    print_ref: bool,
    /// Echo cargo's and the image build's output.
    #[arg(short, long)]
    verbose: bool,
}

/// What [`ensure_image`] needs; `Default` is "the daemon's architecture, build the probe".
#[derive(Debug, Clone, Default)]
pub struct ImageOptions {
    pub arch: Option<Arch>,
    /// A static probe built elsewhere (checked: static, for `arch`).
    pub probe: Option<PathBuf>,
    pub verbose: bool,
    /// One progress line per step on stderr.
    pub progress: bool,
    /// The daemon's own architecture, where the caller has asked already (the
    /// container target's preflight), so the build does not ask `/info` again.
    pub daemon_arch: Option<Arch>,
}

/// The image that was built (or found in the build cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `cilium-conformance-probe:<version>-<rev>[-dirty]`: what a container is created from.
    pub reference: String,
    /// `cilium-conformance-probe:latest` (with `-<arch>` for a foreign architecture).
    pub latest: String,
    /// `sha256:...`
    pub id: String,
    pub arch: Arch,
    /// The build reused Docker's cache (same probe bytes as before).
    pub cached: bool,
}

/// The git revision the image is tagged with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRev {
    /// Short commit hash; `None` outside a git checkout.
    pub short: Option<String>,
    /// Tracked files differ from the commit.
    pub dirty: bool,
}

/// The version tag: `<version>-<rev>[-dirty]`, with `-<arch>` when the image is for an
/// architecture other than the daemon's (so it never replaces the runnable one).
pub fn version_tag(version: &str, rev: &GitRev, foreign_arch: Option<Arch>) -> String {
    let mut tag = format!("{version}-{}", rev.short.as_deref().unwrap_or("nogit"));
    if rev.dirty {
        tag.push_str("-dirty");
    }
    if let Some(arch) = foreign_arch {
        tag.push('-');
        tag.push_str(arch.name());
    }
    tag
}

/// The moving tag: `latest`, or `latest-<arch>` for a foreign architecture.
pub fn latest_tag(foreign_arch: Option<Arch>) -> String {
    match foreign_arch {
        Some(arch) => format!("latest-{arch}"),
        None => "latest".into(),
    }
}

/// Reads the checkout's revision; a tree without git gets `nogit`.
pub fn git_rev(root: &Path) -> GitRev {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let short = git(&["rev-parse", "--short=7", "HEAD"]).filter(|s| !s.is_empty());
    let dirty = short.is_some()
        && git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    GitRev { short, dirty }
}

/// The build context, in memory: the Dockerfile and the probe (mode 0755). Fixed
/// owners and times, so the same probe bytes give the same context and a cache hit.
pub fn build_context(probe: &[u8]) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes, mode) in [
        ("Dockerfile", DOCKERFILE.as_bytes(), 0o644),
        ("probe", probe, 0o755),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, bytes)
            .with_context(|| format!("add {name} to the build context"))?;
    }
    tar.into_inner().context("finish the build context")
}

/// 2 where the docker CLI configuration is wrong (a context without metadata, a
/// malformed config file: the user's input), 3 for everything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let bad_input = e
        .chain()
        .filter_map(|c| c.downcast_ref::<conformance_suite::target::docker::DockerError>())
        .any(|d| d.is_bad_input());
    if bad_input { USAGE } else { INFRA }
}

/// Connects as the container target does (`DOCKER_HOST`, else the docker context in
/// use, else the local socket; API version pinned to the daemon's), so both always
/// reach the same daemon and fail with the same one-line advice.
pub async fn connect() -> Result<Docker> {
    conformance_suite::target::docker::connect()
        .await
        .map_err(|e| anyhow!(e))
}

/// The daemon's architecture (`/info` `Architecture`): where its containers run.
pub async fn daemon_arch(docker: &Docker) -> Result<Arch> {
    let info = docker.info().await.context("ask Docker for /info")?;
    let name = info
        .architecture
        .ok_or_else(|| anyhow!("Docker's /info names no architecture"))?;
    Arch::from_docker(&name).map_err(|e| anyhow!("the Docker daemon's {e}"))
}

/// Builds (or finds cached) the probe image on `docker` and tags it. Builds the static
/// probe first unless `opts.probe` names one. For callers with their own tokio runtime.
pub async fn build_image(docker: &Docker, opts: &ImageOptions) -> Result<ImageRef> {
    let native = match opts.daemon_arch {
        Some(arch) => arch,
        None => daemon_arch(docker).await?,
    };
    let arch = opts.arch.unwrap_or(native);
    let foreign = (arch != native).then_some(arch);
    let say = |line: String| {
        if opts.progress {
            eprintln!("image: {line}");
        }
    };

    // 1. The probe.
    let step = Instant::now();
    let probe = match &opts.probe {
        Some(path) => {
            probe_build::verify_static(path, arch)?;
            say(format!(
                "probe {} (given, static {arch}) ({:.2} s)",
                path.display(),
                step.elapsed().as_secs_f64()
            ));
            path.clone()
        }
        None => {
            let verbose = opts.verbose;
            let StaticProbe {
                path,
                route,
                elapsed,
            } = tokio::task::spawn_blocking(move || probe_build::build_static_probe(arch, verbose))
                .await
                .context("the probe build thread panicked")??;
            say(format!(
                "built static {arch} probe ({}): {} ({:.2} s)",
                route.describe(),
                display_relative(&path),
                elapsed.as_secs_f64()
            ));
            path
        }
    };
    let bytes = std::fs::read(&probe).with_context(|| format!("read {}", probe.display()))?;

    // 2. The image, tagged with the version tag by the build itself.
    let step = Instant::now();
    let version = version_tag(
        env!("CARGO_PKG_VERSION"),
        &git_rev(&workspace_root()),
        foreign,
    );
    let reference = format!("{REPOSITORY}:{version}");
    let latest_tag = latest_tag(foreign);
    let latest = format!("{REPOSITORY}:{latest_tag}");
    let previous: Vec<String> = {
        let mut ids = Vec::new();
        for tag in [&reference, &latest] {
            if let Ok(image) = docker.inspect_image(tag).await
                && let Some(id) = image.id
            {
                ids.push(id);
            }
        }
        ids
    };
    let context = build_context(&bytes)?;
    let mut build = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(&reference)
        .rm(true)
        .forcerm(true);
    if foreign.is_some() {
        build = build.platform(arch.oci_platform());
    }
    let mut stream = docker.build_image(
        build.build(),
        None,
        Some(bollard::body_full(context.into())),
    );
    let mut cached = false;
    let mut built_id = None;
    while let Some(item) = stream.next().await {
        let info = item.with_context(|| format!("build image {reference}"))?;
        if let Some(detail) = info.error_detail.and_then(|d| d.message) {
            bail!("building image {reference} failed: {detail}");
        }
        if let Some(text) = info.stream {
            cached |= text.contains("Using cache");
            if opts.verbose {
                eprint!("{text}");
            }
        }
        if let Some(id) = info.aux.and_then(|aux| aux.id) {
            built_id = Some(id);
        }
    }
    let id = match built_id {
        Some(id) => id,
        None => docker
            .inspect_image(&reference)
            .await
            .with_context(|| format!("inspect the image just built ({reference})"))?
            .id
            .ok_or_else(|| anyhow!("image {reference} has no id"))?,
    };
    say(format!(
        "built {reference} ({}{}) ({:.2} s)",
        short_id(&id),
        if cached { ", cached" } else { "" },
        step.elapsed().as_secs_f64()
    ));

    // 3. The moving tag, and the images this build left without a tag.
    let step = Instant::now();
    docker
        .tag_image(
            &id,
            Some(
                TagImageOptionsBuilder::default()
                    .repo(REPOSITORY)
                    .tag(&latest_tag)
                    .build(),
            ),
        )
        .await
        .with_context(|| format!("tag {reference} as {latest}"))?;
    let removed = remove_if_dangling(docker, &previous, &id).await;
    say(format!(
        "tagged {latest}{} ({:.2} s)",
        match removed {
            0 => String::new(),
            1 => ", removed the untagged previous image".into(),
            n => format!(", removed {n} untagged previous images"),
        },
        step.elapsed().as_secs_f64()
    ));
    Ok(ImageRef {
        reference,
        latest,
        id,
        arch,
        cached,
    })
}

/// Removes each of `ids` (other than `keep`) that carries no tag any more. An image a
/// container still uses stays, with a note: the container's owner removes both.
async fn remove_if_dangling(docker: &Docker, ids: &[String], keep: &str) -> usize {
    let mut removed = 0;
    let mut seen = std::collections::BTreeSet::new();
    for id in ids.iter().filter(|id| *id != keep) {
        if !seen.insert(id.clone()) {
            continue;
        }
        let Ok(image) = docker.inspect_image(id).await else {
            continue;
        };
        let tagged = image
            .repo_tags
            .unwrap_or_default()
            .iter()
            .any(|t| t != "<none>:<none>");
        if tagged {
            continue;
        }
        let options = RemoveImageOptionsBuilder::default().build();
        match docker.remove_image(id, Some(options), None).await {
            Ok(_) => removed += 1,
            Err(e) => eprintln!("warning: left the untagged image {} ({e})", short_id(id)),
        }
    }
    removed
}

/// [`build_image`] for synchronous callers, on the suite's Docker runtime and its one
/// client per process (the container target's): connects first, so an unreachable
/// daemon fails before any build.
pub fn ensure_image(opts: &ImageOptions) -> Result<ImageRef> {
    conformance_suite::target::docker::block_on(async {
        let docker = connect().await?;
        build_image(&docker, opts).await
    })?
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

fn display_relative(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

pub fn run(opts: Options) -> Result<ExitCode, Failure> {
    // A wrong --probe is bad input (exit 2), found before Docker is asked anything.
    if let Some(path) = &opts.probe {
        let usage = |message: String| Failure {
            code: USAGE,
            message,
        };
        if !path.is_file() {
            return Err(usage(format!("--probe {}: no such file", path.display())));
        }
        let arch = probe_build::static_arch(path).map_err(|e| usage(format!("--probe {e:#}")))?;
        if let Some(wanted) = opts.arch
            && wanted != arch
        {
            return Err(usage(format!(
                "--probe {} is a static {arch} probe, not {wanted}",
                path.display()
            )));
        }
    }
    let image = ensure_image(&ImageOptions {
        arch: opts.arch,
        probe: opts.probe.clone(),
        verbose: opts.verbose,
        progress: !opts.print_ref || opts.verbose,
        daemon_arch: None,
    })
    .map_err(|e| Failure {
        code: exit_code(&e),
        message: format!("{e:#}"),
    })?;
    println!("{}", image.reference);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(short: Option<&str>, dirty: bool) -> GitRev {
        GitRev {
            short: short.map(str::to_string),
            dirty,
        }
    }

    #[test]
    fn tags_carry_version_revision_and_dirt() {
        let clean = rev(Some("9bea203"), false);
        assert_eq!(version_tag("0.1.0", &clean, None), "0.1.0-9bea203");
        assert_eq!(
            version_tag("0.1.0", &rev(Some("9bea203"), true), None),
            "0.1.0-9bea203-dirty"
        );
        assert_eq!(version_tag("0.1.0", &rev(None, false), None), "0.1.0-nogit");
        assert_eq!(
            version_tag("0.1.0", &clean, Some(Arch::Aarch64)),
            "0.1.0-9bea203-aarch64"
        );
        assert_eq!(latest_tag(None), "latest");
        assert_eq!(latest_tag(Some(Arch::Aarch64)), "latest-aarch64");
        // Docker's tag grammar: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
        let tag = version_tag("0.1.0", &rev(Some("9bea203"), true), Some(Arch::X86_64));
        assert!(tag.len() <= 128);
        assert!(
            tag.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        );
    }

    #[test]
    fn this_checkout_has_a_revision() {
        let rev = git_rev(&workspace_root());
        if let Some(short) = rev.short {
            assert_eq!(short.len(), 7);
            assert!(short.chars().all(|c| c.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn build_context_holds_the_dockerfile_and_an_executable_probe() {
        let probe = b"\x7fELF pretend".to_vec();
        let bytes = build_context(&probe).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let mode = entry.header().mode().unwrap();
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
            seen.push((path, mode, content));
        }
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].0, "Dockerfile");
        let dockerfile = String::from_utf8(seen[0].2.clone()).unwrap();
        assert_eq!(dockerfile, "FROM scratch\nCOPY probe /probe\n");
        // No ENTRYPOINT/CMD/RUN steps: they are set at create time.
        assert_eq!(dockerfile.lines().count(), 2);
        assert_eq!(seen[1], ("probe".to_string(), 0o755, probe.clone()));
        // Same probe bytes, same context: Docker's cache hits.
        assert_eq!(build_context(&probe).unwrap(), bytes);
    }

    #[test]
    fn short_ids_drop_the_digest_prefix() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
    }
}
