//! What the workers record: an HDR latency histogram, successes, conflicts and errors by kind.
//! Each worker keeps its own [`Stats`] (no sharing on the hot path); they are merged at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// The slowest latency the histogram tracks exactly: 60 s (slower ones are clamped).
const MAX_MICROS: u64 = 60_000_000;

/// One worker's results.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latencies of successful requests, in microseconds.
    pub latency: Histogram<u64>,
    /// Successful requests.
    pub ok: u64,
    /// Compare-and-swap writes that lost a race (`cas` workload); not errors.
    pub conflicts: u64,
    /// Failed requests by kind (`unavailable`, `deadline_exceeded`…).
    pub errors: BTreeMap<String, u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            // 1 µs to 60 s at 3 significant digits (0.1% precision).
            latency: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid bounds"),
            ok: 0,
            conflicts: 0,
            errors: BTreeMap::new(),
        }
    }
}

impl Stats {
    /// Records a success that took `latency`.
    pub fn success(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_MICROS)
            .clamp(1, MAX_MICROS);
        self.latency.record(micros).expect("clamped into range");
        self.ok += 1;
    }

    /// Records a failure of `kind`.
    pub fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_owned()).or_default() += 1;
    }

    /// Adds `other` into this one.
    pub fn merge(&mut self, other: &Stats) {
        self.latency.add(&other.latency).expect("same bounds");
        self.ok += other.ok;
        self.conflicts += other.conflicts;
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
    }

    /// Latency quantiles in microseconds.
    pub fn summary(&self) -> Latency {
        let h = &self.latency;
        let q = |q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        Latency {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: if h.is_empty() { 0 } else { h.max() },
            mean: if h.is_empty() { 0.0 } else { h.mean() },
        }
    }
}

/// Latency quantiles of successful requests, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// The slowest.
    pub max: u64,
    /// The mean.
    pub mean: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut stats = Stats::default();
        for micros in 1..=10_000 {
            stats.success(Duration::from_micros(micros));
        }
        let l = stats.summary();
        // HDR keeps 3 significant digits: within 0.1%.
        let near =
            |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 * 0.001 + 1.0;
        assert!(near(l.p50, 5_000), "{l:?}");
        assert!(near(l.p90, 9_000), "{l:?}");
        assert!(near(l.p99, 9_900), "{l:?}");
        assert!(near(l.p999, 9_990), "{l:?}");
        assert!(near(l.max, 10_000), "{l:?}");
        assert!((l.mean - 5_000.5).abs() < 10.0, "{l:?}");
    }

    #[test]
    fn merging_adds_counts_and_errors() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        a.success(Duration::from_millis(1));
        b.success(Duration::from_millis(3));
        b.conflicts += 2;
        a.error("unavailable");
        b.error("unavailable");
        b.error("deadline_exceeded");
        a.merge(&b);
        assert_eq!(a.ok, 2);
        assert_eq!(a.conflicts, 2);
        assert_eq!(a.errors["unavailable"], 2);
        assert_eq!(a.errors["deadline_exceeded"], 1);
        assert_eq!(a.latency.len(), 2);
        let l = a.summary();
        assert!(l.max >= 2_995 && l.max <= 3_005, "{l:?}");
    }

    #[test]
    fn extremes_are_clamped_not_lost() {
        let mut stats = Stats::default();
        stats.success(Duration::ZERO);
        stats.success(Duration::from_secs(3600));
        assert_eq!(stats.ok, 2);
        assert!(stats.summary().max >= MAX_MICROS - MAX_MICROS / 1000);
        assert_eq!(Stats::default().summary().p99, 0);
    }
}
