//! One error type for the Docker mechanics, each variant one line that says what to do.

use bollard::errors::Error as ApiError;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "Docker is not reachable at {endpoint}: {detail}; start the Docker daemon (or Docker Desktop, OrbStack, Colima), or choose the daemon as for the docker CLI: `docker context use NAME`, DOCKER_CONTEXT=NAME, or DOCKER_HOST pointing at its socket"
    )]
    Unreachable {
        /// The host and where it came from (`unix:///… (from docker context colima)`).
        endpoint: String,
        detail: String,
    },
    /// The docker CLI configuration names no daemon this client can reach: a context
    /// without metadata, a malformed `config.json` or `meta.json`, a TLS context. Bad
    /// input, not infrastructure (see [`DockerError::is_bad_input`]).
    #[error("{0}")]
    Context(String),
    #[error(
        "image {image} is not on the Docker daemon (no registry is used): build it with `cargo xtask image`, or pass --probe-image with an image that is"
    )]
    ImageMissing { image: String },
    #[error("creating container {name} failed: {message}")]
    Create { name: String, message: String },
    #[error("starting container {name} ({mode}) failed: {message}")]
    Start {
        name: String,
        mode: &'static str,
        message: String,
    },
    #[error(
        "container {name} exited early with status {code}: {}",
        tail_text(stderr_tail)
    )]
    ExitedEarly {
        name: String,
        code: i64,
        stderr_tail: Vec<String>,
    },
    #[error("container {name}: malformed output stream: {detail}")]
    MalformedStream { name: String, detail: String },
    #[error("{0}")]
    Bpffs(String),
    #[error("Docker {op} failed: {message}")]
    Api { op: String, message: String },
    #[error("cannot start the Docker client's runtime: {0}")]
    Runtime(String),
}

impl DockerError {
    /// The user's own configuration is wrong or unsupported ([`DockerError::Context`]):
    /// for callers to report as usage (exit 2), where every other error is
    /// infrastructure (exit 3).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, DockerError::Context(_))
    }

    /// A connection-level failure at `endpoint`.
    pub(crate) fn unreachable(endpoint: &str, e: &ApiError) -> Self {
        let mut detail = one_line(&e.to_string());
        if detail.contains("ermission denied") {
            detail.push_str(" (run as root or join the `docker` group)");
        }
        DockerError::Unreachable {
            endpoint: endpoint.into(),
            detail,
        }
    }

    pub(crate) fn api(op: impl Into<String>, e: &ApiError) -> Self {
        DockerError::Api {
            op: op.into(),
            message: daemon_message(e),
        }
    }
}

/// The daemon's own words where it sent some, else bollard's, on one line.
pub(crate) fn daemon_message(e: &ApiError) -> String {
    match e {
        ApiError::DockerResponseServerError {
            status_code,
            message,
        } => one_line(&format!("{} (HTTP {status_code})", message.trim())),
        other => one_line(&other.to_string()),
    }
}

/// The HTTP status of a daemon error response, if it was one.
pub(crate) fn status(e: &ApiError) -> Option<u16> {
    match e {
        ApiError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

pub(crate) fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        "nothing on stderr".into()
    } else {
        format!("stderr: {}", one_line(&tail.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_is_one_line() {
        let errors = [
            DockerError::Unreachable {
                endpoint: "unix:///var/run/docker.sock".into(),
                detail: "no such file".into(),
            },
            DockerError::ImageMissing {
                image: "cilium-conformance-probe:0.1.0".into(),
            },
            DockerError::ExitedEarly {
                name: "cc-ab12-1".into(),
                code: 2,
                stderr_tail: vec!["first".into(), "probe: --fault x: want ID=KIND".into()],
            },
            DockerError::ExitedEarly {
                name: "cc-ab12-1".into(),
                code: 137,
                stderr_tail: vec![],
            },
        ];
        for e in &errors {
            let text = e.to_string();
            assert!(!text.contains('\n'), "{text}");
        }
        assert!(errors[0].to_string().contains("DOCKER_HOST"));
        assert!(errors[0].to_string().contains("docker context use"));
        assert!(errors[0].to_string().contains("DOCKER_CONTEXT"));
        assert!(!errors[0].to_string().contains("docker context inspect"));
        assert!(!errors[0].is_bad_input());
        assert!(errors[1].to_string().contains("cargo xtask image"));
        assert_eq!(
            errors[2].to_string(),
            "container cc-ab12-1 exited early with status 2: stderr: first; probe: --fault x: want ID=KIND"
        );
        assert!(errors[3].to_string().ends_with("nothing on stderr"));
    }

    #[test]
    fn daemon_messages_keep_the_daemon_words_on_one_line() {
        let e = ApiError::DockerResponseServerError {
            status_code: 500,
            message: "OCI runtime create failed:\nunable to apply caps: operation not permitted\n"
                .into(),
        };
        assert_eq!(
            daemon_message(&e),
            "OCI runtime create failed:; unable to apply caps: operation not permitted (HTTP 500)"
        );
        assert_eq!(status(&e), Some(500));
    }
}
