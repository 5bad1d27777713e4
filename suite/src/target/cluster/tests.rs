//! The cluster target against a tower-test mock API server: each test scripts the
//! requests it expects, in order, on the target's own runtime, and answers with
//! bodies shaped like a k3s 1.35 API server's (nodes, Cilium's DaemonSet and
//! ConfigMap, `Status` errors). The test thread drives the target synchronously,
//! as the runner does. The unreachable-server and kubeconfig tests use a real
//! client and files written here (loopback only).

use super::*;
use crate::cluster::manifests::DEFAULT_PROBE_IMAGE;
use crate::cluster::mock_api::{self, ApiHandle, Seen, serve, serve_apply, status};
use crate::target::runner::{self, Planned};
use serde_json::{Value, json};
use std::sync::atomic::AtomicBool;

const SERVER: &str = "k3d-cilium-conformance-server-0";
const AGENT: &str = "k3d-cilium-conformance-agent-0";
const CILIUM_IMAGE: &str = "quay.io/cilium/cilium:v1.19.5@sha256:4f4d5a1a7e0d0c6b0b5c7f7e8a3b2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a";

/// A target around a mock client, and the mock's handle.
fn setup(poll_interval: Duration) -> (Cluster, ApiHandle) {
    let _entered = client_runtime().enter();
    let (conn, handle) = mock_api::connection("k3d-cilium-conformance");
    (Cluster::with_connection(conn, poll_interval), handle)
}

/// Runs a mock server script on the target's runtime.
fn script<T: Send + 'static>(
    f: impl Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    client_runtime().spawn(f)
}

fn join<T: Send + 'static>(task: tokio::task::JoinHandle<T>) -> T {
    block_on(task).expect("the mock server script")
}

fn node(name: &str, goarch: &str, ready: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/arch": goarch, "kubernetes.io/os": "linux"}},
        "spec": {"podCIDR": "10.42.0.0/24"},
        "status": {
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                "reason": if ready {"KubeletReady"} else {"KubeletNotReady"},
                "message": if ready {"kubelet is posting ready status"} else {"container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"},
                "lastHeartbeatTime": "2026-12-01T10:00:00Z", "lastTransitionTime": "2026-12-01T09:58:00Z"}],
            "nodeInfo": {"architecture": goarch, "bootID": "b0a1", "containerRuntimeVersion": "containerd://2.1.5-k3s1",
                "kernelVersion": "6.12.54-orbstack", "kubeProxyVersion": "", "kubeletVersion": "v1.35.5+k3s1",
                "machineID": "", "operatingSystem": "linux", "osImage": "K3s v1.35.5+k3s1", "systemUUID": ""},
            "addresses": [{"type": "Hostname", "address": name},
                          {"type": "InternalIP", "address": node_ip(name)}]}})
}

/// The node's InternalIP on the k3d network.
fn node_ip(name: &str) -> &'static str {
    if name == SERVER {
        "172.18.0.3"
    } else {
        "172.18.0.4"
    }
}

fn node_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "1234"}, "items": items})
}

fn cilium_daemonset() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "cilium", "namespace": "kube-system", "labels": {"k8s-app": "cilium"}},
        "spec": {"selector": {"matchLabels": {"k8s-app": "cilium"}},
            "template": {"metadata": {"labels": {"k8s-app": "cilium"}},
                "spec": {"containers": [{"name": "cilium-agent", "image": CILIUM_IMAGE}],
                         "initContainers": [{"name": "config", "image": CILIUM_IMAGE}]}}},
        "status": {"currentNumberScheduled": 2, "desiredNumberScheduled": 2, "numberMisscheduled": 0, "numberReady": 2}})
}

fn cilium_config() -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cilium-config", "namespace": "kube-system"},
        "data": {"routing-mode": "tunnel", "tunnel-protocol": "vxlan", "kube-proxy-replacement": "true",
                 "enable-host-legacy-routing": "false", "enable-bpf-masquerade": "true", "ipam": "kubernetes",
                 "enable-tcx": "true", "datapath-mode": "veth", "cluster-name": "default"}})
}

fn not_found(what: &str, name: &str) -> Value {
    status(404, "NotFound", &format!("{what} \"{name}\" not found"))
}

/// The sweep's list of earlier runs' namespaces, answered with none; asserts it
/// asks for the run label only.
async fn serve_sweep(handle: &mut ApiHandle) -> Seen {
    let seen = serve(
        handle,
        200,
        json!({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {}, "items": []}),
    )
    .await;
    assert_eq!(seen.line(), "GET /api/v1/namespaces");
    assert!(
        seen.query
            .contains("labelSelector=cilium-conformance%2Frun-id"),
        "{}",
        seen.query
    );
    seen
}

