//! Progress while the probes run: an indicatif bar per instance on a terminal,
//! one plain line per check otherwise (CI logs keep every line; a bar would be
//! noise). Feed it each instance's [`StreamEvent`]s as the runner sees them; it
//! writes to stderr so stdout stays free for the final table. With several
//! instances every line names its instance.

use crate::stream::StreamEvent;
use crate::verdict::outcome_word;
use conformance_contract::Observation;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub struct Progress {
    bars: Option<(MultiProgress, Vec<ProgressBar>)>,
    /// One per instance: its label (empty with a single instance), seen and planned.
    instances: Vec<(String, usize, usize)>,
}

impl Progress {
    /// A bar per instance if stderr is a terminal, plain lines otherwise.
    pub fn new(labels: &[String]) -> Progress {
        Progress::with_bar(labels, std::io::stderr().is_terminal())
    }

    pub fn with_bar(labels: &[String], bar: bool) -> Progress {
        let prefix = |l: &String| {
            if labels.len() > 1 {
                l.clone()
            } else {
                String::new()
            }
        };
        let bars = bar.then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let bars = labels
                .iter()
                .map(|l| {
                    let b = multi.add(ProgressBar::new(0));
                    let template = if labels.len() > 1 {
                        "{prefix:20} {bar:30} {pos}/{len} {wide_msg}"
                    } else {
                        "{bar:30} {pos}/{len} {wide_msg}"
                    };
                    if let Ok(style) = ProgressStyle::with_template(template) {
                        b.set_style(style);
                    }
                    b.set_prefix(prefix(l));
                    b
                })
                .collect();
            (multi, bars)
        });
        Progress {
            bars,
            instances: labels.iter().map(|l| (prefix(l), 0, 0)).collect(),
        }
    }

    pub fn on_event(&mut self, instance: usize, event: StreamEvent<'_>) {
        let Some((label, seen, total)) = self.instances.get_mut(instance) else {
            return;
        };
        let bar = self.bars.as_ref().and_then(|(_, b)| b.get(instance));
        let named = |line: String| {
            if label.is_empty() {
                line
            } else {
                format!("{label}: {line}")
            }
        };
        match event {
            StreamEvent::Facts(f) => {
                let line = named(format!(
                    "probe facts: kernel {} ({})",
                    f.kernel_release, f.arch
                ));
                match bar {
                    Some(b) => b.println(line),
                    None => eprintln!("{line}"),
                }
            }
            StreamEvent::Plan(checks) => {
                *total = checks.len();
                if let Some(b) = bar {
                    b.set_length(checks.len() as u64);
                }
            }
            StreamEvent::Observation(o) => {
                *seen += 1;
                let line = progress_line(*seen, *total, o);
                match bar {
                    Some(b) => {
                        b.inc(1);
                        b.set_message(line);
                    }
                    None => eprintln!("{}", named(line)),
                }
            }
            StreamEvent::Done(_) => {
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Some((multi, bars)) = &self.bars {
            for b in bars {
                b.finish_and_clear();
            }
            let _ = multi.clear();
        }
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
