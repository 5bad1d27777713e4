//! `probe echo` and `probe connect` with real traffic on 127.0.0.1: echo
//! servers and a small DNS responder in this process (and once the built
//! binary as a child), plans run through them, observations checked. No root.
#![cfg(target_os = "linux")]

mod pods {
    use conformance_contract::pods::{ConnectCheck, ConnectPlan, ConnectTarget, Protocol};
    use conformance_contract::{ControlOutcome, Line, Observation, Outcome};
    use conformance_probes::pods::connect::{self, Options};
    use conformance_probes::pods::echo::Echo;
    use serde_json::json;
    use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

    /// An echo serving TCP and UDP on ephemeral ports of 127.0.0.1, for the
    /// rest of the test process.
    fn echo(name: &str) -> (u16, u16) {
        let echo = Echo::bind(name, LOCALHOST.into(), Some(0), Some(0)).unwrap();
        let ports = (echo.tcp_port().unwrap(), echo.udp_port().unwrap());
        echo.spawn();
        ports
    }

    /// A port nothing serves (bound, then closed): the kernel refuses it.
    fn closed_tcp_port() -> u16 {
        TcpListener::bind((LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn closed_udp_port() -> u16 {
        UdpSocket::bind((LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn echo_check(
        variant: &str,
        protocol: Protocol,
        port: u16,
        control_port: u16,
        expect: &[&str],
    ) -> ConnectCheck {
        ConnectCheck {
            check: "cluster.pod-to-pod".into(),
            variant: variant.into(),
            description: format!("echo on 127.0.0.1 ({variant})"),
            target: ConnectTarget::Echo {
                protocol,
                host: "127.0.0.1".into(),
                port,
                control_port,
                expect_servers: expect.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    fn dns_check(variant: &str, name: &str, expect: &str, control: &str) -> ConnectCheck {
        ConnectCheck {
            check: "cluster.dns".into(),
            variant: variant.into(),
            description: "the test's resolver".into(),
            target: ConnectTarget::Dns {
                name: name.into(),
                expect_address: expect.into(),
                control_name: control.into(),
            },
        }
    }

    fn plan(checks: Vec<ConnectCheck>) -> ConnectPlan {
        ConnectPlan {
            client: "client-t".into(),
            node: "n1".into(),
            attempts: 3,
            timeout_ms: 200,
            checks,
        }
    }

    fn run(checks: Vec<ConnectCheck>, resolver: Option<SocketAddr>) -> Vec<Observation> {
        let plan = plan(checks);
        let opts = Options {
            resolver,
            ..Options::default()
        };
        let observations = connect::run(&plan, &opts);
        assert_eq!(observations.len(), plan.checks.len());
        for (o, c) in observations.iter().zip(&plan.checks) {
            assert_eq!((&o.check, &o.variant), (&c.check, &c.variant), "plan order");
            assert!(o.missing_facts.is_empty());
        }
        observations
    }

    #[test]
    fn tcp_and_udp_echo_pass_with_refused_controls_blocked() {
        let (tcp, udp) = echo("echo-a");
        let got = run(
            vec![
                echo_check("tcp", Protocol::Tcp, tcp, closed_tcp_port(), &["echo-a"]),
                echo_check(
                    "udp",
                    Protocol::Udp,
                    udp,
                    closed_udp_port(),
                    &["echo-x", "echo-a"],
                ),
            ],
            None,
        );
        for (o, proto, port) in [(&got[0], "tcp", tcp), (&got[1], "udp", udp)] {
            assert_eq!(o.outcome, Outcome::Pass, "{}", o.reason);
            assert_eq!(o.failure, None);
            let e = &o.evidence;
            assert_eq!(e["sent"], 3);
            assert_eq!(e["answered"], 3);
            assert_eq!(e["servers"], json!({"echo-a": 3}));
            assert_eq!(e["errors"], json!({}));
            assert_eq!(e["protocol"], proto);
            assert_eq!(e["target"], format!("127.0.0.1:{port}"));
            let peers = e["peers"].as_array().unwrap();
            assert!(
                !peers.is_empty()
                    && peers
                        .iter()
                        .all(|p| p.as_str().unwrap().starts_with("127.0.0.1:"))
            );
            assert!(e["rtt_ms"].as_f64().unwrap() >= 0.0);
            assert!(o.reason.starts_with("3/3 "), "{}", o.reason);
            assert!(
                o.reason.contains("client-t") && o.reason.contains("echo-a"),
                "{}",
                o.reason
            );
            let control = o.control.as_ref().unwrap();
            assert_eq!(
                control.outcome,
                ControlOutcome::Blocked,
                "{}",
                control.reason
            );
            assert_eq!(control.evidence["answered"], 0);
            assert_eq!(control.evidence["errors"], json!({"refused": 3}));
            assert!(control.description.contains("which nothing serves"));
            assert!(o.duration_ms > 0.0);
        }
        assert_eq!(got[0].evidence["connected"], 3);
    }

    #[test]
    fn an_answer_from_a_server_not_expected_is_wrong_server() {
        let (tcp, udp) = echo("echo-b");
        let got = run(
            vec![
                echo_check("tcp", Protocol::Tcp, tcp, closed_tcp_port(), &["echo-a"]),
                echo_check("udp", Protocol::Udp, udp, closed_udp_port(), &["echo-a"]),
            ],
            None,
        );
        for o in &got {
            assert_eq!(o.outcome, Outcome::Fail, "{}", o.reason);
            assert_eq!(o.failure.as_deref(), Some("wrong-server"));
            assert_eq!(o.evidence["servers"], json!({"echo-b": 3}));
            assert!(
                o.reason.contains("echo-b") && o.reason.contains("expected echo-a"),
                "{}",
                o.reason
            );
            assert_eq!(o.control.as_ref().unwrap().outcome, ControlOutcome::Blocked);
        }
    }

    #[test]
    fn udp_nobody_answers_is_not_delivered_with_its_errors_counted() {
        // Nothing bound: ICMP port unreachable, seen as refused.
        let refused = closed_udp_port();
        // Bound but silent: no ICMP, each attempt times out.
        let silent = UdpSocket::bind((LOCALHOST, 0)).unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        let got = run(
            vec![
                echo_check(
                    "refused",
                    Protocol::Udp,
                    refused,
                    closed_udp_port(),
                    &["echo-a"],
                ),
                echo_check(
                    "silent",
                    Protocol::Udp,
                    silent_port,
                    closed_udp_port(),
                    &["echo-a"],
                ),
                echo_check(
                    "tcp-refused",
                    Protocol::Tcp,
                    closed_tcp_port(),
                    closed_tcp_port(),
                    &["echo-a"],
                ),
            ],
            None,
        );
        let expect_errors = [
            json!({"refused": 3}),
            json!({"timeout": 3}),
            json!({"refused": 3}),
        ];
        for (o, errors) in got.iter().zip(expect_errors) {
            assert_eq!(o.outcome, Outcome::Fail, "{}", o.reason);
            assert_eq!(o.failure.as_deref(), Some("not-delivered"));
            assert_eq!(o.evidence["answered"], 0);
            assert_eq!(o.evidence["errors"], errors);
            assert!(o.evidence.get("rtt_ms").is_none());
            assert!(o.reason.contains("none answered"), "{}", o.reason);
            assert!(o.reason.contains("first missing"), "{}", o.reason);
            assert_eq!(o.control.as_ref().unwrap().outcome, ControlOutcome::Blocked);
        }
        assert!(
            got[0]
                .reason
                .contains("refused: a RST or ICMP unreachable came back")
        );
        assert!(!got[1].reason.contains("refused:"));
        assert!(
            got[2].reason.contains("SYNs sent from client-t's socket"),
            "{}",
            got[2].reason
        );
        drop(silent);
    }

    #[test]
    fn an_echo_check_to_a_host_that_is_no_ip_is_an_error_without_control() {
        let mut check = echo_check("bad-host", Protocol::Tcp, 1, 2, &["echo-a"]);
        if let ConnectTarget::Echo { host, .. } = &mut check.target {
            *host = "echo.ns.svc".into();
        }
        let got = run(vec![check], None);
        assert_eq!(got[0].outcome, Outcome::Error);
        assert!(got[0].control.is_none());
    }

    // ---- DNS ----

    /// A DNS responder on 127.0.0.1: `echo.ns.svc.cluster.local` A 10.43.0.20,
    /// `alias.ns.svc.cluster.local` a CNAME to it (compressed), every other
    /// name NXDOMAIN.
    fn dns_responder() -> SocketAddr {
        let socket = UdpSocket::bind((LOCALHOST, 0)).unwrap();
        let addr = socket.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = answer(&buf[..n]) {
                    let _ = socket.send_to(&reply, peer);
                }
            }
        });
        addr
    }

    /// The name of an uncompressed question at 12, and where it ends.
    fn question(query: &[u8]) -> Option<(String, usize)> {
        let mut labels = Vec::new();
        let mut pos = 12;
        loop {
            let len = *query.get(pos)? as usize;
            pos += 1;
            if len == 0 {
                return Some((labels.join("."), pos));
            }
            labels.push(String::from_utf8_lossy(query.get(pos..pos + len)?).to_string());
            pos += len;
        }
    }

    fn answer(query: &[u8]) -> Option<Vec<u8>> {
        let (name, end) = question(query)?;
        let question = query.get(12..end + 4)?;
        let record = |owner: [u8; 2], rtype: u8, data: &[u8]| {
            let mut r = owner.to_vec();
            r.extend_from_slice(&[0, rtype, 0, 1, 0, 0, 0, 30, 0, data.len() as u8]);
            r.extend_from_slice(data);
            r
        };
        let (rcode, answers): (u8, Vec<Vec<u8>>) = match name.as_str() {
            "echo.ns.svc.cluster.local" => (0, vec![record([0xc0, 12], 1, &[10, 43, 0, 20])]),
            "alias.ns.svc.cluster.local" => {
                // CNAME "echo" + a pointer to "ns.svc.cluster.local" in the
                // question (after "alias", at 12 + 6), then A owned through
                // a pointer to the CNAME's data.
                let cname = record([0xc0, 12], 5, &[4, b'e', b'c', b'h', b'o', 0xc0, 18]);
                let data_at = (end + 4 + 12) as u8;
                (0, vec![cname, record([0xc0, data_at], 1, &[10, 43, 0, 20])])
            }
            "servfail.ns.svc.cluster.local" => (2, Vec::new()),
            _ => (3, Vec::new()),
        };
        let mut r = query[..2].to_vec();
        r.extend_from_slice(&[0x81, 0x80 | rcode, 0, 1, 0, answers.len() as u8, 0, 0, 0, 0]);
        r.extend_from_slice(question);
        for a in answers {
            r.extend_from_slice(&a);
        }
        Some(r)
    }

    #[test]
    fn dns_resolves_the_service_name_and_not_a_name_nobody_made() {
        let resolver = dns_responder();
        let control = "absent.ns.svc.cluster.local";
        let got = run(
            vec![
                dns_check("direct", "echo.ns.svc.cluster.local", "10.43.0.20", control),
                dns_check(
                    "cname",
                    "alias.ns.svc.cluster.local.",
                    "10.43.0.20",
                    control,
                ),
                dns_check("wrong", "echo.ns.svc.cluster.local", "10.43.0.99", control),
                dns_check(
                    "nxdomain",
                    "gone.ns.svc.cluster.local",
                    "10.43.0.20",
                    control,
                ),
                dns_check(
                    "servfail",
                    "servfail.ns.svc.cluster.local",
                    "10.43.0.20",
                    control,
                ),
                // The control leaks when the "name nobody made" resolves.
                dns_check(
                    "leak",
                    "echo.ns.svc.cluster.local",
                    "10.43.0.20",
                    "echo.ns.svc.cluster.local",
                ),
            ],
            Some(resolver),
        );
        for o in &got[..2] {
            assert_eq!(o.outcome, Outcome::Pass, "{}", o.reason);
            let e = &o.evidence;
            assert_eq!(e["resolver"], resolver.to_string());
            assert_eq!((&e["sent"], &e["answered"]), (&json!(3), &json!(3)));
            assert_eq!(e["rcodes"], json!({"NOERROR": 3}));
            assert_eq!(e["addresses"], json!(["10.43.0.20"]));
            assert!(e["rtt_ms"].as_f64().is_some());
            let c = o.control.as_ref().unwrap();
            assert_eq!(c.outcome, ControlOutcome::Blocked, "{}", c.reason);
            assert_eq!(c.evidence["rcodes"], json!({"NXDOMAIN": 3}));
            assert_eq!(c.evidence["name"], control);
        }
        assert_eq!(got[2].outcome, Outcome::Fail);
        assert_eq!(got[2].failure.as_deref(), Some("wrong-address"));
        assert!(
            got[2].reason.contains("10.43.0.20") && got[2].reason.contains("10.43.0.99"),
            "{}",
            got[2].reason
        );
        assert_eq!(got[3].failure.as_deref(), Some("wrong-address"));
        assert_eq!(got[3].evidence["rcodes"], json!({"NXDOMAIN": 3}));
        assert_eq!(got[4].failure.as_deref(), Some("not-delivered"));
        assert_eq!(got[4].evidence["rcodes"], json!({"SERVFAIL": 3}));
        assert!(
            got[4].reason.contains("3 SERVFAIL answers"),
            "{}",
            got[4].reason
        );
        assert_eq!(got[5].outcome, Outcome::Pass);
        let leaked = got[5].control.as_ref().unwrap();
        assert_eq!(leaked.outcome, ControlOutcome::Leaked, "{}", leaked.reason);
    }

    #[test]
    fn dns_from_a_resolver_that_never_answers_is_not_delivered() {
        let silent = UdpSocket::bind((LOCALHOST, 0)).unwrap();
        let refused = closed_udp_port();
        let check = || {
            dns_check(
                "default",
                "echo.ns.svc.cluster.local",
                "10.43.0.20",
                "absent.ns.svc.cluster.local",
            )
        };
        for (resolver, kind) in [
            (silent.local_addr().unwrap(), "timeout"),
            (SocketAddr::from((LOCALHOST, refused)), "refused"),
        ] {
            let got = run(vec![check()], Some(resolver));
            let o = &got[0];
            assert_eq!(o.outcome, Outcome::Fail, "{}", o.reason);
            assert_eq!(o.failure.as_deref(), Some("not-delivered"));
            assert_eq!(o.evidence["answered"], 0);
            assert_eq!(o.evidence["errors"], json!({kind: 3}));
            assert!(
                o.reason.contains("first missing: an answer about the name"),
                "{}",
                o.reason
            );
            // The control's name does not resolve either: it could fail, so blocked.
            assert_eq!(o.control.as_ref().unwrap().outcome, ControlOutcome::Blocked);
        }
    }

    #[test]
    fn dns_without_a_resolv_conf_is_an_error() {
        let plan = plan(vec![dns_check("default", "a.b", "10.0.0.1", "c.b")]);
        let opts = Options {
            resolv_conf: "/nonexistent/resolv.conf".into(),
            resolver: None,
        };
        let got = connect::run(&plan, &opts);
        assert_eq!(got[0].outcome, Outcome::Error);
        assert!(
            got[0].reason.contains("/nonexistent/resolv.conf"),
            "{}",
            got[0].reason
        );
    }

    #[test]
    fn a_plan_is_refused_with_serdes_message_or_when_it_cannot_prove_anything() {
        let err =
            connect::parse_plan(r#"{"client":"c","node":"n","checks":[{"check":1}]}"#).unwrap_err();
        assert!(err.contains("line 1 column"), "{err}");
        let err = connect::parse_plan(r#"{"client":"c","node":"n","attempts":0,"checks":[]}"#)
            .unwrap_err();
        assert!(err.starts_with("attempts"), "{err}");
    }

    // ---- the built binary ----

    /// Kills the child when the test ends, passed or not.
    struct Killed(Child);

    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Waits (up to 10 s) until `port` accepts a connection.
    fn wait_accepting(port: u16, child: &mut Killed) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&(LOCALHOST, port).into(), Duration::from_millis(100))
                .is_ok()
            {
                return;
            }
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!("probe echo exited: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "probe echo never accepted on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn the_binary_serves_echo_and_runs_a_plan_against_it() {
        let probe = env!("CARGO_BIN_EXE_probe");
        let (tcp, udp) = (closed_tcp_port(), closed_udp_port());
        let mut child = Killed(
            Command::new(probe)
                .args([
                    "echo",
                    "--name",
                    "echo-bin",
                    "--tcp",
                    &tcp.to_string(),
                    "--udp",
                    &udp.to_string(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_accepting(tcp, &mut child);
        let plan = plan(vec![
            echo_check("tcp", Protocol::Tcp, tcp, closed_tcp_port(), &["echo-bin"]),
            echo_check("udp", Protocol::Udp, udp, closed_udp_port(), &["echo-bin"]),
        ]);
        let out = Command::new(probe)
            .args(["connect", "--plan", &serde_json::to_string(&plan).unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<Line> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        for (line, variant) in lines.iter().zip(["tcp", "udp"]) {
            let Line::Observation(o) = line else {
                panic!("not an observation: {line:?}");
            };
            assert_eq!(o.variant, variant);
            assert_eq!(o.outcome, Outcome::Pass, "{}", o.reason);
            assert_eq!(o.evidence["servers"], json!({"echo-bin": 3}));
            assert_eq!(o.control.as_ref().unwrap().outcome, ControlOutcome::Blocked);
        }

        let bad = Command::new(probe)
            .args(["connect", "--plan", r#"{"client":"c"}"#])
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(2));
        assert!(bad.stdout.is_empty());
        let stderr = String::from_utf8(bad.stderr).unwrap();
        assert!(
            stderr.starts_with("error: plan: missing field `node`"),
            "{stderr}"
        );
    }
}
