//! One span, one log line and one histogram sample per request, for any HTTP-based front end.
//!
//! [`ObserveLayer`] is a tower layer over `http::Request`/`http::Response`, so axum and tonic
//! share it; what differs between REST and gRPC (the span's fields, the metric names and labels,
//! how a response's status is read) is an [`Observe`] implementation in each adapter. For every
//! request it:
//!
//! - opens the span the adapter makes (method, route or RPC, request id…) and runs the request
//!   inside it, so every log line and child span (service, store) carries it;
//! - when the response is ready, records `status` and `latency_us` on the span and logs
//!   `request finished` with them (at WARN for server errors, INFO otherwise);
//! - records its latency in the adapter's histogram, whose `_count` series counts the requests
//!   (one registry lookup per request rather than two for a separate counter).

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{HeaderName, HeaderValue, Request, Response};
use metrics::{Label, SharedString};
use tower::{Layer, Service};
use tracing::Span;
use tracing::instrument::{Instrument, Instrumented};

/// What an adapter tells [`ObserveLayer`] about its requests.
pub trait Observe: Clone + Send + Sync + 'static {
    /// The latency histogram's name (seconds); its `_count` counts the requests.
    const DURATION: &'static str;
    /// The name of the label that carries the status.
    const STATUS_LABEL: &'static str;

    /// Starts observing `request`: its span, which must declare the fields `status` and
    /// `latency_us` (as `tracing::field::Empty`), and the labels of its metrics besides the
    /// status. Labels must have a bounded set of values.
    fn start<B>(&self, request: &Request<B>) -> Started;

    /// The status of `response` as a label value, and whether it is a server-side failure.
    fn finish<B>(&self, response: &Response<B>) -> Finished;
}

/// What [`Observe::start`] returns.
#[derive(Debug)]
pub struct Started {
    /// The request's span.
    pub span: Span,
    /// The metric labels besides the status.
    pub labels: Vec<Label>,
    /// A header to add to the response (the request id, when the protocol has no other layer
    /// that adds it).
    pub response_header: Option<(HeaderName, HeaderValue)>,
}

/// What [`Observe::finish`] returns.
#[derive(Debug)]
pub struct Finished {
    /// The status label's value (`"404"`, `"NOT_FOUND"`).
    pub status: SharedString,
    /// A failure of the server rather than of the request (5xx; INTERNAL, UNAVAILABLE…).
    pub server_error: bool,
}

/// The histogram handles already registered, by label set: a request records through its
/// handle without the registry's lookup (which builds a key, clones its labels and hashes them).
/// Each worker thread keeps its own copy of the handles it used, so the common case touches no
/// lock and no reference count shared between cores. Bounded: past `MAX_CACHED` label sets,
/// requests go through the registry.
struct Handles {
    /// Tells this layer's handles apart in the threads' caches.
    id: u64,
    map: RwLock<HashMap<u64, (Vec<Label>, metrics::Histogram)>>,
    /// A fast hash: labels come from a small set the adapters bound (`other`, `unmatched`), so
    /// no client can choose them to collide.
    hasher: foldhash::fast::FixedState,
}

const MAX_CACHED: usize = 4096;

/// A thread's handles: by layer id and label hash.
type LocalHandles =
    HashMap<(u64, u64), (Vec<Label>, metrics::Histogram), foldhash::fast::FixedState>;

thread_local! {
    static LOCAL: std::cell::RefCell<LocalHandles> = std::cell::RefCell::default();
}

impl Default for Handles {
    fn default() -> Self {
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self {
            id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            map: RwLock::default(),
            hasher: foldhash::fast::FixedState::default(),
        }
    }
}

impl Handles {
    fn hash(&self, labels: &[Label]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        for label in labels {
            label.key().hash(&mut hasher);
            label.value().hash(&mut hasher);
        }
        hasher.finish()
    }

    /// Records `value` in the histogram `name{labels}`.
    fn record(&self, name: &'static str, labels: Vec<Label>, value: f64) {
        let hash = self.hash(&labels);
        let key = (self.id, hash);
        let recorded = LOCAL
            .try_with(|local| match local.borrow().get(&key) {
                Some((known, handle)) if *known == labels => {
                    handle.record(value);
                    true
                }
                _ => false,
            })
            .unwrap_or(false);
        if recorded {
            return;
        }
        let handle = self.histogram(name, hash, labels.clone());
        handle.record(value);
        // A thread being torn down has no cache any more; the shared map served it.
        let _ = LOCAL.try_with(|local| {
            let mut local = local.borrow_mut();
            if local.len() < MAX_CACHED {
                local.insert(key, (labels, handle));
            }
        });
    }

    /// The handle from the shared map, registering it on first use.
    fn histogram(&self, name: &'static str, hash: u64, labels: Vec<Label>) -> metrics::Histogram {
        {
            let map = self.map.read().unwrap_or_else(|e| e.into_inner());
            if let Some((known, handle)) = map.get(&hash)
                && *known == labels
            {
                return handle.clone();
            }
        }
        let handle = metrics::histogram!(name, labels.iter());
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.len() < MAX_CACHED {
            map.insert(hash, (labels, handle.clone()));
        }
        handle
    }
}

/// The layer; see the module docs.
#[derive(Clone)]
pub struct ObserveLayer<O> {
    observe: O,
    handles: Arc<Handles>,
}

impl<O: std::fmt::Debug> std::fmt::Debug for ObserveLayer<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserveLayer")
            .field("observe", &self.observe)
            .finish_non_exhaustive()
    }
}

impl<O> ObserveLayer<O> {
    /// A layer observing requests as `observe` describes them.
    pub fn new(observe: O) -> Self {
        Self {
            observe,
            handles: Arc::default(),
        }
    }
}

