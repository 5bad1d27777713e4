//! Every object the `cluster` target applies, from a [`ManifestPlan`], as the
//! API's own types (k8s-openapi, Kubernetes 1.33: the oldest release the suite
//! supports; the same objects are valid on later ones). [`Manifest`] is what
//! `--render-manifests DIR` writes and what [`super::deploy`] applies: one code
//! path, so the dry run shows exactly what a run would do.
//!
//! # The objects
//!
//! Everything lives in one run-scoped namespace, `cilium-conformance-<run id>`,
//! labelled with the run id (as every object is), so deleting the namespace
//! removes the run and a sweep finds what a killed run left.
//!
//! | object | why |
//! |---|---|
//! | Namespace | the run's scope; `pod-security.kubernetes.io/enforce: privileged`, because the probe pods are (below) and Pod Security admission would otherwise reject them |
//! | ServiceAccount `cilium-conformance` | the identity of the run's pods; no pod mounts its token (`automountServiceAccountToken: false`): nothing in them talks to the API |
//! | Role + RoleBinding `cilium-conformance-runner` | what the suite does inside the namespace, and nothing else: pods get/list/watch/create (wait for Ready, find each node's probe, create the client pods), pods/log get (the probe's and the clients' JSON lines), services get (the echo service's ClusterIP and NodePort). Namespaced, no cluster role: a CI identity needs this plus create/delete of namespaces and get/list of nodes |
//! | DaemonSet `probe` | one probe per node, on the node's network (below); an init container runs the probe once, then the probe's echo serves on the node's network (port [`HOST_ECHO_PORT`], for `cluster.pod-to-host`), so Ready means "this node's probe finished and its echo listens", and a DaemonSet never re-runs it |
//! | Pods `echo-<i>` | one per node (for the pod-level checks, `cluster.*`, when any is selected): the probe's `echo` (TCP [`ECHO_TCP_PORT`], UDP [`ECHO_UDP_PORT`]), pinned by `nodeName` when the nodes are known, else spread by pod anti-affinity. Unprivileged: non-root, no capabilities, read-only root, RuntimeDefault seccomp. When `cluster.stack-delivery` is selected, a second container `observe` (`probe observe`) shares the pod's netns and watches its eth0 ingress with the probe's hook: root with [`OBSERVE_CAPABILITIES`] only, everything else dropped, and an unconfined seccomp profile, because runtimes' default profiles differ on whether they allow bpf(2) to a container with CAP_BPF |
//! | Services `echo` (ClusterIP) and `echo-nodeport` (NodePort) | pod-to-service through kube-proxy replacement, and NodePort; never a host outside the cluster |
//! | Pods `client-<i>` / `host-client-<i>` | created once the echoes are Ready, from their addresses ([`super::pod_checks`]): `probe connect` with the paths node i's client tests, on the pod network and on the node's; they run once (`restartPolicy: Never`) and print one observation per check. Unprivileged as the echoes |
//!
//! # The probe pod's privileges, and why each
//!
//! Node-level facts and the kernel-primitive checks must see the node's kernel
//! and network: `hostNetwork: true` (the node's devices, routes and Cilium's
//! programs on them; the probe builds its own namespaces beside them). Not
//! `hostPID`: the probe uses only processes it forks. It runs `privileged`,
//! because a non-privileged container gets `/proc/sys` and `/sys/fs/cgroup`
//! read-only, and the probe writes per-namespace sysctls (forwarding,
//! `disable_ipv6`) and creates run-scoped cgroups for the socket-LB checks;
//! Kubernetes can unmask `/proc` only with user namespaces, under which BPF is
//! not available. It is what the `container` target verified (privileged, or
//! all capabilities with no masked or read-only paths). The capabilities it
//! uses are still named ([`PROBE_CAPABILITIES`]) so that the day `privileged`
//! can go, the list is the spec. Mounts: `/sys/fs/bpf` (read-only, propagation
//! from the host: the node's bpffs and Cilium's pins, observed, never written)
//! and `/sys/kernel/btf` (read-only: the kernel's BTF for CO-RE).
//!
//! # Images
//!
//! Every pod runs the probe image (`cargo xtask image`, imported into the nodes:
//! `k3d image import`) with `imagePullPolicy: IfNotPresent`: the probe is also
//! the echo server and the client, so a run pulls nothing from a registry.

use super::pod_checks::{self, ClientSpec};
use conformance_contract::PlannedCheck;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, AppArmorProfile, Capabilities, Container, ContainerPort, EnvVar, EnvVarSource,
    HostPathVolumeSource, Namespace, ObjectFieldSelector, Pod, PodAffinity, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec,
    TCPSocketAction, Toleration, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The Kubernetes release the manifests are written for (and validated against).
