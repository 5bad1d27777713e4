//! The probe's building blocks against the real kernel: namespaces, the embedded
//! eBPF objects (every helper probe through the verifier, the hook program counting,
//! recording and acting on real datagrams) and facts gathering.
//!
//! These need root and BPF. Where either is missing, each test is reported as
//! ignored with the reason printed once — never as passed.

use conformance_contract::HELPERS;
use conformance_ebpf_common::{HookConfig, PROBE_PORT, action, names};
use conformance_probes::hooks::{AttachMode, Direction, Hook};
use conformance_probes::netlink::Rtnl;
use conformance_probes::netns::NetNs;
use conformance_probes::{facts, objects, traffic};
use libtest_mimic::{Arguments, Trial};
use std::net::{Ipv4Addr, UdpSocket};

type TestResult = Result<(), String>;
type Test = fn() -> TestResult;

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    // Asked of the kernel (a BPF load, a namespace, a veth), not read from a sysctl.
    let missing = conformance_probes::kernel_support::lab_missing();
    if let Some(why) = missing {
        eprintln!("kernel tests are ignored here: {why}");
    }
    let tests: [(&str, Test); 7] = [
        ("netns_is_isolated", netns_is_isolated),
        (
            "every_helper_probe_passes_the_verifier",
            every_helper_probe_passes_the_verifier,
        ),
        ("hook_counts_records_and_acts", hook_counts_records_and_acts),
        (
            "facts_are_measured_and_consistent",
            facts_are_measured_and_consistent,
        ),
        (
            "bpffs_propagation_shows_both_ways_and_leaves_no_mount",
            bpffs_propagation_shows_both_ways_and_leaves_no_mount,
        ),
        (
            "triage_evidence_names_the_drop_and_leaves_no_trace_instance",
            triage_evidence_names_the_drop_and_leaves_no_trace_instance,
        ),
        (
            "sigterm_removes_the_tracing_instance",
            sigterm_removes_the_tracing_instance,
        ),
    ];
    let mut trials: Vec<Trial> = tests
        .into_iter()
        .map(|(name, f)| {
            Trial::test(name, move || f().map_err(Into::into)).with_ignored_flag(missing.is_some())
        })
        .collect();
    trials.extend(tunnel_device_trials(missing.is_some()));
    trials.extend(nft_trials(missing.is_some()));
    libtest_mimic::run(&args, trials).exit();
}

fn check(cond: bool, msg: impl FnOnce() -> String) -> TestResult {
    if cond { Ok(()) } else { Err(msg()) }
}

fn netns_is_isolated() -> TestResult {
    let ns = NetNs::new("t").map_err(|e| format!("{e:#}"))?;
    let inside = ns
        .run(|| Ok(std::fs::read_link("/proc/thread-self/ns/net")?))
        .map_err(|e| format!("{e:#}"))?;
    let outside = std::fs::read_link("/proc/thread-self/ns/net").map_err(|e| e.to_string())?;
    check(inside != outside, || "namespace is the caller's".into())?;
    let dev = ns
        .read_to_string("/proc/thread-self/net/dev")
        .map_err(|e| format!("{e:#}"))?;
    check(dev.lines().count() == 3, || {
        format!("a fresh namespace should hold only lo:\n{dev}")
    })
}

fn every_helper_probe_passes_the_verifier() -> TestResult {
    let mut ebpf = aya::Ebpf::load(objects::HELPER_PROBE).map_err(|e| e.to_string())?;
    let mut rejected = Vec::new();
    check(!HELPERS.is_empty(), || "no helpers to probe".into())?;
    for helper in HELPERS {
        let name = format!("{}{helper}", names::HELPER_PROGRAM_PREFIX);
        let prog: &mut aya::programs::SchedClassifier = ebpf
            .program_mut(&name)
            .ok_or_else(|| format!("helper_probe.bpf.o has no program {name}"))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| e.to_string())?;
        if let Err(e) = prog.load() {
            rejected.push(format!("{helper}: {e}"));
        }
    }
    check(rejected.is_empty(), || {
        format!("rejected by this kernel's verifier: {rejected:?}")
    })
}

