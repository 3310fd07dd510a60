//! Serving a front end on its listener: one accept loop and one connection function for REST and
//! gRPC, over plain TCP and TLS, with the limits that keep slow, idle or too many clients from
//! holding the process's connections.
//!
//! ```mermaid
//! flowchart LR
//!   A[accept] --> C{open connections<br/>total, per address}
//!   C -- over a cap --> X[closed at once, counted]
//!   C -- admitted --> T[own task: TLS handshake and<br/>first bytes before the deadline]
//!   T --> H[hyper: HTTP/1.1 header timeout,<br/>HTTP/2 keep-alive pings]
//!   H --> I{no request in flight<br/>for idle_timeout?}
//!   I -- yes --> G[closed gracefully]
//!   H --> R[the application: axum Router]
//! ```
//!
//! Each connection runs in its own task, so a slow handshake holds up nobody, and is closed:
//! - when it has not finished its TLS handshake and sent the first bytes of a request (an
//!   HTTP/1.1 request line, or the HTTP/2 connection preface) within
//!   `limits.header_read_timeout_ms` of being accepted;
//! - over HTTP/1.1, when a request's headers are not complete within that time (hyper's header
//!   timeout; its timer also runs while a keep-alive connection waits for its next request);
//! - over HTTP/2, when the peer stops answering keep-alive pings;
//! - when no request has been in flight for `limits.idle_timeout_ms` (gracefully: HTTP/2 gets a
//!   GOAWAY). A long-lived response (a stream) counts as in flight until its body ends.
//!
//! New connections past `limits.max_connections` in all, or past
//! `limits.max_connections_per_client` from one address, are closed as soon as they are
//! accepted, so the process never runs out of file descriptors and `accept` never fails in a
//! loop; [`raise_open_file_limit`] makes room for the caps at start. Every request carries the
//! peer's address as axum's `ConnectInfo<SocketAddr>`, which admission reads.
//!
//! At shutdown (the token) the listener closes, every connection is asked to finish gracefully
//! and [`serve`] returns once the last has closed; dropping its future cuts them all.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hexkv_telemetry::metrics::{CONNECTIONS_OPEN, CONNECTIONS_REFUSED, CONNECTIONS_TIMED_OUT};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// The bytes of a first request that end the handshake deadline: the length of the HTTP/2
/// connection preface, and less than any HTTP/1.1 request line with its `Host` header.
const PREFACE_BYTES: u64 = 24;

/// How connections are served (the `limits.*` settings of the listeners).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The TLS handshake and the first bytes of a request must arrive within this of the
    /// accept; over HTTP/1.1 so must each request's headers.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight this long is closed.
    pub idle_timeout: Duration,
    /// HTTP/2 keep-alive pings this often (`None`: none).
    pub keepalive_interval: Option<Duration>,
    /// A ping not answered within this closes the connection.
    pub keepalive_timeout: Duration,
}

impl Default for ConnectionLimits {
    /// hexkv's defaults: 10 s for the handshake and each request's headers, closed after 120 s
    /// without a request, HTTP/2 pings every 30 s answered within 20 s.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// Which HTTP versions a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// HTTP/1.1 and HTTP/2 (prior knowledge, or by ALPN over TLS): the REST listener.
    Any,
    /// HTTP/2 only: the gRPC listener.
    Http2,
}

