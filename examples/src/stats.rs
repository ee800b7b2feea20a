//! Latency samples and their percentiles.

use std::fmt;
use std::time::Duration;

/// Durations of one kind of call.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    samples: Vec<Duration>,
}

impl Latencies {
    /// No samples yet, room for `n`.
    pub fn with_capacity(n: usize) -> Self {
        Latencies {
            samples: Vec::with_capacity(n),
        }
    }

    /// Adds one sample.
    pub fn record(&mut self, d: Duration) {
        self.samples.push(d);
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The `p`-th percentile (`0.0..=100.0`, nearest rank); zero without
    /// samples.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }
}

/// A duration in µs with one decimal: `12.3 µs`.
#[derive(Clone, Copy, Debug)]
pub struct Micros(pub Duration);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = format!("{:.1} µs", self.0.as_secs_f64() * 1e6);
        f.pad(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut l = Latencies::default();
        assert_eq!(l.percentile(50.0), Duration::ZERO);
        for ms in (1..=100).rev() {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.percentile(50.0), Duration::from_millis(50));
        assert_eq!(l.percentile(99.0), Duration::from_millis(99));
        assert_eq!(l.percentile(100.0), Duration::from_millis(100));
        assert_eq!(l.percentile(0.0), Duration::from_millis(1));
        assert_eq!(Micros(Duration::from_nanos(12_345)).to_string(), "12.3 µs");
    }
}
