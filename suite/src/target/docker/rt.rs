//! The module's own tokio runtime and the daemon connection.
//!
//! One process-wide multi-thread runtime with two workers: the output streams of every
//! node container run on it in the background while callers block in [`block_on`]. It
//! is never dropped (a static), so no drop can panic inside someone else's runtime.

use super::DockerError;
use super::context::{self, Endpoint};
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
pub fn block_on<F>(fut: F) -> Result<F::Output, DockerError>
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

/// The daemon the docker CLI would use: `DOCKER_HOST`, else the docker context
/// (`DOCKER_CONTEXT`, else `currentContext` in `$DOCKER_CONFIG/config.json`), else the
/// platform's default socket (see [`super::context`]).
pub fn endpoint() -> Result<Endpoint, DockerError> {
    context::resolve_from_env()
}

/// Connects as the docker CLI would ([`endpoint`]: `DOCKER_HOST`, else the docker
/// context; unix or tcp) and pins the daemon's API version, so an older engine (20.10
/// speaks 1.41) gets calls it knows.
///
/// One client per process and endpoint: the version is negotiated once, and every
/// later caller (the sweep, the image build, each node container) gets a clone of
/// the same client, which shares its connection pool. All of them run on this
/// module's runtime, the one the pool belongs to.
pub async fn connect() -> Result<Docker, DockerError> {
    let endpoint = endpoint()?;
    if let Some((host, docker)) = CLIENT.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
        && *host == endpoint.host
    {
        return Ok(docker.clone());
    }
    let docker = connect_to(&endpoint).await?;
    *CLIENT.lock().unwrap_or_else(|p| p.into_inner()) = Some((endpoint.host, docker.clone()));
    Ok(docker)
}

static CLIENT: std::sync::Mutex<Option<(String, Docker)>> = std::sync::Mutex::new(None);

async fn connect_to(endpoint: &Endpoint) -> Result<Docker, DockerError> {
    let described = endpoint.to_string();
    let unreachable = |e: bollard::errors::Error| DockerError::unreachable(&described, &e);
    let docker = Docker::connect_with_host(&endpoint.host).map_err(unreachable)?;
    docker.negotiate_version().await.map_err(unreachable)
}

#[cfg(test)]
mod tests {
    use super::super::context::EndpointSource;
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

    fn from_docker_host(host: &str) -> Endpoint {
        Endpoint {
            host: host.into(),
            source: EndpointSource::DockerHost,
        }
    }

    #[test]
    fn an_absent_socket_is_one_line_naming_it_and_the_way_out() {
        let e = block_on(connect_to(&from_docker_host(
            "unix:///nonexistent/docker.sock",
        )))
        .unwrap()
        .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, DockerError::Unreachable { .. }), "{text}");
        assert!(
            text.contains("unix:///nonexistent/docker.sock (from DOCKER_HOST)"),
            "{text}"
        );
        assert!(text.contains("DOCKER_HOST"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn an_unknown_scheme_is_unreachable_too() {
        let e = block_on(connect_to(&from_docker_host("ftp://example")))
            .unwrap()
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Docker is not reachable at ftp://example (from DOCKER_HOST)"),
            "{e}"
        );
    }
}
