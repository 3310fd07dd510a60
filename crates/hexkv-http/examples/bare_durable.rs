//! The ceiling for durable PUT benchmarks: a bare axum handler that appends each request's body
//! to a file and answers once an `fdatasync` covers it, with group commit and nothing else.
//!
//! `bare_handler.rs` is the ceiling of a request; this is the ceiling of a request that must be
//! on disk before it is answered. One thread takes every body queued since its last sync, writes
//! them with one `pwrite`, syncs with one `fdatasync` and wakes their requests: the same shape as
//! hexkv's log under `fsync = always` (no record format, no checksum, no map, no versions, no
//! middleware), with the file's space written ahead so a sync persists data, not the file's size
//! ([ADR 0012](../../../docs/adr/0012-preallocated-log-space.md)). hexkv's PUT does all of this
//! and more, so it should not be expected to beat this handler: what separates this handler from
//! `bare_handler.rs` is the price of the sync itself on the machine at hand.
//!
//! `PUT /v1/kv/{key}` answers `201 {"version":1}` like `bare_handler.rs`; a failed write or sync
//! answers 500 to every request of its batch, and the handler stops syncing from then on.
//!
//! ```text
//! cargo run --release -p hexkv-http --example bare_durable -- 127.0.0.1:18082 target/bare-durable.log
//! wrk -t2 -c64 -d10s -s scripts/wrk/put.lua http://127.0.0.1:18082
//! ```

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, put};
use tokio::sync::oneshot;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How far ahead of the last byte written the file's space is written with zeros.
const AHEAD: u64 = 1 << 20;
static ZEROS: [u8; AHEAD as usize] = [0; AHEAD as usize];

/// What a request waits for: whether its batch is durable.
type Done = oneshot::Sender<Result<(), ()>>;

#[derive(Default)]
struct Queue {
    /// Bodies (each after its 4-byte length) not yet taken by the syncing thread.
    buf: Vec<u8>,
    waiters: Vec<Done>,
    /// The syncing thread sleeps and nobody has woken it yet.
    sleeping: bool,
    /// A write or sync failed: nothing is acknowledged any more.
    failed: bool,
}

struct Log {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Log {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The syncing thread: one write and one `fdatasync` per batch.
    fn run(&self, file: File) {
        let (mut end, mut allocated) = (0u64, 0u64);
        let mut spare = Vec::new();
        loop {
            let (batch, waiters) = {
                let mut queue = self.queue();
                while queue.buf.is_empty() {
                    queue.sleeping = true;
                    queue = self
                        .wake
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner);
                    queue.sleeping = false;
                }
                let batch = std::mem::replace(&mut queue.buf, std::mem::take(&mut spare));
                (batch, std::mem::take(&mut queue.waiters))
            };
            let written = (|| -> io::Result<()> {
                while end + batch.len() as u64 > allocated {
                    file.write_all_at(&ZEROS, allocated)?;
                    allocated += AHEAD;
                }
                file.write_all_at(&batch, end)?;
                file.sync_data()
            })();
            if let Err(e) = written {
                eprintln!("bare_durable: the log failed, refusing writes: {e}");
                // Fail this batch and every request queued behind it; later ones see `failed`.
                let queued = {
                    let mut queue = self.queue();
                    queue.failed = true;
                    std::mem::take(&mut queue.waiters)
                };
                for waiter in waiters.into_iter().chain(queued) {
                    let _ = waiter.send(Err(()));
                }
                return;
            }
            end += batch.len() as u64;
            for waiter in waiters {
                let _ = waiter.send(Ok(()));
            }
            spare = batch;
            spare.clear();
        }
    }

    /// Queues a body and waits until it is durable.
    async fn append(&self, body: &[u8]) -> Result<(), ()> {
        let (tx, rx) = oneshot::channel();
        let wake = {
            let mut queue = self.queue();
            if queue.failed {
                return Err(());
            }
            let len = u32::try_from(body.len()).map_err(|_| ())?;
            queue.buf.extend_from_slice(&len.to_le_bytes());
            queue.buf.extend_from_slice(body);
            queue.waiters.push(tx);
            std::mem::take(&mut queue.sleeping)
        };
        if wake {
            self.wake.notify_one();
        }
        rx.await.unwrap_or(Err(()))
    }
}

async fn put_value(State(log): State<Arc<Log>>, body: Bytes) -> impl IntoResponse {
    match log.append(&body).await {
        Ok(()) => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"version":1}"#,
        ),
        Err(()) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "the log failed",
        ),
    }
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18082".to_owned());
    let path = args.next().unwrap_or_else(|| "bare-durable.log".to_owned());
    let file = File::create(&path)?;
    let log = Arc::new(Log {
        queue: Mutex::new(Queue::default()),
        wake: Condvar::new(),
    });
    let syncing = Arc::clone(&log);
    std::thread::Builder::new()
        .name("bare-durable-log".into())
        .spawn(move || syncing.run(file))?;
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/v1/kv/{*key}", put(put_value))
        .with_state(log);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}
