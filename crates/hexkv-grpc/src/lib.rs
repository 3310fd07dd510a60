//! hexkv's gRPC adapter: the `hexkv.v1.KeyValue` service (`proto/hexkv/v1/kv.proto`) over the
//! driving port [`KeyValueApi`], with the standard health and reflection services beside it.
//!
//! Each service is added to tonic's [`Routes`](tonic::service::Routes) behind its own stack: the
//! key-value service behind admission (its RPCs' declared access, the caller's identity,
//! per-client throttling; [`hexkv_platform::grpc::access`]), the request timeout and load
//! shedding; health and
//! reflection behind admission only, so they are never shed or throttled. Like the REST adapter,
//! it parses requests into domain types at the edge and maps every [`KvError`] to a [`Status`] in
//! one place ([`status`]). Message size limits mirror the HTTP body limit, so a value the REST
//! API refuses is refused here too.

mod limit;
mod status;

use std::sync::Arc;

use bytes::Bytes;
use hexkv_core::{
    Cursor, DeleteOutcome, Key, KeyError, KeyValueApi, KvError, ListQuery, ListQueryError,
    Precondition, Value, Version,
};
use hexkv_platform::auth::AuthPolicy;
use hexkv_platform::grpc::access::{self, Access};
pub use hexkv_platform::grpc::services::GrpcHealth;
use hexkv_platform::grpc::services::{GrpcServices as PlatformServices, GrpcStack};
use tonic::{Request, Response, Status};
use tower::Layer as _;

pub use status::status;

/// The generated protobuf types and service stubs of `hexkv.v1` (the `hexkv-proto` crate).
pub use hexkv_proto::v1 as pb;

use pb::key_value_server::{KeyValue, KeyValueServer};

/// Room for the protobuf framing around the largest value (key, field tags, precondition).
const MESSAGE_OVERHEAD: usize = 4 * 1024;

/// Settings of the gRPC adapter.
#[derive(Debug, Clone)]
pub struct GrpcOptions {
    /// The largest value accepted, in bytes; request and response messages are limited to this
    /// plus a small allowance for framing.
    pub max_value_bytes: usize,
    /// Calls handled at once at most; the excess gets UNAVAILABLE (with a one-second
    /// `RetryInfo`) at once (load shedding). 0: no limit.
    pub max_in_flight: usize,
    /// A call still running after this long gets DEADLINE_EXCEEDED and is cancelled (a shorter
    /// `grpc-timeout` from the client applies too). `None`: no limit.
    pub request_timeout: Option<std::time::Duration>,
    /// The load-shedding bound, shared so it can change while running; when given, it replaces
    /// `max_in_flight`.
    pub in_flight: Option<Arc<hexkv_resilience::InFlightLimit>>,
    /// API keys and what each may do; `None`: every call is let in.
    pub auth: Option<AuthPolicy>,
    /// Per-client throttling of the key-value RPCs (`RESOURCE_EXHAUSTED` with `RetryInfo`),
    /// keyed by the caller's identity: the authenticated key's name, else the peer address.
    pub throttle: Option<Arc<hexkv_resilience::Throttle<hexkv_core::Identity>>>,
}

/// The `hexkv.v1.KeyValue` service over a [`KeyValueApi`]. Its calls must pass admission
/// (served by [`GrpcServices`]); a call that did not is refused.
pub struct KeyValueGrpc {
    api: Arc<dyn KeyValueApi>,
}

impl KeyValueGrpc {
    /// The service over `api`.
    pub fn new(api: Arc<dyn KeyValueApi>) -> Self {
        // The `ErrorInfo.domain` of every status: `hexkv`.
        hexkv_platform::set_service_name("hexkv");
        Self { api }
    }
}

/// hexkv's gRPC services built standalone, each behind the platform's stack (see the crate
/// docs), for tests and for serving with tonic's own server ([`GrpcServices::serve`]); the
/// binary hands [`services`] to the platform's `Application` instead.
pub struct GrpcServices {
    /// `hexkv.v1.KeyValue`, `grpc.health.v1.Health` and server reflection.
    routes: tonic::service::Routes,
    /// Sets the health status; see [`GrpcServices::health`].
    health: GrpcHealth,
    /// The calls' observation, labelling hexkv's RPCs.
    observe: hexkv_platform::grpc::observe::GrpcObserve,
}

/// The connections accepted on `listener`, with Nagle's algorithm off (`TCP_NODELAY`).
///
/// HTTP/2 sends a response as several frames (headers, data, trailers), which may leave in
/// separate writes; with Nagle's algorithm on, a small write waits for the peer to acknowledge the
/// previous one, and a client that delays its acknowledgements (40 ms on Linux) stalls the call.
/// Measured before this: a lone call at a time on the PostgreSQL store had a p99 of 41 ms. tonic
/// sets the option only on listeners it binds itself.
pub fn without_nagle(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static {
    use tokio_stream::StreamExt as _;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(error = %err, "cannot turn Nagle's algorithm off");
            }
        })
    })
}

/// What each RPC of `hexkv.v1.KeyValue` needs, by method name (the methods are defined below, in
/// `impl KeyValue for KeyValueGrpc`, and each checks the key or prefix of its message against it).
/// Admission refuses a method that is not listed.
const KEY_VALUE_ACCESS: &[(&str, Access)] = &[
    ("Get", Access::Read),
    ("Put", Access::Write),
    ("Delete", Access::Write),
    ("List", Access::List),
];

