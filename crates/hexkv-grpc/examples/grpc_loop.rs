//! A simple closed-loop gRPC client for first throughput figures (the full load generator is
//! `hexkv bench`, to come): CONCURRENCY tasks each send `Get` or `Put` back to back for SECONDS,
//! spread over 8 HTTP/2 connections, and the totals are printed.
//!
//! ```text
//! cargo run --release -p hexkv-grpc --example grpc_loop -- http://127.0.0.1:50051 put 64 10
//! cargo run --release -p hexkv-grpc --example grpc_loop -- http://127.0.0.1:50051 get 64 10
//! ```
//! `put` writes 100-byte values under 100 000 keys; `get` reads one key that it writes first.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hexkv_grpc::pb;
use hexkv_grpc::pb::key_value_client::KeyValueClient;
use tonic::transport::Endpoint;

const CONNECTIONS: usize = 8;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let endpoint = args.get(1).map_or("http://127.0.0.1:50051", String::as_str);
    let op = args.get(2).map_or("get", String::as_str).to_owned();
    let concurrency: usize = args.get(3).map_or(Ok(64), |s| s.parse())?;
    let seconds: u64 = args.get(4).map_or(Ok(10), |s| s.parse())?;

    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let channel = Endpoint::from_shared(endpoint.to_owned())?
            .connect()
            .await?;
        clients.push(KeyValueClient::new(channel));
    }
    let value = Bytes::from(vec![b'v'; 100]);
    clients[0]
        .put(pb::PutRequest {
            key: Bytes::from_static(b"bench-key"),
            value: value.clone(),
            precondition: None,
        })
        .await?;

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            let mut client = clients[i % CONNECTIONS].clone();
            let op = op.clone();
            let value = value.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u64, 0u64);
                let mut n = i as u64;
                while Instant::now() < deadline {
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let result = if op == "put" {
                        let key = format!("bench/{}", (n >> 33) % 100_000);
                        client
                            .put(pb::PutRequest {
                                key: Bytes::from(key),
                                value: value.clone(),
                                precondition: None,
                            })
                            .await
                            .map(drop)
                    } else {
                        client
                            .get(pb::GetRequest {
                                key: Bytes::from_static(b"bench-key"),
                            })
                            .await
                            .map(drop)
                    };
                    match result {
                        Ok(()) => ok += 1,
                        Err(_) => failed += 1,
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut ok, mut failed) = (0u64, 0u64);
    for task in tasks {
        let (o, f) = task.await?;
        ok += o;
        failed += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{op}: {ok} ok, {failed} failed in {elapsed:.1} s = {:.0} requests/s (concurrency {concurrency}, {CONNECTIONS} connections)",
        ok as f64 / elapsed
    );
    Ok(())
}
