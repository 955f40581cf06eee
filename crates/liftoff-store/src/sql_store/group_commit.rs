//! Group commit for SQLite's one writer connection.
//!
//! With `synchronous = FULL` every commit waits for the disk (an fsync),
//! and SQLite has one writer: a transaction per request made the disk's
//! sync rate the ceiling on writes (measured: about 2,000 claims/s with 16
//! agents, from a disk that syncs 10,600 times a second from one thread).
//! Here each request's writes run, as before, one request at a time on the
//! writer connection, but inside a savepoint of a transaction that several
//! requests share (each request's nested in the one before, none released
//! before the commit): a committer task commits it once the requests that were
//! already waiting for the writer have had their turn, and only then is
//! each of them answered. So an answered write is as durable as before,
//! and a write that fails (or whose request went away) is undone alone,
//! by rolling back to its savepoint. A commit that fails fails every
//! request in it. No library does this (rusqlite's and sqlx's transactions
//! are one commit each), hence this file.
//!
//! The writer is a rusqlite connection (`db.rs`): the statements run in
//! place on the request's thread, and only the `COMMIT`, which waits for
//! the disk, goes to a blocking thread.
//!
//! The order is tokio's `Mutex`, which is fair: the committer queues for
//! the writer behind the requests waiting when the first of a batch
//! finished, so a batch is exactly "what was waiting"; a request that
//! finishes with no one waiting commits its batch itself, at once.

use super::db::{Conn, LiteConn, LitePool};
use crate::StoreError;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use tokio::sync::{Mutex, Notify, OwnedMutexGuard, watch};

/// The outcome of a batch's commit, as its requests read it.
type Outcome = Option<Result<(), String>>;

/// The writer connection's shared transaction and the task that commits it.
pub(super) struct GroupCommit {
    pool: Arc<LitePool>,
    state: Arc<Mutex<Open>>,
    /// Wakes the committer: a request finished (or was dropped) in a batch.
    pending: Arc<Notify>,
    /// Batches committed, for the tests to see requests share them.
    #[cfg(test)]
    commits: Arc<AtomicU64>,
    /// Requests waiting for the writer: none, and a request that finishes
    /// commits its batch itself, without a hop to the committer.
    waiting: Arc<AtomicUsize>,
}

/// What the writer has open.
#[derive(Default)]
struct Open {
    /// The writer connection, inside `BEGIN IMMEDIATE`, while a batch is open.
    conn: Option<Conn>,
    /// Where the open batch's requests learn how its commit went.
    batch: Option<watch::Sender<Outcome>>,
    /// A request went away before it finished: how its writes are undone.
    abandoned: Option<Undo>,
    /// The writer's [`LiteConn::total_changes`] at the open batch's `BEGIN`:
    /// a batch that changed nothing commits without waiting for the disk.
    changes_at_begin: u64,
    /// Batches committed, counted before their requests are answered (so a
    /// request that got its answer sees its batch counted).
    commits: Arc<AtomicU64>,
}

/// How an unfinished request's writes are undone.
#[derive(Clone, Copy)]
enum Undo {
    /// Back to its savepoint; the batch goes on.
    Savepoint,
    /// It opened the batch and is alone in it (it held the writer from the
    /// `BEGIN`): the whole transaction is rolled back. A batch's first
    /// request runs without a savepoint, which saves two statements.
    Batch,
}

/// The savepoint each request runs in.
const SAVEPOINT: &str = "liftoff_request";

impl GroupCommit {
    /// A group committer over `pool` (SQLite's one-connection write pool),
    /// with its committer task.
    pub(super) fn new(pool: Arc<LitePool>) -> Arc<Self> {
        let commits = Arc::<AtomicU64>::default();
        let open = Open { commits: commits.clone(), ..Open::default() };
        let group = Arc::new(Self {
            pool,
            state: Arc::new(Mutex::new(open)),
            pending: Arc::default(),
            #[cfg(test)]
            commits,
            waiting: Arc::default(),
        });
        let task = committer(Arc::downgrade(&group), group.state.clone(), group.pending.clone());
        tokio::spawn(task);
        group
    }