pub const KUBERNETES_VERSION: &str = "1.33";
/// Where the probe sits in its image (as for the `container` target).
pub const PROBE_PATH: &str = crate::target::container::PROBE_PATH_IN_IMAGE;
/// What `cargo xtask image` tags its latest build.
pub const DEFAULT_PROBE_IMAGE: &str = "cilium-conformance-probe:latest";
/// The echo pods' ports (`probe echo`).
pub const ECHO_TCP_PORT: u16 = 8080;
pub const ECHO_UDP_PORT: u16 = 8081;
/// The echo pods' observer (`probe observe`, for `cluster.stack-delivery`): the
/// UDP port its hook matches and the TCP port of its sessions.
pub const OBSERVE_UDP_PORT: u16 = 8090;
pub const OBSERVE_SESSION_PORT: u16 = 8091;
/// The check the observer containers exist for.
pub const STACK_DELIVERY_CHECK: &str = "cluster.stack-delivery";
/// The observer container's capabilities, each with its reason: the only
/// privileges of any pod on the pod network, and only when the check is selected.
pub const OBSERVE_CAPABILITIES: [(&str, &str); 4] = [
    ("BPF", "loading the hook program and creating its maps"),
    (
        "NET_ADMIN",
        "attaching it to the pod's own eth0 ingress (a TCX link, or a clsact qdisc and a tc filter)",
    ),
    (
        "PERFMON",
        "the hook's reads of skb metadata it records for evidence",
    ),
    (
        "SYS_RESOURCE",
        "raising RLIMIT_MEMLOCK for the maps on kernels that still charge BPF memory to it (< 5.11)",
    ),
];
/// Where each node's probe pod serves its echo on the node's network, once its
/// checks are done (`cluster.pod-to-host`): high, to stay clear of node services.
pub const HOST_ECHO_PORT: u16 = 47080;
/// Label on every object: the run it belongs to.
pub const RUN_LABEL: &str = "cilium-conformance/run-id";
/// Annotation on the run's namespace: when the run is over for sure (Unix
/// seconds); past it, a later run's sweep deletes the namespace.
pub const EXPIRES_ANNOTATION: &str = "cilium-conformance/expires-at";
/// Label on the run's pods: which node pair (`0`, `1`, ...) a pod belongs to.
pub const SLOT_LABEL: &str = "cilium-conformance/slot";
pub const SERVICE_ACCOUNT: &str = "cilium-conformance";
pub const RUNNER_ROLE: &str = "cilium-conformance-runner";
pub const PROBE_DAEMONSET: &str = "probe";
/// The init container that runs the probe (whose log holds its JSON lines).
pub const PROBE_CONTAINER: &str = "probe";
/// The client pods' one container (whose log holds their observations).
pub const CLIENT_CONTAINER: &str = "client";

/// The capabilities the probe uses, each with its reason (see the module doc for
/// why the pod is privileged all the same).
pub const PROBE_CAPABILITIES: [(&str, &str); 6] = [
    (
        "NET_ADMIN",
        "veth pairs, addresses, routes, neighbours, clsact qdiscs and tc/TCX attachments, netfilter rules in the probe's namespaces",
    ),
    (
        "SYS_ADMIN",
        "unshare/setns of network and mount namespaces, a private bpffs and tracefs, cgroup attachments; bpf(2) on kernels without CAP_BPF (< 5.8)",
    ),
    ("BPF", "loading programs and creating maps (kernel >= 5.8)"),
    (
        "PERFMON",
        "tracepoint programs (skb:kfree_skb drop reasons) and the pointer reads of the hooks that observe skb metadata",
    ),
    (
        "NET_RAW",
        "raw and packet sockets that send test packets and capture them",
    ),
    (
        "SYS_RESOURCE",
        "raising RLIMIT_MEMLOCK for maps on kernels that still charge BPF memory to it (< 5.11)",
    ),
];

/// Where the echo/client pairs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// One pair per named node, pinned by `nodeName`.
    Nodes(Vec<String>),
    /// This many pairs, spread one per node by pod anti-affinity.
    Count(u32),
}

/// Everything the manifests depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestPlan {
    pub run_id: String,
    pub probe_image: String,
    /// The probe's argv after its path (`run --run-id ... --check ...`).
    pub probe_args: Vec<String>,
    pub placement: Placement,
    /// The pod-level checks the `--check` values of `probe_args` select (all of
    /// them without any): the echo pods, services and clients exist for these.
    pub pod_checks: Vec<PlannedCheck>,
    /// When the run is over whatever happens (its start plus its timeout and a
    /// margin), in Unix seconds: written on the namespace so a later run can
    /// remove it if this one was killed before its teardown. `None`: not written
    /// (`--render-manifests`).
    pub expires_at: Option<u64>,
}

impl ManifestPlan {
    pub fn new(
        run_id: &str,
        probe_image: &str,
        probe_args: Vec<String>,
        placement: Placement,
    ) -> Self {
        let checks: Vec<String> = probe_args
            .windows(2)
            .filter(|w| w[0] == "--check")
            .map(|w| w[1].clone())
            .collect();
        ManifestPlan {
            run_id: run_id.to_string(),
            probe_image: probe_image.to_string(),
            pod_checks: super::pod_checks::selected(&checks),
            expires_at: None,
            probe_args,
            placement,
        }
    }

