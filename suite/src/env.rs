//! Environments: the kinds of place whose capabilities a matrix describes, and
//! how to guess one from facts when the user did not say.
//!
//! Detection is a convenience for laptops; CI should pass `--env` so that a
//! changed fact can never silently switch the matrix a run is judged by. The
//! report records whether the environment was given or detected, and why.

use conformance_contract::Facts;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where a run's expectations come from: `fixtures/matrix/<name>.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Environment {
    /// k3d/kind nodes on Docker or OrbStack: the host's (often a VM's) kernel, shared.
    Container,
    /// NixOS/Incus/qemu guests: a kernel of their own.
    Vm,
    /// Production x86_64 VMs on Hetzner Cloud (KVM).
    Hetzner,
}

impl Environment {
    pub const ALL: [Environment; 3] = [
        Environment::Container,
        Environment::Vm,
        Environment::Hetzner,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Container => "container",
            Environment::Vm => "vm",
            Environment::Hetzner => "hetzner",
        }
    }

    /// `<fixtures>/matrix/<env>.toml`, where `fixtures` is the repository's `fixtures/` folder.
    pub fn matrix_path(self, fixtures: &Path) -> PathBuf {
        fixtures
            .join("matrix")
            .join(format!("{}.toml", self.as_str()))
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an environment (`--env vmm`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown environment \"{given}\" (known: container, vm, hetzner)")]
pub struct UnknownEnvironment {
    pub given: String,
}

impl FromStr for Environment {
    type Err = UnknownEnvironment;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Environment::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| UnknownEnvironment {
                given: s.to_string(),
            })
    }
}

/// Whether the run's environment was given by the user or guessed from facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum EnvironmentSource {
    Given,
    Detected { why: String },
}

/// Guesses the environment from facts, with a one-line explanation for the report.
///
/// Order matters: a container inside a VM (k3d on OrbStack or Colima) is judged
/// as a container, because the container's view (shared kernel, bpffs
/// propagation) is what limits the datapath. Bare metal maps to `vm`, not
/// `hetzner`: both expect everything to pass on a kernel of the host's own, but
/// `hetzner` is the production contract and must only be chosen on evidence
/// (DMI vendor) or by the user, so a developer workstation never reports as
/// production.
pub fn detect(facts: &Facts) -> (Environment, String) {
    let non_empty = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    if let Some(runtime) = non_empty(&facts.virtualization.container) {
        return (
            Environment::Container,
            format!("running inside a container (runtime: {runtime})"),
        );
    }
    if let Some(vendor) = non_empty(&facts.system_vendor)
        && vendor.eq_ignore_ascii_case("hetzner")
    {
        let hv = non_empty(&facts.virtualization.hypervisor).unwrap_or_else(|| "none seen".into());
        return (
            Environment::Hetzner,
            format!("DMI system vendor is \"{vendor}\" (hypervisor: {hv})"),
        );
    }
    if let Some(hv) = non_empty(&facts.virtualization.hypervisor) {
        return (
            Environment::Vm,
            format!("running under a hypervisor ({hv}) not identified as Hetzner"),
        );
    }
    (
        Environment::Vm,
        "no hypervisor or container seen (bare metal): using vm, the matrix for a kernel of the host's own; \
         hetzner is chosen only when DMI says Hetzner (pass --env to override)"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(container: Option<&str>, hypervisor: Option<&str>, vendor: Option<&str>) -> Facts {
        let mut f = Facts::example();
        f.virtualization.container = container.map(Into::into);
        f.virtualization.hypervisor = hypervisor.map(Into::into);
        f.system_vendor = vendor.map(Into::into);
        f
    }

    #[test]
    fn container_wins_over_hypervisor_and_vendor() {
        let (env, why) = detect(&facts(Some("docker"), Some("kvm"), Some("Hetzner")));
        assert_eq!(env, Environment::Container);
        assert!(why.contains("docker"), "{why}");
    }

    #[test]
    fn hetzner_by_dmi_vendor() {
        let (env, why) = detect(&facts(None, Some("kvm"), Some("Hetzner")));
        assert_eq!(env, Environment::Hetzner);
        assert!(why.contains("\"Hetzner\"") && why.contains("kvm"), "{why}");
    }

    #[test]
    fn other_hypervisor_is_vm() {
        let (env, why) = detect(&facts(None, Some("kvm"), Some("QEMU")));
        assert_eq!(env, Environment::Vm);
        assert!(why.contains("kvm"), "{why}");
    }

    #[test]
    fn bare_metal_is_vm_and_says_why() {
        let (env, why) = detect(&facts(None, None, Some("Dell Inc.")));
        assert_eq!(env, Environment::Vm);
        assert!(why.contains("bare metal") && why.contains("--env"), "{why}");
        // An empty string is "not seen", not a container runtime called "".
        let (env, _) = detect(&facts(Some(""), Some(" "), None));
        assert_eq!(env, Environment::Vm);
    }

    #[test]
    fn parses_names_and_rejects_others() {
        assert_eq!("hetzner".parse::<Environment>(), Ok(Environment::Hetzner));
        let err = "vmm".parse::<Environment>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown environment \"vmm\" (known: container, vm, hetzner)"
        );
        assert_eq!(
            Environment::Vm.matrix_path(Path::new("fixtures")),
            Path::new("fixtures/matrix/vm.toml")
        );
    }
}
