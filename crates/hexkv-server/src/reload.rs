//! What a configuration reload changes of hexkv's own settings while serving.
//!
//! Reloads are the platform's ([`hexkv_platform::reload`]): on SIGHUP, or when the
//! configuration file changes (debounced), every layer is read again and validated exactly as
//! at start ([`Config::load`]; command-line flags still win). An invalid configuration is
//! refused and the running one kept; the settings that can change live take effect at once,
//! without a restart or a dropped request — the platform's (the log level and sampling, load
//! shedding's bound, the throttle's rate, the API keys when keys were configured at start) and
//! hexkv's ([`LIVE`]: the store breaker's thresholds, when the breaker is on, applied by
//! [`apply`]; the feature flags of `[flags]` are the platform's to reload); any other changed setting (listen addresses, the store…) is
//! named in a WARN line and keeps its running value until a restart. Each reload logs which
//! keys changed.

use std::time::Duration;

use hexkv_resilience::CircuitBreaker;

use crate::config::{Config, StoreResilienceConfig};

/// hexkv's settings that change while running, beside the platform's
/// ([`hexkv_platform::app::LIVE`]): exact keys, or prefixes ending in `.` or `_`. The breaker's
/// only when the breaker is on.
pub const LIVE: &[&str] = &["resilience.store.breaker_"];

/// Puts hexkv's live settings of `new` (already validated) in force: the breaker's.
pub fn apply(new: &Config, breaker: Option<&CircuitBreaker>) {
    if let Some(breaker) = breaker {
        breaker.set_config(breaker_config(&new.resilience.store));
    }
}

/// The breaker settings of `[resilience.store]`.
pub fn breaker_config(r: &StoreResilienceConfig) -> hexkv_resilience::BreakerConfig {
    let ms = Duration::from_millis;
    hexkv_resilience::BreakerConfig {
        consecutive_failures: r.breaker_consecutive_failures,
        window: r.breaker_window as usize,
        min_calls: r.breaker_min_calls as usize,
        failure_rate: f64::from(r.breaker_failure_rate_percent) / 100.0,
        open_delay: ms(r.breaker_open_ms),
        max_open_delay: ms(r.breaker_max_open_ms),
        half_open_probes: r.breaker_probes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_changes_the_breaker() {
        let breaker = CircuitBreaker::new(breaker_config(&StoreResilienceConfig::default()));
        let mut config = Config::default();
        config.resilience.store.breaker_consecutive_failures = 9;
        apply(&config, Some(&breaker));
        assert_eq!(breaker.config().consecutive_failures, 9);
    }

    #[test]
    fn hexkv_s_live_keys_and_the_platform_s() {
        use hexkv_platform::reload::is_live;
        let live: Vec<&str> = hexkv_platform::app::LIVE
            .iter()
            .chain(LIVE)
            .copied()
            .collect();
        for key in [
            "log.level",
            "log.sampling.first",
            "limits.max_in_flight",
            "limits.throttle_burst",
            "resilience.store.breaker_probes",
            "flags.read_only",
            "auth.keys",
        ] {
            assert!(is_live(key, &live), "{key}");
        }
        for key in [
            "http.listen",
            "store.backend",
            "limits.max_value_bytes",
            "resilience.store.timeout_ms",
            "log.format",
        ] {
            assert!(!is_live(key, &live), "{key}");
        }
    }
}
