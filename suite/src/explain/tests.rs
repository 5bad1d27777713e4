//! Lines in the shapes Cilium prints them: copied from Cilium's docs and from
//! published `cilium-dbg monitor` output, or built from the format strings of
//! `pkg/monitor/datapath_*.go` where no published line has the case.

use super::*;
use conformance_contract::catalogue::find_check;

fn ok(line: &str) -> Explanation {
    let e = explain(line).unwrap_or_else(|err| panic!("{line}: {err}"));
    for c in &e.checks {
        assert!(find_check(c.id).is_some(), "{line}: unknown check {}", c.id);
    }
    assert!(
        !e.checks.is_empty() || e.no_check.is_some(),
        "{line}: neither a check nor a reason for none"
    );
    e
}

#[track_caller]
fn judged(e: &Explanation, name: &str, value: &str, judgement: Judgement) -> Field {
    let f = e
        .field(name)
        .unwrap_or_else(|| panic!("no field {name} in {:#?}", e.fields));
    assert_eq!(f.value, value, "{name}");
    assert_eq!(f.judgement, judgement, "{name}: {}", f.reading);
    f.clone()
}

fn err(line: &str) -> String {
    let e = explain(line).expect_err(line).to_string();
    assert!(!e.contains('\n'), "multi-line message: {e}");
    e
}

/// The incident's trace line, verbatim from domain-facts.md ("The nix-2hd trace line").
const NIX_2HD: &str = "flow 0x0, ifindex 0, orig-ip 0.0.0.0";

#[test]
fn explain_nix_2hd_fragment_is_normal_encoding() {
    let e = ok(NIX_2HD);
    assert_eq!(e.kind, LineKind::Trace);
    assert!(e.format.contains("fragment"));
    let flow = judged(&e, "flow", "0x0", Judgement::Normal);
    assert!(flow.meaning.contains("skb->hash"));
    let ifindex = judged(&e, "ifindex", "0", Judgement::Normal);
    assert!(ifindex.reading.contains("TRACE_IFINDEX_UNKNOWN"));
    assert!(ifindex.reading.contains("bpf_lxc"));
    let orig = judged(&e, "orig-ip", "0.0.0.0", Judgement::Normal);
    assert!(orig.reading.contains("no reverse NAT"));
    judged(&e, "observation point", "not given", Judgement::Normal);
    assert!(e.notes.iter().any(|n| n.contains("nix-2hd")));
    assert!(e.links("datapath.stack-delivery", Relation::Related));
    assert!(e.fields.iter().all(|f| f.judgement == Judgement::Normal));
}

#[test]
fn explain_to_stack_line_of_the_incident_shape() {
    let e = ok(
        "-> stack flow 0x0 , identity 12345->host state new ifindex 0 orig-ip 0.0.0.0: 10.42.0.17:41234 -> 10.42.0.1:8080 udp",
    );
    assert_eq!(e.kind, LineKind::Trace);
    assert_eq!(e.format, "cilium monitor");
    let point = judged(
        &e,
        "observation point",
        "to-stack (TRACE_TO_STACK = 3)",
        Judgement::Informative,
    );
    assert!(point.reading.contains("TC_ACT_OK"));
    judged(&e, "flow", "0x0", Judgement::Normal);
    judged(&e, "ifindex", "0", Judgement::Normal);
    judged(&e, "orig-ip", "0.0.0.0", Judgement::Normal);
    judged(&e, "state", "new", Judgement::Informative);
    let src = judged(&e, "source identity", "12345", Judgement::Informative);
    assert!(src.reading.contains("cluster-wide identity 12345"));
    let dst = judged(&e, "destination identity", "host", Judgement::Informative);
    assert!(dst.reading.contains("the local node"));
    let packet = judged(
        &e,
        "packet",
        "10.42.0.17:41234 -> 10.42.0.1:8080 udp",
        Judgement::Informative,
    );
    assert!(packet.reading.contains("udp"));
    assert!(e.links("datapath.stack-delivery", Relation::Tests));
    assert!(e.links("tc.attach.tcx", Relation::Related));
    assert!(e.links("tc.attach.legacy", Relation::Related));
    assert!(e.links("datapath.pod-to-host", Relation::Related));
    assert!(e.summary.contains("not a delivery"));
}

