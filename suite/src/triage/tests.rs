//! The bundle against recorded runs (`fixtures/triage/`): a real lab run with the
//! `datapath.stack-delivery=drop` fault and probe triage on, and the nix-2hd shape
//! derived from it (the hook matched every packet, the host stack saw none, legacy
//! passes, a foreign XDP program on the veth). Other signatures are made by
//! changing one of them the way the situation would.

use super::signatures::{self, Signature};
use super::*;
use serde_json::json;
use std::io::Read;

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/triage")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn drop_run() -> Value {
    fixture("lab-stack-delivery-drop.json")
}

/// The fault run with its drop program counted as the check's own, as probes
/// before ownership by program id reported it: a run that matches no signature,
/// for the tests below to change one thing in.
fn base_run() -> Value {
    fn own(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if m.get("ours") == Some(&Value::Bool(false)) {
                    m.insert("ours".into(), Value::Bool(true));
                }
                m.values_mut().for_each(own);
            }
            Value::Array(a) => a.iter_mut().for_each(own),
            _ => {}
        }
    }
    let mut run = drop_run();
    own(&mut run);
    assert!(ids(&run).is_empty(), "{:?}", ids(&run));
    run
}

fn nix_run() -> Value {
    fixture("lab-nix-2hd.json")
}

fn bundle_of(run: &Value, opts: &Options) -> Bundle {
    build(
        &serde_json::to_string_pretty(run).unwrap(),
        Vec::new(),
        opts,
    )
    .unwrap()
}

fn text(b: &Bundle, path: &str) -> String {
    String::from_utf8(
        b.file(path)
            .unwrap_or_else(|| panic!("no {path} in {:?}", paths(b)))
            .bytes
            .clone(),
    )
    .unwrap()
}

fn paths(b: &Bundle) -> Vec<&str> {
    b.files.iter().map(|f| f.path.as_str()).collect()
}

fn verdict_mut<'a>(run: &'a mut Value, check: &str, variant: &str) -> &'a mut Value {
    run["verdicts"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|v| v["check"] == check && v["variant"] == variant)
        .unwrap()
}

fn ids(run: &Value) -> Vec<(&'static str, Option<String>)> {
    let run: Run = serde_json::from_value(run.clone()).unwrap();
    signatures::find(&run)
        .into_iter()
        .map(|m| (m.signature.id, m.row.map(|(c, v)| format!("{c}[{v}]"))))
        .collect()
}

fn row(check: &str, variant: &str) -> Option<String> {
    Some(format!("{check}[{variant}]"))
}

const TCX: &str = "rows/lab-this-host/datapath.stack-delivery.tcx";

