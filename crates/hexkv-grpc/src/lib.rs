//! hexkv's gRPC adapter: the `hexkv.v1.KeyValue` service (`proto/hexkv/v1/kv.proto`) over the
//! driving port [`KeyValueApi`], with the standard health and reflection services beside it.
//!
//! Like the REST adapter, it parses requests into domain types at the edge and maps every
//! [`KvError`] to a [`Status`] in exactly one place ([`status`]). Message size limits mirror the
//! HTTP body limit, so a value the REST API refuses is refused here too.

pub mod auth;
mod dispatch;
pub mod observe;
mod status;

use std::sync::Arc;

use bytes::Bytes;
use hexkv_core::auth::Action;
use hexkv_core::{
    Cursor, DeleteOutcome, FeatureFlags, Key, KeyError, KeyValueApi, KvError, ListQuery,
    ListQueryError, Precondition, Value, Version,
};
use tonic::{Request, Response, Status};

pub use status::status;

/// The generated protobuf types and service stubs of `hexkv.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("hexkv.v1");

    /// The encoded descriptor set of `hexkv.v1`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/hexkv_v1_descriptor.bin"));
}

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
    /// Feature flags consulted per call (`list_keys` gates `List`); `None`: every feature on.
    pub flags: Option<Arc<FeatureFlags>>,
    /// The load-shedding bound, shared so it can change while running; when given, it replaces
    /// `max_in_flight`.
    pub in_flight: Option<Arc<hexkv_resilience::InFlightLimit>>,
    /// API keys and what each may do; `None`: every call is let in.
    pub auth: Option<auth::GrpcAuth>,
}

/// The `hexkv.v1.KeyValue` service over a [`KeyValueApi`].
pub struct KeyValueGrpc {
    api: Arc<dyn KeyValueApi>,
    flags: Option<Arc<FeatureFlags>>,
    /// Calls must carry a principal (set by the authentication interceptor).
    auth_required: bool,
}

impl KeyValueGrpc {
    /// The service over `api`.
    pub fn new(api: Arc<dyn KeyValueApi>) -> Self {
        Self {
            api,
            flags: None,
            auth_required: false,
        }
    }

    /// Consults `flags` per call.
    pub fn with_flags(mut self, flags: Option<Arc<FeatureFlags>>) -> Self {
        self.flags = flags;
        self
    }
}

/// The identity feature flags roll out by: the `x-api-key` metadata, else the client's IP
/// address (as [`client_key`] for throttling).
fn identity<T>(request: &Request<T>) -> String {
    hexkv_resilience::client_identity(
        request
            .metadata()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok()),
        request.remote_addr().map(|a| a.ip()),
    )
}

/// The gRPC services hexkv serves, ready to be served by [`GrpcServices::serve`].
pub struct GrpcServices {
    /// `hexkv.v1.KeyValue`, answered before any router (see the `dispatch` module).
    key_value: dispatch::KeyValueHttp,
    /// The other services: `grpc.health.v1.Health` and server reflection. An application may add
    /// its own; calls of `hexkv.v1.KeyValue` never reach these routes.
    pub routes: tonic::service::Routes,
    /// Sets the health status; see [`GrpcServices::set_serving`].
    health: tonic_health::server::HealthReporter,
    in_flight: Option<Arc<hexkv_resilience::InFlightLimit>>,
    request_timeout: Option<std::time::Duration>,
    throttle: Option<Arc<hexkv_resilience::Throttle>>,
}

/// The name health checks use for the key-value service.
pub const SERVICE_NAME: &str = "hexkv.v1.KeyValue";

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

