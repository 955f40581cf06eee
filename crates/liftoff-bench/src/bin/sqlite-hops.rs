//! Benchmark (not a test): what sqlx's thread-per-connection SQLite driver
//! costs per claim-shaped write, against the same statements run by
//! rusqlite on one writer thread that takes whole requests.
//!
//! Each request is what a claim is in the store: `BEGIN IMMEDIATE`, a pick,
//! an update of the picked row, a history insert, `COMMIT`; sent one after
//! another from a tokio task, as a quiet server's requests arrive. Printed:
//! wall time and this process's CPU per request, with `synchronous = FULL`
//! (a sync per commit, as the store runs) and `OFF` (the CPU without it).
//!
//! `cargo run --release -p liftoff-bench --bin sqlite-hops -- [--requests N]`

use anyhow::Context;
use clap::Parser;
use sqlx::Connection;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Requests per measurement.
    #[arg(long, default_value_t = 4000)]
    requests: usize,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE items (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, state TEXT NOT NULL, fence INTEGER NOT NULL, spec TEXT NOT NULL)",
    "CREATE INDEX items_pending ON items (state, seq)",
    "CREATE TABLE history (item_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL, at INTEGER NOT NULL, UNIQUE (item_id, seq))",
];
const PICK: &str = "SELECT id, fence FROM items WHERE state = 'pending' ORDER BY seq LIMIT 1";
const UPDATE: &str = "UPDATE items SET state = 'claimed', fence = $1 WHERE id = $2 AND fence = $3";
const HISTORY: &str = "INSERT INTO history (item_id, seq, event, at) \
     SELECT $1, COALESCE((SELECT MAX(seq) FROM history WHERE item_id = $1), 0) + 1, 'claim', $2";

/// This process's user and system CPU so far, in seconds.
fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after = stat.rsplit_once(')').context("malformed stat")?.1;
    let f: Vec<f64> = after.split_whitespace().skip(11).take(2).map(|x| x.parse().unwrap_or(0.0)).collect();
    anyhow::ensure!(f.len() == 2, "malformed stat");
    Ok((f[0] + f[1]) / 100.0)
}

/// A fresh database of `n` pending items, in `dir`.
fn fill(dir: &std::path::Path, n: usize) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join(format!("hops-{}.db", uuid::Uuid::new_v4()));
    let conn = rusqlite::Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    for s in SCHEMA {
        conn.execute(s, [])?;
    }
    conn.execute("BEGIN", [])?;
    for i in 0..n {
        conn.execute(
            "INSERT INTO items (id, seq, state, fence, spec) VALUES (?1, ?2, 'pending', 0, ?3)",
            rusqlite::params![format!("item-{i}"), i as i64, "{\"job\":\"a/b/c:v1\",\"args\":[]}"],
        )?;
    }
    conn.execute("COMMIT", [])?;
    Ok(path)
}

/// The claims through sqlx: each statement a round trip to its connection thread.
async fn through_sqlx(path: &std::path::Path, sync: &str, n: usize) -> anyhow::Result<()> {
    let url = format!("sqlite://{}", path.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA synchronous = {sync}"))).execute(&mut conn).await?;
    for i in 0..n {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await?;
        let (id, fence): (String, i64) = sqlx::query_as(PICK).fetch_one(&mut conn).await?;
        sqlx::query(UPDATE).bind(fence + 1).bind(&id).bind(fence).execute(&mut conn).await?;
        sqlx::query(HISTORY).bind(&id).bind(i as i64).execute(&mut conn).await?;
        sqlx::query("COMMIT").execute(&mut conn).await?;
    }
    Ok(())
}

/// The same claims as whole requests to one rusqlite writer thread.
async fn through_one_thread(path: &std::path::Path, sync: &str, n: usize) -> anyhow::Result<()> {
    type Request = (i64, tokio::sync::oneshot::Sender<rusqlite::Result<String>>);
    let (tx, rx) = std::sync::mpsc::channel::<Request>();
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "synchronous", sync)?;
    let writer = std::thread::spawn(move || {
        let claim = |at: i64| -> rusqlite::Result<String> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let (id, fence): (String, i64) =
                conn.prepare_cached(PICK)?.query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            conn.prepare_cached(UPDATE)?.execute(rusqlite::params![fence + 1, id, fence])?;
            conn.prepare_cached(HISTORY)?.execute(rusqlite::params![id, at])?;
            conn.execute_batch("COMMIT")?;
            Ok(id)
        };
        for (at, answer) in rx {
            let _ = answer.send(claim(at));
        }
    });
    for i in 0..n {
        let (answer, answered) = tokio::sync::oneshot::channel();
        tx.send((i as i64, answer)).context("the writer thread ended")?;
        answered.await.context("the writer thread ended")??;
    }
    drop(tx);
    writer.join().map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    println!("sqlite-hops: {} claim-shaped requests one after another, per request:", args.requests);
    for sync in ["FULL", "OFF"] {
        for how in ["sqlx", "one writer thread"] {
            let path = fill(dir.path(), args.requests)?;
            let (t, c) = (Instant::now(), cpu_seconds()?);
            match how {
                "sqlx" => through_sqlx(&path, sync, args.requests).await?,
                _ => through_one_thread(&path, sync, args.requests).await?,
            }
            let per = |x: f64| x * 1e6 / args.requests as f64;
            println!(
                "  synchronous = {sync:4} {how:18} wall {:6.1} us   cpu {:6.1} us",
                per(t.elapsed().as_secs_f64()),
                per(cpu_seconds()? - c)
            );
        }
    }
    Ok(())
}
