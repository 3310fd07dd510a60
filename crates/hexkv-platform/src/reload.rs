//! Reloading while serving: what triggers it ([`spawn`]: SIGHUP, and changes of the
//! configuration file, debounced) and what it does ([`Reloader`]: read the settings again, put
//! the live ones in force, name the ones that need a restart).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::RELOAD_DEBOUNCE;

/// Keeps the triggers of reloads alive: the file watcher, and the SIGHUP listener's task.
pub struct Triggers {
    _watcher: Option<notify::RecommendedWatcher>,
    sighup: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Triggers {
    fn drop(&mut self) {
        if let Some(task) = self.sighup.take() {
            task.abort();
        }
    }
}

/// Whether a file event in the watched directory concerns the configuration file `name`: the
/// file itself, or Kubernetes' `..data` symlink swap of a mounted ConfigMap.
fn concerns(event: &notify::Event, name: &std::ffi::OsStr) -> bool {
    use notify::EventKind;
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event.paths.iter().any(|p| {
        p.file_name()
            .is_some_and(|f| f == name || f.to_string_lossy().starts_with("..data"))
    })
}

/// Starts the reload triggers on the current runtime: SIGHUP, and changes of the configuration
/// `file` when there is one (its directory is watched, so editors' renames and a Kubernetes
/// ConfigMap's `..data` swap count; a burst of events is debounced into one reload). Each calls
/// `reload`, which reads the layers again and applies what may change live. Keep the result
/// alive while serving: dropping it stops both.
pub fn spawn(
    file: Option<&Path>,
    reload: impl Fn() + Send + Sync + 'static,
) -> anyhow::Result<Triggers> {
    let reload = Arc::new(reload);
    let debounced = {
        let reload = Arc::clone(&reload);
        hexkv_resilience::debounce::Last::spawn(RELOAD_DEBOUNCE, move || {
            let reload = Arc::clone(&reload);
            async move {
                tracing::info!("configuration file changed: reloading");
                reload();
            }
        })
    };
    let watcher = match file {
        None => None,
        Some(file) => Some(watch(file, debounced)?),
    };
    #[cfg(unix)]
    let sighup = {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())?;
        Some(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::info!("received SIGHUP: reloading the configuration");
                reload();
            }
        }))
    };
    #[cfg(not(unix))]
    let sighup = None;
    Ok(Triggers {
        _watcher: watcher,
        sighup,
    })
}

fn watch(
    file: &Path,
    debounced: hexkv_resilience::debounce::Last,
) -> anyhow::Result<notify::RecommendedWatcher> {
    use anyhow::Context as _;
    use notify::Watcher as _;

    let name = file
        .file_name()
        .context("the configuration path names no file")?
        .to_owned();
    // The directory, not the file: editors and Kubernetes replace files by renaming, which
    // would end a watch on the file itself.
    let dir: PathBuf = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if concerns(&event, &name) => debounced.trigger(),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "watching the configuration file failed"),
        })
        .context("cannot watch the configuration file")?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    tracing::info!(path = %file.display(), "watching the configuration file for changes");
    Ok(watcher)
}

