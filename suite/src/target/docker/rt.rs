//! The module's own tokio runtime and the daemon connection.
//!
//! One process-wide multi-thread runtime with two workers: the output streams of every
//! node container run on it in the background while callers block in [`block_on`]. It
//! is never dropped (a static), so no drop can panic inside someone else's runtime.

use super::DockerError;
use bollard::Docker;
use std::future::Future;
use std::sync::OnceLock;
use tokio::runtime::Runtime;

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

pub(crate) fn runtime() -> Result<&'static Runtime, DockerError> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("cc-docker")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| DockerError::Runtime(e.clone()))
}

/// Runs `fut` to completion from synchronous code. A caller that is itself inside a
/// tokio runtime (where `block_on` would panic) gets it run from a helper thread.
pub(crate) fn block_on<F>(fut: F) -> Result<F::Output, DockerError>
where
    F: Future + Send,
    F::Output: Send,
{
    let rt = runtime()?;
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(rt.block_on(fut));
    }
    std::thread::scope(|s| {
        s.spawn(|| rt.block_on(fut))
            .join()
            .map_err(|_| DockerError::Runtime("a Docker call panicked".into()))
    })
}

/// `DOCKER_HOST`, or the platform's default socket.
pub fn endpoint() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => host,
        // bollard's DEFAULT_DOCKER_HOST, which it does not export.
        _ => "unix:///var/run/docker.sock".to_string(),
    }
}

/// Connects as the docker CLI would (`DOCKER_HOST` first, unix or tcp) and pins the
/// daemon's API version, so an older engine (20.10 speaks 1.41) gets calls it knows.
pub async fn connect() -> Result<Docker, DockerError> {
    connect_to(&endpoint()).await
}

async fn connect_to(endpoint: &str) -> Result<Docker, DockerError> {
    let unreachable = |e: bollard::errors::Error| DockerError::unreachable(endpoint, &e);
    let docker = Docker::connect_with_host(endpoint).map_err(unreachable)?;
    docker.negotiate_version().await.map_err(unreachable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_works_from_inside_another_runtime() {
        let outer = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = outer.block_on(async { block_on(async { 7 }).unwrap() });
        assert_eq!(got, 7);
        assert_eq!(block_on(async { 8 }).unwrap(), 8);
    }

    #[test]
    fn an_absent_socket_is_one_line_naming_it_and_the_way_out() {
        let e = block_on(connect_to("unix:///nonexistent/docker.sock"))
            .unwrap()
            .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, DockerError::Unreachable { .. }), "{text}");
        assert!(text.contains("unix:///nonexistent/docker.sock"), "{text}");
        assert!(text.contains("DOCKER_HOST"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn an_unknown_scheme_is_unreachable_too() {
        let e = block_on(connect_to("ftp://example")).unwrap().unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Docker is not reachable at ftp://example"),
            "{e}"
        );
    }
}