/// The preflight's three requests, answered for a healthy two-node cluster.
async fn serve_preflight(handle: &mut ApiHandle) -> Vec<Seen> {
    vec![
        serve(
            handle,
            200,
            node_list(vec![
                node(SERVER, "amd64", true),
                node(AGENT, "arm64", true),
            ]),
        )
        .await,
        serve(handle, 200, cilium_daemonset()).await,
        serve(handle, 200, cilium_config()).await,
    ]
}

#[test]
fn preflight_lists_one_instance_per_node_with_its_architecture() {
    let (target, mut handle) = setup(Duration::ZERO);
    let server = script(async move { serve_preflight(&mut handle).await });
    let ids = target.preflight().unwrap();
    let seen = join(server);
    assert_eq!(
        seen.iter().map(Seen::line).collect::<Vec<_>>(),
        [
            "GET /api/v1/nodes",
            "GET /apis/apps/v1/namespaces/kube-system/daemonsets/cilium",
            "GET /api/v1/namespaces/kube-system/configmaps/cilium-config",
        ]
    );
    // Sorted by name; GOARCH spelled as uname spells it.
    assert_eq!(
        ids,
        [
            InstanceId::new(TargetKind::Cluster, AGENT, "aarch64"),
            InstanceId::new(TargetKind::Cluster, SERVER, "x86_64"),
        ]
    );
    let prepared = target.prepared.lock().unwrap();
    let (_, info) = prepared.as_ref().unwrap();
    assert_eq!(info.cilium.version.as_deref(), Some("v1.19.5"));
    assert_eq!(info.cilium.pods, Some((2, 2)));
    let told = told(info, &info.nodes[0]);
    assert_eq!(told.cilium_version.as_deref(), Some("v1.19.5"));
    assert_eq!(told.k3s_version.as_deref(), Some("v1.35.5+k3s1"));
    assert_eq!(
        told.notes["cilium.datapath"],
        "routing-mode=tunnel, tunnel-protocol=vxlan, kube-proxy-replacement=true, enable-host-legacy-routing=false, enable-bpf-masquerade=true, enable-tcx=true, datapath-mode=veth, ipam=kubernetes (ConfigMap kube-system/cilium-config; unset keys take Cilium's defaults)"
    );
    assert_eq!(
        told.notes["cluster.node"],
        format!(
            "{AGENT}: K3s v1.35.5+k3s1, kernel 6.12.54-orbstack, containerd://2.1.5-k3s1, kubelet v1.35.5+k3s1"
        )
    );
}

fn infra_line(e: TargetError) -> String {
    match e {
        TargetError::Infrastructure(m) => {
            assert!(!m.contains('\n'), "one line: {m}");
            m
        }
        TargetError::Usage(m) => panic!("an infrastructure error (exit 3), got usage: {m}"),
    }
}

#[test]
fn a_cluster_without_cilium_is_one_line() {
    let (target, mut handle) = setup(Duration::ZERO);
    let server = script(async move {
        serve(
            &mut handle,
            200,
            node_list(vec![node(SERVER, "amd64", true)]),
        )
        .await;
        let ds = serve(&mut handle, 404, not_found("daemonsets.apps", "cilium")).await;
        let cm = serve(&mut handle, 404, not_found("configmaps", "cilium-config")).await;
        (ds.line(), cm.line())
    });
    let err = infra_line(target.preflight().unwrap_err());
    let (ds, cm) = join(server);
    assert_eq!(
        ds,
        "GET /apis/apps/v1/namespaces/kube-system/daemonsets/cilium"
    );
    assert_eq!(
        cm,
        "GET /api/v1/namespaces/kube-system/configmaps/cilium-config"
    );
    assert_eq!(
        err,
        "no Cilium in the cluster (context k3d-cilium-conformance at https://0.0.0.0:6550): neither DaemonSet kube-system/cilium nor ConfigMap kube-system/cilium-config exists (install it: cargo xtask cluster up, or helm upgrade --install cilium cilium/cilium -n kube-system)"
    );
}

#[test]
fn cilium_s_configmap_alone_is_enough_and_says_the_version_is_unknown() {
    let (target, mut handle) = setup(Duration::ZERO);
    let server = script(async move {
        serve(
            &mut handle,
            200,
            node_list(vec![node(SERVER, "amd64", true)]),
        )
        .await;
        serve(&mut handle, 404, not_found("daemonsets.apps", "cilium")).await;
        serve(&mut handle, 200, cilium_config()).await;
    });
    let ids = target.preflight().unwrap();
    join(server);
    assert_eq!(ids.len(), 1);
    let prepared = target.prepared.lock().unwrap();
    let (_, info) = prepared.as_ref().unwrap();
    let told = told(info, &info.nodes[0]);
    assert_eq!(told.cilium_version, None);
    assert!(
        told.notes["cilium_version"].starts_with(
            "Cilium is configured (ConfigMap kube-system/cilium-config) but there is no DaemonSet"
        ),
        "{}",
        told.notes["cilium_version"]
    );
}