#[test]
fn a_real_fault_run_names_where_the_packets_vanished() {
    let b = bundle_of(&drop_run(), &Options::default());
    assert_eq!(b.run_exit_code, 1);
    let rows: Vec<String> = b.rows.iter().map(|(_, n, v)| format!("{n} {v}")).collect();
    assert_eq!(
        rows,
        [
            "datapath.stack-delivery[tcx] regression",
            "datapath.stack-delivery[legacy] regression",
            "env.bpffs.propagation[private] expected-fail",
        ]
    );
    let summary = text(&b, "SUMMARY.md");
    for variant in ["tcx", "legacy"] {
        let at = summary
            .find(&format!(
                "lab/this host · datapath.stack-delivery[{variant}] · regression"
            ))
            .unwrap();
        let section = &summary[at..];
        assert!(
            section.contains("- last seen: pod A sent 5/5\n- first missing: pod A eth0 tx 0/5\n"),
            "{section}"
        );
    }
    // The drop before the hook is not the nix-2hd shape; the fault's drop program,
    // which the check did not attach, stands for a foreign program on the path.
    let found: Vec<(&str, Option<String>, &str)> = b
        .matches
        .iter()
        .map(|m| {
            (
                m.signature.id,
                m.row.as_ref().map(|(c, v)| format!("{c}[{v}]")),
                m.evidence.as_str(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "foreign-program",
                row("datapath.stack-delivery", "tcx"),
                "prog 4401 hook tag 5183923b4f742e09 on eth0 (tcx egress) in ns pod-a"
            ),
            (
                "foreign-program",
                row("datapath.stack-delivery", "legacy"),
                "prog 4403 hook tag 5183923b4f742e09 on eth0 (tcx egress) in ns pod-a"
            ),
        ]
    );
    assert!(
        summary.contains("- known signatures: none matched"),
        "the bpffs row"
    );
    assert!(summary.contains(
        "- kernel drop reasons while the check ran (system-wide): 10 TC_EGRESS at __dev_queue_xmit\n"
    ));
    let hops = text(&b, &format!("{TCX}/hops.txt"));
    assert!(
        hops.contains("path pod A eth0 tx") && hops.contains("0/5  <- first missing"),
        "{hops}"
    );
    assert!(hops.contains("## the negative control: the hook returns TC_ACT_SHOT (error)"));
    assert!(hops.contains("(no packet events)"));
    // Probe triage: the fault's program on pod A's eth0 egress, the kernel's reason.
    let bpf = text(&b, &format!("{TCX}/bpf.txt"));
    assert!(
        bpf.contains(&format!(
            "ns pod-a  dev eth0 (ifindex 2)  tcx egress  prog 4401 hook tag 5183923b4f742e09  {}",
            detail::FOREIGN
        )),
        "{bpf}"
    );
    assert!(bpf.contains("ns host  dev lxc53f475a (ifindex 4)  tcx ingress  prog 4402 hook"));
    let drops = text(&b, &format!("{TCX}/drops.txt"));
    assert!(
        drops.contains("     10  TC_EGRESS  __dev_queue_xmit"),
        "{drops}"
    );
    for ns in ["host", "pod-a", "pod-b"] {
        let t = text(&b, &format!("{TCX}/namespaces/{ns}.txt"));
        assert!(t.contains("## routes ("), "{t}");
    }
    assert!(text(&b, &format!("{TCX}/kernel.txt")).contains("CONFIG_NET_CLS_BPF = y"));
    assert!(paths(&b).contains(&"facts/lab-this-host.json"));
    // The bpffs row has steps, not hops.
    let private = "rows/lab-this-host/env.bpffs.propagation.private/hops.txt";
    assert!(text(&b, private).contains("first missing: node: /sys/fs/bpf is tmpfs 0/1"));
    assert_eq!(paths(&b).last(), Some(&"MANIFEST.txt"));
}

#[test]
fn nix_2hd_shape_matches_its_signatures() {
    let run = nix_run();
    let tcx = row("datapath.stack-delivery", "tcx");
    assert_eq!(
        ids(&run),
        [
            ("stack-delivery-lost", tcx.clone()),
            ("tcx-legacy-differ", tcx.clone()),
            ("foreign-program", tcx.clone()),
        ]
    );
    let b = bundle_of(&run, &Options::default());
    let summary = text(&b, "SUMMARY.md");
    assert!(summary.contains(
        "- last seen: hook lxcae9d95a ingress (tcx) in ns host matched 5/5\n- first missing: host Ip InReceives 0/5\n"
    ), "{summary}");
    assert!(summary.contains("(`stack-delivery-lost`): hook lxcae9d95a ingress (tcx) in ns host matched 5/5, then host Ip InReceives 0/5"));
    assert!(summary.contains("<README.md#the-checks>"));
    assert!(
        summary.contains(
            "datapath.stack-delivery[legacy] pass, datapath.stack-delivery[tcx] regression"
        )
    );
    assert!(
        summary.contains("prog 4242 xdp_guard tag 9f8e7d6c5b4a3921 on lxcae9d95a (xdp) in ns host")
    );
    let bpf = text(&b, &format!("{TCX}/bpf.txt"));
    assert!(bpf.contains(&format!(
        "prog 4242 xdp_guard tag 9f8e7d6c5b4a3921  {}",
        detail::FOREIGN
    )));
    let hops = text(&b, &format!("{TCX}/hops.txt"));
    assert!(hops.contains(
        "  seq 4  ifindex 4 (ingress 4)  mark 0x0  hash 0x0  pkt_type HOST(0)  proto 0x0800 IPv4  len 50  10.42.0.11 → 198.18.0.10  result TC_ACT_OK(0)  tstamp 0\n"
    ), "{hops}");
    assert!(text(&b, &format!("{TCX}/drops.txt")).contains("no drops recorded"));
}

#[test]
fn nested_arm64_needs_both_facts_and_the_loss() {
    let mut run = nix_run();
    run["instances"][0]["facts"]["arch"] = json!("aarch64");
    run["instances"][0]["facts"]["virtualization"]["nested"] = json!(true);
    let found = ids(&run);
    assert!(found.contains(&(
        "nested-virtualization-arm64",
        row("datapath.stack-delivery", "tcx")
    )));
    run["instances"][0]["facts"]["virtualization"]["nested"] = json!(null);
    assert!(
        !ids(&run)
            .iter()
            .any(|(id, _)| *id == "nested-virtualization-arm64")
    );
    // Without the loss, nested arm64 alone is no signature.
    let mut drop = base_run();
    drop["instances"][0]["facts"]["arch"] = json!("aarch64");
    drop["instances"][0]["facts"]["virtualization"]["nested"] = json!(true);
    assert!(ids(&drop).is_empty());
}

#[test]
fn bpffs_propagation_from_facts_or_an_unexpected_failure() {
    let mut run = base_run();
    run["instances"][0]["facts"]["virtualization"]["container"] = json!("docker");
    assert_eq!(ids(&run), [("bpffs-propagation-k3d", None)]);
    run["instances"][0]["facts"]["bpffs"]["propagation"] = json!("shared");
    assert!(ids(&run).is_empty());
    // The `rshared` variant failing where it should pass.
    let v = verdict_mut(&mut run, "env.bpffs.propagation", "rshared");
    v["verdict"] = json!("regression");
    v["observation"]["outcome"] = json!("fail");
    v["observation"]["failure"] = json!("pin-not-seen");
    assert_eq!(
        ids(&run),
        [(
            "bpffs-propagation-k3d",
            row("env.bpffs.propagation", "rshared")
        )]
    );
    let b = bundle_of(&run, &Options::default());
    assert!(text(&b, "SUMMARY.md").contains("<https://github.com/k3d-io/k3d/pull/1268>"));
}

#[test]
fn tcx_unsupported_from_facts_and_rows() {
    let mut run = base_run();
    run["instances"][0]["facts"]["tcx"] = json!(false);
    let v = verdict_mut(&mut run, "tc.attach.tcx", "tcx");
    v["verdict"] = json!("unsupported");
    v["observation"]["outcome"] = json!("unsupported");
    v["observation"]["missing_facts"] = json!(["tcx"]);
    v["observation"]["control"] = Value::Null;
    assert_eq!(
        ids(&run),
        [
            ("tcx-unsupported", row("tc.attach.tcx", "tcx")),
            ("tcx-unsupported", None),
        ]
    );
    let b = bundle_of(&run, &Options::default());
    assert!(
        b.rows
            .iter()
            .any(|(_, n, v)| n == "tc.attach.tcx[tcx]" && *v == VerdictKind::Unsupported)
    );
}

#[test]
fn scrub_signature_only_for_not_scrubbed() {
    let mut run = base_run();
    let v = verdict_mut(&mut run, "datapath.redirect-peer.scrub", "default");
    v["verdict"] = json!("expected-fail");
    v["observation"]["outcome"] = json!("fail");
    v["observation"]["failure"] = json!("not-scrubbed");
    assert_eq!(
        ids(&run),
        [(
            "scrub-unfixed-cve-2025-37959",
            row("datapath.redirect-peer.scrub", "default")
        )]
    );
    let v = verdict_mut(&mut run, "datapath.redirect-peer.scrub", "default");
    v["observation"]["failure"] = json!("partly-scrubbed");
    v["verdict"] = json!("regression");
    assert!(ids(&run).is_empty());
}

#[test]
fn foreign_cgroup_program_and_tcx_legacy_difference() {
    let mut run = base_run();
    let v = verdict_mut(&mut run, "datapath.stack-delivery", "legacy");
    v["observation"]["evidence"]["triage"]["cgroup"]["programs"] = json!([{"attach": "cgroup_inet_ingress", "prog_id": 9, "name": "sd_fw_ingress", "ours": false}]);
    // The tcx variant passes: the two attach modes differ on the same path.
    let v = verdict_mut(&mut run, "datapath.stack-delivery", "tcx");
    v["verdict"] = json!("pass");
    v["observation"]["outcome"] = json!("pass");
    let legacy = row("datapath.stack-delivery", "legacy");
    assert_eq!(
        ids(&run),
        [
            ("tcx-legacy-differ", legacy.clone()),
            ("foreign-program", legacy)
        ]
    );
}

#[test]
fn every_signature_has_a_reason_a_link_and_a_test() {
    let here = include_str!("tests.rs");
    for s in signatures::SIGNATURES {
        let Signature {
            id,
            title,
            reason,
            link,
        } = s;
        assert!(!title.is_empty() && reason.len() > 80, "{id}");
        assert!(
            link.starts_with("https://") || link.starts_with("README.md#"),
            "{id}"
        );
        assert!(here.contains(&format!("\"{id}\"")), "no test names {id}");
    }
}

/// Fakes assembled at run time, so that no scanner takes the source for a leak.
struct Planted {
    token: String,
    key_body: String,
    password: String,
    userinfo: String,
    aws: String,
    xfrm_key: String,
}

impl Planted {
    fn new() -> Planted {
        Planted {
            token: format!("ghp_{}", "Pl4ntedT0ken".repeat(3)),
            key_body: "MIIEpAIBAAKCAQEAplantedfakekeymaterial".repeat(2),
            password: "hunter2-planted".into(),
            userinfo: "ciuser:s3cr3t-planted".into(),
            aws: format!("AKIA{}", "PLANTEDFAKE12345"),
            xfrm_key: "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567".into(),
        }
    }

    fn all(&self) -> Vec<&str> {
        vec![
            &self.token,
            &self.key_body,
            &self.password,
            "s3cr3t-planted",
            &self.aws,
            &self.xfrm_key,
        ]
    }

    fn pem(&self) -> String {
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n{}\n-----END PRIVATE KEY-----",
            self.key_body, self.key_body
        )
    }

    /// The nix-2hd run with secrets where the collector reads: link lines, routes,
    /// neighbours, reasons, facts notes, the control's reason.
    fn run(&self) -> Value {
        let mut run = nix_run();
        let v = verdict_mut(&mut run, "datapath.stack-delivery", "tcx");
        let ns = &mut v["observation"]["evidence"]["triage"]["namespaces"][0];
        ns["links"]
            .as_array_mut()
            .unwrap()
            .push(json!(format!("9: tok0 flags Up alias {}", self.token)));
        ns["routes"].as_array_mut().unwrap().push(json!(format!(
            "table 254 via http://{}@10.0.0.9/ password={}",
            self.userinfo, self.password
        )));
        ns["neighbours"].as_array_mut().unwrap().push(json!(format!(
            "src 10.0.0.1 dst 10.0.0.2\n\tproto esp spi 0x1 reqid 1 mode tunnel\n\taead rfc4106(gcm(aes)) 0x{} 128",
            self.xfrm_key
        )));
        v["reason"] = json!(format!("{} {}", v["reason"].as_str().unwrap(), self.pem()));
        v["observation"]["control"]["reason"] =
            json!(format!("Authorization: Bearer {}", self.token));
        run["instances"][0]["facts"]["notes"]["container"] = json!(format!("AWS key {}", self.aws));
        run
    }

    fn opts(&self) -> Options {
        Options {
            endpoints: vec![(
                "DOCKER_HOST".into(),
                format!("tcp://{}@docker.example:2376", self.userinfo),
            )],
            ..Options::default()
        }
    }

    fn collected(&self) -> Vec<Collected> {
        vec![
            Collected {
                path: "reports/summary.md".into(),
                content: Ok(format!("token={} and {}", self.password, self.pem()).into_bytes()),
            },
            // As `cluster::collect` writes them: ConfigMap data a line each, an agent log.
            Collected {
                path: "cluster/cilium-config.txt".into(),
                content: Ok(format!(
                    "routing-mode: tunnel\nclustermesh-apiserver-token: {}\n",
                    self.password
                )
                .into_bytes()),
            },
            Collected {
                path: "cluster/agent-logs/n0.log".into(),
                content: Ok(format!(
                    "level=info msg=\"request\" header=\"Authorization: Bearer {}\"\n",
                    self.token
                )
                .into_bytes()),
            },
            Collected {
                path: "reports/junit.xml".into(),
                content: Err(format!(
                    "read /nowhere/junit.xml: No such file (daemon tcp://{}@docker.example:2376)",
                    self.userinfo
                )),
            },
        ]
    }
}

