//! The Rust client SDK for hexkv, over gRPC.
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
//! Every call has a deadline ([`ClientOptions::timeout`]). Transient failures (`UNAVAILABLE`, and
//! `RESOURCE_EXHAUSTED` with a retry hint) are retried with exponential backoff and full jitter,
//! honouring the server's hint, within a cap on attempts and on total time ([`RetryPolicy`]).
//! Reads, listings and unconditional deletes are retried; writes only if
//! [`RetryPolicy::retry_writes`] is set.

mod error;
pub mod retry;

use std::time::Duration;

use bytes::Bytes;
use hexkv_grpc::pb;
use hexkv_grpc::pb::key_value_client::KeyValueClient;
use tonic::transport::{Channel, Endpoint};

pub use error::ClientError;
pub use hexkv_core::{Precondition, Version};
pub use retry::RetryPolicy;

/// Settings of a [`Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// The deadline of each attempt (sent to the server as `grpc-timeout`, and enforced here).
    pub timeout: Duration,
    /// When to retry.
    pub retry: RetryPolicy,
    /// The largest response message accepted, in bytes (a value plus framing).
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

/// A hexkv client. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    inner: KeyValueClient<Channel>,
    options: ClientOptions,
}

fn text(bytes: &Bytes) -> Result<String, ClientError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ClientError::Other {
        code: tonic::Code::DataLoss,
        message: "the server sent a key that is not UTF-8".into(),
    })
}

fn precondition(p: Precondition) -> Option<pb::Precondition> {
    use pb::precondition::Condition;
    let condition = match p {
        Precondition::None => return None,
        Precondition::Absent => Condition::Absent(pb::precondition::Absent {}),
        Precondition::Version(v) => Condition::Version(v.get()),
    };
    Some(pb::Precondition {
        condition: Some(condition),
    })
}

impl Client {
    /// Connects to `endpoint` (e.g. `http://127.0.0.1:50051`).
    pub async fn connect(
        endpoint: impl Into<String>,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let endpoint = Endpoint::from_shared(endpoint.into())
            .map_err(|e| ClientError::Connect(e.to_string()))?
            .connect_timeout(options.timeout);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        Ok(Self::from_channel(channel, options))
    }

    /// A client over an existing channel.
    pub fn from_channel(channel: Channel, options: ClientOptions) -> Self {
        let inner = KeyValueClient::new(channel)
            .max_decoding_message_size(options.max_message_bytes)
            .max_encoding_message_size(options.max_message_bytes);
        Self { inner, options }
    }

    /// Runs one RPC under the deadline and the retry policy.
    async fn call<Req, Resp, F, Fut>(
        &self,
        idempotent: bool,
        message: Req,
        rpc: F,
    ) -> Result<Resp, ClientError>
    where
        Req: Clone,
        F: Fn(KeyValueClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let timeout = self.options.timeout;
        retry::run(&self.options.retry, idempotent, || {
            let mut request = tonic::Request::new(message.clone());
            request.set_timeout(timeout);
            let attempt = rpc(self.inner.clone(), request);
            async move {
                match tokio::time::timeout(timeout, attempt).await {
                    Ok(Ok(response)) => Ok(response.into_inner()),
                    Ok(Err(status)) => Err(ClientError::from(status)),
                    Err(_) => Err(ClientError::DeadlineExceeded),
                }
            }
        })
        .await
    }

    /// The entry under `key`.
    pub async fn get(&self, key: &str) -> Result<Entry, ClientError> {
        let request = pb::GetRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
        };
        let response = self
            .call(true, request, |mut c, r| async move { c.get(r).await })
            .await?;
        let entry = response.entry.ok_or_else(|| ClientError::Other {
            code: tonic::Code::DataLoss,
            message: "the server sent no entry".into(),
        })?;
        Ok(Entry {
            key: text(&entry.key)?,
            value: entry.value,
            version: Version::new(entry.version),
        })
    }

    /// Writes `value` under `key` if `precondition` holds.
    pub async fn put(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        precondition_: Precondition,
    ) -> Result<Written, ClientError> {
        let request = pb::PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: value.into(),
            precondition: precondition(precondition_),
        };
        let response = self
            .call(false, request, |mut c, r| async move { c.put(r).await })
            .await?;
        Ok(Written {
            version: Version::new(response.version),
            created: response.created,
        })
    }

    /// Removes `key` if `precondition` holds; `Ok(false)` when it was already absent.
    pub async fn delete(
        &self,
        key: &str,
        precondition_: Precondition,
    ) -> Result<bool, ClientError> {
        let idempotent = precondition_ == Precondition::None;
        let request = pb::DeleteRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            precondition: precondition(precondition_),
        };
        let response = self
            .call(
                idempotent,
                request,
                |mut c, r| async move { c.delete(r).await },
            )
            .await?;
        Ok(response.deleted)
    }

    /// One page of keys starting with `prefix`; `limit` 0 means the server's default.
    pub async fn list(
        &self,
        prefix: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page, ClientError> {
        let request = pb::ListRequest {
            prefix: Bytes::copy_from_slice(prefix.as_bytes()),
            limit,
            cursor: cursor.unwrap_or_default().to_owned(),
        };
        let response = self
            .call(true, request, |mut c, r| async move { c.list(r).await })
            .await?;
        let items = response
            .items
            .iter()
            .map(|i| Ok((text(&i.key)?, Version::new(i.version))))
            .collect::<Result<_, ClientError>>()?;
        let next_cursor = (!response.next_cursor.is_empty()).then_some(response.next_cursor);
        Ok(Page { items, next_cursor })
    }
}
