//! Batching: concurrent `get`s share one `SELECT … WHERE key = ANY($1)`, and concurrent
//! unconditional `put`s one multi-row upsert.
//!
//! An operation joins a queue and waits for its answer. At most `max_statements` tasks drain the
//! queue: each takes up to `max_batch` waiting operations, runs them as one statement on one
//! pooled connection, answers every waiter, and goes on while operations are waiting. A lone
//! operation runs at once as a batch of one (no timer, no added latency); under load the ones
//! that arrive while the statements are in flight form the next batches, as writes do in the
//! memory store's group commit. One statement (and, for writes, one commit) per batch instead of
//! one per operation is what saves the database's and the driver's CPU (`docs/benchmarks.md`,
//! PostgreSQL).
//!
//! A batch runs after every operation in it was asked for, so a batched read still sees every
//! write acknowledged before it began, and a batched write is acknowledged only once its
//! statement committed. A statement is all or nothing: when it fails, every operation in it fails
//! with the same error and none took effect.
//!
//! Batches run in their own tasks, so a caller that gives up (a timeout, a dropped request) never
//! cancels a statement half-way; its answer is simply not delivered.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hexkv_core::StoreError;
use tokio::sync::oneshot;

/// Runs a batch: one answer per operation, in order.
pub(crate) type Run<Q, A> = Arc<
    dyn Fn(Vec<Q>) -> Pin<Box<dyn Future<Output = Result<Vec<A>, StoreError>> + Send>>
        + Send
        + Sync,
>;

type Reply<A> = oneshot::Sender<Result<A, StoreError>>;

/// How many batched statements ran and how many operations they carried, since the store opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Statements sent.
    pub statements: u64,
    /// Operations they answered.
    pub operations: u64,
}

pub(crate) struct Batcher<Q, A> {
    state: Mutex<State<Q, A>>,
    run: Run<Q, A>,
    max_batch: usize,
    max_statements: usize,
    statements: AtomicU64,
    operations: AtomicU64,
}

struct State<Q, A> {
    waiting: VecDeque<(Q, Reply<A>)>,
    runners: usize,
}

impl<Q: Send + 'static, A: Send + 'static> Batcher<Q, A> {
    pub(crate) fn new(run: Run<Q, A>, max_batch: usize, max_statements: usize) -> Self {
        Self {
            state: Mutex::new(State {
                waiting: VecDeque::new(),
                runners: 0,
            }),
            run,
            max_batch: max_batch.max(1),
            max_statements: max_statements.max(1),
            statements: AtomicU64::new(0),
            operations: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> BatchStats {
        BatchStats {
            statements: self.statements.load(Ordering::Relaxed),
            operations: self.operations.load(Ordering::Relaxed),
        }
    }

    /// Runs `op` in the next batch, starting a runner task when fewer than `max_statements` run.
    pub(crate) async fn call(self: &Arc<Self>, op: Q) -> Result<A, StoreError> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut state = self.lock();
            state.waiting.push_back((op, reply));
            let start = state.runners < self.max_statements;
            if start {
                state.runners += 1;
            }
            start
        };
        if start {
            tokio::spawn(Arc::clone(self).drain());
        }
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::internal("the batched operation was lost")))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<Q, A>> {
        // The state is a queue and a counter, consistent after every statement: a panic
        // elsewhere while holding the lock cannot leave it half-updated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A runner: answers batches until none is waiting.
    async fn drain(self: Arc<Self>) {
        let mut runner = Runner(Some(&self.state));
        loop {
            let (ops, replies): (Vec<Q>, Vec<Reply<A>>) = {
                let mut state = self.lock();
                if state.waiting.is_empty() {
                    // Counted out under the lock that saw the queue empty, so an operation
                    // queued after this point starts a runner of its own.
                    state.runners -= 1;
                    runner.0 = None;
                    return;
                }
                let n = state.waiting.len().min(self.max_batch);
                state.waiting.drain(..n).unzip()
            };
            self.statements.fetch_add(1, Ordering::Relaxed);
            self.operations
                .fetch_add(ops.len() as u64, Ordering::Relaxed);
            let n = ops.len();
            match (self.run)(ops).await {
                Ok(answers) if answers.len() == n => {
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(Ok(answer));
                    }
                }
                Ok(answers) => {
                    let err = StoreError::internal(format!(
                        "a batch of {n} operations got {} answers",
                        answers.len()
                    ));
                    for reply in replies {
                        let _ = reply.send(Err(copy_error(&err)));
                    }
                }
                Err(err) => {
                    for reply in replies {
                        let _ = reply.send(Err(copy_error(&err)));
                    }
                }
            }
        }
    }
}

