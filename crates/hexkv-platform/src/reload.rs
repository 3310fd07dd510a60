//! Reloading while serving: what triggers it. The service says what a reload does (read its
//! configuration again, apply what may change live); [`spawn`] calls it on SIGHUP and when the
//! configuration file changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
}
