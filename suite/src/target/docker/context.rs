//! Which Docker daemon to reach, decided as the docker CLI decides it
//! (docker/cli `cli/command/cli.go` `resolveContextName`, `resolveDockerEndpoint`;
//! `cli/context/store`; `cli/config`):
//!
//! 1. `DOCKER_HOST`, when set and not empty;
//! 2. else the context named by `DOCKER_CONTEXT`, when set and not empty;
//! 3. else `currentContext` in `$DOCKER_CONFIG/config.json` (`DOCKER_CONFIG` defaults
//!    to `~/.docker`);
//! 4. a context named `default`, or none, is the platform's default socket.
//!
//! A named context is `$DOCKER_CONFIG/contexts/meta/<sha256 hex of its name>/meta.json`
//! as `docker context create` writes it, e.g.
//! `{"Name":"colima","Metadata":{},"Endpoints":{"docker":{"Host":"unix:///Users/me/.colima/default/docker.sock","SkipTLSVerify":false}}}`;
//! its `Endpoints.docker.Host` is the daemon.
//!
//! Where this is stricter than the CLI, it says so in one line rather than reach a
//! daemon the user did not mean: a malformed `config.json` is an error here (the CLI
//! warns and carries on with the default context), and a context that needs TLS
//! (certificates under `contexts/tls/<hash>/docker`, or `SkipTLSVerify` on a tcp
//! endpoint) is refused, because this client speaks plain HTTP only.
//!
//! Every error is [`DockerError::Context`]: bad input (the user's configuration), one
//! line naming the file.

use super::DockerError;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// The platform's default daemon socket (bollard's `DEFAULT_DOCKER_HOST`, which it does
/// not export; the CLI's `DefaultDockerHost`).
pub const DEFAULT_HOST: &str = if cfg!(windows) {
    "npipe:////./pipe/docker_engine"
} else {
    "unix:///var/run/docker.sock"
};

/// The name the CLI reserves for "no context": `DOCKER_HOST` or the default socket.
const DEFAULT_CONTEXT: &str = "default";

/// The daemon to reach and why that one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// What bollard connects to: `unix:///var/run/docker.sock`, `tcp://host:2375`.
    pub host: String,
    pub source: EndpointSource,
}

/// Where an [`Endpoint`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSource {
    /// The `DOCKER_HOST` environment variable.
    DockerHost,
    /// No context, or the one named `default`: the platform's default socket.
    Default,
    /// A named docker context.
    Context { name: String, from: ContextFrom },
}

/// Who named the docker context in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextFrom {
    /// The `DOCKER_CONTEXT` environment variable.
    Env,
    /// `currentContext` in this `config.json` (what `docker context use` writes).
    ConfigFile(PathBuf),
}

impl fmt::Display for Endpoint {
    /// `unix:///… (from docker context colima)`: the host and where it came from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            EndpointSource::DockerHost => write!(f, "{} (from DOCKER_HOST)", self.host),
            EndpointSource::Default => write!(f, "{} (the default socket)", self.host),
            EndpointSource::Context { name, .. } => {
                write!(f, "{} (from docker context {name})", self.host)
            }
        }
    }
}

impl fmt::Display for ContextFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContextFrom::Env => f.write_str("from DOCKER_CONTEXT"),
            ContextFrom::ConfigFile(path) => {
                write!(f, "from currentContext in {}", path.display())
            }
        }
    }
}

/// The CLI's configuration directory: `DOCKER_CONFIG` when set and not empty, else
/// `.docker` in the home directory; `None` when neither is known.
pub fn config_dir(docker_config: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    match docker_config {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => home
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".docker")),
    }
}

/// [`resolve`] with this process's environment.
pub fn resolve_from_env() -> Result<Endpoint, DockerError> {
    let dir = config_dir(std::env::var_os("DOCKER_CONFIG"), std::env::var_os("HOME"));
    resolve(
        std::env::var("DOCKER_HOST").ok().as_deref(),
        std::env::var("DOCKER_CONTEXT").ok().as_deref(),
        dir.as_deref(),
    )
}