impl<S, O: Clone> Layer<S> for ObserveLayer<O> {
    type Service = ObserveService<S, O>;

    fn layer(&self, inner: S) -> Self::Service {
        ObserveService {
            inner,
            observe: self.observe.clone(),
            handles: Arc::clone(&self.handles),
        }
    }
}

/// The service of [`ObserveLayer`].
#[derive(Clone)]
pub struct ObserveService<S, O> {
    inner: S,
    observe: O,
    handles: Arc<Handles>,
}

impl<S, O, ReqB, ResB> Service<Request<ReqB>> for ObserveService<S, O>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    O: Observe,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ObserveFuture<S::Future, O>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let started = self.observe.start(&request);
        #[cfg(feature = "otlp")]
        crate::traces::continue_trace(&started.span, request.headers());
        let inner = {
            let _entered = started.span.enter();
            self.inner.call(request)
        };
        ObserveFuture {
            inner: inner.instrument(started.span),
            observe: self.observe.clone(),
            handles: Arc::clone(&self.handles),
            labels: Some(started.labels),
            response_header: started.response_header,
            start: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`ObserveService`].
    pub struct ObserveFuture<F, O> {
        #[pin]
        inner: Instrumented<F>,
        observe: O,
        handles: Arc<Handles>,
        labels: Option<Vec<Label>>,
        response_header: Option<(HeaderName, HeaderValue)>,
        start: Instant,
    }
}

impl<F, O, ResB, E> Future for ObserveFuture<F, O>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    O: Observe,
{
    type Output = Result<Response<ResB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let result = ready!(this.inner.as_mut().poll(cx));
        let elapsed = this.start.elapsed();
        let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let span = this.inner.span();
        let (status, server_error) = match &result {
            Ok(response) => {
                let finished = this.observe.finish(response);
                (finished.status, finished.server_error)
            }
            Err(_) => (SharedString::const_str("error"), true),
        };
        span.record("status", &*status);
        span.record("latency_us", latency_us);
        span.in_scope(|| {
            if server_error {
                tracing::warn!(status = &*status, latency_us, "request finished");
            } else {
                tracing::info!(status = &*status, latency_us, "request finished");
            }
        });
        if let Some(mut labels) = this.labels.take() {
            labels.push(Label::new(O::STATUS_LABEL, status));
            this.handles
                .record(O::DURATION, labels, elapsed.as_secs_f64());
        }
        let mut result = result;
        if let (Ok(response), Some((name, value))) = (&mut result, this.response_header.take()) {
            response.headers_mut().insert(name, value);
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::ServiceExt;

    #[derive(Clone)]
    struct Plain;

    impl Observe for Plain {
        const DURATION: &'static str = "test_request_duration_seconds";
        const STATUS_LABEL: &'static str = "status";

        fn start<B>(&self, request: &Request<B>) -> Started {
            Started {
                span: tracing::info_span!(
                    "request",
                    path = request.uri().path(),
                    status = tracing::field::Empty,
                    latency_us = tracing::field::Empty
                ),
                labels: vec![Label::new("path", request.uri().path().to_owned())],
                response_header: Some((
                    HeaderName::from_static("x-request-id"),
                    HeaderValue::from_static("id-1"),
                )),
            }
        }

        fn finish<B>(&self, response: &Response<B>) -> Finished {
            Finished {
                status: response.status().as_u16().to_string().into(),
                server_error: response.status().is_server_error(),
            }
        }
    }

    #[tokio::test]
    async fn counts_times_and_labels_each_request() {
        let (recorder, metrics) = crate::Metrics::local().unwrap();
        let service = tower::service_fn(|request: Request<()>| async move {
            let status = if request.uri().path() == "/fail" {
                503
            } else {
                200
            };
            Ok::<_, Infallible>(Response::builder().status(status).body(()).unwrap())
        });
        let service = ObserveLayer::new(Plain).layer(service);
        let guard = metrics::set_default_local_recorder(&recorder);
        for path in ["/a", "/a", "/fail"] {
            let response = service
                .clone()
                .oneshot(Request::get(path).body(()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.headers()["x-request-id"], "id-1");
        }
        drop(guard);
        let text = metrics.render();
        assert!(
            text.contains(r#"test_request_duration_seconds_count{path="/fail",status="503"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"test_request_duration_seconds_count{path="/a",status="200"} 2"#),
            "{text}"
        );
    }

    /// Each worker thread caches its handles: counts from many threads and two layers add up,
    /// each layer's to its own series.
    #[test]
    fn counts_add_up_across_threads_and_layers() {
        let (recorder, metrics) = crate::Metrics::local().unwrap();
        let ok = tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::builder().status(200).body(()).unwrap())
        });
        let failing = tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::builder().status(503).body(()).unwrap())
        });
        let first = ObserveLayer::new(Plain).layer(ok);
        let second = ObserveLayer::new(Plain).layer(failing);
        let recorder = Arc::new(recorder);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let (first, second, recorder) = (first.clone(), second.clone(), &recorder);
                scope.spawn(move || {
                    let _guard = metrics::set_default_local_recorder(&**recorder);
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    runtime.block_on(async {
                        for _ in 0..25 {
                            let request = || Request::get("/k").body(()).unwrap();
                            first.clone().oneshot(request()).await.unwrap();
                            second.clone().oneshot(request()).await.unwrap();
                        }
                    });
                });
            }
        });
        let text = metrics.render();
        for status in ["200", "503"] {
            let line = format!(
                r#"test_request_duration_seconds_count{{path="/k",status="{status}"}} 100"#
            );
            assert!(text.contains(&line), "{text}");
        }
    }
}