fn untar(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut raw)
        .unwrap();
    let mut out = Vec::new();
    for entry in tar::Archive::new(&raw[..]).entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mut body = Vec::new();
        entry.read_to_end(&mut body).unwrap();
        out.push((path, body));
    }
    out
}

#[test]
fn planted_secrets_are_absent_from_every_file_and_the_tarball() {
    let planted = Planted::new();
    let run = planted.run();
    let plain = serde_json::to_string(&run).unwrap();
    for s in planted.all() {
        assert!(plain.contains(s), "the fixture plants {s}");
    }
    let b = build(
        &serde_json::to_string_pretty(&run).unwrap(),
        planted.collected(),
        &planted.opts(),
    )
    .unwrap();
    let tarball = b.tar_gz("bundle").unwrap();
    let entries = untar(&tarball);
    assert_eq!(
        entries.iter().filter(|(_, b)| !b.is_empty()).count(),
        b.files.len()
    );
    for (path, bytes) in b
        .files
        .iter()
        .map(|f| (f.path.clone(), f.bytes.clone()))
        .chain(entries)
    {
        let text = String::from_utf8_lossy(&bytes);
        for s in planted.all() {
            assert!(!text.contains(s), "{s} in {path}");
        }
        assert!(!text.contains("BEGIN PRIVATE KEY"), "a key block in {path}");
    }
    // The places still say what was there.
    let summary = text(&b, "SUMMARY.md");
    assert!(summary.contains("endpoint DOCKER_HOST: `tcp://[redacted]@docker.example:2376`"));
    assert!(summary.contains("[redacted private key]"));
    let host = text(&b, &format!("{TCX}/namespaces/host.txt"));
    assert!(host.contains("alias [redacted]"), "{host}");
    assert!(
        host.contains("aead rfc4106(gcm(aes)) [key sha256:"),
        "{host}"
    );
    let config = text(&b, "cluster/cilium-config.txt");
    assert!(config.contains("routing-mode: tunnel"), "{config}");
    assert!(
        config.contains("clustermesh-apiserver-token: [redacted]"),
        "{config}"
    );
    let manifest = text(&b, "MANIFEST.txt");
    assert!(
        manifest.contains("reports/junit.xml: read /nowhere/junit.xml"),
        "{manifest}"
    );
    assert!(manifest.contains("github token: "), "{manifest}");
    // run.json is still a run.
    let back: Run = serde_json::from_slice(&b.file("run.json").unwrap().bytes).unwrap();
    assert_eq!(back.exit_code(), 1);
}

