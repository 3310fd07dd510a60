//! [`Application`]: a service's composition root hands it its settings, its readiness checks,
//! its REST route table and its gRPC services; the platform does the rest.
//!
//! ```mermaid
//! flowchart LR
//!   M[main: Application::from_args] --> SET[settings: defaults → file → env → flags]
//!   SET --> T[telemetry: logs, metrics, traces]
//!   M --> R[REST route table<br/>each route's declared access]
//!   M --> G[gRPC services<br/>each RPC's declared access]
//!   R --> HS[HttpStack: admission → timeout → shedding → body limit;<br/>/healthz /readyz /metrics /openapi.json beside]
//!   G --> GS[GrpcServices: admission → deadline → shedding;<br/>health and reflection beside]
//!   HS & GS --> L[listeners: connection caps, TLS, timeouts;<br/>one listener for both when given one address]
//!   L --> D[drain: readiness fails → delay → close → deadline]
//! ```
//!
//! - **Settings**: the service's type implements [`ServiceSettings`]: its own sections beside
//!   the ones the platform declares (`[http]`, `[grpc]`, `[flags]`, `[log]`, `[telemetry]`,
//!   `[metrics]`, `[limits]`, `[auth]`, `[shutdown]`, `[tls]`, `[cors]`), read through the
//!   layers of [`config::layered`](crate::config::layered): defaults → `--config FILE` →
//!   `RUST_LOG` → `PREFIX_SECTION__KEY`. A value that cannot be used is refused at start naming
//!   its key; `NAME config show` and `NAME config check FILE` come with
//!   [`Application::from_args`].
//! - **Telemetry**: JSON logs (pretty on a terminal) with sampling, the Prometheus recorder,
//!   traces over OTLP (feature `otlp`), request ids and a span, log line and latency histogram
//!   per request by matched route or RPC.
//! - **Reload** on SIGHUP or a change of the file ([`crate::reload::Reloader`]): the settings
//!   are read again; the platform applies its live ones ([`LIVE`]: the log level and sampling,
//!   the in-flight limit, the throttle, the API keys, the feature flags), then hands the new
//!   settings to the service's [`Application::on_reload`] hooks for its own
//!   ([`Application::live`]); other changed keys are named as needing a restart. Settings that
//!   fail to load are refused and the running ones stay.
//! - **Access**: each route of an [`Application::http`] table declares what it needs
//!   ([`Access`](crate::http::access::Access): the resource it touches, a listing, a probe…),
//!   and each RPC of an [`Application::grpc`] service its
//!   [`Access`](crate::grpc::access::Access); admission identifies the caller (its API key's
//!   name, else its address), throttles the service's routes per caller (`429 throttled` /
//!   RESOURCE_EXHAUSTED) and checks the key's role and prefix (401 / 403). With no key in
//!   `[auth]`, every request is let in — on loopback addresses only, unless
//!   `auth.allow_unauthenticated`.
//! - **Serving**: the service's routes and RPCs get the request timeout (a read past it is
//!   `504 deadline_exceeded`, a write `504 outcome_unknown`; DEADLINE_EXCEEDED) and load
//!   shedding (`503 overloaded`; UNAVAILABLE); beside them `/healthz`, `/readyz` (the registry
//!   of [`Application::readiness_check`]), `/metrics`, `/openapi.json`
//!   ([`Application::openapi`]), gRPC health and reflection, which are never throttled or
//!   shed. Connections have the `[limits]` caps and timeouts, TLS when `[tls]` names a
//!   certificate (feature `tls`, reloaded when its files change); a listener that serves REST
//!   answers browsers of the origins `[cors]` allows (preflights before admission).
//! - **Drain** on SIGTERM/SIGINT, as [`Servers::run`](crate::servers::Servers::run) does it:
//!   readiness fails first (`/readyz` 503, gRPC health NOT_SERVING), the listeners close after
//!   `shutdown.readiness_delay_ms`, and in-flight requests get `shutdown.drain_timeout_ms`. A
//!   long-lived response (server-sent events, a server-streaming RPC) ends when the listeners
//!   close if its handler wraps its stream with the request's [`Drain`]
//!   ([`Drain::end`], [`Drain::end_with`]); otherwise the deadline cuts it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use hexkv_resilience::{InFlightLimit, Throttle};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::flags::{FeatureFlags, Rollout};
use crate::auth::{ApiKeys, AuthConfig, AuthPolicy, Identity};
use crate::config::{
    ConfigError, CorsConfig, FlagsConfig, Layers, LimitsConfig, LogConfig, LogFormat,
    MetricsConfig, ShutdownConfig, TelemetryConfig, TlsConfig, TraceExport, layered,
};
use crate::grpc::services::{GrpcServices, GrpcStack};
use crate::health::{Readiness, ReadinessCheck};
use crate::http::access::{Admission, Routes};
use crate::http::stack::HttpStack;
use crate::serve::Protocols;
use crate::servers::Servers;
use crate::shutdown::{Drain, Shutdown};

