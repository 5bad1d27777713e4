//! `cargo xtask image` for real against this machine's Docker: the image exists under
//! both tags, a container from it lists the catalogue, and rebuilding a tag leaves no
//! untagged (`<none>`) image behind.
//!
//! Docker is spoken to over its socket with HTTP/1.0 by hand (a few calls; no client
//! crate in the test build). Every container carries [`LABEL`] and is removed by a
//! guard, and a run first removes what a killed earlier run left.

use crate::support::{Needs, Test, TestResult, binaries, repo_root};
use conformance_contract::CATALOGUE;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;

pub const TESTS: &[(&str, Needs, Test)] = &[(
    "image::builds_runs_and_leaves_no_untagged_image",
    Needs::Docker,
    builds_runs_and_leaves_no_untagged_image,
)];

const REPOSITORY: &str = "cilium-conformance-probe";
const LABEL: &str = "cilium-conformance.test";
const LABEL_VALUE: &str = "e2e-image";

/// `Some(why)` when no Docker daemon answers one ping.
pub fn docker_missing() -> Option<String> {
    match request("GET", "/_ping", None) {
        Ok((200, body)) if body.trim() == "OK" => None,
        Ok((status, body)) => Some(format!(
            "Docker at {} answered /_ping with {status} {}",
            endpoint(),
            body.trim()
        )),
        Err(e) => Some(format!("no Docker at {}: {e}", endpoint())),
    }
}

/// The daemon the suite itself would reach (`DOCKER_HOST`, else the docker context).
fn endpoint() -> String {
    conformance_suite::target::docker::endpoint()
        .map(|e| e.host)
        .unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// A daemon that accepts but never answers must not hang the test run.
const IO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn connect() -> Result<Box<dyn Stream>, String> {
    let host = endpoint();
    if let Some(path) = host.strip_prefix("unix://") {
        let s =
            std::os::unix::net::UnixStream::connect(path).map_err(|e| format!("{path}: {e}"))?;
        s.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        Ok(Box::new(s))
    } else if let Some(addr) = host.strip_prefix("tcp://") {
        let s = std::net::TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
        s.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        Ok(Box::new(s))
    } else {
        Err(format!("DOCKER_HOST={host} is neither unix:// nor tcp://"))
    }
}

/// One request; HTTP/1.0, so the daemon sends the body unchunked and closes.
fn request_bytes(method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Vec<u8>), String> {
    let mut stream = connect()?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: no HTTP header in the answer"))?;
    let status_line = String::from_utf8_lossy(&response[..split]);
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: bad status line {status_line:?}"))?;
    Ok((status, response[split + 4..].to_vec()))
}

pub fn request(method: &str, path: &str, body: Option<&Value>) -> Result<(u16, String), String> {
    request_bytes(method, path, body).map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned()))
}

/// A request that must answer 2xx; returns its body as JSON (`null` when empty).
fn call(method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let (status, text) = request(method, path, body)?;
    if !(200..300).contains(&status) {
        return Err(format!("{method} {path}: {status} {}", text.trim()));
    }
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| format!("{method} {path}: {e}: {text}"))
}

fn query(filters: &Value) -> String {
    filters
        .to_string()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The image's id and tags; `None` when there is no such image.
fn inspect_image(name: &str) -> Result<Option<(String, Vec<String>)>, String> {
    let (status, text) = request("GET", &format!("/images/{name}/json"), None)?;
    if status == 404 {
        return Ok(None);
    }
    if status != 200 {
        return Err(format!("inspect image {name}: {status} {}", text.trim()));
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("inspect {name}: {e}"))?;
    let tags = v["RepoTags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Ok(Some((
        v["Id"].as_str().unwrap_or_default().to_string(),
        tags,
    )))
}

/// Ids of every image of [`REPOSITORY`].
fn our_images() -> Result<Vec<String>, String> {
    let filters = query(&json!({ "reference": [REPOSITORY] }));
    let list = call("GET", &format!("/images/json?filters={filters}"), None)?;
    Ok(list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["Id"].as_str().map(String::from))
        .collect())
}

