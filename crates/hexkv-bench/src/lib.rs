//! hexkv's load generator, behind `hexkv bench`: like `redis-benchmark` or etcd's benchmark
//! tool, it drives a running service through the client SDK (gRPC or REST) and reports
//! throughput, errors by kind, and latency quantiles from an HDR histogram.
//!
//! - **Workloads** ([`Workload`]): `get`, `put`, `mixed` (a read ratio), `cas` (read, then write
//!   with the version read; a lost race is a *conflict*, not an error).
//! - **Keys** ([`keys`]): a key count, key and value sizes, uniform or Zipf-distributed access.
//! - **Load**: a fixed number of concurrent workers (closed loop), or a fixed request rate (open
//!   loop, [`Schedule`]): request *i* is due at the first millisecond boundary at or after
//!   `start + i / rate` and its latency is measured from that moment, not from when a worker got
//!   to it, so a slow server cannot hide its queueing (no coordinated omission). A [`Pacer`]
//!   per worker sends each request at its due time to within microseconds.
//! - **Fan-out, fan-in**: the workers run as tasks, each with its own [`Stats`]; at the end
//!   their histograms and counts are merged into one [`Report`].
//! - A warm-up period whose requests are not counted, a progress line each second (stderr), and
//!   the report as a table or as JSON.
//!
//! Also here, for the benchmarks' ceilings rather than the load: [`group_commit`], the bare
//! group-committed log behind the durable bare handlers (Unix).

#[cfg(unix)]
pub mod group_commit;
pub mod keys;
pub mod pacer;
pub mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hexkv_client::{Client, ClientError, Precondition};
use rand::SeedableRng as _;
use tokio::time::Instant;

pub use keys::{Distribution, KeyChooser};
pub use pacer::Pacer;
pub use stats::{Latency, Stats};

/// What each request does.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Workload {
    /// Reads of existing keys.
    Get,
    /// Unconditional writes.
    Put,
    /// Reads with probability `read_ratio`, else writes.
    Mixed {
        /// The share of reads, 0.0–1.0.
        read_ratio: f64,
    },
    /// Read the key, then write it only if its version is still the one read.
    Cas,
}

/// How much load, and for how long.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Spec {
    /// The workload.
    pub workload: Workload,
    /// Distinct keys.
    pub keys: u64,
    /// Bytes per key.
    pub key_size: usize,
    /// Bytes per value.
    pub value_size: usize,
    /// Key access distribution.
    pub distribution: Distribution,
    /// Concurrent workers (requests in flight at most).
    pub concurrency: usize,
    /// Requests per second for an open loop; `None`: closed loop (each worker sends its next
    /// request when the last one is answered).
    pub rate: Option<f64>,
    /// How long to measure (after the warm-up); with `requests`, whichever ends first.
    pub duration: Option<Duration>,
    /// How many requests to measure (after the warm-up).
    pub requests: Option<u64>,
    /// Requests sent during this first period are not counted.
    pub warmup: Duration,
    /// Keys are `prefix` + a zero-padded index.
    pub prefix: String,
    /// Write every key once before the run (for `get`, `mixed` and `cas`).
    pub preload: bool,
}

impl Spec {
    fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 {
            return Err("concurrency must be at least 1".into());
        }
        if self.duration.is_none() && self.requests.is_none() {
            return Err("give a duration or a number of requests".into());
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(format!("the rate must be above 0, got {rate}"));
        }
        if let Workload::Mixed { read_ratio } = self.workload
            && !(0.0..=1.0).contains(&read_ratio)
        {
            return Err(format!("the read ratio is 0.0 to 1.0, got {read_ratio}"));
        }
        Ok(())
    }
}

/// How often an open loop releases the requests that have come due: every millisecond, the
/// granularity of tokio's own timers, at which requests leave together (fewer wake-ups on both
/// sides than one at a time, "Pacing the open loop" in `docs/performance.md`).
pub const SLOT: Duration = Duration::from_millis(1);

/// When requests are due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// Each worker sends as soon as its last request is answered.
    Closed,
    /// Request `i` is due at the first [`SLOT`] boundary (counted from `start`) at or after
    /// `start + i / rate`: the rate, released a slot at a time.
    Open {
        /// When request 0 is due.
        start: Instant,
        /// Requests per second.
        rate: f64,
    },
}

