//! The `lab` target: the probe runs on this host and builds its own network
//! namespaces. Only the probe needs privileges; when the suite is not root it starts
//! the probe through `sudo -n` if that works without a password, else it says which
//! privilege is missing.

use super::{ProbeArgs, ProbeBinary, ProbeExit, RunControl, Target, TargetError, TargetKind};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Lab {
    pub probe: ProbeBinary,
}

/// How to start a privileged process from here.
fn launcher() -> Result<(Vec<String>, &'static str), TargetError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok((Vec::new(), "direct (root)"));
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
        return Ok((vec!["sudo".into(), "-n".into(), "--".into()], "sudo"));
    }
    Err(TargetError::Usage(
        "the lab target needs root for the probe (CAP_SYS_ADMIN to create namespaces and load eBPF, CAP_NET_ADMIN for veths and tc); run as root, or allow passwordless `sudo` for the probe".into(),
    ))
}

fn stop(child: &mut Child) {
    // SIGTERM first: sudo relays it; the probe's namespaces and links die with it.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Target for Lab {
    fn kind(&self) -> TargetKind {
        TargetKind::Lab
    }

    fn run_probe(
        &self,
        args: &ProbeArgs,
        control: &RunControl,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<ProbeExit, TargetError> {
        if !self.probe.path.exists() {
            return Err(TargetError::Infrastructure(format!(
                "probe binary {} does not exist",
                self.probe.path.display()
            )));
        }
        let (prefix, privilege) = launcher()?;
        let mut argv = prefix;
        argv.push(self.probe.path.display().to_string());
        argv.extend(args.to_argv());
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| TargetError::Infrastructure(format!("start {}: {e}", argv.join(" "))))?;

        // Lines arrive on a channel so this thread can watch the clock and Ctrl-C.
        let (tx, rx) = mpsc::channel::<Option<String>>();
        let stdout = child.stdout.take().expect("piped");
        let out_tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if out_tx.send(Some(l)).is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = out_tx.send(None);
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

        let deadline = Instant::now() + control.timeout;
        loop {
            if control.interrupted.load(Ordering::SeqCst) {
                stop(&mut child);
                return Err(TargetError::Interrupted);
            }
            if Instant::now() >= deadline {
                stop(&mut child);
                return Err(TargetError::Timeout(control.timeout));
            }
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Some(line)) => on_line(&line),
                Ok(None) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let status = child
            .wait()
            .map_err(|e| TargetError::Infrastructure(format!("wait for probe: {e}")))?;
        if control.interrupted.load(Ordering::SeqCst) {
            return Err(TargetError::Interrupted);
        }
        let stderr_tail = stderr_thread.join().unwrap_or_default();
        Ok(ProbeExit {
            code: status.code(),
            stderr_tail,
            privilege: privilege.to_string(),
        })
    }
}
