//! The distribution kernel package and the upstream release it is based on.
//!
//! Distributions backport fixes under a fixed `uname -r`: Debian's `6.1.0-56-cloud-amd64`
//! is package `6.1.192-1`, based on upstream 6.1.192, and carries every fix up to it
//! (the CVE-2025-37959 scrub fix arrived in 6.1.139-1). The kernel says so itself:
//!
//! - Debian writes the package version after the build number in `/proc/version`:
//!   `Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) (gcc-12
//!   (Debian 12.2.0-14+deb12u1) 12.2.0, ...) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-1
//!   (2025-11-01)`. The compiler part names Debian too (its gcc's version): only the
//!   text after the `#` counts.
//! - Ubuntu has `/proc/version_signature`: `Ubuntu 5.15.0-91.101-generic 5.15.131`,
//!   package version, flavour and the upstream stable release last.
//! - Upstream, self-built and NixOS kernels (`#1-NixOS SMP ...`) name no package:
//!   their `uname -r` is the upstream release.
//!
//! Pure functions over the text; the caller reads the files.

use conformance_contract::KernelVersion;
use conformance_contract::facts::KernelPackage;

/// What the kernel's own text says about its package and upstream release.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelOrigin {
    pub package: Option<KernelPackage>,
    /// Where `package` came from, or why there is none (`notes["kernel.package"]`).
    pub package_note: String,
    /// Where `kernel.upstream` comes from (`notes["kernel.upstream"]`).
    pub upstream_note: String,
}

/// `proc_version` is `/proc/version` (or why it could not be read);
/// `version_signature` is `/proc/version_signature` when it exists; `uname` is the
/// version `uname -r` starts with.
pub fn classify(
    proc_version: Result<&str, String>,
    version_signature: Option<&str>,
    uname: Option<KernelVersion>,
) -> KernelOrigin {
    let uname_text = uname.map_or("no version".to_string(), |v| v.to_string());
    let found = version_signature
        .and_then(|sig| {
            let (package, upstream) = parse_version_signature(sig)?;
            Some((
                package,
                upstream,
                format!("/proc/version_signature ({:?})", sig.trim()),
            ))
        })
        .or_else(|| {
            let text = proc_version.as_ref().ok()?;
            let (distribution, version) = package_in_proc_version(text)?;
            let upstream = debian_upstream(&version);
            let package = KernelPackage {
                distribution,
                version,
                upstream: None,
            };
            Some((
                package,
                upstream,
                format!("/proc/version ({:?})", build_part(text).trim()),
            ))
        });
    let Some((mut package, named, source)) = found else {
        let why = match (&proc_version, version_signature) {
            (Err(e), _) => format!("{e}; no /proc/version_signature"),
            (Ok(text), sig) => {
                let build = build_part(text).trim();
                let tag = match build_tag(text) {
                    Some("NixOS") => {
                        ": built by NixOS, whose kernels keep the upstream release in uname -r"
                            .to_string()
                    }
                    Some(tag) => format!(": built by {tag}"),
                    None => String::new(),
                };
                let sig = match sig {
                    Some(s) => format!("/proc/version_signature {:?} is not understood", s.trim()),
                    None => "there is no /proc/version_signature".into(),
                };
                format!(
                    "/proc/version names no package after its build number ({build:?}{tag}) and {sig}"
                )
            }
        };
        let upstream_note = match uname {
            Some(v) => format!("{v}, from uname -r: no distribution package names another"),
            None => "unknown: uname -r has no version and no distribution package names one".into(),
        };
        return KernelOrigin {
            package: None,
            package_note: format!("no distribution kernel package: {why}"),
            upstream_note,
        };
    };
    let upstream_note = match (named, uname) {
        (Some(up), Some(u)) if (up.major, up.minor) != (u.major, u.minor) => format!(
            "{u}, from uname -r: {package} names upstream {up}, which does not match uname -r's {u}; not trusted"
        ),
        (Some(up), _) => {
            package.upstream = Some(up);
            format!(
                "{up}: the upstream release {package} is based on ({source}); uname -r says {uname_text}"
            )
        }
        (None, Some(u)) => {
            format!("{u}, from uname -r: {package} names no upstream release ({source})")
        }
        (None, None) => format!(
            "unknown: {package} names no upstream release ({source}) and uname -r has no version"
        ),
    };
    KernelOrigin {
        package_note: format!("from {source}"),
        package: Some(package),
        upstream_note,
    }
}

