//! The container target's Docker mechanics: a k3d-node-like container with the probe in
//! it, its stdout as lines, and its removal on every path. Synchronous on purpose: the
//! runner and xtask are synchronous, so everything async (bollard, tokio) stays in here,
//! on a small runtime this module owns (`rt`).
//!
//! - [`preflight`]: is the daemon there, which version, which architecture (the probe
//!   must be built for the daemon's, not the caller's).
//! - [`NodeContainer`]: one node container per probe instance, privileged first and
//!   near-privileged where privileged cannot start (Docker 20.10 on a host whose
//!   capability bounding set lacks CAP_SYS_RESOURCE); the mode that ran is returned and
//!   handed to the probe as `CONFORMANCE_CONTAINER_MODE`.
//! - [`sweep`]: removes what a killed earlier run left, and only that.
//!
//! Every error is one [`DockerError`] line; callers map them to exit 3.

mod bpffs;
mod context;
mod error;
mod lines;
mod node;
mod rt;
mod sweep;

pub use context::{ContextFrom, DEFAULT_HOST, Endpoint, EndpointSource};
pub use error::DockerError;
pub use node::{
    BpffsMount, ContainerExit, ContainerMode, ENV_CONTAINER_MODE, ModePreference, NodeContainer,
    NodeSpec, StopHandle,
};
/// The one way this project reaches Docker (the container target and `cargo xtask image`):
/// the daemon the docker CLI would use (`DOCKER_HOST`, else the docker context).
pub use rt::{block_on, connect, endpoint};
pub use sweep::{
    LABEL, LABEL_BOOT, LABEL_HOST, LABEL_PID, LABEL_PID_START, LABEL_RUN, Owner, sweep,
};

/// What [`preflight`] learnt about the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonInfo {
    /// Where it was reached and why there: `unix:///… (from docker context colima)`.
    pub endpoint: String,
    /// The engine's version (`20.10.24+dfsg1`).
    pub server_version: String,
    /// The API version the calls are pinned to (`1.41`).
    pub api_version: String,
    /// `x86_64` or `aarch64` (Docker's `arm64`/`amd64` spellings normalised): the
    /// architecture the probe must be built for.
    pub arch: String,
    /// `linux` for every engine that can run the probe.
    pub os: String,
    /// `1` or `2`; empty when the daemon does not say.
    pub cgroup_version: String,
    /// `overlay2`, `fuse-overlayfs`, ...
    pub storage_driver: String,
    /// The default runtime (`runc`).
    pub runtime: String,
    /// The daemon host's hostname: equal to this host's when the daemon runs here (so
    /// its `/sys/fs/bpf` is the one this process sees).
    pub hostname: String,
}

/// Connects as the docker CLI would (`DOCKER_HOST`, else the docker context), pins the
/// daemon's API version and pings it.
pub fn preflight() -> Result<DaemonInfo, DockerError> {
    rt::block_on(async {
        let docker = rt::connect().await?;
        let endpoint = rt::endpoint()?.to_string();
        let unreachable = |e: bollard::errors::Error| DockerError::unreachable(&endpoint, &e);
        docker.ping().await.map_err(unreachable)?;
        let version = docker.version().await.map_err(unreachable)?;
        let info = docker.info().await.map_err(unreachable)?;
        Ok(DaemonInfo {
            endpoint: endpoint.clone(),
            server_version: version.version.unwrap_or_default(),
            api_version: docker.client_version().to_string(),
            arch: normalise_arch(info.architecture.as_deref().unwrap_or_default()),
            os: info.os_type.unwrap_or_default(),
            cgroup_version: info
                .cgroup_version
                .map(|v| v.to_string())
                .unwrap_or_default(),
            storage_driver: info.driver.unwrap_or_default(),
            runtime: info.default_runtime.unwrap_or_default(),
            hostname: info.name.unwrap_or_default(),
        })
    })?
}

/// Docker reports `uname -m` on Linux engines but Go's names elsewhere.
fn normalise_arch(raw: &str) -> String {
    match raw {
        "amd64" | "x86-64" => "x86_64".into(),
        "arm64" | "armv8" => "aarch64".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_arch_names_map_to_rust_target_arches() {
        assert_eq!(normalise_arch("x86_64"), "x86_64");
        assert_eq!(normalise_arch("amd64"), "x86_64");
        assert_eq!(normalise_arch("arm64"), "aarch64");
        assert_eq!(normalise_arch("aarch64"), "aarch64");
        assert_eq!(normalise_arch("riscv64"), "riscv64");
    }
}
