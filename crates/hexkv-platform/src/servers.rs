//! [`Servers`]: a process's listeners, served together until shutdown, then drained in order.
//!
//! ```mermaid
//! flowchart TD
//!   S[shutdown requested] --> R["draining: the service's readiness fails<br/>(/readyz 503, gRPC health NOT_SERVING)"]
//!   R --> D{"shutdown.readiness_delay_ms passed?<br/>(asked again: at once)"}
//!   D --> C[the listeners close; new connections are refused]
//!   C --> L["the drain begins: long-lived responses end<br/>(Drain::end: SSE body ends, gRPC stream UNAVAILABLE)"]
//!   L --> F{"in-flight requests done<br/>within shutdown.drain_timeout_ms?<br/>(asked again: cut)"}
//!   F -- yes --> E[run returns; the service closes its ports]
//!   F -- no --> A[the rest are cut] --> E
//! ```
//!
//! Every listener is served by [`serve`] with a child of the [`Drain`]'s token: beginning the
//! drain closes every listener and drains every connection gracefully (HTTP/2 `GOAWAY`,
//! HTTP/1.1 `Connection: close`). A long-lived response that ends on the drain
//! ([`Drain::end`]) ends then; one that does not is cut with the rest at the deadline.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::ShutdownConfig;
use crate::serve::{ConnectionLimits, Connections, Protocols, Serve, Transport, serve};
use crate::shutdown::Drain;

/// A process's listeners; see the module docs.
pub struct Servers {
    limits: ConnectionLimits,
    connections: Arc<Connections>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
    names: Vec<&'static str>,
}

impl Servers {
    /// Listeners whose connections have `limits` each and share the caps of `connections`;
    /// `drain` begins when they close.
    pub fn new(limits: ConnectionLimits, connections: Arc<Connections>, drain: &Drain) -> Self {
        Self {
            limits,
            connections,
            stop: drain.token(),
            tasks: JoinSet::new(),
            names: Vec::new(),
        }
    }

    /// Starts serving `app` on `listener` (named `name` in logs and metrics: `http`, `grpc`).
    pub fn spawn(
        &mut self,
        name: &'static str,
        listener: TcpListener,
        app: axum::Router,
        transport: Transport,
        protocols: Protocols,
    ) {
        let serving = Serve {
            listener: name,
            app,
            transport,
            protocols,
            limits: self.limits,
            connections: Arc::clone(&self.connections),
        };
        self.tasks
            .spawn(serve(listener, serving, self.stop.child_token()));
        self.names.push(name);
    }