/// The platform's sections, which the environment may set beside the service's own.
pub const PLATFORM_SECTIONS: &[&str] = &[
    "http",
    "grpc",
    "flags",
    "log",
    "telemetry",
    "metrics",
    "limits",
    "auth",
    "shutdown",
    "tls",
    "cors",
];

/// The platform's settings that a reload puts in force while serving (exact keys, or prefixes
/// ending in `.` or `_`); `auth.keys` only when keys were configured at start.
pub const LIVE: &[&str] = &[
    "flags.",
    "log.level",
    "log.sampling.",
    "limits.max_in_flight",
    "limits.throttle_",
    "auth.keys",
];

/// A service's settings: its own sections and the platform's, in one serde type with
/// `#[serde(default, deny_unknown_fields)]` (so a misspelt key is refused). The platform's
/// getters come from [`platform_sections!`](crate::platform_sections) when the fields carry the
/// sections' names.
pub trait ServiceSettings:
    Serialize + DeserializeOwned + Default + Clone + Send + Sync + 'static
{
    /// The environment's prefix, e.g. `COUNTERS_` (`COUNTERS_HTTP__LISTEN` sets `http.listen`).
    const ENV_PREFIX: &'static str;
    /// The service's own top-level sections (the platform's are [`PLATFORM_SECTIONS`]).
    const SECTIONS: &'static [&'static str];

    /// `[log]`
    fn log(&self) -> &LogConfig;
    /// `[telemetry]`: trace export (with the platform's `otlp` cargo feature).
    fn telemetry(&self) -> &TelemetryConfig;
    /// `[metrics]`
    fn metrics(&self) -> &MetricsConfig;
    /// `[limits]`
    fn limits(&self) -> &LimitsConfig;
    /// `[auth]`
    fn auth(&self) -> &AuthConfig;
    /// `[shutdown]`
    fn shutdown(&self) -> &ShutdownConfig;
    /// `[tls]`
    fn tls(&self) -> &TlsConfig;
    /// `[cors]`: the web origins allowed to call the REST listeners from a browser.
    fn cors(&self) -> &CorsConfig;

    /// The service's feature flags and their defaults (`[flags]` refuses other names).
    const KNOWN_FLAGS: &'static [(&'static str, Rollout)] = &[];

    /// `[flags]`, when the service has feature flags.
    fn flags(&self) -> Option<&FlagsConfig> {
        None
    }

    /// Checks the service's own values that types cannot; the error names the key.
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }

    /// The keys of the secrets ([`Secret`](crate::config::Secret)) that differ between `self`
    /// and `other`: secrets print redacted, so a reload cannot see their changes otherwise.
    fn changed_secrets(&self, other: &Self) -> Vec<&'static str> {
        let _ = other;
        Vec::new()
    }

    /// Reads every layer, `file` included, and checks the values (the platform's sections,
    /// then [`ServiceSettings::validate`]).
    fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let sections: Vec<&str> = Self::SECTIONS
            .iter()
            .chain(PLATFORM_SECTIONS)
            .copied()
            .collect();
        let layers = Layers {
            env_prefix: Self::ENV_PREFIX,
            sections: &sections,
            file,
        };
        let settings: Self =
            layered(&Self::default(), &layers, figment::Figment::new()).extract()?;
        settings.check()?;
        Ok(settings)
    }

    /// Checks the values types cannot: the platform's sections, then
    /// [`ServiceSettings::validate`].
    fn check(&self) -> Result<(), ConfigError> {
        self.log().validate()?;
        self.telemetry().validate()?;
        self.limits().validate()?;
        self.auth().validate(&[])?;
        self.tls().validate()?;
        self.cors().validate()?;
        if let Some(flags) = self.flags() {
            crate::config::check_flags(flags, Self::KNOWN_FLAGS)?;
        }
        self.validate()
    }
}