/// The hook on `lo` of a fresh namespace: PASS delivers and records the metadata
/// as it was before the hook's own writes, DROP and a refused redirect deliver nothing.
fn hook_counts_records_and_acts() -> TestResult {
    let e = |e: anyhow::Error| format!("{e:#}");
    let ns = NetNs::new("hook-test").map_err(e)?;
    ns.run(|| {
        let mut rtnl = Rtnl::new()?;
        let (lo, _) = rtnl.link("lo")?;
        rtnl.set_up(lo)
    })
    .map_err(e)?;
    let base = HookConfig {
        dport: PROBE_PORT,
        action: action::PASS,
        set_mark: 0x77,
        ..Default::default()
    };
    let mut hook = Hook::attach(&ns, "lo", Direction::Ingress, AttachMode::Tcx, base).map_err(e)?;
    let rx = traffic::bind(&ns, Ipv4Addr::LOCALHOST, PROBE_PORT).map_err(e)?;
    let tx: UdpSocket = traffic::bind(&ns, Ipv4Addr::LOCALHOST, 0).map_err(e)?;

    traffic::send_burst(&tx, Ipv4Addr::LOCALHOST, 0..1);
    check(traffic::collect_expected(&rx, 0..1).len() == 1, || {
        "PASS: datagram not delivered".into()
    })?;
    let events = hook.drain_events();
    check(events.len() == 1, || format!("PASS events: {events:?}"))?;
    let m = events[0];
    let loopback = u32::from_ne_bytes([127, 0, 0, 1]);
    check(
        m.seq == 0 && m.saddr == loopback && m.daddr == loopback,
        || format!("{m:?}"),
    )?;
    check(
        m.mark == 0 && m.pkt_type == 0 && m.result == 0 && m.ifindex == lo_index(&ns)?,
        || format!("{m:?}"),
    )?;
    check(m.protocol == u32::from(0x0800u16.to_be()), || {
        format!("protocol {m:?}")
    })?;

    hook.configure(HookConfig {
        action: action::DROP,
        ..base
    })
    .map_err(e)?;
    traffic::send_burst(&tx, Ipv4Addr::LOCALHOST, 1..2);
    let (leaked, witnessed) = traffic::collect_leaks(&rx, 1..2, || {
        hook.counters().map(|c| c.matched >= 2).unwrap_or(false)
    });
    check(leaked.is_empty() && witnessed, || {
        format!("DROP: leaked {leaked:?}, witnessed {witnessed}")
    })?;

    // Flags the helper refuses: TC_ACT_SHOT, counted as a failed redirect and
    // never as a redirect.
    hook.configure(HookConfig {
        action: action::REDIRECT,
        target_ifindex: 1,
        redirect_flags: 1 << 40,
        ..base
    })
    .map_err(e)?;
    traffic::send_burst(&tx, Ipv4Addr::LOCALHOST, 2..3);
    let (leaked, witnessed) = traffic::collect_leaks(&rx, 2..3, || {
        hook.counters().map(|c| c.matched >= 3).unwrap_or(false)
    });
    check(leaked.is_empty() && witnessed, || {
        format!("bad redirect: leaked {leaked:?}")
    })?;
    let c = hook.counters().map_err(e)?;
    check(
        c.matched == 3 && c.redirect_failed == 1 && c.redirected == 0 && c.events_lost == 0,
        || format!("{c:?}"),
    )
}

fn lo_index(ns: &NetNs) -> Result<u32, String> {
    ns.run(|| Ok(Rtnl::new()?.link("lo")?.0))
        .map_err(|e| format!("{e:#}"))
}