    /// Batches committed so far.
    #[cfg(test)]
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Requests waiting for the writer now.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Starts a request's writes: waits for the writer, joins the open batch
    /// (or opens one) and opens the request's savepoint.
    pub(super) async fn begin(&self) -> Result<GroupTx, StoreError> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let waited = scopeguard(|| {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        });
        let open = self.state.clone().lock_owned().await;
        drop(waited);
        // Run in place: a caller that goes away can only do so while the
        // writer connection is awaited, before any statement (SQLite's run
        // on this thread, without an await between them), so it cannot cut
        // them half way.
        let (open, started) = start(open, self.pool.clone()).await;
        started?;
        let outcome = open.batch.as_ref().expect("a batch is open").subscribe();
        Ok(GroupTx { open: Some(open), outcome, pending: self.pending.clone(), waiting: self.waiting.clone() })
    }
}

/// Opens the request's part of the batch (the batch itself when none is
/// open): a savepoint, or `BEGIN IMMEDIATE` on the writer connection.
async fn start(
    mut open: OwnedMutexGuard<Open>,
    pool: Arc<LitePool>,
) -> (OwnedMutexGuard<Open>, Result<(), StoreError>) {
    undo_abandoned(&mut open).await;
    let undo = if open.conn.is_none() {
        let mut conn = match pool.acquire().await {
            Ok(conn) => conn,
            Err(e) => return (open, Err(e.into())),
        };
        if let Err(e) = conn.lite().batch("BEGIN IMMEDIATE") {
            return (open, Err(e.into()));
        }
        open.changes_at_begin = conn.lite().total_changes();
        open.conn = Some(Conn::Lite(conn));
        open.batch = Some(watch::channel(None).0);
        Undo::Batch
    } else {
        if let Err(e) = lite(&mut open).batch(&format!("SAVEPOINT {SAVEPOINT}")) {
            // the batch's transaction is unusable: end it, failing the others
            finish(&mut open, Err(format!("a request could not start in the shared transaction: {e}"))).await;
            return (open, Err(e.into()));
        }
        Undo::Savepoint
    };
    open.abandoned = Some(undo); // until its commit
    (open, Ok(()))
}

/// The open batch's connection.
fn lite(open: &mut Open) -> &mut LiteConn {
    match open.conn.as_mut() {
        Some(Conn::Lite(conn)) => conn.lite(),
        _ => unreachable!("a batch is open, on SQLite's writer"),
    }
}

fn join_error(e: tokio::task::JoinError) -> StoreError {
    StoreError::Db(sqlx::Error::Protocol(format!("the writer's task failed: {e}")))
}

impl Drop for GroupCommit {
    /// Wakes the committer, which then sees the store gone and ends.
    fn drop(&mut self) {
        self.pending.notify_one();
    }
}

/// One request's writes: derefs to the writer connection, inside the
/// request's savepoint (or, for the batch's first, the batch itself).
pub(crate) struct GroupTx {
    open: Option<OwnedMutexGuard<Open>>,
    outcome: watch::Receiver<Outcome>,
    pending: Arc<Notify>,
    waiting: Arc<AtomicUsize>,
}

impl GroupTx {
    /// Keeps the request's writes and answers once the batch holding them
    /// is committed; fails if that commit does.
    pub(super) async fn commit(mut self) -> Result<(), StoreError> {
        let open = self.open.take().expect("not committed twice");
        // In a task of its own, so that a caller going away cannot cut the
        // commit half way; the caller only waits for the outcome.
        let (pending, waiting) = (self.pending.clone(), self.waiting.clone());
        tokio::spawn(keep(open, pending, waiting)).await.map_err(join_error)?;
        let outcome = self.outcome.wait_for(Option::is_some).await.map(|o| o.clone());
        match outcome {
            Ok(Some(Ok(()))) => Ok(()),
            Ok(Some(Err(why))) => Err(StoreError::Db(sqlx::Error::Protocol(why))),
            Ok(None) | Err(_) => {
                Err(StoreError::Db(sqlx::Error::Protocol("the shared transaction ended without a commit".into())))
            }
        }
    }
}

