//! The cluster target's provisioning configs: `fixtures/k3d/cluster.yaml` and
//! `fixtures/k3d/ctlptl.yaml` (rendered by `suite/src/cluster/k3d.rs`) and
//! `fixtures/cilium/values.yaml` (hand-written).
//!
//! - fresh: each k3d fixture is what the code renders for the default plan
//!   (`CONFORMANCE_REWRITE_FIXTURES=1` rewrites them);
//! - schemas: the k3d config (default and other counts), the config ctlptl
//!   embeds, and the Cilium values validate against `../shared/schemas/`
//!   (k3d 5.9.0's and the Cilium 1.19.5 chart's JSON Schemas, draft-07, with
//!   format assertions), and a broken copy of each does not (the validator is
//!   not blind). Counted as ignored, with the reason printed, where `../shared`
//!   is missing;
//! - our own checks for what the schemas take: the k3s server arguments on
//!   `server:*`, node filters within the plan, `K3D_FIX_MOUNTS` on every k3s
//!   node, ctlptl's quirks, the values' rules (`cluster::values`) and the
//!   settings they turn on;
//! - insta snapshots of each file.

use conformance_suite::cilium_values;
use conformance_suite::cluster::k3d::{K3dPlan, SERVER_ARGS, node_filter_problems};
use conformance_suite::cluster::{values, yaml};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/schemas")
}

const K3D_SCHEMA: &str = "k3d-v1alpha5.schema.json";
const CILIUM_SCHEMA: &str = "cilium-1.19.5-values.schema.json";

fn missing_schema(name: &str) -> Option<String> {
    let path = schemas_dir().join(name);
    (!path.is_file()).then(|| format!("schema not found at {}", path.display()))
}

fn read(rel: &str) -> Result<String, Failed> {
    std::fs::read_to_string(repo().join(rel)).map_err(|e| format!("{rel}: {e}").into())
}

fn one_doc(rel: &str, text: &str) -> Result<Value, Failed> {
    let mut docs = yaml::to_json(rel, text).map_err(|e| e.to_string())?;
    if docs.len() != 1 {
        return Err(format!("{rel}: {} documents, expected 1", docs.len()).into());
    }
    Ok(docs.remove(0))
}

struct Validator {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl Validator {
    fn load(name: &str) -> Result<Validator, Failed> {
        let path = schemas_dir().join(name);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
        let schema: Value = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
        let mut compiler = boon::Compiler::new();
        compiler.enable_format_assertions();
        let url = format!("file:///schemas/{name}");
        compiler
            .add_resource(&url, schema)
            .map_err(|e| format!("{name}: {e}"))?;
        let mut schemas = boon::Schemas::new();
        let index = compiler
            .compile(&url, &mut schemas)
            .map_err(|e| format!("{name}: {e:#}"))?;
        Ok(Validator { schemas, index })
    }