#[test]
fn explain_to_stack_published_line_with_hash() {
    // cilium-dbg monitor output (1.14), a reply leaving a pod for the ingress proxy.
    let e = ok(
        "-> stack flow 0x2481d648 , identity 61131->ingress state reply ifindex 0 orig-ip 0.0.0.0: 10.0.0.164:9080 -> 10.0.0.192:34219 tcp SYN, ACK",
    );
    let flow = judged(&e, "flow", "0x2481d648", Judgement::Informative);
    assert!(flow.reading.contains("same flow"));
    judged(&e, "state", "reply", Judgement::Informative);
    judged(
        &e,
        "destination identity",
        "ingress",
        Judgement::Informative,
    );
    judged(&e, "ifindex", "0", Judgement::Normal);
    let packet = e.field("packet").unwrap();
    assert!(packet.reading.contains("(SYN, ACK)"), "{}", packet.reading);
    assert!(!e.links("datapath.pod-to-host", Relation::Related));
}

#[test]
fn explain_older_trace_formats() {
    // 1.10: no " ," before identity.
    let e = ok(
        "-> stack flow 0x614e9723 identity 323->16777217 state new ifindex 0 orig-ip 0.0.0.0: 10.60.0.182:41510 -> 104.198.14.52:80 tcp SYN",
    );
    let dst = judged(
        &e,
        "destination identity",
        "16777217",
        Judgement::Informative,
    );
    assert!(dst.reading.contains("node-local"), "{}", dst.reading);
    assert!(e.notes.is_empty(), "{:?}", e.notes);
    // Trace notification v0: no orig-ip.
    let e = ok(
        "-> stack flow 0x30ce3dbd identity 104->2 state established ifindex 0: 10.15.38.236:36598 -> 192.168.99.100:8443 tcp ACK",
    );
    assert!(e.field("orig-ip").is_none());
    judged(&e, "state", "established", Judgement::Informative);
    judged(&e, "destination identity", "2", Judgement::Informative);
    assert!(e.notes.iter().any(|n| n.contains("trace notification v1")));
    // Copied by hand with commas, as published in a troubleshooting note.
    let e = ok("-> stack flow 0x0, identity 24059->417, ifindex 0");
    judged(&e, "flow", "0x0", Judgement::Normal);
    judged(&e, "ifindex", "0", Judgement::Normal);
    assert!(e.field("packet").is_none());
}

#[test]
fn explain_to_endpoint_orig_ip_same_as_source_is_normal() {
    let e = ok(
        "-> endpoint 212 flow 0x3000e251 , identity ingress->61131 state new ifindex lxcfc90a8580fd6 orig-ip 10.0.0.192: 10.0.0.192:34219 -> 10.0.0.164:9080 tcp SYN",
    );
    judged(
        &e,
        "observation point",
        "to-endpoint (TRACE_TO_LXC = 0)",
        Judgement::Informative,
    );
    let ep = judged(&e, "endpoint", "212", Judgement::Informative);
    assert!(ep.reading.contains("local endpoint 212"));
    let ifindex = judged(&e, "ifindex", "lxcfc90a8580fd6", Judgement::Informative);
    assert!(ifindex.reading.contains("lxcfc90a8580fd6"));
    let orig = judged(&e, "orig-ip", "10.0.0.192", Judgement::Normal);
    assert!(orig.reading.contains("same as the packet's source"));
    assert!(e.links("datapath.redirect-peer", Relation::Related));
    assert!(e.links("datapath.host-to-pod", Relation::Related));
}

