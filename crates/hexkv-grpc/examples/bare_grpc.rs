//! The ceiling for gRPC benchmarks: `hexkv.v1.KeyValue` answered by fixed messages, on a bare
//! tonic server (no store, no layers, no health or reflection services).
//!
//! `Get` returns the key it was asked for with a fixed 100-byte value at version 1, `Put`
//! returns version 1; every other method is UNIMPLEMENTED. Its REST twin is the key route of
//! `crates/hexkv-http/examples/bare_handler.rs`. `hexkv bench` drives both the same way, so the
//! two show what HTTP/2 and protobuf through tonic cost against HTTP/1.1 through axum before
//! hexkv adds anything (`docs/performance.md`, "gRPC against REST, with one load generator").
//!
//! Given a file as its second argument, `Put` is durable: it appends the value to that file
//! through [`hexkv_bench::group_commit`] and answers once a group-committed `fdatasync` covers
//! it (`INTERNAL` if the log failed), like its REST twin `crates/hexkv-http/examples/bare_durable.rs`.
//! The two are the ceiling of a PUT acknowledged after a sync over each protocol
//! (`docs/performance.md`, "The durable ceiling over gRPC").
//!
//! ```text
//! cargo run --release -p hexkv-grpc --example bare_grpc -- 127.0.0.1:18091
//! hexkv bench --protocol grpc --endpoint http://127.0.0.1:18091 --workload get --no-preload
//! cargo run --release -p hexkv-grpc --example bare_grpc -- 127.0.0.1:18092 target/bare-grpc.log
//! hexkv bench --protocol grpc --endpoint http://127.0.0.1:18092 --workload put --no-preload
//! ```

use bytes::Bytes;
use hexkv_bench::group_commit::GroupCommitLog;
use hexkv_grpc::pb;
use hexkv_grpc::pb::key_value_server::{KeyValue, KeyValueServer};
use tonic::{Request, Response, Status};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The fixed value every `Get` returns.
static VALUE: [u8; 100] = [b'v'; 100];

/// With a log, every `Put` waits for its value to be synced to it.
struct Bare {
    log: Option<GroupCommitLog>,
}

#[tonic::async_trait]
impl KeyValue for Bare {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        Ok(Response::new(pb::GetResponse {
            entry: Some(pb::Entry {
                key: request.into_inner().key,
                value: Bytes::from_static(&VALUE),
                version: 1,
            }),
        }))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        if let Some(log) = &self.log {
            log.append(&request.get_ref().value)
                .await
                .map_err(|_| Status::internal("the log failed"))?;
        }
        Ok(Response::new(pb::PutResponse {
            version: 1,
            created: false,
        }))
    }

    async fn delete(
        &self,
        _: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        Err(Status::unimplemented("bare server"))
    }

    async fn list(
        &self,
        _: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        Err(Status::unimplemented("bare server"))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18091".to_owned());
    let log = args.next().map(GroupCommitLog::create).transpose()?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tonic::transport::Server::builder()
        .add_service(KeyValueServer::new(Bare { log }))
        .serve_with_incoming(hexkv_grpc::without_nagle(listener))
        .await?;
    Ok(())
}