/// The endpoint the docker CLI would use given the values of `DOCKER_HOST` and
/// `DOCKER_CONTEXT` and the configuration directory (see the module's comment). Reads
/// only files under `config_dir`; a missing directory or `config.json` is no context.
pub fn resolve(
    docker_host: Option<&str>,
    docker_context: Option<&str>,
    config_dir: Option<&Path>,
) -> Result<Endpoint, DockerError> {
    if let Some(host) = docker_host.filter(|h| !h.is_empty()) {
        return Ok(Endpoint {
            host: host.to_string(),
            source: EndpointSource::DockerHost,
        });
    }
    let named = match docker_context.filter(|c| !c.is_empty()) {
        Some(name) => Some((name.to_string(), ContextFrom::Env)),
        None => match config_dir {
            Some(dir) => current_context(dir)?,
            None => None,
        },
    };
    match named {
        Some((name, from)) if name != DEFAULT_CONTEXT => match config_dir {
            Some(dir) => context_endpoint(dir, name, from),
            None => Err(DockerError::Context(format!(
                "context \"{name}\" ({from}) cannot be looked up: neither DOCKER_CONFIG nor HOME is set"
            ))),
        },
        _ => Ok(Endpoint {
            host: DEFAULT_HOST.to_string(),
            source: EndpointSource::Default,
        }),
    }
}

/// The directory name a context's files live under: the sha256 of its name, in hex
/// (the CLI's `digest.FromString(name).Encoded()`).
pub fn context_dir_name(name: &str) -> String {
    Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The part of `config.json` that names the context.
#[derive(Deserialize)]
struct ConfigFile {
    #[serde(rename = "currentContext", default)]
    current_context: Option<String>,
}

/// `currentContext` from `dir/config.json`, when there is one and it is not empty.
fn current_context(dir: &Path) -> Result<Option<(String, ContextFrom)>, DockerError> {
    let path = dir.join("config.json");
    let Some(text) = read_if_present(&path)? else {
        return Ok(None);
    };
    let config: ConfigFile = serde_json::from_str(&text).map_err(|e| {
        DockerError::Context(format!(
            "{}: malformed Docker CLI configuration: {e}",
            path.display()
        ))
    })?;
    Ok(config
        .current_context
        .filter(|c| !c.is_empty())
        .map(|c| (c, ContextFrom::ConfigFile(path))))
}

/// `meta.json` as the CLI writes it (Go's decoder matches keys regardless of case, so
/// the lower-case spellings are accepted too); `Metadata` and other endpoints are not
/// needed.
#[derive(Deserialize)]
struct ContextMeta {
    #[serde(rename = "Endpoints", alias = "endpoints", default)]
    endpoints: Endpoints,
}

#[derive(Deserialize, Default)]
struct Endpoints {
    docker: Option<DockerEndpoint>,
}

#[derive(Deserialize)]
struct DockerEndpoint {
    #[serde(rename = "Host", alias = "host", default)]
    host: Option<String>,
    #[serde(rename = "SkipTLSVerify", alias = "skipTLSVerify", default)]
    skip_tls_verify: bool,
}

fn context_endpoint(dir: &Path, name: String, from: ContextFrom) -> Result<Endpoint, DockerError> {
    let hash = context_dir_name(&name);
    let contexts = dir.join("contexts");
    let path = contexts.join("meta").join(&hash).join("meta.json");
    let Some(text) = read_if_present(&path)? else {
        return Err(DockerError::Context(format!(
            "context \"{name}\" ({from}) has no metadata at {} (`docker context ls` lists the contexts there are)",
            path.display()
        )));
    };
    let meta: ContextMeta = serde_json::from_str(&text).map_err(|e| {
        DockerError::Context(format!(
            "{}: malformed metadata of docker context \"{name}\" ({from}): {e}",
            path.display()
        ))
    })?;
    let Some(docker) = meta.endpoints.docker else {
        return Err(DockerError::Context(format!(
            "{}: docker context \"{name}\" ({from}) has no docker endpoint (Endpoints.docker)",
            path.display()
        )));
    };
    // An empty Host is the CLI's default host too (it sets none on the client).
    let host = docker
        .host
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.to_string());
    // The CLI uses TLS only off sockets: certificates stored with the context, or an
    // unverified TLS connection when SkipTLSVerify is set.
    if !is_socket(&host) {
        let tls = contexts.join("tls").join(&hash).join("docker");
        let tls_reason = if tls.is_dir() {
            Some(format!("with the certificates in {}", tls.display()))
        } else if docker.skip_tls_verify {
            Some(format!("SkipTLSVerify is set in {}", path.display()))
        } else {
            None
        };
        if let Some(reason) = tls_reason {
            return Err(DockerError::Context(format!(
                "docker context \"{name}\" ({from}) reaches {host} over TLS ({reason}), which this suite does not support yet (nor DOCKER_TLS_VERIFY/DOCKER_CERT_PATH): reach the daemon over a unix socket instead, e.g. `ssh -NL /tmp/docker.sock:/var/run/docker.sock HOST` and DOCKER_HOST=unix:///tmp/docker.sock"
            )));
        }
    }
    Ok(Endpoint {
        host,
        source: EndpointSource::Context { name, from },
    })
}

