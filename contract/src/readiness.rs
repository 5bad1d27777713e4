//! Cilium settings as users think of them ("can I turn on eBPF host routing
//! here?"), each mapped to the Helm values that turn it on and to the catalogue
//! checks whose verdicts decide whether this environment can run it. The suite
//! judges each setting `ready`, `not-ready` or `unknown` from a run's verdicts
//! (`conformance_suite::readiness`); `--cilium-values` reads a team's Helm values
//! to say which of them the deployment turns on.
//!
//! Kernel minimums and agent probes are Cilium's own (docs
//! `operations/system_requirements`, `pkg/datapath/linux/probes`), as collected in
//! `shared/notes/domain-facts.md`; where Cilium's requirements name none for a
//! setting, the text says so rather than guessing. The agent's probes are
//! capability checks only (does the helper load, does the attach succeed): the
//! checks named here send real packets, which is how a datapath that loads but
//! does not deliver (nix-2hd) shows.
//!
//! A need is `check` or `check[variant]`. A bare `check` means every variant of it
//! that applies here: a variant judged `unsupported` (its precondition fact is
//! missing, and the matrix says that is expected here) does not apply when another
//! variant does, since Cilium then takes the other way (TCX missing: legacy TC).
//! `check[variant]` means exactly that variant. A bare `check` never covers its
//! IPv6 variant ([`crate::catalogue::IPV6_VARIANT`]): every other setting is
//! judged on IPv4, as a single-stack install runs, and only the `ipv6` setting
//! (`ipv6.enabled`) needs the IPv6 variants, by name.

/// One Helm value and what it is set to, as written in a values file
/// (`bpf.hostLegacyRouting: false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelmValue {
    /// Dotted key path in the chart's values (`bpf.datapathMode`).
    pub key: &'static str,
    /// The value, as YAML (`false`, `netkit`).
    pub value: &'static str,
}

/// One Cilium setting and what it needs from the datapath.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Stable, kebab-case (`bpf-host-routing`); never renamed once released.
    pub id: &'static str,
    /// One line for tables, with the Helm value that names it.
    pub title: &'static str,
    /// The Helm values that turn it on, all of them together; empty for what
    /// every install runs. How a values file maps onto settings (defaults, the
    /// agent's own fallbacks) is `conformance_suite::cilium_values`.
    pub helm: &'static [HelmValue],
    /// Catalogue checks it needs, `check` or `check[variant]`. An id that is not
    /// (yet) in the catalogue must be in [`PLANNED`]; a setting that needs such a
    /// check is `unknown` until this suite checks it.
    pub needs: &'static [&'static str],
    /// Cilium's documented kernel minimum.
    pub kernel_minimum: &'static str,
    /// How Cilium's agent probes for it at start, if it does.
    pub agent_probe: &'static str,
    /// What the needed checks do not cover, or "" when they cover what Cilium needs.
    pub note: &'static str,
    /// The setting Cilium's agent takes instead when a primitive this one needs is
    /// missing (its probe fails), rather than refusing to start: a deployment that
    /// asks for this one still runs where the fallback is ready.
    pub fallback: Option<&'static str>,
    /// Cilium's documentation for it.
    pub reference: &'static str,
}

/// A needed check, parsed from `check` or `check[variant]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedRef<'a> {
    pub check: &'a str,
    /// `None`: every variant that applies.
    pub variant: Option<&'a str>,
}

impl<'a> NeedRef<'a> {
    /// `datapath.redirect-peer` or `env.bpffs.propagation[rshared]`; `None` for
    /// anything else (an empty id or variant, a missing `]`, text after it).
    pub fn parse(need: &'a str) -> Option<NeedRef<'a>> {
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        };
        match need.split_once('[') {
            None if ok(need) => Some(NeedRef {
                check: need,
                variant: None,
            }),
            None => None,
            Some((check, rest)) => {
                let variant = rest.strip_suffix(']')?;
                (ok(check) && ok(variant) && !variant.contains('.')).then_some(NeedRef {
                    check,
                    variant: Some(variant),
                })
            }
        }
    }
}

/// Checks that settings need and that issue #12 plans, not in the catalogue yet.
/// A setting needing one is `unknown` ("needs <id>, which this suite version does
/// not check yet"). Once a check lands in the catalogue its entry here may go; the
/// spelling test accepts an id that is in both.
pub const PLANNED: &[&str] = &[];

const REQUIREMENTS: &str = "https://docs.cilium.io/en/stable/operations/system_requirements/";