/// Removes every container this test labelled (a killed earlier run's too).
fn sweep_containers() -> Result<(), String> {
    let filters = query(&json!({ "label": [format!("{LABEL}={LABEL_VALUE}")] }));
    let list = call(
        "GET",
        &format!("/containers/json?all=1&filters={filters}"),
        None,
    )?;
    for id in list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["Id"].as_str())
    {
        remove_container(id);
    }
    Ok(())
}

fn remove_container(id: &str) {
    let _ = request("DELETE", &format!("/containers/{id}?force=1&v=1"), None);
}

/// Removes its container however the test ends.
struct ContainerGuard(String);

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        remove_container(&self.0);
    }
}

/// Creates a container from `image` with entrypoint `/probe` and `args` (set at create
/// time, as the container target does), runs it to the end and returns (exit code, output).
fn run_probe_container(image: &str, args: &[&str]) -> Result<(i64, String), String> {
    let created = call(
        "POST",
        "/containers/create",
        Some(&json!({
            "Image": image,
            "Entrypoint": ["/probe"],
            "Cmd": args,
            "Labels": { LABEL: LABEL_VALUE },
            "HostConfig": { "NetworkMode": "none" },
        })),
    )?;
    let id = created["Id"]
        .as_str()
        .ok_or_else(|| format!("create container: no Id in {created}"))?
        .to_string();
    let guard = ContainerGuard(id);
    call("POST", &format!("/containers/{}/start", guard.0), None)?;
    let waited = call("POST", &format!("/containers/{}/wait", guard.0), None)?;
    let code = waited["StatusCode"]
        .as_i64()
        .ok_or_else(|| format!("wait: no StatusCode in {waited}"))?;
    let (status, logs) = request_bytes(
        "GET",
        &format!("/containers/{}/logs?stdout=1&stderr=1", guard.0),
        None,
    )?;
    if status != 200 {
        return Err(format!("logs: {status}"));
    }
    Ok((code, demultiplex(&logs)))
}

/// Docker's log stream without a TTY: frames of `[stream, 0, 0, 0, len (u32 BE)]` + data.
fn demultiplex(mut bytes: &[u8]) -> String {
    let mut out = Vec::new();
    while bytes.len() >= 8 {
        let len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        let end = (8 + len).min(bytes.len());
        out.extend_from_slice(&bytes[8..end]);
        bytes = &bytes[end..];
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `xtask image ARGS` and returns (stdout, stderr) of a successful run.
fn xtask_image(args: &[&str]) -> Result<(String, String), String> {
    let (_, xtask) = binaries()?;
    let out = Command::new(xtask)
        .current_dir(repo_root())
        .arg("image")
        .args(args)
        .output()
        .map_err(|e| format!("run xtask image: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!(
            "xtask image {} exited {:?}:\n{stderr}",
            args.join(" "),
            out.status.code()
        ));
    }
    Ok((stdout, stderr))
}

/// The static probe's path from the progress line `built static <arch> probe (...): PATH (N s)`.
fn probe_path(stderr: &str) -> Result<PathBuf, String> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("image: built static"))
        .ok_or_else(|| format!("no `built static` progress line in:\n{stderr}"))?;
    let path = line
        .split_once("): ")
        .and_then(|(_, rest)| rest.rsplit_once(" ("))
        .map(|(path, _)| path)
        .ok_or_else(|| format!("no path in {line:?}"))?;
    Ok(repo_root().join(path))
}

