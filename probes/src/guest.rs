//! The probe as a guest's init (`probe guest-init`, pid 1 of a `vm` target guest).
//!
//! The guest is nothing but the kernel, an initramfs and this binary, so the init
//! does what a distribution's would for the checks: mounts `/proc`, `/sys`, `/dev`,
//! bpffs, cgroup2 and tracefs, loads the modules the `vm` target listed (it read
//! their order from `.modinfo`; there is no `modprobe` here), then runs the checks
//! with the JSON lines going to a serial port of their own, says how the run ended
//! on the console ([`GUEST_EXIT_MARKER`]) and powers the guest off. Every step that
//! fails says so on the console, which the target reads when no exit line came.

use conformance_contract::guest::{
    GUEST_CONFIG_PATH, GUEST_ERROR_MARKER, GUEST_EXIT_MARKER, GuestConfig,
};
use nix::mount::{MsFlags, mount};
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Filesystems the probe and its checks read or write, in mount order.
const MOUNTS: &[(&str, &str, &str)] = &[
    ("devtmpfs", "/dev", "devtmpfs"),
    ("proc", "/proc", "proc"),
    ("sysfs", "/sys", "sysfs"),
    ("bpf", "/sys/fs/bpf", "bpf"),
    ("cgroup2", "/sys/fs/cgroup", "cgroup2"),
    ("tracefs", "/sys/kernel/tracing", "tracefs"),
    ("tmpfs", "/tmp", "tmpfs"),
    ("tmpfs", "/run", "tmpfs"),
];

/// Mounts that may be missing without ending the guest (tracefs only feeds triage).
const OPTIONAL_MOUNTS: &[&str] = &["/sys/kernel/tracing"];

/// Prepares the guest, returns its configuration and the results port; the caller
/// runs the checks into the port and then calls [`finish`].
pub fn prepare() -> Result<(GuestConfig, File), String> {
    for (source, target, fstype) in MOUNTS {
        std::fs::create_dir_all(target).map_err(|e| format!("mkdir {target}: {e}"))?;
        if let Err(e) = mount(
            Some(*source),
            *target,
            Some(*fstype),
            MsFlags::empty(),
            None::<&str>,
        ) {
            if OPTIONAL_MOUNTS.contains(target) {
                console(&format!("mount {fstype} on {target}: {e} (triage only)"));
            } else {
                return Err(format!("mount {fstype} on {target}: {e}"));
            }
        }
    }
    let raw = std::fs::read_to_string(GUEST_CONFIG_PATH)
        .map_err(|e| format!("read {GUEST_CONFIG_PATH}: {e}"))?;
    let config: GuestConfig =
        serde_json::from_str(&raw).map_err(|e| format!("{GUEST_CONFIG_PATH}: {e}"))?;
    for module in &config.modules {
        match load_module(Path::new(&module.path)) {
            Ok(()) => {}
            // Built in after all, or loaded as another's dependency: nothing to do.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) if module.required => {
                return Err(format!(
                    "load module {} ({}): {e}",
                    module.name, module.path
                ));
            }
            Err(e) => console(&format!(
                "load module {} ({}): {e}; the checks that need it will say so",
                module.name, module.path
            )),
        }
    }
    if !config.missing_modules.is_empty() {
        console(&format!(
            "not in this kernel: {}",
            config.missing_modules.join(", ")
        ));
    }
    // SAFETY: set before any thread that reads the environment starts; the only
    // other thread (the signal terminator) never reads it.
    unsafe {
        std::env::set_var(crate::facts::VM_ACCEL_VAR, &config.accel);
        std::env::set_var(crate::facts::VM_ACCEL_NOTE_VAR, &config.accel_note);
    }
    let port = OpenOptions::new()
        .write(true)
        .open(&config.results)
        .map_err(|e| format!("open the results port {}: {e}", config.results))?;
    make_raw(&port);
    Ok((config, port))
}

/// Says how the run ended on the console and powers the guest off; never returns.
pub fn finish(code: u8, port: Option<File>) -> ! {
    if let Some(mut port) = port {
        let _ = port.flush();
        // SAFETY: fsync/tcdrain on a descriptor this function owns.
        unsafe {
            libc::tcdrain(port.as_raw_fd());
        }
        drop(port);
    }
    eprintln!("{GUEST_EXIT_MARKER}{code}");
    // SAFETY: sync and reboot have no memory preconditions; as pid 1 this is how
    // the guest ends (qemu runs with -no-reboot, so it exits).
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    // reboot only returns on failure (not pid 1, no CAP_SYS_BOOT): exit instead.
    std::process::exit(i32::from(code))
}

/// One line on the console (the init's stderr is `/dev/console`).
pub fn console(line: &str) {
    eprintln!("conformance-guest: {line}");
}

/// The init's fatal error, in the form the target reports ([`GUEST_ERROR_MARKER`]).
pub fn error(line: &str) {
    eprintln!("{GUEST_ERROR_MARKER}{line}");
}

/// `finit_module(2)`: the module file as it lies in the initramfs (uncompressed).
fn load_module(path: &Path) -> std::io::Result<()> {
    let file = File::open(path)?;
    let params = CString::default();
    // SAFETY: a valid descriptor and a NUL-terminated empty parameter string.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// No line discipline on the results port: lines leave as written (no `\r\n`,
/// no echo), whatever the serial driver's default.
fn make_raw(port: &File) {
    // SAFETY: termios is plain data filled by tcgetattr for our own descriptor.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(port.as_raw_fd(), &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(port.as_raw_fd(), libc::TCSANOW, &t);
        }
    }
}