/// The base requirement every setting builds on.
const BASE_KERNEL: &str = "5.10 (RHEL 8.10: 4.18)";
const BASE_PROBE: &str = "CONFIG_BPF, BPF_SYSCALL, NET_CLS_BPF, BPF_JIT, NET_CLS_ACT, NET_SCH_INGRESS, CGROUP_BPF; HaveTCBPF attaches clsact on `lo`";
const NO_OWN_PROBE: &str = "none of its own in Cilium's requirements (the base probes: CONFIG_BPF, BPF_SYSCALL, NET_CLS_BPF, NET_CLS_ACT, NET_SCH_INGRESS, HaveTCBPF)";

pub const SETTINGS: &[Setting] = &[
    Setting {
        id: "base-datapath",
        title: "Cilium's eBPF datapath for pods (every install)",
        helm: &[],
        needs: &[
            "datapath.stack-delivery",
            "datapath.pod-to-host",
            "datapath.host-to-pod",
        ],
        kernel_minimum: BASE_KERNEL,
        agent_probe: BASE_PROBE,
        note: "",
        fallback: None,
        reference: REQUIREMENTS,
    },
    Setting {
        id: "bpffs-mount",
        title: "bpffs mounted by the agent and seen by the node (bpf.autoMount.enabled=true)",
        helm: &[HelmValue {
            key: "bpf.autoMount.enabled",
            value: "true",
        }],
        needs: &["env.bpffs.propagation[rshared]"],
        kernel_minimum: "any (mount propagation, shared subtrees since 2.6.15)",
        agent_probe: "the agent refuses a /sys/fs/bpf that is not a shared or slave mount (\"/sys/fs/bpf is not a shared or slave mount\"); on k3d before 5.6.1 set K3D_FIX_MOUNTS=1",
        note: "",
        fallback: None,
        reference: "https://docs.cilium.io/en/stable/operations/system_requirements/#mounted-ebpf-filesystem",
    },
    Setting {
        id: "tcx-attach",
        title: "TCX attachment (bpf.enableTCX=true)",
        helm: &[HelmValue {
            key: "bpf.enableTCX",
            value: "true",
        }],
        needs: &["tc.attach.tcx", "datapath.stack-delivery[tcx]"],
        kernel_minimum: "6.6",
        agent_probe: "HaveTCX: attach a SchedCLS program with a TCX link to `lo` in a fresh netns",
        note: "",
        fallback: Some("legacy-tc-attach"),
        reference: REQUIREMENTS,
    },
    Setting {
        id: "legacy-tc-attach",
        title: "Legacy TC attachment through clsact (bpf.enableTCX=false)",
        helm: &[HelmValue {
            key: "bpf.enableTCX",
            value: "false",
        }],
        needs: &["tc.attach.legacy", "datapath.stack-delivery[legacy]"],
        kernel_minimum: BASE_KERNEL,
        agent_probe: "HaveTCBPF: attach a clsact qdisc and a cls_bpf program on `lo`",
        note: "",
        fallback: None,
        reference: REQUIREMENTS,
    },
    Setting {
        id: "bpf-host-routing",
        title: "eBPF host routing (bpf.hostLegacyRouting=false)",
        helm: &[HelmValue {
            key: "bpf.hostLegacyRouting",
            value: "false",
        }],
        needs: &[
            "datapath.redirect-peer",
            "datapath.redirect-neigh",
            "datapath.fib-lookup",
        ],
        kernel_minimum: "5.10, with kube-proxy replacement and BPF masquerading",
        agent_probe: "helper probes redirect_peer, redirect_neigh and fib_lookup for SchedCLS programs",
        note: "",
        fallback: Some("legacy-host-routing"),
        reference: "https://docs.cilium.io/en/stable/operations/performance/tuning/#ebpf-host-routing",
    },
    Setting {
        id: "legacy-host-routing",
        title: "Host routing through the kernel stack (bpf.hostLegacyRouting=true)",
        helm: &[HelmValue {
            key: "bpf.hostLegacyRouting",
            value: "true",
        }],
        needs: &["datapath.stack-delivery"],
        kernel_minimum: BASE_KERNEL,
        agent_probe: NO_OWN_PROBE,
        note: "pod traffic is handed to the host stack (\"-> stack\") and routed there, the path of the nix-2hd incident",
        fallback: None,
        reference: "https://docs.cilium.io/en/stable/operations/performance/tuning/#ebpf-host-routing",
    },
    Setting {
        id: "kube-proxy-replacement",
        title: "kube-proxy replacement with socket LB (kubeProxyReplacement=true)",
        helm: &[HelmValue {
            key: "kubeProxyReplacement",
            value: "true",
        }],
        needs: &["socket-lb.connect"],
        kernel_minimum: "5.10 (the base); socket-LB bypass in the pod namespace and full session affinity from 5.7",
        agent_probe: NO_OWN_PROBE,
        note: "NodePort, LoadBalancer and DSR on the node's devices are not checked, only the socket-level translation of service addresses",
        fallback: None,
        reference: "https://docs.cilium.io/en/stable/network/kubernetes/kubeproxy-free/",
    },
    Setting {
        id: "bpf-masquerade",
        title: "eBPF masquerading (bpf.masquerade=true)",
        helm: &[HelmValue {
            key: "bpf.masquerade",
            value: "true",
        }],
        needs: &[],
        kernel_minimum: "5.10 (the base), with kube-proxy replacement",
        agent_probe: NO_OWN_PROBE,
        note: "no check of this suite exercises SNAT at a native device's tc egress yet, so it stays unknown",
        fallback: None,
        reference: "https://docs.cilium.io/en/stable/network/concepts/masquerading/",
    },
    Setting {
        id: "native-routing",
        title: "Native routing (routingMode=native)",
        helm: &[HelmValue {
            key: "routingMode",
            value: "native",
        }],
        needs: &["datapath.pod-to-host", "datapath.host-to-pod"],
        kernel_minimum: BASE_KERNEL,
        agent_probe: NO_OWN_PROBE,
        note: "routes between nodes (ipv4NativeRoutingCIDR, autoDirectNodeRoutes or BGP) are the network's, not checked here",
        fallback: None,
        reference: "https://docs.cilium.io/en/stable/network/concepts/routing/#native-routing",
    },
    Setting {
        id: "tunnel-vxlan",
        title: "VXLAN tunnel routing (routingMode=tunnel, tunnelProtocol=vxlan)",
        helm: &[
            HelmValue {
                key: "routingMode",
                value: "tunnel",
            },
            HelmValue {
                key: "tunnelProtocol",
                value: "vxlan",
            },
        ],
        needs: &["tunnel.vxlan"],
        kernel_minimum: BASE_KERNEL,
        agent_probe: NO_OWN_PROBE,
        note: "",
        fallback: None,
        reference: "https://docs.cilium.io/en/stable/network/concepts/routing/#encapsulation",
    },
    Setting {
        id: "tunnel-geneve",
        title: "Geneve tunnel routing (routingMode=tunnel, tunnelProtocol=geneve)",
        helm: &[
            HelmValue {
                key: "routingMode",
                value: "tunnel",
            },
            HelmValue {
                key: "tunnelProtocol",
                value: "geneve",
            },
        ],
        needs: &["tunnel.geneve"],
        kernel_minimum: BASE_KERNEL,
        agent_probe: NO_OWN_PROBE,
        note: "",
        fallback: None,
        reference: "https://docs.cilium.io/en/stable/network/concepts/routing/#encapsulation",
    },
    Setting {
        id: "netkit",
        title: "netkit devices for pods (bpf.datapathMode=netkit)",
        helm: &[HelmValue {
            key: "bpf.datapathMode",
            value: "netkit",
        }],
        needs: &["device.netkit[l3]", "tc.attach.tcx"],
        kernel_minimum: "6.7+ with CONFIG_NETKIT (6.8 for the tuning profile); forces TCX",
        agent_probe: "HaveNetkit: attach to ifindex MaxInt, ENODEV means supported; HaveNetkitScrub (netkit's own scrub fix, 6.13, backported) is required with endpoint routes",
        note: "with endpoint routes (endpointRoutes.enabled) Cilium also needs netkit's own scrub, which device.netkit[scrub] checks",
        fallback: None,
        reference: "https://docs.cilium.io/en/stable/operations/performance/tuning/#netkit-device-mode",
    },
    Setting {
        id: "netkit-l2",
        title: "netkit devices in L2 mode (bpf.datapathMode=netkit-l2)",
        helm: &[HelmValue {
            key: "bpf.datapathMode",
            value: "netkit-l2",
        }],
        needs: &["device.netkit[l2]", "tc.attach.tcx"],
        kernel_minimum: "6.7+ with CONFIG_NETKIT (6.8 for the tuning profile); forces TCX",
        agent_probe: "HaveNetkit: attach to ifindex MaxInt, ENODEV means supported; HaveNetkitScrub (netkit's own scrub fix, 6.13, backported) is required with endpoint routes",
        note: "with endpoint routes (endpointRoutes.enabled) Cilium also needs netkit's own scrub, which device.netkit[scrub] checks",
        fallback: None,
        reference: "https://docs.cilium.io/en/stable/operations/performance/tuning/#netkit-device-mode",
    },
    Setting {
        id: "ipv6",
        title: "IPv6 for pods, dual-stack (ipv6.enabled=true)",
        helm: &[HelmValue {
            key: "ipv6.enabled",
            value: "true",
        }],
        needs: &[
            "datapath.stack-delivery[ipv6]",
            "datapath.stack-delivery.redirect[ipv6]",
            "datapath.redirect-peer[ipv6]",
        ],
        kernel_minimum: BASE_KERNEL,
        agent_probe: "none of its own beyond the base probes; the kernel must have IPv6 (CONFIG_IPV6, not booted with ipv6.disable=1)",
        note: "the IPv6 variants attach with TCX where the kernel has it, legacy tc otherwise, whatever bpf.enableTCX says (the IPv4 variants show each attach mode); bpf_redirect_neigh and bpf_fib_lookup over IPv6 (datapath.redirect-neigh[ipv6], datapath.fib-lookup[ipv6]) are checked but needed by neither this setting nor bpf-host-routing, since the combination (eBPF host routing of IPv6 traffic) is not modelled; IPv6 masquerading is not checked yet",
        fallback: None,
        reference: "https://docs.cilium.io/en/stable/helm-reference/ (ipv6.enabled)",
    },
    Setting {
        id: "xdp-acceleration",
        title: "XDP acceleration of the load balancer (loadBalancer.acceleration=native)",
        helm: &[HelmValue {
            key: "loadBalancer.acceleration",
            value: "native",
        }],
        needs: &["xdp.veth"],
        kernel_minimum: "5.10 (the base); native XDP needs driver support on the node's devices",
        agent_probe: NO_OWN_PROBE,
        note: "xdp.veth shows this kernel runs native XDP on veth; whether the node's NIC driver supports native XDP is not checked",
        fallback: None,
        reference: "https://docs.cilium.io/en/stable/network/kubernetes/kubeproxy-free/#loadbalancer-nodeport-xdp-acceleration",
    },
];