/// Facts are measured, and whatever is false says why.
fn facts_are_measured_and_consistent() -> TestResult {
    let f = facts::gather(objects::HOOK, objects::HELPER_PROBE);
    check(f.kernel.is_some(), || {
        format!("kernel not parsed: {}", f.kernel_release)
    })?;
    check(f.arch == std::env::consts::ARCH, || {
        format!("arch {}", f.arch)
    })?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    check(f.page_size == page, || format!("page size {}", f.page_size))?;
    check(f.tcx == Some(true) || f.notes.contains_key("tcx"), || {
        "tcx false or unmeasured without a note".into()
    })?;
    check(
        f.netkit == Some(true) || f.notes.contains_key("netkit"),
        || "netkit false or unmeasured without a note".into(),
    )?;
    check(
        f.xfrm_esp == Some(true) || f.notes.contains_key("xfrm.esp"),
        || "xfrm.esp false or unmeasured without a note".into(),
    )?;
    for helper in HELPERS {
        let ok = f.helpers.get(*helper) == Some(&true)
            || f.notes.contains_key(&format!("helper.{helper}"));
        check(ok, || {
            format!("helper {helper} unavailable without a note: {:?}", f.notes)
        })?;
    }
    // This kernel family (6.6+ with BTF, as CI runs) must have TCX and every helper.
    if f.kernel
        .is_some_and(|k| k >= conformance_contract::KernelVersion::new(6, 6, 0))
        && f.btf
    {
        check(f.tcx == Some(true), || {
            format!(
                "kernel {} without TCX: {:?}",
                f.kernel_release,
                f.notes.get("tcx")
            )
        })?;
        check(f.helpers.values().all(|v| *v), || {
            format!("helpers {:?}", f.helpers)
        })?;
    }
    Ok(())
}

/// `env.bpffs.propagation` here: a shared node sees the agent's bpffs and pin, a
/// private one does not, the slave-agent control is blocked both times, and this
/// process's mount table is the same afterwards (the node and agent namespaces
/// died with their threads, bpffs included).
fn bpffs_propagation_shows_both_ways_and_leaves_no_mount() -> TestResult {
    use conformance_contract::{ControlOutcome, Outcome};
    use conformance_probes::checks::{self, Ctx};
    let before = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let spec =
        conformance_contract::find_check("env.bpffs.propagation").ok_or("not in catalogue")?;
    let faults = std::collections::BTreeMap::new();
    let ctx = Ctx {
        run_id: "kt",
        tcx: false,
        faults: &faults,
    };
    for (variant, want, failure) in [
        ("rshared", Outcome::Pass, None),
        ("private", Outcome::Fail, Some("not-propagated")),
    ] {
        let o = checks::run(spec, variant, &ctx);
        check(o.outcome == want && o.failure.as_deref() == failure, || {
            format!("{variant}: {:?} {:?} {}", o.outcome, o.failure, o.reason)
        })?;
        let control = o.control.as_ref().map(|c| c.outcome);
        check(control == Some(ControlOutcome::Blocked), || {
            format!("{variant}: control {control:?}")
        })?;
    }
    let after = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    check(before == after, || {
        format!("mount table changed:\nbefore:\n{before}\nafter:\n{after}")
    })
}

/// Tracing instances in the kernel, read through a tracefs mounted in a throwaway
/// mount namespace.
fn tracing_instances() -> Result<Vec<String>, String> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<Vec<String>, String> {
            use nix::mount::{MsFlags, mount};
            conformance_probes::mountns::enter_slave("the test's tracefs")
                .map_err(|e| format!("{e:#}"))?;
            let root = "/sys/kernel/tracing";
            if !std::path::Path::new(&format!("{root}/instances")).is_dir() {
                mount(
                    Some("tracefs"),
                    root,
                    Some("tracefs"),
                    MsFlags::empty(),
                    None::<&str>,
                )
                .map_err(|e| format!("mount tracefs: {e}"))?;
            }
            let entries =
                std::fs::read_dir(format!("{root}/instances")).map_err(|e| e.to_string())?;
            Ok(entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect())
        })
        .join()
        .map_err(|_| "tracefs thread panicked".to_string())?
    })
}

