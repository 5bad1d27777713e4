//! `cargo xtask conformance --target vm` for real: Debian kernels (fetched by
//! `cargo xtask kernels`) booted under qemu with the static probe as init, judged
//! by the facts-conditioned `vm` matrix beside this host, and every way a guest
//! can fail ending in one line, exit 3, no qemu and no scratch folder left.
//!
//! Skipped, with the reason printed, where qemu, the kernels or the static-probe
//! targets are missing; `.ci/run` installs them and sets
//! `CONFORMANCE_REQUIRE_VM=1`, so in CI a missing piece fails instead.

use crate::support::{Needs, Test, TestResult, ensure, files_in, report_args, run_xtask};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const TESTS: &[(&str, Needs, Test)] = &[
    (
        "vm::bad_kernel_specs_are_one_line_before_any_boot",
        Needs::Nothing,
        bad_kernel_specs_are_one_line_before_any_boot,
    ),
    (
        "vm::the_kernel_matrix_side_by_side_with_this_host",
        Needs::VmMatrix,
        the_kernel_matrix_side_by_side_with_this_host,
    ),
    (
        "vm::netkit_and_geneve_faults_turn_red_in_a_6_12_guest",
        Needs::Vm612,
        netkit_and_geneve_faults_turn_red_in_a_6_12_guest,
    ),
    (
        "vm::an_image_and_its_modules_folder_boot_as_a_guest",
        Needs::Vm,
        an_image_and_its_modules_folder_boot_as_a_guest,
    ),
    (
        "vm::a_guest_whose_init_dies_is_one_line_exit_3",
        Needs::Vm,
        a_guest_whose_init_dies_is_one_line_exit_3,
    ),
    (
        "vm::a_guest_without_its_qemu_is_not_run_and_the_host_still_is",
        Needs::VmMatrix,
        a_guest_without_its_qemu_is_not_run_and_the_host_still_is,
    ),
    (
        "vm::a_hung_guest_is_stopped_at_the_timeout",
        Needs::Vm,
        a_hung_guest_is_stopped_at_the_timeout,
    ),
];

/// The kernels CI boots: (tracked name, arch, page size, major.minor).
pub const MATRIX: &[(&str, &str, u64, (u32, u32))] = &[
    ("5.10-amd64", "x86_64", 4096, (5, 10)),
    ("6.1-amd64", "x86_64", 4096, (6, 1)),
    ("6.12-amd64", "x86_64", 4096, (6, 12)),
    ("6.1-arm64", "aarch64", 4096, (6, 1)),
    ("6.12-arm64", "aarch64", 4096, (6, 12)),
    ("6.12-arm64-16k", "aarch64", 16384, (6, 12)),
];

/// The kernel with every device the checks use (netkit, geneve).
const FEATURE_KERNEL: &str = "6.12-amd64";

/// The kernel the failure tests boot.
const ONE_KERNEL: &str = "6.1-amd64";

/// The kernel cache `cargo xtask kernels` fills (suite/src/target/vm/kernel.rs).
fn cache() -> PathBuf {
    conformance_suite::target::vm::kernel::cache_dir()
}

fn cached(name: &str) -> bool {
    cache().join(name).join("kernel.json").is_file()
}

fn on_path(program: &str) -> bool {
    conformance_suite::target::find_on_path(program).is_some()
}

/// Whether the Rust standard library for `triple` is installed (a static probe
/// for a guest of that architecture is built with it).
fn rust_target(triple: &str) -> bool {
    let Ok(out) = Command::new("rustc").args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(triple)
        .join("lib")
        .is_dir()
}

