//! Policy verdict notifications: `PolicyVerdictNotify.DumpInfo` in
//! `pkg/monitor/datapath_policy.go`:
//! `Policy verdict log: flow 0x48357586 local EP ID 211, remote ID world, proto 6, ingress, action deny, auth: disabled, match none, 172.26.50.201:60556 -> 10.0.1.185:8082 tcp SYN`
//! (older monitors print no `auth:`, and the oldest `dst port N, … ingress true|false`).

use super::codes::ip_protocol;
use super::fields::{self, POLICY_GO, TYPES_GO, field};
use super::{ExplainError, Explanation, Judgement, LineKind, malformed};
use regex::Regex;
use std::sync::LazyLock;

/// `rest` follows `Policy verdict log:`.
pub fn explain(rest: &str) -> Result<Explanation, ExplainError> {
    static VERDICT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"^ ?flow (?P<flow>[^ ,]+),?(?: PolicyName (?P<name>[^,]+),)? local EP ID (?P<ep>\d+), remote ID (?P<remote>[^,]+),(?: dst port (?P<dport>\d+),)? proto (?P<proto>\d+), (?P<dir>ingress|egress)(?: (?P<ingress>true|false))?, action (?P<action>[^,]+),(?: auth: (?P<auth>[^,]+),)? match (?P<match>[^,]+), (?P<packet>.+)$",
        )
        .unwrap()
    });
    let c = VERDICT.captures(rest).ok_or_else(|| {
        malformed(
            LineKind::PolicyVerdict,
            "expected `Policy verdict log: flow 0x… local EP ID N, remote ID R, proto P, ingress|egress, action A, auth: X, match M, <packet>`",
        )
    })?;
    let get = |n: &str| c.name(n).map(|m| m.as_str());
    let bad = |e: String| malformed(LineKind::PolicyVerdict, e);
    let mut fs = vec![fields::flow("flow", get("flow").unwrap_or_default()).map_err(bad)?];
    if let Some(name) = get("name") {
        fs.push(field(
            "PolicyName",
            name,
            "the name of the policy rule that decided (monitors that print it)",
            Judgement::Informative,
            format!("decided by `{name}`"),
            POLICY_GO,
        ));
    }
    let ep = get("ep").unwrap_or_default();
    fs.push(field(
        "local EP ID",
        ep,
        "the notification's source: the local endpoint whose policy was evaluated",
        Judgement::Informative,
        format!("the policy of endpoint {ep} (`cilium-dbg endpoint get {ep}`)"),
        POLICY_GO,
    ));
    let remote = get("remote").unwrap_or_default();
    let remote_id = super::lex::parse_identity(remote).and_then(|r| r.number);
    fs.push(field(
        "remote ID",
        remote,
        "the identity of the peer (source for ingress, destination for egress)",
        Judgement::Informative,
        match remote_id {
            Some(n) => super::codes::identity_meaning(n),
            None => "an identity name this decoder does not know".into(),
        },
        fields::IDENTITY_GO,
    ));
    if let Some(dport) = get("dport") {
        fs.push(field(
            "dst port",
            dport,
            "the destination port the verdict is for (oldest monitors)",
            Judgement::Informative,
            format!("port {dport}"),
            POLICY_GO,
        ));
    }
    let proto = get("proto").unwrap_or_default();
    fs.push(field(
        "proto",
        proto,
        "the IP protocol number",
        Judgement::Informative,
        proto
            .parse::<u32>()
            .ok()
            .and_then(ip_protocol)
            .map(str::to_string)
            .unwrap_or_else(|| format!("IP protocol {proto}")),
        POLICY_GO,
    ));
    let direction = match (get("dir"), get("ingress")) {
        (Some("ingress"), Some("false")) => "egress",
        (Some(d), _) => d,
        _ => "?",
    };
    fs.push(field(
        "direction",
        direction,
        "whether the endpoint's ingress or egress policy decided",
        Judgement::Informative,
        format!("{direction} policy of endpoint {ep}"),
        TYPES_GO,
    ));
    let action = get("action").unwrap_or_default();
    fs.push(field(
        "action",
        action,
        "the verdict (`GetPolicyActionString`): allow, deny, redirect (to the L7 proxy), audit (would deny, allowed by audit mode)",
        Judgement::Informative,
        match action {
            "allow" => "the policy allowed the packet",
            "deny" => "the policy denied the packet: a `xx drop (Policy denied)` notification follows",
            "redirect" => "the policy sends the packet to the L7 proxy",
            "audit" => "the policy would deny the packet; audit mode let it pass",
            _ => "an action this decoder does not know",
        },
        POLICY_GO,
    ));
    if let Some(auth) = get("auth") {
        fs.push(if auth == "disabled" {
            field(
                "auth",
                auth,
                "the mutual-authentication type the policy requires",
                Judgement::Normal,
                "no authentication required: the default",
                POLICY_GO,
            )
        } else {
            field(
                "auth",
                auth,
                "the mutual-authentication type the policy requires",
                Judgement::Informative,
                format!("the policy requires `{auth}` authentication for this peer"),
                POLICY_GO,
            )
        });
    }
    let matched = get("match").unwrap_or_default();
    fs.push(field(
        "match",
        matched,
        "how the packet matched the policy (`PolicyMatchType`): L3-Only, L3-L4, L4-Only, all, none",
        Judgement::Informative,
        if matched == "none" {
            "no rule matched: the default verdict applied (deny when the endpoint has policy)"
                .to_string()
        } else {
            format!("matched by an {matched} rule")
        },
        TYPES_GO,
    ));
    let (packet, p) = fields::packet(get("packet").unwrap_or_default());
    fs.push(packet);
    Ok(Explanation {
        kind: LineKind::PolicyVerdict,
        format: "cilium monitor",
        line: String::new(),
        summary: format!(
            "Endpoint {ep}'s {direction} policy: {action} for remote {remote}: {}.",
            p.text
        ),
        fields: fs,
        checks: Vec::new(),
        no_check: Some(
            "a policy decision; this suite tests datapath primitives, not policy".into(),
        ),
        notes: Vec::new(),
        sources: vec![POLICY_GO, TYPES_GO, fields::IDENTITY_GO, fields::DISSECT_GO],
    })
}