/// The connections open on every listener, and the caps on them.
#[derive(Debug)]
pub struct Connections {
    max_total: usize,
    max_per_client: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_total` connections are open.
    Total,
    /// `max_per_client` connections are open from this address.
    PerClient,
}

impl Refused {
    fn label(self) -> &'static str {
        match self {
            Refused::Total => "total",
            Refused::PerClient => "per_client",
        }
    }
}

impl Connections {
    /// At most `max_total` connections in all and `max_per_client` from one address, over every
    /// listener that shares this.
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total: max_total.max(1),
            max_per_client: max_per_client.max(1),
            open: Mutex::new(Open::default()),
        })
    }

    /// Admits a connection from `client`, held open as long as the permit lives.
    pub fn admit(
        self: &Arc<Self>,
        client: IpAddr,
        listener: &'static str,
    ) -> Result<Permit, Refused> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.max_total {
            return Err(Refused::Total);
        }
        let from_client = open.by_client.entry(client).or_default();
        if *from_client >= self.max_per_client {
            return Err(Refused::PerClient);
        }
        *from_client += 1;
        open.total += 1;
        metrics::gauge!(CONNECTIONS_OPEN, "listener" => listener).increment(1.0);
        Ok(Permit {
            connections: Arc::clone(self),
            client,
            listener,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Permit {
    connections: Arc<Connections>,
    client: IpAddr,
    listener: &'static str,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total -= 1;
        if let Some(count) = open.by_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.by_client.remove(&self.client);
            }
        }
        metrics::gauge!(CONNECTIONS_OPEN, "listener" => self.listener).decrement(1.0);
    }
}

/// How a listener's connections are secured.
#[derive(Clone)]
pub enum Transport {
    /// Plain TCP.
    Plain,
    /// TLS, with this acceptor (its ALPN protocols offered).
    #[cfg(feature = "tls")]
    Tls(tokio_rustls::TlsAcceptor),
}

/// What [`serve`] serves, and how.
#[derive(Clone)]
pub struct Serve {
    /// The front end's name, for logs and the `listener` label: `http` or `grpc`.
    pub listener: &'static str,
    /// The application.
    pub app: axum::Router,
    /// Plain or TLS.
    pub transport: Transport,
    /// Which HTTP versions.
    pub protocols: Protocols,
    /// The timeouts of each connection.
    pub limits: ConnectionLimits,
    /// The caps on open connections, shared by every listener.
    pub connections: Arc<Connections>,
}

/// Serves `serve.app` on `listener` until `shutdown` is cancelled; see the module docs.
pub async fn serve(listener: TcpListener, serve: Serve, shutdown: CancellationToken) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(serve.limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(serve.limits.keepalive_interval)
        .keep_alive_timeout(serve.limits.keepalive_timeout);
    let builder = Arc::new(match serve.protocols {
        Protocols::Any => builder,
        Protocols::Http2 => builder.http2_only(),
    });
    let serve = Arc::new(serve);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next() => continue,
            () = shutdown.cancelled() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) if is_per_connection(&err) => continue,
            Err(err) => {
                // Out of file descriptors and the like (the caps should prevent it): back off
                // rather than spin, as hyper's own accept loop does.
                tracing::warn!(listener = serve.listener, error = %err, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match serve.connections.admit(peer.ip(), serve.listener) {
            Ok(permit) => permit,
            Err(refused) => {
                metrics::counter!(CONNECTIONS_REFUSED, "listener" => serve.listener, "reason" => refused.label())
                    .increment(1);
                tracing::debug!(listener = serve.listener, %peer, reason = refused.label(), "connection refused");
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let serve = Arc::clone(&serve);
        let builder = Arc::clone(&builder);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            connection(tcp, peer, &serve, &builder, shutdown).await;
            drop(permit);
        });
    }
    drop(listener);
    // Every connection task saw the token and is finishing its requests.
    while connections.join_next().await.is_some() {}
}

/// Errors of one connection that `accept` reports, after which accepting goes on at once.
fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one accepted connection until it closes.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    serve: &Serve,
    builder: &Builder<TokioExecutor>,
    shutdown: CancellationToken,
) {
    let deadline = Instant::now() + serve.limits.header_read_timeout;
    let timed_out = |phase: &'static str| {
        metrics::counter!(CONNECTIONS_TIMED_OUT, "listener" => serve.listener, "phase" => phase)
            .increment(1);
        tracing::debug!(listener = serve.listener, %peer, phase, "connection closed: too slow");
    };
    match &serve.transport {
        Transport::Plain => http(tcp, peer, serve, builder, deadline, shutdown, timed_out).await,
        #[cfg(feature = "tls")]
        Transport::Tls(acceptor) => {
            match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    http(stream, peer, serve, builder, deadline, shutdown, timed_out).await;
                }
                Ok(Err(err)) => tracing::debug!(%peer, error = %err, "TLS handshake failed"),
                Err(_) => timed_out("handshake"),
            }
        }
    }
}

/// Serves HTTP on one connection (after its TLS handshake, if any).
async fn http<I>(
    io: I,
    peer: SocketAddr,
    serve: &Serve,
    builder: &Builder<TokioExecutor>,
    deadline: Instant,
    shutdown: CancellationToken,
    timed_out: impl Fn(&'static str),
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let read = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Counted {
        inner: io,
        read: Arc::clone(&read),
    });
    // Requests in flight on this connection, for the idle timeout.
    let activity = Activity::new();
    let busy = Arc::clone(&activity);
    let app = serve.app.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let guard = Busy::begin(&busy);
        let response = app.clone().oneshot(request);
        async move {
            let response = response.await?;
            Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: guard }))
        }
    });
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut preface = true;
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    let header_timeout = err
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout);
                    if header_timeout {
                        timed_out("headers");
                    } else {
                        tracing::debug!(%peer, error = %err, "connection ended with an error");
                    }
                }
                return;
            }
            () = tokio::time::sleep_until(deadline), if preface => {
                if read.load(Ordering::Relaxed) < PREFACE_BYTES {
                    timed_out("handshake");
                    return;
                }
                preface = false;
            }
            () = idle(&activity, serve.limits.idle_timeout), if !closing => {
                timed_out("idle");
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = shutdown.cancelled(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// The requests in flight on one connection, for its idle timeout. Counted with atomics and read
/// by the connection's timer, so a request costs two atomic updates and wakes nothing (a channel
/// that notified the connection's task of every change cost a task wake-up per request).
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    /// When the last request in flight ended (or the connection began), as nanoseconds since
    /// `start`.
    idle_since: AtomicU64,
    start: Instant,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            start: Instant::now(),
        })
    }

    /// How long the connection has had no request in flight (zero while one is).
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let since = self.start + Duration::from_nanos(self.idle_since.load(Ordering::Acquire));
        Instant::now().saturating_duration_since(since)
    }
}

/// Resolves once no request has been in flight for `timeout`; looks when the timeout could first
/// have passed, and again after each look that found a request.
async fn idle(activity: &Activity, timeout: Duration) {
    let mut wait = timeout;
    loop {
        tokio::time::sleep(wait).await;
        let idle_for = activity.idle_for();
        if idle_for >= timeout {
            return;
        }
        wait = timeout - idle_for;
    }
}

/// One request in flight on a connection, until its response body ends.
struct Busy(Arc<Activity>);

impl Busy {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = Instant::now().saturating_duration_since(activity.start);
        // Before the count falls to zero, so a look at a zero count sees this end.
        activity
            .idle_since
            .store(now.as_nanos() as u64, Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight until it is done.
    struct Tracked<B> {
        #[pin]
        body: B,
        _busy: Busy,
    }
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A connection that counts the bytes read from it, for the handshake deadline.
    struct Counted<I> {
        #[pin]
        inner: I,
        read: Arc<AtomicU64>,
    }
}

impl<I: AsyncRead> AsyncRead for Counted<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.inner.poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        if read > 0 {
            this.read.fetch_add(read, Ordering::Relaxed);
        }
        polled
    }
}

impl<I: AsyncWrite> AsyncWrite for Counted<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Raises the soft limit on open files towards the hard limit when `needed` descriptors (the
/// connection caps and room for the rest) do not fit, as Go's runtime does at start. Returns the
/// soft limit in force, or `None` where it cannot be read.
pub fn raise_open_file_limit(needed: u64) -> Option<u64> {
    #[cfg(unix)]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
        if soft >= needed {
            return Some(soft);
        }
        let wanted = needed.min(hard);
        match setrlimit(Resource::RLIMIT_NOFILE, wanted, hard) {
            Ok(()) => Some(wanted),
            Err(_) => Some(soft),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = needed;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_in_all_and_per_address() {
        let connections = Connections::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = connections.admit(a, "http").unwrap();
        let a2 = connections.admit(a, "grpc").unwrap();
        assert_eq!(
            connections.admit(a, "http").unwrap_err(),
            Refused::PerClient
        );
        let b1 = connections.admit(b, "http").unwrap();
        assert_eq!(connections.admit(b, "http").unwrap_err(), Refused::Total);
        assert_eq!(connections.open(), 3);
        drop(a1);
        let a3 = connections.admit(a, "http").unwrap();
        drop((a2, a3, b1));
        assert_eq!(connections.open(), 0);
        assert!(connections.open.lock().unwrap().by_client.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_means_no_request_in_flight_for_the_whole_timeout() {
        let activity = Activity::new();
        let timeout = Duration::from_secs(10);
        let started = Instant::now();
        idle(&activity, timeout).await;
        assert_eq!(started.elapsed(), timeout);

        // A request in flight holds it off, however long; the timeout counts from its end.
        let request = Busy::begin(&activity);
        let waiting = tokio::spawn({
            let activity = Arc::clone(&activity);
            async move { idle(&activity, timeout).await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiting.is_finished());
        let ended = Instant::now();
        drop(request);
        waiting.await.unwrap();
        assert_eq!(ended.elapsed(), timeout);
    }
}
