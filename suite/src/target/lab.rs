//! The `lab` target: the probe runs on this host and builds its own network
//! namespaces. Only the probe needs privileges; when the suite is not root it starts
//! the probe through `sudo -n` if that works without a password, else it says which
//! privilege is missing. The probe's namespaces and links are held by file
//! descriptor, so stopping the process is the whole cleanup.

use super::{
    InstanceHandle, InstanceId, Preamble, ProbeArgs, ProbeBinary, ProbeExit, RunControl,
    StartedInstance, Target, TargetError, TargetKind,
};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The one instance: this host.
#[derive(Default)]
pub struct Lab {
    launcher: OnceLock<Launcher>,
}

#[derive(Clone)]
struct Launcher {
    prefix: Vec<String>,
    privilege: &'static str,
}

/// How to start a privileged process from here.
fn launcher() -> Result<Launcher, TargetError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(Launcher {
            prefix: Vec::new(),
            privilege: "direct (root)",
        });
    }
    let sudo_ok = Command::new("sudo")
        .args(["-n", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if sudo_ok {
        return Ok(Launcher {
            prefix: vec!["sudo".into(), "-n".into(), "--".into()],
            privilege: "sudo",
        });
    }
    Err(TargetError::Usage(
        "the lab target needs root for the probe (CAP_SYS_ADMIN to create namespaces and load eBPF, CAP_NET_ADMIN for veths and tc); run as root, or allow passwordless `sudo` for the probe".into(),
    ))
}

impl Lab {
    pub fn new() -> Lab {
        Lab::default()
    }

    fn launcher(&self) -> Result<Launcher, TargetError> {
        if let Some(l) = self.launcher.get() {
            return Ok(l.clone());
        }
        let l = launcher()?;
        Ok(self.launcher.get_or_init(|| l).clone())
    }

    /// This host, named the way reports show it.
    pub fn instance() -> InstanceId {
        InstanceId::new(TargetKind::Lab, "this host", std::env::consts::ARCH)
    }
}

impl Target for Lab {
    fn kind(&self) -> TargetKind {
        TargetKind::Lab
    }

    fn preflight(&self) -> Result<Vec<InstanceId>, TargetError> {
        self.launcher()?;
        Ok(vec![Lab::instance()])
    }

    fn start(
        &self,
        _instance: &InstanceId,
        probe: &ProbeBinary,
        args: &ProbeArgs,
        control: &RunControl,
    ) -> Result<StartedInstance, TargetError> {
        if !probe.path.exists() {
            return Err(TargetError::Infrastructure(format!(
                "probe binary {} does not exist",
                probe.path.display()
            )));
        }
        let launcher = self.launcher()?;
        let mut argv = launcher.prefix;
        argv.push(probe.path.display().to_string());
        argv.extend(args.to_argv());
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| TargetError::Infrastructure(format!("start {}: {e}", argv.join(" "))))?;

        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("piped");
        let verbose = control.verbose;
        let stderr_thread = std::thread::spawn(move || {
            let mut tail: Vec<String> = Vec::new();
            let mut buf = String::new();
            let _ = stderr.read_to_string(&mut buf);
            for l in buf.lines() {
                if verbose {
                    eprintln!("probe: {l}");
                }
                tail.push(l.to_string());
            }
            let skip = tail.len().saturating_sub(20);
            tail.split_off(skip)
        });
        Ok(StartedInstance {
            lines: rx,
            handle: Box::new(LabProbe {
                pid: child.id() as libc::pid_t,
                child: Mutex::new(Some(child)),
                reaped: Mutex::new(false),
                stderr: Mutex::new(Some(stderr_thread)),
                privilege: launcher.privilege,
            }),
            preamble: Preamble::None,
        })
    }
}

/// The started probe process (or `sudo` in front of it).
struct LabProbe {
    pid: libc::pid_t,
    child: Mutex<Option<Child>>,
    /// Set once the pid is reaped: after that it may name another process.
    reaped: Mutex<bool>,
    stderr: Mutex<Option<JoinHandle<Vec<String>>>>,
    privilege: &'static str,
}

impl LabProbe {
    /// Whether the process has exited, without reaping it (the pid stays ours).
    fn exited(&self) -> bool {
        // SAFETY: waitid on our own child with WNOHANG|WNOWAIT only reads its state.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is valid to read after waitid filled (or zeroed) info.
        rc != 0 || unsafe { info.si_pid() } != 0
    }

    /// Sends `signal` unless the process is gone (never a recycled pid).
    fn signal(&self, signal: libc::c_int) -> bool {
        let reaped = self.reaped.lock().unwrap_or_else(|e| e.into_inner());
        if *reaped || self.exited() {
            return false;
        }
        // SAFETY: kill(2) on our own, not yet reaped child.
        unsafe { libc::kill(self.pid, signal) };
        true
    }
}

impl InstanceHandle for LabProbe {
    fn stop(&self) {
        // SIGTERM first: sudo relays it; the probe's namespaces and links die with it.
        if !self.signal(libc::SIGTERM) {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if *self.reaped.lock().unwrap_or_else(|e| e.into_inner()) || self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal(libc::SIGKILL);
    }

    fn wait(&self) -> Result<ProbeExit, TargetError> {
        let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Err(TargetError::Infrastructure(
                "the lab probe was waited for twice".into(),
            ));
        };
        // Wait for the exit without reaping, so `stop` never signals a recycled pid.
        // SAFETY: waitid on our own child; WNOWAIT leaves it waitable.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        while unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        } != 0
            && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {}
        let status = {
            let mut reaped = self.reaped.lock().unwrap_or_else(|e| e.into_inner());
            *reaped = true;
            child.wait()
        }
        .map_err(|e| TargetError::Infrastructure(format!("wait for probe: {e}")))?;
        let stderr_tail = self
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        Ok(ProbeExit {
            code: status.code(),
            stderr_tail,
            privilege: self.privilege.to_string(),
            told: Default::default(),
        })
    }
}
