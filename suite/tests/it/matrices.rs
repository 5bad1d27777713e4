//! The matrices the repository ships must load, and together with the
//! catalogue's defaults say what every environment expects of every check.

use conformance_contract::facts::KernelPackage;
use conformance_contract::{CATALOGUE, Facts, KernelVersion};
use conformance_suite::env::Environment;
use conformance_suite::matrix::{DecidedBy, ExpectedOutcome, FactPresence, Matrix};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn shipped() -> Vec<Matrix> {
    Environment::ALL
        .iter()
        .map(|env| {
            let m = Matrix::load(env.matrix_path(&fixtures())).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(m.environment, *env);
            m
        })
        .collect()
}

#[test]
fn every_shipped_matrix_loads_and_holds_only_deviations() {
    for m in shipped() {
        for e in &m.entries {
            // An entry that says what the catalogue already says is noise that
            // drifts: a matrix holds only where its environment deviates.
            let spec = conformance_contract::find_check(&e.check).unwrap();
            assert!(
                !(e.outcome == ExpectedOutcome::Pass
                    && e.unless.is_empty()
                    && spec.expected_failures.is_empty()),
                "{}:{}: {} repeats the catalogue's default (pass)",
                m.path.display(),
                e.line,
                e.check
            );
        }
        for e in &m.entries {
            assert!(
                e.reference
                    .as_deref()
                    .is_some_and(|r| r.starts_with("https://")),
                "{}:{}: shipped entries cite a link",
                m.path.display(),
                e.line
            );
            assert!(
                e.reason.len() > 40,
                "{}:{}: a reason a reader can act on",
                m.path.display(),
                e.line
            );
        }
    }
}

fn with_kernel(release: &str) -> Facts {
    let mut f = Facts::example();
    f.kernel_release = release.into();
    f.kernel = KernelVersion::parse_release(release);
    f
}

#[test]
fn scrub_is_expected_to_fail_exactly_on_unfixed_kernels() {
    let unfixed = [
        "5.10.238",
        "5.15.180",
        "6.1.138",
        "6.5.13",
        "6.6.90",
        "6.8.0-60-generic",
        "6.12.28",
        "6.13.12",
        "6.14.6",
        "6.15.0-rc5",
    ];
    let fixed = [
        "6.1.139",
        "6.6.91",
        "6.12.29",
        "6.12.117+deb12-cloud-amd64",
        "6.14.7",
        "6.15.0-rc6",
        "6.15.1",
        "6.18.44",
    ];
    // Every check expected to fail without the fix, each with its own failure.
    let cve_checks: Vec<(&str, &str)> = CATALOGUE
        .iter()
        .filter_map(|c| {
            c.expected_failures
                .iter()
                .find(|e| e.reason.contains("CVE-2025-37959"))
                .map(|e| (c.id, e.failure.code))
        })
        .collect();
    assert!(cve_checks.contains(&("datapath.redirect-peer.scrub", "not-scrubbed")));
    assert!(cve_checks.contains(&("datapath.redirect-peer.scrub.xfrm", "secpath-carried")));
    for m in shipped() {
        for (check, failure) in &cve_checks {
            for release in unfixed {
                let e = m.expectation(check, "default", &with_kernel(release));
                assert_eq!(
                    e.outcome,
                    ExpectedOutcome::Fail,
                    "{}: {check} on {release}",
                    m.path.display()
                );
                assert!(matches!(
                    e.decided_by,
                    DecidedBy::Override { .. } | DecidedBy::Catalogue { when: Some(_), .. }
                ));
                assert!(e.reason.contains("CVE-2025-37959"), "{}", e.reason);
                if *check == "datapath.redirect-peer.scrub" {
                    assert!(e.reason.contains("kernel.upstream"), "{}", e.reason);
                }
                assert_eq!(e.failure.as_deref(), Some(*failure), "{check}");
            }
            for release in fixed {
                let e = m.expectation(check, "default", &with_kernel(release));
                assert_eq!(
                    e.outcome,
                    ExpectedOutcome::Pass,
                    "{}: {check} on {release}",
                    m.path.display()
                );
            }
        }
        // Debian kernels carry the fix at package 6.1.139-1 / 6.12.29-1 although
        // `uname -r` says 6.1.0 / 6.12.0: the package's upstream version decides.
        for (release, package, upstream, want) in [
            (
                "6.1.0-56-cloud-amd64",
                "6.1.192-1",
                (6, 1, 192),
                ExpectedOutcome::Pass,
            ),
            (
                "6.1.0-34-cloud-amd64",
                "6.1.135-1",
                (6, 1, 135),
                ExpectedOutcome::Fail,
            ),
            (
                "6.12.0-0-amd64",
                "6.12.29-1",
                (6, 12, 29),
                ExpectedOutcome::Pass,
            ),
        ] {
            let mut f = with_kernel(release);
            f.kernel_package = Some(KernelPackage {
                distribution: "Debian".into(),
                version: package.into(),
                upstream: Some(KernelVersion::new(upstream.0, upstream.1, upstream.2)),
            });
            let e = m.expectation("datapath.redirect-peer.scrub", "default", &f);
            assert_eq!(
                e.outcome,
                want,
                "{}: {release} ({package})",
                m.path.display()
            );
        }
        // No kernel version: the base expectation stands, and it says why.
        let mut f = Facts::example();
        f.kernel = None;
        let e = m.expectation("datapath.redirect-peer.scrub", "default", &f);
        assert_eq!(e.outcome, ExpectedOutcome::Pass);
        assert_eq!(e.undecided.len(), 1);
    }
}