/// `--triage` on a check broken by a drop program: the observation carries each
/// namespace's state with the check's own programs on it, and the kernel's drop
/// reason for the burst (TC_EGRESS, the program's TC_ACT_SHOT on pod A's eth0);
/// a passing observation carries none; the tracing instance is gone afterwards.
fn triage_evidence_names_the_drop_and_leaves_no_trace_instance() -> TestResult {
    use conformance_probes::checks::{self, Ctx, Fault};
    let spec =
        conformance_contract::find_check("datapath.stack-delivery").ok_or("not in catalogue")?;
    let mut faults = std::collections::BTreeMap::new();
    {
        let _session = conformance_probes::triage::Session::start("kt");
        let clean = checks::run(
            spec,
            "legacy",
            &Ctx {
                run_id: "kt",
                tcx: false,
                faults: &faults,
            },
        );
        check(!clean.evidence.contains_key("triage"), || {
            format!(
                "a passing observation got triage evidence: {:?}",
                clean.outcome
            )
        })?;
        faults.insert("datapath.stack-delivery".to_string(), Fault::Drop);
        let o = checks::run(
            spec,
            "legacy",
            &Ctx {
                run_id: "kt",
                tcx: false,
                faults: &faults,
            },
        );
        let t = o.evidence.get("triage").ok_or("no evidence.triage")?;
        let names: Vec<&str> = t["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["name"].as_str())
            .collect();
        check(names == ["host", "pod-a", "pod-b"], || {
            format!("namespaces {names:?}")
        })?;
        let programs: Vec<(String, String, bool)> = t["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|n| {
                let ns = n["name"].as_str().unwrap_or_default().to_string();
                n["bpf"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |p| {
                        (
                            format!("{ns}/{}", p["device"].as_str().unwrap_or_default()),
                            p["attach"].as_str().unwrap_or_default().to_string(),
                            p["ours"] == true,
                        )
                    })
            })
            .collect();
        // The check's hook on the host side of pod A's veth is ours; the fault's drop
        // program on pod A's eth0 is not: to triage it is a program someone else put
        // on the path.
        let want_ours = programs.iter().any(|(at, attach, ours)| {
            at.starts_with("host/lxc") && attach == "tc ingress" && *ours
        });
        let want_foreign = programs
            .iter()
            .any(|(at, attach, ours)| at == "pod-a/eth0" && attach == "tc egress" && !*ours);
        check(want_ours && want_foreign, || {
            format!("programs on the path: {programs:?}")
        })?;
        let drops = t["drops"]["by_reason"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let tc_egress: u64 = drops
            .iter()
            .filter(|d| d["reason"] == "TC_EGRESS")
            .filter_map(|d| d["count"].as_u64())
            .sum();
        check(tc_egress >= 5, || format!("drops: {}", t["drops"]))?;
    }
    let left: Vec<String> = tracing_instances()?
        .into_iter()
        .filter(|n| n.starts_with("cc-"))
        .collect();
    check(left.is_empty(), || {
        format!("tracing instances left: {left:?}")
    })
}

/// A probe stopped with SIGTERM in the middle of a `--triage` run (what the lab
/// target's stop and `docker stop` send) removes its tracing instance and exits 143.
fn sigterm_removes_the_tracing_instance() -> TestResult {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_probe"))
        .args(["run", "--triage", "--run-id", "kterm"])
        .args(["--check", "datapath.stack-delivery"])
        .args(["--fault", "datapath.stack-delivery=drop"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mine = format!("-{}-kterm", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !tracing_instances()?.iter().any(|n| n.ends_with(&mine)) {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return Err("the probe never made its tracing instance".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own running child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().map_err(|e| e.to_string())?;
    check(status.code() == Some(143), || format!("exit {status}"))?;
    let left: Vec<String> = tracing_instances()?
        .into_iter()
        .filter(|n| n.ends_with(&mine))
        .collect();
    check(left.is_empty(), || {
        format!("tracing instances left: {left:?}")
    })
}

/// One trial per collect-metadata tunnel kind the tunnel checks create; a kind
/// this kernel has no driver for (EOPNOTSUPP, e.g. a micro-VM kernel without
/// CONFIG_GENEVE) is ignored with one printed line, never passed.
fn tunnel_device_trials(lab_missing: bool) -> Vec<Trial> {
    use conformance_probes::netlink::TunnelKind;
    [TunnelKind::Vxlan, TunnelKind::Geneve]
        .into_iter()
        .map(|kind| {
            let name = format!("tunnel_device_{}_is_external_on_cilium_port", kind.kind());
            let absent = !lab_missing
                && NetNs::new("tunnel-kind")
                    .and_then(|ns| ns.run(|| Rtnl::new()?.add_tunnel("probe0", kind)))
                    .is_err_and(|e| format!("{e:#}").contains("os error 95"));
            if absent {
                eprintln!(
                    "{name} is ignored here: the kernel has no {} driver (EOPNOTSUPP)",
                    kind.kind()
                );
            }
            Trial::test(name, move || tunnel_device(kind).map_err(Into::into))
                .with_ignored_flag(lab_missing || absent)
        })
        .collect()
}

/// `Rtnl::add_tunnel` makes the device Cilium's tunnel mode uses: the kind asked
/// for, collect-metadata (external), Cilium's UDP port; `set_link_mtu` changes
/// its MTU; and it can be brought up (which opens its UDP socket).
fn tunnel_device(kind: conformance_probes::netlink::TunnelKind) -> TestResult {
    let e = |e: anyhow::Error| format!("{e:#}");
    let ns = NetNs::new("tunnel-test").map_err(e)?;
    let (details, mtu) = ns
        .run(|| {
            let mut rtnl = Rtnl::new()?;
            rtnl.add_tunnel(kind.cilium_name(), kind)?;
            let details = rtnl.link_details(kind.cilium_name())?;
            rtnl.set_link_mtu(details.index, 1450)?;
            rtnl.set_up(details.index)?;
            let mtu = rtnl.link_details(kind.cilium_name())?.mtu;
            Ok((details, mtu))
        })
        .map_err(e)?;
    check(details.kind.as_deref() == Some(kind.kind()), || {
        format!("kind {:?}, want {}", details.kind, kind.kind())
    })?;
    check(details.collect_metadata, || {
        format!("{details:?} is not collect-metadata (external)")
    })?;
    check(details.port == Some(kind.port()), || {
        format!("port {:?}, want {}", details.port, kind.port())
    })?;
    check(mtu == 1450, || format!("mtu {mtu} after setting 1450"))
}

/// The nf_tables trial; a kernel without nf_tables (no nfnetlink: EPROTONOSUPPORT,
/// no nf_tables subsystem: EOPNOTSUPP for a bare table) has it ignored with one
/// printed line, never passed.
fn nft_trials(lab_missing: bool) -> Vec<Trial> {
    use conformance_probes::nft::{Nft, Table};
    let name = "nft_counts_rules_by_label_and_deletes_its_table";
    let absent = (!lab_missing)
        .then(|| {
            NetNs::new("nft-kind")
                .and_then(|ns| {
                    ns.run(|| {
                        Nft::new()?.apply(&Table {
                            name: "cc-nft-kind".into(),
                            chains: Vec::new(),
                        })
                    })
                })
                .err()
                .map(|e| format!("{e:#}"))
                .filter(|e| e.contains("os error 93") || e.contains("os error 95"))
        })
        .flatten();
    if let Some(why) = &absent {
        eprintln!("{name} is ignored here: the kernel has no nf_tables ({why})");
    }
    vec![
        Trial::test(name, || nft_counts_rules_by_label().map_err(Into::into))
            .with_ignored_flag(lab_missing || absent.is_some()),
    ]
}

/// `Nft` against real packets: a veth peer namespace sends a burst of UDP
/// datagrams into a namespace whose table has four prerouting chains. Before
/// conntrack (-300) every packet is invalid and none has a ct mark; at -150 the
/// rule marks the conntrack entry; at 0 the mark is seen; at 10 the packet mark
/// is set and seen. The counters `nft` itself lists agree; a refused batch changes
/// nothing and names the message; applying again starts the counters from zero;
/// deleting the table leaves no table behind.
fn nft_counts_rules_by_label() -> TestResult {
    use conformance_probes::nft::{self, Chain, Hook, Match, Nft, Rule, Statement, Table};
    use std::os::fd::AsFd;
    let e = |e: anyhow::Error| format!("{e:#}");
    let ns = NetNs::new("nft-test").map_err(e)?;
    let peer = NetNs::new("nft-peer").map_err(e)?;
    let (here, there) = (Ipv4Addr::new(10, 231, 0, 1), Ipv4Addr::new(10, 231, 0, 2));
    ns.run(|| {
        let mut rtnl = Rtnl::new()?;
        rtnl.add_veth("nft0", "nft1", Some(peer.as_fd()))?;
        let (lo, _) = rtnl.link("lo")?;
        rtnl.set_up(lo)?;
        let (dev, _) = rtnl.link("nft0")?;
        rtnl.add_address(dev, here, 24)?;
        rtnl.set_up(dev)
    })
    .map_err(e)?;
    peer.run(|| {
        let mut rtnl = Rtnl::new()?;
        let (dev, _) = rtnl.link("nft1")?;
        rtnl.add_address(dev, there, 24)?;
        rtnl.set_up(dev)
    })
    .map_err(e)?;

    let mark = 0x5c4b;
    let udp = Match::UdpDport(PROBE_PORT);
    let rule = |label, matches, statements| Rule {
        label,
        matches,
        statements,
    };
    let table = Table {
        name: "cc-nft-test".into(),
        chains: vec![
            Chain {
                name: "raw",
                hook: Hook::Prerouting,
                priority: -300,
                rules: vec![
                    rule(
                        "raw-untracked",
                        vec![udp, Match::CtState(nft::CT_STATE_INVALID)],
                        vec![],
                    ),
                    rule("carried-mark", vec![udp, Match::CtMark(mark)], vec![]),
                ],
            },
            Chain {
                name: "tag",
                hook: Hook::Prerouting,
                priority: -150,
                rules: vec![rule("tag", vec![udp], vec![Statement::SetCtMark(mark)])],
            },
            Chain {
                name: "check",
                hook: Hook::Prerouting,
                priority: 0,
                rules: vec![rule("tagged", vec![udp, Match::CtMark(mark)], vec![])],
            },
            // The packet mark and the trace flag, set in one rule, the mark seen by
            // the next.
            Chain {
                name: "meta",
                hook: Hook::Prerouting,
                priority: 10,
                rules: vec![
                    rule(
                        "set-mark",
                        vec![udp],
                        vec![Statement::SetMark(0x77), Statement::NfTrace],
                    ),
                    rule("marked", vec![udp, Match::Mark(0x77)], vec![]),
                ],
            },
        ],
    };
    let mut nft = ns
        .run(|| {
            let mut nft = Nft::new()?;
            nft.apply(&table)?;
            Ok(nft)
        })
        .map_err(e)?;
    let before = nft.counters(&table.name).map_err(e)?;
    check(before.iter().all(|c| c.packets == 0), || {
        format!("counters before any traffic: {before:?}")
    })?;

    let rx = traffic::bind(&ns, here, PROBE_PORT).map_err(e)?;
    let tx = traffic::bind(&peer, there, 0).map_err(e)?;
    let (sent, error) = traffic::send_burst(&tx, here, 0..traffic::BURST);
    check(sent == traffic::BURST, || {
        format!("sent {sent} of {}: {error:?}", traffic::BURST)
    })?;
    let arrived = traffic::collect_expected(&rx, 0..traffic::BURST).len();
    check(arrived == traffic::BURST as usize, || {
        format!("{arrived} of {} datagrams arrived", traffic::BURST)
    })?;

    let counts = nft.counters(&table.name).map_err(e)?;
    let got: Vec<(&str, &str, u64)> = counts
        .iter()
        .map(|c| (c.chain.as_str(), c.label.as_str(), c.packets))
        .collect();
    let n = u64::from(traffic::BURST);
    let want = [
        ("raw", "raw-untracked", n),
        ("raw", "carried-mark", 0),
        ("tag", "tag", n),
        ("check", "tagged", n),
        ("meta", "set-mark", n),
        ("meta", "marked", n),
    ];
    check(got == want, || format!("counters {got:?}, want {want:?}"))?;
    // IPv4 (20) + UDP (8) + the 8-byte payload, counted at prerouting.
    check(counts.iter().all(|c| c.bytes == c.packets * 36), || {
        format!("bytes: {counts:?}")
    })?;
    nft_cli_agrees(&ns, &table.name, &counts)?;

    // A refused message names itself, and the transaction leaves the table as it was.
    let mut broken = table.clone();
    broken.chains[1].name = Box::leak("x".repeat(300).into_boxed_str());
    let refused = nft.apply(&broken).err().map(|e| format!("{e:#}"));
    check(
        refused.as_deref().is_some_and(|r| {
            r.starts_with(&format!(
                "nft: add chain {} to table ip",
                broken.chains[1].name
            ))
        }),
        || format!("a 300-byte chain name: {refused:?}"),
    )?;
    let unchanged = nft.counters(&table.name).map_err(e)?;
    check(unchanged == counts, || {
        format!("after a refused batch: {unchanged:?}, before {counts:?}")
    })?;
    // Applying again replaces the table: same rules, counters from zero.
    nft.apply(&table).map_err(e)?;
    let again = nft.counters(&table.name).map_err(e)?;
    check(
        again.len() == counts.len() && again.iter().all(|c| c.packets == 0),
        || format!("after applying again: {again:?}"),
    )?;

    nft.delete_table(&table.name).map_err(e)?;
    let after = nft.counters(&table.name);
    check(
        after.as_ref().is_ok_and(|c| c.is_empty()) || after.is_err(),
        || format!("the table outlived delete_table: {after:?}"),
    )?;
    nft.delete_table(&table.name)
        .map_err(|err| format!("deleting a missing table: {err:#}"))?;
    if let Some(listing) = nft_cli(&ns, &["list", "tables"])? {
        check(listing.trim().is_empty(), || {
            format!("tables left after delete_table: {listing}")
        })?;
    }
    drop((nft, rx, tx));
    drop((ns, peer));
    Ok(())
}

const NFT_CLI: &str = "/usr/sbin/nft";

/// `nft ARGS` run inside `ns`: its stdout, or `None` (with a printed note) where
/// there is no nft binary.
fn nft_cli(ns: &NetNs, args: &[&str]) -> Result<Option<String>, String> {
    if !std::path::Path::new(NFT_CLI).exists() {
        eprintln!("no {NFT_CLI} here: the cross-check with nft is skipped");
        return Ok(None);
    }
    // A child forked from a thread inside the namespace starts in it.
    let out = ns
        .run(|| Ok(std::process::Command::new(NFT_CLI).args(args).output()?))
        .map_err(|e| format!("{e:#}"))?;
    check(out.status.success(), || {
        format!(
            "nft {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// `nft -j list table ip NAME` shows each rule with its label as the comment, the
/// same counter, and the matches and statements it was built from.
fn nft_cli_agrees(
    ns: &NetNs,
    table: &str,
    counts: &[conformance_probes::nft::RuleCount],
) -> TestResult {
    let Some(json) = nft_cli(ns, &["-j", "list", "table", "ip", table])? else {
        return Ok(());
    };
    let doc: serde_json::Value = serde_json::from_str(&json).map_err(|e| format!("{e}: {json}"))?;
    let rules: Vec<&serde_json::Value> = doc["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("rule"))
        .collect();
    check(rules.len() == counts.len(), || {
        format!(
            "nft lists {} rules, we read {counts:?}: {json}",
            rules.len()
        )
    })?;
    for c in counts {
        let rule = rules
            .iter()
            .find(|r| r["comment"] == c.label.as_str())
            .ok_or_else(|| format!("nft shows no rule with comment {:?}: {json}", c.label))?;
        let exprs = rule["expr"].as_array().cloned().unwrap_or_default();
        let counter = exprs
            .iter()
            .find_map(|x| x.get("counter"))
            .ok_or_else(|| format!("{}: no counter in {rule}", c.label))?;
        check(
            rule["chain"] == c.chain.as_str()
                && counter["packets"] == c.packets
                && counter["bytes"] == c.bytes,
            || format!("nft shows {rule}, we read {c:?}"),
        )?;
        let text = rule["expr"].to_string();
        let wanted: &[&str] = match c.label.as_str() {
            "raw-untracked" => &["\"dport\"", "47474", "\"state\"", "invalid"],
            "carried-mark" | "tagged" => &["\"dport\"", "\"mark\"", "23627"],
            "tag" => &["\"dport\"", "\"mangle\"", "\"mark\"", "23627"],
            "set-mark" => &["\"mangle\"", "\"mark\"", "119", "\"nftrace\""],
            "marked" => &["\"meta\"", "\"mark\"", "119"],
            _ => &[],
        };
        check(wanted.iter().all(|w| text.contains(w)), || {
            format!("{}: nft decodes {text}, want {wanted:?}", c.label)
        })?;
    }
    Ok(())
}
