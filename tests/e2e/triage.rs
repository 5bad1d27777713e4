//! `cargo xtask triage` as a user meets it: a lab run with a real injected fault
//! gives a bundle whose summary names the hop where the packets vanished and the
//! matching signature (the fault's program is a foreign one), with its tarball beside it; a small `--max-bytes` is respected and what it cut is listed;
//! a recorded run bundles to the same bytes twice and leaves planted secrets out;
//! bad input exits 2 with one line.

use crate::support::{Needs, Test, TestResult, binaries, ensure, repo_root, run_xtask};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const TESTS: &[(&str, Needs, Test)] = &[
    (
        "triage::fault_bundle_names_where_the_packets_vanished",
        Needs::Root,
        fault_bundle_names_where_the_packets_vanished,
    ),
    (
        "triage::a_small_cap_is_respected_and_its_cuts_listed",
        Needs::Root,
        a_small_cap_is_respected_and_its_cuts_listed,
    ),
    (
        "triage::a_recorded_run_bundles_reproducibly_without_secrets",
        Needs::Nothing,
        a_recorded_run_bundles_reproducibly_without_secrets,
    ),
    (
        "triage::bad_input_exits_2",
        Needs::Nothing,
        bad_input_exits_2,
    ),
    (
        "triage::a_run_that_cannot_finish_leaves_a_bundle_saying_why",
        Needs::Root,
        a_run_that_cannot_finish_leaves_a_bundle_saying_why,
    ),
    (
        "triage::explain_forwards_a_monitor_line",
        Needs::Nothing,
        explain_forwards_a_monitor_line,
    ),
];

const FAULT: &str = "datapath.stack-delivery=drop";

fn tmp() -> Result<tempfile::TempDir, String> {
    tempfile::tempdir().map_err(|e| e.to_string())
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))
}

