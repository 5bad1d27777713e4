//! The GitHub workflows in `.github/workflows/` pass offline linters, and the project's
//! own structural rules:
//!
//! - `check-jsonschema --builtin-schema vendor.github-workflows` (the workflow schema) and
//!   `--builtin-schema custom.github-workflows-require-timeout` (every job has a timeout);
//! - `zizmor --offline --persona pedantic` (template injection, credentials persisted by
//!   checkout, unpinned actions, excessive or undocumented permissions, ...);
//! - structure (the YAML read by python3's `yaml` or `ruamel.yaml`): every job and every
//!   step has a `name` and a `timeout-minutes`, every `uses:` is pinned by a 40-hex commit
//!   with the version in a comment beside it, no `${{` inside a `run:` script (untrusted
//!   values go through `env:`), every bash script parses (`bash -n`), permissions are
//!   declared; and `conformance.yml` is the Hetzner gate the README describes.
//!
//! Each linter is first shown to reject a workflow that breaks its rules, so a linter that
//! silently checks nothing cannot pass. Where a linter (or python3 with a YAML module) is
//! not installed, its tests print one line saying why and are counted as ignored, never
//! as passed. `.ci/run` installs the pinned versions (pip).

use libtest_mimic::{Arguments, Trial};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

type TestResult = Result<(), String>;
/// One test's body, run by the harness.
type Body = Box<dyn FnOnce() -> TestResult + Send>;

/// The versions `.ci/run` installs and these tests were written against.
const CHECK_JSONSCHEMA: &str = "check-jsonschema==0.39.0";
const ZIZMOR: &str = "zizmor==1.32.0";
const SCHEMAS: [&str; 2] = [
    "vendor.github-workflows",
    "custom.github-workflows-require-timeout",
];

/// Reads a YAML file and prints it as JSON: PyYAML where present, else ruamel.yaml (which
/// check-jsonschema brings along).
const YAML_TO_JSON: &str = r#"
import json, sys
try:
    import yaml
    load = yaml.safe_load
except ImportError:
    from ruamel.yaml import YAML
    load = YAML(typ="safe", pure=True).load
with open(sys.argv[1], encoding="utf-8") as f:
    doc = load(f)
json.dump(doc, sys.stdout, default=str)
"#;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn workflows_dir() -> PathBuf {
    repo_root().join(".github/workflows")
}

/// Every workflow file, sorted.
fn workflow_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workflows_dir())
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

// ---- which tools are here ---------------------------------------------------------------

/// `Some(why)` when `program --version` cannot run.
fn missing_program(program: &str, install: &str) -> Option<String> {
    match Command::new(program).arg("--version").output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`{program} --version` exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(_) => Some(format!("{program} is not installed ({install})")),
    }
}

fn missing_check_jsonschema() -> Option<String> {
    missing_program(
        "check-jsonschema",
        &format!("pip install {CHECK_JSONSCHEMA}"),
    )
}

fn missing_zizmor() -> Option<String> {
    missing_program("zizmor", &format!("pip install {ZIZMOR}"))
}

fn missing_yaml() -> Option<String> {
    match Command::new("python3")
        .args(["-c", "import importlib.util as u, sys; sys.exit(0 if u.find_spec('yaml') or u.find_spec('ruamel') else 1)"])
        .output()
    {
        Ok(out) if out.status.success() => None,
        Ok(_) => Some(
            "python3 has neither yaml nor ruamel.yaml (pip install check-jsonschema brings ruamel.yaml)"
                .into(),
        ),
        Err(_) => Some("python3 is not installed".into()),
    }
}

// ---- running the linters ----------------------------------------------------------------