#[test]
fn the_private_bpffs_way_is_expected_to_fail_everywhere_with_its_failure() {
    for m in shipped() {
        for release in ["5.10.0", "6.1.0-56-cloud-amd64", "6.18.44"] {
            let e = m.expectation("env.bpffs.propagation", "private", &with_kernel(release));
            assert_eq!(e.outcome, ExpectedOutcome::Fail, "{}", m.path.display());
            assert_eq!(e.failure.as_deref(), Some("not-propagated"));
            let shared = m.expectation("env.bpffs.propagation", "rshared", &with_kernel(release));
            assert_eq!(
                shared.outcome,
                ExpectedOutcome::Pass,
                "{}",
                m.path.display()
            );
        }
    }
}

#[test]
fn everything_else_is_expected_to_pass_everywhere() {
    for m in shipped() {
        // The checks with a conditional expected failure (the CVE-2025-37959
        // family) are tested above.
        for check in CATALOGUE.iter().filter(|c| c.expected_failures.is_empty()) {
            for variant in check.variants {
                if (check.id, *variant) == ("env.bpffs.propagation", "private") {
                    continue;
                }
                for release in ["5.10.0", "6.1.0-56-cloud-amd64", "6.18.44"] {
                    let e = m.expectation(check.id, variant, &with_kernel(release));
                    assert_eq!(
                        e.outcome,
                        ExpectedOutcome::Pass,
                        "{}: {}[{variant}] on {release}",
                        m.path.display(),
                        check.id
                    );
                }
            }
        }
    }
}

#[test]
fn precondition_facts_are_expected_from_their_kernel() {
    for m in shipped() {
        let presence =
            |fact: &str, release: &str| m.fact_expectation(fact, &with_kernel(release)).presence;
        // On a current distribution kernel with cgroup v2 every fact a check
        // needs is expected: its absence is a regression, never a grey `unsupported`.
        let mut current = with_kernel("6.18.44");
        current.kernel_package = Some(KernelPackage {
            distribution: "Debian".into(),
            version: "6.18.44-1".into(),
            upstream: Some(KernelVersion::new(6, 18, 44)),
        });
        assert!(current.cgroup2.is_some());
        for check in CATALOGUE {
            for (_, fact) in check.requires {
                assert_eq!(
                    m.fact_expectation(fact, &current).presence,
                    FactPresence::Expected,
                    "{}: {fact} for {}",
                    m.path.display(),
                    check.id
                );
            }
        }
        // Drivers a kernel may be built without (netkit, geneve, vxlan, IPv6, ESP) are
        // expected on distribution kernels only; socket LB's cgroup programs
        // where a cgroup v2 tree is mounted.
        let mut micro_vm = current.clone();
        micro_vm.kernel_package = None;
        micro_vm.cgroup2 = None;
        for fact in [
            "netkit",
            "vxlan",
            "geneve",
            "ipv6",
            "xfrm.esp",
            "cgroup.sock_addr",
        ] {
            assert_eq!(
                m.fact_expectation(fact, &micro_vm).presence,
                FactPresence::NotExpected,
                "{}: {fact} on a kernel of no distribution, without cgroup v2",
                m.path.display()
            );
        }
        for (fact, before, from) in [
            ("tcx", "6.1.0-56-cloud-amd64", "6.6.0"),
            ("helper.redirect_peer", "5.4.0", "5.10.0"),
            ("helper.ringbuf_output", "5.7.0", "5.8.0"),
        ] {
            assert_eq!(
                presence(fact, before),
                FactPresence::NotExpected,
                "{}: {fact} on {before}",
                m.path.display()
            );
            assert_eq!(
                presence(fact, from),
                FactPresence::Expected,
                "{}: {fact} on {from}",
                m.path.display()
            );
        }
    }
}
