//! Debounce, in the book's two flavours.
//!
//! - [`First`] ("function-first"): the first call of a burst runs; calls within `window` after it
//!   get its result without running again. Concurrent callers share one run. hexkv uses it for
//!   the store's readiness check, so a storm of probes (many load balancers, a tight probe
//!   period) costs the database one query per window.
//! - [`Last`] ("function-last"): every trigger restarts the window; the action runs once, when
//!   the burst has been quiet for `window`. Meant for bursts of events, such as an editor saving
//!   a configuration file in several writes.
//!
//! The book's versions keep a mutable timestamp without synchronisation and, for the "last"
//! flavour, start a goroutine per call; here state is behind a lock, and one task serves all
//! triggers.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;

/// Runs the first call of a burst and serves its result for `window`.
pub struct First<T> {
    window: Duration,
    last: Mutex<Option<(Instant, T)>>,
}

impl<T: Clone> First<T> {
    /// A debouncer that reuses a result for `window` (zero: never reuses).
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            last: Mutex::new(None),
        }
    }

    /// The result of `run`, or the result of a run less than `window` ago. Callers that arrive
    /// while a run is in progress wait for it and share its result.
    pub async fn call<F, Fut>(&self, run: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let mut last = self.last.lock().await;
        if let Some((at, value)) = &*last
            && at.elapsed() < self.window
        {
            return value.clone();
        }
        let value = run().await;
        *last = Some((Instant::now(), value.clone()));
        value
    }
}

/// Runs an action once a burst of triggers has been quiet for `window`.
#[derive(Clone)]
pub struct Last {
    triggers: mpsc::UnboundedSender<()>,
}

impl Last {
    /// Spawns the task that runs `action` (on the current tokio runtime). The task ends when
    /// every [`Last`] handle is dropped; a burst still pending then runs first.
    pub fn spawn<F, Fut>(window: Duration, mut action: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let (triggers, mut rx) = mpsc::unbounded_channel::<()>();
        tokio::spawn(async move {
            // Wait for the first trigger of a burst, then until the burst is quiet.
            while rx.recv().await.is_some() {
                let mut closed = false;
                loop {
                    match tokio::time::timeout(window, rx.recv()).await {
                        Ok(Some(())) => continue, // another trigger: the window restarts
                        Ok(None) => {
                            closed = true;
                            break;
                        }
                        Err(_) => break, // quiet for a whole window
                    }
                }
                action().await;
                if closed {
                    break;
                }
            }
        });
        Self { triggers }
    }

    /// Records an event of the burst.
    pub fn trigger(&self) {
        let _ = self.triggers.send(());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn first_runs_once_per_window_and_shares_one_run_among_concurrent_callers() {
        let runs = Arc::new(AtomicUsize::new(0));
        let debounce = Arc::new(First::new(Duration::from_secs(1)));
        let call = |debounce: Arc<First<usize>>, runs: Arc<AtomicUsize>| async move {
            debounce
                .call(|| async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    runs.fetch_add(1, Ordering::SeqCst) + 1
                })
                .await
        };
        // A storm of 50 concurrent callers: one run, one answer.
        let storm: Vec<_> = (0..50)
            .map(|_| tokio::spawn(call(Arc::clone(&debounce), Arc::clone(&runs))))
            .collect();
        for caller in storm {
            assert_eq!(caller.await.unwrap(), 1);
        }
        tokio::time::advance(Duration::from_millis(800)).await;
        assert_eq!(
            call(Arc::clone(&debounce), Arc::clone(&runs)).await,
            1,
            "cached"
        );
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(
            call(Arc::clone(&debounce), Arc::clone(&runs)).await,
            2,
            "ran again"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn last_runs_once_after_the_burst_settles() {
        let runs = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&runs);
        let debounce = Last::spawn(Duration::from_millis(500), move || {
            let seen = Arc::clone(&seen);
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        });
        // A burst: ten triggers 100 ms apart (each restarts the window).
        for _ in 0..10 {
            debounce.trigger();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 0, "still bursting");
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "once, after 500 ms of quiet"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "nothing more without triggers"
        );
        debounce.trigger();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2, "a new burst");
    }
}