#[test]
fn explain_to_endpoint_orig_ip_after_reverse_nat_is_informative() {
    // A DNS reply from the CoreDNS backend, reverse-NATed to the kube-dns service address.
    let e = ok(
        "-> endpoint 3459 flow 0x7866e21 identity 15194->323 state reply ifindex lxc84b58cbdabfe orig-ip 10.60.1.115: 10.63.240.10:53 -> 10.60.0.182:42132 udp",
    );
    let orig = judged(&e, "orig-ip", "10.60.1.115", Judgement::Informative);
    assert!(orig.reading.contains("reverse NAT"));
    assert!(orig.reading.contains("10.63.240.10"));
}

#[test]
fn explain_from_points_state_and_zero_destination_are_normal() {
    let e = ok(
        "<- endpoint 745 flow 0x6851276 identity 4->0 state new ifindex 0 orig-ip 0.0.0.0: 8e:3c:a3:67:cc:1e -> 16:f9:cd:dc:87:e5 ARP",
    );
    judged(
        &e,
        "observation point",
        "from-endpoint (TRACE_FROM_LXC = 5)",
        Judgement::Informative,
    );
    let state = judged(&e, "state", "new", Judgement::Normal);
    assert!(state.reading.contains("TraceObservationPointHasConnState"));
    let src = judged(&e, "source identity", "4", Judgement::Informative);
    assert!(src.reading.contains("cilium-health"));
    let dst = judged(&e, "destination identity", "0", Judgement::Normal);
    assert!(dst.reading.contains("from-*"));
    judged(&e, "endpoint", "745", Judgement::Informative);
    assert!(e.field("packet").unwrap().reading.contains("ARP"));
    assert!(e.links("tc.attach.tcx", Relation::Tests));
    assert!(e.links("tc.attach.legacy", Relation::Tests));

    let e = ok(
        "<- host flow 0xbbe3d555 identity 1->0 state new ifindex 0 orig-ip 0.0.0.0: 10.11.251.76:57896 -> 10.11.166.21:4240 tcp ACK",
    );
    judged(
        &e,
        "observation point",
        "from-host (TRACE_FROM_HOST = 7)",
        Judgement::Informative,
    );
    judged(&e, "state", "new", Judgement::Normal);
    assert!(e.links("datapath.host-to-pod", Relation::Related));
}

#[test]
fn explain_every_observation_point_summary() {
    let cases = [
        ("-> endpoint 5", "to-endpoint"),
        ("-> proxy port 15001", "to-proxy"),
        ("-> host from", "to-host"),
        ("-> stack", "to-stack"),
        ("-> overlay", "to-overlay"),
        ("-> network", "to-network"),
        ("-> crypto", "to-crypto"),
        ("<- endpoint 5", "from-endpoint"),
        ("<- proxy", "from-proxy"),
        ("<- host", "from-host"),
        ("<- stack", "from-stack"),
        ("<- overlay", "from-overlay"),
        ("<- network", "from-network"),
        ("<- crypto", "from-crypto"),
    ];
    for (summary, name) in cases {
        let line = format!(
            "{summary} flow 0x1 , identity 1->2 state new ifindex 0 orig-ip 0.0.0.0: 1.1.1.1:1 -> 2.2.2.2:2 udp"
        );
        let e = ok(&line);
        let point = e.field("observation point").unwrap();
        assert!(point.value.starts_with(name), "{line}: {}", point.value);
    }
    let e = ok(
        "-> proxy port 15001 flow 0x1 , identity 1->2 state new ifindex 0 orig-ip 0.0.0.0: 1.1.1.1:1 -> 2.2.2.2:2 tcp SYN",
    );
    judged(&e, "proxy port", "15001", Judgement::Informative);
    assert!(e.no_check.as_deref().unwrap().contains("proxy"));
    let e = ok(
        "-> overlay flow 0x1 , identity 1->2 state new ifindex cilium_vxlan orig-ip 0.0.0.0: 1.1.1.1:1 -> 2.2.2.2:2 udp",
    );
    assert!(e.checks.is_empty());
    assert!(e.no_check.as_deref().unwrap().contains("tunnel"));
    let state = e.field("state").unwrap();
    assert_eq!(state.judgement, Judgement::Normal);
}

