//! The bare group commit that the durable benchmark ceilings share.
//!
//! `crates/hexkv-http/examples/bare_durable.rs` (axum) and `crates/hexkv-grpc/examples/bare_grpc.rs`
//! with a log path (tonic) answer a PUT once its body is on disk, through this and nothing else:
//! one thread takes every body queued since its last sync, writes them with one `pwrite`, syncs
//! with one `fdatasync` and wakes their requests. The same shape as hexkv's log under
//! `fsync = always`, without its record format, checksum, map, versions or middleware, and with
//! the file's space written ahead so a sync persists data, not the file's size
//! ([ADR 0012](../../../docs/adr/0012-preallocated-log-space.md)). What separates such a handler
//! from its bare twin that syncs nothing is the price of the sync on the machine at hand
//! (`docs/performance.md`, "The durable ceiling").
//!
//! A failed write or sync fails every request of its batch and every one queued behind it, and
//! the log refuses writes from then on. Dropping the last handle stops the syncing thread and
//! closes the file.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// How far ahead of the last byte written the file's space is written with zeros.
const AHEAD: u64 = 1 << 20;
static ZEROS: [u8; AHEAD as usize] = [0; AHEAD as usize];

/// The log failed (or the body was too long to frame): nothing was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed;

/// What a request waits for: whether its batch is durable.
type Done = oneshot::Sender<Result<(), Failed>>;

#[derive(Default)]
struct Queue {
    /// Bodies (each after its 4-byte length) not yet taken by the syncing thread.
    buf: Vec<u8>,
    waiters: Vec<Done>,
    /// The syncing thread sleeps and nobody has woken it yet.
    sleeping: bool,
    /// A write or sync failed: nothing is acknowledged any more.
    failed: bool,
    /// The last handle is gone: the syncing thread returns once the queue is empty.
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// An append-only file written with group commit; cheap to clone (one syncing thread, which
/// the last clone's drop stops and waits for).
#[derive(Clone)]
pub struct GroupCommitLog {
    owner: Arc<Owner>,
}

/// What the handles share: the queue, and the syncing thread to stop when the last one goes.
struct Owner {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.queue().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // Every append borrowed a handle, so none is waiting: the thread has at most the
            // batch in hand to finish.
            let _ = thread.join();
        }
    }
}

impl GroupCommitLog {
    /// Creates (or truncates) the file at `path` and starts its syncing thread.
    pub fn create(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::start(File::create(path)?)
    }

    /// Starts the syncing thread on an open file, written from offset 0.
    pub fn start(file: File) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let syncing = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("group-commit".into())
            .spawn(move || syncing.run(file))?;
        Ok(Self {
            owner: Arc::new(Owner {
                shared,
                thread: Some(thread),
            }),
        })
    }

    /// Queues `body` and waits until an `fdatasync` covers it.
    pub async fn append(&self, body: &[u8]) -> Result<(), Failed> {
        let len = u32::try_from(body.len()).map_err(|_| Failed)?;
        let (tx, rx) = oneshot::channel();
        let shared = &self.owner.shared;
        let wake = {
            let mut queue = shared.queue();
            if queue.failed {
                return Err(Failed);
            }
            queue.buf.extend_from_slice(&len.to_le_bytes());
            queue.buf.extend_from_slice(body);
            queue.waiters.push(tx);
            std::mem::take(&mut queue.sleeping)
        };
        if wake {
            shared.wake.notify_one();
        }
        rx.await.unwrap_or(Err(Failed))
    }
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The syncing thread: one write and one `fdatasync` per batch, until the log is closed.
    fn run(&self, file: File) {
        let (mut end, mut allocated) = (0u64, 0u64);
        let mut spare = Vec::new();
        loop {
            let (batch, waiters) = {
                let mut queue = self.queue();
                while queue.buf.is_empty() {
                    if queue.closed {
                        return;
                    }
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
                eprintln!("group commit: the log failed, refusing writes: {e}");
                // Fail this batch and every request queued behind it; later ones see `failed`.
                let queued = {
                    let mut queue = self.queue();
                    queue.failed = true;
                    std::mem::take(&mut queue.waiters)
                };
                for waiter in waiters.into_iter().chain(queued) {
                    let _ = waiter.send(Err(Failed));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_each_in_the_file_once_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let log = GroupCommitLog::create(&path).unwrap();
        let tasks: Vec<_> = (0..64u32)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { log.append(format!("body-{i}").as_bytes()).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Ok(()));
        }
        // Every acknowledged body is framed in the file, in some order, each exactly once.
        let bytes = std::fs::read(&path).unwrap();
        let mut bodies = Vec::new();
        let mut at = 0;
        while at + 4 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            if len == 0 {
                break; // the space written ahead
            }
            bodies.push(String::from_utf8(bytes[at + 4..at + 4 + len].to_vec()).unwrap());
            at += 4 + len;
        }
        bodies.sort();
        let mut expected: Vec<_> = (0..64).map(|i| format!("body-{i}")).collect();
        expected.sort();
        assert_eq!(bodies, expected);
    }

    #[tokio::test]
    async fn dropping_the_last_handle_stops_the_syncing_thread() {
        let dir = tempfile::tempdir().unwrap();
        let log = GroupCommitLog::create(dir.path().join("log")).unwrap();
        let clone = log.clone();
        assert_eq!(clone.append(b"one").await, Ok(()));
        let shared = Arc::downgrade(&log.owner.shared);
        drop(log);
        assert!(shared.upgrade().is_some(), "a clone still holds the log");
        drop(clone);
        // The drop waited for the thread, which held the other reference.
        assert!(
            shared.upgrade().is_none(),
            "the syncing thread outlived the log"
        );
    }

    #[tokio::test]
    async fn a_failed_write_fails_its_append_and_every_later_one() {
        // A read-only descriptor: the batch's first write fails.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, b"").unwrap();
        let log = GroupCommitLog::start(File::open(&path).unwrap()).unwrap();
        assert_eq!(log.append(b"first").await, Err(Failed));
        assert_eq!(log.append(b"second").await, Err(Failed));
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }
}