pub fn find_setting(id: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::find_check;

    #[test]
    fn ids_are_unique_kebab() {
        let mut seen = std::collections::HashSet::new();
        for s in SETTINGS {
            assert!(seen.insert(s.id), "duplicate setting {}", s.id);
            assert!(
                !s.id.is_empty()
                    && s.id
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "bad setting id {}",
                s.id
            );
            for text in [s.title, s.kernel_minimum, s.agent_probe, s.reference] {
                assert!(!text.is_empty(), "{}: an empty text", s.id);
            }
            assert!(s.reference.starts_with("https://"), "{}", s.id);
        }
    }

    /// Every needed id is a catalogue check (with the variant it names) or a
    /// planned one, so a typo fails here rather than reading as "not checked yet".
    #[test]
    fn needs_are_spelled_right() {
        for s in SETTINGS {
            for need in s.needs {
                let r = NeedRef::parse(need)
                    .unwrap_or_else(|| panic!("{}: `{need}` is not check or check[variant]", s.id));
                match find_check(r.check) {
                    Some(spec) => {
                        if let Some(v) = r.variant {
                            assert!(
                                spec.variants.contains(&v),
                                "{}: {} has no variant {v} (variants: {:?})",
                                s.id,
                                r.check,
                                spec.variants
                            );
                        }
                    }
                    None => assert!(
                        PLANNED.contains(&r.check),
                        "{}: needs {}, which is neither in the catalogue nor in PLANNED",
                        s.id,
                        r.check
                    ),
                }
            }
        }
        for p in PLANNED {
            assert!(
                NeedRef::parse(p).is_some_and(|r| r.variant.is_none()),
                "{p}"
            );
            assert!(
                crate::find_check(p).is_none(),
                "PLANNED names {p}, which the catalogue has now: remove it from PLANNED"
            );
            assert!(
                SETTINGS.iter().any(|s| s
                    .needs
                    .iter()
                    .any(|n| NeedRef::parse(n).is_some_and(|r| r.check == *p))),
                "PLANNED names {p}, which no setting needs"
            );
        }
    }

    #[test]
    fn fallbacks_and_helm_values_are_well_formed() {
        for s in SETTINGS {
            if let Some(f) = s.fallback {
                let to = find_setting(f).unwrap_or_else(|| panic!("{}: no setting {f}", s.id));
                assert!(to.fallback.is_none(), "{}: fallback chains", s.id);
                assert_ne!(to.id, s.id);
            }
            for h in s.helm {
                assert!(
                    !h.key.is_empty() && !h.value.is_empty() && !h.key.contains(' '),
                    "{}: {h:?}",
                    s.id
                );
            }
        }
    }

    #[test]
    fn need_refs_parse() {
        assert_eq!(
            NeedRef::parse("datapath.redirect-peer"),
            Some(NeedRef {
                check: "datapath.redirect-peer",
                variant: None
            })
        );
        assert_eq!(
            NeedRef::parse("env.bpffs.propagation[rshared]"),
            Some(NeedRef {
                check: "env.bpffs.propagation",
                variant: Some("rshared")
            })
        );
        for bad in [
            "",
            "a[",
            "a[]",
            "[tcx]",
            "a[tcx]x",
            "a[tc.x]",
            "Datapath.x",
            "a b",
        ] {
            assert_eq!(NeedRef::parse(bad), None, "{bad:?}");
        }
    }
}