#[test]
fn explain_encrypted_and_ip_trace_id() {
    // `"%s %s flow %#x "` with "encrypted " gives two spaces before flow.
    let e = ok(
        "-> endpoint 901 encrypted  flow 0x0 , identity 6->33807 [ ip-trace-id = 42 ] state new ifindex lxc1 orig-ip 0.0.0.0: 10.0.1.5:1000 -> 10.0.2.31:80 tcp SYN",
    );
    judged(&e, "encrypted", "encrypted", Judgement::Informative);
    judged(&e, "ip-trace-id", "42", Judgement::Informative);
    judged(&e, "state", "new", Judgement::Informative);
    assert!(e.links("datapath.redirect-peer.scrub", Relation::Related));
}

#[test]
fn explain_verbose_traces() {
    // Published `cilium monitor -v` output of a Cilium whose DumpVerbose glued `identity` on.
    let e = ok(
        "CPU 03: MARK 0x0 FROM 3349 to-endpoint: 98 bytes (98 captured), state reply, interface lxcf69c5e689142identity 6076->49798, orig-ip 10.0.0.90, to endpoint 3349",
    );
    assert_eq!(e.format, "cilium monitor -v");
    let mark = judged(&e, "MARK", "0x0", Judgement::Normal);
    assert!(mark.meaning.contains("not skb->mark"));
    judged(&e, "CPU", "03", Judgement::Normal);
    judged(&e, "FROM", "3349", Judgement::Informative);
    judged(&e, "interface", "lxcf69c5e689142", Judgement::Informative);
    judged(&e, "source identity", "6076", Judgement::Informative);
    judged(&e, "destination identity", "49798", Judgement::Informative);
    judged(&e, "endpoint", "3349", Judgement::Informative);
    judged(&e, "bytes", "98", Judgement::Informative);
    judged(&e, "captured", "98", Judgement::Normal);
    // No packet summary in the line, so orig-ip cannot be compared with a source.
    judged(&e, "orig-ip", "10.0.0.90", Judgement::Informative);

    // DumpVerbose of a to-stack event: no `interface` (ifindex 0), `", " + ", identity"`.
    let e = ok(
        "CPU 01: MARK 0x0 FROM 1234 to-stack: 98 bytes (98 captured), state new, , identity 1234->host, orig-ip 0.0.0.0",
    );
    let interface = judged(&e, "interface", "(not printed)", Judgement::Normal);
    assert!(interface.reading.contains("to-stack"));
    judged(&e, "orig-ip", "0.0.0.0", Judgement::Normal);
    assert!(e.links("datapath.stack-delivery", Relation::Tests));

    let e = ok(
        "CPU 03: MARK 0x0 FROM 0 from-overlay: 98 bytes (98 captured), state new, interface cilium_vxlan, orig-ip 0.0.0.0",
    );
    judged(&e, "FROM", "0", Judgement::Normal);
    judged(&e, "state", "new", Judgement::Normal);
    assert!(e.checks.is_empty());
    assert!(e.notes.iter().any(|n| n.contains("identity")));
}

