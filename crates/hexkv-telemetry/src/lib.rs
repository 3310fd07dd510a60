//! hexkv's observability, set up by one function: [`init`].
//!
//! - **Logs**: `tracing` events as JSON lines or pretty text on stdout, filtered by level
//!   directives (`RUST_LOG` syntax) that can change while running ([`Telemetry::set_level`]),
//!   thinned by [`sampling`] (the first N events per call site and interval, then every Mth, with
//!   a count of what was dropped).
//! - **Metrics**: the [`metrics`] facade with the Prometheus recorder ([`Metrics`]); the REST
//!   front end serves [`Metrics::render`] at `/metrics`.
//! - **Requests**: [`observe::ObserveLayer`], one span, log line and two metrics per request,
//!   shared by the REST and gRPC adapters.
//! - **Authentication refusals**: [`auth_refused`], one metric and one log line, shared by both
//!   front ends.
//!
//! Nothing here knows a service's domain: the spans and histograms around a service's ports
//! are its composition root's (hexkv's: `hexkv-server`'s `instrumented`), with the metric names
//! listed in [`metrics`]. What requests carry is never logged.

mod auth;
#[cfg(feature = "collector")]
pub mod collector;
pub mod metrics;
pub mod observe;
pub mod request_id;
pub mod sampling;
#[cfg(feature = "otlp")]
pub mod traces;

use std::sync::Arc;

/// The target of the spans a service puts around its ports (the "service" and "store" steps of
/// a trace: request → service → store). Made at DEBUG with `target: hexkv_telemetry::PORT_SPANS`,
/// they are exported with the traces whatever `log.level` says (the trace layer has its own
/// filter), and stay out of the logs unless the level asks for them.
pub const PORT_SPANS: &str = "hexkv_telemetry::port";

use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

pub use crate::auth::auth_refused;
pub use crate::metrics::Metrics;
pub use crate::observe::{Finished, Observe, ObserveLayer, Started};
pub use crate::sampling::{Sampler, Sampling};
#[cfg(feature = "otlp")]
pub use crate::traces::TraceSettings;

/// How logs are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Level or filter directives, as in `RUST_LOG` (`info`, `warn,hexkv_http=debug`).
    pub level: String,
    /// One JSON object per line (else human-readable text).
    pub json: bool,
    /// Log sampling.
    pub sampling: Sampling,
}

/// What the binary is, for `hexkv_build_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// The version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// The cargo features it was built with, comma-separated.
    pub features: String,
}

/// Why telemetry could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// Level directives that do not parse.
    #[error("invalid log level directives {directives:?}: {reason}")]
    Level {
        /// The directives given.
        directives: String,
        /// What is wrong with them.
        reason: String,
    },
    /// A global subscriber is already installed.
    #[error("cannot install the log subscriber: {0}")]
    Subscriber(String),
    /// The metrics recorder could not be installed.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// The trace exporter could not be set up.
    #[error("cannot set up trace export: {0}")]
    Traces(String),
}

/// Parses level directives, as [`init`] and [`Telemetry::set_level`] do: for validating
/// configuration before applying it.
pub fn parse_level(directives: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::builder()
        .parse(directives)
        .map_err(|e| TelemetryError::Level {
            directives: directives.to_owned(),
            reason: e.to_string(),
        })
}

/// An error and its causes on one line (`outer: middle: root`), for logs.
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// The handle [`init`] returns: changes settings while running.
#[derive(Debug)]
pub struct Telemetry {
    level: reload::Handle<EnvFilter, Registry>,
    sampler: Arc<Sampler>,
    metrics: Option<Metrics>,
    #[cfg(feature = "otlp")]
    traces: Option<traces::Traces>,
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the global log subscriber (and, with `build`, the Prometheus recorder with
/// `hexkv_build_info`). Call once per process.
pub fn init(log: &LogSettings, build: Option<&BuildInfo>) -> Result<Telemetry, TelemetryError> {
    init_with(log, build, Vec::new())
}

/// As [`init`], and with `traces`, exports spans over OTLP and accepts W3C trace context on
/// requests. Call inside a tokio runtime (the exporter runs on it).
#[cfg(feature = "otlp")]
pub fn init_with_traces(
    log: &LogSettings,
    build: Option<&BuildInfo>,
    traces: Option<&TraceSettings>,
) -> Result<Telemetry, TelemetryError> {
    let Some(settings) = traces else {
        return init_with(log, build, Vec::new());
    };
    let (layer, traces) = traces::layer::<Registry>(settings)?;
    let mut telemetry = init_with(log, build, vec![layer])?;
    telemetry.traces = Some(traces);
    Ok(telemetry)
}

fn init_with(
    log: &LogSettings,
    build: Option<&BuildInfo>,
    mut layers: Vec<BoxedLayer>,
) -> Result<Telemetry, TelemetryError> {
    let (filter, level) = reload::Layer::new(parse_level(&log.level)?);
    let sampler = Arc::new(Sampler::new(log.sampling));
    let output: BoxedLayer = if log.json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().boxed()
    };
    let output = output.with_filter(tracing_subscriber::filter::FilterExt::and(
        filter,
        sampling::SampleFilter(Arc::clone(&sampler)),
    ));
    let metrics = build
        .map(|b| Metrics::install(&b.version, &b.features))
        .transpose()?;
    layers.insert(0, output.boxed());
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
    Ok(Telemetry {
        level,
        sampler,
        metrics,
        #[cfg(feature = "otlp")]
        traces: None,
    })
}

impl Telemetry {
    /// Replaces the level directives; events and spans follow at once.
    pub fn set_level(&self, directives: &str) -> Result<(), TelemetryError> {
        let filter = parse_level(directives)?;
        self.level
            .reload(filter)
            .map_err(|e| TelemetryError::Subscriber(e.to_string()))
    }

    /// Replaces the sampling settings.
    pub fn set_sampling(&self, sampling: Sampling) {
        self.sampler.set(sampling);
    }

    /// The log sampler (its report runs in [`Telemetry::spawn_housekeeping`]).
    pub fn sampler(&self) -> &Arc<Sampler> {
        &self.sampler
    }

    /// The Prometheus recorder, when installed.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }

    /// Exports the spans still buffered and stops the trace exporter (blocking, a few seconds at
    /// most). Call once, at shutdown, from a thread that may block.
    pub fn shutdown(&self) {
        #[cfg(feature = "otlp")]
        if let Some(traces) = &self.traces {
            traces.shutdown();
        }
    }

    /// Starts the periodic work on the current tokio runtime: the sampler's report of dropped
    /// events (once per sampling interval) and the exporter's upkeep. Stops with the runtime.
    pub fn spawn_housekeeping(&self) {
        let sampler = Arc::clone(&self.sampler);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(sampler.settings().interval).await;
                sampler.report();
            }
        });
        if let Some(metrics) = self.metrics.clone() {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Metrics::UPKEEP_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    metrics.run_upkeep();
                }
            });
        }
    }
}
