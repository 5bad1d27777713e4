//! The `container` target: the probe in a k3d-node-like Docker container, one
//! instance per daemon. The probe builds its namespaces inside the container, so
//! what is measured is what a node container of this engine and kernel allows:
//! privileged where the engine can start it, else near-privileged, and the facts
//! say which (`container.mode`).
//!
//! The image (FROM scratch around the static probe for the daemon's
//! architecture) is made by the caller before [`Target::start`] and handed in as
//! [`ProbeBinary::image`]; this target only starts, streams and removes.

use super::docker::{self, ContainerMode, DockerError, NodeContainer, NodeSpec, StopHandle};
use super::{
    InstanceHandle, InstanceId, Preamble, ProbeArgs, ProbeBinary, ProbeExit, RunControl,
    StartedInstance, Target, TargetError, TargetKind,
};
use std::sync::Mutex;

/// Where the probe sits in the image `cargo xtask image` builds.
pub const PROBE_PATH_IN_IMAGE: &str = "/probe";

#[derive(Debug, Default)]
pub struct Container;

impl Container {
    pub fn new() -> Container {
        Container
    }
}

/// A wrong docker CLI configuration is the user's input (exit 2); anything else
/// the daemon or Docker does is infrastructure (exit 3).
fn infra(e: DockerError) -> TargetError {
    if e.is_bad_input() {
        TargetError::Usage(e.to_string())
    } else {
        TargetError::Infrastructure(e.to_string())
    }
}

impl Target for Container {
    fn kind(&self) -> TargetKind {
        TargetKind::Container
    }

    fn preflight(&self) -> Result<Vec<InstanceId>, TargetError> {
        let info = docker::preflight().map_err(infra)?;
        if info.os != "linux" {
            return Err(TargetError::Usage(format!(
                "the Docker daemon at {} runs {} containers; the probe needs a Linux engine",
                info.endpoint, info.os
            )));
        }
        // What a killed earlier run left: removed before this run adds its own.
        docker::sweep(None).map_err(infra)?;
        let name = if info.hostname.is_empty() {
            "docker".to_string()
        } else {
            format!("docker on {}", info.hostname)
        };
        Ok(vec![InstanceId::new(
            TargetKind::Container,
            name,
            info.arch,
        )])
    }

    fn start(
        &self,
        _instance: &InstanceId,
        probe: &ProbeBinary,
        args: &ProbeArgs,
        _control: &RunControl,
    ) -> Result<StartedInstance, TargetError> {
        let image = probe.image.clone().ok_or_else(|| {
            TargetError::Infrastructure(
                "the container target needs a probe image (cargo xtask image)".into(),
            )
        })?;
        let spec = NodeSpec {
            image,
            run_id: args.run_id.clone(),
            entrypoint: vec![PROBE_PATH_IN_IMAGE.to_string()],
            cmd: args.to_argv(),
            ..NodeSpec::default()
        };
        let (node, lines) = NodeContainer::start(spec).map_err(infra)?;
        let handle = NodeHandle {
            stop: node.stop_handle(),
            mode: node.mode(),
            node: Mutex::new(node),
        };
        Ok(StartedInstance {
            lines,
            handle: Box::new(handle),
            // Attached stdout is the probe's own: nothing to skip.
            preamble: Preamble::None,
        })
    }
}

struct NodeHandle {
    stop: StopHandle,
    mode: ContainerMode,
    node: Mutex<NodeContainer>,
}

impl InstanceHandle for NodeHandle {
    fn stop(&self) {
        // Removal is what matters; a daemon error here is reported by `wait`.
        let _ = self.stop.stop();
    }

    fn wait(&self) -> Result<ProbeExit, TargetError> {
        let mut node = self.node.lock().unwrap_or_else(|p| p.into_inner());
        let privilege = format!("container, {}", self.mode.describe());
        let exit = match node.wait() {
            Ok(exit) => ProbeExit {
                code: exit.code.map(|c| c as i32),
                stderr_tail: exit.stderr_tail,
                privilege,
                told: Default::default(),
            },
            // A probe that failed is the report's to show, not the target's error.
            Err(DockerError::ExitedEarly {
                code, stderr_tail, ..
            }) => ProbeExit {
                code: Some(code as i32),
                stderr_tail,
                privilege,
                told: Default::default(),
            },
            Err(e) => {
                let _ = node.stop();
                return Err(infra(e));
            }
        };
        node.stop().map_err(infra)?;
        Ok(exit)
    }
}