    fn check(&self, what: &str, value: &Value) -> Result<(), String> {
        self.schemas
            .validate(value, self.index)
            .map_err(|e| format!("{what}: {e:#}"))
    }
}

fn fresh(rel: &'static str, rendered: String) -> Result<(), Failed> {
    let path = repo().join(rel);
    if std::env::var_os("CONFORMANCE_REWRITE_FIXTURES").is_some() {
        std::fs::write(&path, &rendered).map_err(|e| format!("{rel}: {e}"))?;
        return Ok(());
    }
    let on_disk = read(rel)?;
    if on_disk != rendered {
        return Err(format!(
            "{rel} differs from what suite/src/cluster/k3d.rs renders; rewrite it with \
             CONFORMANCE_REWRITE_FIXTURES=1 cargo test -p conformance-suite --test cluster_configs"
        )
        .into());
    }
    Ok(())
}

/// Plans beside the default, so the schema sees the other shapes counts produce.
fn plans() -> Vec<K3dPlan> {
    vec![
        K3dPlan::default(),
        K3dPlan {
            agents: 0,
            ..K3dPlan::default()
        },
        K3dPlan {
            servers: 3,
            agents: 5,
            name: "ha".into(),
            ..K3dPlan::default()
        },
    ]
}

fn plan_json(plan: &K3dPlan) -> Result<Value, Failed> {
    let text = plan.render_k3d().map_err(|e| e.to_string())?;
    one_doc("cluster.yaml", &text)
}

fn ctlptl_json(plan: &K3dPlan) -> Result<Value, Failed> {
    let text = plan.render_ctlptl().map_err(|e| e.to_string())?;
    one_doc("ctlptl.yaml", &text)
}

fn k3d_schema() -> Result<(), Failed> {
    let v = Validator::load(K3D_SCHEMA)?;
    let fixture = one_doc(
        "fixtures/k3d/cluster.yaml",
        &read("fixtures/k3d/cluster.yaml")?,
    )?;
    v.check("fixtures/k3d/cluster.yaml", &fixture)?;
    for plan in plans() {
        v.check(&format!("{plan:?}"), &plan_json(&plan)?)?;
        // What ctlptl hands k3d: the embedded config with apiVersion and kind.
        let embedded = ctlptl_json(&plan)?["k3d"]["v1alpha5Simple"].clone();
        v.check(&format!("ctlptl's embedded config for {plan:?}"), &embedded)?;
    }
    // Not blind: an unknown key, a misspelled filter field, a bad hostIP fail.
    let mut broken = fixture.clone();
    broken["option"] = json!({});
    let mut filters = fixture.clone();
    filters["ports"][0]["nodeFilter"] = json!(["loadbalancer"]);
    let mut ip = fixture;
    ip["kubeAPI"]["hostIP"] = json!("localhost:6550");
    for (what, bad) in [("option", broken), ("nodeFilter", filters), ("hostIP", ip)] {
        if v.check(what, &bad).is_ok() {
            return Err(format!("the k3d schema accepted a config with a bad {what}").into());
        }
    }
    Ok(())
}

fn k3d_own_checks() -> Result<(), Failed> {
    for plan in plans() {
        let c = plan_json(&plan)?;
        let mut problems = Vec::new();
        // Every node filter in the file, within this plan's counts.
        let mut filters = Vec::new();
        collect_filters(&c, &mut filters);
        for f in &filters {
            if let Some(p) = node_filter_problems(f, plan.servers, plan.agents) {
                problems.push(p);
            }
        }
        let args = c["options"]["k3s"]["extraArgs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for want in SERVER_ARGS {
            let on_servers = args.iter().any(|a| {
                a["arg"] == want
                    && a["nodeFilters"]
                        .as_array()
                        .is_some_and(|f| f.iter().any(|f| f == "server:*"))
            });
            if !on_servers {
                problems.push(format!("k3s argument {want} is not set on server:*"));
            }
        }
        let fix = c["env"].as_array().and_then(|env| {
            env.iter()
                .find(|e| e["envVar"] == "K3D_FIX_MOUNTS=1")
                .map(|e| e["nodeFilters"].clone())
        });
        let mut want_fix = vec![json!("server:*")];
        if plan.agents > 0 {
            want_fix.push(json!("agent:*"));
        }
        if fix != Some(Value::Array(want_fix)) {
            problems.push(format!("K3D_FIX_MOUNTS=1 not on every k3s node: {fix:?}"));
        }
        if c["options"]["k3d"]["wait"] != true {
            problems.push("options.k3d.wait is not true".into());
        }
        let image = c["image"].as_str().unwrap_or_default();
        if !image.starts_with("rancher/k3s:v") || image.ends_with(":latest") {
            problems.push(format!("image {image} is not a pinned k3s release"));
        }
        if c["servers"] != plan.servers || c["agents"] != plan.agents {
            problems.push("servers/agents differ from the plan".into());
        }
        if c["options"]["kubeconfig"]["switchCurrentContext"] != false {
            problems.push("the config would switch the user's kubectl context".into());
        }
        if !problems.is_empty() {
            return Err(format!("{plan:?}:\n{}", problems.join("\n")).into());
        }
    }
    // The checker is not blind either.
    assert!(node_filter_problems("agent:2", 1, 2).is_some());
    Ok(())
}

fn collect_filters(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "nodeFilters" {
                    out.extend(
                        child
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|f| f.as_str().map(String::from)),
                    );
                } else {
                    collect_filters(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_filters(i, out)),
        _ => {}
    }
}

