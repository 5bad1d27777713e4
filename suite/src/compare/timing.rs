//! Timing judged against noise. One run is one sample: a check that took 41 ms
//! once and 63 ms once says nothing. A change is reported only when repeated
//! runs on each side say so:
//!
//! - at least [`MIN_SAMPLES`] samples on each side;
//! - the ranges are disjoint: every current sample slower (or faster) than
//!   every baseline sample;
//! - the medians differ by at least [`MIN_RATIO`] times and by at least
//!   [`MIN_DELTA_MS`] (a 1 ms check that takes 2 ms is scheduling, not a
//!   finding).
//!
//! Anything else is "no change judged", never a guess.

use serde::{Deserialize, Serialize};

pub const MIN_SAMPLES: usize = 3;
pub const MIN_RATIO: f64 = 1.5;
pub const MIN_DELTA_MS: f64 = 10.0;

/// The samples of one side for one row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub samples: usize,
    pub min_ms: f64,
    pub median_ms: f64,
    pub max_ms: f64,
}

impl Stats {
    /// `None` for no (finite) samples.
    pub fn of(samples: &[f64]) -> Option<Stats> {
        let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if s.is_empty() {
            return None;
        }
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if !n.is_multiple_of(2) {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Some(Stats {
            samples: n,
            min_ms: s[0],
            median_ms: median,
            max_ms: s[n - 1],
        })
    }

    /// `41 ms (38-45, 5 runs)`.
    pub fn text(&self) -> String {
        format!(
            "{} ({}-{}, {} runs)",
            ms(self.median_ms),
            ms_bare(self.min_ms),
            ms_bare(self.max_ms),
            self.samples
        )
    }
}

fn ms(x: f64) -> String {
    format!("{} ms", ms_bare(x))
}

fn ms_bare(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Slower,
    Faster,
}

/// A timing change the samples support.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimingChange {
    pub direction: Direction,
    pub baseline: Stats,
    pub current: Stats,
    /// Current median over baseline median.
    pub ratio: f64,
}

impl TimingChange {
    /// `slower: 41 ms (38-45, 5 runs) → 130 ms (120-140, 5 runs), ×3.2`.
    pub fn text(&self) -> String {
        let word = match self.direction {
            Direction::Slower => "slower",
            Direction::Faster => "faster",
        };
        format!(
            "{word}: {} → {}, ×{:.2}",
            self.baseline.text(),
            self.current.text(),
            self.ratio
        )
    }
}

/// What the samples of one row say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Judgement {
    /// Too few samples on a side to say anything.
    TooFew {
        baseline: usize,
        current: usize,
    },
    /// Enough samples, no change beyond noise.
    Steady,
    Changed(TimingChange),
}

pub fn judge(baseline: &[f64], current: &[f64]) -> Judgement {
    let (Some(b), Some(c)) = (Stats::of(baseline), Stats::of(current)) else {
        return Judgement::TooFew {
            baseline: baseline.len(),
            current: current.len(),
        };
    };
    if b.samples < MIN_SAMPLES || c.samples < MIN_SAMPLES {
        return Judgement::TooFew {
            baseline: b.samples,
            current: c.samples,
        };
    }
    let ratio = if b.median_ms > 0.0 {
        c.median_ms / b.median_ms
    } else {
        f64::INFINITY
    };
    let delta = (c.median_ms - b.median_ms).abs();
    let direction = if c.min_ms > b.max_ms && ratio >= MIN_RATIO {
        Direction::Slower
    } else if c.max_ms < b.min_ms && ratio <= 1.0 / MIN_RATIO {
        Direction::Faster
    } else {
        return Judgement::Steady;
    };
    if delta < MIN_DELTA_MS {
        return Judgement::Steady;
    }
    Judgement::Changed(TimingChange {
        direction,
        baseline: b,
        current: c,
        ratio,
    })
}

/// Why timing was not judged for a comparison, or `None` when it was.
pub fn not_judged_note(baseline_samples: usize, current_samples: usize) -> Option<String> {
    if baseline_samples >= MIN_SAMPLES && current_samples >= MIN_SAMPLES {
        return None;
    }
    Some(if baseline_samples == current_samples {
        let noun = if baseline_samples == 1 {
            "sample"
        } else {
            "samples"
        };
        format!(
            "timing not judged ({baseline_samples} {noun} per side; {MIN_SAMPLES} per side needed)"
        )
    } else {
        format!(
            "timing not judged ({baseline_samples} baseline and {current_samples} current samples; {MIN_SAMPLES} per side needed)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sample_is_never_judged() {
        assert_eq!(
            judge(&[40.0], &[400.0]),
            Judgement::TooFew {
                baseline: 1,
                current: 1
            }
        );
        assert_eq!(
            not_judged_note(1, 1).unwrap(),
            "timing not judged (1 sample per side; 3 per side needed)"
        );
        assert_eq!(
            not_judged_note(2, 3).unwrap(),
            "timing not judged (2 baseline and 3 current samples; 3 per side needed)"
        );
        assert_eq!(not_judged_note(3, 4), None);
        assert!(matches!(
            judge(&[40.0, 41.0], &[400.0, 401.0, 402.0]),
            Judgement::TooFew { .. }
        ));
    }

    #[test]
    fn slower_needs_disjoint_ranges_and_a_large_median_ratio() {
        let base = [40.0, 42.0, 44.0];
        match judge(&base, &[90.0, 100.0, 120.0]) {
            Judgement::Changed(t) => {
                assert_eq!(t.direction, Direction::Slower);
                assert_eq!(t.baseline.median_ms, 42.0);
                assert_eq!(t.current.median_ms, 100.0);
                assert!((t.ratio - 100.0 / 42.0).abs() < 1e-9);
                assert_eq!(
                    t.text(),
                    "slower: 42.0 ms (40.0-44.0, 3 runs) → 100 ms (90.0-120, 3 runs), ×2.38"
                );
            }
            other => panic!("{other:?}"),
        }
        // One current sample inside the baseline's range: overlapping, not judged slower.
        assert_eq!(judge(&base, &[43.0, 100.0, 120.0]), Judgement::Steady);
        // Disjoint but only 1.2 times slower: noise-sized.
        assert_eq!(judge(&base, &[48.0, 50.0, 52.0]), Judgement::Steady);
        // 2 times slower but 1 ms: scheduling.
        assert_eq!(judge(&[1.0, 1.1, 1.2], &[2.2, 2.3, 2.4]), Judgement::Steady);
    }

    #[test]
    fn faster_is_the_mirror_image() {
        match judge(&[90.0, 100.0, 120.0], &[40.0, 42.0, 44.0]) {
            Judgement::Changed(t) => assert_eq!(t.direction, Direction::Faster),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stats() {
        let s = Stats::of(&[3.0, 1.0, f64::NAN, 2.0, 10.0]).unwrap();
        assert_eq!(
            (s.samples, s.min_ms, s.median_ms, s.max_ms),
            (4, 1.0, 2.5, 10.0)
        );
        assert_eq!(Stats::of(&[]), None);
        // A zero baseline median cannot divide: any disjoint slower set is judged by the delta.
        assert!(matches!(
            judge(&[0.0, 0.0, 0.0], &[20.0, 21.0, 22.0]),
            Judgement::Changed(TimingChange {
                direction: Direction::Slower,
                ..
            })
        ));
    }
}