fn run(cmd: &mut Command) -> Result<(bool, String), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("could not run {cmd:?}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

fn check_jsonschema(schema: &str, file: &Path) -> Result<(bool, String), String> {
    run(Command::new("check-jsonschema")
        .args(["--color", "never", "--builtin-schema", schema])
        .arg(file))
}

fn zizmor(file: &Path) -> Result<(bool, String), String> {
    run(Command::new("zizmor")
        .args([
            "--offline",
            "--persona",
            "pedantic",
            "--strict-collection",
            "--no-progress",
            "--color",
            "never",
        ])
        .arg(file)
        // Offline: never a token, whatever the environment holds.
        .env_remove("GH_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .env_remove("ZIZMOR_GITHUB_TOKEN"))
}

fn passes(name: &str, file: &Path, result: Result<(bool, String), String>) -> TestResult {
    match result? {
        (true, _) => Ok(()),
        (false, text) => Err(format!("{name} rejects {}:\n{text}", file.display())),
    }
}

fn yaml_to_json(file: &Path) -> Result<Value, String> {
    let (ok, text) = run(Command::new("python3").args(["-c", YAML_TO_JSON]).arg(file))?;
    if !ok {
        return Err(format!("{}: not YAML:\n{text}", file.display()));
    }
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))
}

// ---- the structural rules ---------------------------------------------------------------

/// `owner/repo[/path]@<40 hex>`, a local `./action`, or `docker://image@sha256:<64 hex>`.
fn pinned(uses: &str) -> bool {
    if uses.starts_with("./") {
        return true;
    }
    if let Some(image) = uses.strip_prefix("docker://") {
        return image
            .rsplit_once("@sha256:")
            .is_some_and(|(_, digest)| digest.len() == 64 && is_lower_hex(digest));
    }
    match uses.rsplit_once('@') {
        Some((action, sha)) => {
            action.split('/').count() >= 2 && sha.len() == 40 && is_lower_hex(sha)
        }
        None => false,
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

fn has_text(v: Option<&Value>) -> bool {
    match v {
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Number(_)) => true,
        _ => false,
    }
}

/// Whether a bash script parses (`bash -n`).
fn bash_parses(script: &str) -> Result<(), String> {
    let mut child = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run bash -n: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes())
        .map_err(|e| format!("bash -n: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("bash -n: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn shell_of(defaults: Option<&Value>) -> Option<&str> {
    defaults?.get("run")?.get("shell")?.as_str()
}

/// Every problem with one workflow, as `where: what` lines.
fn structure_problems(doc: &Value, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(jobs) = doc.get("jobs").and_then(Value::as_object) else {
        return vec!["the workflow has no jobs".into()];
    };
    if jobs.is_empty() {
        problems.push("the workflow has no jobs".into());
    }
    let workflow_shell = shell_of(doc.get("defaults"));
    let top_permissions = doc.get("permissions").is_some();
    for (job_id, job) in jobs {
        let at = format!("jobs.{job_id}");
        if !has_text(job.get("name")) {
            problems.push(format!("{at}: no name"));
        }
        if !top_permissions && job.get("permissions").is_none() {
            problems.push(format!(
                "{at}: no permissions (declare them at the top or on every job)"
            ));
        }
        if let Some(uses) = job.get("uses") {
            // A reusable-workflow call: its called jobs carry the timeouts.
            match uses.as_str() {
                Some(u) if pinned(u) => {}
                _ => problems.push(format!("{at}.uses: {uses} is not pinned by a commit")),
            }
            continue;
        }
        if job.get("timeout-minutes").is_none() {
            problems.push(format!("{at}: no timeout-minutes"));
        }
        if job.get("runs-on").is_none() {
            problems.push(format!("{at}: no runs-on (runner labels)"));
        }
        let job_shell = shell_of(job.get("defaults")).or(workflow_shell);
        let Some(steps) = job.get("steps").and_then(Value::as_array) else {
            problems.push(format!("{at}: no steps"));
            continue;
        };
        for (i, step) in steps.iter().enumerate() {
            let at = match step.get("name").and_then(Value::as_str) {
                Some(name) => format!("{at}.steps[{i}] ({name})"),
                None => format!("{at}.steps[{i}]"),
            };
            if !has_text(step.get("name")) {
                problems.push(format!("{at}: no name"));
            }
            if step.get("timeout-minutes").is_none() {
                problems.push(format!("{at}: no timeout-minutes"));
            }
            if let Some(uses) = step.get("uses") {
                match uses.as_str() {
                    Some(u) if pinned(u) => {}
                    _ => problems.push(format!("{at}: uses {uses}, not pinned by a 40-hex commit")),
                }
            }
            if let Some(script) = step.get("run") {
                let script = script.as_str().unwrap_or_default();
                if script.contains("${{") {
                    problems.push(format!(
                        "{at}: `${{{{` inside run: (pass the value through env:)"
                    ));
                }
                let shell = step.get("shell").and_then(Value::as_str).or(job_shell);
                if shell.is_none_or(|s| s == "bash" || s.starts_with("bash "))
                    && let Err(e) = bash_parses(script)
                {
                    problems.push(format!("{at}: bash -n: {e}"));
                }
            }
        }
    }
    // The version beside each pin, for a person reading or updating it.
    for (n, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap_or_default();
        if let Some((_, target)) = code.split_once("uses:") {
            let target = target.trim().trim_matches(['"', '\'']);
            let comment = line.split_once('#').map(|(_, c)| c.trim());
            if target.contains('@')
                && !target.starts_with("./")
                && !comment.is_some_and(|c| c.starts_with('v') || c.contains(" v"))
            {
                problems.push(format!(
                    "line {}: `uses: {target}` has no `# vX.Y.Z` comment beside the pin",
                    n + 1
                ));
            }
        }
    }
    problems
}

fn structure(file: &Path) -> TestResult {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let doc = yaml_to_json(file)?;
    let problems = structure_problems(&doc, &text);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}:\n  {}", file.display(), problems.join("\n  ")))
    }
}

// ---- the linters catch a bad workflow -------------------------------------------------

/// A workflow that breaks every rule: a job without a timeout, a step without a name or
/// timeout, an action pinned by tag, a pull-request title expanded inside `run:`, a script
/// that does not parse, no permissions, credentials persisted by checkout.
const BAD_WORKFLOW: &str = r#"name: bad
on:
  pull_request:
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: Greet
        run: |
          echo "${{ github.event.pull_request.title }}"
          if then fi
"#;

fn bad_workflow() -> Result<(tempfile::TempDir, PathBuf), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("bad.yml");
    std::fs::write(&path, BAD_WORKFLOW).map_err(|e| e.to_string())?;
    Ok((dir, path))
}

fn require_timeout_rejects_a_job_without_one() -> TestResult {
    let (_dir, bad) = bad_workflow()?;
    let (ok, text) = check_jsonschema(SCHEMAS[1], &bad)?;
    if ok {
        return Err(format!(
            "check-jsonschema {} accepted a job without timeout-minutes:\n{text}",
            SCHEMAS[1]
        ));
    }
    if !text.contains("timeout-minutes") {
        return Err(format!("rejected, but not for the timeout:\n{text}"));
    }
    // The vendor schema accepts the same file: the rejection above is the timeout rule's.
    let (ok, text) = check_jsonschema(SCHEMAS[0], &bad)?;
    if !ok {
        return Err(format!(
            "the vendor schema rejects the bad workflow:\n{text}"
        ));
    }
    Ok(())
}

fn vendor_schema_rejects_an_unknown_key() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("typo.yml");
    let typo = BAD_WORKFLOW.replace("runs-on:", "runs-onn:");
    std::fs::write(&path, typo).map_err(|e| e.to_string())?;
    let (ok, text) = check_jsonschema(SCHEMAS[0], &path)?;
    if ok {
        Err(format!("the vendor schema accepted `runs-onn:`:\n{text}"))
    } else {
        Ok(())
    }
}