#[test]
fn a_node_that_is_not_ready_and_a_forbidden_list_are_one_line_each() {
    let (target, mut handle) = setup(Duration::ZERO);
    let server = script(async move {
        serve(
            &mut handle,
            200,
            node_list(vec![
                node(SERVER, "amd64", true),
                node(AGENT, "amd64", false),
            ]),
        )
        .await;
        serve(&mut handle, 403, status(403, "Forbidden",
            "nodes is forbidden: User \"system:serviceaccount:ci:gate\" cannot list resource \"nodes\" in API group \"\" at the cluster scope")).await;
    });
    let not_ready = infra_line(target.preflight().unwrap_err());
    let forbidden = infra_line(target.preflight().unwrap_err());
    join(server);
    assert_eq!(
        not_ready,
        format!(
            "node {AGENT} is not Ready (Ready is False: KubeletNotReady: container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized) in the cluster (context k3d-cilium-conformance at https://0.0.0.0:6550): the probe DaemonSet would wait for it"
        )
    );
    assert_eq!(
        forbidden,
        "list nodes on context k3d-cilium-conformance at https://0.0.0.0:6550: the API server said: nodes is forbidden: User \"system:serviceaccount:ci:gate\" cannot list resource \"nodes\" in API group \"\" at the cluster scope (Forbidden)"
    );
}

/// A kubeconfig written for a test, removed when dropped.
struct KubeconfigFile(PathBuf);

impl KubeconfigFile {
    fn new(name: &str, text: &str) -> KubeconfigFile {
        let path =
            std::env::temp_dir().join(format!("cc-kubeconfig-{}-{name}.yaml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        KubeconfigFile(path)
    }
}

impl Drop for KubeconfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A kubeconfig for one cluster at `server`, context `k3d-x` current.
fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: k3d-x
  cluster:
    server: {server}
    insecure-skip-tls-verify: true
users:
- name: admin@k3d-x
  user:
    token: not-a-real-token
contexts:
- name: k3d-x
  context:
    cluster: k3d-x
    user: admin@k3d-x
current-context: k3d-x
"
    )
}

#[test]
fn an_unreachable_api_server_is_one_line_naming_it() {
    // Port 1 on loopback: nothing listens there, the connect is refused at once.
    let file = KubeconfigFile::new("unreachable", &kubeconfig("https://127.0.0.1:1"));
    let target = Cluster::new(Some(file.0.clone()), None);
    let err = infra_line(target.preflight().unwrap_err());
    assert!(
        err.starts_with(&format!(
            "cannot reach the Kubernetes API server at https://127.0.0.1:1 (k3d-x, kubeconfig from --kubeconfig {}): list nodes: ",
            file.0.display()
        )),
        "{err}"
    );
    assert!(err.contains("Connection refused"), "{err}");
}

#[test]
fn a_missing_kubeconfig_or_context_is_one_line() {
    let absent = std::env::temp_dir().join("cc-no-such-kubeconfig.yaml");
    let err = infra_line(
        Cluster::new(Some(absent.clone()), None)
            .preflight()
            .unwrap_err(),
    );
    assert_eq!(
        err,
        format!(
            "kubeconfig from --kubeconfig {0}: cannot read {0}: No such file or directory (os error 2) (give one with --kubeconfig FILE or KUBECONFIG; k3d writes its own: k3d kubeconfig merge cilium-conformance)",
            absent.display()
        )
    );
    let file = KubeconfigFile::new("context", &kubeconfig("https://127.0.0.1:1"));
    let err = infra_line(
        Cluster::new(Some(file.0.clone()), Some("k3d-cilium-conformance".into()))
            .preflight()
            .unwrap_err(),
    );
    assert_eq!(
        err,
        format!(
            "kubeconfig from --kubeconfig {} has no context `k3d-cilium-conformance` (it has k3d-x)",
            file.0.display()
        )
    );
    let none = KubeconfigFile::new(
        "no-current",
        &kubeconfig("https://127.0.0.1:1").replace("current-context: k3d-x\n", ""),
    );
    let err = infra_line(
        Cluster::new(Some(none.0.clone()), None)
            .preflight()
            .unwrap_err(),
    );
    assert!(
        err.ends_with("sets no current context: name one with --context (it has k3d-x)"),
        "{err}"
    );
}

fn control(timeout: Duration) -> RunControl {
    RunControl {
        timeout,
        interrupted: Arc::new(AtomicBool::new(false)),
        verbose: false,
    }
}

fn args() -> ProbeArgs {
    ProbeArgs {
        run_id: "0123abcd".into(),
        checks: vec!["datapath.redirect-peer[tcx]".into()],
        ..ProbeArgs::default()
    }
}