/// The text after the build number: `#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-1 (2025-11-01)`.
/// The compiler part before it may name a distribution too (its compiler's package).
fn build_part(proc_version: &str) -> &str {
    proc_version
        .rfind(" #")
        .map_or("", |at| &proc_version[at + 1..])
}

/// `NixOS` from `#1-NixOS SMP ...`, `Ubuntu` from `#101-Ubuntu SMP ...`.
fn build_tag(proc_version: &str) -> Option<&str> {
    let first = build_part(proc_version).split_whitespace().next()?;
    let (number, tag) = first.strip_prefix('#')?.split_once('-')?;
    (number.chars().all(|c| c.is_ascii_digit()) && !tag.is_empty()).then_some(tag)
}

/// `("Debian", "6.1.192-1")` from a Debian kernel's `/proc/version`.
pub fn package_in_proc_version(proc_version: &str) -> Option<(String, String)> {
    let words: Vec<&str> = build_part(proc_version).split_whitespace().collect();
    words.windows(2).find_map(|w| {
        (w[0] == "Debian" && w[1].starts_with(|c: char| c.is_ascii_digit()))
            .then(|| (w[0].to_string(), w[1].to_string()))
    })
}

/// The upstream part of a Debian package version: `6.1.192-1` → 6.1.192,
/// `6.12.117-1~deb12u1` → 6.12.117, `1:6.6.51-1+rpt3` (Raspberry Pi OS) → 6.6.51,
/// `6.13~rc7-1~exp1` → 6.13-rc7.
pub fn debian_upstream(version: &str) -> Option<KernelVersion> {
    let no_epoch = version.split_once(':').map_or(version, |(_, v)| v);
    let upstream = no_epoch.rsplit_once('-').map_or(no_epoch, |(u, _)| u);
    let upstream = upstream.replacen("~rc", "-rc", 1);
    let (nums, _) = upstream.split_once("-rc").unwrap_or((&upstream, ""));
    let well_formed = nums.split('.').count() >= 2
        && nums
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    well_formed
        .then(|| KernelVersion::parse_release(&upstream))
        .flatten()
}