/// `Some(why)` when this machine cannot boot the guests `kernels` name; `None`
/// always when CI requires them (a missing piece then fails the test).
pub fn vm_missing(kernels: &[&str], arches: &[&str]) -> Option<String> {
    if std::env::var("CONFORMANCE_REQUIRE_VM").as_deref() == Ok("1") {
        return None;
    }
    for arch in arches {
        let (qemu, package, triple) = match *arch {
            "aarch64" => (
                "qemu-system-aarch64",
                "qemu-system-arm",
                "aarch64-unknown-linux-musl",
            ),
            _ => (
                "qemu-system-x86_64",
                "qemu-system-x86",
                "x86_64-unknown-linux-musl",
            ),
        };
        if !on_path(qemu) {
            return Some(format!("no {qemu} (Debian: {package})"));
        }
        if !rust_target(triple) {
            return Some(format!(
                "no Rust target {triple} (rustup target add {triple})"
            ));
        }
    }
    let absent: Vec<&str> = kernels.iter().copied().filter(|k| !cached(k)).collect();
    if !absent.is_empty() {
        return Some(format!(
            "kernels not in {}: {} (cargo xtask kernels --fetch {})",
            cache().display(),
            absent.join(", "),
            absent.join(" ")
        ));
    }
    None
}

/// The matrix's needs: both architectures, six kernels, and root for the host beside.
pub fn matrix_missing() -> Option<String> {
    let names: Vec<&str> = MATRIX.iter().map(|m| m.0).collect();
    vm_missing(&names, &["x86_64", "aarch64"]).or_else(crate::support::missing_privileges)
}

/// The x86_64 6.12 kernel: netkit and geneve, which this machine's own kernel lacks.
pub fn kernel_612_missing() -> Option<String> {
    vm_missing(&[FEATURE_KERNEL], &["x86_64"])
}

/// One x86_64 kernel, and gcc for the stand-in inits.
pub fn one_missing() -> Option<String> {
    vm_missing(&[ONE_KERNEL], &["x86_64"]).or_else(|| {
        (!on_path("gcc")).then(|| "no gcc (the stand-in inits are built with it)".into())
    })
}

fn json(path: &Path) -> Result<Value, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("parse {}: {e}", path.display()))
}

/// The vm target's scratch folders in the temporary directory.
fn scratch_folders() -> Vec<String> {
    std::fs::read_dir(std::env::temp_dir())
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with("cilium-conformance-vm-"))
                .collect()
        })
        .unwrap_or_default()
}

/// qemu processes still running (any: the tests run one at a time).
fn qemu_processes() -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim().starts_with("qemu-system") {
            found.push(format!(
                "{} {}",
                entry.file_name().to_string_lossy(),
                comm.trim()
            ));
        }
    }
    found
}

/// Nothing of a guest outlives its run.
fn nothing_left(before: &[String]) -> TestResult {
    let qemu = qemu_processes();
    ensure(qemu.is_empty(), || format!("qemu still running: {qemu:?}"))?;
    let left: Vec<String> = scratch_folders()
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    ensure(left.is_empty(), || {
        format!("scratch folders left: {left:?}")
    })
}