#[test]
fn explain_drop_lines() {
    let e = ok(
        "xx drop (Policy denied) flow 0x8f2a1c3d to endpoint 1204, ifindex 24, file bpf_lxc.c:2004, , identity 25478->31902: 10.20.1.113:44120 -> 10.20.1.88:8080 tcp SYN",
    );
    assert_eq!(e.kind, LineKind::Drop);
    let reason = judged(&e, "reason", "Policy denied", Judgement::Informative);
    assert!(reason.reading.contains("code 133"));
    judged(&e, "flow", "0x8f2a1c3d", Judgement::Informative);
    let to = judged(&e, "to endpoint", "1204", Judgement::Informative);
    assert!(to.reading.contains("into local endpoint 1204"));
    judged(&e, "ifindex", "24", Judgement::Informative);
    let file = judged(&e, "file", "bpf_lxc.c:2004", Judgement::Informative);
    assert!(file.reading.contains("line 2004 of bpf/bpf_lxc.c"));
    judged(&e, "source identity", "25478", Judgement::Informative);
    assert!(e.checks.is_empty());
    assert!(e.no_check.as_deref().unwrap().contains("policy"));

    let e = ok(
        "xx drop (Stale or unroutable IP) flow 0x1c04a9de to endpoint 0, ifindex 2, file bpf_host.c:1122, , identity world->host: 203.0.113.9:443 -> 10.0.0.5:51234 tcp ACK",
    );
    let to = judged(&e, "to endpoint", "0", Judgement::Normal);
    assert!(to.reading.contains("normal encoding"));
    judged(&e, "source identity", "world", Judgement::Informative);
    assert!(e.links("datapath.pod-to-host", Relation::Related));
    assert!(e.links("datapath.host-to-pod", Relation::Related));
}

#[test]
fn explain_drop_missed_tail_call_and_peer() {
    let e = ok(
        "xx drop (Missed tail call) flow 0x0 to endpoint 0, ifindex 7, file bpf_lxc.c:1431, , identity 28313->unknown: 10.244.1.12:36284 -> 10.96.0.10:53 udp",
    );
    let reason = judged(&e, "reason", "Missed tail call", Judgement::Informative);
    assert!(reason.reading.contains("tail call"));
    judged(&e, "flow", "0x0", Judgement::Normal);
    judged(&e, "destination identity", "unknown", Judgement::Normal);
    assert!(e.links("tc.attach.tcx", Relation::Related));
    assert!(e.links("tc.attach.legacy", Relation::Related));

    let e = ok(
        "xx drop (CT: Map insertion failed) flow 0x1a2b3c to endpoint 2201, ifindex 11, file bpf_lxc.c:2155, , identity 6->40561: 10.244.2.7:35012 -> 10.244.1.20:80 tcp SYN",
    );
    assert!(e.links("datapath.redirect-peer", Relation::Related));
    assert!(e.summary.contains("into endpoint 2201"));
}

#[test]
fn explain_drop_extended_error_and_older_formats() {
    let e = ok(
        "xx drop (FIB lookup failed, 4) flow 0x0 to endpoint 0, ifindex 3, file bpf_host.c:751, , identity host->world: 10.0.0.5:40000 -> 8.8.8.8:53 udp",
    );
    judged(&e, "reason", "FIB lookup failed, 4", Judgement::Informative);
    let ext = judged(&e, "extended error", "4", Judgement::Informative);
    assert!(ext.reading.contains("NOT_FWDED"));

    // Old monitors: no flow/ifindex/file, `Policy denied (L3)`, ICMPv6.
    let e = ok(
        "xx drop (Policy denied (L3)) to endpoint 25729, identity 261->264: fd02::c0a8:210b:0:bf00 -> fd02::c0a8:210b:0:6481 EchoRequest",
    );
    assert!(e.field("reason").unwrap().reading.contains("code 133"));
    assert!(e.notes.iter().any(|n| n.contains("older than 1.15")));
    assert!(e.field("packet").unwrap().reading.contains("EchoRequest"));

    // 1.12–1.14: `to endpoint N, , identity`.
    let e = ok(
        "xx drop (Policy denied) flow 0x48357586 to endpoint 211, , identity world->15435: 172.26.50.201:60556 -> 10.0.1.185:8082 tcp SYN",
    );
    judged(&e, "to endpoint", "211", Judgement::Informative);
    judged(&e, "source identity", "world", Judgement::Informative);

    let e = ok(
        "xx drop (200, 0) flow 0x0 to endpoint 0, ifindex 2, file unknown(120):33, , identity 1->2: [unknown]",
    );
    assert!(
        e.field("file")
            .unwrap()
            .reading
            .contains("different Cilium versions")
    );
    judged(&e, "packet", "[unknown]", Judgement::Normal);
}

