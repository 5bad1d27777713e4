//! A node container: the probe where a k3d node's datapath is.
//!
//! Like a k3d node: its own network namespace (the default bridge) and cgroup
//! namespace, the cgroup mounts Docker gives (read-only `/sys/fs/cgroup` unless
//! privileged), `/sys/fs/bpf` as [`BpffsMount`] says. Privileged first; Docker 20.10
//! cannot start a privileged container where the host's bounding set lacks
//! CAP_SYS_RESOURCE (runc asks for every capability; fixed in moby #42933), so on that
//! error the container is removed and recreated near-privileged, and later containers
//! of this process go straight to that mode.
//!
//! Output: attached before start (what `docker run` does), so the first lines are
//! there and nothing depends on the daemon's log driver; stdout is split into lines
//! for the caller's channel, stderr's last lines are kept for error messages.

use super::error::{daemon_message, status};
use super::lines::{LineSplitter, Tail};
use super::{DockerError, Owner, bpffs, rt};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigCgroupnsModeEnum, HostConfigLogConfig, Mount,
    MountBindOptions, MountBindOptionsPropagationEnum, MountType,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The environment variable that tells the probe which mode it runs in.
pub const ENV_CONTAINER_MODE: &str = "CONFORMANCE_CONTAINER_MODE";

/// Which modes to try.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ModePreference {
    /// Privileged (what k3d nodes are); near-privileged where that cannot start.
    #[default]
    PrivilegedFirst,
    /// Privileged or fail.
    Privileged,
    /// Near-privileged only.
    NearPrivileged,
}

/// The mode a node container ran in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerMode {
    Privileged,
    /// All capabilities but SYS_RESOURCE, seccomp unconfined, no masked or read-only
    /// paths: what starts where privileged cannot, and is enough for every check.
    NearPrivileged,
}

impl ContainerMode {
    /// The word the probe records as the `container.mode` fact.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerMode::Privileged => "privileged",
            ContainerMode::NearPrivileged => "near-privileged",
        }
    }

    /// For humans: what the mode grants.
    pub fn describe(self) -> &'static str {
        match self {
            ContainerMode::Privileged => "privileged",
            ContainerMode::NearPrivileged => {
                "near-privileged (all caps but SYS_RESOURCE, seccomp unconfined, no masked paths)"
            }
        }
    }
}

impl std::fmt::Display for ContainerMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the node container gets at `/sys/fs/bpf`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BpffsMount {
    /// Nothing.
    #[default]
    None,
    /// Nothing from here either: the probe mounts a private bpffs itself.
    Private,
    /// The host's `/sys/fs/bpf`, which must already be a bpffs (and a shared mount
    /// for `rshared`); never mounted or re-propagated here.
    HostBind { rshared: bool },
}