fn probe() -> ProbeBinary {
    ProbeBinary {
        path: PathBuf::from("/probe"),
        image: Some(DEFAULT_PROBE_IMAGE.into()),
    }
}

const NS: &str = "cilium-conformance-0123abcd";

fn probe_daemonset(desired: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
           "metadata": {"name": "probe", "namespace": NS},
           "spec": {"selector": {}, "template": {}},
           "status": {"desiredNumberScheduled": desired, "currentNumberScheduled": desired,
                      "numberMisscheduled": 0, "numberReady": 0}})
}

fn probe_pod(name: &str, node: &str, ready: bool, init: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": NS},
           "spec": {"nodeName": node, "containers": [{"name": "done"}]},
           "status": {"phase": if ready {"Running"} else {"Pending"},
                      "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
                      "initContainerStatuses": [init]}})
}

fn probe_done() -> Value {
    json!({"name": "probe", "image": DEFAULT_PROBE_IMAGE, "imageID": "", "ready": true,
           "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}})
}

fn probe_running() -> Value {
    json!({"name": "probe", "image": DEFAULT_PROBE_IMAGE, "imageID": "", "ready": false,
           "restartCount": 0, "state": {"running": {"startedAt": "2026-12-01T10:00:01Z"}}})
}

fn pods(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})
}

/// How many objects a run with [`args`] applies.
fn object_count(nodes: Vec<String>) -> usize {
    ManifestPlan::new(
        "0123abcd",
        DEFAULT_PROBE_IMAGE,
        args().to_argv(),
        Placement::Nodes(nodes),
    )
    .manifests()
    .unwrap()
    .len()
}

fn both_nodes() -> Vec<String> {
    vec![AGENT.to_string(), SERVER.to_string()]
}

#[test]
fn a_run_applies_once_waits_streams_each_node_s_log_and_deletes_the_namespace() {
    let (target, mut handle) = setup(Duration::ZERO);
    let count = object_count(both_nodes());
    let server = script(async move {
        serve_preflight(&mut handle).await;
        serve_sweep(&mut handle).await;
        let mut seen = Vec::new();
        for _ in 0..count {
            seen.push(serve_apply(&mut handle).await);
        }
        seen.push(serve(&mut handle, 200, probe_daemonset(2)).await);
        seen.push(
            serve(
                &mut handle,
                200,
                pods(vec![
                    probe_pod("probe-a", AGENT, true, probe_done()),
                    probe_pod("probe-s", SERVER, false, probe_running()),
                ]),
            )
            .await,
        );
        seen.push(serve(&mut handle, 200, probe_daemonset(2)).await);
        seen.push(
            serve(
                &mut handle,
                200,
                pods(vec![
                    probe_pod("probe-a", AGENT, true, probe_done()),
                    probe_pod("probe-s", SERVER, true, probe_done()),
                ]),
            )
            .await,
        );
        seen.push(serve(&mut handle, 200, json!("agent line 1\nagent line 2\n")).await);
        seen.push(serve(&mut handle, 200, json!("server line 1\n")).await);
        seen.push(
            serve(
                &mut handle,
                200,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS},
                       "status": {"phase": "Terminating"}}),
            )
            .await,
        );
        seen
    });
    let ids = target.preflight().unwrap();
    let control = control(Duration::from_secs(5));
    // Both instances start (as the runner starts them); the manifests go once.
    let started: Vec<StartedInstance> = ids
        .iter()
        .map(|id| target.start(id, &probe(), &args(), &control).unwrap())
        .collect();
    let mut lines = Vec::new();
    let mut exits = Vec::new();
    for s in started {
        assert_eq!(s.preamble, Preamble::SkipToFacts);
        lines.push(s.lines.iter().collect::<Vec<_>>());
        exits.push(s.handle.wait().unwrap());
        // Stopping a finished run asks nothing more of the API server (the script ends below).
        s.handle.stop();
    }
    let seen = join(server);
    assert_eq!(lines[0], ["agent line 1", "agent line 2"]);
    assert_eq!(lines[1], ["server line 1"]);
    assert_eq!(exits[0].code, Some(0));
    assert_eq!(
        exits[0].privilege,
        format!("in pod {NS}/probe-a on node {AGENT}, privileged")
    );
    assert_eq!(exits[1].told.k3s_version.as_deref(), Some("v1.35.5+k3s1"));
    assert_eq!(exits[1].told.cilium_version.as_deref(), Some("v1.19.5"));

    // The order: every apply (namespace first), the waits, one log per pod, the delete.
    let lines: Vec<String> = seen.iter().map(Seen::line).collect();
    assert_eq!(lines[0], format!("PATCH /api/v1/namespaces/{NS}"));
    // The namespace says when the run is over for sure, for a later run's sweep.
    let expires: u64 = seen[0].body["metadata"]["annotations"]["cilium-conformance/expires-at"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("an expiry on the namespace");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(expires > now && expires < now + 3600, "{expires} vs {now}");
    assert!(
        seen[..count]
            .iter()
            .all(|s| s.method == "PATCH" && s.query.contains("fieldManager=cilium-conformance")),
        "{lines:?}"
    );
    assert_eq!(
        lines[count..count + 4],
        [
            format!("GET /apis/apps/v1/namespaces/{NS}/daemonsets/probe"),
            format!("GET /api/v1/namespaces/{NS}/pods"),
            format!("GET /apis/apps/v1/namespaces/{NS}/daemonsets/probe"),
            format!("GET /api/v1/namespaces/{NS}/pods"),
        ]
    );
    assert_eq!(
        lines[count + 4..],
        [
            format!("GET /api/v1/namespaces/{NS}/pods/probe-a/log"),
            format!("GET /api/v1/namespaces/{NS}/pods/probe-s/log"),
            format!("DELETE /api/v1/namespaces/{NS}"),
        ]
    );
    // No pod-level check selected: no echo pods, no services, no clients.
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("/pods/echo-") || l.contains("/services/")),
        "{lines:?}"
    );
    // Nothing was asked after the delete: the mock saw exactly these.
    assert_eq!(seen.len(), count + 7);
}