#[test]
fn explain_verbose_drops() {
    let e = ok(
        "CPU 01: MARK 0x0 FROM 1204 DROP: 74 bytes, reason Policy denied, identity 25478->31902, to endpoint 1204",
    );
    assert_eq!(e.kind, LineKind::Drop);
    judged(&e, "reason", "Policy denied", Judgement::Informative);
    judged(&e, "MARK", "0x0", Judgement::Normal);
    judged(&e, "to endpoint", "1204", Judgement::Informative);
    judged(&e, "bytes", "74", Judgement::Informative);

    let e = ok(
        "CPU 00: MARK 0x9a1 FROM 88 DROP: 60 bytes, reason LB, sock cgroup: No backend slot entry found",
    );
    let reason = judged(
        &e,
        "reason",
        "LB, sock cgroup: No backend slot entry found",
        Judgement::Informative,
    );
    assert!(reason.reading.contains("code 5"));
}

#[test]
fn explain_debug_messages() {
    let e = ok("CPU 00: MARK 0xbbe3d555 FROM 0 DEBUG: Inheriting identity=1 from stack");
    assert_eq!(e.kind, LineKind::DebugMessage);
    judged(&e, "identity", "1", Judgement::Informative);
    judged(&e, "MARK", "0xbbe3d555", Judgement::Informative);

    let e = ok(
        "CPU 01: MARK 0x0 FROM 3349 DEBUG: Conntrack lookup 1/2: src=10.0.1.218:5632 dst=10.0.0.90:0",
    );
    judged(&e, "src", "10.0.1.218:5632", Judgement::Informative);
    judged(&e, "dst", "10.0.0.90:0", Judgement::Informative);
    assert!(
        e.no_check
            .as_deref()
            .unwrap()
            .contains("connection tracking")
    );

    let e = ok(
        "CPU 02: MARK 0x0 FROM 0 DEBUG: Attempting local delivery for container id 4037 from seclabel 7997",
    );
    assert!(e.links("datapath.redirect-peer", Relation::Related));

    let e = ok("CPU 02: MARK 0x0 FROM 511 DEBUG: Going to the stack, policy-skip=1");
    assert!(e.links("datapath.stack-delivery", Relation::Tests));
    judged(&e, "policy-skip", "1", Judgement::Informative);
}

#[test]
fn explain_debug_captures() {
    // bpf_lxc's cilium_dbg_capture(ctx, DBG_CAPTURE_DELIVERY, 0) after `-> stack`.
    let e = ok("-> 0: 10.60.0.182:41510 -> 104.198.14.52:80 tcp SYN");
    assert_eq!(e.kind, LineKind::DebugCapture);
    judged(
        &e,
        "capture point",
        "DBG_CAPTURE_DELIVERY",
        Judgement::Informative,
    );
    let ifindex = judged(&e, "ifindex", "0", Judgement::Normal);
    assert!(ifindex.reading.contains("-> stack"));
    assert!(e.links("datapath.stack-delivery", Relation::Tests));

    let e = ok("-> lxc_health: 16:f9:cd:dc:87:e5 -> 8e:3c:a3:67:cc:1e ARP");
    judged(&e, "ifindex", "lxc_health", Judgement::Informative);
    assert!(e.links("datapath.redirect-peer", Relation::Related));

    let e = ok("CPU 01: MARK 0x0 FROM 3349 DEBUG: 98 bytes, Delivery to ifindex 0");
    assert_eq!(e.kind, LineKind::DebugCapture);
    judged(&e, "ifindex", "0", Judgement::Normal);
    judged(&e, "bytes", "98", Judgement::Informative);
    assert!(e.links("datapath.stack-delivery", Relation::Tests));

    let e = ok("CPU 01: MARK 0x0 FROM 3349 DEBUG: 98 bytes, Packet to proxy port 15001 (Pre)");
    judged(
        &e,
        "capture point",
        "DBG_CAPTURE_PROXY_PRE",
        Judgement::Informative,
    );
    judged(&e, "proxy port", "15001", Judgement::Informative);
}

