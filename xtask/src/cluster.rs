//! `cargo xtask cluster up|down|status`: the k3d cluster a cluster run is meant
//! for, with Cilium, on this machine's Docker (OrbStack, Docker Desktop, Colima,
//! a Linux engine).
//!
//! - `up`: `k3d cluster create --config fixtures/k3d/cluster.yaml` (or `ctlptl
//!   apply -f fixtures/k3d/ctlptl.yaml` with `--ctlptl`), `helm repo add cilium`,
//!   `helm upgrade --install cilium cilium/cilium --version <pinned> -n
//!   kube-system -f fixtures/cilium/values.yaml` (or `--values FILE`), then a
//!   wait through the Kubernetes API until every node and every Cilium agent is
//!   Ready, one line each time the counts move.
//! - `down`: `k3d cluster delete` (or `ctlptl delete -f`).
//! - `status`: nodes, Cilium's agent pods and its datapath settings, read
//!   through the API.
//!
//! A tool that is not on `PATH` is one line naming it and how to get it, exit 3,
//! before anything runs. The commands are built by pure functions (tested); the
//! wait is `conformance_suite::cluster::inspect::wait_ready` (tested against a
//! mock API server). Not yet run against live k3d, Helm or Cilium.

use crate::conformance::{Failure, workspace_root};
use conformance_suite::cluster::inspect::{self, ClusterInfo, Connection, KubeconfigSource};
use conformance_suite::cluster::k3d::K3dPlan;
use conformance_suite::cluster::values::{CILIUM_CHART_VERSION, CILIUM_HELM_REPO};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const INFRA: u8 = 3;

fn fail(code: u8, message: impl std::fmt::Display) -> Failure {
    Failure {
        code,
        message: message.to_string(),
    }
}

#[derive(clap::Args)]
pub struct Options {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create the k3d cluster (fixtures/k3d/cluster.yaml), install Cilium with Helm and wait
    /// until every node and Cilium agent is Ready.
    Up(UpOptions),
    /// Delete the cluster `up` made.
    Down {
        /// Delete it with ctlptl (fixtures/k3d/ctlptl.yaml) instead of k3d.
        #[arg(long)]
        ctlptl: bool,
    },
    /// Print the cluster's nodes, Cilium's agent pods and Cilium's datapath settings.
    Status {
        /// Default: KUBECONFIG, then ~/.kube/config.
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// Default: the context k3d writes for the cluster (k3d-cilium-conformance).
        #[arg(long, value_name = "NAME")]
        context: Option<String>,
    },
}

#[derive(clap::Args)]
struct UpOptions {
    /// Create the cluster with ctlptl (fixtures/k3d/ctlptl.yaml) instead of k3d.
    #[arg(long)]
    ctlptl: bool,
    /// Cilium's Helm values (the team's own file) instead of fixtures/cilium/values.yaml.
    #[arg(long, value_name = "FILE")]
    values: Option<PathBuf>,
    /// Seconds to wait for the nodes and Cilium's agents to be Ready.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    timeout: u64,
}

/// A tool a step runs, and how to get it when it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub name: &'static str,
    pub how: &'static str,
}

pub const DOCKER: Tool = Tool {
    name: "docker",
    how: "k3d runs the nodes as Docker containers: OrbStack or Docker Desktop on macOS (its docker CLI on PATH), apt-get install docker.io on Debian",
};
pub const K3D: Tool = Tool {
    name: "k3d",
    how: "install k3d 5.9: brew install k3d, or https://k3d.io/stable/#installation",
};
pub const CTLPTL: Tool = Tool {
    name: "ctlptl",
    how: "install ctlptl: brew install tilt-dev/tap/ctlptl, or https://github.com/tilt-dev/ctlptl#how-do-i-install-it",
};
pub const KUBECTL: Tool = Tool {
    name: "kubectl",
    how: "ctlptl drives kubectl: brew install kubectl, apt-get install kubernetes-client, or https://kubernetes.io/docs/tasks/tools/",
};
pub const HELM: Tool = Tool {
    name: "helm",
    how: "install Helm 3: brew install helm, or https://helm.sh/docs/intro/install/",
};

/// The tools `up` (`down`) needs with or without ctlptl, in the order checked.
pub fn tools(ctlptl: bool, install: bool) -> Vec<Tool> {
    let mut tools = vec![DOCKER];
    if ctlptl {
        tools.extend([CTLPTL, KUBECTL]);
    } else {
        tools.push(K3D);
    }
    if install {
        tools.push(HELM);
    }
    tools
}

