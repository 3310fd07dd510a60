//! The gRPC transport: one attempt of each operation, under the per-attempt deadline.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use hexkv_core::{Precondition, Version};
use hexkv_proto::v1 as pb;
use hexkv_proto::v1::key_value_client::KeyValueClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::error_chain;
use crate::{ClientError, ClientOptions, Entry, Page, Written};

#[derive(Clone)]
pub(crate) struct GrpcTransport {
    inner: KeyValueClient<Channel>,
    timeout: Duration,
    /// `Bearer <key>`, sent as the `authorization` metadata of every call.
    pub(crate) authorization: Option<tonic::metadata::AsciiMetadataValue>,
}

impl GrpcTransport {
    pub(crate) async fn connect(
        endpoint: String,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let endpoint = Endpoint::from_shared(endpoint)
            .map_err(|e| ClientError::Connect(e.to_string()))?
            .connect_timeout(options.timeout);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| ClientError::Connect(error_chain(&e)))?;
        Ok(Self::from_channel(channel, options))
    }

    pub(crate) fn from_channel(channel: Channel, options: &ClientOptions) -> Self {
        let inner = KeyValueClient::new(channel)
            .max_decoding_message_size(options.max_message_bytes)
            .max_encoding_message_size(options.max_message_bytes);
        Self {
            inner,
            timeout: options.timeout,
            authorization: None,
        }
    }

    /// A request carrying the deadline as `grpc-timeout`.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        #[cfg(feature = "otlp")]
        crate::trace_context::inject_grpc(request.metadata_mut());
        request
    }

    /// Awaits one attempt, enforcing the deadline here too (the server may never answer).
    async fn attempt<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, ClientError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(ClientError::from(status)),
            Err(_) => Err(ClientError::DeadlineExceeded),
        }
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Entry, ClientError> {
        let request = self.request(pb::GetRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
        });
        let response = self.attempt(self.inner.clone().get(request)).await?;
        let entry = response
            .entry
            .ok_or_else(|| ClientError::protocol("the server sent no entry"))?;
        Ok(Entry {
            key: text(&entry.key)?,
            value: entry.value,
            version: Version::new(entry.version),
        })
    }

    pub(crate) async fn put(
        &self,
        key: &str,
        value: &Bytes,
        precondition: Precondition,
    ) -> Result<Written, ClientError> {
        let request = self.request(pb::PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: value.clone(),
            precondition: to_pb(precondition),
        });
        let response = self.attempt(self.inner.clone().put(request)).await?;
        Ok(Written {
            version: Version::new(response.version),
            created: response.created,
        })
    }

    pub(crate) async fn delete(
        &self,
        key: &str,
        precondition: Precondition,
    ) -> Result<Option<bool>, ClientError> {
        let request = self.request(pb::DeleteRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            precondition: to_pb(precondition),
        });
        let response = self.attempt(self.inner.clone().delete(request)).await?;
        Ok(Some(response.deleted))
    }

    pub(crate) async fn list(
        &self,
        prefix: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page, ClientError> {
        let request = self.request(pb::ListRequest {
            prefix: Bytes::copy_from_slice(prefix.as_bytes()),
            limit,
            cursor: cursor.unwrap_or_default().to_owned(),
        });
        let response = self.attempt(self.inner.clone().list(request)).await?;
        let items = response
            .items
            .iter()
            .map(|i| Ok((text(&i.key)?, Version::new(i.version))))
            .collect::<Result<_, ClientError>>()?;
        let next_cursor = (!response.next_cursor.is_empty()).then_some(response.next_cursor);
        Ok(Page { items, next_cursor })
    }
}

fn text(bytes: &Bytes) -> Result<String, ClientError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ClientError::protocol("the server sent a key that is not UTF-8"))
}

fn to_pb(p: Precondition) -> Option<pb::Precondition> {
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
