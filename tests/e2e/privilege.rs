//! The lab target when the suite is not root: without sudo rights it says which
//! privilege is missing (exit 2); with passwordless sudo it runs only the probe
//! through `sudo -n` and the run passes. The test harness itself, started without
//! root or without the capabilities, counts its privileged tests as ignored and says
//! which one is missing.

use crate::support::{Needs, Test, TestResult, binaries, ensure, repo_root, report_args};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const TESTS: &[(&str, Needs, Test)] = &[
    (
        "privilege::not_root_says_what_is_missing",
        Needs::Root,
        not_root_says_what_is_missing,
    ),
    (
        "privilege::harness_without_privilege_ignores_with_the_reason",
        Needs::Root,
        harness_without_privilege_ignores_with_the_reason,
    ),
    (
        "privilege::not_root_with_sudo_runs_the_probe_through_sudo",
        Needs::RootInCi,
        not_root_with_sudo_runs_the_probe_through_sudo,
    ),
];

/// Copies of the binaries and the vm matrix in a world-writable folder, so an
/// unprivileged user can run them and write reports there.
struct Unprivileged {
    dir: tempfile::TempDir,
    probe: PathBuf,
    xtask: PathBuf,
    matrix: PathBuf,
}

impl Unprivileged {
    fn new() -> Result<Self, String> {
        let (probe, xtask) = binaries()?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let copy = |from: &Path, name: &str| -> Result<PathBuf, String> {
            let to = dir.path().join(name);
            std::fs::copy(from, &to).map_err(|e| format!("copy {}: {e}", from.display()))?;
            Ok(to)
        };
        let probe = copy(probe, "probe")?;
        let xtask = copy(xtask, "xtask")?;
        let matrix = copy(&repo_root().join("fixtures/matrix/vm.toml"), "vm.toml")?;
        let status = Command::new("chmod")
            .arg("-R")
            .arg("a+rwx")
            .arg(dir.path())
            .status()
            .map_err(|e| e.to_string())?;
        ensure(status.success(), || "chmod failed".into())?;
        Ok(Self {
            dir,
            probe,
            xtask,
            matrix,
        })
    }

    /// Runs `xtask conformance` as `uid:gid` with reports in the folder.
    fn conformance_as(&self, uid: u32, gid: u32) -> Result<Output, String> {
        Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .args(["--clear-groups", "--"])
            .arg(&self.xtask)
            .current_dir(self.dir.path())
            .args(["conformance", "--matrix"])
            .arg(&self.matrix)
            .arg("--probe")
            .arg(&self.probe)
            .args(report_args(self.dir.path()))
            .output()
            .map_err(|e| format!("setpriv: {e}"))
    }
}

fn not_root_says_what_is_missing() -> TestResult {
    let setup = Unprivileged::new()?;
    let out = setup.conformance_as(65534, 65534)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(out.status.code() == Some(2), || {
        format!("exit {:?}: {stderr}", out.status.code())
    })?;
    ensure(
        stderr.lines().count() == 1 && stderr.contains("root") && stderr.contains("CAP_SYS_ADMIN"),
        || stderr.to_string(),
    )
}

const SUDO_USER: &str = "ccconf-sudo-test";
const SUDOERS: &str = "/etc/sudoers.d/ccconf-sudo-test";

/// A throwaway user allowed passwordless sudo; removed again on drop.
struct SudoUser {
    uid: u32,
    gid: u32,
}

