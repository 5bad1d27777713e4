//! The runner against an in-process fake target: no root, no processes. Fake
//! instances push scripted lines from their own threads, like an async target.

use super::*;
use crate::stream::StreamProblem;
use crate::stream::tests::{done_line, facts_line, obs_line, plan_line};
use crate::target::{StartedInstance, TargetKind};
use std::sync::atomic::AtomicBool;
use std::sync::{Condvar, Mutex};

const A: &str = "datapath.host-to-pod";
const B: &str = "datapath.pod-to-host";

/// What one fake instance does.
#[derive(Clone, Default)]
struct Script {
    lines: Vec<String>,
    /// Keep the stream open after the lines until stopped.
    hang: bool,
    preamble: Preamble,
    /// `start` fails with this.
    refuse: Option<String>,
}

/// Turns shared by the instances of one test and its event callback (which
/// passes the turn once it saw a line), so lines interleave in a known order.
#[derive(Default)]
struct Turns {
    next: Mutex<usize>,
    moved: Condvar,
}

impl Turns {
    fn wait_for(&self, turn: usize) {
        let mut next = self.next.lock().unwrap();
        while *next != turn {
            next = self.moved.wait(next).unwrap();
        }
    }
    fn pass(&self) {
        *self.next.lock().unwrap() += 1;
        self.moved.notify_all();
    }
}

struct Fake {
    scripts: Vec<(InstanceId, Script)>,
    /// With turns, instance `j` of `n` sends its line `k` at turn `k * n + j`
    /// (every line here is one stream event).
    turns: Option<Arc<Turns>>,
    stopped: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn new(scripts: Vec<(&str, Script)>) -> Fake {
        Fake {
            scripts: scripts
                .into_iter()
                .map(|(name, s)| (InstanceId::new(TargetKind::Lab, name, "x86_64"), s))
                .collect(),
            turns: None,
            stopped: Arc::default(),
        }
    }
    fn stopped(&self) -> Vec<String> {
        let mut s = self.stopped.lock().unwrap().clone();
        s.sort();
        s
    }
    fn planned(&self) -> Vec<Planned<'_>> {
        self.scripts
            .iter()
            .map(|(id, _)| Planned {
                target: self,
                instance: id.clone(),
                probe: ProbeBinary {
                    path: "/nonexistent/probe".into(),
                    image: None,
                },
            })
            .collect()
    }
}

struct FakeHandle {
    name: String,
    /// Dropping the sender this holds ends a hanging stream.
    release: Mutex<Option<mpsc::Sender<()>>>,
    stopped: Arc<Mutex<Vec<String>>>,
    was_stopped: AtomicBool,
}

impl InstanceHandle for FakeHandle {
    fn stop(&self) {
        if !self.was_stopped.swap(true, Ordering::SeqCst) {
            self.stopped.lock().unwrap().push(self.name.clone());
        }
        self.release.lock().unwrap().take();
    }
    fn wait(&self) -> Result<ProbeExit, TargetError> {
        let killed = self.was_stopped.load(Ordering::SeqCst);
        Ok(ProbeExit {
            code: if killed { None } else { Some(0) },
            stderr_tail: Vec::new(),
            privilege: "fake".into(),
            told: Default::default(),
        })
    }
}

