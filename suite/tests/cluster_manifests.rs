//! What `--target cluster --render-manifests DIR` writes (suite/src/cluster/manifests.rs):
//!
//! - `kubernetes-validate --strict` for Kubernetes 1.33 accepts every file (both
//!   placements), and rejects a broken copy (not blind). Counted as ignored, with
//!   the reason printed, where the tool is missing (CI installs it with pip);
//! - every file reads back as the object it was rendered from (YAML round trip);
//! - the files are named and ordered for `kubectl apply -f DIR`; a DIR that is
//!   a file fails in one line;
//! - insta snapshots of every file, for a fixed run id.

use conformance_suite::cluster::manifests::{
    DEFAULT_PROBE_IMAGE, KUBERNETES_VERSION, ManifestPlan, Placement, render_to, rendered,
};
use conformance_suite::cluster::yaml;
use conformance_suite::target::ProbeArgs;
use libtest_mimic::{Arguments, Failed, Trial};
use std::path::{Path, PathBuf};
use std::process::Command;

const TOOL: &str = "kubernetes-validate";

fn missing_tool() -> Option<String> {
    match Command::new(TOOL).arg("--version").output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "{TOOL} --version failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(_) => Some(format!(
            "{TOOL} is not installed (pip install kubernetes-validate; .ci/run pins it)"
        )),
    }
}

fn plan(placement: Placement) -> ManifestPlan {
    let args = ProbeArgs {
        run_id: "0123abcd".into(),
        // A node check and every pod-level check: the echoes, services and
        // (placeholder) clients are rendered too.
        checks: vec![
            "datapath.redirect-peer[tcx]".into(),
            "cluster.pod-to-pod".into(),
            "cluster.pod-to-host".into(),
            "cluster.host-to-pod".into(),
            "cluster.service".into(),
            "cluster.dns".into(),
            "cluster.stack-delivery".into(),
        ],
        ..ProbeArgs::default()
    };
    ManifestPlan::new("0123abcd", DEFAULT_PROBE_IMAGE, args.to_argv(), placement)
}

fn placements() -> Vec<(&'static str, Placement)> {
    vec![
        ("count", Placement::Count(3)),
        (
            "nodes",
            Placement::Nodes(vec![
                "k3d-cilium-conformance-server-0".into(),
                "k3d-cilium-conformance-agent-0".into(),
            ]),
        ),
    ]
}

fn render(placement: Placement) -> Result<(tempfile::TempDir, Vec<PathBuf>), Failed> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = dir.path().join("manifests");
    let files = render_to(&plan(placement), &out).map_err(|e| e.to_string())?;
    Ok((dir, files))
}

fn validate(files: &[PathBuf]) -> Result<(), String> {
    let version = format!("{KUBERNETES_VERSION}.0");
    let out = Command::new(TOOL)
        .args(["--strict", "--kubernetes-version", &version])
        .args(files)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{TOOL} --strict -k {version} rejected the manifests:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn kubernetes_validate() -> Result<(), Failed> {
    for (what, placement) in placements() {
        let (_dir, files) = render(placement)?;
        validate(&files).map_err(|e| format!("{what}: {e}"))?;
    }
    // Not blind: an unknown field, and a wrong type.
    let (dir, files) = render(Placement::Count(1))?;
    let ds = files
        .iter()
        .find(|f| f.to_string_lossy().contains("daemonset"))
        .ok_or("no DaemonSet file")?;
    let text = std::fs::read_to_string(ds).map_err(|e| e.to_string())?;
    let bad = dir.path().join("bad-field.yaml");
    std::fs::write(&bad, text.replace("hostNetwork:", "hostNetworking:"))
        .map_err(|e| e.to_string())?;
    if validate(std::slice::from_ref(&bad)).is_ok() {
        return Err(format!("{TOOL} --strict accepted hostNetworking").into());
    }
    let bad = dir.path().join("bad-type.yaml");
    std::fs::write(
        &bad,
        text.replace(
            "terminationGracePeriodSeconds: 5",
            "terminationGracePeriodSeconds: soon",
        ),
    )
    .map_err(|e| e.to_string())?;
    if validate(std::slice::from_ref(&bad)).is_ok() {
        return Err(format!("{TOOL} accepted terminationGracePeriodSeconds: soon").into());
    }
    Ok(())
}

fn round_trip() -> Result<(), Failed> {
    for (what, placement) in placements() {
        let manifests = rendered(&plan(placement.clone())).map_err(|e| e.to_string())?;
        let (_dir, files) = render(placement)?;
        if files.len() != manifests.len() {
            return Err(format!(
                "{what}: {} files for {} objects",
                files.len(),
                manifests.len()
            )
            .into());
        }
        for (file, m) in files.iter().zip(&manifests) {
            let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
            let docs =
                yaml::to_json(&file.display().to_string(), &text).map_err(|e| e.to_string())?;
            if docs != [m.to_json()] {
                return Err(
                    format!("{}: does not read back as {}", file.display(), m.label()).into(),
                );
            }
        }
    }
    Ok(())
}

fn file_names_and_errors() -> Result<(), Failed> {
    let (dir, files) = render(Placement::Count(2))?;
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    if sorted != names {
        return Err(format!("file names do not sort in apply order: {names:?}").into());
    }
    if names[0] != "00-namespace-cilium-conformance-0123abcd.yaml" || names.len() != 13 {
        return Err(format!("unexpected files: {names:?}").into());
    }
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").map_err(|e| e.to_string())?;
    let err = render_to(&plan(Placement::Count(1)), &file)
        .unwrap_err()
        .to_string();
    let want = format!(
        "--render-manifests {}: exists and is not a directory",
        file.display()
    );
    if err != want {
        return Err(format!("got `{err}`, want `{want}`").into());
    }
    Ok(())
}

fn snapshots() -> Result<(), Failed> {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| -> Result<(), Failed> {
        for (what, placement) in placements() {
            let (_dir, files) = render(placement)?;
            let mut all = String::new();
            for f in &files {
                let text = std::fs::read_to_string(f).map_err(|e| e.to_string())?;
                all.push_str(&format!(
                    "=== {}\n{text}",
                    f.file_name().unwrap().to_string_lossy()
                ));
            }
            insta::assert_snapshot!(format!("manifests_{what}"), all);
        }
        Ok(())
    })
}

fn main() {
    let args = Arguments::from_args();
    let missing = missing_tool();
    if let Some(why) = &missing {
        eprintln!("manifest validation test ignored: {why}");
    }
    let trials = vec![
        Trial::test(
            "manifests_pass_kubernetes_validate_strict_1_33",
            kubernetes_validate,
        )
        .with_ignored_flag(missing.is_some()),
        Trial::test("manifests_read_back_as_rendered", round_trip),
        Trial::test("manifest_files_and_errors", file_names_and_errors),
        Trial::test("snapshots", snapshots),
    ];
    libtest_mimic::run(&args, trials).exit();
}