impl Schedule {
    /// When request `ticket` is due (`None`: now, in a closed loop).
    pub fn due(&self, ticket: u64) -> Option<Instant> {
        match *self {
            Schedule::Closed => None,
            Schedule::Open { start, rate } => {
                let slot = SLOT.as_nanos() as u64;
                // Rounded to the nanosecond first, so that a due time on a boundary (1 / rate
                // a whole number of slots) stays on it rather than moving to the next.
                let ideal = (ticket as f64 * 1e9 / rate).round() as u64;
                Some(start + Duration::from_nanos(ideal.div_ceil(slot) * slot))
            }
        }
    }
}

/// The results of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// What was asked.
    pub spec: Spec,
    /// `grpc` or `http`.
    pub protocol: String,
    /// The measured period (the warm-up excluded), in seconds.
    pub elapsed_s: f64,
    /// Requests measured (successes, conflicts and errors).
    pub requests: u64,
    /// Successful requests.
    pub ok: u64,
    /// Lost compare-and-swap races (`cas`).
    pub conflicts: u64,
    /// Failed requests by kind.
    pub errors: std::collections::BTreeMap<String, u64>,
    /// Measured requests per second.
    pub throughput_rps: f64,
    /// Latency of successful requests, in microseconds.
    pub latency_us: Latency,
}

impl Report {
    /// The report as a human-readable table.
    pub fn table(&self) -> String {
        let s = &self.spec;
        let ms = |us: u64| format!("{:.3} ms", us as f64 / 1000.0);
        let load = match s.rate {
            None => format!("{} workers, closed loop", s.concurrency),
            Some(rate) => format!("{rate} req/s open loop, up to {} in flight", s.concurrency),
        };
        let errors = if self.errors.is_empty() {
            "none".to_owned()
        } else {
            self.errors
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let l = &self.latency_us;
        format!(
            "workload     {:?} over {} ({} keys of {} B, {:?}, values of {} B)\n\
             load         {load}\n\
             measured     {:.2} s after {:.1} s of warm-up\n\
             requests     {} ({} ok, {} conflicts)\n\
             errors       {errors}\n\
             throughput   {:.1} req/s\n\
             latency      p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n",
            s.workload,
            self.protocol,
            s.keys,
            s.key_size,
            s.distribution,
            s.value_size,
            self.elapsed_s,
            s.warmup.as_secs_f64(),
            self.requests,
            self.ok,
            self.conflicts,
            self.throughput_rps,
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max),
        )
    }
}

/// The kind of a failure, as the report counts it.
pub fn error_kind(e: &ClientError) -> &'static str {
    match e {
        ClientError::NotFound => "not_found",
        ClientError::PreconditionFailed { .. } => "precondition_failed",
        ClientError::InvalidArgument { .. } => "invalid_argument",
        ClientError::TooLarge { .. } => "too_large",
        ClientError::Throttled { .. } => "throttled",
        ClientError::Unavailable { .. } => "unavailable",
        ClientError::DeadlineExceeded => "deadline_exceeded",
        ClientError::OutcomeUnknown { .. } => "outcome_unknown",
        ClientError::Connect(_) => "connect",
        ClientError::Other { .. } => "other",
    }
}

/// Shared by the workers.
struct Shared {
    clients: Vec<Client>,
    spec: Spec,
    chooser: KeyChooser,
    value: Bytes,
    schedule: Schedule,
    /// The next request number.
    tickets: AtomicU64,
    /// Requests finished (for the progress line).
    done: AtomicU64,
    failed: AtomicU64,
    stop: AtomicBool,
    /// When counting starts (after the warm-up).
    measure_from: Instant,
    /// When sending stops (duration mode).
    until: Option<Instant>,
    /// Requests counted so far (requests mode).
    counted: AtomicU64,
}