/// Ubuntu's `/proc/version_signature`: `Ubuntu 5.15.0-91.101-generic 5.15.131` →
/// package `Ubuntu 5.15.0-91.101` (the flavour is in `uname -r` already) and
/// upstream 5.15.131.
pub fn parse_version_signature(sig: &str) -> Option<(KernelPackage, Option<KernelVersion>)> {
    let mut fields = sig.split_whitespace();
    let distribution = fields.next()?;
    let with_flavour = fields.next()?;
    let mainline = fields.next();
    if !with_flavour.starts_with(|c: char| c.is_ascii_digit())
        || !distribution.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        return None;
    }
    // `<version>-<abi>.<upload>[~backport]-<flavour>`: the flavour follows the second `-`.
    let version = match with_flavour.match_indices('-').nth(1) {
        Some((at, _)) => &with_flavour[..at],
        None => with_flavour,
    };
    let upstream = mainline.and_then(KernelVersion::parse_release);
    Some((
        KernelPackage {
            distribution: distribution.to_string(),
            version: version.to_string(),
            upstream: None,
        },
        upstream,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Option<KernelVersion> {
        KernelVersion::parse_release(s)
    }

    fn package(distribution: &str, version: &str, upstream: &str) -> Option<KernelPackage> {
        Some(KernelPackage {
            distribution: distribution.into(),
            version: version.into(),
            upstream: v(upstream),
        })
    }

    const BOOKWORM_61: &str = "Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-1 (2025-11-01)\n";
    const BOOKWORM_612: &str = "Linux version 6.12.117+deb12-cloud-amd64 (debian-kernel@lists.debian.org) (x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.12.117-1~deb12u1 (2025-11-10)\n";
    const BULLSEYE_510: &str = "Linux version 5.10.0-43-cloud-amd64 (debian-kernel@lists.debian.org) (gcc-10 (Debian 10.2.1-6) 10.2.1 20210110, GNU ld (GNU Binutils for Debian) 2.35.2) #1 SMP Debian 5.10.251-5 (2025-10-19)\n";
    const TRIXIE: &str = "Linux version 6.12.107+deb13-cloud-amd64 (debian-kernel@lists.debian.org) (x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0, GNU ld (GNU Binutils for Debian) 2.44) #1 SMP PREEMPT_DYNAMIC Debian 6.12.107-1 (2025-09-25)\n";
    const UBUNTU: &str = "Linux version 5.15.0-91-generic (buildd@lcy02-amd64-045) (gcc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0, GNU ld (GNU Binutils for Ubuntu) 2.38) #101-Ubuntu SMP Tue Nov 14 13:30:08 UTC 2023\n";
    const UBUNTU_SIG: &str = "Ubuntu 5.15.0-91.101-generic 5.15.131\n";
    const THIS_HOST: &str = "Linux version 6.18.44-fc-v857 (builder@sandboxing) (gcc (GCC) 15.3.0, GNU ld (GNU Binutils) 2.46) #1 SMP PREEMPT_DYNAMIC @0\n";
    const NIXOS: &str = "Linux version 6.12.44 (nixbld@localhost) (gcc (GCC) 14.3.0, GNU ld (GNU Binutils) 2.44) #1-NixOS SMP PREEMPT_DYNAMIC Thu Aug 28 10:37:51 UTC 2025\n";

    #[test]
    fn debian_bookworm_61_names_its_backported_base() {
        let o = classify(Ok(BOOKWORM_61), None, v("6.1.0-56-cloud-amd64"));
        assert_eq!(o.package, package("Debian", "6.1.192-1", "6.1.192"));
        assert!(o.package_note.starts_with("from /proc/version (\"#1 SMP"));
        assert!(
            o.upstream_note.starts_with(
                "6.1.192: the upstream release Debian 6.1.192-1 is based on (/proc/version"
            ),
            "{}",
            o.upstream_note
        );
        assert!(o.upstream_note.ends_with("uname -r says 6.1.0"));
    }

    #[test]
    fn debian_bookworm_612_trixie_and_bullseye() {
        let o = classify(Ok(BOOKWORM_612), None, v("6.12.117+deb12-cloud-amd64"));
        assert_eq!(
            o.package,
            package("Debian", "6.12.117-1~deb12u1", "6.12.117")
        );
        let o = classify(Ok(TRIXIE), None, v("6.12.107+deb13-cloud-amd64"));
        assert_eq!(o.package, package("Debian", "6.12.107-1", "6.12.107"));
        let o = classify(Ok(BULLSEYE_510), None, v("5.10.0-43-cloud-amd64"));
        assert_eq!(o.package, package("Debian", "5.10.251-5", "5.10.251"));
    }

    #[test]
    fn the_compilers_debian_is_not_the_kernels() {
        // A kernel built elsewhere with Debian's gcc: "Debian" only before the `#`.
        let text = "Linux version 6.6.58 (me@box) (gcc (Debian 12.2.0-14) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #3 SMP PREEMPT_DYNAMIC Mon Oct 28 10:00:00 UTC 2024\n";
        let o = classify(Ok(text), None, v("6.6.58"));
        assert_eq!(o.package, None);
        assert!(
            o.package_note
                .contains("names no package after its build number")
        );
        assert_eq!(
            o.upstream_note,
            "6.6.58, from uname -r: no distribution package names another"
        );
    }

    #[test]
    fn debian_version_shapes() {
        assert_eq!(debian_upstream("6.1.192-1"), v("6.1.192"));
        assert_eq!(debian_upstream("6.12.12-1~bpo12+1"), v("6.12.12"));
        assert_eq!(debian_upstream("1:6.6.51-1+rpt3"), v("6.6.51"));
        assert_eq!(debian_upstream("6.13~rc7-1~exp1"), v("6.13-rc7"));
        assert_eq!(debian_upstream("4.19.316-1"), v("4.19.316"));
        assert_eq!(debian_upstream("six-1"), None);
        assert_eq!(debian_upstream("6-1"), None);
    }

    #[test]
    fn ubuntu_signature_names_the_stable_base() {
        let o = classify(Ok(UBUNTU), Some(UBUNTU_SIG), v("5.15.0-91-generic"));
        assert_eq!(o.package, package("Ubuntu", "5.15.0-91.101", "5.15.131"));
        assert_eq!(
            o.package_note,
            "from /proc/version_signature (\"Ubuntu 5.15.0-91.101-generic 5.15.131\")"
        );
        assert!(
            o.upstream_note
                .starts_with("5.15.131: the upstream release Ubuntu 5.15.0-91.101")
        );
        // HWE and the arm64 64k flavour.
        let (p, up) = parse_version_signature("Ubuntu 6.5.0-14.14~22.04.1-generic 6.5.3").unwrap();
        assert_eq!(
            (p.version.as_str(), up),
            ("6.5.0-14.14~22.04.1", v("6.5.3"))
        );
        let (p, up) = parse_version_signature("Ubuntu 6.8.0-31.31-generic-64k 6.8.1").unwrap();
        assert_eq!((p.version.as_str(), up), ("6.8.0-31.31", v("6.8.1")));
        assert_eq!(parse_version_signature(""), None);
        assert_eq!(parse_version_signature("garbage"), None);
    }

    #[test]
    fn upstream_and_self_built_kernels_use_uname() {
        let o = classify(Ok(THIS_HOST), None, v("6.18.44-fc-v857"));
        assert_eq!(o.package, None);
        assert_eq!(
            o.package_note,
            "no distribution kernel package: /proc/version names no package after its build number (\"#1 SMP PREEMPT_DYNAMIC @0\") and there is no /proc/version_signature"
        );
        assert_eq!(
            o.upstream_note,
            "6.18.44, from uname -r: no distribution package names another"
        );
    }

    #[test]
    fn nixos_is_recognised_and_uses_uname() {
        let o = classify(Ok(NIXOS), None, v("6.12.44"));
        assert_eq!(o.package, None);
        assert!(
            o.package_note
                .contains("built by NixOS, whose kernels keep the upstream release in uname -r"),
            "{}",
            o.package_note
        );
        assert!(o.upstream_note.starts_with("6.12.44, from uname -r"));
    }

    #[test]
    fn unreadable_or_contradictory_text() {
        let o = classify(
            Err("read /proc/version: EACCES".into()),
            None,
            v("6.1.0-56"),
        );
        assert_eq!(o.package, None);
        assert_eq!(
            o.package_note,
            "no distribution kernel package: read /proc/version: EACCES; no /proc/version_signature"
        );
        assert!(o.upstream_note.starts_with("6.1.0, from uname -r"));
        // A package whose upstream disagrees with uname -r's major.minor is not trusted.
        let o = classify(Ok(BOOKWORM_61), None, v("6.12.0"));
        assert_eq!(o.package, package("Debian", "6.1.192-1", "none"));
        assert!(
            o.upstream_note.contains("not trusted"),
            "{}",
            o.upstream_note
        );
        // No version anywhere.
        let o = classify(Ok(THIS_HOST), None, None);
        assert!(o.upstream_note.starts_with("unknown"));
    }
}