/// The first of `tools` not on `path` (a `PATH` value), as its one line.
pub fn missing_tool(tools: &[Tool], path: &OsStr) -> Option<String> {
    tools
        .iter()
        .find(|t| conformance_suite::target::find_in_path(t.name, path).is_none())
        .map(|t| format!("{} not found on PATH: {}", t.name, t.how))
}

/// The cluster's creation: k3d's config, or ctlptl's document around it.
pub fn create_argv(root: &Path, ctlptl: bool) -> Vec<String> {
    let fixtures = root.join("fixtures").join("k3d");
    if ctlptl {
        argv(&["ctlptl", "apply", "-f"], &fixtures.join("ctlptl.yaml"))
    } else {
        argv(
            &["k3d", "cluster", "create", "--config"],
            &fixtures.join("cluster.yaml"),
        )
    }
}

pub fn delete_argv(root: &Path, ctlptl: bool, plan: &K3dPlan) -> Vec<String> {
    if ctlptl {
        argv(
            &["ctlptl", "delete", "-f"],
            &root.join("fixtures").join("k3d").join("ctlptl.yaml"),
        )
    } else {
        ["k3d", "cluster", "delete", plan.name.as_str()]
            .map(String::from)
            .to_vec()
    }
}

/// `helm repo add cilium https://helm.cilium.io/ --force-update` (idempotent).
pub fn helm_repo_argv() -> Vec<String> {
    [
        "helm",
        "repo",
        "add",
        "cilium",
        CILIUM_HELM_REPO,
        "--force-update",
    ]
    .map(String::from)
    .to_vec()
}

/// Cilium at the chart version the values are validated for, into the k3d context.
pub fn helm_install_argv(values: &Path, context: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        "helm",
        "upgrade",
        "--install",
        "cilium",
        "cilium/cilium",
        "--version",
        CILIUM_CHART_VERSION,
        "-n",
        "kube-system",
        "-f",
    ]
    .map(String::from)
    .to_vec();
    v.push(values.display().to_string());
    v.extend(["--kube-context".to_string(), context.to_string()]);
    v
}

fn argv(words: &[&str], file: &Path) -> Vec<String> {
    let mut v: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    v.push(file.display().to_string());
    v
}

/// Runs one step, its output going to the terminal.
fn step(argv: &[String]) -> Result<(), Failure> {
    eprintln!("$ {}", argv.join(" "));
    let status = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .status()
        .map_err(|e| fail(INFRA, format!("{}: {e}", argv[0])))?;
    if status.success() {
        Ok(())
    } else {
        Err(fail(
            INFRA,
            format!("`{}` failed ({status})", argv.join(" ")),
        ))
    }
}

pub fn run(opts: Options) -> Result<ExitCode, Failure> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    run_with_path(opts.command, &path)
}

fn run_with_path(command: Command, path: &OsStr) -> Result<ExitCode, Failure> {
    let root = workspace_root();
    let plan = K3dPlan::default();
    match command {
        Command::Up(up) => {
            if let Some(values) = &up.values
                && !values.is_file()
            {
                return Err(fail(
                    2,
                    format!("--values {}: no such file", values.display()),
                ));
            }
            if let Some(line) = missing_tool(&tools(up.ctlptl, true), path) {
                return Err(fail(INFRA, line));
            }
            let values = up
                .values
                .clone()
                .unwrap_or_else(|| root.join("fixtures").join("cilium").join("values.yaml"));
            step(&create_argv(&root, up.ctlptl))?;
            step(&helm_repo_argv())?;
            step(&helm_install_argv(&values, &plan.context()))?;
            let context = plan.context();
            block_on(async {
                let conn = connect(None, &context).await?;
                eprintln!("waiting for the nodes and Cilium ({}) ...", conn.describe());
                let ready = inspect::wait_ready(
                    &conn,
                    up.timeout.max(1) as u32,
                    Duration::from_secs(1),
                    &mut |r| eprintln!("cluster: {}", r.line()),
                )
                .await
                .map_err(|e| fail(INFRA, e))?;
                eprintln!(
                    "cluster {} is up: {}; next: cargo xtask image && k3d image import cilium-conformance-probe:latest -c {}",
                    plan.name,
                    ready.line(),
                    plan.name
                );
                Ok(ExitCode::SUCCESS)
            })?
        }
        Command::Down { ctlptl } => {
            if let Some(line) = missing_tool(&tools(ctlptl, false), path) {
                return Err(fail(INFRA, line));
            }
            step(&delete_argv(&root, ctlptl, &plan))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status {
            kubeconfig,
            context,
        } => {
            let context = context.unwrap_or_else(|| plan.context());
            block_on(async {
                let conn = connect(kubeconfig.as_deref(), &context).await?;
                let nodes = inspect::nodes(&conn).await.map_err(|e| fail(INFRA, e))?;
                let cilium = inspect::cilium(&conn).await.map_err(|e| fail(INFRA, e))?;
                let pods = inspect::cilium_pods(&conn)
                    .await
                    .map_err(|e| fail(INFRA, e))?;
                print!(
                    "{}",
                    render_status(&conn.describe(), &ClusterInfo { nodes, cilium }, &pods)
                );
                Ok(ExitCode::SUCCESS)
            })?
        }
    }
}

async fn connect(kubeconfig: Option<&Path>, context: &str) -> Result<Connection, Failure> {
    inspect::connect(KubeconfigSource::from_env(kubeconfig), Some(context))
        .await
        .map_err(|e| fail(INFRA, e))
}

fn block_on<T>(
    fut: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<Result<T, Failure>, Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(INFRA, format!("a tokio runtime: {e}")))?;
    Ok(rt.block_on(fut))
}