fn bad_kernel_specs_are_one_line_before_any_boot() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let garbage = dir.path().join("linux-image-garbage.deb");
    std::fs::write(&garbage, b"not an ar archive").map_err(|e| e.to_string())?;
    let fake_image = dir.path().join("vmlinuz");
    // An x86 boot header ("HdrS" at 0x202) and nothing else: a kernel image by its
    // magic, with an empty modules folder beside it.
    let mut header = vec![0u8; 0x400];
    header[0x202..0x206].copy_from_slice(b"HdrS");
    std::fs::write(&fake_image, &header).map_err(|e| e.to_string())?;
    let modules = dir.path().join("lib/modules/6.1.0-test");
    std::fs::create_dir_all(modules.join("kernel/net")).map_err(|e| e.to_string())?;
    let image_spec = format!("{},{}", fake_image.display(), modules.display());
    let missing_deb = dir.path().join("absent.deb").display().to_string();
    // A well-formed package for an architecture no guest exists for.
    let armhf = dir.path().join("linux-image-armhf.deb");
    let pkg = dir.path().join("pkg");
    std::fs::create_dir_all(pkg.join("DEBIAN")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(pkg.join("boot")).map_err(|e| e.to_string())?;
    std::fs::write(
        pkg.join("DEBIAN/control"),
        "Package: linux-image-test-armmp\nVersion: 6.1.0-1\nArchitecture: armhf\nMaintainer: tests <t@example.invalid>\nDescription: a test package\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(pkg.join("boot/vmlinuz-6.1.0-test-armmp"), b"zImage")
        .map_err(|e| e.to_string())?;
    let built = on_path("dpkg-deb")
        && Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(&pkg)
            .arg(&armhf)
            .output()
            .is_ok_and(|o| o.status.success());
    if !built {
        eprintln!("vm: the armhf package case is skipped here: dpkg-deb --build is not available");
    }
    let empty_cache = dir.path().join("no-kernels");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        // With CONFORMANCE_KERNEL_CACHE pointing at an empty folder (below).
        (
            vec!["--target", "vm"],
            2,
            "no --kernel given and no kernel in",
        ),
        (
            vec!["--target", "vm", "--kernel", "no-such-kernel"],
            2,
            "no-such-kernel",
        ),
        (
            vec!["--target", "vm", "--kernel", &missing_deb],
            2,
            "absent.deb",
        ),
        (
            vec!["--target", "vm", "--kernel", garbage.to_str().unwrap()],
            3,
            "linux-image-garbage.deb",
        ),
        (vec!["--target", "vm", "--kernel", &image_spec], 3, "veth"),
        (
            vec!["--target", "vm", "--kernel", armhf.to_str().unwrap()],
            if built { 3 } else { 2 },
            if built {
                "armhf: no guest for it"
            } else {
                "linux-image-armhf.deb"
            },
        ),
        (
            vec!["--target", "vm", "--kernel", "x", "--vm-accel", "hvf"],
            2,
            "auto, tcg or kvm",
        ),
    ];
    for (args, code, needle) in cases {
        let mut all: Vec<String> = vec!["conformance".into()];
        all.extend(args.iter().map(|s| s.to_string()));
        all.extend(report_args(dir.path()));
        let (probe, xtask) = crate::support::binaries()?;
        let out = Command::new(xtask)
            .current_dir(crate::support::repo_root())
            .env("CONFORMANCE_KERNEL_CACHE", &empty_cache)
            .args(&all)
            .arg("--probe")
            .arg(probe)
            .output()
            .map_err(|e| format!("run xtask: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure(out.status.code() == Some(code), || {
            format!(
                "{args:?}: exit {:?}, want {code}: {stderr}",
                out.status.code()
            )
        })?;
        // clap adds "For more information, try '--help'." under its own usage errors.
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        ensure(errors.len() == 1 && errors[0].contains(needle), || {
            format!("{args:?}: want one line naming {needle}, got: {stderr}")
        })?;
    }
    let reports = files_in(dir.path())?;
    ensure(!reports.iter().any(|f| f == "run.json"), || {
        "a report was written for a run that never started".into()
    })
}