/// The settings' values by dotted key (`limits.max_in_flight`), leaves only; arrays are one
/// leaf (`auth.keys`). Secrets are compared as they print (redacted): a service names its
/// secrets' changes itself ([`ServiceSettings::changed_secrets`](crate::app::ServiceSettings::changed_secrets)).
pub fn flatten(settings: &impl serde::Serialize) -> BTreeMap<String, toml::Value> {
    fn walk(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
        match value {
            toml::Value::Table(table) if !table.is_empty() => {
                for (k, v) in table {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(value) = toml::Value::try_from(settings) {
        walk("", &value, &mut out);
    }
    out
}

/// The keys whose values differ between two [`flatten`]ed settings.
pub fn changed_keys(
    old: &BTreeMap<String, toml::Value>,
    new: &BTreeMap<String, toml::Value>,
) -> Vec<String> {
    let mut keys: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|k| old.get(*k) != new.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Whether `key` is one of `live`: exact keys, or prefixes ending in `.` or `_`.
pub fn is_live(key: &str, live: &[&str]) -> bool {
    live.iter().any(|live| {
        if live.ends_with('.') || live.ends_with('_') {
            key.starts_with(live)
        } else {
            key == *live
        }
    })
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The settings were refused; the running ones are kept.
    Refused(String),
    /// Valid: `applied` took effect; `restart` changed but keep their running values.
    Done {
        /// Live keys that changed and took effect.
        applied: Vec<String>,
        /// Keys that changed but need a restart.
        restart: Vec<String>,
    },
}

type Load<S> = Box<dyn Fn() -> Result<S, crate::config::ConfigError> + Send + Sync>;
type Apply<S> = Box<dyn Fn(&S) + Send + Sync>;

/// Reads the settings again and applies what may change live:
///
/// - settings that cannot be loaded are refused: the running ones are kept and the error
///   logged (`configuration reload refused; the running configuration is kept`);
/// - the live keys that changed take effect at once (`apply`), without a restart or a dropped
///   request, and are logged (`configuration reloaded`, with `changed`);
/// - any other changed key (a listen address, the store…) is named in a WARN line and keeps its
///   running value until a restart; it is named again at the next reload, since it is still
///   not in effect.
pub struct Reloader<S> {
    load: Load<S>,
    live: Vec<&'static str>,
    apply: Apply<S>,
    running: Mutex<(BTreeMap<String, toml::Value>, S)>,
}

impl<S: crate::app::ServiceSettings> Reloader<S> {
    /// A reloader of a service running with `running`, reading with `load`, whose `live` keys
    /// `apply` puts in force.
    pub fn new(
        running: S,
        load: impl Fn() -> Result<S, crate::config::ConfigError> + Send + Sync + 'static,
        live: Vec<&'static str>,
        apply: impl Fn(&S) + Send + Sync + 'static,
    ) -> Self {
        Self {
            load: Box::new(load),
            live,
            apply: Box::new(apply),
            running: Mutex::new((flatten(&running), running)),
        }
    }

    /// Reads the settings again and applies what may change live; see the type's docs.
    pub fn reload(&self) -> Reloaded {
        let new = match (self.load)() {
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
        let flat = flatten(&new);
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let mut changed = changed_keys(&running.0, &flat);
        changed.extend(
            running
                .1
                .changed_secrets(&new)
                .into_iter()
                .map(str::to_owned),
        );
        changed.sort();
        changed.dedup();
        let (applied, restart): (Vec<String>, Vec<String>) = changed
            .into_iter()
            .partition(|key| is_live(key, &self.live));
        if !applied.is_empty() {
            (self.apply)(&new);
            for key in &applied {
                match flat.get(key) {
                    Some(value) => running.0.insert(key.clone(), value.clone()),
                    None => running.0.remove(key),
                };
            }
            tracing::info!(
                changed = ?applied,
                log_level = %new.log().level,
                "configuration reloaded"
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: notify::EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn events_of_the_file_or_a_configmap_swap_concern_it_and_reads_do_not() {
        use notify::event::{AccessKind, CreateKind, ModifyKind};
        let name = std::ffi::OsStr::new("app.toml");
        let modify = notify::EventKind::Modify(ModifyKind::Any);
        assert!(concerns(&event(modify, "/etc/app/app.toml"), name));
        assert!(concerns(
            &event(
                notify::EventKind::Create(CreateKind::Any),
                "/etc/app/..data_tmp"
            ),
            name
        ));
        assert!(!concerns(&event(modify, "/etc/app/other.toml"), name));
        assert!(!concerns(
            &event(
                notify::EventKind::Access(AccessKind::Any),
                "/etc/app/app.toml"
            ),
            name
        ));
    }

    #[tokio::test]
    async fn a_change_of_the_file_triggers_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app.toml");
        std::fs::write(&file, "a = 1\n").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _triggers = spawn(Some(&file), move || {
            let _ = tx.send(());
        })
        .unwrap();
        for i in 0..5 {
            std::fs::write(&file, format!("a = {i}\n")).unwrap();
        }
        tokio::time::timeout(std::time::Duration::from_secs(60), rx.recv())
            .await
            .expect("a reload after the change")
            .unwrap();
    }

    mod reloader {
        use std::sync::atomic::{AtomicUsize, Ordering};

        use super::super::*;
        use crate::app::PlatformOnly as Settings;
        use crate::config::ConfigError;

        #[test]
        fn live_keys_apply_others_wait_for_a_restart_and_bad_settings_are_refused() {
            let next: Arc<Mutex<Result<Settings, String>>> =
                Arc::new(Mutex::new(Ok(Settings::default())));
            let applied = Arc::new(AtomicUsize::new(0));
            let reloader = Reloader::new(
                Settings::default(),
                {
                    let next = Arc::clone(&next);
                    move || {
                        next.lock()
                            .unwrap()
                            .clone()
                            .map_err(|why| ConfigError::invalid("limits.max_in_flight", why))
                    }
                },
                crate::app::LIVE.to_vec(),
                {
                    let applied = Arc::clone(&applied);
                    move |new: &Settings| {
                        applied.store(new.limits.max_in_flight, Ordering::SeqCst);
                    }
                },
            );
            *next.lock().unwrap() = Err("not a number".into());
            assert!(matches!(reloader.reload(), Reloaded::Refused(_)));
            assert_eq!(applied.load(Ordering::SeqCst), 0, "nothing applied");

            let mut new = Settings::default();
            new.limits.max_in_flight = 6;
            new.shutdown.drain_timeout_ms = 9;
            *next.lock().unwrap() = Ok(new);
            assert_eq!(
                reloader.reload(),
                Reloaded::Done {
                    applied: vec!["limits.max_in_flight".into()],
                    restart: vec!["shutdown.drain_timeout_ms".into()],
                }
            );
            assert_eq!(applied.load(Ordering::SeqCst), 6);
            // The restart-only change is named again (it is still not in effect); the live one
            // is not.
            assert_eq!(
                reloader.reload(),
                Reloaded::Done {
                    applied: vec![],
                    restart: vec!["shutdown.drain_timeout_ms".into()],
                }
            );
        }

        #[test]
        fn keys_are_dotted_leaves_and_live_prefixes_match() {
            let mut new = Settings::default();
            new.log.sampling.first = 1;
            new.auth.allow_unauthenticated = true;
            assert_eq!(
                changed_keys(&flatten(&Settings::default()), &flatten(&new)),
                ["auth.allow_unauthenticated", "log.sampling.first"]
            );
            for key in ["log.level", "log.sampling.first", "limits.throttle_burst"] {
                assert!(is_live(key, crate::app::LIVE), "{key}");
            }
            for key in ["log.format", "limits.max_value_bytes", "auth.open_health"] {
                assert!(!is_live(key, crate::app::LIVE), "{key}");
            }
        }
    }
}