#[test]
fn two_bundles_of_one_run_are_byte_identical() {
    let planted = Planted::new();
    let run = serde_json::to_string_pretty(&planted.run()).unwrap();
    let one = build(&run, planted.collected(), &planted.opts()).unwrap();
    let two = build(&run, planted.collected(), &planted.opts()).unwrap();
    assert_eq!(one.files, two.files);
    assert_eq!(one.tar_gz("b").unwrap(), two.tar_gz("b").unwrap());
    // The time-dependent values are run.json's, named in the summary.
    let summary = text(&one, "SUMMARY.md");
    assert!(summary.contains(
        "none from the clock: started_at 2026-12-01T11:30:55Z, duration_ms 34206.9, run_id ae9d9535"
    ), "{summary}");
    let mut later: Value = serde_json::from_str(&run).unwrap();
    later["started_at"] = json!("2027-01-01T00:00:00Z");
    let three = build(
        &serde_json::to_string_pretty(&later).unwrap(),
        planted.collected(),
        &planted.opts(),
    )
    .unwrap();
    let changed: Vec<&str> = one
        .files
        .iter()
        .zip(&three.files)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.path.as_str())
        .collect();
    assert_eq!(changed, ["SUMMARY.md", "run.json"]);
}

#[test]
fn the_size_cap_keeps_priority_order_and_lists_what_it_cut() {
    let run = drop_run();
    let full = bundle_of(&run, &Options::default());
    assert!(full.cut.is_empty());
    assert!(full.total_bytes() > 100_000);
    let most = full.total_bytes() - 1_000;
    for cap in [MIN_MAX_BYTES, 8_192, 40_000, most] {
        let b = bundle_of(
            &run,
            &Options {
                max_bytes: cap,
                ..Options::default()
            },
        );
        assert!(b.total_bytes() <= cap, "{} > {cap}", b.total_bytes());
        assert!(!b.cut.is_empty(), "cap {cap} cut nothing");
        assert_eq!(paths(&b)[0], "SUMMARY.md");
        let manifest = text(&b, "MANIFEST.txt");
        assert!(manifest.contains("## cut by the caps ("), "{manifest}");
        assert!(!manifest.contains("## cut by the caps (0)"));
        // Priority: a file is left out only when it does not fit beside those
        // before it, so anything kept after a cut file is smaller than it.
        let order = |p: &str| full.files.iter().position(|f| f.path == p).unwrap();
        for c in b.cut.iter().filter(|c| c.path != "SUMMARY.md") {
            for f in b.files.iter().filter(|f| f.path != "MANIFEST.txt") {
                if order(&f.path) > order(&c.path) {
                    assert!(
                        (f.bytes.len() as u64) < c.bytes.unwrap(),
                        "cap {cap}: {} kept after {} was cut",
                        f.path,
                        c.path
                    );
                }
            }
        }
    }
    let b = bundle_of(
        &run,
        &Options {
            max_bytes: most,
            ..Options::default()
        },
    );
    assert!(paths(&b).contains(&"run.json"));
    let m = text(&b, "MANIFEST.txt");
    assert!(
        m.contains(&format!("did not fit --max-bytes {most}")),
        "{m}"
    );
}

