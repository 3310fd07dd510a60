//! [`GrpcServices`]: the tonic services a process serves on a gRPC listener, each with its RPCs'
//! declared access, and what the platform adds beside them.
//!
//! Each service is added to tonic's `Routes` behind a stack of its own, as tonic's examples do
//! (`named_layer`), outermost first: admission ([`access`](crate::grpc::access): the RPC's
//! declaration, the caller's identity, the per-caller throttle, the credentials), the request
//! timeout (the shorter of `limits.request_timeout_ms` and the client's `grpc-timeout`) and load
//! shedding. Beside them the platform serves `grpc.health.v1.Health` (SERVING for `""` and for
//! each service until the drain begins; a `Watch` stream reports NOT_SERVING when readiness
//! fails and ends with UNAVAILABLE, reason `DRAINING`, when the listeners close) and server
//! reflection (v1, from the services' descriptor sets), behind admission only: open, or for
//! admin keys (`auth.open_health`), never throttled or shed.
//!
//! ```mermaid
//! flowchart LR
//!   C[call] --> O["observe: span, log line, metrics by service and method"]
//!   O --> R{"tonic Routes"}
//!   R -- "/pkg.Service/*" --> K["admission → deadline → shedding → the service"]
//!   R -- "health, reflection" --> H["admission → the standard service"]
//!   R -- other --> U[UNIMPLEMENTED]
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hexkv_resilience::{InFlightLimit, Throttle};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::service::LayerExt as _;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::auth::{AuthPolicy, Identity};
use crate::grpc::access::{Access, AdmissionLayer, Declared};
use crate::grpc::observe::{GrpcObserve, STANDARD_RPCS};
use crate::grpc::status;
use crate::shutdown::{Drain, UntilDrained};

/// What the platform puts in front of each service: see the module docs.
#[derive(Clone)]
pub struct GrpcStack {
    /// API keys; `None`: every call is let in.
    pub auth: Option<AuthPolicy>,
    /// The per-caller throttle of the services' RPCs.
    pub throttle: Arc<Throttle<Identity>>,
    /// The load-shedding bound of the services' RPCs.
    pub in_flight: Arc<InFlightLimit>,
    /// The request timeout; `None`: only the client's own deadline.
    pub timeout: Option<Duration>,
    /// Translate gRPC-Web (browsers, over HTTP/1.1 too) for each service: on a listener that
    /// serves REST and gRPC together.
    pub grpc_web: bool,
}

type AddService =
    Box<dyn FnOnce(&GrpcStack, tonic::service::Routes) -> tonic::service::Routes + Send>;

/// The services of one gRPC listener; see the module docs.
#[derive(Default)]
pub struct GrpcServices {
    adds: Vec<AddService>,
    names: Vec<&'static str>,
    known: Vec<(&'static str, &'static str)>,
    descriptors: Vec<&'static [u8]>,
}

impl std::fmt::Debug for GrpcServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServices")
            .field("services", &self.names)
            .finish_non_exhaustive()
    }
}

/// What [`GrpcServices::build`] gives back: the routes to serve, how to observe them, and the
/// health reporter the drain turns to NOT_SERVING.
pub struct BuiltServices {
    /// Every service behind its stack, health and reflection.
    pub routes: tonic::service::Routes,
    /// The observation of the listener, labelling the RPCs served.
    pub observe: GrpcObserve,
    /// Sets what `grpc.health.v1.Health` reports.
    pub health: GrpcHealth,
}

impl GrpcServices {
    /// No services yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `service` (a generated `…Server`), whose RPCs need what `methods` declares, by
    /// method name; a method not listed is UNIMPLEMENTED for everyone. Each method checks the
    /// resource its message names with [`check`](crate::grpc::access::check).
    pub fn add<S>(mut self, service: S, methods: &'static [(&'static str, Access)]) -> Self
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.known
            .extend(methods.iter().map(|(method, _)| (S::NAME, *method)));
        self.adds.push(Box::new(move |stack, routes| {
            let layers = tower::ServiceBuilder::new()
                .layer(AdmissionLayer::new(
                    Declared::Methods(methods),
                    stack.auth.clone(),
                    Some(Arc::clone(&stack.throttle)),
                ))
                .layer(
                    hexkv_resilience::DeadlineLayer::optional(stack.timeout, || {
                        status::deadline_exceeded().into_http()
                    })
                    .with_caller_limit(crate::grpc::grpc_timeout),
                )
                .layer(hexkv_resilience::LoadShedLayer::with_limit(
                    Arc::clone(&stack.in_flight),
                    || status::overloaded().into_http(),
                ));
            if stack.grpc_web {
                // Outermost: a gRPC-Web call is a gRPC call from here in.
                let layers = tower::ServiceBuilder::new()
                    .layer(tonic_web::GrpcWebLayer::new())
                    .layer(layers);
                routes.add_service(layers.into_inner().named_layer(service))
            } else {
                routes.add_service(layers.into_inner().named_layer(service))
            }
        }));
        self
    }

    /// Adds an encoded `FileDescriptorSet` (a generated crate's `FILE_DESCRIPTOR_SET`) for
    /// server reflection to serve.
    pub fn descriptors(mut self, encoded: &'static [u8]) -> Self {
        self.descriptors.push(encoded);
        self
    }

    /// The names of the services added (`package.Service`).
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// The services behind `stack`, with health (SERVING) and reflection beside them.
    ///
    /// # Errors
    /// When a descriptor set does not decode.
    pub async fn build(self, stack: &GrpcStack) -> anyhow::Result<BuiltServices> {
        let reporter = tonic_health::server::HealthReporter::new();
        let health_service = HealthServer::new(DrainingHealth(
            tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
        ));
        let mut reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET);
        for encoded in &self.descriptors {
            reflection = reflection.register_encoded_file_descriptor_set(encoded);
        }
        let reflection = reflection.build_v1()?;
        let mut routes = tonic::service::Routes::default();
        for add in self.adds {
            routes = add(stack, routes);
        }
        let operational =
            AdmissionLayer::new(Declared::Service(Access::Health), stack.auth.clone(), None);
        let routes = routes
            .add_service(operational.named_layer(health_service))
            .add_service(operational.named_layer(reflection));
        let mut known = self.known;
        known.extend_from_slice(STANDARD_RPCS);
        let health = GrpcHealth {
            reporter,
            names: self.names.into(),
        };
        health.set_serving(true).await;
        Ok(BuiltServices {
            routes,
            observe: GrpcObserve::new(known),
            health,
        })
    }
}

/// The standard health service, whose `Watch` streams end when the drain begins rather than
/// hold it until its deadline.
struct DrainingHealth(tonic_health::server::HealthService);

#[tonic::async_trait]
impl Health for DrainingHealth {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        self.0.check(request).await
    }

    type WatchStream = UntilDrained<tonic_health::server::WatchStream>;

    async fn watch(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        let drain = Drain::of(request.extensions());
        let statuses = self.0.watch(request).await?.into_inner();
        Ok(tonic::Response::new(
            drain.end_with(statuses, Err(status::draining())),
        ))
    }
}

/// Sets what `grpc.health.v1.Health` reports for the whole server (`""`) and each service.
#[derive(Clone)]
pub struct GrpcHealth {
    reporter: tonic_health::server::HealthReporter,
    names: Arc<[&'static str]>,
}

impl GrpcHealth {
    /// SERVING or NOT_SERVING (from the moment the drain begins).
    pub async fn set_serving(&self, serving: bool) {
        let status = if serving {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        for name in self.names.iter() {
            self.reporter.set_service_status(name, status).await;
        }
    }
}