/// `hexkv.v1.KeyValue` over `api`, with its RPCs' declared access and request messages limited
/// to a value of `max_value_bytes` and its framing, as the platform's [`PlatformServices`] to
/// serve (behind admission, the request timeout and load shedding, with health and reflection).
pub fn services(api: Arc<dyn KeyValueApi>, max_value_bytes: usize) -> PlatformServices {
    let limit = max_value_bytes + MESSAGE_OVERHEAD;
    let key_value = KeyValueServer::new(KeyValueGrpc::new(api))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    PlatformServices::new()
        .add(
            limit::MessageLimitLayer::new(limit).layer(key_value),
            KEY_VALUE_ACCESS,
        )
        .descriptors(pb::FILE_DESCRIPTOR_SET)
}

impl GrpcServices {
    /// Builds the services over `api`. Health starts as SERVING for both the overall server (`""`)
    /// and `hexkv.v1.KeyValue`.
    pub async fn new(api: Arc<dyn KeyValueApi>, options: GrpcOptions) -> Self {
        let stack = GrpcStack {
            auth: options.auth,
            // Off (no rate) when not given.
            throttle: options
                .throttle
                .unwrap_or_else(|| Arc::new(hexkv_resilience::Throttle::new(0, 0, 1))),
            in_flight: options
                .in_flight
                .unwrap_or_else(|| hexkv_resilience::InFlightLimit::new(options.max_in_flight)),
            timeout: options.request_timeout,
            grpc_web: false,
        };
        let built = services(api, options.max_value_bytes)
            .build(&stack)
            .await
            .expect("the embedded descriptor sets are valid");
        Self {
            routes: built.routes,
            health: built.health,
            observe: built.observe,
        }
    }

    /// Serves the services with tonic's server on `listener` until `shutdown` resolves, then lets
    /// in-flight calls finish (tests, and applications without the platform's serving).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        tonic::transport::Server::builder()
            .layer(hexkv_telemetry::ObserveLayer::new(self.observe))
            .add_routes(self.routes)
            .serve_with_incoming_shutdown(without_nagle(listener), shutdown)
            .await
    }

    /// A handle that changes the health status later (at shutdown): `""` and
    /// `hexkv.v1.KeyValue`.
    pub fn health(&self) -> GrpcHealth {
        self.health.clone()
    }
}

/// Parses a key field; errors name the field.
fn parse_key(bytes: Bytes, field: &'static str) -> Result<Key, Status> {
    Key::from_utf8(bytes.to_vec()).map_err(|e| status::invalid_field(field, &e.to_string()))
}

fn parse_precondition(p: Option<pb::Precondition>) -> Precondition {
    use pb::precondition::Condition;
    match p.and_then(|p| p.condition) {
        None => Precondition::None,
        Some(Condition::Absent(_)) => Precondition::Absent,
        Some(Condition::Version(v)) => Precondition::Version(Version::new(v)),
    }
}

fn parse_list(request: pb::ListRequest) -> Result<ListQuery, Status> {
    let prefix = String::from_utf8(request.prefix.to_vec()).map_err(|e| {
        let err = KeyError::NotUtf8 {
            valid_up_to: e.utf8_error().valid_up_to(),
        };
        status::invalid_field("prefix", &err.to_string())
    })?;
    let cursor = match request.cursor.as_str() {
        "" => None,
        text => Some(Cursor::decode(text).map_err(|e| status(KvError::InvalidQuery(e)))?),
    };
    let limit = (request.limit != 0).then_some(u64::from(request.limit));
    ListQuery::new(prefix, limit, cursor).map_err(|e: ListQueryError| status(e.into()))
}

#[tonic::async_trait]
impl KeyValue for KeyValueGrpc {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        access::check(&request, &request.get_ref().key)?;
        let key = parse_key(request.into_inner().key, "key")?;
        let entry = self.api.get(&key).await.map_err(status)?;
        Ok(Response::new(pb::GetResponse {
            entry: Some(pb::Entry {
                key: Bytes::copy_from_slice(entry.key.as_bytes()),
                value: entry.value.into_bytes(),
                version: entry.version.get(),
            }),
        }))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        access::check(&request, &request.get_ref().key)?;
        let request = request.into_inner();
        let key = parse_key(request.key, "key")?;
        let precondition = parse_precondition(request.precondition);
        let outcome = self
            .api
            .put(key, Value::from(request.value), precondition)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::PutResponse {
            version: outcome.version.get(),
            created: outcome.created,
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        access::check(&request, &request.get_ref().key)?;
        let request = request.into_inner();
        let key = parse_key(request.key, "key")?;
        let precondition = parse_precondition(request.precondition);
        let outcome = self.api.delete(&key, precondition).await.map_err(status)?;
        Ok(Response::new(match outcome {
            DeleteOutcome::Deleted { version } => pb::DeleteResponse {
                deleted: true,
                version: version.get(),
            },
            DeleteOutcome::Absent => pb::DeleteResponse {
                deleted: false,
                version: 0,
            },
        }))
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        access::check(&request, &request.get_ref().prefix)?;
        let client = access::identity(&request);
        let query = parse_list(request.into_inner())?;
        let page = self.api.list(&query, &client).await.map_err(status)?;
        Ok(Response::new(pb::ListResponse {
            items: page
                .items
                .into_iter()
                .map(|item| pb::ListItem {
                    key: Bytes::copy_from_slice(item.key.as_bytes()),
                    version: item.version.get(),
                })
                .collect(),
            next_cursor: page.next_cursor.map(|c| c.encode()).unwrap_or_default(),
        }))
    }
}

#[cfg(test)]
mod tests;