/// The getters of [`ServiceSettings`] for the platform's sections, for a settings type whose
/// fields carry the sections' names (`log`, `telemetry`, `metrics`, `limits`, `auth`,
/// `shutdown`, `tls`, `cors`): written inside `impl ServiceSettings for Settings { … }`.
///
/// ```
/// use hexkv_platform::app::ServiceSettings;
/// use hexkv_platform::auth::AuthConfig;
/// use hexkv_platform::config::*;
///
/// #[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
/// #[serde(default, deny_unknown_fields)]
/// struct Settings {
///     log: LogConfig,
///     telemetry: TelemetryConfig,
///     metrics: MetricsConfig,
///     limits: LimitsConfig,
///     auth: AuthConfig,
///     shutdown: ShutdownConfig,
///     tls: TlsConfig,
///     cors: CorsConfig,
/// }
///
/// impl ServiceSettings for Settings {
///     const ENV_PREFIX: &'static str = "ORDERS_";
///     const SECTIONS: &'static [&'static str] = &[];
///     hexkv_platform::platform_sections!();
/// }
/// ```
#[macro_export]
macro_rules! platform_sections {
    () => {
        fn log(&self) -> &$crate::config::LogConfig {
            &self.log
        }
        fn telemetry(&self) -> &$crate::config::TelemetryConfig {
            &self.telemetry
        }
        fn metrics(&self) -> &$crate::config::MetricsConfig {
            &self.metrics
        }
        fn limits(&self) -> &$crate::config::LimitsConfig {
            &self.limits
        }
        fn auth(&self) -> &$crate::auth::AuthConfig {
            &self.auth
        }
        fn shutdown(&self) -> &$crate::config::ShutdownConfig {
            &self.shutdown
        }
        fn tls(&self) -> &$crate::config::TlsConfig {
            &self.tls
        }
        fn cors(&self) -> &$crate::config::CorsConfig {
            &self.cors
        }
    };
}

/// The settings of a service with no sections of its own (a probe, a proxy, a test): the
/// platform's sections only, from `SERVICE_*` variables.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlatformOnly {
    /// `[log]`
    pub log: LogConfig,
    /// `[telemetry]`
    pub telemetry: TelemetryConfig,
    /// `[metrics]`
    pub metrics: MetricsConfig,
    /// `[limits]`
    pub limits: LimitsConfig,
    /// `[auth]`
    pub auth: AuthConfig,
    /// `[shutdown]`
    pub shutdown: ShutdownConfig,
    /// `[tls]`
    pub tls: TlsConfig,
    /// `[cors]`
    pub cors: CorsConfig,
}

impl ServiceSettings for PlatformOnly {
    const ENV_PREFIX: &'static str = "SERVICE_";
    const SECTIONS: &'static [&'static str] = &[];
    crate::platform_sections!();
}

type ReloadHook<S> = Box<dyn Fn(&S) + Send + Sync>;
type Loader<S> = Arc<dyn Fn() -> Result<S, ConfigError> + Send + Sync>;

struct Listener {
    name: &'static str,
    listener: std::net::TcpListener,
    serving: Serving,
}

/// What a listener serves.
enum Serving {
    /// REST: the service's route table, over HTTP/1.1 and HTTP/2.
    Http(Routes),
    /// gRPC: the service's tonic services, over HTTP/2.
    Grpc(GrpcServices),
    /// Both, told apart by content type (`application/grpc…` is gRPC, gRPC-Web included),
    /// over HTTP/1.1 and HTTP/2.
    Both(Routes, GrpcServices),
}

/// One listener for REST and gRPC: a request whose content type is `application/grpc…`
/// (gRPC, gRPC-Web) goes to `grpc`, every other to `rest` — as etcd serves gRPC and its
/// gateway on one port.
fn by_content_type(rest: axum::Router, grpc: axum::Router) -> axum::Router {
    use tower::ServiceExt as _;
    let dispatch = tower::service_fn(move |request: axum::extract::Request| {
        let is_grpc = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
        let target = if is_grpc { grpc.clone() } else { rest.clone() };
        target.oneshot(request)
    });
    axum::Router::new().fallback_service(dispatch)
}

/// A service being put together; see the module docs.
pub struct Application<S: ServiceSettings> {
    /// The configuration file, watched for changes.
    file: Option<PathBuf>,
    /// How a reload reads the settings; `None`: [`ServiceSettings::load`] of `file`.
    loader: Option<Loader<S>>,
    /// The service's keys that a reload puts in force (beside the platform's [`LIVE`]).
    live: Vec<&'static str>,
    /// The OpenAPI document served at `/openapi.json`.
    openapi: Option<Arc<str>>,
    settings: S,
    telemetry: Arc<hexkv_telemetry::Telemetry>,
    /// Whether the platform started the telemetry (and so flushes it at the end).
    owns_telemetry: bool,
    readiness: Readiness,
    reloads: Vec<ReloadHook<S>>,
    listeners: Vec<Listener>,
    in_flight: Arc<InFlightLimit>,
    grpc_in_flight: Arc<InFlightLimit>,
    throttle: Arc<Throttle<Identity>>,
    auth: Option<AuthPolicy>,
    /// `[flags]` in force, changed by reloads.
    flags: Arc<FeatureFlags>,
    /// Begins when the listeners close; in every request's extensions.
    drain: Drain,
}