fn zizmor_rejects_injection_and_unpinned_actions() -> TestResult {
    let (_dir, bad) = bad_workflow()?;
    let (ok, text) = zizmor(&bad)?;
    let expected = ["template-injection", "unpinned-uses", "artipacked"];
    let absent: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|audit| !text.contains(audit))
        .collect();
    if ok || !absent.is_empty() {
        return Err(format!(
            "zizmor (exit ok: {ok}) did not report {absent:?} on the bad workflow:\n{text}"
        ));
    }
    Ok(())
}

fn structure_rejects_the_bad_workflow() -> TestResult {
    let (_dir, bad) = bad_workflow()?;
    let doc = yaml_to_json(&bad)?;
    let problems = structure_problems(&doc, BAD_WORKFLOW).join("\n");
    let expected = [
        "jobs.build: no name",
        "jobs.build: no permissions",
        "jobs.build: no timeout-minutes",
        "jobs.build.steps[0]: no name",
        "jobs.build.steps[0]: no timeout-minutes",
        "jobs.build.steps[0]: uses \"actions/checkout@v4\", not pinned",
        "jobs.build.steps[1] (Greet): no timeout-minutes",
        "jobs.build.steps[1] (Greet): `${{` inside run:",
        "jobs.build.steps[1] (Greet): bash -n:",
        "line 8: `uses: actions/checkout@v4` has no `# vX.Y.Z` comment",
    ];
    let absent: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|p| !problems.contains(p))
        .collect();
    if absent.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the structural check missed {absent:?}; it found:\n{problems}"
        ))
    }
}

// ---- conformance.yml is the gate the README describes ---------------------------------

fn conformance_yml_is_the_hetzner_gate() -> TestResult {
    let file = workflows_dir().join("conformance.yml");
    let doc = yaml_to_json(&file)?;
    let mut problems: Vec<String> = Vec::new();
    let mut want = |ok: bool, what: &str| {
        if !ok {
            problems.push(what.to_string());
        }
    };
    // PyYAML reads the key `on` as the boolean true (YAML 1.1); ruamel keeps "on".
    let on = doc.get("on").or_else(|| doc.get("true"));
    for event in ["pull_request", "schedule", "workflow_dispatch"] {
        want(
            on.is_some_and(|on| on.get(event).is_some()),
            &format!("runs on {event}"),
        );
    }
    want(
        doc.pointer("/permissions") == Some(&serde_json::json!({"contents": "read"})),
        "top-level permissions are exactly contents: read",
    );
    want(
        doc.pointer("/concurrency/group")
            .and_then(Value::as_str)
            .is_some_and(|g| g.contains("github.ref")),
        "concurrency is per ref",
    );
    let gate = doc.pointer("/jobs/gate").cloned().unwrap_or(Value::Null);
    want(
        gate.get("permissions")
            == Some(&serde_json::json!({"contents": "read", "actions": "read"})),
        "the gate job's permissions are contents: read, actions: read",
    );
    let labels: BTreeSet<&str> = gate
        .get("runs-on")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    want(
        labels == BTreeSet::from(["self-hosted", "linux", "x64", "hetzner"]),
        "the gate runs on [self-hosted, linux, x64, hetzner]",
    );
    let steps: Vec<Value> = gate
        .get("steps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let script = |s: &Value| {
        s.get("run")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let uses = |s: &Value| {
        s.get("uses")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let blocking = |s: &Value| s.get("continue-on-error") != Some(&Value::Bool(true));
    let runs_suite = |s: &Value| {
        let r = script(s);
        r.contains("cargo xtask conformance --target cluster --env hetzner")
            && ["--junit-file", "--json-file", "--markdown-file"]
                .iter()
                .all(|f| r.contains(f))
    };
    want(
        steps
            .iter()
            .any(|s| runs_suite(s) && blocking(s) && script(s).contains("args+=(--test \"!")),
        "a blocking step runs the suite on the cluster with every report, excluding the quarantine with --test '!<id>'",
    );
    want(
        steps
            .iter()
            .any(|s| runs_suite(s) && !blocking(s) && script(s).contains("/quarantine")),
        "a non-blocking (continue-on-error) step runs the quarantined checks into their own reports",
    );
    want(
        steps
            .iter()
            .any(|s| script(s).contains("GITHUB_STEP_SUMMARY") && script(s).contains("head -c")),
        "the Markdown summary goes to $GITHUB_STEP_SUMMARY, truncated",
    );
    want(
        steps.iter().any(|s| {
            let r = script(s);
            r.contains("cargo xtask compare --baseline")
                && r.contains("--current")
                && r.contains("no baseline")
                && r.contains("exit 0")
        }),
        "a step compares with the baseline and says so (exit 0) when there is none",
    );
    want(
        steps.iter().any(|s| {
            uses(s).starts_with("actions/download-artifact@")
                && s.pointer("/with/run-id").is_some()
                && s.pointer("/with/github-token").is_some()
        }),
        "the baseline is downloaded from another run (run-id, github-token)",
    );
    want(
        steps.iter().any(|s| {
            uses(s).starts_with("actions/upload-artifact@")
                && s.get("if")
                    .and_then(Value::as_str)
                    .is_some_and(|c| c.contains("refs/heads/main"))
                && s.pointer("/with/name").and_then(Value::as_str)
                    == Some("${{ env.BASELINE_ARTIFACT }}")
        }),
        "the run JSON is uploaded as the baseline on main only",
    );
    want(
        steps
            .iter()
            .any(|s| script(s).contains("cargo xtask triage") && script(s).contains("--out")),
        "a step collects a triage bundle",
    );
    want(
        steps.iter().any(|s| {
            uses(s).starts_with("actions/upload-artifact@")
                && s.pointer("/with/path")
                    .and_then(Value::as_str)
                    .is_some_and(|p| p.ends_with("triage.tar.gz"))
        }),
        "the triage bundle's .tar.gz is uploaded",
    );
    want(
        steps.iter().any(|s| {
            s.pointer("/env/KUBECONFIG_CONTENT").and_then(Value::as_str)
                == Some("${{ secrets.HETZNER_KUBECONFIG }}")
                && script(s).contains("umask 077")
                && script(s).contains("GITHUB_ENV")
        }),
        "the kubeconfig comes from the HETZNER_KUBECONFIG secret through env, into a 0600 file",
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} is not the gate the README describes; missing:\n  {}",
            file.display(),
            problems.join("\n  ")
        ))
    }
}