/// One node container.
#[derive(Debug, Clone, Default)]
pub struct NodeSpec {
    pub image: String,
    pub run_id: String,
    /// Overrides the image's entrypoint (FROM-scratch images set none).
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value`; [`ENV_CONTAINER_MODE`] is added.
    pub env: Vec<String>,
    pub mode: ModePreference,
    pub bpffs: BpffsMount,
}

/// How a node container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerExit {
    /// `None` when the container was gone before its status could be read (stopped).
    pub code: Option<i64>,
    pub stderr_tail: Vec<String>,
    pub mode: ContainerMode,
}

/// Set once privileged failed with the capabilities error: that is the daemon's and
/// host's doing, so the next container of this process does not pay for the attempt.
static PRIVILEGED_CANNOT_START: AtomicBool = AtomicBool::new(false);
static NEXT: AtomicU64 = AtomicU64::new(1);

/// What the output task learnt, read after it ends.
#[derive(Debug, Default)]
struct Shared {
    stderr: Tail,
    malformed: Option<String>,
}

/// A started node container; removed by [`NodeContainer::stop`] (or a
/// [`StopHandle`]) or, failing that, on drop.
pub struct NodeContainer {
    docker: Docker,
    name: String,
    id: String,
    mode: ContainerMode,
    output: Option<JoinHandle<()>>,
    shared: Arc<Mutex<Shared>>,
    flags: Arc<Flags>,
    exit: Option<ContainerExit>,
}

/// `stopping` is set before the removal is asked for, so a `wait` that sees the kill
/// knows it was ours; `removed` once the daemon confirmed it.
#[derive(Debug, Default)]
struct Flags {
    stopping: AtomicBool,
    removed: AtomicBool,
}

/// Stops a node container from another thread (a Ctrl-C handler, a timeout) while its
/// owner is blocked reading lines or in [`NodeContainer::wait`].
#[derive(Debug, Clone)]
pub struct StopHandle {
    docker: Docker,
    id: String,
    flags: Arc<Flags>,
}

impl StopHandle {
    /// Stops the container (SIGTERM, so the probe undoes what would outlive it;
    /// SIGKILL after a grace period) and removes it; again, or after the owner's
    /// stop, is a no-op.
    pub fn stop(&self) -> Result<(), DockerError> {
        if self.flags.removed.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.flags.stopping.store(true, Ordering::SeqCst);
        let docker = self.docker.clone();
        let id = self.id.clone();
        rt::block_on(async move { remove(&docker, &id).await })??;
        self.flags.removed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

impl std::fmt::Debug for NodeContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeContainer")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("mode", &self.mode)
            .field("removed", &self.flags.removed.load(Ordering::Relaxed))
            .finish()
    }
}

impl NodeContainer {
    /// Creates, attaches and starts the container; stdout lines arrive on the receiver,
    /// which closes when the container's stdout ends. On any error nothing is left.
    pub fn start(spec: NodeSpec) -> Result<(NodeContainer, Receiver<String>), DockerError> {
        rt::block_on(start(spec))?
    }

    /// `cc-<run_id>-<n>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn mode(&self) -> ContainerMode {
        self.mode
    }

    /// For stopping it from elsewhere.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            docker: self.docker.clone(),
            id: self.id.clone(),
            flags: self.flags.clone(),
        }
    }

    /// Waits for the container to exit and its output to end. A non-zero status is
    /// [`DockerError::ExitedEarly`] with the stderr tail, unless the container was
    /// stopped from here (then the exit is ours, not the probe's); a broken or
    /// non-UTF-8 stdout is [`DockerError::MalformedStream`]. The container stays
    /// until [`Self::stop`].
    pub fn wait(&mut self) -> Result<ContainerExit, DockerError> {
        if let Some(exit) = &self.exit {
            return Ok(exit.clone());
        }
        let output = self.output.take();
        let docker = self.docker.clone();
        let name = self.name.clone();
        let code = rt::block_on(async move {
            let code = wait_exit(&docker, &name).await?;
            if let Some(task) = output {
                // The attach stream ends with the container; bound it anyway.
                let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
            }
            Ok::<_, DockerError>(code)
        })??;
        let shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let stderr_tail = shared.stderr.lines();
        if let Some(detail) = &shared.malformed {
            return Err(DockerError::MalformedStream {
                name: self.name.clone(),
                detail: detail.clone(),
            });
        }
        let stopped = self.flags.stopping.load(Ordering::SeqCst);
        if let Some(code) = code.filter(|&c| c != 0 && !stopped) {
            return Err(DockerError::ExitedEarly {
                name: self.name.clone(),
                code,
                stderr_tail,
            });
        }
        let exit = ContainerExit {
            code,
            stderr_tail,
            mode: self.mode,
        };
        self.exit = Some(exit.clone());
        Ok(exit)
    }

    /// Kills and removes the container (force); again is a no-op.
    pub fn stop(&mut self) -> Result<(), DockerError> {
        self.stop_handle().stop()
    }
}

impl Drop for NodeContainer {
    fn drop(&mut self) {
        if !self.flags.removed.load(Ordering::SeqCst) {
            let docker = self.docker.clone();
            let id = self.id.clone();
            let _ = rt::block_on(async move { remove(&docker, &id).await });
        }
        if let Some(task) = self.output.take() {
            task.abort();
        }
    }
}