/// Keeps the request's writes, then commits the batch at once when no one
/// waits for the writer, else wakes the committer. The request's savepoint
/// is not released: the savepoints of a batch's requests nest, and its
/// `COMMIT` keeps them all (a `RELEASE` per request was one more
/// statement). An abandoned request is still undone alone: its savepoint
/// is the innermost, which `ROLLBACK TO` the name finds.
async fn keep(mut open: OwnedMutexGuard<Open>, pending: Arc<Notify>, waiting: Arc<AtomicUsize>) {
    open.abandoned = None;
    if waiting.load(Ordering::Relaxed) == 0 {
        // no one to share the commit with: commit now (a failed commit
        // reaches the caller as the batch's outcome)
        finish(&mut open, Ok(())).await;
    } else {
        pending.notify_one();
    }
}

impl Drop for GroupTx {
    /// A request dropped before its commit (an error, or its caller went
    /// away): its savepoint stays marked abandoned, and whoever takes the
    /// writer next rolls it back; the committer is woken, so the batch's
    /// other requests are still committed.
    fn drop(&mut self) {
        if self.open.take().is_some() {
            self.pending.notify_one();
        }
    }
}

impl Deref for GroupTx {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.open.as_ref().and_then(|o| o.conn.as_ref()).expect("a request holds the writer until it ends")
    }
}

impl DerefMut for GroupTx {
    fn deref_mut(&mut self) -> &mut Conn {
        self.open.as_mut().and_then(|o| o.conn.as_mut()).expect("a request holds the writer until it ends")
    }
}

/// Undoes an abandoned request's writes: back to its savepoint, or the
/// whole batch when it was alone in it; if even that fails, the batch
/// cannot be trusted and fails whole.
async fn undo_abandoned(open: &mut Open) {
    match open.abandoned.take() {
        None => return,
        Some(Undo::Batch) => {
            // no one else's writes are in it, and no one waits for its outcome
            finish(open, Err("its only request went away".into())).await;
            return;
        }
        Some(Undo::Savepoint) => {}
    }
    if open.conn.is_none() {
        return;
    }
    let undo = lite(open).batch(&format!("ROLLBACK TO {SAVEPOINT}; RELEASE {SAVEPOINT}"));
    if let Err(e) = undo {
        finish(open, Err(format!("an abandoned request could not be undone: {e}"))).await;
    }
}

/// Ends the open batch: commits it (`Ok`), or rolls it back with the
/// reason its requests get; hands the connection back to the pool.
///
/// The `COMMIT` waits for the disk (`synchronous = FULL`), so it runs on a
/// blocking thread, not on the runtime's; the other statements take
/// microseconds and run in place, and so does the `COMMIT` of a batch that
/// changed nothing (empty claims), which writes nothing to the log.
async fn finish(open: &mut Open, mut outcome: Result<(), String>) {
    let Some(Conn::Lite(mut conn)) = open.conn.take() else { return };
    if outcome.is_ok() {
        outcome = if conn.lite().total_changes() == open.changes_at_begin {
            conn.lite().batch("COMMIT").map_err(|e| format!("the commit failed: {e}"))
        } else {
            let commit = move || {
                let done = conn.lite().batch("COMMIT");
                (conn, done)
            };
            match tokio::task::spawn_blocking(commit).await {
                Ok((back, done)) => {
                    conn = back;
                    done.map_err(|e| format!("the commit failed: {e}"))
                }
                Err(e) => return announce(open, Err(format!("the commit's thread failed: {e}"))),
            }
        };
    }
    // a connection still in the transaction (a rollback, or a failed
    // commit) is rolled back as it goes back to the pool (`LiteHandle`'s
    // drop), or not reused if even that fails
    drop(conn);
    announce(open, outcome);
}

/// Counts a committed batch and tells its requests how it went.
fn announce(open: &mut Open, outcome: Result<(), String>) {
    if outcome.is_ok() {
        open.commits.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(batch) = open.batch.take() {
        batch.send_replace(Some(outcome));
    }
}

/// Commits each batch once the requests waiting for the writer when it was
/// woken have run (the lock is fair, so they are ahead of it). Ends with
/// the store.
async fn committer(group: Weak<GroupCommit>, state: Arc<Mutex<Open>>, pending: Arc<Notify>) {
    loop {
        pending.notified().await;
        if group.strong_count() == 0 {
            return;
        }
        let mut open = state.lock().await;
        undo_abandoned(&mut open).await;
        finish(&mut open, Ok(())).await;
    }
}

/// Runs `f` when dropped (also when the future holding it is).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
