//! The `vm` target: the probe as the init of a minimal guest booted under qemu, one
//! instance per kernel (`--kernel SPEC`, repeatable), so one run puts several kernels
//! (and architectures) side by side.
//!
//! - [`kernel`]: what a SPEC names (a kernel fetched by `cargo xtask kernels`, a
//!   `.deb`, or an image plus its modules folder), read from the package, never guessed.
//! - [`modules`]: the modules the checks need, in dependency order, from `.modinfo`.
//! - [`guest_image`]: the initramfs: the static probe as `/init`, its instructions,
//!   the modules.
//! - [`qemu`]: machine, accelerator (KVM only where a trial boot works) and command line.
//! - [`console`]: why a guest ended, read from its console.
//!
//! Guests boot at most as many at once as this machine has cores, each with one
//! vCPU; a guest's qemu dies with the suite (`PR_SET_PDEATHSIG`) and its scratch
//! folder (initramfs, console log) is removed when its instance ends. Folders a
//! killed earlier run left are swept at preflight.

pub mod console;
pub mod guest_image;
mod initramfs;
pub mod kernel;
pub mod modules;
pub mod qemu;
mod slots;

use super::{
    InstanceHandle, InstanceId, Preamble, ProbeArgs, ProbeBinary, ProbeExit, RunControl,
    StartedInstance, Target, TargetError, TargetKind,
};
use console::GuestEnd;
use kernel::GuestKernel;
use qemu::{AccelChoice, Boot, Machine};
use slots::Slots;
use std::io::{BufRead, BufReader, Read};
#[cfg(target_os = "linux")]
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

/// Memory per guest: the initramfs (probe and modules) lives in it.
const GUEST_MEMORY_MIB: u32 = 1024;

/// Prefix of each guest's scratch folder in the temporary directory; the pid
/// after it lets a later run tell a dead run's leftovers from a live one's.
const SCRATCH_PREFIX: &str = "cilium-conformance-vm-";

pub struct Vm {
    specs: Vec<String>,
    accel: AccelChoice,
    guests: Mutex<Vec<(InstanceId, Arc<Guest>)>>,
    slots: Arc<Slots>,
}

impl Vm {
    /// A `vm` target for the kernels `specs` name (see [`kernel::resolve`]).
    pub fn new(specs: Vec<String>, accel: AccelChoice) -> Vm {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Vm {
            specs,
            accel,
            guests: Mutex::new(Vec::new()),
            slots: Arc::new(Slots::new(cores)),
        }
    }
}

impl Target for Vm {
    fn kind(&self) -> TargetKind {
        TargetKind::Vm
    }

    fn preflight(&self) -> Result<Vec<InstanceId>, TargetError> {
        let specs = if self.specs.is_empty() {
            cached_kernels()?
        } else {
            self.specs.clone()
        };
        sweep_scratch(SCRATCH_PREFIX);
        let mut guests = Vec::new();
        for spec in &specs {
            let kernel = kernel::resolve(spec).map_err(|e| {
                if e.is_usage() {
                    TargetError::Usage(format!("--kernel {spec}: {e}"))
                } else {
                    TargetError::Infrastructure(format!("--kernel {spec}: {e}"))
                }
            })?;
            // A guest whose qemu is missing is the caller's to report (as not run).
            qemu::machine(&kernel.arch).map_err(TargetError::Infrastructure)?;
            // Before anything is built: a kernel without veth or clsact cannot run a check.
            let modules = guest_image::modules_for(&kernel)
                .map_err(|e| TargetError::Infrastructure(format!("--kernel {spec}: {e}")))?;
            let id = InstanceId::new(TargetKind::Vm, kernel.name.clone(), kernel.arch.clone());
            guests.push((id, Arc::new(Guest { kernel, modules })));
        }
        let ids = guests.iter().map(|(id, _)| id.clone()).collect();
        *self.guests.lock().unwrap_or_else(|p| p.into_inner()) = guests;
        Ok(ids)
    }

