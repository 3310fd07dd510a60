//! [`Shutdown`]: the process's signals as two cancellation tokens; [`Drain`]: the moment the
//! listeners close, as a long-lived response sees it.
//!
//! A response that lasts (a server-streaming RPC, server-sent events, a long poll) would hold the
//! drain until its deadline and then be cut like a failure. Ended when the drain begins instead,
//! its client learns that it should resume elsewhere: by then readiness has failed for
//! `shutdown.readiness_delay_ms`, so the load balancer sends the reconnection to a replica that
//! is still serving.
//!
//! ```mermaid
//! sequenceDiagram
//!   participant C as client
//!   participant S as handler
//!   participant P as platform
//!   C->>S: subscribe (SSE or a server stream)
//!   S-->>C: events…
//!   P->>P: SIGTERM: readiness fails, readiness delay
//!   P->>S: the drain begins (listeners close)
//!   S-->>C: SSE: the body ends / gRPC: UNAVAILABLE, reason DRAINING
//!   C->>C: reconnects (to a replica that is ready)
//! ```

use std::convert::Infallible;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

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

/// The drain of the process's listeners, for the responses that last: it begins when the
/// listeners close (after readiness has failed and `shutdown.readiness_delay_ms` has passed), and
/// a long-lived response should end then rather than hold the drain until
/// `shutdown.drain_timeout_ms` cuts it.
///
/// The [`Application`](crate::app::Application) puts it in every request's extensions: an axum
/// handler takes it as an extractor, a tonic method reads it with [`Drain::of`]; a composition
/// root has [`Application::drain`](crate::app::Application::drain). Outside an `Application` (a
/// router under test) a request's drain never begins.
///
/// ```
/// use std::convert::Infallible;
///
/// use axum::response::sse::{Event, Sse};
/// use futures_core::Stream;
/// use hexkv_platform::shutdown::Drain;
///
/// async fn events(drain: Drain) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
///     let ticks = tokio_stream::iter([Ok(Event::default().data("tick"))]);
///     Sse::new(drain.end(ticks))
/// }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Drain(CancellationToken);

impl Drain {
    /// A drain that begins when [`Drain::begin`] is called.
    pub fn new() -> Self {
        Self::default()
    }

    /// Begins the drain (the platform does when it closes its listeners; tests may).
    pub fn begin(&self) {
        self.0.cancel();
    }

    /// The token that begins it, for the listeners.
    pub(crate) fn token(&self) -> CancellationToken {
        self.0.clone()
    }

    /// Whether the drain has begun.
    pub fn has_begun(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves once the drain has begun.
    pub async fn begun(&self) {
        self.0.cancelled().await;
    }

    /// The drain of the request whose extensions these are (tonic: `request.extensions()`;
    /// axum: the extractor does it); one that never begins when the request came from outside
    /// an [`Application`](crate::app::Application).
    pub fn of(extensions: &axum::http::Extensions) -> Self {
        extensions.get::<Self>().cloned().unwrap_or_default()
    }

    /// `stream`, ended when the drain begins: server-sent events end their body, which a
    /// browser's `EventSource` reconnects after.
    pub fn end<St: Stream>(&self, stream: St) -> UntilDrained<St> {
        UntilDrained {
            stream,
            drained: self.0.clone().cancelled_owned(),
            last: None,
            ended: false,
        }
    }

    /// `stream`, ended with `last` when the drain begins: a gRPC server stream ends with
    /// [`grpc::status::draining`](crate::grpc::status::draining), which tells its client to
    /// resume the call (elsewhere) at once.
    pub fn end_with<St: Stream>(&self, stream: St, last: St::Item) -> UntilDrained<St> {
        UntilDrained {
            last: Some(last),
            ..self.end(stream)
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Drain {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.extensions))
    }
}

pin_project_lite::pin_project! {
    /// A stream that ends when the drain begins; see [`Drain::end`] and [`Drain::end_with`].
    pub struct UntilDrained<St: Stream> {
        #[pin]
        stream: St,
        #[pin]
        drained: WaitForCancellationFutureOwned,
        last: Option<St::Item>,
        ended: bool,
    }
}

impl<St: Stream> Stream for UntilDrained<St> {
    type Item = St::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<St::Item>> {
        let mut this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        if this.drained.as_mut().poll(cx).is_ready() {
            *this.ended = true;
            return Poll::Ready(this.last.take());
        }
        let next = this.stream.poll_next(cx);
        if let Poll::Ready(None) = next {
            *this.ended = true;
        }
        next
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

#[cfg(test)]
mod drain_tests {
    use tokio_stream::StreamExt as _;

    use super::*;

    #[tokio::test]
    async fn a_stream_ends_when_the_drain_begins_and_not_before() {
        let drain = Drain::new();
        let mut stream =
            std::pin::pin!(drain.end(tokio_stream::iter([1, 2]).chain(tokio_stream::pending())));
        assert_eq!(stream.next().await, Some(1));
        assert_eq!(stream.next().await, Some(2));
        // Pending: the drain has not begun.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(10), stream.next())
                .await
                .is_err()
        );
        drain.begin();
        assert!(drain.has_begun());
        assert_eq!(stream.next().await, None);
        assert_eq!(stream.next().await, None);
    }

    #[tokio::test]
    async fn a_stream_ended_with_a_last_item_gives_it_once() {
        let drain = Drain::new();
        let mut stream = std::pin::pin!(
            drain.end_with(tokio_stream::pending::<Result<u8, &str>>(), Err("drain"))
        );
        drain.begin();
        assert_eq!(stream.next().await, Some(Err("drain")));
        assert_eq!(stream.next().await, None);
    }

    #[tokio::test]
    async fn a_stream_that_ends_first_gives_no_last_item() {
        let drain = Drain::new();
        let mut stream = std::pin::pin!(drain.end_with(tokio_stream::iter([1]), 9));
        assert_eq!(stream.next().await, Some(1));
        assert_eq!(stream.next().await, None);
        drain.begin();
        assert_eq!(stream.next().await, None);
    }

    #[test]
    fn a_request_from_outside_an_application_has_a_drain_that_never_begins() {
        let mut extensions = axum::http::Extensions::new();
        assert!(!Drain::of(&extensions).has_begun());
        let drain = Drain::new();
        extensions.insert(drain.clone());
        drain.begin();
        assert!(Drain::of(&extensions).has_begun());
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