#[test]
fn explain_policy_verdicts() {
    let e = ok(
        "Policy verdict log: flow 0x48357586 local EP ID 211, remote ID world, proto 6, ingress, action deny, match none, 172.26.50.201:60556 -> 10.0.1.185:8082 tcp SYN",
    );
    assert_eq!(e.kind, LineKind::PolicyVerdict);
    judged(&e, "local EP ID", "211", Judgement::Informative);
    judged(&e, "remote ID", "world", Judgement::Informative);
    let proto = judged(&e, "proto", "6", Judgement::Informative);
    assert_eq!(proto.reading, "TCP");
    judged(&e, "direction", "ingress", Judgement::Informative);
    let action = judged(&e, "action", "deny", Judgement::Informative);
    assert!(action.reading.contains("Policy denied"));
    judged(&e, "match", "none", Judgement::Informative);
    assert!(e.checks.is_empty());

    let e = ok(
        "Policy verdict log: flow 0x614e9723 local EP ID 3459, remote ID 16777217, proto 6, egress, action allow, auth: disabled, match L3-Only, 10.60.0.182:41510 -> 104.198.14.52:80 tcp SYN",
    );
    judged(&e, "auth", "disabled", Judgement::Normal);
    judged(&e, "action", "allow", Judgement::Informative);
    judged(&e, "direction", "egress", Judgement::Informative);
}

#[test]
fn explain_kernel_drops() {
    let e = ok(
        "<idle>-0 [002] ..s1. 8231.221812: kfree_skb: skbaddr=00000000a1b2c3d4 rx_sk=0000000000000000 protocol=2048 location=ip_rcv_core+0x2c7/0x360 reason: OTHERHOST",
    );
    assert_eq!(e.kind, LineKind::KernelDrop);
    let reason = judged(&e, "reason", "OTHERHOST", Judgement::Informative);
    assert!(reason.reading.contains("PACKET_OTHERHOST"));
    judged(&e, "rx_sk", "0000000000000000", Judgement::Normal);
    assert_eq!(e.field("protocol").unwrap().reading, "IPv4 (0x0800)");
    assert!(e.field("location").unwrap().reading.contains("ip_rcv_core"));
    assert!(e.links("datapath.redirect-peer.scrub", Relation::Tests));

    let e = ok(
        "kfree_skb: skbaddr=ffff8881053c2e00 protocol=2048 location=udp_queue_rcv_one_skb+0x2a1/0x4f0 reason: SOCKET_RCVBUFF",
    );
    assert!(e.links("datapath.stack-delivery", Relation::Tests));

    let e = ok(
        "0xffff9c2b4a1e6e00 3 <empty>:0 4026532431 0 eth0:11 0x0800 1500 98 10.0.0.1:0->10.0.0.2:0(icmp) kfree_skb_reason(SKB_DROP_REASON_OTHERHOST)",
    );
    assert_eq!(e.format, "pwru (kfree_skb_reason)");
    assert!(e.links("datapath.redirect-peer.scrub", Relation::Tests));
}

