//! Configuration reload while running.
//!
//! On SIGHUP, or when the configuration file changes (watched with `notify`; a burst of file
//! events is debounced with [`hexkv_resilience::debounce::Last`], so an editor's
//! write-rename-chmod is one reload), every layer is read again and validated exactly as at
//! start ([`Config::load`]; command-line flags still win). Then:
//!
//! - an invalid configuration is refused: the running one is kept and the error logged;
//! - settings that can change live ([`LIVE`]) take effect at once, without a restart or a
//!   dropped request: the log level and sampling, load shedding's bound, the throttle's rate,
//!   the store breaker's thresholds, the feature flags, and the API keys (when keys were
//!   configured at start: turning authentication on or off needs a restart);
//! - any other changed setting (listen addresses, the store…) is named in a WARN line and keeps
//!   its running value until a restart.
//!
//! Each reload logs which keys changed.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hexkv_core::{FeatureFlags, Identity};
use hexkv_resilience::{CircuitBreaker, InFlightLimit, Throttle};
use hexkv_telemetry::Telemetry;

use crate::config::{Config, Overrides, StoreResilienceConfig};

/// The settings that change while running: exact keys, or prefixes ending in `.` or `_`.
pub const LIVE: &[&str] = &[
    "log.level",
    "log.sampling.",
    "limits.max_in_flight",
    "limits.throttle_",
    "resilience.store.breaker_",
    "flags.",
    "auth.keys",
];

/// The handles that change live settings.
pub struct Live {
    /// Log level and sampling (absent in tests that install no subscriber).
    pub telemetry: Option<Arc<Telemetry>>,
    /// The per-client throttle shared by both front ends.
    pub throttle: Arc<Throttle<Identity>>,
    /// Load shedding's bound, one per front end.
    pub in_flight: Vec<Arc<InFlightLimit>>,
    /// The store breaker (absent when configured off at start; then its settings need a
    /// restart).
    pub breaker: Option<Arc<CircuitBreaker>>,
    /// The feature flags.
    pub flags: Arc<FeatureFlags>,
    /// The API keys (absent when none were configured at start; then adding some needs a
    /// restart).
    pub authenticator: Option<Arc<hexkv_platform::auth::Authenticator>>,
}

impl Live {
    /// Applies the live settings of `config` (already validated).
    pub fn apply(&self, config: &Config) {
        if let Some(telemetry) = &self.telemetry {
            if let Err(e) = telemetry.set_level(&config.log.level) {
                tracing::error!(error = %e, "cannot change the log level");
            }
            telemetry.set_sampling(config.log.sampling.to_sampling());
        }
        let limits = &config.limits;
        self.throttle.set(
            limits.throttle_per_minute,
            limits.throttle_burst,
            limits.throttle_max_clients,
        );
        for limit in &self.in_flight {
            limit.set(limits.max_in_flight);
        }
        if let Some(breaker) = &self.breaker {
            breaker.set_config(breaker_config(&config.resilience.store));
        }
        self.flags.replace(
            config
                .flags
                .iter()
                .map(|(name, setting)| (name.clone(), setting.rollout())),
        );
        if let Some(authenticator) = &self.authenticator {
            match hexkv_platform::auth::ApiKeys::new(&config.auth.keys) {
                Ok(keys) => authenticator.set(keys),
                // Validated before; kept for safety: the old keys stay.
                Err(e) => tracing::error!(error = %e, "cannot change the API keys"),
            }
        }
    }

