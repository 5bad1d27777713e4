//! Pure parsers for the kernel's text interfaces the facts come from
//! (`/proc/self/mountinfo`, `/proc/*/cgroup`, `/proc/cpuinfo`, `/proc/self/status`).
//! No I/O here: every function takes the text, so tests feed them samples.

/// One line of `/proc/self/mountinfo` (see proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Path inside the mounted filesystem that forms the mount's root
    /// (`/var/lib/docker/containers/<id>/hostname` for a bind mount).
    pub root: String,
    pub mount_point: String,
    /// Optional fields: `shared:N`, `master:N`, `propagate_from:N`, `unbindable`.
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
}

impl Mount {
    /// Mount propagation as Cilium cares about it: `shared` (also when the mount is
    /// both shared and a slave), `slave`, or `private` (no tag; `unbindable` is a
    /// private mount that also refuses bind mounts).
    pub fn propagation(&self) -> &'static str {
        if self.optional.iter().any(|f| f.starts_with("shared:")) {
            "shared"
        } else if self.optional.iter().any(|f| f.starts_with("master:")) {
            "slave"
        } else {
            "private"
        }
    }
}

/// Undoes the octal escapes (`\040` for a space, `\011`, `\012`, `\134`) the kernel
/// applies to paths in mountinfo.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo, skipping lines it cannot read.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_mount_line).collect()
}

fn parse_mount_line(line: &str) -> Option<Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    // id parent major:minor root mount_point options [optional...] - fstype source super_options
    let sep = fields.iter().position(|f| *f == "-")?;
    if sep < 6 || fields.len() < sep + 3 {
        return None;
    }
    Some(Mount {
        root: unescape(fields[3]),
        mount_point: unescape(fields[4]),
        optional: fields[6..sep].iter().map(|s| s.to_string()).collect(),
        fstype: fields[sep + 1].to_string(),
        source: unescape(fields[sep + 2]),
    })
}

/// `true` when `path` is `mount_point` or lies below it.
fn is_under(path: &str, mount_point: &str) -> bool {
    mount_point == "/"
        || path == mount_point
        || path
            .strip_prefix(mount_point)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The mount that `path` resolves to: the one with the longest mount point
/// containing it, and among mounts stacked on the same point the last listed
/// (the one on top).
pub fn mount_containing<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| is_under(path, &m.mount_point))
        .max_by_key(|(i, m)| (m.mount_point.len(), *i))
        .map(|(_, m)| m)
}

/// Whether a bpf filesystem is mounted at `/sys/fs/bpf`, and the propagation of
/// that mount (or of the mount holding the directory when none is there).
pub fn bpffs(mounts: &[Mount]) -> (bool, Option<String>) {
    const BPFFS: &str = "/sys/fs/bpf";
    let top = mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == BPFFS)
        .filter(|m| m.fstype == "bpf");
    match top {
        Some(m) => (true, Some(m.propagation().to_string())),
        None => (
            false,
            mount_containing(mounts, BPFFS).map(|m| m.propagation().to_string()),
        ),
    }
}

/// Mount point of the first cgroup v2 hierarchy.
pub fn cgroup2_mount(mounts: &[Mount]) -> Option<String> {
    mounts
        .iter()
        .find(|m| m.fstype == "cgroup2")
        .map(|m| m.mount_point.clone())
}

/// The `flags` (x86) or `Features` (arm64) of the first CPU in `/proc/cpuinfo`.
pub fn cpu_flags(cpuinfo: &str) -> Vec<String> {
    cpuinfo
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            matches!(key.trim(), "flags" | "Features")
                .then(|| value.split_whitespace().map(str::to_string).collect())
        })
        .unwrap_or_default()
}

/// A field of `/proc/<pid>/status` (`CapEff`, `NSpid`).
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

/// The paths of a `/proc/<pid>/cgroup` file (`hierarchy:controllers:path`).
pub fn cgroup_paths(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .collect()
}