#[test]
fn the_deadline_cuts_row_details_and_keeps_the_rest() {
    let b = bundle_of(
        &drop_run(),
        &Options {
            deadline: Some(Instant::now()),
            max_seconds: 7,
            ..Options::default()
        },
    );
    assert!(paths(&b).contains(&"run.json") && paths(&b).contains(&"SUMMARY.md"));
    assert!(!paths(&b).iter().any(|p| p.starts_with("rows/")));
    let m = text(&b, "MANIFEST.txt");
    assert!(
        m.contains(&format!("{TCX}/: the time cap (--max-seconds 7) ran out")),
        "{m}"
    );
}

#[test]
fn a_failing_step_is_recorded_and_the_bundle_goes_on() {
    let mut run = drop_run();
    let v = verdict_mut(&mut run, "datapath.stack-delivery", "tcx");
    v["observation"]["evidence"]["triage"]["namespaces"] = json!("garbled");
    let b = build(
        &serde_json::to_string(&run).unwrap(),
        vec![Collected {
            path: "reports/junit.xml".into(),
            content: Err("open: permission denied".into()),
        }],
        &Options::default(),
    )
    .unwrap();
    assert_eq!(
        b.failed,
        [
            (
                format!("{TCX}/bpf.txt"),
                "evidence.triage.namespaces is not a list".to_string()
            ),
            (
                format!("{TCX}/namespaces/"),
                "evidence.triage.namespaces is not a list".into()
            ),
            ("reports/junit.xml".into(), "open: permission denied".into()),
        ]
    );
    assert!(paths(&b).contains(&"rows/lab-this-host/datapath.stack-delivery.tcx/hops.txt"));
    assert!(paths(&b).contains(&"rows/lab-this-host/datapath.stack-delivery.legacy/bpf.txt"));
    assert!(text(&b, "MANIFEST.txt").contains("## collection steps that failed (3)"));
}