#[test]
fn stop_during_the_wait_cancels_it_and_deletes_the_namespace_once() {
    // A poll interval far beyond the test: the deployment sleeps between polls
    // until the stop cancels it, so the next request can only be the delete.
    let (target, mut handle) = setup(Duration::from_secs(600));
    let count = object_count(both_nodes());
    let (polled_tx, polled_rx) = std::sync::mpsc::channel();
    let server = script(async move {
        serve_preflight(&mut handle).await;
        serve_sweep(&mut handle).await;
        for _ in 0..count {
            serve_apply(&mut handle).await;
        }
        serve(&mut handle, 200, probe_daemonset(2)).await;
        serve(
            &mut handle,
            200,
            pods(vec![probe_pod("probe-a", AGENT, false, probe_running())]),
        )
        .await;
        polled_tx.send(()).unwrap();
        let delete = serve(
            &mut handle,
            200,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS},
                   "status": {"phase": "Terminating"}}),
        )
        .await;
        // A second stop must not delete again: nothing more arrives.
        let more = tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await;
        (delete, more.is_err())
    });
    let ids = target.preflight().unwrap();
    let control = control(Duration::from_secs(3600));
    let started: Vec<StartedInstance> = ids
        .iter()
        .map(|id| target.start(id, &probe(), &args(), &control).unwrap())
        .collect();
    polled_rx.recv().unwrap();
    // The runner stops every instance at once, on timeout or Ctrl-C.
    std::thread::scope(|s| {
        for st in &started {
            s.spawn(|| st.handle.stop());
        }
    });
    for st in started {
        assert_eq!(st.lines.iter().count(), 0, "no lines from a cancelled run");
        let exit = st.handle.wait().unwrap();
        assert_eq!(exit.code, None);
        st.handle.stop();
    }
    let (delete, nothing_more) = join(server);
    assert_eq!(delete.line(), format!("DELETE /api/v1/namespaces/{NS}"));
    assert!(nothing_more, "the namespace is deleted once");
}

#[test]
fn a_failed_deployment_is_each_instance_s_error_and_still_deletes() {
    let (target, mut handle) = setup(Duration::ZERO);
    let count = object_count(both_nodes());
    let server = script(async move {
        serve_preflight(&mut handle).await;
        serve_sweep(&mut handle).await;
        for _ in 0..count {
            serve_apply(&mut handle).await;
        }
        let pulling = json!({"name": "probe", "image": DEFAULT_PROBE_IMAGE, "imageID": "",
            "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ErrImageNeverPull",
            "message": "Container image \"cilium-conformance-probe:latest\" is not present with pull policy of Never"}}});
        serve(&mut handle, 200, probe_daemonset(2)).await;
        serve(
            &mut handle,
            200,
            pods(vec![probe_pod("probe-a", AGENT, false, pulling)]),
        )
        .await;
        serve(
            &mut handle,
            200,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Success", "code": 200}),
        )
        .await
    });
    let ids = target.preflight().unwrap();
    let control = control(Duration::from_secs(5));
    let started: Vec<StartedInstance> = ids
        .iter()
        .map(|id| target.start(id, &probe(), &args(), &control).unwrap())
        .collect();
    for st in started {
        assert_eq!(st.lines.iter().count(), 0);
        let err = infra_line(st.handle.wait().unwrap_err());
        assert_eq!(
            err,
            format!(
                "namespace {NS}: image pull failed: pod probe-a (node {AGENT}), container probe, image cilium-conformance-probe:latest: ErrImageNeverPull: Container image \"cilium-conformance-probe:latest\" is not present with pull policy of Never"
            )
        );
    }
    assert_eq!(
        join(server).line(),
        format!("DELETE /api/v1/namespaces/{NS}")
    );
}