/// What `status` prints.
pub fn render_status(cluster: &str, info: &ClusterInfo, pods: &[inspect::AgentPod]) -> String {
    let mut out = format!("cluster: {cluster}\nnodes:\n");
    for n in &info.nodes {
        out.push_str(&format!(
            "  {}  {}  {}  kubelet {}  kernel {}  {}\n",
            n.name,
            n.arch,
            match &n.not_ready {
                None => "Ready".to_string(),
                Some(why) => format!("NotReady ({why})"),
            },
            n.kubelet_version,
            n.kernel_version,
            n.os_image
        ));
    }
    let c = &info.cilium;
    match (&c.image, c.pods) {
        (Some(image), Some((desired, ready))) => out.push_str(&format!(
            "cilium: {} ({image}), agents {ready}/{desired} Ready\n",
            c.version.as_deref().unwrap_or("version unknown")
        )),
        (Some(image), None) => out.push_str(&format!("cilium: {image}\n")),
        (None, _) => out.push_str("cilium: no DaemonSet kube-system/cilium\n"),
    }
    for p in pods {
        out.push_str(&format!(
            "  {}  on {}  {}{}\n",
            p.name,
            p.node,
            p.phase,
            if p.ready { ", Ready" } else { ", not Ready" }
        ));
    }
    out.push_str(&format!("datapath: {}\n", c.datapath_summary()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commands_up_and_down_run() {
        let root = Path::new("/repo");
        assert_eq!(
            create_argv(root, false),
            [
                "k3d",
                "cluster",
                "create",
                "--config",
                "/repo/fixtures/k3d/cluster.yaml"
            ]
        );
        assert_eq!(
            create_argv(root, true),
            ["ctlptl", "apply", "-f", "/repo/fixtures/k3d/ctlptl.yaml"]
        );
        assert_eq!(
            helm_install_argv(
                Path::new("/repo/fixtures/cilium/values.yaml"),
                "k3d-cilium-conformance"
            ),
            [
                "helm",
                "upgrade",
                "--install",
                "cilium",
                "cilium/cilium",
                "--version",
                "1.19.5",
                "-n",
                "kube-system",
                "-f",
                "/repo/fixtures/cilium/values.yaml",
                "--kube-context",
                "k3d-cilium-conformance"
            ]
        );
        assert_eq!(
            helm_repo_argv(),
            [
                "helm",
                "repo",
                "add",
                "cilium",
                "https://helm.cilium.io/",
                "--force-update"
            ]
        );
        let plan = K3dPlan::default();
        assert_eq!(
            delete_argv(root, false, &plan),
            ["k3d", "cluster", "delete", "cilium-conformance"]
        );
        assert_eq!(
            delete_argv(root, true, &plan),
            ["ctlptl", "delete", "-f", "/repo/fixtures/k3d/ctlptl.yaml"]
        );
        // The fixtures the commands name exist.
        let real = workspace_root();
        for file in [&create_argv(&real, false)[4], &create_argv(&real, true)[3]] {
            assert!(Path::new(file).is_file(), "{file}");
        }
        assert!(real.join("fixtures/cilium/values.yaml").is_file());
    }

    #[test]
    fn a_missing_tool_is_one_line_naming_it_and_how_to_get_it() {
        let empty = OsStr::new("");
        assert_eq!(
            missing_tool(&tools(false, true), empty).unwrap(),
            format!("docker not found on PATH: {}", DOCKER.how)
        );
        // With docker and k3d there, helm is the one named.
        let dir = std::env::temp_dir().join(format!("cc-tools-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for t in ["docker", "k3d"] {
            std::fs::write(dir.join(t), "").unwrap();
        }
        let line = missing_tool(&tools(false, true), dir.as_os_str());
        let ctlptl = missing_tool(&tools(true, false), dir.as_os_str());
        let down = missing_tool(&tools(false, false), dir.as_os_str());
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            line.unwrap(),
            "helm not found on PATH: install Helm 3: brew install helm, or https://helm.sh/docs/intro/install/"
        );
        assert!(ctlptl.unwrap().starts_with("ctlptl not found on PATH: "));
        assert_eq!(down, None, "down needs only docker and k3d");
    }

    #[test]
    fn up_and_down_with_an_empty_path_exit_3_before_running_anything() {
        for (command, tool) in [
            (
                Command::Up(UpOptions {
                    ctlptl: false,
                    values: None,
                    timeout: 1,
                }),
                "docker",
            ),
            (Command::Down { ctlptl: true }, "docker"),
        ] {
            let f = run_with_path(command, OsStr::new("")).err().unwrap();
            assert_eq!(f.code, INFRA);
            assert!(
                f.message
                    .starts_with(&format!("{tool} not found on PATH: "))
                    && !f.message.contains('\n'),
                "{}",
                f.message
            );
        }
        let f = run_with_path(
            Command::Up(UpOptions {
                ctlptl: false,
                values: Some(PathBuf::from("/nonexistent/values.yaml")),
                timeout: 1,
            }),
            OsStr::new(""),
        )
        .err()
        .unwrap();
        assert_eq!(
            (f.code, f.message.as_str()),
            (2, "--values /nonexistent/values.yaml: no such file")
        );
    }

    #[test]
    fn status_is_printed_from_what_the_api_said() {
        use inspect::{AgentPod, CiliumInfo, NodeInfo};
        let mut cilium = CiliumInfo {
            image: Some("quay.io/cilium/cilium:v1.19.5".into()),
            version: Some("v1.19.5".into()),
            pods: Some((2, 1)),
            config_found: true,
            ..CiliumInfo::default()
        };
        cilium
            .datapath
            .insert("routing-mode".into(), "tunnel".into());
        let node = |name: &str, not_ready: Option<&str>| NodeInfo {
            name: name.into(),
            arch: "aarch64".into(),
            kubelet_version: "v1.35.5+k3s1".into(),
            kernel_version: "6.12.54-orbstack".into(),
            os_image: "K3s v1.35.5+k3s1".into(),
            container_runtime: "containerd://2.1.5-k3s1".into(),
            not_ready: not_ready.map(String::from),
            internal_ip: None,
            provider_id: None,
        };
        let info = ClusterInfo {
            nodes: vec![
                node(
                    "k3d-cilium-conformance-agent-0",
                    Some("Ready is False: KubeletNotReady"),
                ),
                node("k3d-cilium-conformance-server-0", None),
            ],
            cilium,
        };
        let pods = [AgentPod {
            name: "cilium-7xk2p".into(),
            node: "k3d-cilium-conformance-server-0".into(),
            phase: "Running".into(),
            ready: true,
        }];
        assert_eq!(
            render_status(
                "context k3d-cilium-conformance at https://127.0.0.1:6550",
                &info,
                &pods
            ),
            "cluster: context k3d-cilium-conformance at https://127.0.0.1:6550
nodes:
  k3d-cilium-conformance-agent-0  aarch64  NotReady (Ready is False: KubeletNotReady)  kubelet v1.35.5+k3s1  kernel 6.12.54-orbstack  K3s v1.35.5+k3s1
  k3d-cilium-conformance-server-0  aarch64  Ready  kubelet v1.35.5+k3s1  kernel 6.12.54-orbstack  K3s v1.35.5+k3s1
cilium: v1.19.5 (quay.io/cilium/cilium:v1.19.5), agents 1/2 Ready
  cilium-7xk2p  on k3d-cilium-conformance-server-0  Running, Ready
datapath: routing-mode=tunnel, tunnel-protocol=unset, kube-proxy-replacement=unset, enable-host-legacy-routing=unset, enable-bpf-masquerade=unset, enable-tcx=unset, datapath-mode=unset, ipam=unset
"
        );
    }
}