/// Counts a runner out if it stops other than by finding the queue empty (a panic, or its task
/// dropped when the runtime shuts down), so runners can start again; the operations of its batch
/// see their reply dropped and report a lost operation.
struct Runner<'a, Q, A>(Option<&'a Mutex<State<Q, A>>>);

impl<Q, A> Drop for Runner<'_, Q, A> {
    fn drop(&mut self) {
        if let Some(state) = self.0 {
            state.lock().unwrap_or_else(|p| p.into_inner()).runners -= 1;
        }
    }
}

/// The same error for every operation of a failed batch.
pub(crate) fn copy_error(err: &StoreError) -> StoreError {
    match err {
        StoreError::PreconditionFailed { current } => {
            StoreError::PreconditionFailed { current: *current }
        }
        StoreError::Unavailable {
            reason,
            retry_after,
        } => StoreError::Unavailable {
            reason: reason.clone(),
            retry_after: *retry_after,
        },
        StoreError::OutcomeUnknown { reason } => StoreError::outcome_unknown(reason.clone()),
        StoreError::Internal(cause) => StoreError::internal(cause.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use tokio::sync::Semaphore;

    use super::*;

    /// A fake database: records each batch, answers `value-of-KEY` for keys not starting with
    /// "absent", and holds every statement until the test adds a permit to `gate`.
    struct Fake {
        batches: StdMutex<Vec<Vec<String>>>,
        gate: Semaphore,
        fail: bool,
    }

    type Lookups = Batcher<String, Option<String>>;

    fn fake(fail: bool, max_batch: usize, max_statements: usize) -> (Arc<Fake>, Arc<Lookups>) {
        let db = Arc::new(Fake {
            batches: StdMutex::new(Vec::new()),
            gate: Semaphore::new(0),
            fail,
        });
        let run: Run<String, Option<String>> = {
            let db = Arc::clone(&db);
            Arc::new(move |keys: Vec<String>| {
                let db = Arc::clone(&db);
                Box::pin(async move {
                    db.batches.lock().unwrap().push(keys.clone());
                    db.gate.acquire().await.unwrap().forget();
                    if db.fail {
                        return Err(StoreError::unavailable("database down"));
                    }
                    Ok(keys
                        .into_iter()
                        .map(|k| (!k.starts_with("absent")).then(|| format!("value-of-{k}")))
                        .collect())
                })
            })
        };
        let batcher = Arc::new(Batcher::new(run, max_batch, max_statements));
        (db, batcher)
    }

    fn spawn_call(
        batcher: &Arc<Lookups>,
        key: &str,
    ) -> tokio::task::JoinHandle<Result<Option<String>, StoreError>> {
        let (batcher, key) = (Arc::clone(batcher), key.to_owned());
        tokio::spawn(async move { batcher.call(key).await })
    }

    /// Lets spawned tasks run until `done` holds.
    async fn until(mut done: impl FnMut() -> bool) {
        while !done() {
            tokio::task::yield_now().await;
        }
    }

    fn waiting(batcher: &Lookups) -> usize {
        batcher.lock().waiting.len()
    }

    fn runners(batcher: &Lookups) -> usize {
        batcher.lock().runners
    }

    fn value(key: &str) -> Option<String> {
        Some(format!("value-of-{key}"))
    }

    #[tokio::test]
    async fn a_lone_operation_is_sent_at_once_as_a_batch_of_one() {
        let (db, batcher) = fake(false, 64, 4);
        db.gate.add_permits(1);
        assert_eq!(batcher.call("a".into()).await.unwrap(), value("a"));
        assert_eq!(*db.batches.lock().unwrap(), vec![vec!["a".to_owned()]]);
        assert_eq!(
            batcher.stats(),
            BatchStats {
                statements: 1,
                operations: 1
            }
        );
        assert_eq!(runners(&batcher), 0, "the runner stopped");
    }

    #[tokio::test]
    async fn operations_that_arrive_while_a_statement_runs_share_the_next_one() {
        let (db, batcher) = fake(false, 4, 1);
        let first = spawn_call(&batcher, "k0");
        until(|| db.batches.lock().unwrap().len() == 1).await;
        // Ten more (k3 twice, one absent key) queue behind the statement in flight.
        let keys = [
            "k1", "k2", "k3", "k3", "absent", "k5", "k6", "k7", "k8", "k9",
        ];
        let later: Vec<_> = keys.iter().map(|k| spawn_call(&batcher, k)).collect();
        until(|| waiting(&batcher) == keys.len()).await;
        db.gate.add_permits(100);

        assert_eq!(first.await.unwrap().unwrap(), value("k0"));
        for (key, task) in keys.iter().zip(later) {
            let answer = task.await.unwrap().unwrap();
            let expected = if key.starts_with("absent") {
                None
            } else {
                value(key)
            };
            assert_eq!(answer, expected, "{key}");
        }
        // One statement at a time, at most 4 operations each, in arrival order.
        let batches = db.batches.lock().unwrap().clone();
        assert_eq!(
            batches,
            vec![
                vec!["k0"],
                vec!["k1", "k2", "k3", "k3"],
                vec!["absent", "k5", "k6", "k7"],
                vec!["k8", "k9"],
            ]
        );
        assert_eq!(
            batcher.stats(),
            BatchStats {
                statements: 4,
                operations: 11
            }
        );
    }

    #[tokio::test]
    async fn up_to_max_statements_run_at_once() {
        let (db, batcher) = fake(false, 64, 3);
        let mut tasks = Vec::new();
        for i in 0..3 {
            tasks.push(spawn_call(&batcher, &format!("k{i}")));
            until(|| db.batches.lock().unwrap().len() == i + 1).await;
        }
        let queued: Vec<_> = (3..8)
            .map(|i| spawn_call(&batcher, &format!("k{i}")))
            .collect();
        until(|| waiting(&batcher) == 5).await;
        assert_eq!(runners(&batcher), 3, "no fourth statement");
        db.gate.add_permits(100);
        for task in tasks.into_iter().chain(queued) {
            assert!(task.await.unwrap().unwrap().is_some());
        }
        until(|| runners(&batcher) == 0).await;
        // The five queued operations went out together, with whichever runner came free first.
        let batches = db.batches.lock().unwrap().clone();
        assert_eq!(batches.len(), 4, "{batches:?}");
        assert_eq!(batches[3], vec!["k3", "k4", "k5", "k6", "k7"]);
    }

    #[tokio::test]
    async fn a_failed_statement_fails_every_operation_in_it_and_the_next_ones_go_on() {
        let (db, batcher) = fake(true, 64, 1);
        let first = spawn_call(&batcher, "a");
        until(|| db.batches.lock().unwrap().len() == 1).await;
        let more: Vec<_> = ["b", "c"].iter().map(|k| spawn_call(&batcher, k)).collect();
        until(|| waiting(&batcher) == 2).await;
        db.gate.add_permits(100);
        for task in std::iter::once(first).chain(more) {
            let err = task.await.unwrap().unwrap_err();
            assert!(
                matches!(&err, StoreError::Unavailable { reason, .. } if reason == "database down"),
                "{err:?}"
            );
        }
        assert_eq!(db.batches.lock().unwrap().len(), 2);
        assert_eq!(runners(&batcher), 0);
    }

    #[tokio::test]
    async fn an_operation_given_up_on_leaves_the_others_answered() {
        let (db, batcher) = fake(false, 64, 1);
        let first = spawn_call(&batcher, "a");
        until(|| db.batches.lock().unwrap().len() == 1).await;
        let abandoned = spawn_call(&batcher, "b");
        let kept = spawn_call(&batcher, "c");
        until(|| waiting(&batcher) == 2).await;
        abandoned.abort();
        assert!(abandoned.await.unwrap_err().is_cancelled());
        db.gate.add_permits(100);
        assert_eq!(first.await.unwrap().unwrap(), value("a"));
        assert_eq!(kept.await.unwrap().unwrap(), value("c"));
    }

    #[tokio::test]
    async fn a_runner_that_panics_is_counted_out_and_operations_go_on() {
        let calls = Arc::new(AtomicU64::new(0));
        let run: Run<String, usize> = {
            let calls = Arc::clone(&calls);
            Arc::new(move |ops: Vec<String>| {
                let first = calls.fetch_add(1, Ordering::Relaxed) == 0;
                Box::pin(async move {
                    assert!(!first, "a bug in the first statement");
                    Ok(ops.iter().map(String::len).collect())
                })
            })
        };
        let batcher = Arc::new(Batcher::new(run, 64, 1));
        let err = batcher.call("a".into()).await.unwrap_err();
        assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
        assert_eq!(batcher.lock().runners, 0);
        assert_eq!(batcher.call("bb".into()).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_batch_answered_short_fails_rather_than_answer_the_wrong_operation() {
        let run: Run<String, usize> =
            Arc::new(|_ops: Vec<String>| Box::pin(async { Ok(Vec::new()) }));
        let batcher = Arc::new(Batcher::new(run, 64, 1));
        let err = batcher.call("a".into()).await.unwrap_err();
        assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
    }
}
