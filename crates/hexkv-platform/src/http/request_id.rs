//! Request ids: every request gets one, every response and log line carries it.
//!
//! A client's `x-request-id` is kept when it is a sane token, otherwise one is made (see
//! [`hexkv_telemetry::request_id`]). The id is put back on the request (for the trace span), on the response, and in a
//! task-local so that error bodies built deep in an extractor can include it without threading it
//! through every function.
//!
//! It is a tower layer rather than `axum::middleware::from_fn` because `from_fn` clones the inner
//! service and boxes a future on every request; this runs on every request, so it is worth the
//! few lines (and its future is pin-projected, not boxed, for the same reason).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::Response;
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

pub use hexkv_telemetry::request_id::REQUEST_ID_HEADER;

tokio::task_local! {
    static REQUEST_ID: HeaderValue;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    REQUEST_ID
        .try_with(|id| id.to_str().ok().map(str::to_owned))
        .ok()
        .flatten()
}

/// Adds request ids; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

/// The service of [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S, B> Service<Request> for RequestIdService<S>
where
    S: Service<Request, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let id =
            hexkv_telemetry::request_id::from_client(request.headers().get(&REQUEST_ID_HEADER));
        request.headers_mut().insert(REQUEST_ID_HEADER, id.clone());
        ResponseFuture {
            inner: REQUEST_ID.scope(id.clone(), self.inner.call(request)),
            id: Some(id),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`RequestIdService`]: runs the inner future with the id in scope,
    /// then sets the id on the response.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: TaskLocalFuture<HeaderValue, F>,
        id: Option<HeaderValue>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            response.headers_mut().insert(REQUEST_ID_HEADER, id);
        }
        Poll::Ready(Ok(response))
    }
}