async fn start(spec: NodeSpec) -> Result<(NodeContainer, Receiver<String>), DockerError> {
    let docker = rt::connect().await?;
    if let BpffsMount::HostBind { rshared } = spec.bpffs {
        let info = docker
            .info()
            .await
            .map_err(|e| DockerError::api("info", &e))?;
        bpffs::check_local(info.name.as_deref().unwrap_or_default(), rshared)?;
    }
    let name = format!(
        "cc-{}-{}",
        spec.run_id,
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let modes: &[ContainerMode] = match spec.mode {
        ModePreference::PrivilegedFirst if !PRIVILEGED_CANNOT_START.load(Ordering::Relaxed) => {
            &[ContainerMode::Privileged, ContainerMode::NearPrivileged]
        }
        ModePreference::Privileged => &[ContainerMode::Privileged],
        _ => &[ContainerMode::NearPrivileged],
    };
    let mut last = None;
    for (i, &mode) in modes.iter().enumerate() {
        match attempt(&docker, &name, &spec, mode).await {
            Ok(started) => return Ok(started),
            Err(Attempt::CapsRefused(e)) if i + 1 < modes.len() => {
                PRIVILEGED_CANNOT_START.store(true, Ordering::Relaxed);
                last = Some(e);
            }
            Err(Attempt::CapsRefused(e) | Attempt::Failed(e)) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| DockerError::Create {
        name,
        message: "no container mode to try".into(),
    }))
}

enum Attempt {
    /// Start failed with runc's "unable to apply caps": try the next mode.
    CapsRefused(DockerError),
    Failed(DockerError),
}

/// One create + attach + start in one mode; removes the container on failure.
async fn attempt(
    docker: &Docker,
    name: &str,
    spec: &NodeSpec,
    mode: ContainerMode,
) -> Result<(NodeContainer, Receiver<String>), Attempt> {
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    let created = docker
        .create_container(Some(options), create_body(spec, name, mode))
        .await
        .map_err(|e| {
            Attempt::Failed(match status(&e) {
                Some(404) => DockerError::ImageMissing {
                    image: spec.image.clone(),
                },
                _ => DockerError::Create {
                    name: name.into(),
                    message: daemon_message(&e),
                },
            })
        })?;
    let id = created.id;
    let (tx, rx) = channel();
    let shared = Arc::new(Mutex::new(Shared::default()));
    let attach = AttachContainerOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .stream(true)
        .logs(false)
        .build();
    let output = match docker.attach_container(&id, Some(attach)).await {
        Ok(a) => tokio::spawn(forward(a.output, tx, shared.clone())),
        Err(e) => {
            let _ = remove(docker, &id).await;
            return Err(Attempt::Failed(DockerError::api(
                format!("attaching to container {name}"),
                &e,
            )));
        }
    };
    if let Err(e) = docker.start_container(&id, None).await {
        output.abort();
        let _ = remove(docker, &id).await;
        let message = daemon_message(&e);
        let caps = message.contains("unable to apply caps");
        let err = DockerError::Start {
            name: name.into(),
            mode: mode.as_str(),
            message,
        };
        return Err(if caps && mode == ContainerMode::Privileged {
            Attempt::CapsRefused(err)
        } else {
            Attempt::Failed(err)
        });
    }
    let node = NodeContainer {
        docker: docker.clone(),
        name: name.into(),
        id,
        mode,
        output: Some(output),
        shared,
        flags: Arc::default(),
        exit: None,
    };
    Ok((node, rx))
}

/// The create call: everything set here, nothing in the image (FROM scratch).
fn create_body(spec: &NodeSpec, name: &str, mode: ContainerMode) -> ContainerCreateBody {
    let mut labels = Owner::current().labels();
    labels.insert(super::LABEL_RUN.into(), spec.run_id.clone());
    let mut env = spec.env.clone();
    env.push(format!("{ENV_CONTAINER_MODE}={}", mode.as_str()));
    let mut host = HostConfig {
        auto_remove: Some(false),
        cgroupns_mode: Some(HostConfigCgroupnsModeEnum::PRIVATE),
        // Readable by `logs` whatever the daemon's default driver is (attach does not
        // need it; `docker logs` on a leftover container does).
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: None,
        }),
        mounts: bpffs_mounts(spec.bpffs),
        ..Default::default()
    };
    match mode {
        ContainerMode::Privileged => host.privileged = Some(true),
        ContainerMode::NearPrivileged => {
            host.cap_add = Some(vec!["ALL".into()]);
            host.cap_drop = Some(vec!["SYS_RESOURCE".into()]);
            host.security_opt = Some(vec!["seccomp=unconfined".into()]);
            host.masked_paths = Some(vec![]);
            host.readonly_paths = Some(vec![]);
        }
    }
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        hostname: Some(name.into()),
        entrypoint: (!spec.entrypoint.is_empty()).then(|| spec.entrypoint.clone()),
        cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
        env: Some(env),
        labels: Some(labels),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        open_stdin: Some(false),
        host_config: Some(host),
        ..Default::default()
    }
}