    /// Serves until `shutdown` resolves (or a listener's task ends, which only a panic does),
    /// then runs `draining` (the service's readiness fails), keeps serving for
    /// `settings.readiness_delay_ms`, closes the listeners and gives in-flight requests
    /// `settings.drain_timeout_ms`. Once `hurried` is cancelled (a second signal), the delay and
    /// the drain are cut short. An error says a listener's task panicked.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
        draining: impl Future<Output = ()>,
        settings: &ShutdownConfig,
        hurried: CancellationToken,
    ) -> anyhow::Result<()> {
        let readiness_delay = settings.readiness_delay();
        let mut first_error: Option<anyhow::Error> = None;
        let mut note = |joined: Result<(), tokio::task::JoinError>| {
            if let Err(e) = joined.context("a listener's task failed") {
                tracing::error!(error = format!("{e:#}"), "server stopped");
                first_error.get_or_insert(e);
            }
        };
        let signal = async {
            shutdown.await;
            tracing::info!(
                readiness_delay_ms = readiness_delay.as_millis() as u64,
                "shutdown requested: readiness now fails"
            );
            draining.await;
            tokio::select! {
                () = tokio::time::sleep(readiness_delay) => {}
                () = hurried.cancelled() => tracing::warn!("asked again: skipping the readiness delay"),
            }
        };
        tokio::select! {
            () = signal => {}
            Some(joined) = self.tasks.join_next() => note(joined),
        }

        tracing::info!(listeners = ?self.names, "closing the listeners; draining in-flight requests");
        self.stop.cancel();
        let drain_timeout = settings.drain_timeout();
        let tasks = &mut self.tasks;
        let drain = tokio::time::timeout(drain_timeout, async {
            while let Some(joined) = tasks.join_next().await {
                note(joined);
            }
        });
        let drained = tokio::select! {
            drained = drain => drained.is_ok(),
            () = hurried.cancelled() => {
                tracing::warn!("asked again: cutting the in-flight requests");
                false
            }
        };
        if !drained && !self.tasks.is_empty() {
            tracing::warn!(
                drain_timeout_ms = drain_timeout.as_millis() as u64,
                "drain ended early or passed its deadline; cutting the remaining requests"
            );
            self.tasks.abort_all();
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::{Semaphore, mpsc};

    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            keepalive_interval: None,
            keepalive_timeout: Duration::from_secs(20),
        }
    }

    /// A router whose one route says when it is entered, then answers once `release` has a
    /// permit (never, if none is ever added).
    fn held(entered: mpsc::Sender<()>, release: Arc<Semaphore>) -> axum::Router {
        axum::Router::new().route(
            "/",
            axum::routing::get(move || async move {
                let _ = entered.send(()).await;
                let _permit = release.acquire().await;
                "done"
            }),
        )
    }

    /// Serves `app` on a port of its own, and starts one GET on it that is in the handler
    /// when this returns.
    async fn one_request_in_flight(
        app: impl FnOnce(mpsc::Sender<()>) -> axum::Router,
    ) -> (
        Servers,
        std::net::SocketAddr,
        tokio::task::JoinHandle<String>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (entered, mut inside) = mpsc::channel(1);
        let mut servers = Servers::new(limits(), Connections::new(16, 16), &Drain::new());
        servers.spawn(
            "http",
            listener,
            app(entered),
            Transport::Plain,
            Protocols::Any,
        );
        let request = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let mut answer = Vec::new();
            let _ = tcp.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        });
        inside
            .recv()
            .await
            .expect("the request reached the handler");
        (servers, addr, request)
    }

    #[tokio::test]
    async fn readiness_fails_first_then_the_listeners_close_and_in_flight_requests_finish() {
        let release = Arc::new(Semaphore::new(0));
        let (servers, addr, request) =
            one_request_in_flight(|entered| held(entered, Arc::clone(&release))).await;
        let settings = ShutdownConfig {
            readiness_delay_ms: 0,
            drain_timeout_ms: 600_000,
        };
        // The request may finish only once readiness has failed: draining releases it.
        let draining = {
            let release = Arc::clone(&release);
            async move { release.add_permits(1) }
        };
        servers
            .run(
                std::future::ready(()),
                draining,
                &settings,
                CancellationToken::new(),
            )
            .await
            .unwrap();
        let answer = request.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "the listener is closed"
        );
    }

    #[tokio::test]
    async fn a_request_past_the_drain_deadline_is_cut() {
        let never = Arc::new(Semaphore::new(0));
        let (servers, _, request) =
            one_request_in_flight(|entered| held(entered, Arc::clone(&never))).await;
        let settings = ShutdownConfig {
            readiness_delay_ms: 0,
            drain_timeout_ms: 50,
        };
        // A drain that waited for the request would never end: fail instead of hanging.
        let run = servers.run(
            std::future::ready(()),
            async {},
            &settings,
            CancellationToken::new(),
        );
        tokio::time::timeout(Duration::from_secs(600), run)
            .await
            .expect("the drain deadline cut the request")
            .unwrap();
        let answer = request.await.unwrap();
        assert!(!answer.contains("done"), "{answer}");
    }

    #[tokio::test]
    async fn asked_again_the_delay_and_the_drain_are_cut_at_once() {
        let never = Arc::new(Semaphore::new(0));
        let (servers, _, request) =
            one_request_in_flight(|entered| held(entered, Arc::clone(&never))).await;
        // An hour each: only the hurry ends them.
        let settings = ShutdownConfig {
            readiness_delay_ms: 3_600_000,
            drain_timeout_ms: 3_600_000,
        };
        let hurried = CancellationToken::new();
        hurried.cancel();
        let run = servers.run(std::future::ready(()), async {}, &settings, hurried);
        tokio::time::timeout(Duration::from_secs(600), run)
            .await
            .expect("the hurry cut the delay and the drain")
            .unwrap();
        let answer = request.await.unwrap();
        assert!(!answer.contains("done"), "{answer}");
    }
}