#[test]
fn quick_keeps_facts_and_failing_paths_only() {
    let b = bundle_of(
        &drop_run(),
        &Options {
            quick: true,
            ..Options::default()
        },
    );
    let rows: Vec<&str> = paths(&b)
        .into_iter()
        .filter(|p| p.starts_with("rows/"))
        .collect();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|p| p.ends_with("/hops.txt")), "{rows:?}");
    assert!(text(&b, "MANIFEST.txt").contains("# mode: quick"));
}

#[test]
fn a_bad_run_is_one_error() {
    for (text, want) in [
        ("{", "not JSON"),
        ("{\"schema\": 2}", "not a run report of schema 2"),
    ] {
        let err = build(text, Vec::new(), &Options::default()).unwrap_err();
        assert!(err.to_string().starts_with(want), "{err}");
    }
}

#[test]
fn written_beside_each_other_and_replaced_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("triage-out");
    let b = bundle_of(
        &drop_run(),
        &Options {
            quick: true,
            ..Options::default()
        },
    );
    let tarball = write(&b, &dir).unwrap();
    assert_eq!(tarball, tmp.path().join("triage-out.tar.gz"));
    let entries = untar(&std::fs::read(&tarball).unwrap());
    assert!(entries.iter().any(|(p, _)| p == "triage-out/SUMMARY.md"));
    for f in &b.files {
        assert_eq!(
            std::fs::read(dir.join(&f.path)).unwrap(),
            f.bytes,
            "{}",
            f.path
        );
    }
    // A second bundle replaces the first whole (its extra files go).
    std::fs::write(dir.join("stale.txt"), "old").unwrap();
    write(&b, &dir).unwrap();
    assert!(!dir.join("stale.txt").exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut leftovers = leftovers;
    leftovers.sort();
    assert_eq!(leftovers, ["triage-out", "triage-out.tar.gz"]);
    // A folder that is not a bundle is never replaced.
    let other = tmp.path().join("photos");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("cat.jpg"), "x").unwrap();
    let err = check_out(&other).unwrap_err().to_string();
    assert!(
        err.contains("neither empty nor an earlier triage bundle"),
        "{err}"
    );
    assert!(write(&b, &other).is_err());
    assert!(other.join("cat.jpg").exists());
}