impl<S: ServiceSettings> Application<S> {
    /// The service as its command line asks, in a binary named `name`:
    ///
    /// - `NAME [--config FILE]` (or `NAME serve …`): [`Application::new`] with that file;
    /// - `NAME config show [--config FILE]`: prints the effective settings (every layer applied)
    ///   as TOML, secrets as `"<redacted>"`, and exits 0;
    /// - `NAME config check FILE`: checks one file over the defaults (without the environment),
    ///   prints `FILE: ok` and exits 0.
    ///
    /// Settings that cannot be used exit 2 with the key and the reason; `--help` and
    /// `--version` answer and exit 0.
    pub fn from_args(name: &'static str, version: &'static str) -> anyhow::Result<Self> {
        use clap::{CommandFactory as _, FromArgMatches as _};

        let matches = crate::cli::Args::command()
            .name(name)
            .version(version)
            .get_matches();
        let args = crate::cli::Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let refused = |e: ConfigError| -> ! {
            eprintln!("{name}: invalid configuration: {e}");
            std::process::exit(2)
        };
        match args.command {
            None | Some(crate::cli::Command::Serve) => {}
            Some(crate::cli::Command::Config { action }) => match action {
                crate::cli::ConfigAction::Show => {
                    let settings = S::load(args.config.as_deref()).unwrap_or_else(|e| refused(e));
                    print!("{}", crate::cli::to_toml(&settings));
                    std::process::exit(0)
                }
                crate::cli::ConfigAction::Check { file } => {
                    let checked = crate::config::file_over(&S::default(), &file)
                        .extract::<S>()
                        .map_err(ConfigError::from)
                        .and_then(|settings| settings.check());
                    if let Err(e) = checked {
                        eprintln!("{name}: {}: {e}", file.display());
                        std::process::exit(2)
                    }
                    println!("{}: ok", file.display());
                    std::process::exit(0)
                }
            },
        }
        let settings = S::load(args.config.as_deref()).unwrap_or_else(|e| refused(e));
        Self::start(name, version, settings, args.config)
    }

    /// Reads the settings (with `file`, if any) and starts the telemetry: logs, the metrics
    /// recorder (`hexkv_build_info{version}`) when `metrics.enabled`, trace export over OTLP
    /// when `[telemetry]` and the `OTEL_*` variables say so (the `otlp` cargo feature). `name`
    /// names the service in problem types, the `WWW-Authenticate` realm, gRPC error details
    /// ([`crate::set_service_name`]) and, unless `telemetry.service_name` says otherwise, its
    /// spans. Call it on a Tokio runtime, once per process.
    pub fn new(
        name: &'static str,
        version: &'static str,
        file: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let settings = S::load(file.as_deref())?;
        Self::start(name, version, settings, file)
    }

    fn start(
        name: &'static str,
        version: &'static str,
        settings: S,
        file: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let telemetry = Arc::new(init_telemetry(&settings, name, version, "")?);
        let load = {
            let file = file.clone();
            move || S::load(file.as_deref())
        };
        let mut app = Self::with_telemetry(name, settings, telemetry)?.reload_from(file, load);
        app.owns_telemetry = true;
        Ok(app)
    }

    /// An application over settings the composition root has read, with the telemetry it has
    /// started (for a service with flags of its own, or traces set up its own way; the root
    /// flushes it when it is done); reloads read the settings as
    /// [`Application::reload_from`] says, and are off until then.
    pub fn with_telemetry(
        name: &'static str,
        settings: S,
        telemetry: Arc<hexkv_telemetry::Telemetry>,
    ) -> anyhow::Result<Self> {
        crate::set_service_name(name);
        telemetry.spawn_housekeeping();
        let limits = settings.limits();
        let in_flight = InFlightLimit::new(limits.max_in_flight);
        let grpc_in_flight = InFlightLimit::new(limits.max_in_flight);
        let throttle = Arc::new(Throttle::new(
            limits.throttle_per_minute,
            limits.throttle_burst,
            limits.throttle_max_clients,
        ));
        let auth = settings.auth().policy()?;
        let flags = Arc::new(crate::config::feature_flags(
            settings.flags().unwrap_or(&FlagsConfig::new()),
            S::KNOWN_FLAGS,
        ));
        Ok(Self {
            file: None,
            loader: None,
            live: Vec::new(),
            openapi: None,
            settings,
            telemetry,
            owns_telemetry: false,
            readiness: Readiness::new(),
            reloads: Vec::new(),
            listeners: Vec::new(),
            in_flight,
            grpc_in_flight,
            throttle,
            auth,
            flags,
            drain: Drain::new(),
        })
    }

