//! Prometheus metrics: the names hexkv records, and the recorder that renders them for
//! `GET /metrics`.
//!
//! Code records through the [`metrics`] facade (`metrics::counter!(NAME, labels…)`), which costs
//! nothing until a recorder is installed; [`Metrics::install`] installs the Prometheus one. Every
//! label has a bounded set of values (routes are matched routes, never raw paths; RPCs are known
//! methods), so an attacker cannot grow the exposition.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `hexkv_http_request_duration_seconds` | histogram (its `_count`: requests) | `method`, `route`, `status` |
//! | `hexkv_grpc_request_duration_seconds` | histogram (its `_count`: calls) | `service`, `method`, `code` |
//! | `hexkv_store_operation_duration_seconds` | histogram | `backend`, `operation`, `outcome` |
//! | `hexkv_store_breaker_state` | gauge | — (0 closed, 1 half-open, 2 open) |
//! | `hexkv_store_breaker_transitions_total` | counter | `from`, `to` |
//! | `hexkv_requests_shed_total` | counter | `protocol` |
//! | `hexkv_requests_throttled_total` | counter | `protocol` |
//! | `hexkv_requests_timed_out_total` | counter | `protocol` |
//! | `hexkv_log_group_commit_records` | histogram | — |
//! | `hexkv_log_fsync_duration_seconds` | histogram | — |
//! | `hexkv_keys` | gauge | — (the memory store's live keys) |
//! | `hexkv_log_bytes` | gauge | — (log not yet covered by a snapshot) |
//! | `hexkv_compactions_total` | counter | `outcome` |
//! | `hexkv_compaction_duration_seconds` | histogram | — |
//! | `hexkv_log_events_dropped_total` | counter | `level` |
//! | `hexkv_auth_failures_total` | counter | `protocol`, `reason` |
//! | `hexkv_build_info` | gauge (1) | `version`, `features` |

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// REST request latency, by method, matched route and status code; `_count` counts requests.
pub const HTTP_DURATION: &str = "hexkv_http_request_duration_seconds";
/// gRPC call latency, by service, method and status code name; `_count` counts calls.
pub const GRPC_DURATION: &str = "hexkv_grpc_request_duration_seconds";
/// Store operation latency, by backend, operation and outcome.
pub const STORE_DURATION: &str = "hexkv_store_operation_duration_seconds";
/// The store breaker's state: 0 closed, 1 half-open, 2 open.
pub const BREAKER_STATE: &str = "hexkv_store_breaker_state";
/// The store breaker's state changes, by `from` and `to`.
pub const BREAKER_TRANSITIONS: &str = "hexkv_store_breaker_transitions_total";
/// Requests refused by load shedding, by protocol.
pub const SHED: &str = "hexkv_requests_shed_total";
/// Requests refused by per-client throttling, by protocol.
pub const THROTTLED: &str = "hexkv_requests_throttled_total";
/// Requests cut by the request timeout, by protocol.
pub const TIMED_OUT: &str = "hexkv_requests_timed_out_total";
/// Records written and synced together by one group commit of the memory store's log.
pub const GROUP_COMMIT_RECORDS: &str = "hexkv_log_group_commit_records";
/// How long one `fdatasync` of the memory store's log took.
pub const FSYNC_DURATION: &str = "hexkv_log_fsync_duration_seconds";
/// Live keys in the memory store.
pub const KEYS: &str = "hexkv_keys";
/// Bytes of the memory store's log not yet covered by a snapshot (what a start replays after it).
pub const LOG_BYTES: &str = "hexkv_log_bytes";
/// Compactions of the memory store's log, by outcome (`ok`, `error`).
pub const COMPACTIONS: &str = "hexkv_compactions_total";
/// How long one compaction (snapshot and clean-up) took.
pub const COMPACTION_DURATION: &str = "hexkv_compaction_duration_seconds";
/// Requests refused by authentication, by protocol and reason (`missing`, `invalid`,
/// `forbidden`).
pub const AUTH_FAILURES: &str = "hexkv_auth_failures_total";
/// Log events dropped by sampling, by level.
pub const LOG_EVENTS_DROPPED: &str = "hexkv_log_events_dropped_total";
/// Connections open now, by listener (`http`, `grpc`).
pub const CONNECTIONS_OPEN: &str = "hexkv_connections_open";
/// Connections closed at once on arrival, by listener and reason (`total`: `limits.max_connections`
/// reached; `per_client`: `limits.max_connections_per_client` reached for its address).
pub const CONNECTIONS_REFUSED: &str = "hexkv_connections_refused_total";
/// Connections closed for being too slow or idle, by listener and phase (`handshake`: no TLS
/// handshake and connection preface in time; `headers`: request headers not complete in time;
/// `idle`: no request in flight for `limits.idle_timeout_ms`).
pub const CONNECTIONS_TIMED_OUT: &str = "hexkv_connections_timed_out_total";
/// Always 1; the labels carry the version and the cargo features of the binary.
pub const BUILD_INFO: &str = "hexkv_build_info";

/// Latency buckets in seconds: 50 µs to 10 s, about three per decade (a store call on the
/// embedded store takes microseconds; one that times out, seconds).
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Group-commit batch sizes: powers of two up to 4096 records.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// Why metrics could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The exporter refused its configuration or a recorder was already installed.
    #[error("cannot set up the Prometheus recorder: {0}")]
    Recorder(String),
}

/// The installed Prometheus recorder.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn builder() -> Result<PrometheusBuilder, MetricsError> {
    let err = |e: metrics_exporter_prometheus::BuildError| MetricsError::Recorder(e.to_string());
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .map_err(err)?
        .set_buckets_for_metric(Matcher::Full(GROUP_COMMIT_RECORDS.into()), BATCH_BUCKETS)
        .map_err(err)
}

impl Metrics {
    /// Installs the Prometheus recorder as the process's global recorder and records
    /// `hexkv_build_info`. Fails if a recorder is already installed.
    pub fn install(version: &str, features: &str) -> Result<Metrics, MetricsError> {
        let handle = builder()?
            .install_recorder()
            .map_err(|e| MetricsError::Recorder(e.to_string()))?;
        metrics::gauge!(BUILD_INFO, "version" => version.to_owned(), "features" => features.to_owned())
            .set(1.0);
        Ok(Metrics { handle })
    }

    /// A recorder that is not installed, and the handle that renders it: for tests, with
    /// [`metrics::with_local_recorder`].
    pub fn local()
    -> Result<(metrics_exporter_prometheus::PrometheusRecorder, Metrics), MetricsError> {
        let recorder = builder()?.build_recorder();
        let handle = recorder.handle();
        Ok((recorder, Metrics { handle }))
    }

    /// The exposition in Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Housekeeping the exporter needs now and then (draining histogram buffers); the binary
    /// calls it every few seconds.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// How often [`Metrics::run_upkeep`] should run.
    pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
}