impl Target for Fake {
    fn kind(&self) -> TargetKind {
        TargetKind::Lab
    }
    fn preflight(&self) -> Result<Vec<InstanceId>, TargetError> {
        Ok(self.scripts.iter().map(|(id, _)| id.clone()).collect())
    }
    fn start(
        &self,
        instance: &InstanceId,
        _probe: &ProbeBinary,
        _args: &ProbeArgs,
        _control: &RunControl,
    ) -> Result<StartedInstance, TargetError> {
        let j = self
            .scripts
            .iter()
            .position(|(id, _)| id == instance)
            .unwrap();
        let script = self.scripts[j].1.clone();
        if let Some(why) = script.refuse {
            return Err(TargetError::Infrastructure(why));
        }
        let (tx, rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let turns = self.turns.clone();
        let n = self.scripts.len();
        std::thread::spawn(move || {
            for (k, line) in script.lines.into_iter().enumerate() {
                if let Some(t) = &turns {
                    t.wait_for(k * n + j);
                }
                let _ = tx.send(line);
            }
            if script.hang {
                let _ = release_rx.recv();
            }
        });
        Ok(StartedInstance {
            lines: rx,
            handle: Box::new(FakeHandle {
                name: instance.name.clone(),
                release: Mutex::new(Some(release_tx)),
                stopped: self.stopped.clone(),
                was_stopped: AtomicBool::new(false),
            }),
            preamble: script.preamble,
        })
    }
}

fn control(timeout: Duration) -> RunControl {
    RunControl {
        timeout,
        interrupted: Arc::new(AtomicBool::new(false)),
        verbose: false,
    }
}

fn whole(checks: &[&str]) -> Vec<String> {
    let mut lines = vec![facts_line(), plan_line(checks)];
    lines.extend(checks.iter().map(|c| obs_line(c)));
    lines.push(done_line(checks.len()));
    lines
}

fn script(lines: Vec<String>) -> Script {
    Script {
        lines,
        ..Script::default()
    }
}

#[test]
fn two_instances_interleave_and_each_stream_is_its_own() {
    let mut fake = Fake::new(vec![
        ("one", script(whole(&[A, B]))),
        ("two", script(whole(&[B, A]))),
    ]);
    let turns: Arc<Turns> = Arc::default();
    fake.turns = Some(turns.clone());
    let mut seen = Vec::new();
    let finished = run(
        &fake.planned(),
        &ProbeArgs::default(),
        &control(Duration::from_secs(600)),
        &mut |i, e| {
            seen.push(match e {
                StreamEvent::Facts(_) => format!("{i} facts"),
                StreamEvent::Plan(_) => format!("{i} plan"),
                StreamEvent::Observation(o) => format!("{i} {}", o.check),
                StreamEvent::Done(_) => format!("{i} done"),
            });
            turns.pass();
        },
    )
    .unwrap();
    assert_eq!(
        seen,
        [
            "0 facts",
            "1 facts",
            "0 plan",
            "1 plan",
            &format!("0 {A}"),
            &format!("1 {B}"),
            &format!("0 {B}"),
            &format!("1 {A}"),
            "0 done",
            "1 done"
        ]
    );
    assert_eq!(finished.len(), 2);
    for (f, first) in finished.iter().zip([A, B]) {
        let s = f.stream.as_ref().unwrap();
        assert!(s.is_complete(), "{}: {:?}", f.instance, s.problems);
        assert_eq!(s.observations[0].check, first);
        assert_eq!(f.exit.code, Some(0));
    }
    assert_eq!(finished[1].instance.name, "two");
    assert!(
        fake.stopped().is_empty(),
        "nothing to stop: {:?}",
        fake.stopped()
    );
}

#[test]
fn a_truncated_stream_is_detected_per_instance() {
    let mut cut = whole(&[A, B]);
    cut.truncate(3); // facts, plan, one observation
    let fake = Fake::new(vec![("whole", script(whole(&[A]))), ("cut", script(cut))]);
    let finished = run(
        &fake.planned(),
        &ProbeArgs::default(),
        &control(Duration::from_secs(600)),
        &mut |_, _| {},
    )
    .unwrap();
    assert!(finished[0].stream.as_ref().unwrap().is_complete());
    assert_eq!(
        finished[1].stream.as_ref().unwrap().problems,
        vec![
            StreamProblem::NoDone { observations: 1 },
            StreamProblem::Missing {
                planned: 2,
                seen: 1
            }
        ]
    );
}

#[test]
fn a_timeout_stops_only_the_late_instance_and_names_it() {
    let fake = Fake::new(vec![
        ("quick", script(whole(&[A]))),
        (
            "late",
            Script {
                lines: vec![facts_line()],
                hang: true,
                ..Script::default()
            },
        ),
    ]);
    let e = run(
        &fake.planned(),
        &ProbeArgs::default(),
        &control(Duration::from_secs(2)),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(
        matches!(&e, RunnerError::Timeout { late, .. } if late.len() == 1 && late[0].name == "late"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "probe timed out after 2s and was stopped on lab/late"
    );
    assert_eq!(fake.stopped(), ["late"]);
}

#[test]
fn an_interrupt_stops_every_instance() {
    let hang = Script {
        lines: vec![facts_line()],
        hang: true,
        ..Script::default()
    };
    let fake = Fake::new(vec![("one", hang.clone()), ("two", hang)]);
    let control = control(Duration::from_secs(600));
    let flag = control.interrupted.clone();
    let mut facts = 0;
    // Ctrl-C once both probes are running (have said their facts).
    let e = run(
        &fake.planned(),
        &ProbeArgs::default(),
        &control,
        &mut |_, e| {
            if matches!(e, StreamEvent::Facts(_)) {
                facts += 1;
                if facts == 2 {
                    flag.store(true, Ordering::SeqCst);
                }
            }
        },
    )
    .unwrap_err();
    assert!(matches!(e, RunnerError::Interrupted), "{e:?}");
    assert_eq!(fake.stopped(), ["one", "two"]);
}

#[test]
fn a_preamble_is_skipped_where_the_target_says_so() {
    let mut lines = vec!["Booting Linux".to_string(), "container log line".into()];
    lines.extend(whole(&[A]));
    let fake = Fake::new(vec![
        (
            "console",
            Script {
                lines: lines.clone(),
                preamble: Preamble::SkipToFacts,
                ..Script::default()
            },
        ),
        ("pipe", script(lines)),
    ]);
    let finished = run(
        &fake.planned(),
        &ProbeArgs::default(),
        &control(Duration::from_secs(600)),
        &mut |_, _| {},
    )
    .unwrap();
    let console = finished[0].stream.as_ref().unwrap();
    assert!(console.is_complete(), "{:?}", console.problems);
    assert_eq!(console.preamble, ["Booting Linux", "container log line"]);
    assert!(
        matches!(
            &finished[1].stream,
            Err(StreamError::NoFacts { line: 1, .. })
        ),
        "a pipe's first line must be the facts line"
    );
}

#[test]
fn an_instance_that_cannot_start_stops_the_others() {
    let fake = Fake::new(vec![
        (
            "up",
            Script {
                lines: vec![facts_line()],
                hang: true,
                ..Script::default()
            },
        ),
        (
            "down",
            Script {
                refuse: Some("Docker is not reachable".into()),
                ..Script::default()
            },
        ),
    ]);
    let e = run(
        &fake.planned(),
        &ProbeArgs::default(),
        &control(Duration::from_secs(600)),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "lab/down (x86_64): Docker is not reachable");
    assert_eq!(e.exit_code(), 3);
    assert_eq!(fake.stopped(), ["up"]);
}