    /// The drain of this application's listeners, for a long-lived response that a handler does
    /// not reach through its request (a handler takes it as an extractor, or with
    /// [`Drain::of`]): see [`Drain`].
    pub fn drain(&self) -> Drain {
        self.drain.clone()
    }

    /// The feature flags of `[flags]`, which reloads change: hand them to the service, which
    /// asks `is_on(name, identity)` per request.
    pub fn feature_flags(&self) -> Arc<FeatureFlags> {
        Arc::clone(&self.flags)
    }

    /// Uses `flags` (made by the composition root before the application, from the same
    /// settings) as the flags reloads change.
    pub fn with_feature_flags(mut self, flags: Arc<FeatureFlags>) -> Self {
        self.flags = flags;
        self
    }

    /// The settings read at start.
    pub fn settings(&self) -> &S {
        &self.settings
    }

    /// Adds a check to `/readyz` (store reachable, cache warm…); draining is always one.
    pub fn readiness_check(mut self, name: &'static str, check: impl ReadinessCheck) -> Self {
        self.readiness = self.readiness.with_check(name, check);
        self
    }

    /// Called with the new settings after each reload that changed a live key, once the
    /// platform has applied its own; the service applies what it may change live (its keys in
    /// [`Application::live`]).
    pub fn on_reload(mut self, apply: impl Fn(&S) + Send + Sync + 'static) -> Self {
        self.reloads.push(Box::new(apply));
        self
    }

    /// The service's settings that its [`Application::on_reload`] hooks put in force while
    /// serving (exact keys, or prefixes ending in `.` or `_`); a reload names every other
    /// changed key as needing a restart.
    pub fn live(mut self, keys: &[&'static str]) -> Self {
        self.live.extend_from_slice(keys);
        self
    }

    /// Reloads (on SIGHUP, and when `file` changes) read the settings with `load` — e.g. the
    /// same layers as at start, with the command line's flags over them.
    pub fn reload_from(
        mut self,
        file: Option<PathBuf>,
        load: impl Fn() -> Result<S, ConfigError> + Send + Sync + 'static,
    ) -> Self {
        self.file = file;
        self.loader = Some(Arc::new(load));
        self
    }

    /// Serves `document` (the service's OpenAPI document, JSON) at `GET /openapi.json` on every
    /// REST listener, to anyone.
    pub fn openapi(mut self, document: impl Into<Arc<str>>) -> Self {
        self.openapi = Some(document.into());
        self
    }

    /// Serves `routes` over HTTP/1.1 and HTTP/2 on `addr` (port 0 picks one; see
    /// [`Application::local_addr`]), named `name` in logs and metrics (`key` is the setting
    /// that gave the address, for errors: `http.listen`), with admission and the limits on its
    /// routes and the platform's routes beside them. The address is bound now.
    pub fn http(
        mut self,
        name: &'static str,
        key: &str,
        addr: SocketAddr,
        routes: Routes,
    ) -> anyhow::Result<Self> {
        self.bind(name, key, addr, Serving::Http(routes))?;
        Ok(self)
    }

    /// Serves `services` over HTTP/2 on `addr`, as [`Application::http`] does routes: each
    /// service behind admission by its RPCs' declarations, the request timeout and load
    /// shedding, with `grpc.health.v1.Health` and server reflection beside them (see
    /// [`GrpcServices`]).
    pub fn grpc(
        mut self,
        name: &'static str,
        key: &str,
        addr: SocketAddr,
        services: GrpcServices,
    ) -> anyhow::Result<Self> {
        self.bind(name, key, addr, Serving::Grpc(services))?;
        Ok(self)
    }

    fn bind(
        &mut self,
        name: &'static str,
        key: &str,
        addr: SocketAddr,
        serving: Serving,
    ) -> anyhow::Result<()> {
        self.settings.auth().validate(&[(key, addr)])?;
        // REST and gRPC given the same address (not port 0): one listener serves both.
        if addr.port() != 0
            && let Some(at) = self
                .listeners
                .iter()
                .position(|l| l.listener.local_addr().ok() == Some(addr))
        {
            let shared = self.listeners.remove(at);
            let both = match (shared.serving, serving) {
                (Serving::Http(routes), Serving::Grpc(services))
                | (Serving::Grpc(services), Serving::Http(routes)) => {
                    Serving::Both(routes, services)
                }
                _ => anyhow::bail!("{key} = {addr}: the address is already served"),
            };
            self.listeners.insert(
                at,
                Listener {
                    serving: both,
                    ..shared
                },
            );
            return Ok(());
        }
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("{key}: cannot listen on {addr}"))?;
        self.adopt(name, listener, serving)
    }