    fn is_live(&self, key: &str) -> bool {
        if self.breaker.is_none() && key.starts_with("resilience.store.breaker_") {
            return false;
        }
        if self.authenticator.is_none() && key.starts_with("auth.keys") {
            return false;
        }
        LIVE.iter().any(|live| {
            if live.ends_with('.') || live.ends_with('_') {
                key.starts_with(live)
            } else {
                key == *live
            }
        })
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

/// The dotted keys whose values differ between `old` and `new` (secrets compared, not shown).
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, toml::Value)>) {
        match value {
            toml::Value::Table(table) => {
                for (k, v) in table {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            other => out.push((prefix.to_owned(), other.clone())),
        }
    }
    let flat = |c: &Config| {
        let mut out = Vec::new();
        flatten("", &toml::Value::try_from(c).expect("serializes"), &mut out);
        out.into_iter()
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (a, b) = (flat(old), flat(new));
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    if old.store.postgres.url != new.store.postgres.url {
        keys.push("store.postgres.url".to_owned());
    }
    keys.sort();
    keys.dedup();
    keys
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The configuration was refused; the running one is kept.
    Refused(String),
    /// Valid: `applied` took effect; `restart` changed but keep their running values.
    Done {
        /// Live keys that changed and took effect.
        applied: Vec<String>,
        /// Keys that changed but need a restart.
        restart: Vec<String>,
    },
}

/// Reloads the configuration; see the module docs.
pub struct Reloader {
    overrides: Overrides,
    running: Mutex<Config>,
    live: Live,
}

impl Reloader {
    /// A reloader for a service started with `running`, loaded from `overrides`.
    pub fn new(overrides: Overrides, running: Config, live: Live) -> Self {
        Self {
            overrides,
            running: Mutex::new(running),
            live,
        }
    }

    /// The file being watched, if any.
    pub fn file(&self) -> Option<&Path> {
        self.overrides.config.as_deref()
    }

    /// Reads every layer again and applies what may change live.
    pub fn reload(&self) -> Reloaded {
        let new = match Config::load(&self.overrides) {
            Ok(new) => new,
            Err(e) => {
                let why = e.to_string();
                tracing::error!(
                    error = %why,
                    "configuration reload refused; the running configuration is kept"
                );
                return Reloaded::Refused(why);
            }
        };
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let changed = changed_keys(&running, &new);
        let (applied, restart): (Vec<String>, Vec<String>) =
            changed.into_iter().partition(|k| self.live.is_live(k));
        if !applied.is_empty() {
            self.live.apply(&new);
            keep_live(&mut running, &new);
            tracing::info!(changed = ?applied, "configuration reloaded");
        } else if restart.is_empty() {
            tracing::info!("configuration reloaded: nothing changed");
        }
        if !restart.is_empty() {
            tracing::warn!(
                settings = ?restart,
                "these settings change only on restart; their running values are kept"
            );
        }
        Reloaded::Done { applied, restart }
    }
}

/// Copies the live settings of `new` into `running`.
fn keep_live(running: &mut Config, new: &Config) {
    running.log.level = new.log.level.clone();
    running.log.sampling = new.log.sampling;
    running.limits.max_in_flight = new.limits.max_in_flight;
    running.limits.throttle_per_minute = new.limits.throttle_per_minute;
    running.limits.throttle_burst = new.limits.throttle_burst;
    running.limits.throttle_max_clients = new.limits.throttle_max_clients;
    let (r, n) = (&mut running.resilience.store, &new.resilience.store);
    r.breaker_consecutive_failures = n.breaker_consecutive_failures;
    r.breaker_window = n.breaker_window;
    r.breaker_min_calls = n.breaker_min_calls;
    r.breaker_failure_rate_percent = n.breaker_failure_rate_percent;
    r.breaker_open_ms = n.breaker_open_ms;
    r.breaker_max_open_ms = n.breaker_max_open_ms;
    r.breaker_probes = n.breaker_probes;
    running.flags = new.flags.clone();
}

/// Starts the reload triggers on the current runtime: SIGHUP, and changes of the configuration
/// file when there is one ([`hexkv_platform::reload::spawn`]). Keep the result alive while
/// serving.
pub fn spawn_triggers(reloader: Arc<Reloader>) -> anyhow::Result<hexkv_platform::reload::Triggers> {
    let file = reloader.file().map(Path::to_path_buf);
    hexkv_platform::reload::spawn(file.as_deref(), move || {
        // What it changed or refused is logged by the reload itself.
        let _ = reloader.reload();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Live {
        Live {
            telemetry: None,
            throttle: Arc::new(Throttle::new(0, 1, 10)),
            in_flight: vec![InFlightLimit::new(8)],
            breaker: Some(Arc::new(CircuitBreaker::new(breaker_config(
                &StoreResilienceConfig::default(),
            )))),
            flags: Arc::new(FeatureFlags::defaults()),
            authenticator: Some(Arc::new(hexkv_platform::auth::Authenticator::new(
                hexkv_platform::auth::ApiKeys::new(&[]).expect("no keys"),
            ))),
        }
    }

    #[test]
    fn a_reload_rotates_the_api_keys() {
        use hexkv_platform::auth::{ApiKeyConfig, Role, hash_key};
        let live = live();
        let mut config = Config::default();
        config.auth.keys = vec![ApiKeyConfig {
            name: "new".into(),
            hash: hash_key("new-secret"),
            role: Role::Read,
            prefix: None,
        }];
        assert!(live.is_live("auth.keys"));
        let authenticator = live.authenticator.clone().expect("auth on");
        assert!(
            authenticator
                .authenticate(Some(b"Bearer new-secret"))
                .is_err()
        );
        live.apply(&config);
        let principal = authenticator
            .authenticate(Some(b"Bearer new-secret"))
            .expect("the new key works at once");
        assert_eq!(principal.name.as_ref(), "new");
    }

    #[test]
    fn changed_keys_are_dotted_and_secrets_compared() {
        let old = Config::default();
        let mut new = old.clone();
        new.limits.max_in_flight = 7;
        new.http.listen = "127.0.0.1:1".parse().unwrap();
        new.store.postgres.url = crate::config::Secret::new("postgres://x");
        new.flags
            .insert("read_only".into(), crate::config::FlagSetting::Switch(true));
        assert_eq!(
            changed_keys(&old, &new),
            [
                "flags.read_only",
                "http.listen",
                "limits.max_in_flight",
                "store.postgres.url"
            ]
        );
    }

    #[test]
    fn live_keys_and_the_rest() {
        let live = live();
        for key in [
            "log.level",
            "log.sampling.first",
            "limits.max_in_flight",
            "limits.throttle_burst",
            "resilience.store.breaker_probes",
            "flags.read_only",
        ] {
            assert!(live.is_live(key), "{key}");
        }
        for key in [
            "http.listen",
            "store.backend",
            "limits.max_value_bytes",
            "resilience.store.timeout_ms",
            "log.format",
        ] {
            assert!(!live.is_live(key), "{key}");
        }
        let without_breaker = Live {
            breaker: None,
            ..live
        };
        assert!(!without_breaker.is_live("resilience.store.breaker_probes"));
    }

    #[test]
    fn apply_changes_every_live_handle() {
        let live = live();
        let mut config = Config::default();
        config.limits.max_in_flight = 3;
        config.limits.throttle_per_minute = 60;
        config.resilience.store.breaker_consecutive_failures = 9;
        config
            .flags
            .insert("read_only".into(), crate::config::FlagSetting::Switch(true));
        config
            .flags
            .insert("list_keys".into(), crate::config::FlagSetting::Percent(0));
        live.apply(&config);
        assert_eq!(live.in_flight[0].max(), 3);
        assert!(live.throttle.is_on());
        assert_eq!(
            live.breaker.as_ref().unwrap().config().consecutive_failures,
            9
        );
        assert!(live.flags.is_on("read_only", ""));
        assert!(!live.flags.is_on("list_keys", "key:anyone"));
    }

    #[test]
    // Inside a figment `Jail`: the configuration tests set `HEXKV_*` variables in theirs, and
    // the jail's lock keeps them from leaking into the reloads here.
    #[allow(clippy::result_large_err)]
    fn an_invalid_file_is_refused_and_a_restart_setting_is_reported() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("hexkv.toml", "[limits]\nmax_in_flight = 5\n")?;
            let overrides = Overrides {
                config: Some(jail.directory().join("hexkv.toml")),
                ..Overrides::default()
            };
            let running = Config::load(&overrides).unwrap();
            let reloader = Reloader::new(overrides, running, live());

            jail.create_file("hexkv.toml", "[limits]\nmax_in_flight = \"many\"\n")?;
            assert!(matches!(reloader.reload(), Reloaded::Refused(_)));
            assert_eq!(reloader.live.in_flight[0].max(), 8, "unchanged");

            jail.create_file(
                "hexkv.toml",
                "[limits]\nmax_in_flight = 6\n[http]\nlisten = \"127.0.0.1:9\"\n",
            )?;
            assert_eq!(
                reloader.reload(),
                Reloaded::Done {
                    applied: vec!["limits.max_in_flight".into()],
                    restart: vec!["http.listen".into()],
                }
            );
            assert_eq!(reloader.live.in_flight[0].max(), 6);
            // The restart-only change is reported again (it is still not in effect); the live
            // one is not.
            assert_eq!(
                reloader.reload(),
                Reloaded::Done {
                    applied: vec![],
                    restart: vec!["http.listen".into()],
                }
            );
            Ok(())
        });
    }
}