#[test]
fn slugs_are_file_names() {
    assert_eq!(slug("lab/this host"), "lab-this-host");
    assert_eq!(
        slug("container/docker on Build-01"),
        "container-docker-on-build-01"
    );
    assert_eq!(slug("../.."), "unnamed");
}

#[test]
fn an_unfinished_run_still_gets_a_bundle_saying_why() {
    let userinfo = "u:pa55-unfinished";
    let b = build_unfinished(
        &format!("probe exit 1: connect tcp://{userinfo}@docker.example:2376: refused"),
        vec![Collected {
            path: "reports/junit.xml".into(),
            content: Err("read junit.xml: No such file".into()),
        }],
        &Options::default(),
    );
    assert_eq!(paths(&b), ["SUMMARY.md", "MANIFEST.txt"]);
    assert_eq!(b.run_exit_code, crate::EXIT_INFRA);
    let summary = text(&b, "SUMMARY.md");
    assert!(summary.starts_with("# Triage bundle: the run did not finish\n"));
    assert!(
        summary.contains("tcp://[redacted]@docker.example:2376: refused"),
        "{summary}"
    );
    let manifest = text(&b, "MANIFEST.txt");
    assert!(
        manifest.contains("## collection steps that failed (2)\nrun: probe exit 1"),
        "{manifest}"
    );
    for f in &b.files {
        assert!(!String::from_utf8_lossy(&f.bytes).contains("pa55-unfinished"));
    }
}