    /// REST and gRPC on one listener the composition root has bound: requests are told apart
    /// by content type (`application/grpc…` is gRPC, gRPC-Web included), as etcd serves gRPC
    /// and its gateway on one port.
    pub fn http_and_grpc_on(
        mut self,
        name: &'static str,
        listener: std::net::TcpListener,
        routes: Routes,
        services: GrpcServices,
    ) -> anyhow::Result<Self> {
        self.adopt(name, listener, Serving::Both(routes, services))?;
        Ok(self)
    }

    /// [`Application::http`] on a listener the composition root has bound (so that it knows
    /// the address before serving).
    pub fn http_on(
        mut self,
        name: &'static str,
        listener: std::net::TcpListener,
        routes: Routes,
    ) -> anyhow::Result<Self> {
        self.adopt(name, listener, Serving::Http(routes))?;
        Ok(self)
    }

    /// [`Application::grpc`] on a listener the composition root has bound.
    pub fn grpc_on(
        mut self,
        name: &'static str,
        listener: std::net::TcpListener,
        services: GrpcServices,
    ) -> anyhow::Result<Self> {
        self.adopt(name, listener, Serving::Grpc(services))?;
        Ok(self)
    }

    fn adopt(
        &mut self,
        name: &'static str,
        listener: std::net::TcpListener,
        serving: Serving,
    ) -> anyhow::Result<()> {
        self.settings
            .auth()
            .validate(&[(name, listener.local_addr()?)])?;
        listener.set_nonblocking(true)?;
        self.listeners.push(Listener {
            name,
            listener,
            serving,
        });
        Ok(())
    }

