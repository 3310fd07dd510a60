//! The Rust client SDK for hexkv, over gRPC (and over HTTP with the `http` feature).
//!
//! ```no_run
//! # async fn example() -> Result<(), hexkv_client::ClientError> {
//! use hexkv_client::{Client, ClientOptions, Precondition};
//!
//! let client = Client::connect("http://127.0.0.1:50051", ClientOptions::default()).await?;
//! let written = client.put("app/color", "blue", Precondition::Absent).await?;
//! let entry = client.get("app/color").await?;
//! assert_eq!(entry.version, written.version);
//! # Ok(()) }
//! ```
//!
//! Every call has a deadline ([`ClientOptions::timeout`], per attempt). Transient failures
//! (gRPC `UNAVAILABLE`, and `RESOURCE_EXHAUSTED` with a retry hint; HTTP 503 and 429) are retried
//! with exponential backoff and full jitter, honouring the server's hint (`RetryInfo`, or
//! `Retry-After`), within a cap on attempts and on total time ([`RetryPolicy`]). Reads, listings
//! and unconditional deletes are retried; writes only if [`RetryPolicy::retry_writes`] is set,
//! and a write with a precondition only after a failure that says it changed nothing
//! ([`ClientError::changed_nothing`]): never after [`ClientError::OutcomeUnknown`], a deadline,
//! or a connection lost mid-call, whose write may have been applied — a retry of it could fail
//! its precondition against its own first attempt.
//!
//! With the `otlp` feature, each call carries the W3C trace context (`traceparent`) of the
//! caller's current `tracing` span, so the server's spans join the caller's trace.
//!
//! Both transports give the same results and the same [`ClientError`]s, with two differences
//! the REST API imposes: [`Client::delete`] cannot tell whether the key existed (`None`), and
//! the keys `.` and `..` cannot be named in a URL.

mod error;
mod grpc;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "otlp")]
mod trace_context;

use std::time::Duration;

use bytes::Bytes;
use tonic::transport::Channel;

pub use error::ClientError;
pub use hexkv_core::{Precondition, Version};
use hexkv_resilience::retry::{self, Operation};
pub use hexkv_resilience::retry::{Jitter, RetryPolicy};
/// The gRPC status codes of [`ClientError::Other`].
pub use tonic::Code;

/// Settings of a [`Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// The deadline of each attempt (sent to the server as `grpc-timeout`, and enforced here).
    pub timeout: Duration,
    /// When to retry.
    pub retry: RetryPolicy,
    /// The largest response accepted, in bytes (a value plus framing).
    pub max_message_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            max_message_bytes: 64 * 1024 * 1024 + 4096,
        }
    }
}

/// A stored entry, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value, byte-exact.
    pub value: Bytes,
    /// The version of its last write.
    pub version: Version,
}

/// The result of a put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The version the write was given.
    pub version: Version,
    /// True when the key did not exist before.
    pub created: bool,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// Keys and versions, in key order.
    pub items: Vec<(String, Version)>,
    /// Pass back as the cursor for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// How a [`Client`] reaches the server.
#[derive(Clone)]
enum Transport {
    Grpc(grpc::GrpcTransport),
    #[cfg(feature = "http")]
    Http(http::HttpTransport),
}

/// A hexkv client. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    transport: Transport,
    options: ClientOptions,
}

/// Dispatches one attempt to the transport.
macro_rules! attempt {
    ($self:ident . $op:ident ( $($arg:expr),* )) => {
        match &$self.transport {
            Transport::Grpc(t) => t.$op($($arg),*).await,
            #[cfg(feature = "http")]
            Transport::Http(t) => t.$op($($arg),*).await,
        }
    };
}

impl Client {
    /// Connects over gRPC to `endpoint` (e.g. `http://127.0.0.1:50051`).
    pub async fn connect(
        endpoint: impl Into<String>,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let transport = grpc::GrpcTransport::connect(endpoint.into(), &options).await?;
        Ok(Self {
            transport: Transport::Grpc(transport),
            options,
        })
    }

    /// Sends the API key `key` with every call: `Authorization: Bearer <key>` over HTTP, the
    /// `authorization` metadata over gRPC. Fails if the key is not visible ASCII.
    pub fn with_api_key(mut self, key: &str) -> Result<Self, ClientError> {
        let invalid = || ClientError::InvalidArgument {
            field: "api_key".into(),
            message: "an API key must be visible ASCII".into(),
        };
        let value = format!("Bearer {key}");
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid());
        }
        match &mut self.transport {
            Transport::Grpc(t) => {
                let mut value: tonic::metadata::AsciiMetadataValue =
                    value.parse().map_err(|_| invalid())?;
                value.set_sensitive(true);
                t.authorization = Some(value);
            }
            #[cfg(feature = "http")]
            Transport::Http(t) => {
                let mut value =
                    reqwest::header::HeaderValue::from_str(&value).map_err(|_| invalid())?;
                value.set_sensitive(true);
                t.authorization = Some(value);
            }
        }
        Ok(self)
    }

    /// A gRPC client over an existing channel.
    pub fn from_channel(channel: Channel, options: ClientOptions) -> Self {
        Self {
            transport: Transport::Grpc(grpc::GrpcTransport::from_channel(channel, &options)),
            options,
        }
    }

    /// A client of the REST API at `base_url` (e.g. `http://127.0.0.1:8080`). Connections are
    /// made on first use, so an unreachable server shows as [`ClientError::Unavailable`] on the
    /// first call; only an invalid URL fails here.
    #[cfg(feature = "http")]
    pub fn http(base_url: impl Into<String>, options: ClientOptions) -> Result<Self, ClientError> {
        Ok(Self {
            transport: Transport::Http(http::HttpTransport::new(base_url.into(), &options)?),
            options,
        })
    }

    /// The entry under `key`.
    pub async fn get(&self, key: &str) -> Result<Entry, ClientError> {
        retry::run(&self.options.retry, Operation::Read, || async {
            attempt!(self.get(key))
        })
        .await
    }

    /// Writes `value` under `key` if `precondition` holds.
    pub async fn put(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        precondition: Precondition,
    ) -> Result<Written, ClientError> {
        let value = value.into();
        let operation = match precondition {
            Precondition::None => Operation::Write,
            _ => Operation::Conditional,
        };
        retry::run(&self.options.retry, operation, || async {
            attempt!(self.put(key, &value, precondition))
        })
        .await
    }

    /// Removes `key` if `precondition` holds. `Some(true)` when it existed, `Some(false)` when
    /// it was already absent, `None` when the transport does not say (HTTP).
    pub async fn delete(
        &self,
        key: &str,
        precondition: Precondition,
    ) -> Result<Option<bool>, ClientError> {
        let operation = match precondition {
            Precondition::None => Operation::Idempotent,
            _ => Operation::Conditional,
        };
        retry::run(&self.options.retry, operation, || async {
            attempt!(self.delete(key, precondition))
        })
        .await
    }

    /// One page of keys starting with `prefix`; `limit` 0 means the server's default.
    pub async fn list(
        &self,
        prefix: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page, ClientError> {
        retry::run(&self.options.retry, Operation::Read, || async {
            attempt!(self.list(prefix, limit, cursor))
        })
        .await
    }
}
