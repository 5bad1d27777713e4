//! Checks on a Cilium Helm values file that the chart's JSON Schema
//! (`values.schema.json`, 1.19.5) is too loose to make: it checks types but takes
//! unknown keys and any string where an enum is meant, so `kubeProxyReplacment`
//! or `routingMode: tunel` pass it and install a different datapath than meant.
//!
//! Pure: a values document (as JSON) in, one line per problem out
//! (`field: message`). Given the chart's schema, keys are checked against the
//! properties it lists; without it, only the rules below.
//!
//! | rule | why |
//! |---|---|
//! | every key is one the chart's schema lists, where the schema lists any | a typo is silently the chart's default |
//! | `kubeProxyReplacement` is `true`/`false` (or those strings) | the chart compares strings |
//! | with kube-proxy replacement, `k8sServiceHost` and `k8sServicePort` are set | no kube-proxy means no ClusterIP to reach the API server: the agent must be told its address |
//! | `routingMode` is `tunnel` or `native`; `tunnelProtocol` `vxlan` or `geneve` | the agent rejects other words at start, after the install "succeeded" |
//! | `routingMode: native` has `ipv4NativeRoutingCIDR` | the agent refuses native routing with masquerading and no CIDR |
//! | `ipam.mode` is one the 1.19 agent knows | as above |
//! | `bpf.masquerade`, `bpf.hostLegacyRouting` are booleans (or null) | a string `"false"` is true to Go templates |
//!
//! What the settings then turn on (host routing, TCX, ...) is
//! [`crate::cilium_values`]'s to read.

use serde_json::Value;

/// The Cilium chart release `fixtures/cilium/values.yaml` is written and validated
/// for (its `values.schema.json`), which `cargo xtask cluster up` installs.
pub const CILIUM_CHART_VERSION: &str = "1.19.5";
/// Cilium's Helm repository, as `helm repo add cilium` names it.
pub const CILIUM_HELM_REPO: &str = "https://helm.cilium.io/";

const ROUTING_MODES: [&str; 2] = ["tunnel", "native"];
const TUNNEL_PROTOCOLS: [&str; 2] = ["vxlan", "geneve"];
/// `ipam.mode` values of the 1.19 agent (`pkg/ipam/option`).
const IPAM_MODES: [&str; 8] = [
    "kubernetes",
    "cluster-pool",
    "multi-pool",
    "crd",
    "eni",
    "azure",
    "alibabacloud",
    "delegated-plugin",
];

/// Every problem found, `field: message` each, in document order.
pub fn problems(values: &Value, schema: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    if !values.is_object() {
        return vec!["(document): the values must be a mapping".into()];
    }
    if let Some(schema) = schema {
        unknown_keys(values, schema, "", &mut out);
    }
    let get = |path: &str| -> Option<&Value> {
        let mut node = values;
        for part in path.split('.') {
            node = node.get(part)?;
        }
        (!node.is_null()).then_some(node)
    };
    let kpr = match get("kubeProxyReplacement") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" => true,
        Some(Value::String(s)) if s == "false" => false,
        Some(other) => {
            out.push(format!(
                "kubeProxyReplacement: expected true or false, found {other}"
            ));
            false
        }
    };
    if kpr {
        match get("k8sServiceHost") {
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            _ => out.push(
                "k8sServiceHost: kubeProxyReplacement is true, so the agent needs the API server's address (k3s: 127.0.0.1 with port 6444 on every node, or a server's address with 6443)".into(),
            ),
        }
        let port = match get("k8sServicePort") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse::<u64>().ok(),
            _ => None,
        };
        if !matches!(port, Some(1..=65535)) {
            out.push(
                "k8sServicePort: kubeProxyReplacement is true, so the agent needs the API server's port (1-65535)".into(),
            );
        }
    }
    let word = |path: &str, allowed: &[&str], out: &mut Vec<String>| -> Option<String> {
        match get(path) {
            None => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) if allowed.contains(&s.as_str()) => Some(s.clone()),
            Some(other) => {
                out.push(format!(
                    "{path}: expected one of {}, found {other}",
                    allowed.join(", ")
                ));
                None
            }
        }
    };
    let routing = word("routingMode", &ROUTING_MODES, &mut out);
    word("tunnelProtocol", &TUNNEL_PROTOCOLS, &mut out);
    word("ipam.mode", &IPAM_MODES, &mut out);
    if routing.as_deref() == Some("native") {
        match get("ipv4NativeRoutingCIDR") {
            Some(Value::String(s)) if s.contains('/') => {}
            _ => out.push(
                "ipv4NativeRoutingCIDR: routingMode native needs the pod CIDR that is routed natively (k3s: 10.42.0.0/16)".into(),
            ),
        }
    }
    for path in ["bpf.masquerade", "bpf.hostLegacyRouting"] {
        if let Some(v) = get(path)
            && !v.is_boolean()
        {
            out.push(format!("{path}: expected true, false or null, found {v}"));
        }
    }
    out
}