/// Every file under `dir`, relative, with its bytes, sorted.
fn files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    fn walk(root: &Path, at: &Path, out: &mut Vec<(String, Vec<u8>)>) -> Result<(), String> {
        for entry in std::fs::read_dir(at).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                out.push((rel, std::fs::read(&path).map_err(|e| e.to_string())?));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

fn triage(args: &[&str]) -> Result<(Option<i32>, String), String> {
    let out = run_xtask(args)?;
    Ok((
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// The summary section of one row (up to the next row's heading).
fn section<'a>(summary: &'a str, heading: &str) -> Result<&'a str, String> {
    let at = summary
        .find(heading)
        .ok_or_else(|| format!("no row `{heading}` in SUMMARY.md:\n{summary}"))?;
    let rest = &summary[at..];
    let end = rest[1..].find("\n### ").map_or(rest.len(), |i| i + 1);
    Ok(&rest[..end])
}

fn fault_bundle_names_where_the_packets_vanished() -> TestResult {
    let tmp = tmp()?;
    let out = tmp.path().join("bundle");
    let out_s = out.display().to_string();
    let (code, output) = triage(&["triage", "--out", &out_s, "--env", "vm", "--fault", FAULT])?;
    ensure(code == Some(1), || {
        format!("exit {code:?}, want 1\n{output}")
    })?;
    let summary = read(&out.join("SUMMARY.md"))?;
    for variant in ["tcx", "legacy"] {
        let row = section(
            &summary,
            &format!("lab/this host · datapath.stack-delivery[{variant}] · regression"),
        )?;
        ensure(
            row.contains("- last seen: pod A sent 5/5\n- first missing: pod A eth0 tx 0/5\n"),
            || format!("the {variant} row does not name the hop:\n{row}"),
        )?;
        let folder = out.join(format!(
            "rows/lab-this-host/datapath.stack-delivery.{variant}"
        ));
        for file in [
            "hops.txt",
            "bpf.txt",
            "drops.txt",
            "kernel.txt",
            "namespaces/host.txt",
        ] {
            ensure(folder.join(file).is_file(), || {
                format!("no {file} in {}", folder.display())
            })?;
        }
        // The fault's drop program on pod A's eth0, which the check did not attach,
        // is what a foreign program on the path looks like: flagged, and named as
        // the matching signature of the row.
        let bpf = read(&folder.join("bpf.txt"))?;
        let fault_line = bpf
            .lines()
            .find(|l| l.starts_with("ns pod-a  dev eth0 ") && l.contains(" tcx egress "))
            .ok_or_else(|| format!("no program on pod A's eth0 egress:\n{bpf}"))?;
        ensure(
            fault_line.ends_with("FOREIGN (not attached by this suite)"),
            || bpf.clone(),
        )?;
        ensure(
            row.contains("(`foreign-program`): prog ")
                && row.contains(" on eth0 (tcx egress) in ns pod-a"),
            || format!("the {variant} row does not name the foreign program:\n{row}"),
        )?;
    }
    // The manifest lists every file of the folder with its size.
    let manifest = read(&out.join("MANIFEST.txt"))?;
    for (path, bytes) in files(&out)? {
        if path == "MANIFEST.txt" {
            continue;
        }
        ensure(
            manifest.contains(&format!("{}  {path}\n", bytes.len())),
            || {
                format!(
                    "MANIFEST.txt misses {path} ({} bytes):\n{manifest}",
                    bytes.len()
                )
            },
        )?;
    }
    ensure(manifest.contains("## cut by the caps (0)"), || {
        manifest.clone()
    })?;
    // The tarball is beside the folder and holds the same files.
    let tarball = tmp.path().join("bundle.tar.gz");
    let tar = Command::new("tar")
        .arg("-tzf")
        .arg(&tarball)
        .output()
        .map_err(|e| format!("run tar: {e}"))?;
    let listed = String::from_utf8_lossy(&tar.stdout);
    ensure(tar.status.success(), || {
        format!("tar -tzf failed: {listed}")
    })?;
    for (path, _) in files(&out)? {
        ensure(
            listed.lines().any(|l| l == format!("bundle/{path}")),
            || format!("bundle/{path} not in the tarball:\n{listed}"),
        )?;
    }
    ensure(output.contains("triage: building the bundle"), || {
        output.clone()
    })
}

fn a_small_cap_is_respected_and_its_cuts_listed() -> TestResult {
    let tmp = tmp()?;
    let out = tmp.path().join("small");
    let out_s = out.display().to_string();
    // Small next to run.json (about a megabyte), large enough that SUMMARY.md's
    // first row survives the header, which grows with the catalogue and with
    // the signatures a container's facts raise (a near-privileged CI container).
    let cap = 32768u64;
    let (code, output) = triage(&[
        "triage",
        "--out",
        &out_s,
        "--env",
        "vm",
        "--fault",
        FAULT,
        "--max-bytes",
        &cap.to_string(),
    ])?;
    ensure(code == Some(1), || {
        format!("exit {code:?}, want 1\n{output}")
    })?;
    let all = files(&out)?;
    let total: usize = all.iter().map(|(_, b)| b.len()).sum();
    ensure(total as u64 <= cap, || {
        format!("{total} bytes in the folder, cap {cap}")
    })?;
    let manifest = read(&out.join("MANIFEST.txt"))?;
    ensure(!manifest.contains("## cut by the caps (0)"), || {
        manifest.clone()
    })?;
    ensure(
        manifest.contains("run.json  (")
            && manifest.contains(&format!("did not fit --max-bytes {cap}")),
        || format!("run.json is not listed as cut:\n{manifest}"),
    )?;
    let summary = read(&out.join("SUMMARY.md"))?;
    ensure(
        summary.contains("- first missing: pod A eth0 tx 0/5"),
        || summary.clone(),
    )
}

/// Fakes assembled at run time, so that no scanner takes the source for a leak.
fn planted() -> (String, String, String) {
    (
        format!("ghp_{}", "E2eFakeT0ken".repeat(3)),
        "MIIEowIBAAKCAQEAe2eplantedkeymaterialonly".repeat(2),
        "e2e-user:e2e-pa55word".to_string(),
    )
}

fn planted_run(dir: &Path) -> Result<PathBuf, String> {
    let (token, key, _) = planted();
    let path = repo_root().join("fixtures/triage/lab-nix-2hd.json");
    let mut run: serde_json::Value =
        serde_json::from_str(&read(&path)?).map_err(|e| e.to_string())?;
    let v = run["verdicts"]
        .as_array_mut()
        .ok_or("no verdicts")?
        .iter_mut()
        .find(|v| v["check"] == "datapath.stack-delivery" && v["variant"] == "tcx")
        .ok_or("no stack-delivery[tcx]")?;
    v["observation"]["evidence"]["triage"]["namespaces"][0]["links"]
        .as_array_mut()
        .ok_or("no links")?
        .push(serde_json::json!(format!("7: x flags Up alias {token}")));
    let reason = format!(
        "{} -----BEGIN EC PRIVATE KEY-----\n{key}\n-----END EC PRIVATE KEY-----",
        v["reason"].as_str().unwrap_or_default()
    );
    v["reason"] = serde_json::json!(reason);
    let file = dir.join("run.json");
    std::fs::write(&file, run.to_string()).map_err(|e| e.to_string())?;
    Ok(file)
}

fn a_recorded_run_bundles_reproducibly_without_secrets() -> TestResult {
    let (_, xtask) = binaries()?;
    let tmp = tmp()?;
    let run = planted_run(tmp.path())?;
    let (token, key, userinfo) = planted();
    let mut bundles = Vec::new();
    for side in ["a", "b"] {
        let out = tmp.path().join(side).join("bundle");
        let output = Command::new(xtask)
            .current_dir(repo_root())
            .env(
                "DOCKER_HOST",
                format!("tcp://{userinfo}@docker.invalid:2376"),
            )
            .args(["triage", "--from"])
            .arg(&run)
            .arg("--out")
            .arg(&out)
            .output()
            .map_err(|e| format!("run xtask: {e}"))?;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        ensure(output.status.code() == Some(1), || {
            format!(
                "exit {:?}, want 1 (the run's regression)\n{stderr}",
                output.status.code()
            )
        })?;
        let mut all = files(&out)?;
        let tarball = std::fs::read(tmp.path().join(side).join("bundle.tar.gz"))
            .map_err(|e| e.to_string())?;
        // What the tarball holds, unpacked by the system's tar.
        let unpacked = tmp.path().join(side).join("unpacked");
        std::fs::create_dir_all(&unpacked).map_err(|e| e.to_string())?;
        let tar = Command::new("tar")
            .arg("-xzf")
            .arg(tmp.path().join(side).join("bundle.tar.gz"))
            .arg("-C")
            .arg(&unpacked)
            .status()
            .map_err(|e| format!("run tar: {e}"))?;
        ensure(tar.success(), || "tar -xzf failed".into())?;
        ensure(files(&unpacked.join("bundle"))? == all, || {
            "the tarball does not hold the folder's files".into()
        })?;
        for (path, bytes) in all.iter().chain(std::iter::once(&(
            "bundle.tar.gz".to_string(),
            tarball.clone(),
        ))) {
            let text = String::from_utf8_lossy(bytes);
            for secret in [token.as_str(), key.as_str(), "e2e-pa55word"] {
                ensure(!text.contains(secret), || {
                    format!("{secret} in {side}/{path}")
                })?;
            }
        }
        all.push(("bundle.tar.gz".into(), tarball));
        bundles.push(all);
    }
    ensure(bundles[0] == bundles[1], || {
        let differ: Vec<&str> = bundles[0]
            .iter()
            .zip(&bundles[1])
            .filter(|(a, b)| a != b)
            .map(|(a, _)| a.0.as_str())
            .collect();
        format!("two bundles of one run differ in {differ:?}")
    })?;
    let summary = String::from_utf8_lossy(
        &bundles[0]
            .iter()
            .find(|(p, _)| p == "SUMMARY.md")
            .ok_or("no SUMMARY.md")?
            .1,
    )
    .into_owned();
    ensure(
        summary.contains("(`stack-delivery-lost`)")
            && summary.contains("endpoint DOCKER_HOST: `tcp://[redacted]@docker.invalid:2376`"),
        || summary.clone(),
    )
}

fn bad_input_exits_2() -> TestResult {
    let tmp = tmp()?;
    let garbled = tmp.path().join("garbled.json");
    std::fs::write(&garbled, "{\"schema\": 2, \"verdicts\": [").map_err(|e| e.to_string())?;
    let missing = tmp.path().join("missing.json");
    let photos = tmp.path().join("photos");
    std::fs::create_dir(&photos).map_err(|e| e.to_string())?;
    std::fs::write(photos.join("cat.jpg"), "x").map_err(|e| e.to_string())?;
    let out = tmp.path().join("out").display().to_string();
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec![
                "--from".into(),
                garbled.display().to_string(),
                "--out".into(),
                out.clone(),
            ],
            format!("error: {}: not JSON", garbled.display()),
        ),
        (
            vec![
                "--from".into(),
                missing.display().to_string(),
                "--out".into(),
                out.clone(),
            ],
            format!("error: {}: ", missing.display()),
        ),
        (
            vec![
                "--out".into(),
                out.clone(),
                "--max-bytes".into(),
                "100".into(),
            ],
            "error: --max-bytes 100 is below".into(),
        ),
        (
            vec!["--out".into(), photos.display().to_string()],
            format!(
                "error: --out {}: exists and is neither empty nor an earlier triage bundle",
                photos.display()
            ),
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["triage".to_string()];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let (code, output) = triage(&refs)?;
        ensure(code == Some(2), || {
            format!("{all:?}: exit {code:?}, want 2\n{output}")
        })?;
        ensure(
            output.starts_with(&want) && output.lines().count() == 1,
            || format!("{all:?}: want one line starting `{want}`, got:\n{output}"),
        )?;
    }
    ensure(!Path::new(&out).exists(), || {
        "a bundle was written for bad input".into()
    })?;
    ensure(photos.join("cat.jpg").exists(), || {
        "the photos are gone".into()
    })
}

/// A probe that prints nothing (`/bin/false`): the run cannot finish, exit 3 with
/// the run's one-line error, and the bundle says why.
fn a_run_that_cannot_finish_leaves_a_bundle_saying_why() -> TestResult {
    let (_, xtask) = binaries()?;
    let tmp = tmp()?;
    let out = tmp.path().join("bundle");
    let output = Command::new(xtask)
        .current_dir(repo_root())
        .args([
            "triage",
            "--quick",
            "--env",
            "vm",
            "--probe",
            "/bin/false",
            "--out",
        ])
        .arg(&out)
        .output()
        .map_err(|e| format!("run xtask: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ensure(output.status.code() == Some(3), || {
        format!("exit {:?}, want 3\n{stderr}", output.status.code())
    })?;
    ensure(
        stderr
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("error: probe stream is empty")),
        || stderr.clone(),
    )?;
    let summary = read(&out.join("SUMMARY.md"))?;
    ensure(
        summary.contains("the run did not finish") && summary.contains("probe stream is empty"),
        || summary.clone(),
    )?;
    ensure(tmp.path().join("bundle.tar.gz").is_file(), || {
        "no tarball".into()
    })
}