// ---- the step scripts, run as the runner runs them, with a stand-in cargo -------------

/// A stand-in for `cargo`: records each call (one argument a line, `--end--` after the
/// call), writes a Markdown file where `--markdown` or `--markdown-file` points, exits
/// `$FAKE_RC`.
const FAKE_CARGO: &str = r#"#!/bin/sh
for a in "$@"; do printf '%s\n' "$a"; done >> "$FAKE_CARGO_LOG"
echo --end-- >> "$FAKE_CARGO_LOG"
prev=
for a in "$@"; do
  if [ "$prev" = --markdown ] || [ "$prev" = --markdown-file ]; then
    printf '%s\n' "${FAKE_MARKDOWN:-| check | before | now |}" > "$a"
  fi
  prev=$a
done
exit "${FAKE_RC:-0}"
"#;

/// One runner job's worth of files: `$RUNNER_TEMP`, the step summary, outputs, env file,
/// and a `bin/` with the stand-in cargo first on `PATH`.
struct Sandbox {
    dir: tempfile::TempDir,
    doc: Value,
}

struct StepRun {
    code: Option<i32>,
    output: String,
}

impl Sandbox {
    fn new() -> Result<Sandbox, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(dir.path().join("runner-temp")).map_err(|e| e.to_string())?;
        let cargo = bin.join("cargo");
        std::fs::write(&cargo, FAKE_CARGO).map_err(|e| e.to_string())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let doc = yaml_to_json(&workflows_dir().join("conformance.yml"))?;
        Ok(Sandbox { dir, doc })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn temp(&self, rel: &str) -> PathBuf {
        self.path("runner-temp").join(rel)
    }

    fn write(&self, path: &Path, text: &str) -> TestResult {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(path, text).map_err(|e| e.to_string())
    }