#[test]
fn explain_rejects_what_it_cannot_read() {
    assert!(err("").starts_with("empty line"));
    assert!(err("   ").starts_with("empty line"));
    let e = err("hello world");
    assert!(
        e.starts_with("not a Cilium monitor line: expected a trace"),
        "{e}"
    );
    let e = err("-> stack flow 0xZZ , identity 1->2 state new ifindex 0 orig-ip 0.0.0.0: x");
    assert!(e.contains("malformed trace notification line"), "{e}");
    assert!(e.contains("flow 0x<hex>"), "{e}");
    let e = err("-> stack flow");
    assert!(e.contains("expected 0x<hash> after `flow`"), "{e}");
    let e = err("-> stack flow 0x0 , identity 1234 state new");
    assert!(e.contains("identity <source>-><destination>"), "{e}");
    let e = err("-> stack flow 0x0 orig-ip nowhere");
    assert!(e.contains("expected an address after `orig-ip`"), "{e}");
    let e = err("xx drop (Policy denied)");
    assert!(e.contains("malformed drop notification line"), "{e}");
    let e = err("xx drop (Policy denied) flow 0x0 to endpoint abc, ifindex 2");
    assert!(e.contains("to endpoint <number>"), "{e}");
    let e = err("Policy verdict log: something else");
    assert!(
        e.contains("malformed policy verdict notification line"),
        "{e}"
    );
    let e = err("CPU 01: MARK 0x0 FROM 12 to-stack: state new");
    assert!(e.contains("<N> bytes"), "{e}");
    let e = err("CPU 01: MARK 0x0 FROM 12 sideways: 98 bytes");
    assert!(e.contains("expected an observation point"), "{e}");
    let e = err("CPU 01: MARK 0x0 FROM 12 DEBUG:");
    assert!(e.contains("expected a message"), "{e}");
    let e = err("-> stack flow 0x0\n-> stack flow 0x0");
    assert!(e.contains("one line at a time"), "{e}");
    let e = err(
        "Aug  6 06:50:26.228: default/curl-pod (ID:47080) -> default/netshoot-pod (ID:47080) to-endpoint FORWARDED (ICMPv4 EchoRequest)",
    );
    assert!(e.contains("hubble observe"), "{e}");
}

#[test]
fn explain_links_only_catalogue_checks() {
    for id in checks::LINKED {
        assert!(find_check(id).is_some(), "{id} is not in the catalogue");
    }
}

#[test]
fn explain_renders_text_and_json() {
    let e = ok(
        "-> stack flow 0x0 , identity 12345->host state new ifindex 0 orig-ip 0.0.0.0: 10.42.0.17:41234 -> 10.42.0.1:8080 udp",
    );
    let text = render_text(&e);
    assert!(
        text.starts_with("trace notification (cilium monitor)\n"),
        "{text}"
    );
    assert!(text.contains("flow"));
    assert!(text.contains("[normal]"));
    assert!(text.contains("[INFO]"));
    assert!(text.contains("datapath.stack-delivery (tests this step): TC ingress hands packets"));
    assert!(text.contains("Sources: pkg/monitor/datapath_trace.go"));

    let json: serde_json::Value = serde_json::from_str(&render_json(&e)).unwrap();
    assert_eq!(json["kind"], "trace");
    assert_eq!(json["line"], e.line);
    let flow = json["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "flow")
        .unwrap();
    assert_eq!(flow["judgement"], "normal");
    assert_eq!(json["checks"][0]["id"], "datapath.stack-delivery");
    assert_eq!(json["checks"][0]["relation"], "tests");
    assert!(
        json["checks"][0]["title"]
            .as_str()
            .unwrap()
            .contains("TC ingress")
    );
    assert!(!render_json(&e).contains('\n'));

    let e = ok(
        "xx drop (Policy denied) flow 0x1 to endpoint 5, ifindex 2, file bpf_lxc.c:10, , identity 1->2: [unknown]",
    );
    assert!(render_text(&e).contains("Checks: none. a policy decision"));
    let json: serde_json::Value = serde_json::from_str(&render_json(&e)).unwrap();
    assert!(json["no_check"].as_str().unwrap().contains("policy"));
}

#[test]
fn explain_drop_reason_table_is_consistent() {
    let mut codes: Vec<u8> = codes::DROP_REASONS.iter().map(|r| r.code).collect();
    let n = codes.len();
    codes.dedup();
    assert_eq!(codes.len(), n, "duplicate drop reason codes");
    for r in codes::DROP_REASONS {
        // The text decodes back to a reason with the same class (2 and 134 share a text).
        let back = codes::drop_reason_by_text(r.text).unwrap();
        assert_eq!(back.class, r.class, "{}", r.text);
    }
    for p in codes::ObsPoint::ALL {
        assert_eq!(codes::ObsPoint::by_code(p.code().unwrap()), Some(p));
        assert_eq!(codes::ObsPoint::by_name(p.name()), Some(p));
    }
}