fn is_hex_id(s: &str) -> bool {
    s.len() >= 12 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container runtime a cgroup path names, if any. Recognises the cgroupfs
/// layouts (`/docker/<id>`, `/lxc/<name>`, `/kubepods/...`) and the systemd ones
/// (`docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`,
/// `libpod-<id>.scope`). A pod path whose runtime it cannot tell gives `kubernetes`.
/// Daemon units (`/system.slice/docker.service`) do not count.
pub fn runtime_from_cgroup_path(path: &str) -> Option<&'static str> {
    let mut pod = false;
    let mut found = None;
    for segment in path.split('/') {
        let scope = segment.strip_suffix(".scope").unwrap_or(segment);
        let tagged = |prefix: &str| scope.strip_prefix(prefix).is_some_and(is_hex_id);
        if tagged("docker-") {
            found = Some("docker");
        } else if tagged("cri-containerd-") {
            found = Some("containerd");
        } else if tagged("crio-") || tagged("crio-conmon-") {
            found = Some("cri-o");
        } else if tagged("libpod-") || tagged("libpod-conmon-") {
            found = Some("podman");
        } else if segment.starts_with("lxc.payload") || segment.starts_with("lxc.monitor") {
            found = Some("lxc");
        } else if segment.starts_with("kubepods") {
            pod = true;
        }
    }
    if found.is_some() {
        return found;
    }
    // cgroupfs driver layouts: the runtime's directory then the container id.
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for pair in segments.windows(2) {
        match pair[0] {
            "docker" if is_hex_id(pair[1]) => return Some("docker"),
            "lxc" => return Some("lxc"),
            "libpod_parent" => return Some("podman"),
            _ => {}
        }
    }
    pod.then_some("kubernetes")
}

/// The container runtime that set up the mount namespace, from the files a
/// runtime bind-mounts over `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf`
/// (`.../containers/<id>/hostname` for Docker, `.../io.containerd.grpc.v1.cri/sandboxes/<id>/hostname`
/// for containerd's CRI, `.../overlay-containers/<id>/userdata/hostname` for podman
/// and CRI-O) and from lxcfs over `/proc`.
pub fn runtime_from_mounts(mounts: &[Mount]) -> Option<&'static str> {
    let kubelet = mounts.iter().any(|m| m.root.contains("/kubelet/pods/"));
    for m in mounts {
        if matches!(
            m.mount_point.as_str(),
            "/etc/hostname" | "/etc/hosts" | "/etc/resolv.conf"
        ) {
            let root = m.root.as_str();
            if root.contains("io.containerd.grpc.v1.cri/sandboxes/") || root.contains("/nerdctl/") {
                return Some("containerd");
            }
            if root.contains("/overlay-containers/") && root.contains("/userdata/") {
                return Some(if kubelet { "cri-o" } else { "podman" });
            }
            let parts: Vec<&str> = root.split('/').collect();
            if parts
                .windows(3)
                .any(|w| w[0] == "containers" && w[1].len() == 64 && is_hex_id(w[1]))
            {
                return Some("docker");
            }
        }
        if m.fstype == "fuse.lxcfs" && m.mount_point.starts_with("/proc/") {
            return Some("lxc");
        }
    }
    kubelet.then_some("kubernetes")
}

