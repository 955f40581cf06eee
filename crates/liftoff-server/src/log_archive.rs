//! Moves an ended run's log from the database (where chunks are sequenced
//! under the fencing check) to the blob store (where logs live at scale),
//! unless it is small enough to stay (`ServerConfig::log_keep_max_bytes`).

use crate::app::AppState;
use crate::error::ApiError;
use bytes::Bytes;
use liftoff_core::api::LogChunk;
use liftoff_store::StoreError;

/// Chunks read from the database per query while archiving.
const PAGE: i64 = 5000;

/// How long one server holds the archiving of a log before another may take
/// it over (when the first crashed): two lease TTLs, at least 10 s. Short,
/// so that a crash delays a log's archive by little; an archiver slower than
/// this only costs a second upload of the same object (its mark is then
/// refused), since an ended run's chunks no longer change.
fn claim_ttl_ms(st: &AppState) -> i64 {
    (st.config.lease_ttl * 2).max(std::time::Duration::from_secs(10)).as_millis() as i64
}

/// Logs archived at once: their claims and marks are concurrent writes,
/// which SQLite's group commit puts in shared commits (archived one after
/// another, a burst of ended runs cost two fsynced commits per log).
const AT_ONCE: usize = 16;

/// Archives the logs of up to `limit` ended items; returns how many this
/// server archived. Each log is claimed first, so that of several servers on
/// one database exactly one archives it. Safe to repeat after a crash: the
/// object is rewritten whole before the rows are dropped. A log that fails
/// does not stop the others; the first failure is returned once all are done.
pub async fn archive_ended(st: &AppState, limit: i64) -> Result<usize, StoreError> {
    use futures::StreamExt;
    let max = i64::try_from(st.config.log_keep_max_bytes).unwrap_or(i64::MAX);
    if max > 0 {
        st.store.keep_small_logs(max).await?;
    }
    let todo = st.store.logs_to_archive(limit).await?;
    let outcomes: Vec<Result<bool, StoreError>> = futures::stream::iter(todo)
        .map(|(entity, id)| async move { archive_one(st, &entity, &id).await })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let mut archived = 0;
    let mut first_error = None;
    for outcome in outcomes {
        match outcome {
            Ok(done) => archived += usize::from(done),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(archived),
    }
}

/// Archives one ended item's log: `false` when another archiver holds it or
/// it is archived already.
async fn archive_one(st: &AppState, entity: &str, id: &str) -> Result<bool, StoreError> {
    let Some(claim) = st.store.claim_log_archive(entity, id, claim_ttl_ms(st)).await? else { return Ok(false) };
    let mut jsonl = Vec::new();
    let mut after = 0;
    let mut through_seq = None;
    loop {
        let chunks = st.store.read_log(entity, id, after, PAGE).await?;
        for c in &chunks {
            serde_json::to_writer(&mut jsonl, c)
                .map_err(|e| StoreError::Corrupt { what: "log chunk", detail: e.to_string() })?;
            jsonl.push(b'\n');
        }
        through_seq = chunks.last().map(|c| c.seq).or(through_seq);
        match chunks.last() {
            Some(last) if chunks.len() as i64 == PAGE => after = last.seq + 1,
            _ => break,
        }
    }
    st.blobs.put_log(entity, id, Bytes::from(jsonl)).await?;
    st.store.mark_log_archived(entity, id, claim, through_seq).await?;
    Ok(true)
}

/// Chunks `seq >= after` of an archived log, at most `limit`.
pub async fn read_archived(
    st: &AppState,
    entity: &str,
    id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<LogChunk>, ApiError> {
    let Some(bytes) = st.blobs.get_log(entity, id).await? else {
        return Err(
            StoreError::Corrupt { what: "log archive", detail: format!("object for item {id} is missing") }.into()
        );
    };
    let mut out = Vec::new();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let chunk: LogChunk = serde_json::from_slice(line)
            .map_err(|e| ApiError::from(StoreError::Corrupt { what: "log archive", detail: e.to_string() }))?;
        if chunk.seq >= after {
            out.push(chunk);
            if out.len() as i64 >= limit {
                break;
            }
        }
    }
    Ok(out)
}