impl SudoUser {
    fn create() -> Result<Self, String> {
        let _ = Command::new("userdel").arg(SUDO_USER).output();
        let out = Command::new("useradd")
            .args([
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SUDO_USER,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        ensure(out.status.success(), || {
            format!("useradd: {}", String::from_utf8_lossy(&out.stderr))
        })?;
        let user = SudoUser {
            uid: id("-u")?,
            gid: id("-g")?,
        };
        std::fs::write(SUDOERS, format!("{SUDO_USER} ALL=(root) NOPASSWD: ALL\n"))
            .map_err(|e| e.to_string())?;
        let status = Command::new("chmod")
            .args(["0440", SUDOERS])
            .status()
            .map_err(|e| e.to_string())?;
        ensure(status.success(), || "chmod sudoers".into())?;
        Ok(user)
    }
}

fn id(flag: &str) -> Result<u32, String> {
    let out = Command::new("id")
        .args([flag, SUDO_USER])
        .output()
        .map_err(|e| e.to_string())?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("id {flag}: {e}"))
}

impl Drop for SudoUser {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(SUDOERS);
        let _ = Command::new("userdel").arg(SUDO_USER).output();
    }
}

fn not_root_with_sudo_runs_the_probe_through_sudo() -> TestResult {
    let setup = Unprivileged::new()?;
    let user = SudoUser::create()?;
    let out = setup.conformance_as(user.uid, user.gid)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(out.status.code() == Some(0), || {
        format!("exit {:?}: {stderr}", out.status.code())
    })?;
    let text =
        std::fs::read_to_string(setup.dir.path().join("run.json")).map_err(|e| e.to_string())?;
    let run: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let version = run["probe"]["version"].as_str().unwrap_or_default();
    ensure(version.contains("started sudo"), || {
        format!("probe version: {version}")
    })?;
    ensure(
        run["counts"]["pass"].as_u64().unwrap_or_default()
            + run["counts"]["expected_fail"].as_u64().unwrap_or_default()
            + run["counts"]["unsupported"].as_u64().unwrap_or_default()
            == run["counts"]["total"].as_u64().unwrap_or(u64::MAX)
            && run["counts"]["expected_fail"] == crate::support::expected_fail_count()
            && run["counts"]["unsupported"] == crate::support::unsupported_count()
            && run["counts"]["total"] == crate::support::expected_observations(),
        || format!("counts: {}", run["counts"]),
    )
}

/// Runs a copy of this test binary through `setpriv <how>` on one privileged test and
/// returns (exit code, stdout, stderr).
fn harness_as(how: &[&str]) -> Result<(Option<i32>, String, String), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let copy = dir.path().join("e2e");
    std::fs::copy(&exe, &copy).map_err(|e| format!("copy {}: {e}", exe.display()))?;
    let status = Command::new("chmod")
        .arg("-R")
        .arg("a+rx")
        .arg(dir.path())
        .status()
        .map_err(|e| e.to_string())?;
    ensure(status.success(), || "chmod failed".into())?;
    let out = Command::new("setpriv")
        .args(how)
        .arg("--")
        .arg(&copy)
        .args(["lab::stream_is_complete_and_ordered", "--exact"])
        .current_dir(dir.path())
        .output()
        .map_err(|e| format!("setpriv: {e}"))?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Not root, and root without CAP_SYS_ADMIN: the privileged test is ignored (never
/// passed, never failed) and one line names what is missing.
fn harness_without_privilege_ignores_with_the_reason() -> TestResult {
    let cases: [(&[&str], &[&str]); 2] = [
        (
            &["--reuid=65534", "--regid=65534", "--clear-groups"],
            &["not root", "65534"],
        ),
        (
            &["--bounding-set=-sys_admin", "--inh-caps=-all"],
            &["without the capabilities", "CAP_SYS_ADMIN"],
        ),
    ];
    for (how, needles) in cases {
        let (code, stdout, stderr) = harness_as(how)?;
        ensure(code == Some(0), || {
            format!("{how:?}: exit {code:?}\n{stdout}\n{stderr}")
        })?;
        ensure(stdout.contains("0 passed; 0 failed; 1 ignored"), || {
            format!("{how:?}: the privileged test was not ignored:\n{stdout}")
        })?;
        let said: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("ignored here"))
            .collect();
        ensure(
            said.len() == 1 && needles.iter().all(|n| said[0].contains(n)),
            || format!("{how:?}: want one line naming {needles:?}, got:\n{stderr}"),
        )?;
    }
    Ok(())
}