    fn start(
        &self,
        instance: &InstanceId,
        probe: &ProbeBinary,
        args: &ProbeArgs,
        control: &RunControl,
    ) -> Result<StartedInstance, TargetError> {
        let guest = self
            .guests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(id, _)| id == instance)
            .map(|(_, k)| k.clone())
            .ok_or_else(|| {
                TargetError::Infrastructure(format!("{instance} was not in the preflight"))
            })?;
        let machine = qemu::machine(&guest.kernel.arch).map_err(TargetError::Infrastructure)?;
        let scratch = tempfile::Builder::new()
            .prefix(&format!("{SCRATCH_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(|e| TargetError::Infrastructure(format!("make a scratch folder: {e}")))?;
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel::<String>();
        let job = GuestJob {
            guest,
            machine,
            probe: probe.path.clone(),
            args: args.clone(),
            accel: self.accel,
            scratch: scratch.path().to_path_buf(),
            verbose: control.verbose,
            slots: self.slots.clone(),
            shared: shared.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("vm {}", instance.name))
            .spawn(move || job.run(tx))
            .map_err(|e| TargetError::Infrastructure(format!("start a guest thread: {e}")))?;
        Ok(StartedInstance {
            lines: rx,
            handle: Box::new(GuestHandle {
                shared,
                thread: Mutex::new(Some(thread)),
                scratch: Mutex::new(Some(scratch)),
            }),
            // The results port carries only the probe's lines, but a guest's serial
            // line can start with the firmware's or kernel's bytes: skip to the facts.
            preamble: Preamble::SkipToFacts,
        })
    }
}

/// A kernel the preflight resolved, with the modules its guest loads.
struct Guest {
    kernel: GuestKernel,
    modules: modules::Resolved,
}

/// Without `--kernel`: every tracked kernel in the cache, in `fixtures/kernels.toml`
/// order (the whole matrix once `cargo xtask kernels --fetch all` ran).
fn cached_kernels() -> Result<Vec<String>, TargetError> {
    let cache = kernel::cache_dir();
    let tracked = kernel::tracked().map_err(|e| TargetError::Infrastructure(e.to_string()))?;
    let cached: Vec<String> = tracked
        .into_iter()
        .map(|t| t.name)
        .filter(|name| cache.join(name).join(kernel::RECORD_FILE).is_file())
        .collect();
    if cached.is_empty() {
        return Err(TargetError::Usage(format!(
            "--target vm: no --kernel given and no kernel in {}: run `cargo xtask kernels --fetch all` (or name one: --kernel NAME, a .deb, or IMAGE,MODULES_DIR)",
            cache.display()
        )));
    }
    Ok(cached)
}

/// What the guest's thread and its handle share.
#[derive(Default)]
struct Shared {
    stopped: AtomicBool,
    /// qemu's pid while it runs, else 0.
    pid: AtomicI32,
}

impl Shared {
    fn kill(&self) {
        let pid = self.pid.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill(2) on the qemu this instance started; the pid is cleared
            // (under the same ordering) before the thread reaps it.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// One guest's life, on its own thread: wait for a core, pick the accelerator,
/// build the initramfs, boot, forward the results port's lines.
struct GuestJob {
    guest: Arc<Guest>,
    machine: Machine,
    probe: PathBuf,
    args: ProbeArgs,
    accel: AccelChoice,
    scratch: PathBuf,
    verbose: bool,
    slots: Arc<Slots>,
    shared: Arc<Shared>,
}

/// How the thread ended: the guest's end, or the target's own error.
type JobResult = Result<Option<(GuestEnd, String)>, TargetError>;

impl GuestJob {
    fn run(self, tx: mpsc::Sender<String>) -> JobResult {
        let kernel = &self.guest.kernel;
        let infra = |what: &str, e: String| {
            TargetError::Infrastructure(format!("{}: {what}: {e}", kernel.name))
        };
        let Some(_slot) = self.slots.acquire(&self.shared.stopped) else {
            return Ok(None);
        };
        let (accel, why) = qemu::choose(
            self.accel,
            &self.machine,
            &kernel.arch,
            &kernel.vmlinuz,
            &self.scratch,
        )
        .map_err(TargetError::Usage)?;
        let image = guest_image::build(
            &self.guest.modules,
            &self.probe,
            &self.args,
            &self.machine,
            accel,
            &why,
        )
        .map_err(|e| infra("initramfs", e))?;
        let initrd = self.scratch.join("initrd.cpio");
        std::fs::write(&initrd, &image.bytes)
            .map_err(|e| infra("write the initramfs", e.to_string()))?;
        let console_log = self.scratch.join("console.log");
        let boot = Boot {
            machine: self.machine,
            accel,
            kernel: &kernel.vmlinuz,
            initrd: Some(&initrd),
            console_log: &console_log,
            cpus: 1,
            memory_mib: GUEST_MEMORY_MIB,
        };
        let mut cmd = Command::new(self.machine.qemu);
        cmd.args(qemu::args(
            &boot,
            Some(conformance_contract::guest::GUEST_INIT_ARG),
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        // SAFETY: prctl in the child before exec, async-signal-safe. Linux only:
        // elsewhere (qemu on a Mac) a killed suite leaves its guest to finish.
        #[cfg(target_os = "linux")]
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        if self.shared.stopped.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| infra(&format!("start {}", self.machine.qemu), e.to_string()))?;
        self.shared.pid.store(child.id() as i32, Ordering::SeqCst);
        if self.shared.stopped.load(Ordering::SeqCst) {
            self.shared.kill();
        }
        let mut stderr = child.stderr.take().expect("piped");
        let stderr_thread = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let stdout = child.stdout.take().expect("piped");
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if self.verbose {
                eprintln!("vm {}: {line}", kernel.name);
            }
            if tx.send(line.trim_end_matches('\r').to_string()).is_err() {
                break;
            }
        }
        drop(tx);
        let status = child.wait();
        self.shared.pid.store(0, Ordering::SeqCst);
        let qemu_stderr = stderr_thread.join().unwrap_or_default();
        if self.shared.stopped.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let status = status.map_err(|e| infra("wait for qemu", e.to_string()))?;
        let console = std::fs::read(&console_log).unwrap_or_default();
        let end = console::read(&String::from_utf8_lossy(&console));
        if !status.success() && matches!(end, GuestEnd::Died(_)) {
            let why = qemu_stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            return Err(infra(
                &format!("{} exited with {status}", self.machine.qemu),
                why.to_string(),
            ));
        }
        Ok(Some((end, format!("vm, {}", accel.name()))))
    }
}

/// A started guest (see the module doc for the contract).
struct GuestHandle {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<JobResult>>>,
    scratch: Mutex<Option<tempfile::TempDir>>,
}

impl InstanceHandle for GuestHandle {
    fn stop(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.kill();
    }

    fn wait(&self) -> Result<ProbeExit, TargetError> {
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        let result = match thread {
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(TargetError::Infrastructure(
                    "the guest's thread panicked".into(),
                ))
            }),
            None => Err(TargetError::Infrastructure(
                "the guest was waited for twice".into(),
            )),
        };
        // The initramfs and console log go as soon as the guest is gone.
        drop(
            self.scratch
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        match result? {
            None => Ok(ProbeExit {
                code: None,
                stderr_tail: vec!["stopped".into()],
                privilege: "vm".into(),
                told: Default::default(),
            }),
            Some((GuestEnd::Exited(code), privilege)) => Ok(ProbeExit {
                code: Some(code),
                stderr_tail: Vec::new(),
                privilege,
                told: Default::default(),
            }),
            Some((GuestEnd::Died(why), _)) => Err(TargetError::Infrastructure(why)),
        }
    }
}

/// Removes the scratch folders `<prefix><pid>-*` in the temporary directory whose
/// process is gone (a `kill -9`, a crash), and only those.
fn sweep_scratch(prefix: &str) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: kill with signal 0 only asks whether the pid exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