/// Writes every key once, with `spec.concurrency` writers.
async fn preload(clients: &[Client], spec: &Spec, value: &Bytes) -> Result<(), String> {
    let next = Arc::new(AtomicU64::new(0));
    let mut writers: tokio::task::JoinSet<Result<(), String>> = tokio::task::JoinSet::new();
    for w in 0..spec.concurrency {
        let client = clients[w % clients.len()].clone();
        let (next, value) = (Arc::clone(&next), value.clone());
        let (keys, prefix, key_size) = (spec.keys, spec.prefix.clone(), spec.key_size);
        writers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= keys {
                    return Ok(());
                }
                let key = keys::key_name(&prefix, i, key_size);
                client
                    .put(&key, value.clone(), Precondition::None)
                    .await
                    .map_err(|e| format!("preloading {key}: {e}"))?;
            }
        });
    }
    while let Some(result) = writers.join_next().await {
        result.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// One request of the workload; `Ok(true)` on a lost compare-and-swap race.
async fn one(
    shared: &Shared,
    client: &Client,
    rng: &mut impl rand::Rng,
) -> Result<bool, ClientError> {
    let spec = &shared.spec;
    let key = keys::key_name(&spec.prefix, shared.chooser.next(rng), spec.key_size);
    let read = match spec.workload {
        Workload::Get => true,
        Workload::Put => false,
        Workload::Mixed { read_ratio } => rng.random_bool(read_ratio),
        Workload::Cas => {
            let precondition = match client.get(&key).await {
                Ok(entry) => Precondition::Version(entry.version),
                Err(ClientError::NotFound) => Precondition::Absent,
                Err(e) => return Err(e),
            };
            return match client.put(&key, shared.value.clone(), precondition).await {
                Ok(_) => Ok(false),
                Err(ClientError::PreconditionFailed { .. }) => Ok(true),
                Err(e) => Err(e),
            };
        }
    };
    if read {
        client.get(&key).await.map(|_| false)
    } else {
        client
            .put(&key, shared.value.clone(), Precondition::None)
            .await
            .map(|_| false)
    }
}

async fn worker(shared: Arc<Shared>, id: usize) -> Stats {
    let client = shared.clients[id % shared.clients.len()].clone();
    let mut rng = rand::rngs::SmallRng::from_os_rng();
    let mut stats = Stats::default();
    // Only an open loop waits, and only it needs a timer of its own.
    let mut pacer = matches!(shared.schedule, Schedule::Open { .. }).then(Pacer::new);
    while !shared.stop.load(Ordering::Relaxed) {
        let ticket = shared.tickets.fetch_add(1, Ordering::Relaxed);
        let due = shared.schedule.due(ticket);
        if let (Some(due), Some(until)) = (due, shared.until)
            && due >= until
        {
            break;
        }
        if let (Some(due), Some(pacer)) = (due, pacer.as_mut()) {
            pacer.until(due).await;
        }
        let started = due.unwrap_or_else(Instant::now);
        if shared.until.is_some_and(|until| started >= until) {
            break;
        }
        let result = one(&shared, &client, &mut rng).await;
        let latency = started.elapsed();
        shared.done.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            shared.failed.fetch_add(1, Ordering::Relaxed);
        }
        if started < shared.measure_from {
            continue; // warm-up
        }
        if let Some(limit) = shared.spec.requests
            && shared.counted.fetch_add(1, Ordering::Relaxed) >= limit
        {
            shared.stop.store(true, Ordering::Relaxed);
            break;
        }
        match result {
            Ok(false) => stats.success(latency),
            Ok(true) => stats.conflicts += 1,
            Err(e) => stats.error(error_kind(&e)),
        }
    }
    stats
}

