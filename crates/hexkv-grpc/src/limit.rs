//! The size limit of request messages, enforced as each message's length prefix arrives.
//!
//! A gRPC message travels as a 5-byte prefix (a compression flag and the length) and the message.
//! [`MessageLimitLayer`] watches the request body's prefixes as it passes through, and fails the
//! body with RESOURCE_EXHAUSTED — gRPC's convention (and grpc-go's behaviour) for a message over
//! the receive limit, and what a value over the limit gets from the service — as soon as a prefix
//! announces a longer message, before any of it is buffered. tonic's decoder turns that error
//! into the call's status. (tonic's own limit would answer OUT_OF_RANGE, which could only be
//! told apart by its message text.)

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::Frame;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http;
use tower::{Layer, Service};

/// Limits each request message to `max` bytes; see the module docs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MessageLimitLayer {
    max: usize,
}

impl MessageLimitLayer {
    pub(crate) fn new(max: usize) -> Self {
        Self { max }
    }
}

impl<S> Layer<S> for MessageLimitLayer {
    type Service = MessageLimit<S>;

    fn layer(&self, inner: S) -> MessageLimit<S> {
        MessageLimit {
            inner,
            max: self.max,
        }
    }
}

/// The service of [`MessageLimitLayer`].
#[derive(Debug, Clone)]
pub(crate) struct MessageLimit<S> {
    inner: S,
    max: usize,
}

/// Served under the name of the service it limits.
impl<S: tonic::server::NamedService> tonic::server::NamedService for MessageLimit<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for MessageLimit<S>
where
    S: Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let max = self.max;
        self.inner
            .call(request.map(|body| Body::new(Limited::new(body, max))))
    }
}

/// A request body whose message prefixes are checked against `max`.
struct Limited {
    inner: Body,
    max: usize,
    /// The prefix being read, and how much of it has arrived.
    prefix: [u8; 5],
    have: usize,
    /// Bytes of the current message still to pass.
    remaining: usize,
}

impl Limited {
    fn new(inner: Body, max: usize) -> Self {
        Self {
            inner,
            max,
            prefix: [0; 5],
            have: 0,
            remaining: 0,
        }
    }

    /// Follows the prefixes through `chunk`: the length of a message over the limit, if one
    /// begins in it.
    fn observe(&mut self, mut chunk: &[u8]) -> Option<usize> {
        while !chunk.is_empty() {
            if self.remaining > 0 {
                let skip = self.remaining.min(chunk.len());
                self.remaining -= skip;
                chunk = &chunk[skip..];
                continue;
            }
            let take = (5 - self.have).min(chunk.len());
            self.prefix[self.have..self.have + take].copy_from_slice(&chunk[..take]);
            self.have += take;
            chunk = &chunk[take..];
            if self.have == 5 {
                self.have = 0;
                let len = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]) as usize;
                if len > self.max {
                    return Some(len);
                }
                self.remaining = len;
            }
        }
        None
    }
}

impl http_body::Body for Limited {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        Poll::Ready(frame.map(|frame| {
            let frame = frame?;
            if let Some(data) = frame.data_ref()
                && let Some(len) = self.observe(data.chunk())
            {
                return Err(crate::status::message_too_large(len, self.max));
            }
            Ok(frame)
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(len: u32) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&len.to_be_bytes());
        out
    }

    #[test]
    fn prefixes_are_followed_across_chunks_and_messages() {
        let mut limited = Limited::new(Body::empty(), 10);
        // A message of 10 bytes, its prefix split over two chunks.
        let mut stream = prefix(10);
        stream.extend_from_slice(&[7; 10]);
        // Then one of 11, whose prefix arrives a byte at a time.
        stream.extend_from_slice(&prefix(11));
        let (first, rest) = stream.split_at(3);
        assert_eq!(limited.observe(first), None);
        let (middle, last) = rest.split_at(rest.len() - 5);
        assert_eq!(limited.observe(middle), None);
        for (i, byte) in last.iter().enumerate() {
            let seen = limited.observe(std::slice::from_ref(byte));
            assert_eq!(seen, (i == 4).then_some(11), "byte {i}");
        }
    }
}