/// Paths an OCI runtime (runc, crun) masks by default: a booted system never has a
/// mount there.
const MASKED_PATHS: &[&str] = &[
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/latency_stats",
    "/proc/acpi",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Mounts a container runtime makes whatever its layout, which a booted system
/// (bare metal or VM, overlay root or not) does not: a file bind-mounted over
/// `/etc/hostname`, `/etc/hosts` or `/etc/resolv.conf`, or a mount over one of
/// the paths OCI runtimes mask. Describes the first one found.
pub fn container_mounts(mounts: &[Mount]) -> Option<String> {
    mounts.iter().find_map(|m| {
        let point = m.mount_point.as_str();
        if matches!(point, "/etc/hostname" | "/etc/hosts" | "/etc/resolv.conf") && m.root != "/" {
            Some(format!("{point} is bind-mounted from {}", m.root))
        } else if MASKED_PATHS.contains(&point) {
            Some(format!("{point} is masked ({} mount)", m.fstype))
        } else {
            None
        }
    })
}

/// The first line of a verifier log that says why a program was rejected: the
/// last line before the statistics the verifier appends.
pub fn verifier_summary(log: &str) -> Option<String> {
    log.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .rfind(|l| {
            !(l.starts_with("processed ")
                || l.starts_with("verification time")
                || l.starts_with("stack depth")
                || l.starts_with("-- ")
                || l.starts_with("func#"))
        })
        .map(str::to_string)
}

/// Splits a NUL-separated string list (device tree `compatible`).
pub fn nul_list(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The OEM ID (bytes 10..16) of an ACPI table header, trimmed (`FIRECK`, `BOCHS`).
pub fn acpi_oem_id(table: &[u8]) -> Option<String> {
    let id = table.get(10..16)?;
    let id = String::from_utf8_lossy(id)
        .trim_end_matches(['\0', ' '])
        .to_string();
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine (a Firecracker VM), trimmed: bpffs not mounted, `/sys` private,
    /// docker's data root a shared bind.
    const HOST_MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334460k,nr_inodes=3083615,mode=755
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 - ext4 /dev/vda rw,discard
";

    /// A Docker 20.10 container on this machine (cgroup v1, fuse-overlayfs).
    const DOCKER_MOUNTINFO: &str = "\
69 45 0:39 / / rw,nodev,noatime master:2 - fuse.fuse-overlayfs fuse-overlayfs rw,user_id=0,group_id=0
70 69 0:41 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
73 69 0:44 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
74 73 0:45 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
75 74 0:29 /docker/79cffb68fe42c4b17bf58e7e5389fccd276524f45d888f5dc60d519d86f89c35 /sys/fs/cgroup/cpu ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu
86 69 254:0 /var/lib/docker/containers/79cffb68fe42c4b17bf58e7e5389fccd276524f45d888f5dc60d519d86f89c35/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda rw,discard
87 69 254:0 /var/lib/docker/containers/79cffb68fe42c4b17bf58e7e5389fccd276524f45d888f5dc60d519d86f89c35/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw,discard
88 69 254:0 /var/lib/docker/containers/79cffb68fe42c4b17bf58e7e5389fccd276524f45d888f5dc60d519d86f89c35/hosts /etc/hosts rw,relatime - ext4 /dev/vda rw,discard
53 73 0:48 / /sys/firmware ro,relatime - tmpfs tmpfs ro
";

    /// The same container's `/proc/1/cgroup`.
    const DOCKER_CGROUP_V1: &str = "\
9:name=systemd:/docker/79cffb68fe42c4b17bf58e7e5389fccd276524f45d888f5dc60d519d86f89c35
8:pids:/docker/79cffb68fe42c4b17bf58e7e5389fccd276524f45d888f5dc60d519d86f89c35
4:memory:/docker/79cffb68fe42c4b17bf58e7e5389fccd276524f45d888f5dc60d519d86f89c35
0::/docker/79cffb68fe42c4b17bf58e7e5389fccd276524f45d888f5dc60d519d86f89c35
";

    /// A k3d node (privileged Docker container) that mounted its own bpffs and made
    /// it shared, with cgroup v2 and a private cgroup namespace (path `/`).
    const K3D_NODE_MOUNTINFO: &str = "\
500 400 0:60 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/a,upperdir=/b,workdir=/c
501 500 0:61 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
502 501 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw
503 501 0:62 / /sys/fs/bpf rw,relatime shared:300 - bpf bpf rw
504 500 8:1 /var/lib/docker/containers/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef/hostname /etc/hostname rw,relatime - ext4 /dev/sda1 rw
";

    #[test]
    fn mountinfo_fields_and_escapes() {
        let mounts = parse_mountinfo(
            "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\nnot a mount line\n",
        );
        assert_eq!(mounts.len(), 1);
        let m = &mounts[0];
        assert_eq!(m.root, "/mnt1");
        assert_eq!(m.mount_point, "/mnt/with space");
        assert_eq!(m.optional, vec!["master:1", "shared:7"]);
        assert_eq!(m.fstype, "ext3");
        assert_eq!(m.source, "/dev/root");
        assert_eq!(m.propagation(), "shared");
    }

    #[test]
    fn bpffs_not_mounted_reports_the_parent_mount() {
        let mounts = parse_mountinfo(HOST_MOUNTINFO);
        assert_eq!(bpffs(&mounts), (false, Some("private".into())));
        assert_eq!(
            mount_containing(&mounts, "/sys/fs/bpf")
                .unwrap()
                .mount_point,
            "/sys"
        );
        assert_eq!(
            mount_containing(&mounts, "/var/lib/docker/x")
                .unwrap()
                .propagation(),
            "shared"
        );
        // A prefix that is not a path component does not count.
        assert_eq!(
            mount_containing(&mounts, "/system").unwrap().mount_point,
            "/"
        );
    }

    #[test]
    fn bpffs_mounted_shared_slave_private() {
        let mounts = parse_mountinfo(K3D_NODE_MOUNTINFO);
        assert_eq!(bpffs(&mounts), (true, Some("shared".into())));
        let slave = parse_mountinfo(
            "23 27 0:22 / /sys rw - sysfs sysfs rw\n90 23 0:70 / /sys/fs/bpf rw master:12 - bpf bpf rw\n",
        );
        assert_eq!(bpffs(&slave), (true, Some("slave".into())));
        let private = parse_mountinfo(
            "23 27 0:22 / /sys rw shared:4 - sysfs sysfs rw\n90 23 0:70 / /sys/fs/bpf rw - bpf none rw\n",
        );
        assert_eq!(bpffs(&private), (true, Some("private".into())));
        // A tmpfs stacked on top of a bpffs hides it.
        let hidden = parse_mountinfo(
            "23 27 0:22 / /sys rw - sysfs sysfs rw\n90 23 0:70 / /sys/fs/bpf rw shared:5 - bpf bpf rw\n91 90 0:71 / /sys/fs/bpf rw - tmpfs tmpfs rw\n",
        );
        assert_eq!(bpffs(&hidden), (false, Some("private".into())));
        assert_eq!(bpffs(&[]), (false, None));
    }

    #[test]
    fn cgroup2_mount_point() {
        assert_eq!(
            cgroup2_mount(&parse_mountinfo(HOST_MOUNTINFO)).as_deref(),
            Some("/sys/fs/cgroup/unified")
        );
        assert_eq!(
            cgroup2_mount(&parse_mountinfo(K3D_NODE_MOUNTINFO)).as_deref(),
            Some("/sys/fs/cgroup")
        );
        assert_eq!(cgroup2_mount(&parse_mountinfo(DOCKER_MOUNTINFO)), None);
    }

    #[test]
    fn cpuinfo_flags_x86_and_arm64() {
        let x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu vme sse2 hypervisor lahf_lm svm\nbugs\t\t: spectre_v1\n\nprocessor\t: 1\nflags\t\t: other\n";
        let flags = cpu_flags(x86);
        assert!(flags.iter().any(|f| f == "hypervisor"));
        assert!(flags.iter().any(|f| f == "svm"));
        assert!(!flags.iter().any(|f| f == "other"));
        let arm = "processor\t: 0\nBogoMIPS\t: 48.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\nCPU implementer\t: 0x61\n";
        assert!(cpu_flags(arm).iter().any(|f| f == "asimd"));
        assert!(cpu_flags("").is_empty());
    }

    #[test]
    fn status_cap_eff() {
        let status = "Name:\tprobe\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
        assert_eq!(status_field(status, "CapEff"), Some("000001fffeffffff"));
        assert_eq!(status_field(status, "CapBnd"), None);
    }

    #[test]
    fn cgroup_paths_to_runtime() {
        let docker: Vec<_> = cgroup_paths(DOCKER_CGROUP_V1)
            .into_iter()
            .map(runtime_from_cgroup_path)
            .collect();
        assert!(docker.iter().all(|r| *r == Some("docker")), "{docker:?}");
        let cases = [
            // This VM's pid 1, and a cgroup namespace: nothing to see.
            ("/", None),
            // Host processes in daemon units are not containers.
            ("/system.slice/docker.service", None),
            ("/system.slice/containerd.service", None),
            ("/user.slice/user-0.slice/session-1.scope", None),
            (
                "/system.slice/docker-79cffb68fe42c4b17bf58e7e5389fccd276524f45d888f5dc60d519d86f89c35.scope",
                Some("docker"),
            ),
            (
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod5d1e3c52_0a4b_4c1e_9f7e_3b0f2a1d9c11.slice/cri-containerd-4f1c2a9b8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170605f4e3.scope",
                Some("containerd"),
            ),
            (
                "/kubepods/burstable/pod5d1e3c52-0a4b-4c1e-9f7e-3b0f2a1d9c11/4f1c2a9b8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170605f4e3",
                Some("kubernetes"),
            ),
            (
                "/kubepods.slice/kubepods-pod1.slice/crio-4f1c2a9b8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170605f4e3.scope",
                Some("cri-o"),
            ),
            (
                "/machine.slice/libpod-4f1c2a9b8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170605f4e3.scope/container",
                Some("podman"),
            ),
            ("/lxc.payload.c1", Some("lxc")),
            ("/lxc/c1", Some("lxc")),
        ];
        for (path, want) in cases {
            assert_eq!(runtime_from_cgroup_path(path), want, "{path}");
        }
    }

    #[test]
    fn mounts_to_runtime() {
        assert_eq!(
            runtime_from_mounts(&parse_mountinfo(DOCKER_MOUNTINFO)),
            Some("docker")
        );
        assert_eq!(
            runtime_from_mounts(&parse_mountinfo(K3D_NODE_MOUNTINFO)),
            Some("docker")
        );
        // The host runs docker but is not in a container.
        assert_eq!(runtime_from_mounts(&parse_mountinfo(HOST_MOUNTINFO)), None);
        let k3s_pod = "\
900 800 0:90 / / rw,relatime - overlay overlay rw,lowerdir=/x
901 900 8:1 /var/lib/kubelet/pods/5d1e3c52-0a4b-4c1e-9f7e-3b0f2a1d9c11/etc-hosts /etc/hosts rw,relatime - ext4 /dev/sda1 rw
902 900 8:1 /var/lib/rancher/k3s/agent/containerd/io.containerd.grpc.v1.cri/sandboxes/4f1c2a9b8e7d/hostname /etc/hostname rw,relatime - ext4 /dev/sda1 rw
";
        assert_eq!(
            runtime_from_mounts(&parse_mountinfo(k3s_pod)),
            Some("containerd")
        );
        let podman = "\
900 800 0:90 / / rw,relatime - overlay overlay rw,lowerdir=/x
902 900 0:25 /containers/storage/overlay-containers/4f1c2a9b8e7d6c5b/userdata/hostname /etc/hostname rw - tmpfs tmpfs rw
";
        assert_eq!(
            runtime_from_mounts(&parse_mountinfo(podman)),
            Some("podman")
        );
        let lxc = "\
900 800 0:90 / / rw,relatime - zfs default/containers/c1 rw
903 900 0:50 /proc/cpuinfo /proc/cpuinfo rw,nosuid,nodev,relatime - fuse.lxcfs lxcfs rw
";
        assert_eq!(runtime_from_mounts(&parse_mountinfo(lxc)), Some("lxc"));
    }

    #[test]
    fn runtime_neutral_container_mounts() {
        // This host (a Firecracker VM with Docker installed): nothing.
        let host = parse_mountinfo(
            "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n28 27 0:5 / /proc rw - proc proc rw\n29 27 0:6 / /sys/firmware/efi/efivars rw - efivarfs efivarfs rw\n",
        );
        assert_eq!(container_mounts(&host), None);
        // A VM whose /etc/resolv.conf is a mount of its own filesystem's root is no bind.
        let vm = parse_mountinfo(
            "1 0 0:39 / / rw - overlay overlay rw\n2 1 0:40 / /etc/resolv.conf rw - tmpfs tmpfs rw\n",
        );
        assert_eq!(container_mounts(&vm), None);
        let bound = parse_mountinfo(
            "1 0 0:39 / / rw - overlay overlay rw\n2 1 254:0 /var/lib/kubelet/pods/5d1e/etc-hosts /etc/hosts rw - ext4 /dev/vda rw\n",
        );
        assert_eq!(
            container_mounts(&bound).as_deref(),
            Some("/etc/hosts is bind-mounted from /var/lib/kubelet/pods/5d1e/etc-hosts")
        );
        let masked = parse_mountinfo(
            "1 0 0:39 / / rw - overlay overlay rw\n3 1 0:41 / /sys/firmware ro - tmpfs tmpfs ro\n",
        );
        assert_eq!(
            container_mounts(&masked).as_deref(),
            Some("/sys/firmware is masked (tmpfs mount)")
        );
    }

    #[test]
    fn verifier_log_summary() {
        let log = "0: R1=ctx() R10=fp0\n; return bpf_unknown(); @ helpers.c:24\n0: (85) call unknown#999\ninvalid func unknown#999\nprocessed 1 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n";
        assert_eq!(
            verifier_summary(log).as_deref(),
            Some("invalid func unknown#999")
        );
        assert_eq!(verifier_summary("\n\n"), None);
    }

    #[test]
    fn device_tree_and_acpi() {
        // qemu -M virt on arm64 (direct kernel boot, no firmware).
        assert_eq!(nul_list(b"linux,dummy-virt\0"), vec!["linux,dummy-virt"]);
        assert_eq!(
            nul_list(b"xen,xen-4.17\0xen,xen\0"),
            vec!["xen,xen-4.17", "xen,xen"]
        );
        // First bytes of this machine's FACP table.
        let facp = b"FACP\x14\x01\x00\x00\x06\x66FIRECKFCVMFADT";
        assert_eq!(acpi_oem_id(facp).as_deref(), Some("FIRECK"));
        assert_eq!(
            acpi_oem_id(b"FACP\x14\x01\x00\x00\x06\x66BOCHS BXPC    ").as_deref(),
            Some("BOCHS")
        );
        assert_eq!(acpi_oem_id(b"short"), None);
    }
}