/// The CLI's `isSocket`: endpoints it never speaks TLS to.
fn is_socket(host: &str) -> bool {
    matches!(
        host.split_once("://").map(|(scheme, _)| scheme),
        Some("unix" | "npipe" | "fd")
    )
}

fn read_if_present(path: &Path) -> Result<Option<String>, DockerError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DockerError::Context(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by `docker context create` / `docker context use` (docker CLI 28.2.2) in
    // an empty DOCKER_CONFIG, byte for byte; the directory names are the CLI's.
    const CONFIG_JSON: &str = "{\n\t\"auths\": {},\n\t\"currentContext\": \"cc-local\"\n}";
    const LOCAL_DIR: &str = "1664b033c92ae732e4e194431f84f98923dc25dcec8dcd38c2df13f8d71d6d9b";
    const LOCAL_META: &str = r#"{"Name":"cc-local","Metadata":{"Description":"local socket"},"Endpoints":{"docker":{"Host":"unix:///var/run/docker.sock","SkipTLSVerify":false}}}"#;
    const TLS_DIR: &str = "8bb59cf38c6ebf1a97fc6a136bfeb2d42b50cdf41790fca9179e239300f42669";
    const TLS_META: &str = r#"{"Name":"cc-tls","Metadata":{},"Endpoints":{"docker":{"Host":"tcp://10.0.0.2:2376","SkipTLSVerify":false}}}"#;
    const SKIP_VERIFY_META: &str = r#"{"Name":"cc-tcp","Metadata":{},"Endpoints":{"docker":{"Host":"tcp://10.0.0.1:2376","SkipTLSVerify":true}}}"#;
    // As Colima's `colima start` leaves it on a Mac.
    const COLIMA_META: &str = r#"{"Name":"colima","Metadata":{"Description":"colima"},"Endpoints":{"docker":{"Host":"unix:///Users/me/.colima/default/docker.sock","SkipTLSVerify":false}}}"#;

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn write_meta(dir: &Path, name: &str, text: &str) {
        write(
            dir,
            &format!("contexts/meta/{}/meta.json", context_dir_name(name)),
            text,
        );
    }

    /// A DOCKER_CONFIG as the CLI leaves it: cc-local current, colima beside it.
    fn cli_config() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "config.json", CONFIG_JSON);
        write(
            dir.path(),
            &format!("contexts/meta/{LOCAL_DIR}/meta.json"),
            LOCAL_META,
        );
        write_meta(dir.path(), "colima", COLIMA_META);
        dir
    }

    fn error(r: Result<Endpoint, DockerError>) -> String {
        let e = r.unwrap_err();
        assert!(matches!(e, DockerError::Context(_)), "{e:?}");
        assert!(e.is_bad_input(), "{e:?}");
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text}");
        text
    }

    #[test]
    fn context_directories_are_named_as_the_cli_names_them() {
        assert_eq!(context_dir_name("cc-local"), LOCAL_DIR);
        assert_eq!(context_dir_name("cc-tls"), TLS_DIR);
    }

    #[test]
    fn docker_host_wins_over_every_context() {
        let dir = cli_config();
        let got = resolve(
            Some("tcp://10.1.2.3:2375"),
            Some("nosuch"),
            Some(dir.path()),
        )
        .unwrap();
        assert_eq!(got.host, "tcp://10.1.2.3:2375");
        assert_eq!(got.source, EndpointSource::DockerHost);
        assert_eq!(got.to_string(), "tcp://10.1.2.3:2375 (from DOCKER_HOST)");
    }

    #[test]
    fn an_empty_docker_host_is_unset() {
        let dir = cli_config();
        let got = resolve(Some(""), None, Some(dir.path())).unwrap();
        assert_eq!(got.host, "unix:///var/run/docker.sock");
        assert!(
            matches!(got.source, EndpointSource::Context { ref name, .. } if name == "cc-local")
        );
    }

    #[test]
    fn docker_context_wins_over_config_json() {
        let dir = cli_config();
        let got = resolve(None, Some("colima"), Some(dir.path())).unwrap();
        assert_eq!(got.host, "unix:///Users/me/.colima/default/docker.sock");
        assert_eq!(
            got.source,
            EndpointSource::Context {
                name: "colima".into(),
                from: ContextFrom::Env
            }
        );
        assert_eq!(
            got.to_string(),
            "unix:///Users/me/.colima/default/docker.sock (from docker context colima)"
        );
    }

    #[test]
    fn current_context_in_config_json_is_used() {
        let dir = cli_config();
        let got = resolve(None, None, Some(dir.path())).unwrap();
        assert_eq!(got.host, "unix:///var/run/docker.sock");
        assert_eq!(
            got.source,
            EndpointSource::Context {
                name: "cc-local".into(),
                from: ContextFrom::ConfigFile(dir.path().join("config.json"))
            }
        );
        // An empty DOCKER_CONTEXT is unset.
        assert_eq!(resolve(None, Some(""), Some(dir.path())).unwrap(), got);
    }

    #[test]
    fn the_default_context_is_the_default_socket() {
        let dir = cli_config();
        let default = Endpoint {
            host: DEFAULT_HOST.into(),
            source: EndpointSource::Default,
        };
        assert_eq!(
            resolve(None, Some("default"), Some(dir.path())).unwrap(),
            default
        );
        write(dir.path(), "config.json", r#"{"currentContext":"default"}"#);
        assert_eq!(resolve(None, None, Some(dir.path())).unwrap(), default);
        assert_eq!(
            default.to_string(),
            "unix:///var/run/docker.sock (the default socket)"
        );
    }

    #[test]
    fn config_json_without_current_context_is_the_default_socket() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "config.json",
            "{\n\t\"auths\": {\n\t\t\"ghcr.io\": {\n\t\t\t\"auth\": \"dTpw\"\n\t\t}\n\t}\n}",
        );
        write_meta(dir.path(), "colima", COLIMA_META);
        let got = resolve(None, None, Some(dir.path())).unwrap();
        assert_eq!(got.host, DEFAULT_HOST);
        assert_eq!(got.source, EndpointSource::Default);
        write(dir.path(), "config.json", r#"{"currentContext":""}"#);
        assert_eq!(resolve(None, None, Some(dir.path())).unwrap(), got);
    }

    #[test]
    fn a_nonexistent_config_dir_is_no_context() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nowhere");
        let got = resolve(None, None, Some(&missing)).unwrap();
        assert_eq!(got.host, DEFAULT_HOST);
        assert_eq!(resolve(None, None, None).unwrap(), got);
        // but a context named there is still looked for, and missing.
        let text = error(resolve(None, Some("colima"), Some(&missing)));
        assert!(text.contains(&missing.display().to_string()), "{text}");
        let text = error(resolve(None, Some("colima"), None));
        assert!(text.contains("neither DOCKER_CONFIG nor HOME"), "{text}");
    }

    #[test]
    fn a_context_without_metadata_is_one_line_naming_who_named_it_and_the_path() {
        let dir = cli_config();
        let text = error(resolve(None, Some("nosuch"), Some(dir.path())));
        let path = dir
            .path()
            .join("contexts/meta/9e62f93eb7d2499903ac66232f187c56fc050eb74c765f90eb214360b21f0e96/meta.json");
        assert!(
            text.starts_with(&format!(
                "context \"nosuch\" (from DOCKER_CONTEXT) has no metadata at {}",
                path.display()
            )),
            "{text}"
        );

        write(dir.path(), "config.json", r#"{"currentContext":"nosuch"}"#);
        let text = error(resolve(None, None, Some(dir.path())));
        assert!(
            text.starts_with(&format!(
                "context \"nosuch\" (from currentContext in {}) has no metadata at {}",
                dir.path().join("config.json").display(),
                path.display()
            )),
            "{text}"
        );
    }

    #[test]
    fn malformed_metadata_names_the_file_and_the_place() {
        let dir = cli_config();
        write(
            dir.path(),
            &format!("contexts/meta/{LOCAL_DIR}/meta.json"),
            r#"{"Name":"cc-local","Endpoints":{"docker":{"Host":"unix:///var/run/docker.sock""#,
        );
        let text = error(resolve(None, None, Some(dir.path())));
        let path = dir
            .path()
            .join(format!("contexts/meta/{LOCAL_DIR}/meta.json"));
        assert!(
            text.starts_with(&format!(
                "{}: malformed metadata of docker context \"cc-local\"",
                path.display()
            )),
            "{text}"
        );
        assert!(text.contains("line 1 column"), "{text}");

        write_meta(
            dir.path(),
            "colima",
            r#"{"Name":"colima","Endpoints":{"docker":{"Host":7}}}"#,
        );
        let text = error(resolve(None, Some("colima"), Some(dir.path())));
        assert!(text.contains("invalid type"), "{text}");
        assert!(text.contains("line 1 column"), "{text}");
    }

    #[test]
    fn malformed_config_json_names_the_file_and_the_place() {
        let dir = cli_config();
        write(dir.path(), "config.json", "{\n\t\"currentContext\": \n");
        let text = error(resolve(None, None, Some(dir.path())));
        assert!(
            text.starts_with(&format!(
                "{}: malformed Docker CLI configuration: ",
                dir.path().join("config.json").display()
            )),
            "{text}"
        );
        assert!(text.contains("line 3 column"), "{text}");
        // DOCKER_CONTEXT and DOCKER_HOST never read it, as in the CLI.
        assert!(resolve(None, Some("colima"), Some(dir.path())).is_ok());
        assert!(resolve(Some("unix:///x.sock"), None, Some(dir.path())).is_ok());
    }

    #[test]
    fn a_context_without_a_docker_endpoint_says_so() {
        let dir = cli_config();
        write_meta(
            dir.path(),
            "k8s",
            r#"{"Name":"k8s","Metadata":{},"Endpoints":{}}"#,
        );
        let text = error(resolve(None, Some("k8s"), Some(dir.path())));
        assert!(
            text.ends_with("has no docker endpoint (Endpoints.docker)"),
            "{text}"
        );
        // An empty Host is the default host, as in the CLI.
        write_meta(
            dir.path(),
            "empty",
            r#"{"Name":"empty","Metadata":{},"Endpoints":{"docker":{"SkipTLSVerify":false}}}"#,
        );
        let got = resolve(None, Some("empty"), Some(dir.path())).unwrap();
        assert_eq!(got.host, DEFAULT_HOST);
        assert_eq!(
            got.to_string(),
            format!("{DEFAULT_HOST} (from docker context empty)")
        );
    }

    #[test]
    fn lower_case_keys_are_read_as_go_reads_them() {
        let dir = cli_config();
        write_meta(
            dir.path(),
            "lower",
            r#"{"name":"lower","endpoints":{"docker":{"host":"tcp://10.0.0.9:2375"}}}"#,
        );
        let got = resolve(None, Some("lower"), Some(dir.path())).unwrap();
        assert_eq!(got.host, "tcp://10.0.0.9:2375");
    }

    #[test]
    fn tls_contexts_are_refused_in_one_line_and_sockets_ignore_tls_as_in_the_cli() {
        let dir = cli_config();
        write(
            dir.path(),
            &format!("contexts/meta/{TLS_DIR}/meta.json"),
            TLS_META,
        );
        for pem in ["ca.pem", "cert.pem", "key.pem"] {
            write(
                dir.path(),
                &format!("contexts/tls/{TLS_DIR}/docker/{pem}"),
                "-----BEGIN CERTIFICATE-----\n",
            );
        }
        let text = error(resolve(None, Some("cc-tls"), Some(dir.path())));
        assert!(
            text.starts_with(
                "docker context \"cc-tls\" (from DOCKER_CONTEXT) reaches tcp://10.0.0.2:2376 over TLS (with the certificates in "
            ),
            "{text}"
        );
        assert!(text.contains("does not support yet"), "{text}");
        assert!(text.contains("DOCKER_HOST=unix://"), "{text}");

        write_meta(dir.path(), "cc-tcp", SKIP_VERIFY_META);
        let text = error(resolve(None, Some("cc-tcp"), Some(dir.path())));
        assert!(text.contains("SkipTLSVerify is set in"), "{text}");

        // TLS material beside a unix socket is not used by the CLI either.
        write(
            dir.path(),
            &format!("contexts/tls/{LOCAL_DIR}/docker/ca.pem"),
            "-----BEGIN CERTIFICATE-----\n",
        );
        assert_eq!(
            resolve(None, None, Some(dir.path())).unwrap().host,
            "unix:///var/run/docker.sock"
        );
    }

    #[test]
    fn the_config_dir_is_docker_config_else_home_dot_docker() {
        assert_eq!(
            config_dir(Some("/tmp/dc".into()), Some("/home/me".into())),
            Some(PathBuf::from("/tmp/dc"))
        );
        assert_eq!(
            config_dir(Some("".into()), Some("/home/me".into())),
            Some(PathBuf::from("/home/me/.docker"))
        );
        assert_eq!(
            config_dir(None, Some("/home/me".into())),
            Some(PathBuf::from("/home/me/.docker"))
        );
        assert_eq!(config_dir(None, Some("".into())), None);
        assert_eq!(config_dir(None, None), None);
    }
}