fn bpffs_mounts(bpffs: BpffsMount) -> Option<Vec<Mount>> {
    let BpffsMount::HostBind { rshared } = bpffs else {
        return None;
    };
    Some(vec![Mount {
        target: Some("/sys/fs/bpf".into()),
        source: Some("/sys/fs/bpf".into()),
        typ: Some(MountType::BIND),
        read_only: Some(false),
        bind_options: Some(MountBindOptions {
            propagation: Some(if rshared {
                MountBindOptionsPropagationEnum::RSHARED
            } else {
                MountBindOptionsPropagationEnum::RPRIVATE
            }),
            ..Default::default()
        }),
        ..Default::default()
    }])
}

type Output = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
>;

/// Stdout lines to the channel (kept draining if the receiver is gone, so stderr is
/// still read), stderr lines to the tail; the channel closes when this returns.
async fn forward(mut output: Output, tx: Sender<String>, shared: Arc<Mutex<Shared>>) {
    let mut out = LineSplitter::default();
    let mut err = LineSplitter::default();
    let lock = || shared.lock().unwrap_or_else(|p| p.into_inner());
    while let Some(item) = output.next().await {
        match item {
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                for line in out.push(&message) {
                    let _ = tx.send(line);
                }
            }
            Ok(LogOutput::StdErr { message }) => {
                let lines = err.push(&message);
                let mut s = lock();
                lines.into_iter().for_each(|l| s.stderr.push(l));
            }
            Ok(LogOutput::StdIn { .. }) => {}
            Err(e) => {
                lock().malformed = Some(daemon_message(&e));
                break;
            }
        }
    }
    if let Some(line) = out.finish() {
        let _ = tx.send(line);
    }
    let mut s = lock();
    if let Some(line) = err.finish() {
        s.stderr.push(line);
    }
    if let Some(p) = out.problem() {
        s.malformed.get_or_insert(p.to_string());
    }
}

/// The exit status; `None` if the container is already gone.
async fn wait_exit(docker: &Docker, id: &str) -> Result<Option<i64>, DockerError> {
    use bollard::errors::Error as E;
    let options = WaitContainerOptionsBuilder::default()
        .condition("not-running")
        .build();
    let mut waits = docker.wait_container(id, Some(options));
    match waits.next().await {
        Some(Ok(r)) => Ok(Some(r.status_code)),
        // bollard turns a non-zero status into an error; it is still a status.
        Some(Err(E::DockerContainerWaitError { code, .. })) => Ok(Some(code)),
        Some(Err(e)) if status(&e) == Some(404) => Ok(None),
        Some(Err(e)) => Err(DockerError::api(format!("waiting for container {id}"), &e)),
        None => Ok(None),
    }
}

/// Force-removes (which kills); an already-gone container is fine.
/// How long a stopping probe gets between SIGTERM and SIGKILL: it exits at once
/// on SIGTERM, after removing its tracing instance if it made one.
const STOP_GRACE_SECONDS: i32 = 2;

