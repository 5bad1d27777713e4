//! Reading the probe's JSON lines (`facts`, `plan`, `observation`..., `done`).
//!
//! Only a stream without a usable facts line is fatal ([`StreamError`]):
//! without facts no expectation can be evaluated. Everything after it is kept
//! even when the stream is damaged (no `done`, a garbled line, fewer
//! observations than planned): those are recorded as [`StreamProblem`]s and the
//! missing checks become `error` verdicts, so a probe that crashed halfway still
//! yields a report that shows what did run.

use conformance_contract::{Done, Facts, Line, Observation, PlannedCheck, SCHEMA};
use serde::{Deserialize, Serialize};
use std::io::BufRead;

/// Everything a probe said, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeStream {
    pub probe_version: String,
    pub run_id: String,
    pub facts: Facts,
    /// Transport output skipped before the facts line (the last
    /// [`PREAMBLE_KEPT`] lines), where the target said to skip it.
    pub preamble: Vec<String>,
    /// `None` when the stream ended (or broke) before the plan line.
    pub plan: Option<Vec<PlannedCheck>>,
    pub observations: Vec<Observation>,
    pub done: Option<Done>,
    pub problems: Vec<StreamProblem>,
}

impl ProbeStream {
    /// The planned checks, empty without a plan line.
    pub fn planned(&self) -> &[PlannedCheck] {
        self.plan.as_deref().unwrap_or(&[])
    }

    /// `true` when the stream was whole and well-ordered.
    pub fn is_complete(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What the reader saw, as it saw it: drive a progress display from this.
#[derive(Debug, Clone, Copy)]
pub enum StreamEvent<'a> {
    Facts(&'a Facts),
    Plan(&'a [PlannedCheck]),
    Observation(&'a Observation),
    Done(&'a Done),
}

/// A stream that cannot be judged at all.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("probe stream is empty: the probe printed nothing on stdout")]
    Empty,
    #[error("probe stream line {line}: expected the facts line first, got {got}")]
    NoFacts { line: usize, got: String },
    #[error(
        "probe stream line {line}: facts line has schema {found}, this suite reads schema {expected} (probe and suite versions differ)"
    )]
    Schema {
        line: usize,
        found: u64,
        expected: u32,
    },
    #[error("probe stream line {line}: malformed facts line: {message}")]
    BadFacts { line: usize, message: String },
    #[error(
        "probe stream: no facts line after {skipped} line(s) of transport output (did the probe start?)"
    )]
    NoFactsAfterPreamble { skipped: usize },
    #[error("reading the probe stream: {0}")]
    Read(#[source] std::io::Error),
}

/// Damage after the facts line; the report lists these and the run exits 3
/// unless a regression was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum StreamProblem {
    #[error("line {line}: not a probe line ({message}); skipped")]
    Malformed { line: usize, message: String },
    #[error("line {line}: {kind} line out of order ({why})")]
    OutOfOrder {
        line: usize,
        kind: String,
        why: String,
    },
    #[error("no plan line: the probe stopped before announcing its checks")]
    NoPlan,
    #[error(
        "no done line: the stream ended after {observations} observation(s), so the probe was cut short"
    )]
    NoDone { observations: usize },
    #[error("{seen} of {planned} planned observation(s) arrived")]
    Missing { planned: usize, seen: usize },
    #[error("done line counts {said} observation(s), the stream had {seen}")]
    CountMismatch { said: usize, seen: usize },
    #[error("reading stopped after line {line}: {message}")]
    Read { line: usize, message: String },
}

/// How many skipped preamble lines a [`ProbeStream`] keeps (the last ones).
pub const PREAMBLE_KEPT: usize = 20;

/// Reads a probe stream a line at a time, as an instance's lines arrive, so
/// progress shows per instance and a truncated stream is still detected when it
/// ends ([`StreamReader::finish`]).
#[derive(Debug)]
pub struct StreamReader {
    skip_preamble: bool,
    /// Lines fed so far (1-based numbers in problems count every line).
    line_no: usize,
    /// Skipped transport lines before the facts line (the last [`PREAMBLE_KEPT`]).
    preamble: Vec<String>,
    skipped: usize,
    stream: Option<ProbeStream>,
    /// A fatal problem before or at the facts line; later lines are ignored.
    fatal: Option<StreamError>,
}

