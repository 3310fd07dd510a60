//! The shell every service made from hexkv keeps, with no domain code: it depends on no domain
//! crate and no store (CI checks it with `cargo tree`).
//!
//! - [`serve`]: the accept loop over hyper, for REST and gRPC alike: connection caps (in total
//!   and per client address), the handshake, header-read and idle timeouts, graceful drain on a
//!   [`CancellationToken`](tokio_util::sync::CancellationToken).
//! - [`http`]: the route table with each route's declared access and its admission
//!   ([`http::access`]), request ids and the per-request span, log line and metrics by matched
//!   route, as tower layers for an axum router, and problem+json errors.
//! - [`grpc`]: admission by each RPC's declared access for tonic services, and the statuses of
//!   the platform's refusals.
//! - [`auth`]: API keys with roles and scopes, the `[auth]` section, the caller's identity.
//! - [`health`]: the readiness registry (the service's checks, and draining) and the `/healthz`
//!   and `/readyz` routes over it.
//! - [`reload`]: a service's reload called on SIGHUP and when its configuration file changes
//!   (debounced).
//! - [`resilience`]: the breaker's state changes in the log and the metrics, for any port
//!   guarded with `hexkv-resilience`'s `Guards`.
//! - [`shutdown`]: SIGTERM/SIGINT as two cancellation tokens (a graceful, then a hurried stop),
//!   and the [`Drain`](shutdown::Drain) a long-lived response ends on when the listeners close.
//! - [`servers`]: a process's listeners served together, then drained in order at shutdown
//!   (readiness fails, `shutdown.readiness_delay_ms`, the listeners close, in-flight requests
//!   get `shutdown.drain_timeout_ms`; a second signal cuts both).
//! - `tls` (feature `tls`): rustls with the certificate reloaded from its files while serving,
//!   optional client certificates.
//! - [`config`]: the layers a service's configuration is read through ([`config::layered`]:
//!   defaults → file → `RUST_LOG` → `PREFIX_SECTION__KEY` → flags), [`config::ConfigError`], and
//!   the platform's sections: `[log]`, `[telemetry]`, `[metrics]`, `[shutdown]`, `[tls]`.
//!
//! - [`app`]: the [`Application`](app::Application) a composition root builds: its settings
//!   ([`app::ServiceSettings`]), readiness checks, reload hooks and routers, served with all of
//!   the above, the request limits on the service's routes only, and problem+json refusals
//!   ([`http::problem`]).
//!
//! A service hands the platform its axum `Router` (tonic services become one with
//! `tonic::service::Routes::into_axum_router`) and a listener; the platform serves it.

mod admitted;
pub mod app;
pub mod auth;
mod cli;
pub mod config;
pub mod grpc;
pub mod health;
pub mod http;
pub mod reload;
pub mod resilience;
pub mod serve;
pub mod servers;
pub mod shutdown;
#[cfg(feature = "tls")]
pub mod tls;

use std::sync::OnceLock;

static SERVICE: OnceLock<&'static str> = OnceLock::new();

/// Names the service in what the platform answers: problem types (`urn:NAME:problem:CODE`),
/// the `WWW-Authenticate` realm, the `ErrorInfo` domain of gRPC refusals. The first call wins
/// (the [`Application`](app::Application) makes it); without one they say `service`.
pub fn set_service_name(name: &'static str) {
    let _ = SERVICE.set(name);
}

/// The name [`set_service_name`] set, else `service`.
pub fn service_name() -> &'static str {
    SERVICE.get().copied().unwrap_or("service")
}
