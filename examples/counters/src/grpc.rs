//! The gRPC front end: `counters.v1.Counters` (`proto/counters/v1/counters.proto`) over the
//! service. Each RPC declares the access it needs ([`ACCESS`]) and checks the counter its
//! message names against the caller's key; errors become statuses in one place ([`status`]).
//! The platform's [`Application`](hexkv_platform::app::Application) serves it behind
//! admission, the request timeout and load shedding, with health and reflection beside it.

use hexkv_platform::grpc::access::{self, Access};
use hexkv_platform::grpc::services::GrpcServices;
use tonic::{Request, Response, Status};

use crate::{CounterError, CounterName, CounterService};

/// The generated types and stubs of `counters.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("counters.v1");

    /// The encoded descriptor set of `counters.v1`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/counters_v1_descriptor.bin"));
}

use pb::counters_server::{Counters, CountersServer};

/// What each RPC needs: `Get` reads the counter its message names, `Add` changes it.
pub const ACCESS: &[(&str, Access)] = &[("Get", Access::Read), ("Add", Access::Write)];

/// The service's gRPC services, for [`Application::grpc`](hexkv_platform::app::Application::grpc).
pub fn services(service: CounterService) -> GrpcServices {
    GrpcServices::new()
        .add(CountersServer::new(CountersGrpc(service)), ACCESS)
        .descriptors(pb::FILE_DESCRIPTOR_SET)
}

/// `counters.v1.Counters` over the service.
pub struct CountersGrpc(pub CounterService);

/// A domain error as a status.
pub fn status(err: CounterError) -> Status {
    match err {
        CounterError::InvalidName(_) | CounterError::InvalidDelta => {
            Status::invalid_argument(err.to_string())
        }
        CounterError::NotFound => Status::not_found(err.to_string()),
        CounterError::Overflow => Status::failed_precondition(err.to_string()),
        CounterError::Unavailable(_) => Status::unavailable(err.to_string()),
    }
}

fn counter(name: CounterName, value: i64) -> Response<pb::Counter> {
    Response::new(pb::Counter {
        name: name.as_str().to_owned(),
        value,
    })
}

#[tonic::async_trait]
impl Counters for CountersGrpc {
    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::Counter>, Status> {
        access::check(&request, request.get_ref().name.as_bytes())?;
        let name = CounterName::new(request.into_inner().name).map_err(status)?;
        let value = self.0.get(&name).await.map_err(status)?;
        Ok(counter(name, value))
    }

    async fn add(&self, request: Request<pb::AddRequest>) -> Result<Response<pb::Counter>, Status> {
        access::check(&request, request.get_ref().name.as_bytes())?;
        let pb::AddRequest { name, delta } = request.into_inner();
        let name = CounterName::new(name).map_err(status)?;
        let value = self.0.add(&name, delta).await.map_err(status)?;
        Ok(counter(name, value))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use access::admitted;
    use mockall::predicate::{always, eq};
    use tonic::Code;

    use super::*;
    use crate::StoreError;
    use crate::ports::MockCounterStore;

    fn grpc(store: MockCounterStore) -> CountersGrpc {
        CountersGrpc(CounterService::new(Arc::new(store)))
    }

    fn add(name: &str, delta: i64) -> Request<pb::AddRequest> {
        admitted(
            Access::Write,
            pb::AddRequest {
                name: name.into(),
                delta,
            },
        )
    }

    fn get(name: &str) -> Request<pb::GetRequest> {
        admitted(Access::Read, pb::GetRequest { name: name.into() })
    }

    #[tokio::test]
    async fn the_parsed_request_reaches_the_service_and_its_answer_the_response() {
        let mut store = MockCounterStore::new();
        let visits = CounterName::new("visits").unwrap();
        store
            .expect_add()
            .with(eq(visits.clone()), eq(3))
            .returning(|_, _| Ok(10));
        store
            .expect_get()
            .with(eq(visits))
            .returning(|_| Ok(Some(10)));
        let grpc = grpc(store);
        let added = grpc.add(add("visits", 3)).await.unwrap().into_inner();
        assert_eq!((added.name.as_str(), added.value), ("visits", 10));
        let read = grpc.get(get("visits")).await.unwrap().into_inner();
        assert_eq!(read.value, 10);
    }

    #[tokio::test]
    async fn each_error_has_its_code_and_bad_input_never_reaches_the_store() {
        // No expectation: a call reaching the store fails the test.
        let grpc_refusing = grpc(MockCounterStore::new());
        for (request, code) in [
            (add("Bad", 1), Code::InvalidArgument),
            (add("visits", 0), Code::InvalidArgument),
            (add("visits", i64::MAX), Code::InvalidArgument),
        ] {
            assert_eq!(grpc_refusing.add(request).await.unwrap_err().code(), code);
        }
        // A call that did not pass admission is refused before the service is asked.
        let stray = Request::new(pb::GetRequest {
            name: "visits".into(),
        });
        assert_eq!(
            grpc_refusing.get(stray).await.unwrap_err().code(),
            Code::PermissionDenied
        );

        let mut store = MockCounterStore::new();
        store.expect_get().returning(|_| Ok(None));
        store
            .expect_add()
            .with(always(), eq(1))
            .returning(|_, _| Err(StoreError::Overflow));
        store
            .expect_add()
            .with(always(), eq(2))
            .returning(|_, _| Err(StoreError::Unavailable("down".into())));
        let grpc = grpc(store);
        assert_eq!(
            grpc.get(get("never")).await.unwrap_err().code(),
            Code::NotFound
        );
        assert_eq!(
            grpc.add(add("big", 1)).await.unwrap_err().code(),
            Code::FailedPrecondition
        );
        assert_eq!(
            grpc.add(add("big", 2)).await.unwrap_err().code(),
            Code::Unavailable
        );
    }
}