/// A facts line a probe would print, with no cluster facts of its own.
fn facts_line() -> String {
    let facts = conformance_contract::Facts::not_measured("x86_64", "a test");
    let mut v = serde_json::to_value(conformance_contract::Line::Facts {
        schema: conformance_contract::SCHEMA,
        probe_version: "0.1.0 (ebpf shipped test)".into(),
        run_id: "0123abcd".into(),
        facts,
    })
    .unwrap();
    v["facts"]["notes"]["cilium_version"] = json!("not in a cluster");
    v.to_string()
}

#[test]
fn through_the_runner_each_node_s_facts_carry_the_cluster_s() {
    let (target, mut handle) = setup(Duration::ZERO);
    let nodes = vec![SERVER.to_string()];
    let count = object_count(nodes);
    let log = format!("probe: a stderr line before the facts\n{}\n", facts_line());
    let server = script(async move {
        serve(
            &mut handle,
            200,
            node_list(vec![node(SERVER, "amd64", true)]),
        )
        .await;
        serve(&mut handle, 200, cilium_daemonset()).await;
        serve(&mut handle, 200, cilium_config()).await;
        serve_sweep(&mut handle).await;
        for _ in 0..count {
            serve_apply(&mut handle).await;
        }
        serve(&mut handle, 200, probe_daemonset(1)).await;
        serve(
            &mut handle,
            200,
            pods(vec![probe_pod("probe-s", SERVER, true, probe_done())]),
        )
        .await;
        serve(&mut handle, 200, Value::String(log)).await;
        serve(
            &mut handle,
            200,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Success", "code": 200}),
        )
        .await;
    });
    let ids = target.preflight().unwrap();
    let planned: Vec<Planned<'_>> = ids
        .into_iter()
        .map(|instance| Planned {
            target: &target,
            instance,
            probe: probe(),
        })
        .collect();
    let finished = runner::run(
        &planned,
        &args(),
        &control(Duration::from_secs(5)),
        &mut |_, _| {},
    )
    .unwrap();
    join(server);
    let stream = finished[0].stream.as_ref().unwrap();
    assert_eq!(stream.preamble, ["probe: a stderr line before the facts"]);
    assert_eq!(stream.facts.cilium_version.as_deref(), Some("v1.19.5"));
    assert_eq!(stream.facts.k3s_version.as_deref(), Some("v1.35.5+k3s1"));
    assert!(
        stream.facts.notes["cilium_version"].starts_with("v1.19.5: the tag of DaemonSet kube-system/cilium's image quay.io/cilium/cilium:v1.19.5@sha256:"),
        "{:?}",
        stream.facts.notes
    );
    assert!(stream.facts.notes["cilium.datapath"].starts_with("routing-mode=tunnel, "));
    // The node is a k3d node (the k3s image): a container, whatever the pod saw.
    assert_eq!(
        stream.facts.virtualization.container.as_deref(),
        Some("k3d (OS image K3s v1.35.5+k3s1: the k3s container image)")
    );
}

#[test]
fn a_node_that_is_no_container_replaces_what_the_probe_s_pod_saw() {
    let mut facts = conformance_contract::Facts::not_measured("x86_64", "a test");
    facts.virtualization.container = Some("containerd".into());
    facts.virtualization.hypervisor = Some("kvm".into());
    facts.virtualization.nested = Some(true);
    let mut n = NodeInfo {
        name: "hetzner-1".into(),
        arch: "x86_64".into(),
        kubelet_version: "v1.35.5+k3s1".into(),
        kernel_version: "6.12.41".into(),
        os_image: "Debian GNU/Linux 13 (trixie)".into(),
        container_runtime: "containerd://2.1.5-k3s1".into(),
        not_ready: None,
        internal_ip: Some("10.0.0.2".into()),
        provider_id: Some("hcloud://1234567".into()),
    };
    assert_eq!(n.node_container(), None);
    let info = ClusterInfo {
        nodes: vec![n.clone()],
        cilium: Default::default(),
    };
    told(&info, &n).apply_to(&mut facts);
    assert_eq!(facts.virtualization.container, None);
    assert_eq!(
        facts.virtualization.nested, None,
        "the pod's container made it look nested"
    );
    assert!(facts.notes["virtualization.container"].contains("not a container (OS image Debian"));
    n.provider_id = Some("kind://docker/kind/kind-worker".into());
    n.os_image = "Debian GNU/Linux 12 (bookworm)".into();
    assert_eq!(
        n.node_container().as_deref(),
        Some("kind (provider ID kind://docker/kind/kind-worker)")
    );
}

