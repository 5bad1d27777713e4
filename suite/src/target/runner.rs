//! The one place that owns a run's probe lifecycle, for every kind of target:
//! starting each instance, the timeout, Ctrl-C ([`RunControl::interrupted`]) and
//! stopping every instance. Targets only say how to start and stop a probe and
//! where its lines come from (see [`super`]).
//!
//! Each instance gets a forwarding thread that moves its lines, then how it
//! exited, into one channel; this thread reads that channel, feeds each
//! instance's [`StreamReader`] (so progress moves per instance and a truncated
//! stream is still detected), and watches the clock and the interrupt flag. An
//! interrupt stops every instance; a timeout stops the ones still running and
//! names them; one instance's target error stops the others.

use super::{
    InstanceHandle, InstanceId, Preamble, ProbeArgs, ProbeBinary, ProbeExit, RunControl, Target,
    TargetError,
};
use crate::error::{EXIT_INFRA, EXIT_USAGE};
use crate::stream::{ProbeStream, StreamError, StreamEvent, StreamReader};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long stopped instances get to say they ended before the runner gives up on them.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// How often the clock and the interrupt flag are looked at while lines are quiet.
const TICK: Duration = Duration::from_millis(50);

/// One instance to run: its target, its identity and the probe built for it.
pub struct Planned<'a> {
    pub target: &'a dyn Target,
    pub instance: InstanceId,
    pub probe: ProbeBinary,
}

/// An instance whose probe ran to its end.
#[derive(Debug)]
pub struct Finished {
    pub instance: InstanceId,
    /// The stream as read; `Err` when it cannot be judged at all (no facts line).
    pub stream: Result<ProbeStream, StreamError>,
    pub exit: ProbeExit,
    /// From the start of the run's probes to this one's exit.
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The user interrupted the run; every instance was stopped.
    #[error("interrupted")]
    Interrupted,
    /// Some instances ran past the timeout and were stopped.
    #[error("probe timed out after {after:?} and was stopped on {}", labels(.late))]
    Timeout {
        after: Duration,
        late: Vec<InstanceId>,
    },
    /// A target could not start or wait for its probe; the other instances were stopped.
    #[error("{instance}: {source}")]
    Target {
        instance: InstanceId,
        #[source]
        source: TargetError,
    },
}

impl RunnerError {
    /// 2 for a target's usage error, 3 otherwise (the caller maps an interrupt to 130).
    pub fn exit_code(&self) -> u8 {
        match self {
            RunnerError::Target {
                source: TargetError::Usage(_),
                ..
            } => EXIT_USAGE,
            _ => EXIT_INFRA,
        }
    }
}

fn labels(ids: &[InstanceId]) -> String {
    ids.iter()
        .map(InstanceId::label)
        .collect::<Vec<_>>()
        .join(", ")
}

enum Msg {
    Line(usize, String),
    Ended(usize, Result<ProbeExit, TargetError>),
}