    /// `cilium-conformance-<run id>`.
    pub fn namespace(&self) -> String {
        format!("cilium-conformance-{}", self.run_id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "run id `{0}`: lower-case letters, digits and `-`, at most 40 characters (it names the namespace cilium-conformance-<run id>)"
    )]
    RunId(String),
    #[error("node name `{0}` is not a Kubernetes node name (a DNS subdomain)")]
    NodeName(String),
    #[error("placement: at least one node (found none)")]
    NoNodes,
    #[error("{field}: empty image reference")]
    Image { field: &'static str },
    #[error("cannot write YAML for {what}: {message}")]
    Yaml { what: String, message: String },
    #[error("--render-manifests {}: {message}", dir.display())]
    Write { dir: PathBuf, message: String },
}

/// One object the cluster target applies, in apply order.
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    Role(Role),
    RoleBinding(RoleBinding),
    DaemonSet(DaemonSet),
    Pod(Pod),
    Service(Service),
}

impl Manifest {
    pub fn kind(&self) -> &'static str {
        match self {
            Manifest::Namespace(_) => "Namespace",
            Manifest::ServiceAccount(_) => "ServiceAccount",
            Manifest::Role(_) => "Role",
            Manifest::RoleBinding(_) => "RoleBinding",
            Manifest::DaemonSet(_) => "DaemonSet",
            Manifest::Pod(_) => "Pod",
            Manifest::Service(_) => "Service",
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Manifest::Namespace(o) => &o.metadata,
            Manifest::ServiceAccount(o) => &o.metadata,
            Manifest::Role(o) => &o.metadata,
            Manifest::RoleBinding(o) => &o.metadata,
            Manifest::DaemonSet(o) => &o.metadata,
            Manifest::Pod(o) => &o.metadata,
            Manifest::Service(o) => &o.metadata,
        }
    }

    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// `Pod/echo-0`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }

    pub fn to_json(&self) -> serde_json::Value {
        let v = match self {
            Manifest::Namespace(o) => serde_json::to_value(o),
            Manifest::ServiceAccount(o) => serde_json::to_value(o),
            Manifest::Role(o) => serde_json::to_value(o),
            Manifest::RoleBinding(o) => serde_json::to_value(o),
            Manifest::DaemonSet(o) => serde_json::to_value(o),
            Manifest::Pod(o) => serde_json::to_value(o),
            Manifest::Service(o) => serde_json::to_value(o),
        };
        v.expect("k8s-openapi objects serialize")
    }

    pub fn to_yaml(&self) -> Result<String, ManifestError> {
        let r = match self {
            Manifest::Namespace(o) => super::yaml::to_yaml(o),
            Manifest::ServiceAccount(o) => super::yaml::to_yaml(o),
            Manifest::Role(o) => super::yaml::to_yaml(o),
            Manifest::RoleBinding(o) => super::yaml::to_yaml(o),
            Manifest::DaemonSet(o) => super::yaml::to_yaml(o),
            Manifest::Pod(o) => super::yaml::to_yaml(o),
            Manifest::Service(o) => super::yaml::to_yaml(o),
        };
        r.map_err(|e| ManifestError::Yaml {
            what: self.label(),
            message: e.to_string(),
        })
    }
}

fn dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(|label| dns_label(label, 63))
}

impl ManifestPlan {
    pub fn validate(&self) -> Result<(), ManifestError> {
        if !dns_label(&self.run_id, 40) {
            return Err(ManifestError::RunId(self.run_id.clone()));
        }
        match &self.placement {
            Placement::Nodes(nodes) if nodes.is_empty() => return Err(ManifestError::NoNodes),
            Placement::Count(0) => return Err(ManifestError::NoNodes),
            Placement::Nodes(nodes) => {
                if let Some(bad) = nodes.iter().find(|n| !dns_subdomain(n)) {
                    return Err(ManifestError::NodeName(bad.clone()));
                }
            }
            Placement::Count(_) => {}
        }
        if self.probe_image.trim().is_empty() {
            return Err(ManifestError::Image {
                field: "probe image",
            });
        }
        Ok(())
    }

