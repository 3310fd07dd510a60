//! Log sampling, as zap does it: per message, the first `first` events of each interval are
//! written, then every `thereafter`-th; the rest are dropped and counted.
//!
//! A "message" is a call site (one `tracing::info!` in the code, with its level), so a storm of
//! the same warning from one place is thinned while a rare line elsewhere still gets through.
//! Counters live in a fixed table of slots indexed by a hash of the call site (no allocation, no
//! lock on the hot path; two call sites that share a slot share a budget, as in zap). Every
//! interval, [`Sampler::report`] logs one line per call site that lost events, with the count,
//! and adds the count to `hexkv_log_events_dropped_total`.
//!
//! Settings can change while running ([`Sampler::set`]): the config reloader calls it.

use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter};

/// Slots in the counter table (a power of two).
const SLOTS: usize = 4096;

/// The target of the sampler's own report lines, which are never sampled.
pub const REPORT_TARGET: &str = "hexkv_telemetry::sampling";

/// Sampling settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampling {
    /// Events written per call site and interval before thinning; 0 turns sampling off (every
    /// event is written).
    pub first: u64,
    /// After the first ones, every this-many-th event is written (0: none).
    pub thereafter: u64,
    /// The interval the counts start over.
    pub interval: Duration,
}

impl Default for Sampling {
    /// zap's production setting: 100 a second, then every 100th.
    fn default() -> Self {
        Self {
            first: 100,
            thereafter: 100,
            interval: Duration::from_secs(1),
        }
    }
}

impl Sampling {
    /// No sampling: every event is written.
    pub const OFF: Sampling = Sampling {
        first: 0,
        thereafter: 0,
        interval: Duration::from_secs(1),
    };
}

struct Slot {
    /// Events seen in the current interval.
    count: AtomicU64,
    /// When the current interval ends, in nanoseconds since the sampler's epoch.
    ends_at: AtomicU64,
    /// Events dropped since the last report.
    dropped: AtomicU64,
    /// The call site that last dropped an event here, for the report.
    site: Mutex<Option<&'static Metadata<'static>>>,
}

/// The sampler: a per-layer [`Filter`] for the log output (spans and other layers, such as
/// traces, are not affected).
pub struct Sampler {
    first: AtomicU64,
    thereafter: AtomicU64,
    interval_ns: AtomicU64,
    epoch: Instant,
    slots: Box<[Slot]>,
    hasher: std::hash::RandomState,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("settings", &self.settings())
            .finish_non_exhaustive()
    }
}

/// What [`Sampler::report`] found: one call site and the events it lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The call site's name (`event src/file.rs:42`).
    pub site: &'static str,
    /// Its target (module path).
    pub target: &'static str,
    /// Its level.
    pub level: tracing::Level,
    /// Events dropped since the last report.
    pub count: u64,
}

impl Sampler {
    /// A sampler with `settings`.
    pub fn new(settings: Sampling) -> Self {
        let sampler = Self {
            first: AtomicU64::new(0),
            thereafter: AtomicU64::new(0),
            interval_ns: AtomicU64::new(1),
            epoch: Instant::now(),
            slots: (0..SLOTS)
                .map(|_| Slot {
                    count: AtomicU64::new(0),
                    ends_at: AtomicU64::new(0),
                    dropped: AtomicU64::new(0),
                    site: Mutex::new(None),
                })
                .collect(),
            hasher: std::hash::RandomState::new(),
        };
        sampler.set(settings);
        sampler
    }

    /// Changes the settings; they apply from the next event.
    pub fn set(&self, settings: Sampling) {
        self.thereafter
            .store(settings.thereafter, Ordering::Relaxed);
        self.interval_ns.store(
            u64::try_from(settings.interval.as_nanos())
                .unwrap_or(u64::MAX)
                .max(1),
            Ordering::Relaxed,
        );
        self.first.store(settings.first, Ordering::Relaxed);
    }

    /// The current settings.
    pub fn settings(&self) -> Sampling {
        Sampling {
            first: self.first.load(Ordering::Relaxed),
            thereafter: self.thereafter.load(Ordering::Relaxed),
            interval: Duration::from_nanos(self.interval_ns.load(Ordering::Relaxed)),
        }
    }

    /// Whether an event of `site` is written now (and counts it).
    pub fn sample(&self, site: &'static Metadata<'static>) -> bool {
        self.sample_at(site, self.epoch.elapsed())
    }

