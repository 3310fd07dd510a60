//! Request ids: every request gets one, every response and log line carries it.
//!
//! A client's `x-request-id` is kept when it is a sane token (1–128 characters of
//! `[A-Za-z0-9._:-]`), so ids can be correlated across services; otherwise one is made: a random
//! per-process prefix and a counter (`3f9a1c07d2b4e815-000000000000002a`), unique without a system call per
//! request. The id is put back on the request (for the trace span), on the response, and in a
//! task-local so that error bodies built deep in an extractor can include it without threading it
//! through every function.
//!
//! It is a tower layer rather than `axum::middleware::from_fn` because `from_fn` clones the inner
//! service and boxes a future on every request; this runs on every request, so it is worth the
//! few lines.

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use axum::extract::Request;
use axum::http::Response;
use axum::http::{HeaderName, HeaderValue};
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

/// The header that carries the request id, both ways.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

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

fn is_acceptable(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// `<16 hex digits of a random per-process prefix>-<16 hex digits of a counter>`, formatted by hand
/// into a stack buffer (this runs on every request without an id).
fn new_id() -> HeaderValue {
    static PREFIX: LazyLock<u64> = LazyLock::new(|| uuid::Uuid::new_v4().as_u64_pair().0);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = [b'-'; 33];
    for (i, word) in [*PREFIX, n].into_iter().enumerate() {
        for digit in 0..16 {
            id[i * 17 + digit] = HEX[(word >> (60 - 4 * digit)) as usize & 0xf];
        }
    }
    HeaderValue::from_bytes(&id).expect("hex digits and a dash are a valid header")
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
        let id = match request.headers().get(&REQUEST_ID_HEADER) {
            Some(given) if is_acceptable(given.as_bytes()) => given.clone(),
            _ => {
                let id = new_id();
                request.headers_mut().insert(REQUEST_ID_HEADER, id.clone());
                id
            }
        };
        ResponseFuture {
            inner: Box::pin(REQUEST_ID.scope(id.clone(), self.inner.call(request))),
            id: Some(id),
        }
    }
}

/// The response future of [`RequestIdService`]: runs the inner future with the id in scope, then
/// sets the id on the response.
pub struct ResponseFuture<F> {
    inner: Pin<Box<TaskLocalFuture<HeaderValue, F>>>,
    id: Option<HeaderValue>,
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut response = ready!(self.inner.as_mut().poll(cx))?;
        if let Some(id) = self.id.take() {
            response.headers_mut().insert(REQUEST_ID_HEADER, id);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acceptable_ids() {
        assert!(is_acceptable(b"abc-123_x.y:z"));
        assert!(!is_acceptable(b""));
        assert!(!is_acceptable(b"has space"));
        assert!(!is_acceptable("x".repeat(129).as_bytes()));
    }

    #[test]
    fn made_ids_are_unique_and_acceptable() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert!(is_acceptable(a.as_bytes()));
    }
}