    fn labels(&self, name: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), name.to_string()),
            (
                "app.kubernetes.io/part-of".to_string(),
                "cilium-conformance".to_string(),
            ),
            (RUN_LABEL.to_string(), self.run_id.clone()),
        ])
    }

    fn meta(&self, name: &str, app: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.namespace()),
            labels: Some(self.labels(app)),
            ..ObjectMeta::default()
        }
    }

    fn slots(&self) -> Vec<(u32, Option<String>)> {
        match &self.placement {
            Placement::Nodes(nodes) => nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (i as u32, Some(n.clone())))
                .collect(),
            Placement::Count(n) => (0..*n).map(|i| (i, None)).collect(),
        }
    }

    /// Every object, in the order they are applied.
    pub fn manifests(&self) -> Result<Vec<Manifest>, ManifestError> {
        self.validate()?;
        let mut out = vec![
            Manifest::Namespace(self.namespace_object()),
            Manifest::ServiceAccount(ServiceAccount {
                metadata: self.meta(SERVICE_ACCOUNT, SERVICE_ACCOUNT),
                automount_service_account_token: Some(false),
                ..ServiceAccount::default()
            }),
            Manifest::Role(self.role()),
            Manifest::RoleBinding(self.role_binding()),
            Manifest::DaemonSet(self.probe_daemonset()),
        ];
        if !self.pod_checks.is_empty() {
            for (slot, node) in self.slots() {
                out.push(Manifest::Pod(self.echo_pod(slot, node.as_deref())));
            }
            out.push(Manifest::Service(self.echo_service("echo", "ClusterIP")));
            out.push(Manifest::Service(
                self.echo_service("echo-nodeport", "NodePort"),
            ));
        }
        Ok(out)
    }

    /// The client pods, made once the echoes' addresses are known
    /// ([`super::pod_checks::client_plans`]).
    pub fn client_manifests(&self, clients: &[ClientSpec]) -> Vec<Manifest> {
        let pinned = matches!(self.placement, Placement::Nodes(_));
        clients
            .iter()
            .map(|c| Manifest::Pod(self.client_pod(c, pinned)))
            .collect()
    }

    fn namespace_object(&self) -> Namespace {
        let mut labels = self.labels("cilium-conformance");
        for mode in ["enforce", "audit", "warn"] {
            labels.insert(
                format!("pod-security.kubernetes.io/{mode}"),
                "privileged".to_string(),
            );
        }
        Namespace {
            metadata: ObjectMeta {
                name: Some(self.namespace()),
                labels: Some(labels),
                annotations: self
                    .expires_at
                    .map(|at| BTreeMap::from([(EXPIRES_ANNOTATION.to_string(), at.to_string())])),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }
    }

    fn role(&self) -> Role {
        let rule = |resources: &[&str], verbs: &[&str]| PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(resources.iter().map(|s| s.to_string()).collect()),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            ..PolicyRule::default()
        };
        Role {
            metadata: self.meta(RUNNER_ROLE, RUNNER_ROLE),
            rules: Some(vec![
                rule(&["pods"], &["get", "list", "watch", "create"]),
                rule(&["pods/log"], &["get"]),
                rule(&["services"], &["get"]),
            ]),
        }
    }

    fn role_binding(&self) -> RoleBinding {
        RoleBinding {
            metadata: self.meta(RUNNER_ROLE, RUNNER_ROLE),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: RUNNER_ROLE.into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: SERVICE_ACCOUNT.into(),
                namespace: Some(self.namespace()),
                ..Subject::default()
            }]),
        }
    }

    fn probe_daemonset(&self) -> DaemonSet {
        let app = "cilium-conformance-probe";
        let selector = BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), app.to_string()),
            (RUN_LABEL.to_string(), self.run_id.clone()),
        ]);
        let host_path = |name: &str, path: &str| Volume {
            name: name.to_string(),
            host_path: Some(HostPathVolumeSource {
                path: path.to_string(),
                type_: Some("Directory".into()),
            }),
            ..Volume::default()
        };
        let probe = Container {
            name: PROBE_CONTAINER.into(),
            image: Some(self.probe_image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec![PROBE_PATH.to_string()]),
            args: Some(self.probe_args.clone()),
            env: Some(vec![field_env("CONFORMANCE_NODE", "spec.nodeName")]),
            security_context: Some(SecurityContext {
                privileged: Some(true),
                capabilities: Some(Capabilities {
                    add: Some(
                        PROBE_CAPABILITIES
                            .iter()
                            .map(|(c, _)| c.to_string())
                            .collect(),
                    ),
                    drop: None,
                }),
                seccomp_profile: Some(SeccompProfile {
                    type_: "Unconfined".into(),
                    ..SeccompProfile::default()
                }),
                app_armor_profile: Some(AppArmorProfile {
                    type_: "Unconfined".into(),
                    ..AppArmorProfile::default()
                }),
                run_as_user: Some(0),
                ..SecurityContext::default()
            }),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "bpffs".into(),
                    mount_path: "/sys/fs/bpf".into(),
                    read_only: Some(true),
                    mount_propagation: Some("HostToContainer".into()),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: "btf".into(),
                    mount_path: "/sys/kernel/btf".into(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
            ]),
            resources: Some(requests("100m", "64Mi")),
            termination_message_policy: Some("FallbackToLogsOnError".into()),
            ..Container::default()
        };
        // After the checks: the node's echo (cluster.pod-to-host), which also
        // keeps the pod Ready.
        let echo = Container {
            name: "echo".into(),
            image: Some(self.probe_image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec![PROBE_PATH.to_string()]),
            args: Some(vec![
                "echo".into(),
                "--name".into(),
                "$(CONFORMANCE_NODE)".into(),
                "--tcp".into(),
                HOST_ECHO_PORT.to_string(),
            ]),
            env: Some(vec![field_env("CONFORMANCE_NODE", "spec.nodeName")]),
            readiness_probe: Some(tcp_ready(HOST_ECHO_PORT)),
            security_context: Some(unprivileged_user()),
            resources: Some(requests("1m", "8Mi")),
            ..Container::default()
        };
        let mut labels = self.labels(app);
        labels.extend(selector.clone());
        DaemonSet {
            metadata: self.meta(PROBE_DAEMONSET, app),
            spec: Some(DaemonSetSpec {
                selector: LabelSelector {
                    match_labels: Some(selector),
                    ..LabelSelector::default()
                },
                update_strategy: Some(DaemonSetUpdateStrategy {
                    type_: Some("OnDelete".into()),
                    ..DaemonSetUpdateStrategy::default()
                }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        service_account_name: Some(SERVICE_ACCOUNT.into()),
                        automount_service_account_token: Some(false),
                        host_network: Some(true),
                        host_pid: Some(false),
                        dns_policy: Some("ClusterFirstWithHostNet".into()),
                        // Every node, tainted control planes included.
                        tolerations: Some(vec![Toleration {
                            operator: Some("Exists".into()),
                            ..Toleration::default()
                        }]),
                        termination_grace_period_seconds: Some(5),
                        init_containers: Some(vec![probe]),
                        containers: vec![echo],
                        volumes: Some(vec![
                            host_path("bpffs", "/sys/fs/bpf"),
                            host_path("btf", "/sys/kernel/btf"),
                        ]),
                        ..PodSpec::default()
                    }),
                },
                ..DaemonSetSpec::default()
            }),
            ..DaemonSet::default()
        }
    }

    fn pod_labels(&self, app: &str, slot: u32) -> BTreeMap<String, String> {
        let mut labels = self.labels(app);
        labels.insert(SLOT_LABEL.to_string(), slot.to_string());
        labels
    }

    fn pod_spec(
        &self,
        container: Container,
        node: Option<&str>,
        affinity: Option<Affinity>,
    ) -> PodSpec {
        PodSpec {
            service_account_name: Some(SERVICE_ACCOUNT.into()),
            automount_service_account_token: Some(false),
            node_name: node.map(String::from),
            affinity: if node.is_some() { None } else { affinity },
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(65534),
                run_as_group: Some(65534),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            termination_grace_period_seconds: Some(1),
            containers: vec![container],
            ..PodSpec::default()
        }
    }

    fn echo_pod(&self, slot: u32, node: Option<&str>) -> Pod {
        let app = "cilium-conformance-echo";
        let port = container_port;
        let container = Container {
            name: "echo".into(),
            image: Some(self.probe_image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec![PROBE_PATH.to_string()]),
            args: Some(vec![
                "echo".into(),
                "--name".into(),
                "$(POD_NAME)".into(),
                "--tcp".into(),
                ECHO_TCP_PORT.to_string(),
                "--udp".into(),
                ECHO_UDP_PORT.to_string(),
            ]),
            env: Some(vec![field_env("POD_NAME", "metadata.name")]),
            ports: Some(vec![
                port("echo-tcp", ECHO_TCP_PORT, "TCP"),
                port("echo-udp", ECHO_UDP_PORT, "UDP"),
            ]),
            readiness_probe: Some(tcp_ready(ECHO_TCP_PORT)),
            security_context: Some(unprivileged()),
            resources: Some(requests("10m", "16Mi")),
            ..Container::default()
        };
        let mut containers = vec![container];
        if self
            .pod_checks
            .iter()
            .any(|c| c.check == STACK_DELIVERY_CHECK)
        {
            containers.push(self.observe_container());
        }
        // One echo per node: required anti-affinity among the run's echoes.
        let affinity = Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![
                    self.term(app, None),
                ]),
                ..PodAntiAffinity::default()
            }),
            ..Affinity::default()
        };
        let mut metadata = self.meta(&format!("echo-{slot}"), app);
        metadata.labels = Some(self.pod_labels(app, slot));
        let mut spec = self.pod_spec(containers.remove(0), node, Some(affinity));
        spec.containers.extend(containers);
        Pod {
            metadata,
            spec: Some(spec),
            ..Pod::default()
        }
    }

    /// `probe observe` beside the echo, in its netns: Ready once its session
    /// port listens (a hook it could not attach is reported per session).
    fn observe_container(&self) -> Container {
        Container {
            name: "observe".into(),
            image: Some(self.probe_image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec![PROBE_PATH.to_string()]),
            args: Some(vec![
                "observe".into(),
                "--name".into(),
                "$(POD_NAME)".into(),
                "--udp".into(),
                OBSERVE_UDP_PORT.to_string(),
                "--session".into(),
                OBSERVE_SESSION_PORT.to_string(),
            ]),
            env: Some(vec![field_env("POD_NAME", "metadata.name")]),
            ports: Some(vec![
                container_port("observe-udp", OBSERVE_UDP_PORT, "UDP"),
                container_port("observe", OBSERVE_SESSION_PORT, "TCP"),
            ]),
            readiness_probe: Some(tcp_ready(OBSERVE_SESSION_PORT)),
            security_context: Some(SecurityContext {
                run_as_non_root: Some(false),
                run_as_user: Some(0),
                run_as_group: Some(0),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    add: Some(
                        OBSERVE_CAPABILITIES
                            .iter()
                            .map(|(c, _)| c.to_string())
                            .collect(),
                    ),
                }),
                seccomp_profile: Some(SeccompProfile {
                    type_: "Unconfined".into(),
                    ..SeccompProfile::default()
                }),
                ..unprivileged()
            }),
            resources: Some(requests("10m", "16Mi")),
            ..Container::default()
        }
    }

    /// `client-<i>` (pod network) or `host-client-<i>` (the node's network):
    /// `probe connect` with its plan, once.
    fn client_pod(&self, client: &ClientSpec, pinned: bool) -> Pod {
        let app = if client.host_network {
            "cilium-conformance-host-client"
        } else {
            "cilium-conformance-client"
        };
        let plan = serde_json::to_string(&client.plan).expect("a connect plan serializes");
        let container = Container {
            name: CLIENT_CONTAINER.into(),
            image: Some(self.probe_image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec![PROBE_PATH.to_string()]),
            args: Some(vec!["connect".into(), "--plan".into(), plan]),
            security_context: Some(unprivileged()),
            resources: Some(requests("10m", "16Mi")),
            ..Container::default()
        };
        // On the node of echo-<slot>.
        let affinity = Affinity {
            pod_affinity: Some(PodAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![
                    self.term("cilium-conformance-echo", Some(client.slot)),
                ]),
                ..PodAffinity::default()
            }),
            ..Affinity::default()
        };
        let node = pinned.then_some(client.node.as_str());
        let mut spec = self.pod_spec(container, node, Some(affinity));
        spec.restart_policy = Some("Never".into());
        if client.host_network {
            spec.host_network = Some(true);
            spec.dns_policy = Some("ClusterFirstWithHostNet".into());
        }
        let mut metadata = self.meta(&client.name, app);
        metadata.labels = Some(self.pod_labels(app, client.slot));
        Pod {
            metadata,
            spec: Some(spec),
            ..Pod::default()
        }
    }

    fn term(&self, app: &str, slot: Option<u32>) -> PodAffinityTerm {
        let mut labels = BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), app.to_string()),
            (RUN_LABEL.to_string(), self.run_id.clone()),
        ]);
        if let Some(slot) = slot {
            labels.insert(SLOT_LABEL.to_string(), slot.to_string());
        }
        PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some(labels),
                ..LabelSelector::default()
            }),
            topology_key: "kubernetes.io/hostname".into(),
            ..PodAffinityTerm::default()
        }
    }

    fn echo_service(&self, name: &str, type_: &str) -> Service {
        let port = |name: &str, port: u16, protocol: &str| ServicePort {
            name: Some(name.to_string()),
            port: i32::from(port),
            target_port: Some(IntOrString::String(name.to_string())),
            protocol: Some(protocol.to_string()),
            ..ServicePort::default()
        };
        Service {
            metadata: self.meta(name, "cilium-conformance-echo"),
            spec: Some(ServiceSpec {
                type_: Some(type_.to_string()),
                selector: Some(BTreeMap::from([
                    (
                        "app.kubernetes.io/name".to_string(),
                        "cilium-conformance-echo".to_string(),
                    ),
                    (RUN_LABEL.to_string(), self.run_id.clone()),
                ])),
                ports: Some(vec![
                    port("echo-tcp", ECHO_TCP_PORT, "TCP"),
                    port("echo-udp", ECHO_UDP_PORT, "UDP"),
                ]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }
}

fn requests(cpu: &str, memory: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.to_string())),
            ("memory".to_string(), Quantity(memory.to_string())),
        ])),
        ..ResourceRequirements::default()
    }
}