impl StreamReader {
    /// A reader whose first non-blank line must be the facts line.
    pub fn new() -> StreamReader {
        StreamReader {
            skip_preamble: false,
            line_no: 0,
            preamble: Vec::new(),
            skipped: 0,
            stream: None,
            fatal: None,
        }
    }

    /// A reader that skips transport output (serial console, container logs)
    /// until the first facts line, keeping it as a note.
    pub fn skipping_preamble() -> StreamReader {
        StreamReader {
            skip_preamble: true,
            ..StreamReader::new()
        }
    }

    /// Feeds one line (without its newline), calling `on_event` for what it completes.
    pub fn feed(&mut self, text: &str, mut on_event: impl FnMut(StreamEvent<'_>)) {
        self.line_no += 1;
        let no = self.line_no;
        if self.fatal.is_some() {
            return;
        }
        // Lines from a guest's serial port end in \r\n.
        let text = text.trim_end_matches('\r');
        let Some(stream) = self.stream.as_mut() else {
            if text.trim().is_empty() {
                return;
            }
            if self.skip_preamble && !looks_like_facts(text) {
                self.skipped += 1;
                if self.preamble.len() == PREAMBLE_KEPT {
                    self.preamble.remove(0);
                }
                self.preamble.push(text.to_string());
                return;
            }
            match parse_facts(no, text) {
                Ok((probe_version, run_id, facts)) => {
                    let stream = self.stream.insert(ProbeStream {
                        probe_version,
                        run_id,
                        facts,
                        preamble: std::mem::take(&mut self.preamble),
                        plan: None,
                        observations: Vec::new(),
                        done: None,
                        problems: Vec::new(),
                    });
                    on_event(StreamEvent::Facts(&stream.facts));
                }
                Err(e) => self.fatal = Some(e),
            }
            return;
        };
        if text.trim().is_empty() {
            return;
        }
        stream.feed(no, text, on_event);
    }

    /// Records that reading the transport failed; nothing after it is read.
    pub fn read_error(&mut self, error: std::io::Error) {
        if self.fatal.is_some() {
            return;
        }
        match self.stream.as_mut() {
            None => self.fatal = Some(StreamError::Read(error)),
            Some(stream) => {
                stream.problems.push(StreamProblem::Read {
                    line: self.line_no,
                    message: error.to_string(),
                });
                // What arrived before the error is still judged; nothing after it is read.
                self.fatal = Some(StreamError::Read(error));
            }
        }
    }

    /// Whether a facts line arrived (a stream the suite can judge).
    pub fn has_facts(&self) -> bool {
        self.stream.is_some()
    }

    /// The stream as it ended: damage after the facts line is in its problems.
    pub fn finish(self) -> Result<ProbeStream, StreamError> {
        let Some(mut stream) = self.stream else {
            return Err(match self.fatal {
                Some(e) => e,
                None if self.skipped > 0 => StreamError::NoFactsAfterPreamble {
                    skipped: self.skipped,
                },
                None => StreamError::Empty,
            });
        };
        stream.close();
        Ok(stream)
    }
}

impl Default for StreamReader {
    fn default() -> Self {
        StreamReader::new()
    }
}

/// A preamble ends at a JSON object whose kind is `facts`.
fn looks_like_facts(text: &str) -> bool {
    text.trim_start().starts_with('{')
        && serde_json::from_str::<serde_json::Value>(text)
            .is_ok_and(|v| v.get("kind").and_then(|k| k.as_str()) == Some("facts"))
}

impl ProbeStream {
    /// One line after the facts line.
    fn feed(&mut self, no: usize, text: &str, mut on_event: impl FnMut(StreamEvent<'_>)) {
        let line = match serde_json::from_str::<Line>(text) {
            Ok(l) => l,
            Err(e) => {
                self.problems.push(StreamProblem::Malformed {
                    line: no,
                    message: e.to_string(),
                });
                return;
            }
        };
        let out_of_order = |kind: &str, why: &str| StreamProblem::OutOfOrder {
            line: no,
            kind: kind.into(),
            why: why.into(),
        };
        match line {
            Line::Facts { .. } => self.problems.push(out_of_order(
                "facts",
                "a second facts line; the first is kept",
            )),
            Line::Plan(plan) => {
                if self.plan.is_some() {
                    self.problems.push(out_of_order(
                        "plan",
                        "a second plan line; the first is kept",
                    ));
                    return;
                }
                if !self.observations.is_empty() {
                    self.problems
                        .push(out_of_order("plan", "after observations"));
                }
                on_event(StreamEvent::Plan(&plan.checks));
                self.plan = Some(plan.checks);
            }
            Line::Observation(o) => {
                if self.done.is_some() {
                    self.problems
                        .push(out_of_order("observation", "after the done line"));
                } else if self.plan.is_none() && self.observations.is_empty() {
                    self.problems
                        .push(out_of_order("observation", "before the plan line"));
                }
                on_event(StreamEvent::Observation(&o));
                self.observations.push(o);
            }
            Line::Done(done) => {
                if self.done.is_some() {
                    self.problems.push(out_of_order(
                        "done",
                        "a second done line; the first is kept",
                    ));
                    return;
                }
                on_event(StreamEvent::Done(&done));
                self.done = Some(done);
            }
        }
    }

    /// The end of the stream: what is missing becomes a problem.
    fn close(&mut self) {
        let seen = self.observations.len();
        if self.plan.is_none() {
            self.problems.push(StreamProblem::NoPlan);
        }
        match &self.done {
            None => self
                .problems
                .push(StreamProblem::NoDone { observations: seen }),
            Some(d) if d.observations != seen => self.problems.push(StreamProblem::CountMismatch {
                said: d.observations,
                seen,
            }),
            Some(_) => {}
        }
        if let Some(plan) = &self.plan {
            let arrived = plan
                .iter()
                .filter(|p| {
                    self.observations
                        .iter()
                        .any(|o| o.check == p.check && o.variant == p.variant)
                })
                .count();
            if arrived < plan.len() {
                self.problems.push(StreamProblem::Missing {
                    planned: plan.len(),
                    seen: arrived,
                });
            }
        }
    }
}

/// Reads a whole probe stream, calling `on_event` for each line as it arrives
/// (so a progress bar moves while the probe runs); [`StreamReader`] line by line.
pub fn read_stream<R: BufRead>(
    reader: R,
    mut on_event: impl FnMut(StreamEvent<'_>),
) -> Result<ProbeStream, StreamError> {
    let mut r = StreamReader::new();
    for line in reader.lines() {
        match line {
            Ok(text) => r.feed(&text, &mut on_event),
            Err(e) => {
                r.read_error(e);
                break;
            }
        }
    }
    r.finish()
}

fn parse_facts(no: usize, text: &str) -> Result<(String, String, Facts), StreamError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| StreamError::NoFacts {
            line: no,
            got: format!("a non-JSON line ({e})"),
        })?;
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("(no kind)");
    if kind != "facts" {
        return Err(StreamError::NoFacts {
            line: no,
            got: format!("a {kind} line"),
        });
    }
    // Check the schema before the shape: a newer probe's facts may not parse as ours.
    match value.get("schema").and_then(|s| s.as_u64()) {
        Some(s) if s == u64::from(SCHEMA) => {}
        found => {
            return Err(StreamError::Schema {
                line: no,
                found: found.unwrap_or(0),
                expected: SCHEMA,
            });
        }
    }
    match serde_json::from_value::<Line>(value) {
        Ok(Line::Facts {
            probe_version,
            run_id,
            facts,
            ..
        }) => Ok((probe_version, run_id, facts)),
        Ok(_) => unreachable!("kind was checked to be facts"),
        Err(e) => Err(StreamError::BadFacts {
            line: no,
            message: e.to_string(),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use conformance_contract::{Control, ControlOutcome, Outcome, Plan};
    use serde_json::Map;

    pub(crate) fn facts_line() -> String {
        Line::Facts {
            schema: SCHEMA,
            probe_version: "0.1.0".into(),
            run_id: "r1".into(),
            facts: Facts::example(),
        }
        .to_json()
    }

    pub(crate) fn plan_line(checks: &[&str]) -> String {
        Line::Plan(Plan {
            checks: checks
                .iter()
                .map(|c| PlannedCheck {
                    check: c.to_string(),
                    variant: "default".into(),
                })
                .collect(),
        })
        .to_json()
    }

    pub(crate) fn obs_line(check: &str) -> String {
        Line::Observation(Observation {
            check: check.into(),
            variant: "default".into(),
            outcome: Outcome::Pass,
            reason: "5/5".into(),
            evidence: Map::new(),
            failure: None,
            missing_facts: Vec::new(),
            control: Some(Control {
                description: "d".into(),
                outcome: ControlOutcome::Blocked,
                reason: "0/5".into(),
                evidence: Map::new(),
            }),
            duration_ms: 1.0,
        })
        .to_json()
    }

    pub(crate) fn done_line(n: usize) -> String {
        Line::Done(Done {
            observations: n,
            duration_ms: 10.0,
        })
        .to_json()
    }

    fn read(lines: &[String]) -> Result<ProbeStream, StreamError> {
        read_stream(lines.join("\n").as_bytes(), |_| {})
    }

    const A: &str = "datapath.host-to-pod";
    const B: &str = "datapath.pod-to-host";

    #[test]
    fn whole_stream_with_events() {
        let text = [
            facts_line(),
            plan_line(&[A, B]),
            obs_line(A),
            String::new(),
            obs_line(B),
            done_line(2),
        ]
        .join("\r\n");
        let mut events = Vec::new();
        let s = read_stream(text.as_bytes(), |e| {
            events.push(match e {
                StreamEvent::Facts(_) => "facts".to_string(),
                StreamEvent::Plan(p) => format!("plan {}", p.len()),
                StreamEvent::Observation(o) => format!("obs {}", o.check),
                StreamEvent::Done(d) => format!("done {}", d.observations),
            })
        })
        .unwrap();
        assert_eq!(
            events,
            [
                "facts",
                "plan 2",
                &format!("obs {A}"),
                &format!("obs {B}"),
                "done 2"
            ]
        );
        assert!(s.is_complete(), "{:?}", s.problems);
        assert_eq!(
            (
                s.run_id.as_str(),
                s.probe_version.as_str(),
                s.planned().len(),
                s.observations.len()
            ),
            ("r1", "0.1.0", 2, 2)
        );
    }

    #[test]
    fn truncated_stream_still_reads() {
        let s = read(&[facts_line(), plan_line(&[A, B]), obs_line(A)]).unwrap();
        assert_eq!(s.observations.len(), 1);
        assert_eq!(
            s.problems,
            vec![
                StreamProblem::NoDone { observations: 1 },
                StreamProblem::Missing {
                    planned: 2,
                    seen: 1
                }
            ]
        );
        assert_eq!(
            s.problems[0].to_string(),
            "no done line: the stream ended after 1 observation(s), so the probe was cut short"
        );

        let s = read(&[facts_line()]).unwrap();
        assert_eq!(
            s.problems,
            vec![
                StreamProblem::NoPlan,
                StreamProblem::NoDone { observations: 0 }
            ]
        );
        assert!(s.planned().is_empty());
    }

    #[test]
    fn damaged_lines_are_problems_not_failures() {
        let s = read(&[
            facts_line(),
            plan_line(&[A]),
            "{\"kind\":\"observ".into(),
            obs_line(A),
            done_line(2),
            obs_line(B),
        ])
        .unwrap();
        assert_eq!(s.observations.len(), 2);
        assert!(
            matches!(&s.problems[0], StreamProblem::Malformed { line: 3, .. }),
            "{:?}",
            s.problems
        );
        assert_eq!(
            s.problems[1],
            StreamProblem::OutOfOrder {
                line: 6,
                kind: "observation".into(),
                why: "after the done line".into()
            }
        );
        assert_eq!(
            s.problems.len(),
            2,
            "done counts 2 and 2 arrived; the plan's one check arrived: {:?}",
            s.problems
        );

        let s = read(&[facts_line(), plan_line(&[A]), obs_line(A), done_line(3)]).unwrap();
        assert_eq!(
            s.problems,
            vec![StreamProblem::CountMismatch { said: 3, seen: 1 }]
        );
        let s = read(&[
            facts_line(),
            obs_line(A),
            plan_line(&[A]),
            plan_line(&[B]),
            facts_line(),
            done_line(1),
            done_line(1),
        ])
        .unwrap();
        let whys: Vec<String> = s.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            whys,
            [
                "line 2: observation line out of order (before the plan line)",
                "line 3: plan line out of order (after observations)",
                "line 4: plan line out of order (a second plan line; the first is kept)",
                "line 5: facts line out of order (a second facts line; the first is kept)",
                "line 7: done line out of order (a second done line; the first is kept)",
            ]
        );
        assert_eq!(s.planned()[0].check, A);
    }

    #[test]
    fn fatal_without_facts_or_with_another_schema() {
        assert!(matches!(read(&[]), Err(StreamError::Empty)));
        assert!(matches!(
            read(&["".into(), "  ".into()]),
            Err(StreamError::Empty)
        ));
        assert!(
            matches!(read(&[plan_line(&[A])]), Err(StreamError::NoFacts { line: 1, got }) if got == "a plan line")
        );
        assert!(matches!(
            read(&["probe: starting".into()]),
            Err(StreamError::NoFacts { line: 1, .. })
        ));
        let future = r#"{"kind":"facts","schema":2,"probe_version":"9","run_id":"r","facts":{"shape":"new"}}"#;
        let e = read(&[future.into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "probe stream line 1: facts line has schema 2, this suite reads schema 1 (probe and suite versions differ)"
        );
        let broken = r#"{"kind":"facts","schema":1,"probe_version":"9","run_id":"r","facts":{}}"#;
        assert!(matches!(
            read(&[broken.into()]),
            Err(StreamError::BadFacts { line: 1, .. })
        ));
    }

    #[test]
    fn incremental_reader_matches_whole_reads_and_detects_truncation() {
        let mut r = StreamReader::new();
        let mut events = 0;
        for l in [facts_line(), plan_line(&[A, B]), obs_line(A)] {
            r.feed(&l, |_| events += 1);
        }
        assert_eq!(events, 3);
        assert!(r.has_facts());
        let s = r.finish().unwrap();
        assert_eq!(
            s.problems,
            vec![
                StreamProblem::NoDone { observations: 1 },
                StreamProblem::Missing {
                    planned: 2,
                    seen: 1
                }
            ]
        );
        assert!(matches!(
            StreamReader::new().finish(),
            Err(StreamError::Empty)
        ));
    }

    #[test]
    fn preamble_is_skipped_only_where_the_target_says_so() {
        let lines = [
            "Booting Linux on physical CPU 0x0".to_string(),
            "{\"not\":\"facts\"}".to_string(),
            facts_line(),
            plan_line(&[A]),
            obs_line(A),
            done_line(1),
        ];
        let mut r = StreamReader::skipping_preamble();
        for l in &lines {
            r.feed(l, |_| {});
        }
        let s = r.finish().unwrap();
        assert!(s.is_complete(), "{:?}", s.problems);
        assert_eq!(s.preamble, lines[..2].to_vec());

        let mut r = StreamReader::new();
        for l in &lines {
            r.feed(l, |_| {});
        }
        assert!(matches!(
            r.finish(),
            Err(StreamError::NoFacts { line: 1, .. })
        ));

        let mut r = StreamReader::skipping_preamble();
        r.feed("console noise", |_| {});
        assert_eq!(
            r.finish().unwrap_err().to_string(),
            "probe stream: no facts line after 1 line(s) of transport output (did the probe start?)"
        );
    }
}