    /// The address the listener `name` is bound to.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.name == name)
            .and_then(|l| l.listener.local_addr().ok())
    }

    /// Every listener's name and address, in the order added.
    pub fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|l| Some((l.name, l.listener.local_addr().ok()?)))
            .collect()
    }

    /// What surrounds the service's routes on a REST listener.
    fn http_stack(&self, readiness: &Arc<Readiness>) -> HttpStack {
        let limits = self.settings.limits();
        HttpStack {
            admission: Admission {
                auth: self.auth.clone(),
                throttle: Some(Arc::clone(&self.throttle)),
            },
            in_flight: Arc::clone(&self.in_flight),
            request_timeout: limits.request_timeout(),
            max_body_bytes: limits.max_value_bytes,
            readiness: Arc::clone(readiness),
            metrics: self.telemetry.metrics().cloned(),
            openapi: self.openapi.clone(),
        }
    }

    /// Serves every listener until SIGTERM or SIGINT, then drains (see the module docs).
    pub async fn run(self) -> anyhow::Result<()> {
        let shutdown = Shutdown::on_signals()?;
        self.run_until(shutdown).await
    }

    /// [`Application::run`] with the shutdown's tokens given (tests cancel them).
    pub async fn run_until(mut self, shutdown: Shutdown) -> anyhow::Result<()> {
        let settings = self.settings.clone();
        #[cfg(feature = "tls")]
        let tls = crate::tls::TlsSetup::load(settings.tls())?;
        #[cfg(feature = "tls")]
        let _cert_watcher = tls
            .as_ref()
            .map(|t| crate::tls::watch(Arc::clone(&t.certs)))
            .transpose()?;
        let readiness = Arc::new(std::mem::take(&mut self.readiness));
        let limits = settings.limits();
        let descriptors =
            crate::serve::raise_open_file_limit(limits.max_connections as u64 + 1_024);
        if let Some(available) = descriptors
            && available < limits.max_connections as u64 + 256
        {
            tracing::warn!(
                max_connections = limits.max_connections,
                open_file_limit = available,
                "limits.max_connections does not fit the open-file limit (RLIMIT_NOFILE): \
                 connections past it will fail; lower the cap or raise the limit"
            );
        }
        let mut servers = Servers::new(
            limits.connection_limits(),
            limits.connections(),
            &self.drain,
        );
        let mut grpc_health = Vec::new();
        for listener in std::mem::take(&mut self.listeners) {
            let grpc_stack = |grpc_web| GrpcStack {
                auth: self.auth.clone(),
                throttle: Arc::clone(&self.throttle),
                in_flight: Arc::clone(&self.grpc_in_flight),
                timeout: limits.request_timeout(),
                grpc_web,
            };
            let (app, alpn, protocols): (_, &[&[u8]], _) = match listener.serving {
                Serving::Http(routes) => (
                    self.http_stack(&readiness).router(routes),
                    &[b"h2", b"http/1.1"],
                    Protocols::Any,
                ),
                Serving::Grpc(services) => {
                    let built = services.build(&grpc_stack(false)).await?;
                    grpc_health.push(built.health);
                    let app = built
                        .routes
                        .into_axum_router()
                        .layer(hexkv_telemetry::ObserveLayer::new(built.observe));
                    (app, &[b"h2"], Protocols::Http2)
                }
                Serving::Both(routes, services) => {
                    let rest = self.http_stack(&readiness).router(routes);
                    let built = services.build(&grpc_stack(true)).await?;
                    grpc_health.push(built.health);
                    let grpc = built
                        .routes
                        .into_axum_router()
                        .layer(hexkv_telemetry::ObserveLayer::new(built.observe));
                    (
                        by_content_type(rest, grpc),
                        &[b"h2", b"http/1.1"],
                        Protocols::Any,
                    )
                }
            };
            // Every request can see the drain: long-lived responses end when it begins.
            let mut app = app.layer(axum::Extension(self.drain.clone()));
            // Browsers' cross-origin calls (REST, gRPC-Web), preflights answered before
            // admission; native gRPC has no browsers to answer.
            if protocols == Protocols::Any
                && let Some(cors) = cors_layer(settings.cors())
            {
                app = app.layer(cors);
            }
            #[cfg(feature = "tls")]
            let transport = crate::tls::transport(tls.as_ref(), alpn)?;
            #[cfg(not(feature = "tls"))]
            let (transport, _) = (crate::serve::Transport::Plain, alpn);
            let tcp = tokio::net::TcpListener::from_std(listener.listener)?;
            tracing::info!(listener = listener.name, addr = %tcp.local_addr()?, "listening");
            servers.spawn(listener.name, tcp, app, transport, protocols);
        }
        // The telemetry the platform started, it flushes; the composition root's, it leaves.
        let flush = self.owns_telemetry.then(|| Arc::clone(&self.telemetry));
        let _reload = match self.loader.take() {
            None => None,
            Some(load) => {
                let file = self.file.clone();
                let mut live: Vec<&'static str> = LIVE
                    .iter()
                    .copied()
                    // Turning authentication on or off takes a restart.
                    .filter(|key| self.auth.is_some() || *key != "auth.keys")
                    .collect();
                live.extend(std::mem::take(&mut self.live));
                let Self {
                    telemetry,
                    reloads,
                    in_flight,
                    grpc_in_flight,
                    throttle,
                    auth,
                    flags,
                    ..
                } = self;
                let apply = move |new: &S| {
                    if let Err(e) = telemetry.set_level(&new.log().level) {
                        tracing::warn!(error = %e, "log.level refused; the running one stays");
                    }
                    telemetry.set_sampling(new.log().sampling.to_sampling());
                    let limits = new.limits();
                    in_flight.set(limits.max_in_flight);
                    grpc_in_flight.set(limits.max_in_flight);
                    throttle.set(
                        limits.throttle_per_minute,
                        limits.throttle_burst,
                        limits.throttle_max_clients,
                    );
                    rotate_keys(auth.as_ref(), new.auth());
                    if let Some(new_flags) = new.flags() {
                        flags.replace(
                            new_flags
                                .iter()
                                .map(|(name, setting)| (name.clone(), setting.rollout())),
                        );
                    }
                    for apply in &reloads {
                        apply(new);
                    }
                };
                let reloader =
                    crate::reload::Reloader::new(settings.clone(), move || load(), live, apply);
                // What a reload changed or refused, it logs itself.
                Some(crate::reload::spawn(file.as_deref(), move || {
                    let _ = reloader.reload();
                })?)
            }
        };
        let requested = shutdown.requested.cancelled_owned();
        // Readiness fails first: `/readyz` and gRPC health.
        let draining = async move {
            readiness.begin_draining();
            for health in &grpc_health {
                health.set_serving(false).await;
            }
        };
        let served = servers
            .run(requested, draining, settings.shutdown(), shutdown.hurried)
            .await;
        // The last spans (the shutdown's own) are exported before the service goes on to close
        // its stores and exit.
        if let Some(telemetry) = flush {
            let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        }
        served
    }
}