async fn remove(docker: &Docker, id: &str) -> Result<(), DockerError> {
    // A container that already exited answers 304 at once; a running one gets
    // SIGTERM. Whatever this says, the forced removal below is what must happen.
    let stop = StopContainerOptionsBuilder::default()
        .t(STOP_GRACE_SECONDS)
        .build();
    let _ = docker.stop_container(id, Some(stop)).await;
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        Err(e) if status(&e) == Some(404) => Ok(()),
        // "removal already in progress": someone else is removing it.
        Err(e) if status(&e) == Some(409) => Ok(()),
        Err(e) => Err(DockerError::api(format!("removing container {id}"), &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NodeSpec {
        NodeSpec {
            image: "cilium-conformance-probe:test".into(),
            run_id: "ab12".into(),
            entrypoint: vec!["/probe".into()],
            cmd: vec!["run".into()],
            env: vec!["RUST_BACKTRACE=1".into()],
            ..Default::default()
        }
    }

    #[test]
    fn near_privileged_is_the_mode_that_starts_on_docker_20_10() {
        let body = create_body(&spec(), "cc-ab12-1", ContainerMode::NearPrivileged);
        let host = body.host_config.unwrap();
        assert_eq!(host.privileged, None);
        assert_eq!(host.cap_add, Some(vec!["ALL".to_string()]));
        assert_eq!(host.cap_drop, Some(vec!["SYS_RESOURCE".to_string()]));
        assert_eq!(
            host.security_opt,
            Some(vec!["seccomp=unconfined".to_string()])
        );
        assert_eq!(host.masked_paths, Some(vec![]));
        assert_eq!(host.readonly_paths, Some(vec![]));
        assert_eq!(
            host.cgroupns_mode,
            Some(HostConfigCgroupnsModeEnum::PRIVATE)
        );
        assert_eq!(host.auto_remove, Some(false));
        assert_eq!(host.mounts, None);
        assert_eq!(host.network_mode, None, "the default bridge: its own netns");
        let env = body.env.unwrap();
        assert_eq!(
            env,
            [
                "RUST_BACKTRACE=1",
                "CONFORMANCE_CONTAINER_MODE=near-privileged"
            ]
        );
    }

    #[test]
    fn privileged_sets_only_privileged() {
        let body = create_body(&spec(), "cc-ab12-1", ContainerMode::Privileged);
        let host = body.host_config.unwrap();
        assert_eq!(host.privileged, Some(true));
        assert_eq!(host.cap_add, None);
        assert_eq!(host.masked_paths, None);
        assert!(
            body.env
                .unwrap()
                .contains(&"CONFORMANCE_CONTAINER_MODE=privileged".to_string())
        );
    }

    #[test]
    fn labels_carry_the_run_and_its_owner() {
        let body = create_body(&spec(), "cc-ab12-1", ContainerMode::Privileged);
        let labels = body.labels.unwrap();
        assert_eq!(
            labels.get(super::super::LABEL).map(String::as_str),
            Some("1")
        );
        assert_eq!(
            labels.get(super::super::LABEL_RUN).map(String::as_str),
            Some("ab12")
        );
        assert_eq!(Owner::from_labels(&labels), Some(Owner::current()));
        assert_eq!(body.hostname.as_deref(), Some("cc-ab12-1"));
        assert_eq!(body.entrypoint, Some(vec!["/probe".to_string()]));
        assert_eq!(body.cmd, Some(vec!["run".to_string()]));
    }

    #[test]
    fn an_empty_entrypoint_keeps_the_image_one() {
        let s = NodeSpec {
            entrypoint: vec![],
            cmd: vec![],
            ..spec()
        };
        let body = create_body(&s, "cc-ab12-1", ContainerMode::Privileged);
        assert_eq!(body.entrypoint, None);
        assert_eq!(body.cmd, None);
    }

    #[test]
    fn bpffs_binds_only_when_asked_with_the_asked_propagation() {
        assert_eq!(bpffs_mounts(BpffsMount::None), None);
        assert_eq!(bpffs_mounts(BpffsMount::Private), None);
        for (rshared, want) in [
            (true, MountBindOptionsPropagationEnum::RSHARED),
            (false, MountBindOptionsPropagationEnum::RPRIVATE),
        ] {
            let m = bpffs_mounts(BpffsMount::HostBind { rshared }).unwrap();
            assert_eq!(m.len(), 1);
            assert_eq!(m[0].target.as_deref(), Some("/sys/fs/bpf"));
            assert_eq!(m[0].source.as_deref(), Some("/sys/fs/bpf"));
            assert_eq!(m[0].typ, Some(MountType::BIND));
            assert_eq!(m[0].bind_options.as_ref().unwrap().propagation, Some(want));
        }
    }

    #[test]
    fn modes_name_themselves_as_the_fact_does() {
        assert_eq!(ContainerMode::Privileged.as_str(), "privileged");
        assert_eq!(ContainerMode::NearPrivileged.to_string(), "near-privileged");
        assert!(
            ContainerMode::NearPrivileged
                .describe()
                .contains("all caps but SYS_RESOURCE")
        );
    }
}