fn container_port(name: &str, port: u16, protocol: &str) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: i32::from(port),
        protocol: Some(protocol.into()),
        ..ContainerPort::default()
    }
}

/// An env var from the pod's own fields (`spec.nodeName`, `metadata.name`).
fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// Ready once the echo accepts connections.
fn tcp_ready(port: u16) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(i32::from(port)),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(1),
        ..Probe::default()
    }
}

/// [`unprivileged`], as a user of its own: the DaemonSet's pod has no pod-level
/// user (its probe runs as root).
fn unprivileged_user() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65534),
        run_as_group: Some(65534),
        ..unprivileged()
    }
}

fn unprivileged() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

/// The file a manifest is written to: `NN-kind-name.yaml`, in apply order
/// (`kubectl apply -f DIR` reads a directory in name order).
pub fn file_name(index: usize, manifest: &Manifest) -> String {
    format!(
        "{index:02}-{}-{}.yaml",
        manifest.kind().to_ascii_lowercase(),
        manifest.name()
    )
}

/// What `--render-manifests` writes: every object of `plan`, then the client
/// pods as they would be created, with `<...>` placeholders for the addresses
/// a run fills in once the echoes are Ready.
pub fn rendered(plan: &ManifestPlan) -> Result<Vec<Manifest>, ManifestError> {
    let mut manifests = plan.manifests()?;
    let slots = plan.slots();
    let mut topology =
        pod_checks::placeholder_topology(&plan.namespace(), &plan.run_id, slots.len() as u32);
    for (slot, (_, node)) in topology.slots.iter_mut().zip(&slots) {
        if let Some(node) = node {
            slot.node = node.clone();
        }
    }
    let (clients, _) = pod_checks::client_plans(&plan.pod_checks, &topology);
    manifests.extend(plan.client_manifests(&clients));
    Ok(manifests)
}