    /// The `run:` script of the gate job's step called `name`.
    fn script(&self, name: &str) -> Result<String, String> {
        self.doc
            .pointer("/jobs/gate/steps")
            .and_then(Value::as_array)
            .and_then(|steps| {
                steps
                    .iter()
                    .find(|s| s.get("name").and_then(Value::as_str) == Some(name))
            })
            .and_then(|s| s.get("run"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("conformance.yml: the gate job has no step {name:?} with run:"))
    }

    /// Runs a step's script as the runner does (`bash --noprofile --norc -eo pipefail`),
    /// with the workflow's `env:` and `extra`.
    fn run(&self, name: &str, extra: &[(&str, &str)]) -> Result<StepRun, String> {
        let file = self.path("step.sh");
        self.write(&file, &self.script(name)?)?;
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("bash");
        cmd.args(["--noprofile", "--norc", "-eo", "pipefail"])
            .arg(&file)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.dir.path())
            .env("RUNNER_TEMP", self.path("runner-temp"))
            .env("GITHUB_STEP_SUMMARY", self.path("summary.md"))
            .env("GITHUB_OUTPUT", self.path("output"))
            .env("GITHUB_ENV", self.path("env"))
            .env("FAKE_CARGO_LOG", self.path("cargo.log"));
        if let Some(env) = self.doc.get("env").and_then(Value::as_object) {
            for (k, v) in env {
                cmd.env(
                    k,
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                );
            }
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd
            .output()
            .map_err(|e| format!("run the step {name:?}: {e}"))?;
        Ok(StepRun {
            code: out.status.code(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    /// The stand-in cargo's calls, each as its arguments.
    fn cargo_calls(&self) -> Vec<Vec<String>> {
        let log = self.read("cargo.log");
        let mut calls = Vec::new();
        let mut call = Vec::new();
        for line in log.lines() {
            if line == "--end--" {
                calls.push(std::mem::take(&mut call));
            } else {
                call.push(line.to_string());
            }
        }
        calls
    }
}

fn expect_code(step: &str, run: &StepRun, code: i32) -> TestResult {
    if run.code == Some(code) {
        Ok(())
    } else {
        Err(format!(
            "{step}: exit {:?}, expected {code}; it printed:\n{}",
            run.code, run.output
        ))
    }
}

/// The values of every `--test` in one call.
fn test_patterns(call: &[String]) -> Vec<String> {
    call.windows(2)
        .filter(|w| w[0] == "--test")
        .map(|w| w[1].clone())
        .collect()
}

/// What the suite's own `--test` parser selects with these patterns, as `id[variant]`.
fn planned(patterns: &[String]) -> Result<BTreeSet<String>, String> {
    let selection = conformance_suite::select::Selection::parse(patterns)
        .map_err(|e| format!("the suite rejects {patterns:?}: {e}"))?;
    Ok(selection
        .plan(conformance_contract::CATALOGUE)
        .into_iter()
        .map(|p| format!("{}[{}]", p.check, p.variant))
        .collect())
}

fn every_variant() -> BTreeSet<String> {
    conformance_contract::CATALOGUE
        .iter()
        .flat_map(|c| c.variants.iter().map(move |v| format!("{}[{v}]", c.id)))
        .collect()
}

/// One variant of a check with several, and a check with one.
const QUARANTINE: &str = "datapath.redirect-peer[tcx], datapath.redirect-peer.scrub\n";
const QUARANTINED: [&str; 2] = [
    "datapath.redirect-peer[tcx]",
    "datapath.redirect-peer.scrub[default]",
];

fn gate_excludes_exactly_the_quarantine() -> TestResult {
    const STEP: &str = "Conformance (gating)";
    let sandbox = Sandbox::new()?;
    expect_code(STEP, &sandbox.run(STEP, &[("QUARANTINE", QUARANTINE)])?, 0)?;
    let calls = sandbox.cargo_calls();
    let [call] = calls.as_slice() else {
        return Err(format!("{STEP}: expected one cargo call, got {calls:?}"));
    };
    let head = [
        "xtask",
        "conformance",
        "--target",
        "cluster",
        "--env",
        "hetzner",
    ];
    if call.iter().take(head.len()).ne(head.iter()) {
        return Err(format!("{STEP}: cargo {call:?}"));
    }
    let mut expected = every_variant();
    for q in QUARANTINED {
        if !expected.remove(q) {
            return Err(format!("the catalogue has no {q}: update QUARANTINE here"));
        }
    }
    let got = planned(&test_patterns(call))?;
    if got != expected {
        return Err(format!(
            "{STEP}: with the quarantine {QUARANTINE:?} the gate runs {got:?}, expected {expected:?}"
        ));
    }
    for flag in ["--junit-file", "--json-file", "--markdown-file"] {
        let value = call.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
        if !value.is_some_and(|v| v.contains("/conformance/gate/")) {
            return Err(format!(
                "{STEP}: {flag} does not write under conformance/gate/: {call:?}"
            ));
        }
    }
    // No quarantine: no --test at all (every check gates).
    let sandbox = Sandbox::new()?;
    expect_code(STEP, &sandbox.run(STEP, &[("QUARANTINE", "")])?, 0)?;
    let calls = sandbox.cargo_calls();
    if calls.len() != 1 || !test_patterns(&calls[0]).is_empty() {
        return Err(format!("{STEP}: with no quarantine, cargo {calls:?}"));
    }
    // Not a check id: exit 2 naming it, and the suite never starts.
    let sandbox = Sandbox::new()?;
    let run = sandbox.run(STEP, &[("QUARANTINE", "datapath.*")])?;
    expect_code(STEP, &run, 2)?;
    if !run.output.contains("\"datapath.*\" is not a check id") || !sandbox.cargo_calls().is_empty()
    {
        return Err(format!("{STEP}: a bad quarantine entry: {}", run.output));
    }
    Ok(())
}

fn quarantine_runs_exactly_the_quarantine_into_its_own_reports() -> TestResult {
    const STEP: &str = "Conformance (quarantined checks, non-blocking)";
    let sandbox = Sandbox::new()?;
    // The quarantined checks fail: the step fails (the job goes on: continue-on-error).
    let run = sandbox.run(STEP, &[("QUARANTINE", QUARANTINE), ("FAKE_RC", "1")])?;
    expect_code(STEP, &run, 1)?;
    let calls = sandbox.cargo_calls();
    let [call] = calls.as_slice() else {
        return Err(format!("{STEP}: expected one cargo call, got {calls:?}"));
    };
    let got = planned(&test_patterns(call))?;
    let expected: BTreeSet<String> = QUARANTINED.iter().map(|s| s.to_string()).collect();
    if got != expected {
        return Err(format!("{STEP}: runs {got:?}, expected {expected:?}"));
    }
    let junit = call
        .windows(2)
        .find(|w| w[0] == "--junit-file")
        .map(|w| w[1].clone());
    if !junit.is_some_and(|j| j.contains("/conformance/quarantine/")) {
        return Err(format!("{STEP}: its JUnit is not its own: {call:?}"));
    }
    let summary = sandbox.read("summary.md");
    if !summary.contains("## Quarantined checks (non-blocking)") || !summary.contains("| check |") {
        return Err(format!("{STEP}: step summary:\n{summary}"));
    }
    Ok(())
}

fn step_summary_is_cut_well_below_githubs_limit() -> TestResult {
    const STEP: &str = "Summary of the gating run";
    let sandbox = Sandbox::new()?;
    let file = sandbox.temp("conformance/gate/summary.md");
    // 1.5 MiB of table rows with two-byte characters: a cut must not split one.
    let row = "| datapath.é-check | pass | évidence |\n";
    sandbox.write(&file, &row.repeat(1536 * 1024 / row.len()))?;
    expect_code(STEP, &sandbox.run(STEP, &[])?, 0)?;
    let bytes = std::fs::read(sandbox.path("summary.md")).map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes.clone())
        .map_err(|e| format!("{STEP}: the cut summary is not UTF-8: {e}"))?;
    if bytes.len() > 320 * 1024 || !text.contains("Truncated") {
        return Err(format!("{STEP}: {} bytes, no truncation note", bytes.len()));
    }
    let body = text.split("\n\n> Truncated").next().unwrap_or_default();
    if body.lines().any(|l| l != row.trim_end()) {
        return Err(format!("{STEP}: a row was cut in the middle"));
    }
    // A small summary goes in whole.
    let sandbox = Sandbox::new()?;
    sandbox.write(
        &sandbox.temp("conformance/gate/summary.md"),
        "# run\n\n| a | b |\n",
    )?;
    expect_code(STEP, &sandbox.run(STEP, &[])?, 0)?;
    if sandbox.read("summary.md") != "# run\n\n| a | b |\n" {
        return Err(format!(
            "{STEP}: a small summary: {:?}",
            sandbox.read("summary.md")
        ));
    }
    Ok(())
}

fn compare_says_when_there_is_no_baseline_and_fails_when_worse() -> TestResult {
    const STEP: &str = "Compare with the baseline of main";
    let sandbox = Sandbox::new()?;
    sandbox.write(&sandbox.temp("conformance/gate/run.json"), "{}")?;
    let run = sandbox.run(STEP, &[("BASELINE_RUN_ID", "")])?;
    expect_code(STEP, &run, 0)?;
    if !run.output.contains("no baseline")
        || !sandbox.read("summary.md").contains("no baseline")
        || !sandbox.cargo_calls().is_empty()
    {
        return Err(format!(
            "{STEP}: without a baseline it must say so (log and summary) and compare nothing:\n{}",
            run.output
        ));
    }
    sandbox.write(&sandbox.temp("baseline/run.json"), "{}")?;
    for (rc, expected) in [("0", 0), ("1", 1), ("2", 2)] {
        let _ = std::fs::remove_file(sandbox.path("cargo.log"));
        let _ = std::fs::remove_file(sandbox.path("summary.md"));
        let run = sandbox.run(
            STEP,
            &[
                ("BASELINE_RUN_ID", "4"),
                ("FAKE_RC", rc),
                ("FAKE_MARKDOWN", "| a | pass | regression |"),
            ],
        )?;
        expect_code(STEP, &run, expected)?;
        let calls = sandbox.cargo_calls();
        let [call] = calls.as_slice() else {
            return Err(format!("{STEP}: expected one cargo call, got {calls:?}"));
        };
        let flags: Vec<&str> = call
            .iter()
            .map(String::as_str)
            .filter(|a| a.starts_with("--"))
            .collect();
        if call[..2] != ["xtask", "compare"]
            || flags != ["--baseline", "--current", "--markdown", "--junit"]
            || !call[3].ends_with("baseline/run.json")
            || !call[5].ends_with("conformance/gate/run.json")
        {
            return Err(format!("{STEP}: cargo {call:?}"));
        }
        if !sandbox
            .read("summary.md")
            .contains("| a | pass | regression |")
        {
            return Err(format!(
                "{STEP}: compare's Markdown is not in the step summary"
            ));
        }
    }
    Ok(())
}

fn kubeconfig_goes_to_a_0600_file_and_is_never_printed() -> TestResult {
    const STEP: &str = "Write the kubeconfig";
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new()?;
    let secret =
        "apiVersion: v1\nkind: Config\nusers:\n- user:\n    token: not-a-real-token-7f3a\n";
    let run = sandbox.run(STEP, &[("KUBECONFIG_CONTENT", secret)])?;
    expect_code(STEP, &run, 0)?;
    let path = sandbox.temp("kubeconfig");
    let mode = std::fs::metadata(&path)
        .map_err(|e| format!("{STEP}: no kubeconfig at {}: {e}", path.display()))?
        .permissions()
        .mode()
        & 0o777;
    let written = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    if mode != 0o600 || written.trim_end() != secret.trim_end() {
        return Err(format!("{STEP}: mode {mode:o}, content {written:?}"));
    }
    if run.output.contains("not-a-real-token") {
        return Err(format!("{STEP}: printed the secret:\n{}", run.output));
    }
    if sandbox.read("env").trim() != format!("KUBECONFIG={}", path.display()) {
        return Err(format!(
            "{STEP}: GITHUB_ENV holds {:?}",
            sandbox.read("env")
        ));
    }
    let sandbox = Sandbox::new()?;
    let run = sandbox.run(STEP, &[("KUBECONFIG_CONTENT", "")])?;
    expect_code(STEP, &run, 1)?;
    if !run
        .output
        .contains("HETZNER_KUBECONFIG secret is empty or not set")
    {
        return Err(format!("{STEP}: an empty secret:\n{}", run.output));
    }
    Ok(())
}

/// A stand-in for the GitHub REST API on 127.0.0.1: answers `(path prefix, status, body)`
/// in order of the first prefix that matches, records each request line and its
/// Authorization header, and stops when dropped.
struct FakeApi {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeApi {
    fn start(routes: Vec<(&'static str, u16, &'static str)>) -> Result<FakeApi, String> {
        use std::io::{BufRead, BufReader};
        use std::sync::atomic::Ordering;
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        let url = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut reader = BufReader::new(&stream);
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut auth = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line
                        .strip_prefix("Authorization:")
                        .or_else(|| line.strip_prefix("authorization:"))
                    {
                        auth = v.trim().to_string();
                    }
                }
                let target = request.split_whitespace().nth(1).unwrap_or("").to_string();
                seen2.lock().unwrap().push(format!("{target} auth={auth}"));
                let (status, body) = routes
                    .iter()
                    .find(|(prefix, _, _)| target.starts_with(prefix))
                    .map(|(_, s, b)| (*s, *b))
                    .unwrap_or((404, "{}"));
                let mut stream = &stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Ok(FakeApi {
            url,
            seen,
            stop,
            thread: Some(thread),
        })
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn baseline_is_the_last_main_run_with_a_live_artifact() -> TestResult {
    const STEP: &str = "Find the baseline of main";
    const RUNS: &str =
        "/repos/o/r/actions/workflows/conformance.yml/runs?branch=main&status=success";
    // Run 1 is a pull request's, run 2 a fork's, run 3's baseline expired: run 4's.
    let api = FakeApi::start(vec![
        (
            RUNS,
            200,
            r#"{"workflow_runs":[
                {"id":1,"event":"pull_request","head_repository":{"full_name":"o/r"}},
                {"id":2,"event":"schedule","head_repository":{"full_name":"fork/r"}},
                {"id":3,"event":"schedule","head_repository":{"full_name":"o/r"}},
                {"id":4,"event":"workflow_dispatch","head_repository":{"full_name":"o/r"}}]}"#,
        ),
        (
            "/repos/o/r/actions/runs/3/artifacts?name=conformance-baseline",
            200,
            r#"{"artifacts":[{"expired":true}]}"#,
        ),
        (
            "/repos/o/r/actions/runs/4/artifacts?name=conformance-baseline",
            200,
            r#"{"artifacts":[{"expired":false}]}"#,
        ),
    ])?;
    let env = |url: &str| -> Vec<(&'static str, String)> {
        vec![
            ("GITHUB_API_URL", url.to_string()),
            ("GITHUB_SERVER_URL", "https://github.invalid".into()),
            ("GITHUB_REPOSITORY", "o/r".into()),
            (
                "GITHUB_WORKFLOW_REF",
                "o/r/.github/workflows/conformance.yml@refs/pull/7/merge".into(),
            ),
            ("GH_TOKEN", "test-token".into()),
        ]
    };
    let run_with = |sandbox: &Sandbox, url: &str| {
        let env = env(url);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        sandbox.run(STEP, &env)
    };
    let sandbox = Sandbox::new()?;
    let run = run_with(&sandbox, &api.url)?;
    expect_code(STEP, &run, 0)?;
    if sandbox.read("output") != "run-id=4\n" {
        return Err(format!(
            "{STEP}: output {:?}, expected run-id=4; requests {:?}; it printed:\n{}",
            sandbox.read("output"),
            api.seen(),
            run.output
        ));
    }
    let seen = api.seen();
    if seen.len() != 3 || seen.iter().any(|s| !s.ends_with("auth=Bearer test-token")) {
        return Err(format!("{STEP}: requests {seen:?}"));
    }
    drop(api);
    // No run with a baseline, and the API down: no baseline, said, and the step passes.
    for routes in [
        vec![(RUNS, 200, r#"{"workflow_runs":[]}"#)],
        vec![("/", 500, r#"{"message":"down"}"#)],
    ] {
        let api = FakeApi::start(routes)?;
        let sandbox = Sandbox::new()?;
        let run = run_with(&sandbox, &api.url)?;
        expect_code(STEP, &run, 0)?;
        if sandbox.read("output") != "run-id=\n" || !run.output.contains("nothing will be compared")
        {
            return Err(format!(
                "{STEP}: output {:?}; it printed:\n{}",
                sandbox.read("output"),
                run.output
            ));
        }
    }
    Ok(())
}

fn missing_script_tools() -> Option<String> {
    missing_yaml().or_else(|| {
        ["curl", "jq"]
            .into_iter()
            .find(|t| Command::new(t).arg("--version").output().is_err())
            .map(|t| format!("{t} is not installed (apt-get install {t})"))
    })
}

// ---- the harness -----------------------------------------------------------------------

/// Whether libtest-mimic's name filter and `--skip` keep the test `name`.
fn selected(name: &str, args: &Arguments) -> bool {
    let matches = |pattern: &String| {
        if args.exact {
            name == pattern
        } else {
            name.contains(pattern.as_str())
        }
    };
    args.filter.as_ref().is_none_or(matches) && !args.skip.iter().any(matches)
}

fn main() {
    let args = Arguments::from_args();
    let files = workflow_files();
    let tools = [
        ("check-jsonschema", missing_check_jsonschema()),
        ("zizmor", missing_zizmor()),
        ("structure", missing_yaml()),
        ("scripts", missing_script_tools()),
    ];
    let missing = |tool: &str| {
        tools
            .iter()
            .find(|(t, _)| *t == tool)
            .and_then(|(_, why)| why.clone())
    };
    let mut trials: Vec<(String, &str, Body)> = vec![
        (
            "workflows::exist".into(),
            "",
            Box::new(|| {
                let names: Vec<String> = workflow_files().iter().map(|p| file_name(p)).collect();
                if names.iter().any(|n| n == "conformance.yml") {
                    Ok(())
                } else {
                    Err(format!(
                        "{} holds no conformance.yml (found {names:?})",
                        workflows_dir().display()
                    ))
                }
            }),
        ),
        (
            "workflows::check_jsonschema::require_timeout_rejects_a_job_without_one".into(),
            "check-jsonschema",
            Box::new(require_timeout_rejects_a_job_without_one),
        ),
        (
            "workflows::check_jsonschema::vendor_schema_rejects_an_unknown_key".into(),
            "check-jsonschema",
            Box::new(vendor_schema_rejects_an_unknown_key),
        ),
        (
            "workflows::zizmor::rejects_injection_and_unpinned_actions".into(),
            "zizmor",
            Box::new(zizmor_rejects_injection_and_unpinned_actions),
        ),
        (
            "workflows::structure::rejects_the_bad_workflow".into(),
            "structure",
            Box::new(structure_rejects_the_bad_workflow),
        ),
        (
            "workflows::structure::conformance_yml_is_the_hetzner_gate".into(),
            "structure",
            Box::new(conformance_yml_is_the_hetzner_gate),
        ),
        (
            "workflows::scripts::gate_excludes_exactly_the_quarantine".into(),
            "scripts",
            Box::new(gate_excludes_exactly_the_quarantine),
        ),
        (
            "workflows::scripts::quarantine_runs_exactly_the_quarantine_into_its_own_reports"
                .into(),
            "scripts",
            Box::new(quarantine_runs_exactly_the_quarantine_into_its_own_reports),
        ),
        (
            "workflows::scripts::step_summary_is_cut_well_below_githubs_limit".into(),
            "scripts",
            Box::new(step_summary_is_cut_well_below_githubs_limit),
        ),
        (
            "workflows::scripts::compare_says_when_there_is_no_baseline_and_fails_when_worse"
                .into(),
            "scripts",
            Box::new(compare_says_when_there_is_no_baseline_and_fails_when_worse),
        ),
        (
            "workflows::scripts::kubeconfig_goes_to_a_0600_file_and_is_never_printed".into(),
            "scripts",
            Box::new(kubeconfig_goes_to_a_0600_file_and_is_never_printed),
        ),
        (
            "workflows::scripts::baseline_is_the_last_main_run_with_a_live_artifact".into(),
            "scripts",
            Box::new(baseline_is_the_last_main_run_with_a_live_artifact),
        ),
    ];
    for file in &files {
        let name = file_name(file);
        for schema in SCHEMAS {
            let f = file.clone();
            trials.push((
                format!("workflows::check_jsonschema::{schema}::{name}"),
                "check-jsonschema",
                Box::new(move || {
                    passes(
                        &format!("check-jsonschema {schema}"),
                        &f,
                        check_jsonschema(schema, &f),
                    )
                }),
            ));
        }
        let f = file.clone();
        trials.push((
            format!("workflows::zizmor::{name}"),
            "zizmor",
            Box::new(move || passes("zizmor --offline --persona pedantic", &f, zizmor(&f))),
        ));
        let f = file.clone();
        trials.push((
            format!("workflows::structure::{name}"),
            "structure",
            Box::new(move || structure(&f)),
        ));
    }
    let mut said = BTreeSet::new();
    let trials: Vec<Trial> = trials
        .into_iter()
        .map(|(name, tool, test)| {
            let why = if tool.is_empty() { None } else { missing(tool) };
            if let Some(why) = &why
                && selected(&name, &args)
                && said.insert(tool)
            {
                eprintln!("workflow lint: the {tool} tests are ignored here: {why}");
            }
            Trial::test(name, move || test().map_err(Into::into)).with_ignored_flag(why.is_some())
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