/// Runs `spec` against the service behind `clients` (workers share them round-robin);
/// `protocol` names the transport in the report. With `progress`, a line a second goes to
/// stderr.
pub async fn run(
    clients: Vec<Client>,
    protocol: &str,
    spec: Spec,
    progress: bool,
) -> Result<Report, String> {
    spec.validate()?;
    if clients.is_empty() {
        return Err("no client".into());
    }
    let chooser = KeyChooser::new(spec.keys, spec.distribution)?;
    let value = Bytes::from(vec![b'v'; spec.value_size]);
    let needs_data = !matches!(spec.workload, Workload::Put);
    let mut shared = Shared {
        clients,
        chooser,
        value,
        schedule: Schedule::Closed,
        tickets: AtomicU64::new(0),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        measure_from: Instant::now(),
        until: None,
        counted: AtomicU64::new(0),
        spec,
    };
    if shared.spec.preload && needs_data {
        preload(&shared.clients, &shared.spec, &shared.value).await?;
    }
    let start = Instant::now();
    shared.measure_from = start + shared.spec.warmup;
    shared.until = shared.spec.duration.map(|d| shared.measure_from + d);
    shared.schedule = match shared.spec.rate {
        None => Schedule::Closed,
        Some(rate) => Schedule::Open { start, rate },
    };
    let shared = Arc::new(shared);
    let mut workers = tokio::task::JoinSet::new();
    for id in 0..shared.spec.concurrency {
        workers.spawn(worker(Arc::clone(&shared), id));
    }
    let ticker = progress.then(|| {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut last = 0;
            let mut tick =
                tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
            loop {
                tick.tick().await;
                let done = shared.done.load(Ordering::Relaxed);
                eprintln!(
                    "{:>5.0} s  {:>9} req/s  {:>9} done  {:>6} failed",
                    start.elapsed().as_secs_f64(),
                    done - last,
                    done,
                    shared.failed.load(Ordering::Relaxed)
                );
                last = done;
            }
        })
    });
    let mut total = Stats::default();
    while let Some(stats) = workers.join_next().await {
        total.merge(&stats.map_err(|e| e.to_string())?);
    }
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    let end = Instant::now().min(shared.until.unwrap_or_else(Instant::now));
    let elapsed_s = end
        .saturating_duration_since(shared.measure_from)
        .as_secs_f64();
    let requests = total.ok + total.conflicts + total.errors.values().sum::<u64>();
    Ok(Report {
        spec: shared.spec.clone(),
        protocol: protocol.to_owned(),
        elapsed_s,
        requests,
        ok: total.ok,
        conflicts: total.conflicts,
        errors: total.errors.clone(),
        throughput_rps: if elapsed_s > 0.0 {
            requests as f64 / elapsed_s
        } else {
            0.0
        },
        latency_us: total.summary(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_loop_spaces_requests_by_the_rate() {
        let start = Instant::now();
        let schedule = Schedule::Open {
            start,
            rate: 1000.0,
        };
        assert_eq!(schedule.due(0), Some(start));
        assert_eq!(schedule.due(1), Some(start + Duration::from_millis(1)));
        assert_eq!(
            schedule.due(2500),
            Some(start + Duration::from_millis(2500))
        );
        assert_eq!(Schedule::Closed.due(7), None);
    }

    #[test]
    fn an_open_loop_releases_requests_a_slot_at_a_time() {
        let start = Instant::now();
        let schedule = Schedule::Open {
            start,
            rate: 4000.0,
        };
        let ms = Duration::from_millis;
        // Four requests a slot: 0 at the start, 1–4 at the first boundary (request 4's ideal
        // time is on it), 5–8 at the second.
        let due: Vec<_> = (0..9).map(|i| schedule.due(i).unwrap() - start).collect();
        assert_eq!(
            due,
            [
                ms(0),
                ms(1),
                ms(1),
                ms(1),
                ms(1),
                ms(2),
                ms(2),
                ms(2),
                ms(2)
            ]
        );
        // Slower than a slot: each request has its own, the first boundary after it is due.
        let slow = Schedule::Open { start, rate: 300.0 };
        assert_eq!(slow.due(1), Some(start + ms(4)));
        assert_eq!(slow.due(3), Some(start + ms(10)));
    }

    #[test]
    fn invalid_specs_are_refused() {
        let spec = Spec {
            workload: Workload::Get,
            keys: 10,
            key_size: 16,
            value_size: 100,
            distribution: Distribution::Uniform,
            concurrency: 1,
            rate: None,
            duration: None,
            requests: Some(10),
            warmup: Duration::ZERO,
            prefix: "bench/".into(),
            preload: true,
        };
        assert!(spec.validate().is_ok());
        assert!(
            Spec {
                concurrency: 0,
                ..spec.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            Spec {
                requests: None,
                ..spec.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            Spec {
                rate: Some(0.0),
                ..spec.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            Spec {
                workload: Workload::Mixed { read_ratio: 1.5 },
                ..spec
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn the_json_report_has_its_documented_fields() {
        let mut stats = Stats::default();
        stats.success(Duration::from_micros(250));
        stats.error("unavailable");
        let report = Report {
            spec: Spec {
                workload: Workload::Mixed { read_ratio: 0.9 },
                keys: 10,
                key_size: 16,
                value_size: 100,
                distribution: Distribution::Zipf { exponent: 0.99 },
                concurrency: 4,
                rate: Some(100.0),
                duration: Some(Duration::from_secs(1)),
                requests: None,
                warmup: Duration::ZERO,
                prefix: "bench/".into(),
                preload: true,
            },
            protocol: "grpc".into(),
            elapsed_s: 1.0,
            requests: 2,
            ok: 1,
            conflicts: 0,
            errors: stats.errors.clone(),
            throughput_rps: 2.0,
            latency_us: stats.summary(),
        };
        let json = serde_json::to_value(&report).unwrap();
        for field in [
            "spec",
            "protocol",
            "elapsed_s",
            "requests",
            "ok",
            "conflicts",
            "errors",
            "throughput_rps",
            "latency_us",
        ] {
            assert!(json.get(field).is_some(), "{field} missing: {json}");
        }
        for q in ["p50", "p90", "p99", "p999", "max", "mean"] {
            assert!(json["latency_us"][q].is_number(), "{q}: {json}");
        }
        assert_eq!(json["errors"]["unavailable"], 1);
        assert_eq!(json["spec"]["workload"]["kind"], "mixed");
        assert_eq!(json["spec"]["distribution"]["kind"], "zipf");
        assert!(report.table().contains("p99"));
    }
}