/// The image `id`, whose tags (`moved`) a build just moved away, is gone: neither
/// left as `<none>` nor still carrying one of them. (Another tag on the same bytes,
/// from an older revision's build that hit the same cache entry, keeps it, by design.)
fn lost_its_tags(id: &str, moved: &[&str], said: &str) -> TestResult {
    match inspect_image(id)? {
        Some((_, tags)) if tags.iter().all(|t| t == "<none>:<none>") => Err(format!(
            "the image that lost its tags ({id}) was left untagged; xtask said:\n{said}"
        )),
        Some((_, tags)) if tags.iter().any(|t| moved.contains(&t.as_str())) => Err(format!(
            "image {id} still carries {tags:?}; xtask said:\n{said}"
        )),
        _ => Ok(()),
    }
}

/// Each of `ids` is gone or still tagged: none was left as `<none>`.
fn none_left_untagged(ids: &[String]) -> TestResult {
    for id in ids {
        if let Some((_, tags)) = inspect_image(id)?
            && tags.iter().all(|t| t == "<none>:<none>")
        {
            return Err(format!("image {id} was left untagged (<none>)"));
        }
    }
    Ok(())
}

fn builds_runs_and_leaves_no_untagged_image() -> TestResult {
    sweep_containers()?;

    // 1. Build: progress on stderr, the reference on stdout.
    let (stdout, stderr) = xtask_image(&[])?;
    let reference = stdout.trim().to_string();
    let version = format!("{REPOSITORY}:{}-", env!("CARGO_PKG_VERSION"));
    if !reference.starts_with(&version) || reference.contains(char::is_whitespace) {
        return Err(format!(
            "stdout is not an image reference starting {version}: {stdout:?}"
        ));
    }
    for step in [
        "image: built static",
        "image: built cilium",
        "image: tagged",
    ] {
        if !stderr.lines().any(|l| l.starts_with(step)) {
            return Err(format!("no `{step}` progress line in:\n{stderr}"));
        }
    }
    let (id, tags) = inspect_image(&reference)?.ok_or_else(|| format!("no image {reference}"))?;
    let latest = format!("{REPOSITORY}:latest");
    for tag in [&reference, &latest] {
        if !tags.contains(tag) {
            return Err(format!("image {id} lacks tag {tag} (has {tags:?})"));
        }
    }

    // 2. Run it once, entrypoint and command given at create time.
    let (code, output) = run_probe_container(&reference, &["list"])?;
    if code != 0 {
        return Err(format!(
            "probe list exited {code} in the container:\n{output}"
        ));
    }
    for check in CATALOGUE {
        if !output
            .lines()
            .any(|l| l.starts_with(&format!("{} ", check.id)))
        {
            return Err(format!(
                "probe list in the container does not list {}:\n{output}",
                check.id
            ));
        }
    }

    // 3. Move the tags to a different image (the same probe plus one byte, still a valid
    //    ELF), then back: each time the image that lost its tags must be gone.
    let before = our_images()?;
    let probe = probe_path(&stderr)?;
    let scratch = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let changed = scratch.path().join("probe");
    let mut bytes = std::fs::read(&probe).map_err(|e| format!("read {}: {e}", probe.display()))?;
    bytes.push(0);
    std::fs::write(&changed, &bytes).map_err(|e| format!("write {}: {e}", changed.display()))?;
    let changed_arg = changed.display().to_string();
    let (stdout, said) = xtask_image(&["-v", "--probe", &changed_arg])?;
    if stdout.trim() != reference {
        return Err(format!("--probe gave {stdout:?}, not {reference}"));
    }
    let (moved, _) = inspect_image(&reference)?.ok_or("the tag vanished")?;
    if moved == id {
        return Err("a different probe gave the same image".into());
    }
    lost_its_tags(&id, &[&reference, &latest], &said)?;
    let (stdout, said) = xtask_image(&["-v"])?;
    if stdout.trim() != reference {
        return Err(format!("second build gave {stdout:?}, not {reference}"));
    }
    lost_its_tags(&moved, &[&reference, &latest], &said)?;
    let mut seen = before;
    seen.push(moved);
    seen.extend(our_images()?);
    none_left_untagged(&seen)?;
    sweep_containers()
}
