//! qemu for one guest: which binary and machine per architecture, which
//! accelerator (KVM only where a trial boot shows it works for this guest), and
//! the command line. Pure where it can be, so every choice is unit-tested.
//!
//! The guest's console goes to a file (read when the guest ends without its exit
//! line: a panic, a missing module); the probe's JSON lines go to a second serial
//! port wired to qemu's stdout, so they stream like every other target's.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How qemu executes the guest's instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// What the user asked for (`--vm-accel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccelChoice {
    /// KVM where a trial boot works, else TCG.
    #[default]
    Auto,
    Tcg,
    Kvm,
}

impl std::str::FromStr for AccelChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(AccelChoice::Auto),
            "tcg" => Ok(AccelChoice::Tcg),
            "kvm" => Ok(AccelChoice::Kvm),
            other => Err(format!(
                "--vm-accel {other}: want auto, tcg or kvm (auto: KVM where a trial boot works, else TCG)"
            )),
        }
    }
}

/// The qemu side of one guest architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    pub qemu: &'static str,
    args: &'static [&'static str],
    /// The CPU under TCG. arm64: `max` has the 16K-page granule the `-16k` kernels
    /// need; `pauth-impdef` swaps the architected pointer-auth hash, very slow to
    /// emulate, for qemu's cheap one.
    tcg_cpu: &'static str,
    pub console: &'static str,
    /// The guest's device for the second serial port (the JSON lines).
    pub results_port: &'static str,
    /// Debian's package for this qemu (named in errors).
    pub debian_package: &'static str,
}

const X86_64: Machine = Machine {
    qemu: "qemu-system-x86_64",
    args: &["-M", "pc"],
    tcg_cpu: "max",
    console: "ttyS0",
    results_port: "/dev/ttyS1",
    debian_package: "qemu-system-x86",
};

const AARCH64: Machine = Machine {
    qemu: "qemu-system-aarch64",
    args: &["-M", "virt"],
    tcg_cpu: "max,pauth-impdef=on",
    console: "ttyAMA0",
    results_port: "/dev/ttyAMA1",
    debian_package: "qemu-system-arm",
};

/// The machine for a guest of `arch` (`uname -m` names).
pub fn machine(arch: &str) -> Result<Machine, String> {
    match arch {
        "x86_64" => Ok(X86_64),
        "aarch64" => Ok(AARCH64),
        other => Err(format!(
            "no qemu machine for a {other} guest (x86_64, aarch64)"
        )),
    }
}

/// One guest's boot: the files qemu reads and writes, and its size.
#[derive(Debug, Clone)]
pub struct Boot<'a> {
    pub machine: Machine,
    pub accel: Accel,
    pub kernel: &'a Path,
    pub initrd: Option<&'a Path>,
    pub console_log: &'a Path,
    pub cpus: usize,
    pub memory_mib: u32,
}

/// The kernel's command line: only parameters the kernel knows, since anything
/// else before `--` would be handed to init as an argument.
pub fn kernel_cmdline(machine: &Machine, init_arg: Option<&str>) -> String {
    let mut line = format!(
        "console={} panic=-1 rdinit=/init loglevel=4",
        machine.console
    );
    if let Some(arg) = init_arg {
        line.push_str(" -- ");
        line.push_str(arg);
    }
    line
}

/// qemu's arguments for `boot`; the results port is qemu's stdout.
pub fn args(boot: &Boot<'_>, init_arg: Option<&str>) -> Vec<String> {
    let mut a: Vec<String> = boot.machine.args.iter().map(|s| s.to_string()).collect();
    let cpu = match boot.accel {
        Accel::Tcg => boot.machine.tcg_cpu,
        Accel::Kvm => "host",
    };
    a.extend(
        [
            "-accel",
            boot.accel.name(),
            "-cpu",
            cpu,
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-monitor",
            "none",
            "-nic",
            "none",
            "-no-reboot",
        ]
        .map(String::from),
    );
    a.push("-smp".into());
    a.push(boot.cpus.max(1).to_string());
    a.push("-m".into());
    a.push(boot.memory_mib.to_string());
    a.push("-kernel".into());
    a.push(boot.kernel.display().to_string());
    if let Some(initrd) = boot.initrd {
        a.push("-initrd".into());
        a.push(initrd.display().to_string());
    }
    a.push("-append".into());
    a.push(kernel_cmdline(&boot.machine, init_arg));
    a.push("-serial".into());
    a.push(format!("file:{}", boot.console_log.display()));
    a.push("-serial".into());
    a.push("stdio".into());
    a
}

/// Whether KVM can run a guest of `guest_arch` here at all, before trying it.
pub fn kvm_possible(guest_arch: &str) -> Result<(), String> {
    if guest_arch != std::env::consts::ARCH {
        return Err(format!(
            "an {guest_arch} guest on this {} host is emulated",
            std::env::consts::ARCH
        ));
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("/dev/kvm: {e}")),
    }
}

/// How long a KVM trial boot may take: a kernel with no initramfs panics ("unable
/// to mount root") within a second or two under a working KVM.
const KVM_TRIAL: Duration = Duration::from_secs(15);