/// Runs every planned instance at once until each stream ends; `on_event(i, e)`
/// sees instance `i`'s stream events as they arrive, on the calling thread.
pub fn run(
    planned: &[Planned<'_>],
    args: &ProbeArgs,
    control: &RunControl,
    on_event: &mut dyn FnMut(usize, StreamEvent<'_>),
) -> Result<Vec<Finished>, RunnerError> {
    let begun = Instant::now();
    let started = start_all(planned, args, control)?;
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut handles: Vec<Arc<dyn InstanceHandle>> = Vec::new();
    let mut readers: Vec<StreamReader> = Vec::new();
    for (i, s) in started.into_iter().enumerate() {
        let handle: Arc<dyn InstanceHandle> = Arc::from(s.handle);
        readers.push(match s.preamble {
            Preamble::None => StreamReader::new(),
            Preamble::SkipToFacts => StreamReader::skipping_preamble(),
        });
        let (tx, lines, h) = (tx.clone(), s.lines, handle.clone());
        std::thread::spawn(move || {
            for line in lines {
                let _ = tx.send(Msg::Line(i, line));
            }
            let _ = tx.send(Msg::Ended(i, h.wait()));
        });
        handles.push(handle);
    }
    drop(tx);

    let mut exits: Vec<Option<ProbeExit>> = vec![None; handles.len()];
    let mut durations = vec![Duration::ZERO; handles.len()];
    let deadline = Instant::now() + control.timeout;
    let interrupted = || control.interrupted.load(Ordering::SeqCst);
    while exits.iter().any(Option::is_none) {
        if interrupted() {
            stop(&handles, &exits, &rx);
            return Err(RunnerError::Interrupted);
        }
        if Instant::now() >= deadline {
            let late = running(&exits)
                .map(|i| planned[i].instance.clone())
                .collect();
            stop(&handles, &exits, &rx);
            return Err(RunnerError::Timeout {
                after: control.timeout,
                late,
            });
        }
        match rx.recv_timeout(TICK) {
            Ok(Msg::Line(i, line)) => readers[i].feed(&line, |e| on_event(i, e)),
            Ok(Msg::Ended(i, Ok(exit))) => {
                exits[i] = Some(exit);
                durations[i] = begun.elapsed();
            }
            Ok(Msg::Ended(i, Err(source))) => {
                exits[i] = Some(ProbeExit {
                    code: None,
                    stderr_tail: Vec::new(),
                    privilege: String::new(),
                    told: Default::default(),
                });
                stop(&handles, &exits, &rx);
                return Err(RunnerError::Target {
                    instance: planned[i].instance.clone(),
                    source,
                });
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if interrupted() {
        return Err(RunnerError::Interrupted);
    }
    Ok(planned
        .iter()
        .zip(readers)
        .zip(exits)
        .zip(durations)
        .map(|(((p, reader), exit), duration)| {
            let exit = exit.unwrap_or(ProbeExit {
                code: None,
                stderr_tail: Vec::new(),
                privilege: String::new(),
                told: Default::default(),
            });
            let mut stream = reader.finish();
            // What the target knows and the probe cannot see (a cluster's versions).
            if let Ok(stream) = &mut stream {
                exit.told.apply_to(&mut stream.facts);
            }
            Finished {
                instance: p.instance.clone(),
                stream,
                exit,
                duration,
            }
        })
        .collect())
}

/// Starts every instance concurrently; if one cannot start, stops the others.
fn start_all(
    planned: &[Planned<'_>],
    args: &ProbeArgs,
    control: &RunControl,
) -> Result<Vec<super::StartedInstance>, RunnerError> {
    let results: Vec<Result<super::StartedInstance, TargetError>> = std::thread::scope(|scope| {
        let threads: Vec<_> = planned
            .iter()
            .map(|p| scope.spawn(move || p.target.start(&p.instance, &p.probe, args, control)))
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join().unwrap_or_else(|_| {
                    Err(TargetError::Infrastructure("the target panicked".into()))
                })
            })
            .collect()
    });
    let failed = results.iter().position(Result::is_err);
    let interrupted = control.interrupted.load(Ordering::SeqCst);
    if failed.is_none() && !interrupted {
        return Ok(results.into_iter().map(|r| r.expect("no error")).collect());
    }
    let mut error = None;
    std::thread::scope(|scope| {
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(s) => {
                    scope.spawn(move || s.handle.stop());
                }
                Err(source) if Some(i) == failed => {
                    error = Some(RunnerError::Target {
                        instance: planned[i].instance.clone(),
                        source,
                    })
                }
                Err(_) => {}
            }
        }
    });
    Err(error.unwrap_or(RunnerError::Interrupted))
}

fn running(exits: &[Option<ProbeExit>]) -> impl Iterator<Item = usize> + '_ {
    exits
        .iter()
        .enumerate()
        .filter(|(_, e)| e.is_none())
        .map(|(i, _)| i)
}

/// Stops every instance still running, at once, and waits (a bounded time) until
/// each says it ended, so nothing it made outlives the run.
fn stop(
    handles: &[Arc<dyn InstanceHandle>],
    exits: &[Option<ProbeExit>],
    rx: &mpsc::Receiver<Msg>,
) {
    let mut open: Vec<usize> = running(exits).collect();
    std::thread::scope(|scope| {
        for &i in &open {
            let h = &handles[i];
            scope.spawn(move || h.stop());
        }
    });
    let deadline = Instant::now() + STOP_GRACE;
    while !open.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(TICK)) {
            Ok(Msg::Ended(i, _)) => open.retain(|&o| o != i),
            Ok(Msg::Line(..)) | Err(RecvTimeoutError::Timeout) if !left.is_zero() => {}
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests;