/// The CORS answers of `[cors]`, `None` when no origin is allowed: the listed origins (or any),
/// any method a route may serve, the headers a request asks to send (the origin is what is
/// checked: an API key still has to be valid), and the headers a browser's script may read of
/// the answer (the version, the request id, the wait, the gRPC status).
fn cors_layer(cors: &CorsConfig) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

    if cors.allowed_origins.is_empty() {
        return None;
    }
    let origins = if cors.any_origin() {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            cors.allowed_origins
                .iter()
                // Validated: an origin is printable ASCII.
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::PUT,
                Method::POST,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers([
                header::ETAG,
                header::LOCATION,
                header::RETRY_AFTER,
                header::WWW_AUTHENTICATE,
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("grpc-status"),
                HeaderName::from_static("grpc-message"),
                HeaderName::from_static("grpc-status-details-bin"),
            ])
            .max_age(std::time::Duration::from_secs(cors.max_age_s)),
    )
}

/// The process's telemetry from `settings`: logs (`[log]`), the metrics recorder when
/// `metrics.enabled` (`hexkv_build_info{version, features}`), and trace export over OTLP when
/// `[telemetry]` and the `OTEL_*` variables say so (the `otlp` cargo feature), its decision
/// logged. `name` is the spans' `service.name` unless `telemetry.service_name` says otherwise.
/// [`Application::new`] calls it; a composition root that starts the telemetry itself (to run
/// a subcommand first, say) calls it and hands the result to [`Application::with_telemetry`].
/// Call it on a Tokio runtime, once per process.
///
/// # Errors
/// When a subscriber or recorder is already installed, or the settings are unusable.
pub fn init_telemetry<S: ServiceSettings>(
    settings: &S,
    name: &str,
    version: &str,
    features: &str,
) -> anyhow::Result<hexkv_telemetry::Telemetry> {
    let log = settings.log();
    let log = hexkv_telemetry::LogSettings {
        level: log.level.clone(),
        json: match log.format {
            LogFormat::Auto => !std::io::IsTerminal::is_terminal(&std::io::stdout()),
            LogFormat::Json => true,
            LogFormat::Pretty => false,
        },
        sampling: log.sampling.to_sampling(),
    };
    let build = hexkv_telemetry::BuildInfo {
        version: version.into(),
        features: features.to_owned(),
    };
    let build = settings.metrics().enabled.then_some(&build);
    let export = settings.telemetry().exports_from_env();
    #[cfg(feature = "otlp")]
    let telemetry = {
        let t = settings.telemetry();
        let traces = export.is_on().then(|| hexkv_telemetry::TraceSettings {
            endpoint: (!t.otlp_endpoint.is_empty()).then(|| t.otlp_endpoint.clone()),
            service_name: if t.service_name.is_empty() {
                name.to_owned()
            } else {
                t.service_name.clone()
            },
            sample_ratio: t.sample_ratio,
        });
        hexkv_telemetry::init_with_traces(&log, build, traces.as_ref())?
    };
    #[cfg(not(feature = "otlp"))]
    let telemetry = {
        let _ = name;
        hexkv_telemetry::init(&log, build)?
    };
    match export {
        TraceExport::On(why) if cfg!(feature = "otlp") => {
            tracing::info!(reason = why, "exporting traces")
        }
        TraceExport::On(_) => tracing::warn!(
            "traces are asked for, but this binary was built without the `otlp` cargo feature"
        ),
        TraceExport::Off(why) => tracing::debug!(reason = why, "not exporting traces"),
        TraceExport::Unsupported(names) => tracing::warn!(
            OTEL_TRACES_EXPORTER = %names,
            "OTEL_TRACES_EXPORTER names no exporter this binary has (only otlp); not exporting traces"
        ),
    }
    Ok(telemetry)
}

/// Puts the keys of a reloaded `[auth]` in force (requests already admitted keep their key).
/// Turning authentication on or off takes a restart: the running policy stays, and a warning
/// says so.
fn rotate_keys(running: Option<&AuthPolicy>, new: &AuthConfig) {
    match (running, new.keys.is_empty()) {
        (Some(policy), false) => match ApiKeys::new(&new.keys) {
            Ok(keys) => policy.authenticator.set(keys),
            Err(e) => tracing::warn!(error = %e, "auth.keys refused; the running keys stay"),
        },
        (None, true) => {}
        (Some(_), true) => tracing::warn!(
            "auth.keys is now empty: turning authentication off takes a restart; the running keys stay"
        ),
        (None, false) => tracing::warn!(
            "auth.keys is now set: turning authentication on takes a restart; requests are still let in without a key"
        ),
    }
}