/// Top-level fields of ctlptl's `k3dv1alpha5.SimpleConfig` (pkg/api/k3dv1alpha5):
/// anything else in the embedded config is dropped without a word when ctlptl
/// decodes it and re-encodes it for k3d.
const CTLPTL_K3D_FIELDS: [&str; 16] = [
    "kind",
    "apiVersion",
    "metadata",
    "servers",
    "agents",
    "kubeAPI",
    "image",
    "network",
    "subnet",
    "clusterToken",
    "volumes",
    "ports",
    "options",
    "env",
    "registries",
    "hostAliases",
];

fn ctlptl_quirks() -> Result<(), Failed> {
    let fixture = one_doc(
        "fixtures/k3d/ctlptl.yaml",
        &read("fixtures/k3d/ctlptl.yaml")?,
    )?;
    let mut docs = vec![("fixtures/k3d/ctlptl.yaml".to_string(), fixture)];
    for plan in plans() {
        docs.push((format!("{plan:?}"), ctlptl_json(&plan)?));
    }
    for (what, c) in docs {
        let mut problems = Vec::new();
        if c["apiVersion"] != "ctlptl.dev/v1alpha1" || c["kind"] != "Cluster" {
            problems.push("not a ctlptl.dev/v1alpha1 Cluster".to_string());
        }
        if c["product"] != "k3d" {
            problems.push("product is not k3d".into());
        }
        let name = c["name"].as_str().unwrap_or_default();
        let Some(k3d_name) = name.strip_prefix("k3d-") else {
            return Err(
                format!("{what}: name `{name}` lacks the k3d- prefix ctlptl requires").into(),
            );
        };
        if c.get("kubernetesVersion").is_some() {
            problems.push("kubernetesVersion is ignored by ctlptl for k3d (set the image)".into());
        }
        let simple = &c["k3d"]["v1alpha5Simple"];
        let Some(fields) = simple.as_object() else {
            return Err(format!("{what}: no k3d.v1alpha5Simple").into());
        };
        for key in fields.keys() {
            if !CTLPTL_K3D_FIELDS.contains(&key.as_str()) {
                problems.push(format!(
                    "k3d.v1alpha5Simple.{key}: ctlptl does not know it (`token` is spelled clusterToken there) and drops it"
                ));
            }
        }
        if let Some(meta) = simple["metadata"]["name"].as_str()
            && meta != k3d_name
        {
            problems.push(format!(
                "metadata.name {meta} is overwritten by ctlptl with {k3d_name}"
            ));
        }
        if !fields
            .get("options")
            .is_none_or(|o| o["k3d"]["wait"] == true)
        {
            problems.push(
                "options is set but options.k3d.wait is not true: ctlptl would send wait: false"
                    .into(),
            );
        }
        // ctlptl omits false booleans under options.kubeconfig: writing one is a no-op.
        if let Some(kc) = simple["options"]["kubeconfig"].as_object() {
            for (k, v) in kc {
                if v == false {
                    problems.push(format!(
                        "options.kubeconfig.{k}: false is dropped by ctlptl (k3d's default, true, applies)"
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(format!("{what}:\n{}", problems.join("\n")).into());
        }
    }
    Ok(())
}

fn values_doc() -> Result<Value, Failed> {
    one_doc(
        "fixtures/cilium/values.yaml",
        &read("fixtures/cilium/values.yaml")?,
    )
}

fn cilium_schema() -> Result<(), Failed> {
    let v = Validator::load(CILIUM_SCHEMA)?;
    let doc = values_doc()?;
    v.check("fixtures/cilium/values.yaml", &doc)?;
    let mut wrong_type = doc.clone();
    wrong_type["ipam"]["mode"] = json!(1);
    if v.check("ipam.mode", &wrong_type).is_ok() {
        return Err("the Cilium schema accepted ipam.mode: 1".into());
    }
    // What the schema alone lets through, and our checks catch with it.
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(schemas_dir().join(CILIUM_SCHEMA)).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let problems = values::problems(&doc, Some(&schema));
    if !problems.is_empty() {
        return Err(format!("fixtures/cilium/values.yaml:\n{}", problems.join("\n")).into());
    }
    let mut typo = doc;
    typo["bpf"]["hostLegacyRoutin"] = json!(false);
    typo["routingMode"] = json!("tunel");
    v.check("typo", &typo)
        .map_err(|e| format!("expected the loose schema to take the typo: {e}"))?;
    let caught = values::problems(&typo, Some(&schema));
    if caught
        != [
            "bpf.hostLegacyRoutin: not a key of the Cilium chart's values",
            "routingMode: expected one of tunnel, native, found \"tunel\"",
        ]
    {
        return Err(format!("typos not caught as expected: {caught:?}").into());
    }
    Ok(())
}

fn cilium_own_checks() -> Result<(), Failed> {
    let doc = values_doc()?;
    let problems = values::problems(&doc, None);
    if !problems.is_empty() {
        return Err(problems.join("\n").into());
    }
    // The API server address is the first server of the fixture's k3d cluster.
    let server = K3dPlan::default().first_server();
    if doc["k8sServiceHost"] != server.as_str() || doc["k8sServicePort"] != 6443 {
        return Err(format!(
            "k8sServiceHost/Port are not {server}:6443, the k3d cluster's API server"
        )
        .into());
    }
    // What the agent turns on with these values, read as Helm reads them.
    let path = repo().join("fixtures/cilium/values.yaml");
    let read = cilium_values::parse(&path, &read("fixtures/cilium/values.yaml")?)
        .map_err(|e| e.to_string())?;
    let ids = read.setting_ids();
    for want in [
        "kube-proxy-replacement",
        "bpf-host-routing",
        "bpf-masquerade",
        "tunnel-vxlan",
    ] {
        if !ids.contains(&want) {
            return Err(format!("the values do not turn on {want}: {ids:?}").into());
        }
    }
    for unwanted in ["legacy-host-routing", "native-routing"] {
        if ids.contains(&unwanted) {
            return Err(format!("the values turn on {unwanted}: {ids:?}").into());
        }
    }
    Ok(())
}

fn snapshots() -> Result<(), Failed> {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| -> Result<(), Failed> {
        let plan = K3dPlan::default();
        insta::assert_snapshot!("k3d_cluster", plan.render_k3d().map_err(|e| e.to_string())?);
        insta::assert_snapshot!(
            "ctlptl_cluster",
            plan.render_ctlptl().map_err(|e| e.to_string())?
        );
        let ha = K3dPlan {
            servers: 3,
            agents: 0,
            ..K3dPlan::default()
        };
        insta::assert_snapshot!(
            "k3d_cluster_3_servers_0_agents",
            ha.render_k3d().map_err(|e| e.to_string())?
        );
        insta::assert_snapshot!("cilium_values", read("fixtures/cilium/values.yaml")?);
        Ok(())
    })
}

fn main() {
    let args = Arguments::from_args();
    let k3d_missing = missing_schema(K3D_SCHEMA);
    let cilium_missing = missing_schema(CILIUM_SCHEMA);
    for why in k3d_missing.iter().chain(&cilium_missing) {
        eprintln!("cluster config schema test ignored: {why}");
    }
    let trials = vec![
        Trial::test("k3d_fixture_is_fresh", || {
            fresh(
                "fixtures/k3d/cluster.yaml",
                K3dPlan::default().render_k3d().map_err(|e| e.to_string())?,
            )
        }),
        Trial::test("ctlptl_fixture_is_fresh", || {
            fresh(
                "fixtures/k3d/ctlptl.yaml",
                K3dPlan::default()
                    .render_ctlptl()
                    .map_err(|e| e.to_string())?,
            )
        }),
        Trial::test("k3d_config_validates_against_the_k3d_schema", k3d_schema)
            .with_ignored_flag(k3d_missing.is_some()),
        Trial::test("k3d_config_own_checks", k3d_own_checks),
        Trial::test("ctlptl_quirks", ctlptl_quirks),
        Trial::test(
            "cilium_values_validate_against_the_chart_schema",
            cilium_schema,
        )
        .with_ignored_flag(cilium_missing.is_some()),
        Trial::test("cilium_values_own_checks", cilium_own_checks),
        Trial::test("snapshots", snapshots),
    ];
    libtest_mimic::run(&args, trials).exit();
}