/// Boots the guest's kernel with no initramfs under KVM and expects it to get as
/// far as looking for its root filesystem. Hosts that expose `/dev/kvm` without a
/// usable one (a PVM host: qemu aborts setting MSR 0x10a) fail here in
/// milliseconds, so the real boot goes to TCG instead of crawling or aborting.
pub fn kvm_trial(machine: &Machine, kernel: &Path, scratch: &Path) -> Result<(), String> {
    let console = scratch.join("kvm-trial-console.log");
    let boot = Boot {
        machine: *machine,
        accel: Accel::Kvm,
        kernel,
        initrd: None,
        console_log: &console,
        cpus: 1,
        memory_mib: 256,
    };
    let started = Instant::now();
    let mut child = Command::new(machine.qemu)
        .args(args(&boot, None))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start {}: {e}", machine.qemu))?;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > KVM_TRIAL {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "a KVM trial boot did not panic for want of a root within {}s",
                KVM_TRIAL.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    let log = std::fs::read_to_string(&console).unwrap_or_default();
    let _ = std::fs::remove_file(&console);
    if log.contains("Kernel panic") || log.contains("VFS: Unable to mount root") {
        return Ok(());
    }
    let why = stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| {
            l.trim_start_matches(&format!("{}: ", machine.qemu))
                .to_string()
        })
        .unwrap_or_else(|| format!("qemu exited ({status}) before the kernel started"));
    Err(format!("KVM refused at start ({why})"))
}

/// `; nested: ...` where this host is itself a guest (x86's `hypervisor` CPU flag),
/// so a KVM guest here runs under nested virtualization, as the incident's did.
fn nesting() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flagged = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "hypervisor"));
    if flagged {
        "; nested: this host is itself a virtual machine (its CPUs carry the hypervisor flag)"
            .into()
    } else {
        String::new()
    }
}

/// The accelerator for a guest and why, trying KVM where asked or possible.
pub fn choose(
    choice: AccelChoice,
    machine: &Machine,
    guest_arch: &str,
    kernel: &Path,
    scratch: &Path,
) -> Result<(Accel, String), String> {
    match choice {
        AccelChoice::Tcg => Ok((Accel::Tcg, "--vm-accel tcg".into())),
        AccelChoice::Kvm => {
            kvm_possible(guest_arch)
                .and_then(|()| kvm_trial(machine, kernel, scratch))
                .map_err(|why| format!("--vm-accel kvm: {why}"))?;
            Ok((
                Accel::Kvm,
                format!("--vm-accel kvm; a trial boot worked{}", nesting()),
            ))
        }
        AccelChoice::Auto => Ok(
            match kvm_possible(guest_arch).and_then(|()| kvm_trial(machine, kernel, scratch)) {
                Ok(()) => (
                    Accel::Kvm,
                    format!("a KVM trial boot of this kernel worked{}", nesting()),
                ),
                Err(why) => (Accel::Tcg, why),
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_per_architecture() {
        assert_eq!(machine("x86_64").unwrap().qemu, "qemu-system-x86_64");
        assert_eq!(machine("aarch64").unwrap().results_port, "/dev/ttyAMA1");
        assert!(machine("riscv64").unwrap_err().contains("riscv64"));
    }

    #[test]
    fn the_command_line_wires_console_and_results_apart() {
        let boot = Boot {
            machine: machine("aarch64").unwrap(),
            accel: Accel::Tcg,
            kernel: Path::new("/k/vmlinuz"),
            initrd: Some(Path::new("/k/initrd")),
            console_log: Path::new("/k/console.log"),
            cpus: 2,
            memory_mib: 1024,
        };
        let a = args(&boot, Some("guest-init")).join(" ");
        assert!(
            a.starts_with("-M virt -accel tcg -cpu max,pauth-impdef=on"),
            "{a}"
        );
        assert!(a.contains("-kernel /k/vmlinuz -initrd /k/initrd"), "{a}");
        assert!(
            a.contains("-append console=ttyAMA0 panic=-1 rdinit=/init"),
            "{a}"
        );
        assert!(
            a.contains(" -- guest-init -serial file:/k/console.log -serial stdio"),
            "{a}"
        );
        assert!(
            a.contains("-no-reboot"),
            "a panic must end qemu, not loop: {a}"
        );
        let kvm = args(
            &Boot {
                accel: Accel::Kvm,
                ..boot
            },
            None,
        )
        .join(" ");
        assert!(kvm.contains("-accel kvm -cpu host"), "{kvm}");
        assert!(!kvm.contains("--"), "{kvm}");
    }

    #[test]
    fn the_kernel_command_line_has_nothing_init_would_get() {
        let line = kernel_cmdline(&machine("x86_64").unwrap(), Some("guest-init"));
        let before = line.split(" -- ").next().unwrap();
        for word in before.split(' ') {
            assert!(word.contains('='), "{word} would reach init as an argument");
        }
    }

    #[test]
    fn emulated_architectures_never_try_kvm() {
        let other = if std::env::consts::ARCH == "x86_64" {
            "aarch64"
        } else {
            "x86_64"
        };
        assert!(kvm_possible(other).unwrap_err().contains("emulated"));
        assert_eq!("auto".parse::<AccelChoice>().unwrap(), AccelChoice::Auto);
        assert!(
            "hvf"
                .parse::<AccelChoice>()
                .unwrap_err()
                .contains("auto, tcg or kvm")
        );
    }
}