/// `triage --explain LINE` is `explain LINE`: the same text, the same exit codes,
/// and no bundle (no `--out` needed).
fn explain_forwards_a_monitor_line() -> TestResult {
    let line = "-> stack flow 0x0 , identity 1234->host state new ifindex 0 orig-ip 0.0.0.0: 10.42.0.11:47474 -> 198.18.0.10:47474 udp";
    let (_, xtask) = binaries()?;
    let run = |args: &[&str]| {
        Command::new(xtask)
            .current_dir(repo_root())
            .args(args)
            .output()
            .map_err(|e| format!("run xtask: {e}"))
    };
    let via_triage = run(&["triage", "--explain", line])?;
    let direct = run(&["explain", line])?;
    ensure(via_triage.status.code() == Some(0), || {
        String::from_utf8_lossy(&via_triage.stderr).into_owned()
    })?;
    ensure(via_triage.stdout == direct.stdout, || {
        "triage --explain and explain print different text".into()
    })?;
    let text = String::from_utf8_lossy(&via_triage.stdout);
    ensure(text.contains("flow") && text.contains("0x0"), || {
        text.to_string()
    })?;
    let bad = run(&["triage", "--explain", "not a monitor line"])?;
    ensure(bad.status.code() == Some(2), || {
        format!("exit {:?} for a bad line", bad.status.code())
    })
}