impl GrpcServices {
    /// Builds the services over `api`. Health starts as SERVING for both the overall server (`""`)
    /// and `hexkv.v1.KeyValue`.
    pub async fn new(api: Arc<dyn KeyValueApi>, options: GrpcOptions) -> Self {
        use tonic::service::interceptor::InterceptedService;

        let limit = options.max_value_bytes + MESSAGE_OVERHEAD;
        let mut service = KeyValueGrpc::new(api).with_flags(options.flags);
        service.auth_required = options.auth.is_some();
        let key_value = KeyValueServer::new(service)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let (health, health_service) = tonic_health::server::health_reporter();
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .expect("the embedded descriptor sets are valid");
        let (key_value, routes) = match options.auth {
            None => (
                tower::util::Either::Left(key_value),
                tonic::service::Routes::new(health_service).add_service(reflection),
            ),
            Some(auth) => {
                let calls = auth::Authenticate {
                    authenticator: Arc::clone(&auth.authenticator),
                    operational: false,
                };
                let key_value = tower::util::Either::Right(tower::util::BoxCloneSyncService::new(
                    tower::ServiceBuilder::new()
                        .map_response(|r: tonic::codegen::http::Response<_>| {
                            r.map(tonic::body::Body::new)
                        })
                        .service(InterceptedService::new(key_value, calls)),
                ));
                let routes = if auth.open_health {
                    tonic::service::Routes::new(health_service).add_service(reflection)
                } else {
                    let operational = auth::Authenticate {
                        authenticator: auth.authenticator,
                        operational: true,
                    };
                    tonic::service::Routes::new(InterceptedService::new(
                        health_service,
                        operational.clone(),
                    ))
                    .add_service(InterceptedService::new(reflection, operational))
                };
                (key_value, routes)
            }
        };
        let services = Self {
            key_value,
            routes,
            health,
            in_flight: options.in_flight.or_else(|| {
                (options.max_in_flight > 0)
                    .then(|| hexkv_resilience::InFlightLimit::new(options.max_in_flight))
            }),
            request_timeout: options.request_timeout,
            throttle: None,
        };
        services.set_serving(true).await;
        services
    }

    /// Serves the services on `listener` until `shutdown` resolves, then lets in-flight calls
    /// finish.
    ///
    /// Messages over the size limit are refused by tonic's decoder before they reach the service,
    /// with OUT_OF_RANGE; gRPC's convention (and grpc-go's behaviour) for a message over the
    /// receive limit is RESOURCE_EXHAUSTED, which is also what a value over the limit gets from
    /// the service, so [`oversize_is_resource_exhausted`] translates exactly that case.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        self.serve_incoming(without_nagle(listener), shutdown).await
    }

    /// Serves the services on the connections of `incoming` (TLS connections, for instance),
    /// like [`GrpcServices::serve`].
    pub async fn serve_incoming<S, IO, E>(
        self,
        incoming: S,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error>
    where
        S: tokio_stream::Stream<Item = Result<IO, E>> + Send + 'static,
        IO: tokio::io::AsyncRead
            + tokio::io::AsyncWrite
            + tonic::transport::server::Connected
            + Unpin
            + Send
            + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let shed = self
            .in_flight
            .map(|limit| hexkv_resilience::LoadShedLayer::with_limit(limit, overloaded));
        let deadline = self
            .request_timeout
            .map(|limit| hexkv_resilience::DeadlineLayer::new(limit, deadline_exceeded));
        let throttle = self
            .throttle
            .map(|t| hexkv_resilience::ThrottleLayer::new(t, client_key, throttled));
        tonic::transport::Server::builder()
            .layer(
                tower::ServiceBuilder::new()
                    .layer(hexkv_telemetry::ObserveLayer::new(observe::GrpcObserve))
                    .option_layer(throttle)
                    .option_layer(deadline)
                    .option_layer(shed)
                    .layer(tower::util::MapResponseLayer::new(
                        oversize_is_resource_exhausted,
                    ))
                    .layer(dispatch::KeyValueFirstLayer(self.key_value)),
            )
            .add_routes(self.routes)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }

    /// Throttles calls per client (`RESOURCE_EXHAUSTED` with `RetryInfo`), keyed by
    /// [`client_key`].
    pub fn with_throttle(mut self, throttle: Arc<hexkv_resilience::Throttle>) -> Self {
        self.throttle = Some(throttle);
        self
    }

    /// A handle that changes the health status later (at shutdown).
    pub fn health(&self) -> HealthHandle {
        HealthHandle(self.health.clone())
    }

    async fn set_serving(&self, serving: bool) {
        self.health().set_serving(serving).await;
    }
}