/// An observation line as `probe connect` prints it: passed, control blocked.
fn client_observation(check: &str, variant: &str) -> String {
    conformance_contract::Line::Observation(conformance_contract::Observation {
        check: check.into(),
        variant: variant.into(),
        outcome: conformance_contract::Outcome::Pass,
        reason: "3/3 TCP attempts answered".into(),
        evidence: serde_json::Map::new(),
        failure: None,
        missing_facts: Vec::new(),
        control: Some(conformance_contract::Control {
            description: "the same traffic to port 8082, which nothing serves".into(),
            outcome: conformance_contract::ControlOutcome::Blocked,
            reason: "0/3 answered (3 refused)".into(),
            evidence: serde_json::Map::new(),
        }),
        duration_ms: 12.0,
    })
    .to_json()
}

fn echo_pod(name: &str, slot: u32, node: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": NS,
                        "labels": {"cilium-conformance/slot": slot.to_string()}},
           "spec": {"nodeName": node, "containers": [{"name": "echo"}]},
           "status": {"phase": "Running", "podIP": ip,
                      "conditions": [{"type": "Ready", "status": "True"}],
                      "containerStatuses": [{"name": "echo", "image": DEFAULT_PROBE_IMAGE, "imageID": "",
                          "ready": true, "restartCount": 0,
                          "state": {"running": {"startedAt": "2026-12-01T10:00:03Z"}}}]}})
}