    fn sample_at(&self, site: &'static Metadata<'static>, now: Duration) -> bool {
        let first = self.first.load(Ordering::Relaxed);
        if first == 0 || site.target() == REPORT_TARGET {
            return true;
        }
        let now = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        let slot = &self.slots[self.hasher.hash_one(site.callsite()) as usize & (SLOTS - 1)];
        let ends_at = slot.ends_at.load(Ordering::Acquire);
        let n = if now >= ends_at
            && slot
                .ends_at
                .compare_exchange(
                    ends_at,
                    now.saturating_add(self.interval_ns.load(Ordering::Relaxed)),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            // This event starts a new interval.
            slot.count.store(1, Ordering::Release);
            1
        } else {
            slot.count.fetch_add(1, Ordering::AcqRel) + 1
        };
        let thereafter = self.thereafter.load(Ordering::Relaxed);
        if n <= first || (thereafter > 0 && (n - first).is_multiple_of(thereafter)) {
            return true;
        }
        if slot.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            *slot.site.lock().unwrap_or_else(|e| e.into_inner()) = Some(site);
        }
        false
    }

    /// Takes the counts of dropped events since the last call, by call site.
    pub fn take_dropped(&self) -> Vec<Dropped> {
        let mut found = Vec::new();
        for slot in self.slots.iter() {
            let count = slot.dropped.swap(0, Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let site = slot.site.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(site) = *site {
                found.push(Dropped {
                    site: site.name(),
                    target: site.target(),
                    level: *site.level(),
                    count,
                });
            }
        }
        found
    }

    /// Logs one line per call site that lost events since the last report, and counts them in
    /// `hexkv_log_events_dropped_total`. Returns what it reported.
    pub fn report(&self) -> Vec<Dropped> {
        let dropped = self.take_dropped();
        for d in &dropped {
            metrics::counter!(crate::metrics::LOG_EVENTS_DROPPED, "level" => d.level.as_str())
                .increment(d.count);
            tracing::warn!(
                target: REPORT_TARGET,
                dropped = d.count,
                site = d.site,
                site_target = d.target,
                site_level = %d.level,
                "log sampling dropped events"
            );
        }
        dropped
    }
}

/// The sampler as a per-layer filter of the log output.
#[derive(Debug, Clone)]
pub struct SampleFilter(pub std::sync::Arc<Sampler>);

impl<S: Subscriber> Filter<S> for SampleFilter {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        self.0.sample(event.metadata())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metadata of a call site in the test, for `sample_at`.
    fn site() -> &'static Metadata<'static> {
        struct Capture(Mutex<Option<&'static Metadata<'static>>>);
        impl Subscriber for Capture {
            fn enabled(&self, _: &Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
                tracing::span::Id::from_u64(1)
            }
            fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
            fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
            fn event(&self, event: &Event<'_>) {
                *self.0.lock().unwrap() = Some(event.metadata());
            }
            fn enter(&self, _: &tracing::span::Id) {}
            fn exit(&self, _: &tracing::span::Id) {}
        }
        let capture = std::sync::Arc::new(Capture(Mutex::new(None)));
        tracing::subscriber::with_default(std::sync::Arc::clone(&capture), || {
            tracing::warn!("the same message");
        });
        capture.0.lock().unwrap().expect("captured")
    }

    #[test]
    fn first_n_then_every_mth_per_interval() {
        let sampler = Sampler::new(Sampling {
            first: 3,
            thereafter: 5,
            interval: Duration::from_secs(1),
        });
        let site = site();
        let at = Duration::from_millis(10);
        let written: Vec<bool> = (0..20).map(|_| sampler.sample_at(site, at)).collect();
        // Events 1–3 pass, then 8, 13, 18 (every 5th after the first 3).
        let passed: Vec<usize> = (1..=20).filter(|n| written[n - 1]).collect();
        assert_eq!(passed, vec![1, 2, 3, 8, 13, 18]);
        let dropped = sampler.take_dropped();
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].count, 14);
        assert_eq!(dropped[0].level, tracing::Level::WARN);
        assert!(dropped[0].site.contains("sampling.rs"), "{dropped:?}");
        assert!(sampler.take_dropped().is_empty(), "taken once");

        // A new interval starts the count over.
        let later = at + Duration::from_secs(1);
        assert!(sampler.sample_at(site, later));
        assert!(sampler.sample_at(site, later));
        assert!(sampler.sample_at(site, later));
        assert!(!sampler.sample_at(site, later));
    }

    #[test]
    fn thereafter_zero_drops_everything_past_the_first() {
        let sampler = Sampler::new(Sampling {
            first: 2,
            thereafter: 0,
            interval: Duration::from_secs(1),
        });
        let site = site();
        let passed = (0..50)
            .filter(|_| sampler.sample_at(site, Duration::ZERO))
            .count();
        assert_eq!(passed, 2);
    }

    #[test]
    fn off_writes_everything_and_settings_change_live() {
        let sampler = Sampler::new(Sampling::OFF);
        let site = site();
        assert!((0..1000).all(|_| sampler.sample_at(site, Duration::ZERO)));
        sampler.set(Sampling {
            first: 1,
            thereafter: 0,
            interval: Duration::from_secs(60),
        });
        let now = Duration::from_secs(1);
        assert!(sampler.sample_at(site, now));
        assert!(!sampler.sample_at(site, now));
        assert_eq!(sampler.settings().interval, Duration::from_secs(60));
    }
}