/// Keys not among the schema's `properties`, where the schema lists any (a
/// schema node without `properties` is free-form: annotations, extra env).
fn unknown_keys(values: &Value, schema: &Value, at: &str, out: &mut Vec<String>) {
    let (Some(map), Some(props)) = (
        values.as_object(),
        schema.get("properties").and_then(Value::as_object),
    ) else {
        return;
    };
    for (key, child) in map {
        let path = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        match props.get(key) {
            Some(child_schema) => unknown_keys(child, child_schema, &path, out),
            None => out.push(format!("{path}: not a key of the Cilium chart's values")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"properties": {
            "kubeProxyReplacement": {}, "k8sServiceHost": {}, "k8sServicePort": {},
            "routingMode": {}, "tunnelProtocol": {}, "ipv4NativeRoutingCIDR": {},
            "bpf": {"properties": {"masquerade": {}, "hostLegacyRouting": {}}},
            "podAnnotations": {"type": "object"}
        }})
    }

    #[test]
    fn a_complete_file_has_no_problem() {
        let v = json!({"kubeProxyReplacement": true, "k8sServiceHost": "k3d-x-server-0",
            "k8sServicePort": 6443, "routingMode": "tunnel", "tunnelProtocol": "vxlan",
            "bpf": {"masquerade": true, "hostLegacyRouting": false},
            "podAnnotations": {"anything": "goes"}});
        assert_eq!(problems(&v, Some(&schema())), Vec::<String>::new());
    }

    #[test]
    fn what_the_schema_lets_through() {
        let v = json!({"kubeProxyReplacement": "true", "k8sServicePort": "0",
            "routingMode": "native", "tunnelProtocol": "vxlam",
            "bpf": {"masquerade": "false", "hostRouting": true}, "kubeProxyReplacment": true});
        assert_eq!(
            problems(&v, Some(&schema())),
            [
                "bpf.hostRouting: not a key of the Cilium chart's values",
                "kubeProxyReplacment: not a key of the Cilium chart's values",
                "k8sServiceHost: kubeProxyReplacement is true, so the agent needs the API server's address (k3s: 127.0.0.1 with port 6444 on every node, or a server's address with 6443)",
                "k8sServicePort: kubeProxyReplacement is true, so the agent needs the API server's port (1-65535)",
                "tunnelProtocol: expected one of vxlan, geneve, found \"vxlam\"",
                "ipv4NativeRoutingCIDR: routingMode native needs the pod CIDR that is routed natively (k3s: 10.42.0.0/16)",
                "bpf.masquerade: expected true, false or null, found \"false\"",
            ]
        );
    }

    #[test]
    fn kpr_words() {
        let v = json!({"kubeProxyReplacement": "strict"});
        assert_eq!(
            problems(&v, None),
            ["kubeProxyReplacement: expected true or false, found \"strict\""]
        );
        assert!(problems(&json!({"kubeProxyReplacement": false}), None).is_empty());
        assert_eq!(problems(&json!([1]), None).len(), 1);
    }
}