fn client_pod(name: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": NS},
           "spec": {"nodeName": node, "containers": [{"name": "client"}]},
           "status": {"phase": "Succeeded",
                      "containerStatuses": [{"name": "client", "image": DEFAULT_PROBE_IMAGE, "imageID": "",
                          "ready": false, "restartCount": 0,
                          "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}})
}

fn service(name: &str, node_port: Option<i32>) -> Value {
    let mut port =
        json!({"name": "echo-tcp", "port": 8080, "protocol": "TCP", "targetPort": "echo-tcp"});
    if let Some(p) = node_port {
        port["nodePort"] = json!(p);
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
           "spec": {"type": if node_port.is_some() {"NodePort"} else {"ClusterIP"},
                    "clusterIP": if node_port.is_some() {"10.43.9.9"} else {"10.43.7.7"},
                    "ports": [port]}})
}

#[test]
fn pod_level_checks_run_in_client_pods_made_from_the_echoes_addresses() {
    let (target, mut handle) = setup(Duration::ZERO);
    let args = ProbeArgs {
        run_id: "0123abcd".into(),
        checks: vec![
            "datapath.redirect-peer[tcx]".into(),
            "cluster.pod-to-pod[same-node]".into(),
            "cluster.pod-to-pod[cross-node]".into(),
            "cluster.host-to-pod[default]".into(),
        ],
        ..ProbeArgs::default()
    };
    let plan = ManifestPlan::new(
        "0123abcd",
        DEFAULT_PROBE_IMAGE,
        args.to_argv(),
        Placement::Nodes(vec![SERVER.into(), AGENT.into()]),
    );
    let count = plan.manifests().unwrap().len();
    let probe_log = |node: &str| {
        let plan =
            r#"{"kind":"plan","checks":[{"check":"datapath.redirect-peer","variant":"tcx"}]}"#;
        let obs = client_observation("datapath.redirect-peer", "tcx");
        let done = r#"{"kind":"done","observations":1,"duration_ms":900.0}"#;
        format!(
            "probe: on {node}\n{}\n{plan}\n{obs}\n{done}\n",
            facts_line()
        )
    };
    let (server_log, agent_log) = (probe_log(SERVER), probe_log(AGENT));
    let server = script(async move {
        serve_preflight(&mut handle).await;
        serve_sweep(&mut handle).await;
        let mut seen = Vec::new();
        for _ in 0..count {
            seen.push(serve_apply(&mut handle).await);
        }
        seen.push(serve(&mut handle, 200, probe_daemonset(2)).await);
        seen.push(
            serve(
                &mut handle,
                200,
                pods(vec![
                    probe_pod("probe-s", SERVER, true, probe_done()),
                    probe_pod("probe-a", AGENT, true, probe_done()),
                ]),
            )
            .await,
        );
        seen.push(serve(&mut handle, 200, Value::String(server_log)).await);
        seen.push(serve(&mut handle, 200, Value::String(agent_log)).await);
        // The echoes' addresses.
        seen.push(
            serve(
                &mut handle,
                200,
                pods(vec![
                    echo_pod("echo-1", 1, AGENT, "10.42.1.5"),
                    echo_pod("echo-0", 0, SERVER, "10.42.0.5"),
                ]),
            )
            .await,
        );
        seen.push(serve(&mut handle, 200, service("echo", None)).await);
        seen.push(serve(&mut handle, 200, service("echo-nodeport", Some(31234))).await);
        // The clients, created, run, read.
        for _ in 0..4 {
            seen.push(serve_apply(&mut handle).await);
        }
        seen.push(
            serve(
                &mut handle,
                200,
                pods(vec![
                    client_pod("client-0", SERVER),
                    client_pod("client-1", AGENT),
                ]),
            )
            .await,
        );
        seen.push(
            serve(
                &mut handle,
                200,
                pods(vec![
                    client_pod("host-client-0", SERVER),
                    client_pod("host-client-1", AGENT),
                ]),
            )
            .await,
        );
        let obs = |c: &str, v: &str| client_observation(c, v);
        for log in [
            format!(
                "{}\n{}\n",
                obs("cluster.pod-to-pod", "same-node"),
                obs("cluster.pod-to-pod", "cross-node")
            ),
            format!(
                "{}\n{}\n",
                obs("cluster.pod-to-pod", "same-node"),
                obs("cluster.pod-to-pod", "cross-node")
            ),
            format!("{}\n", obs("cluster.host-to-pod", "default")),
            format!("{}\n", obs("cluster.host-to-pod", "default")),
        ] {
            seen.push(serve(&mut handle, 200, Value::String(log)).await);
        }
        seen.push(
            serve(
                &mut handle,
                200,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Success", "code": 200}),
            )
            .await,
        );
        seen
    });
    let ids = target.preflight().unwrap();
    let planned: Vec<Planned<'_>> = ids
        .into_iter()
        .map(|instance| Planned {
            target: &target,
            instance,
            probe: probe(),
        })
        .collect();
    let finished = runner::run(
        &planned,
        &args,
        &control(Duration::from_secs(5)),
        &mut |_, _| {},
    )
    .unwrap();
    let seen = join(server);
    let lines: Vec<String> = seen.iter().map(Seen::line).collect();

    // Each node's stream: its probe's check, then its clients' three, complete.
    for f in &finished {
        let stream = f.stream.as_ref().unwrap();
        assert!(
            stream.problems.is_empty(),
            "{}: {:?}",
            f.instance.name,
            stream.problems
        );
        let got: Vec<String> = stream
            .observations
            .iter()
            .map(|o| format!("{}[{}]", o.check, o.variant))
            .collect();
        assert_eq!(
            got,
            [
                "datapath.redirect-peer[tcx]",
                "cluster.pod-to-pod[same-node]",
                "cluster.pod-to-pod[cross-node]",
                "cluster.host-to-pod[default]"
            ],
            "{}",
            f.instance.name
        );
        assert_eq!(stream.planned().len(), 4);
    }

    // Phase two, in order: the echoes, the two services, four clients, their waits and logs.
    let at = count + 4;
    assert_eq!(
        lines[at..at + 3],
        [
            format!("GET /api/v1/namespaces/{NS}/pods"),
            format!("GET /api/v1/namespaces/{NS}/services/echo"),
            format!("GET /api/v1/namespaces/{NS}/services/echo-nodeport"),
        ]
    );
    assert!(
        seen[at].query.contains("cilium-conformance-echo"),
        "{}",
        seen[at].query
    );
    assert_eq!(
        lines[at + 3..at + 7],
        [
            format!("PATCH /api/v1/namespaces/{NS}/pods/client-0"),
            format!("PATCH /api/v1/namespaces/{NS}/pods/host-client-0"),
            format!("PATCH /api/v1/namespaces/{NS}/pods/client-1"),
            format!("PATCH /api/v1/namespaces/{NS}/pods/host-client-1"),
        ]
    );
    assert_eq!(
        lines.last().unwrap(),
        &format!("DELETE /api/v1/namespaces/{NS}")
    );

    // client-0 is on echo-0's node and reaches echo-0 there and echo-1 across;
    // host-client-0 is on that node's network.
    let body = &seen[at + 3].body;
    assert_eq!(body["spec"]["nodeName"], SERVER);
    assert_eq!(body["spec"]["restartPolicy"], "Never");
    let plan: conformance_contract::pods::ConnectPlan =
        serde_json::from_str(body["spec"]["containers"][0]["args"][2].as_str().unwrap()).unwrap();
    let hosts: Vec<(String, String)> = plan
        .checks
        .iter()
        .map(|c| match &c.target {
            conformance_contract::pods::ConnectTarget::Echo { host, .. } => {
                (c.variant.clone(), host.clone())
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        hosts,
        [
            ("same-node".to_string(), "10.42.0.5".to_string()),
            ("cross-node".to_string(), "10.42.1.5".to_string())
        ]
    );
    let host_client = &seen[at + 4].body;
    assert_eq!(host_client["spec"]["hostNetwork"], true);
    assert_eq!(
        host_client["spec"]["containers"][0]["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
}