/// Changes what `grpc.health.v1.Health` reports.
#[derive(Clone)]
pub struct HealthHandle(tonic_health::server::HealthReporter);

impl HealthHandle {
    /// SERVING or NOT_SERVING, for the overall server and for `hexkv.v1.KeyValue`.
    pub async fn set_serving(&self, serving: bool) {
        let status = if serving {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        self.0.set_service_status("", status).await;
        self.0.set_service_status(SERVICE_NAME, status).await;
    }
}

/// The answer to a call shed under load: UNAVAILABLE, retry in a second.
fn overloaded() -> tonic::codegen::http::Response<tonic::body::Body> {
    use tonic_types::{ErrorDetails, StatusExt};
    metrics::counter!(hexkv_telemetry::metrics::SHED, "protocol" => "grpc").increment(1);
    Status::with_error_details(
        tonic::Code::Unavailable,
        "the service is handling as many calls as it may; retry shortly",
        ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(1))),
    )
    .into_http()
}

/// The throttling key of a call: its `x-api-key` metadata when present, else the client's IP
/// address. (Throttling runs before the key-value service's authentication interceptor, so
/// the authenticated key is not known yet here.)
pub fn client_key<B>(request: &tonic::codegen::http::Request<B>) -> String {
    hexkv_resilience::client_identity(
        request
            .headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok()),
        request
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|c| c.remote_addr())
            .map(|a| a.ip()),
    )
}

/// The answer to a throttled call: RESOURCE_EXHAUSTED, with the wait as `RetryInfo`.
fn throttled(wait: std::time::Duration) -> tonic::codegen::http::Response<tonic::body::Body> {
    use tonic_types::{ErrorDetails, StatusExt};
    metrics::counter!(hexkv_telemetry::metrics::THROTTLED, "protocol" => "grpc").increment(1);
    Status::with_error_details(
        tonic::Code::ResourceExhausted,
        "too many calls from this client; retry later",
        ErrorDetails::with_retry_info(Some(wait)),
    )
    .into_http()
}

/// The answer to a call past the request timeout.
fn deadline_exceeded() -> tonic::codegen::http::Response<tonic::body::Body> {
    metrics::counter!(hexkv_telemetry::metrics::TIMED_OUT, "protocol" => "grpc").increment(1);
    Status::deadline_exceeded("the call took longer than the service allows and was cancelled")
        .into_http()
}

/// Rewrites tonic's "decoded message length too large" (OUT_OF_RANGE) as RESOURCE_EXHAUSTED.
/// Such rejections are trailers-only responses, so the status is in the response headers.
pub fn oversize_is_resource_exhausted<B>(
    mut response: tonic::codegen::http::Response<B>,
) -> tonic::codegen::http::Response<B> {
    use tonic::codegen::http::HeaderValue;
    let headers = response.headers_mut();
    let out_of_range = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"11");
    // `grpc-message` is percent-encoded on the wire ("Error,%20decoded%20message…").
    let too_large = headers.get("grpc-message").is_some_and(|m| {
        String::from_utf8_lossy(m.as_bytes())
            .replace("%20", " ")
            .starts_with("Error, decoded message length too large")
    });
    if out_of_range && too_large {
        headers.insert("grpc-status", HeaderValue::from_static("8"));
    }
    response
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
        auth::authorize(
            &request,
            self.auth_required,
            Action::Read(&request.get_ref().key),
        )?;
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
        auth::authorize(
            &request,
            self.auth_required,
            Action::Write(&request.get_ref().key),
        )?;
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
        auth::authorize(
            &request,
            self.auth_required,
            Action::Write(&request.get_ref().key),
        )?;
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
        auth::authorize(
            &request,
            self.auth_required,
            Action::List(&request.get_ref().prefix),
        )?;
        if let Some(flags) = &self.flags
            && !flags.is_on(hexkv_core::flags::LIST_KEYS, &identity(&request))
        {
            return Err(Status::unimplemented(format!(
                "the feature {:?} is not enabled for this client",
                hexkv_core::flags::LIST_KEYS
            )));
        }
        let query = parse_list(request.into_inner())?;
        let page = self.api.list(&query).await.map_err(status)?;
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