/// `--render-manifests DIR`: writes every manifest of `plan` to `dir` (created if
/// missing), one file each; returns the paths written.
pub fn render_to(plan: &ManifestPlan, dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let manifests = rendered(plan)?;
    let write_err = |message: String| ManifestError::Write {
        dir: dir.to_path_buf(),
        message,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(write_err("exists and is not a directory".into()));
    }
    std::fs::create_dir_all(dir).map_err(|e| write_err(e.to_string()))?;
    let mut written = Vec::new();
    for (i, m) in manifests.iter().enumerate() {
        let path = dir.join(file_name(i, m));
        let client = m.name().starts_with("client-") || m.name().starts_with("host-client-");
        let text = format!(
            "# {} of cilium-conformance run {} (rendered for Kubernetes {KUBERNETES_VERSION}+){}\n{}",
            m.label(),
            plan.run_id,
            if client {
                "\n# Created once the echoes are Ready: a run puts their addresses where this\n# shows <...>, and the NodePort the API server gave echo-nodeport where it shows port 0."
            } else {
                ""
            },
            m.to_yaml()?
        );
        std::fs::write(&path, text).map_err(|e| write_err(format!("{}: {e}", path.display())))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(placement: Placement) -> ManifestPlan {
        ManifestPlan::new(
            "ab12cd34",
            DEFAULT_PROBE_IMAGE,
            vec!["run".into()],
            placement,
        )
    }

    #[test]
    fn bad_plans_fail_in_one_line() {
        let mut p = plan(Placement::Count(3));
        p.run_id = "Run_1".into();
        assert!(
            p.manifests()
                .unwrap_err()
                .to_string()
                .starts_with("run id `Run_1`")
        );
        let p = plan(Placement::Nodes(vec!["ok".into(), "Not OK".into()]));
        assert_eq!(
            p.manifests().unwrap_err().to_string(),
            "node name `Not OK` is not a Kubernetes node name (a DNS subdomain)"
        );
        assert_eq!(
            plan(Placement::Count(0)).manifests().unwrap_err(),
            ManifestError::NoNodes
        );
        let mut p = plan(Placement::Count(1));
        p.probe_image = String::new();
        assert_eq!(
            p.validate().unwrap_err().to_string(),
            "probe image: empty image reference"
        );
    }

    #[test]
    fn every_object_is_in_the_run_namespace_and_labelled() {
        let p = plan(Placement::Count(3));
        let all = p.manifests().unwrap();
        let kinds: Vec<String> = all.iter().map(Manifest::label).collect();
        assert_eq!(
            kinds,
            [
                "Namespace/cilium-conformance-ab12cd34",
                "ServiceAccount/cilium-conformance",
                "Role/cilium-conformance-runner",
                "RoleBinding/cilium-conformance-runner",
                "DaemonSet/probe",
                "Pod/echo-0",
                "Pod/echo-1",
                "Pod/echo-2",
                "Service/echo",
                "Service/echo-nodeport",
            ]
        );
        // Without a pod-level check: the probes alone.
        let mut lean = p.clone();
        lean.pod_checks.clear();
        assert_eq!(lean.manifests().unwrap().len(), 5);
        for m in &all {
            let meta = m.metadata();
            assert_eq!(
                meta.labels.as_ref().unwrap()[RUN_LABEL],
                "ab12cd34",
                "{}",
                m.label()
            );
            if !matches!(m, Manifest::Namespace(_)) {
                assert_eq!(
                    meta.namespace.as_deref(),
                    Some("cilium-conformance-ab12cd34")
                );
            }
        }
    }

    #[test]
    fn pinned_nodes_use_node_name_and_no_affinity() {
        let p = plan(Placement::Nodes(vec![
            "k3d-a-server-0".into(),
            "k3d-a-agent-0".into(),
        ]));
        let pods: Vec<Pod> = p
            .manifests()
            .unwrap()
            .into_iter()
            .filter_map(|m| match m {
                Manifest::Pod(p) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(pods.len(), 2);
        for pod in &pods {
            let spec = pod.spec.as_ref().unwrap();
            assert!(spec.node_name.is_some() && spec.affinity.is_none());
        }
        assert_eq!(
            pods[1].spec.as_ref().unwrap().node_name.as_deref(),
            Some("k3d-a-agent-0")
        );
    }

    #[test]
    fn the_role_grants_only_what_the_suite_uses() {
        let p = plan(Placement::Count(1));
        let role = p.role();
        let rules: Vec<(Vec<String>, Vec<String>)> = role
            .rules
            .unwrap()
            .into_iter()
            .map(|r| (r.resources.unwrap(), r.verbs))
            .collect();
        assert_eq!(
            rules,
            [
                (
                    vec!["pods".to_string()],
                    vec![
                        "get".to_string(),
                        "list".into(),
                        "watch".into(),
                        "create".into()
                    ]
                ),
                (vec!["pods/log".to_string()], vec!["get".to_string()]),
                (vec!["services".to_string()], vec!["get".to_string()]),
            ]
        );
    }

    #[test]
    fn only_the_stack_delivery_check_adds_the_observer_and_its_capabilities() {
        let echo_containers = |checks: &[&str]| -> Vec<Vec<Container>> {
            let mut argv = vec!["run".to_string()];
            for c in checks {
                argv.extend(["--check".to_string(), c.to_string()]);
            }
            let p = ManifestPlan::new("ab12cd34", DEFAULT_PROBE_IMAGE, argv, Placement::Count(2));
            p.manifests()
                .unwrap()
                .into_iter()
                .filter_map(|m| match m {
                    Manifest::Pod(pod)
                        if pod.metadata.name.as_deref().unwrap().starts_with("echo-") =>
                    {
                        Some(pod.spec.unwrap().containers)
                    }
                    _ => None,
                })
                .collect()
        };
        let without = echo_containers(&["cluster.pod-to-pod"]);
        assert_eq!(without.len(), 2);
        assert!(without.iter().all(|c| c.len() == 1 && c[0].name == "echo"));
        let with = echo_containers(&["cluster.stack-delivery[from-host]"]);
        assert_eq!(with.len(), 2);
        for containers in &with {
            let observe = containers.iter().find(|c| c.name == "observe").unwrap();
            let args = observe.args.as_ref().unwrap();
            assert_eq!(args[0], "observe");
            let sc = observe.security_context.as_ref().unwrap();
            let caps = sc.capabilities.as_ref().unwrap();
            assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
            assert_eq!(
                caps.add.as_deref().unwrap(),
                ["BPF", "NET_ADMIN", "PERFMON", "SYS_RESOURCE"]
            );
            assert_eq!(sc.privileged, None);
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            // The echo beside it keeps no capability at all.
            let echo = containers.iter().find(|c| c.name == "echo").unwrap();
            let echo_caps = echo
                .security_context
                .as_ref()
                .unwrap()
                .capabilities
                .as_ref();
            assert_eq!(echo_caps.unwrap().add, None);
        }
    }

    #[test]
    fn clients_are_pinned_run_once_and_carry_their_plan() {
        use crate::cluster::pod_checks::{client_plans, example_topology};
        let p = plan(Placement::Nodes(vec!["n0".into(), "n1".into()]));
        let topo = example_topology(&p.namespace(), &p.run_id, 2);
        let (clients, _) = client_plans(&p.pod_checks, &topo);
        let pods: Vec<Pod> = p
            .client_manifests(&clients)
            .into_iter()
            .map(|m| match m {
                Manifest::Pod(p) => p,
                other => panic!("{}", other.label()),
            })
            .collect();
        assert_eq!(pods.len(), 4);
        for (pod, client) in pods.iter().zip(&clients) {
            let spec = pod.spec.as_ref().unwrap();
            assert_eq!(spec.node_name.as_deref(), Some(client.node.as_str()));
            assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
            assert_eq!(spec.host_network, client.host_network.then_some(true));
            let c = &spec.containers[0];
            let args = c.args.as_ref().unwrap();
            assert_eq!(args[..2], ["connect".to_string(), "--plan".into()]);
            let plan: conformance_contract::pods::ConnectPlan =
                serde_json::from_str(&args[2]).unwrap();
            assert_eq!(plan, client.plan);
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.allow_privilege_escalation, Some(false));
        }
        // The echoes and the node's echo run the probe image, nothing pulled.
        for m in p.manifests().unwrap() {
            let spec = match &m {
                Manifest::Pod(pod) => pod.spec.clone(),
                Manifest::DaemonSet(ds) => ds.spec.as_ref().unwrap().template.spec.clone(),
                _ => continue,
            }
            .unwrap();
            for c in spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
            {
                assert_eq!(
                    c.image.as_deref(),
                    Some(DEFAULT_PROBE_IMAGE),
                    "{}",
                    m.label()
                );
            }
        }
    }
}
