//! [`Shutdown`]: the process's signals as two cancellation tokens.

use tokio_util::sync::CancellationToken;

/// When to stop: `requested` is cancelled by the first SIGTERM or SIGINT (the graceful
/// shutdown of [`Servers::run`](crate::servers::Servers::run) begins), `hurried` by the second
/// (the readiness delay and the drain are cut short). Tests cancel the tokens themselves.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Cancelled to begin the graceful shutdown.
    pub requested: CancellationToken,
    /// Cancelled to cut the shutdown short.
    pub hurried: CancellationToken,
}

impl Shutdown {
    /// Tokens cancelled by the process's signals, listened to from now on (so a second signal
    /// is never missed); on a Tokio runtime.
    pub fn on_signals() -> std::io::Result<Self> {
        let shutdown = Self::default();
        let mut signals = Signals::listen()?;
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                signals.next().await;
                shutdown.requested.cancel();
                signals.next().await;
                shutdown.hurried.cancel();
            }
        });
        Ok(shutdown)
    }
}

/// SIGINT (Ctrl-C) and SIGTERM.
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves on the next signal.
    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.terminate.recv() => tracing::info!("received SIGTERM"),
            _ = self.interrupt.recv() => tracing::info!("received SIGINT"),
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("received Ctrl-C");
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_signal_requests_the_shutdown_and_the_second_hurries_it() {
        let shutdown = Shutdown::on_signals().unwrap();
        let me = nix::unistd::Pid::this();
        nix::sys::signal::kill(me, nix::sys::signal::Signal::SIGTERM).unwrap();
        shutdown.requested.cancelled().await;
        assert!(!shutdown.hurried.is_cancelled());
        nix::sys::signal::kill(me, nix::sys::signal::Signal::SIGINT).unwrap();
        shutdown.hurried.cancelled().await;
    }
}