/// `cluster.stack-delivery`'s observation as `probe connect` writes it, on the
/// nix-2hd fixture's failing row: the observer's hops in place of the lab's.
fn pod_run(hops: Value) -> Value {
    let mut run = nix_run();
    let v = verdict_mut(&mut run, "datapath.stack-delivery", "tcx");
    v["check"] = json!("cluster.stack-delivery");
    v["variant"] = json!("from-host");
    v["observation"]["check"] = json!("cluster.stack-delivery");
    v["observation"]["variant"] = json!("from-host");
    v["observation"]["evidence"] = json!({ "hops": hops });
    run
}

fn pod_hops(counts: [u64; 5]) -> Value {
    let at = [
        "sent from host-client-0 (node n0)'s socket",
        "observer eth0 ingress (tcx) in ns echo-0 matched",
        "echo-0 Ip InReceives",
        "echo-0 Udp InDatagrams",
        "echo-0's UDP socket (port 8090)",
    ];
    Value::Array(
        at.iter()
            .zip(counts)
            .map(|(at, n)| json!({"at": at, "role": "path", "count": n, "of": 5}))
            .collect(),
    )
}

#[test]
fn a_pod_s_stack_delivery_loss_is_named_inside_or_before_the_pod() {
    let row = row("cluster.stack-delivery", "from-host");
    let after = ids(&pod_run(pod_hops([5, 5, 7, 0, 0])));
    assert!(
        after.contains(&("pod-stack-delivery-lost", row.clone())),
        "{after:?}"
    );
    assert!(!after.iter().any(|(id, _)| *id == "pod-ingress-not-reached"));
    let before = ids(&pod_run(pod_hops([5, 0, 2, 0, 0])));
    assert!(
        before.contains(&("pod-ingress-not-reached", row.clone())),
        "{before:?}"
    );
    assert!(
        !before
            .iter()
            .any(|(id, _)| *id == "pod-stack-delivery-lost")
    );
    // A healthy burst matches neither.
    let healthy = ids(&pod_run(pod_hops([5, 5, 7, 5, 5])));
    assert!(
        !healthy.iter().any(|(id, _)| id.starts_with("pod-")),
        "{healthy:?}"
    );
    let b = bundle_of(&pod_run(pod_hops([5, 5, 7, 0, 0])), &Options::default());
    let summary = text(&b, "SUMMARY.md");
    assert!(
        summary.contains(
            "observer eth0 ingress (tcx) in ns echo-0 matched 5/5, then echo-0 Udp InDatagrams 0/5"
        ),
        "{summary}"
    );
}