fn the_kernel_matrix_side_by_side_with_this_host() -> TestResult {
    let before = scratch_folders();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut args: Vec<String> = ["conformance", "--target", "lab,vm"]
        .map(String::from)
        .to_vec();
    for (name, ..) in MATRIX {
        args.push("--kernel".into());
        args.push(name.to_string());
    }
    args.extend(report_args(dir.path()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_xtask(&refs)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(out.status.code() == Some(0), || {
        format!("exit {:?}\n{stdout}\n{stderr}", out.status.code())
    })?;
    nothing_left(&before)?;
    let run = json(&dir.path().join("run.json"))?;
    let instances = run["instances"].as_array().ok_or("no instances")?;
    ensure(instances.len() == MATRIX.len() + 1, || {
        format!(
            "{} instances, want the host and {} guests",
            instances.len(),
            MATRIX.len()
        )
    })?;
    let verdicts = run["verdicts"].as_array().ok_or("no verdicts")?;
    let verdict = |instance: &str, check: &str, variant: &str| {
        verdicts
            .iter()
            .find(|v| {
                v["instance"].as_str() == Some(instance)
                    && v["check"] == check
                    && v["variant"] == variant
            })
            .and_then(|v| v["verdict"].as_str())
            .unwrap_or("absent")
            .to_string()
    };
    for (name, arch, page_size, (major, minor)) in MATRIX {
        let label = format!("vm/{name}");
        let inst = instances
            .iter()
            .find(|i| i["instance"]["kind"] == "vm" && i["instance"]["name"] == *name)
            .ok_or_else(|| format!("no instance {label} in run.json"))?;
        let facts = &inst["facts"];
        ensure(facts["arch"] == *arch, || {
            format!("{label}: arch {}", facts["arch"])
        })?;
        ensure(facts["page_size"] == *page_size, || {
            format!("{label}: page size {}", facts["page_size"])
        })?;
        ensure(
            facts["kernel"]["major"] == *major && facts["kernel"]["minor"] == *minor,
            || format!("{label}: kernel {}", facts["kernel"]),
        )?;
        ensure(facts["kernel_package"]["distribution"] == "Debian", || {
            format!("{label}: package {}", facts["kernel_package"])
        })?;
        let accel = facts["virtualization"]["vm_accel"].as_str().unwrap_or("");
        ensure(accel == "tcg" || accel == "kvm", || {
            format!("{label}: vm.accel {accel:?}")
        })?;
        let id = label.clone();
        let new = (*major, *minor) >= (6, 6);
        let unfixed = if (*major, *minor) == (5, 10) {
            "expected-fail"
        } else {
            "pass"
        };
        for (check, variant, want) in [
            (
                "tc.attach.tcx",
                "tcx",
                if new { "pass" } else { "unsupported" },
            ),
            (
                "datapath.stack-delivery",
                "tcx",
                if new { "pass" } else { "unsupported" },
            ),
            (
                "device.netkit",
                "l3",
                if new { "pass" } else { "unsupported" },
            ),
            (
                "device.netkit",
                "scrub",
                if new { "pass" } else { "unsupported" },
            ),
            ("datapath.stack-delivery", "legacy", "pass"),
            ("datapath.redirect-peer", "legacy", "pass"),
            (
                "datapath.redirect-peer.scrub",
                "default",
                // 5.10.y never got the CVE-2025-37959 fix; Debian's 6.1 and 6.12 have it.
                if (*major, *minor) == (5, 10) {
                    "expected-fail"
                } else {
                    "pass"
                },
            ),
            // The same fix seen on the state it resets: 5.10 carries the host's
            // conntrack entry, route and skb extension into the pod.
            ("datapath.redirect-peer.scrub.conntrack", "default", unfixed),
            ("datapath.redirect-peer.scrub.dst", "default", unfixed),
            ("datapath.redirect-peer.scrub.skb-ext", "default", unfixed),
            // The Cilium case: an IPsec secpath carried into the pod drops the packets (XfrmInNoPols).
            ("datapath.redirect-peer.scrub.xfrm", "default", unfixed),
            // Kept on purpose by the fix, and by unfixed kernels, which do not scrub at all.
            ("datapath.redirect-peer.scrub.mark", "default", "pass"),
            ("tunnel.vxlan", "no-frag", "pass"),
            // IPv6, attached with TCX where the kernel has it and legacy tc before.
            ("datapath.stack-delivery", "ipv6", "pass"),
            ("datapath.stack-delivery.redirect", "ipv6", "pass"),
            ("datapath.redirect-peer", "ipv6", "pass"),
            ("datapath.redirect-neigh", "ipv6", "pass"),
            ("datapath.fib-lookup", "ipv6", "pass"),
            ("socket-lb.connect", "tcp", "pass"),
        ] {
            let got = verdict(&id, check, variant);
            ensure(got == want, || {
                format!("{id}: {check}[{variant}] is {got}, want {want}")
            })?;
        }
    }
    let summary =
        std::fs::read_to_string(dir.path().join("summary.md")).map_err(|e| e.to_string())?;
    let header = summary
        .lines()
        .find(|l| l.starts_with("| Check") || l.starts_with("| check"))
        .ok_or("summary.md has no check table")?;
    for (name, ..) in MATRIX {
        ensure(header.contains(name), || {
            format!("the table's header lacks {name}: {header}")
        })?;
    }
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).map_err(|e| e.to_string())?;
    let suites = junit.matches("<testsuite ").count();
    ensure(suites == MATRIX.len() + 1, || {
        format!("{suites} JUnit testsuites")
    })
}

/// A static x86_64 program standing in for the probe as the guest's init.
fn stand_in_init(dir: &Path, body: &str) -> Result<PathBuf, String> {
    let src = dir.join("init.c");
    std::fs::write(&src, body).map_err(|e| e.to_string())?;
    let bin = dir.join("init");
    let out = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .map_err(|e| format!("run gcc: {e}"))?;
    ensure(out.status.success(), || {
        format!("gcc -static: {}", String::from_utf8_lossy(&out.stderr))
    })?;
    Ok(bin)
}

fn run_with_init(init: &Path, extra: &[&str]) -> Result<(Option<i32>, String), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (_, xtask) = crate::support::binaries()?;
    let mut cmd = Command::new(xtask);
    cmd.current_dir(crate::support::repo_root())
        .args([
            "conformance",
            "--target",
            "vm",
            "--kernel",
            ONE_KERNEL,
            "--vm-accel",
            "tcg",
        ])
        .arg("--probe")
        .arg(init)
        .args(extra)
        .args(report_args(dir.path()));
    let out = cmd.output().map_err(|e| format!("run xtask: {e}"))?;
    let reports = files_in(dir.path())?;
    ensure(reports.is_empty(), || {
        format!("reports written: {reports:?}")
    })?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn a_guest_whose_init_dies_is_one_line_exit_3() -> TestResult {
    let before = scratch_folders();
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    // Init exits at once: the kernel panics ("Attempted to kill init!").
    let init = stand_in_init(work.path(), "int main(void) { return 7; }\n")?;
    let (code, stderr) = run_with_init(&init, &[])?;
    ensure(code == Some(3), || format!("exit {code:?}: {stderr}"))?;
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    ensure(
        errors.len() == 1 && errors[0].contains("Kernel panic") && errors[0].contains(ONE_KERNEL),
        || format!("want one error line naming the panic and the kernel: {stderr}"),
    )?;
    nothing_left(&before)
}

fn a_hung_guest_is_stopped_at_the_timeout() -> TestResult {
    let before = scratch_folders();
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    // Init never writes a line and never ends.
    let init = stand_in_init(
        work.path(),
        "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n",
    )?;
    let (code, stderr) = run_with_init(&init, &["--timeout", "20"])?;
    ensure(code == Some(3), || format!("exit {code:?}: {stderr}"))?;
    ensure(
        stderr.contains("timed out") && stderr.contains(ONE_KERNEL),
        || format!("want the timeout and the kernel named: {stderr}"),
    )?;
    nothing_left(&before)
}

fn a_guest_without_its_qemu_is_not_run_and_the_host_still_is() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    // A PATH without qemu: the arm64 guest cannot start, the lab host beside it can.
    let empty_path = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (probe, xtask) = crate::support::binaries()?;
    let out = Command::new(xtask)
        .current_dir(crate::support::repo_root())
        .env("PATH", empty_path.path())
        .args(["conformance", "--target", "lab,vm", "--kernel", "6.1-arm64"])
        .arg("--probe")
        .arg(probe)
        .args(report_args(dir.path()))
        .output()
        .map_err(|e| format!("run xtask: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(out.status.code() == Some(0), || {
        format!("exit {:?}: {stderr}", out.status.code())
    })?;
    ensure(
        stderr.contains("vm/6.1-arm64: not run: no qemu-system-aarch64"),
        || format!("the skipped guest is not named with its reason: {stderr}"),
    )?;
    let run = json(&dir.path().join("run.json"))?;
    let verdicts = run["verdicts"].as_array().ok_or("no verdicts")?;
    let of = |label: &str| -> Vec<&Value> {
        verdicts.iter().filter(|v| v["instance"] == label).collect()
    };
    let guest = of("vm/6.1-arm64");
    ensure(
        guest.len() == crate::support::expected_observations()
            && guest.iter().all(|v| {
                v["verdict"] == "unsupported"
                    && v["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("qemu-system-aarch64"))
            }),
        || format!("the guest's verdicts: {guest:?}"),
    )?;
    let host_passes = of("lab/this host")
        .iter()
        .filter(|v| v["verdict"] == "pass")
        .count();
    ensure(host_passes > 0, || "the host beside it ran nothing".into())
}

/// The checks this machine's kernel cannot run (no netkit, no geneve built in) are
/// not blind either: in a 6.12 guest each of their faults turns exactly that
/// check's variants into regressions (exit 1), as `tests/e2e/faults.rs` shows for
/// the others on the host.
fn netkit_and_geneve_faults_turn_red_in_a_6_12_guest() -> TestResult {
    let mut wrong = Vec::new();
    for check in ["device.netkit", "tunnel.geneve"] {
        let spec = conformance_contract::find_check(check).ok_or("not in the catalogue")?;
        for fault in spec.faults {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let test = format!("^{}$", check.replace('.', "\\."));
            let fault_arg = format!("{check}={fault}");
            let mut args: Vec<String> = [
                "conformance",
                "--target",
                "vm",
                "--kernel",
                FEATURE_KERNEL,
                "--test",
                &test,
                "--fault",
                &fault_arg,
            ]
            .map(String::from)
            .to_vec();
            args.extend(report_args(dir.path()));
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = run_xtask(&refs)?;
            if out.status.code() != Some(1) {
                wrong.push(format!(
                    "--fault {fault_arg}: exit {:?}, want 1: {}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                ));
                continue;
            }
            let run = json(&dir.path().join("run.json"))?;
            let verdicts = run["verdicts"].as_array().ok_or("no verdicts")?;
            let red = verdicts
                .iter()
                .filter(|v| v["check"] == check && v["verdict"] == "regression")
                .count();
            if red != spec.variants.len() || verdicts.len() != spec.variants.len() {
                wrong.push(format!(
                    "--fault {fault_arg}: {red} of {} variants regressions, {} verdicts",
                    spec.variants.len(),
                    verdicts.len()
                ));
            }
        }
    }
    ensure(wrong.is_empty(), || wrong.join("\n"))
}

/// `--kernel IMAGE,MODULES_DIR`, as a team passes a kernel it built: the cached
/// 6.1 kernel's own image and modules folder, named by path, boot and pass.
fn an_image_and_its_modules_folder_boot_as_a_guest() -> TestResult {
    let folder = cache().join(ONE_KERNEL);
    let record = json(&folder.join("kernel.json"))?;
    let path = |key: &str| -> Result<String, String> {
        record[key]
            .as_str()
            .map(|p| folder.join(p).display().to_string())
            .ok_or_else(|| format!("kernel.json has no {key}"))
    };
    let spec = format!("{},{}", path("vmlinuz")?, path("modules_dir")?);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut args: Vec<String> = [
        "conformance",
        "--target",
        "vm",
        "--kernel",
        &spec,
        "--test",
        "^datapath\\.(stack-delivery|redirect-peer)$",
    ]
    .map(String::from)
    .to_vec();
    args.extend(report_args(dir.path()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_xtask(&refs)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(out.status.code() == Some(0), || {
        format!("exit {:?}: {stderr}", out.status.code())
    })?;
    let run = json(&dir.path().join("run.json"))?;
    let inst = &run["instances"][0];
    // Named by the release its modules folder is for.
    ensure(inst["instance"]["name"] == record["release"], || {
        format!("instance {}", inst["instance"])
    })?;
    ensure(inst["facts"]["kernel_release"] == record["release"], || {
        format!(
            "kernel {} in the guest, {} on disk",
            inst["facts"]["kernel_release"], record["release"]
        )
    })?;
    let passes = run["verdicts"]
        .as_array()
        .ok_or("no verdicts")?
        .iter()
        .filter(|v| v["verdict"] == "pass")
        .count();
    ensure(passes >= 2, || {
        format!("{passes} passes: {}", run["verdicts"])
    })
}
