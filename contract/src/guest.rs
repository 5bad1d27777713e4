//! What the `vm` target hands the probe it boots as a guest's init, and how the
//! probe answers outside its JSON lines. Shared so both sides spell the paths and
//! the marker the same way.

use serde::{Deserialize, Serialize};

/// Where the guest's initramfs holds [`GuestConfig`].
pub const GUEST_CONFIG_PATH: &str = "/conformance/guest.json";

/// The argument the kernel passes to init (after `--` on its command line) to make
/// the probe act as the guest's init.
pub const GUEST_INIT_ARG: &str = "guest-init";

/// The console line the guest's init writes once the probe's run returned, with
/// its exit code: a guest has no exit status of its own, and a console without
/// this line means the guest died first (a panic, a hang, a missing module).
pub const GUEST_EXIT_MARKER: &str = "conformance-guest: exit ";

/// The console prefix of the guest's init's fatal errors (a failed mount, a
/// required module that would not load): the line the target reports.
pub const GUEST_ERROR_MARKER: &str = "conformance-guest: error: ";

/// The guest's instructions, written by the `vm` target at [`GUEST_CONFIG_PATH`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuestConfig {
    /// The probe's arguments, as `probe` would take them (`run --run-id ...`).
    pub args: Vec<String>,
    /// The device the JSON lines go to (a serial port other than the console:
    /// `/dev/ttyS1` on x86_64, `/dev/ttyAMA1` on arm64).
    pub results: String,
    /// Modules to load before the run, dependencies first, as paths in the initramfs.
    pub modules: Vec<GuestModule>,
    /// Modules the checks could use that the kernel has neither built in nor shipped
    /// (`netkit` before 6.7): the facts say the feature is absent, the init only
    /// mentions them.
    #[serde(default)]
    pub missing_modules: Vec<String>,
    /// How qemu runs the guest (`tcg`, `kvm`), recorded as the `vm.accel` fact.
    pub accel: String,
    /// Why that accelerator (`KVM refused at start: ...`), recorded as its note.
    #[serde(default)]
    pub accel_note: String,
}

/// One module for the guest's init to load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestModule {
    pub name: String,
    /// Path inside the initramfs (uncompressed ELF).
    pub path: String,
    /// A module the checks cannot do without (veth, clsact): its load failing ends
    /// the guest with an error instead of a run.
    pub required: bool,
}
