//! Progress while the probe runs: an indicatif bar on a terminal, one plain
//! line per check otherwise (CI logs keep every line; a bar would be noise).
//! Feed it [`StreamEvent`]s from [`crate::stream::read_stream`]; it writes to
//! stderr so stdout stays free for the final table.

use crate::stream::StreamEvent;
use crate::verdict::outcome_word;
use conformance_contract::Observation;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub struct Progress {
    bar: Option<ProgressBar>,
    seen: usize,
    total: usize,
}

impl Progress {
    /// A bar if stderr is a terminal, plain lines otherwise.
    pub fn new() -> Progress {
        Progress::with_bar(std::io::stderr().is_terminal())
    }

    pub fn with_bar(bar: bool) -> Progress {
        let bar = bar.then(|| {
            let b = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {wide_msg}") {
                b.set_style(style);
            }
            b
        });
        Progress {
            bar,
            seen: 0,
            total: 0,
        }
    }

    pub fn on_event(&mut self, event: StreamEvent<'_>) {
        match event {
            StreamEvent::Facts(f) => self.say(format!(
                "probe facts: kernel {} ({})",
                f.kernel_release, f.arch
            )),
            StreamEvent::Plan(checks) => {
                self.total = checks.len();
                if let Some(b) = &self.bar {
                    b.set_length(checks.len() as u64);
                }
            }
            StreamEvent::Observation(o) => {
                self.seen += 1;
                let line = progress_line(self.seen, self.total, o);
                match &self.bar {
                    Some(b) => {
                        b.inc(1);
                        b.set_message(line);
                    }
                    None => eprintln!("{line}"),
                }
            }
            StreamEvent::Done(_) => self.finish(),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    fn say(&self, line: String) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// `[3/11] datapath.redirect-peer[tcx]: fail (41 ms): 0/5 datagrams ...`
pub fn progress_line(n: usize, total: usize, o: &Observation) -> String {
    let outcome = outcome_word(o.outcome);
    let name = if o.variant == "default" {
        o.check.clone()
    } else {
        format!("{}[{}]", o.check, o.variant)
    };
    let of = if total > 0 {
        format!("{n}/{total}")
    } else {
        n.to_string()
    };
    format!(
        "[{of}] {name}: {outcome} ({:.0} ms): {}",
        o.duration_ms, o.reason
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use conformance_contract::Outcome;

    #[test]
    fn plain_line_names_check_outcome_and_reason() {
        let o = Observation {
            check: "datapath.redirect-peer".into(),
            variant: "tcx".into(),
            outcome: Outcome::Fail,
            reason: "0/5 datagrams".into(),
            evidence: Default::default(),
            failure: None,
            missing_facts: Vec::new(),
            control: None,
            duration_ms: 41.2,
        };
        assert_eq!(
            progress_line(3, 11, &o),
            "[3/11] datapath.redirect-peer[tcx]: fail (41 ms): 0/5 datagrams"
        );
        assert_eq!(
            progress_line(3, 0, &o),
            "[3] datapath.redirect-peer[tcx]: fail (41 ms): 0/5 datagrams"
        );
    }
}
