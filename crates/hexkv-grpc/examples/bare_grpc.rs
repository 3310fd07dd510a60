//! The ceiling for gRPC benchmarks: `hexkv.v1.KeyValue` answered by fixed messages, on a bare
//! tonic server (no store, no layers, no health or reflection services).
//!
//! `Get` returns the key it was asked for with a fixed 100-byte value at version 1, `Put`
//! returns version 1; every other method is UNIMPLEMENTED. Its REST twin is the key route of
//! `crates/hexkv-http/examples/bare_handler.rs`. `hexkv bench` drives both the same way, so the
//! two show what HTTP/2 and protobuf through tonic cost against HTTP/1.1 through axum before
//! hexkv adds anything (`docs/performance.md`, "gRPC against REST, with one load generator").
//!
//! ```text
//! cargo run --release -p hexkv-grpc --example bare_grpc -- 127.0.0.1:18091
//! hexkv bench --protocol grpc --endpoint http://127.0.0.1:18091 --workload get --no-preload
//! ```

use bytes::Bytes;
use hexkv_grpc::pb;
use hexkv_grpc::pb::key_value_server::{KeyValue, KeyValueServer};
use tonic::{Request, Response, Status};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The fixed value every `Get` returns.
static VALUE: [u8; 100] = [b'v'; 100];

struct Bare;

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

    async fn put(&self, _: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
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
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18091".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tonic::transport::Server::builder()
        .add_service(KeyValueServer::new(Bare))
        .serve_with_incoming(hexkv_grpc::without_nagle(listener))
        .await?;
    Ok(())
}
