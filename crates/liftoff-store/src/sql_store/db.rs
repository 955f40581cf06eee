//! The store's one way to run SQL: [`query`] with its arguments, run on a
//! connection ([`Conn`]) or a pool ([`Pool`]) of either driver.
//!
//! PostgreSQL goes through sqlx's `Any` driver, as before. SQLite goes
//! through rusqlite, on the calling task's thread: sqlx runs each SQLite
//! connection on a thread of its own, and every statement was a hand-off to
//! it and back (a channel, a futex wake, two context switches), which cost
//! more CPU than SQLite's own work (`liftoff-bench`'s `sqlite-hops`: 218 µs
//! of CPU per claim-shaped write through sqlx, 62–110 µs on rusqlite).
//! SQLite's statements run in microseconds, so running them in place is
//! cheaper than any hand-off; the one slow statement, a synced `COMMIT`,
//! is sent to a blocking thread by the group committer (`group_commit.rs`).
//! No library offers one query API over both (sqlx's own SQLite driver is
//! the hand-offs), hence this file; it keeps sqlx's shapes (`bind`,
//! `fetch_*`, `try_get`, `sqlx::Error`) so that the SQL reads as before.
//!
//! Placeholders are `$N` for both: SQLite takes `$1` as a named parameter,
//! bound here by its number. A query may hold several statements (SQLite
//! only): their rows are returned together and their changes summed.

use rusqlite::types::{Value, ValueRef};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, AssertSqlSafe};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// An SQL statement (or several, on SQLite) and its arguments.
pub(crate) struct Query {
    sql: Cow<'static, str>,
    args: Vec<Arg>,
}

/// `sql` with no arguments yet.
pub(crate) fn query(sql: impl Into<Cow<'static, str>>) -> Query {
    Query { sql: sql.into(), args: Vec::new() }
}

/// What an `execute` changed.
pub(crate) struct Done {
    rows_affected: u64,
}

impl Done {
    pub(crate) fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

/// Where a query runs.
pub(crate) enum On<'e> {
    Conn(&'e mut Conn),
    Pool(&'e Pool),
}

impl<'e> From<&'e mut Conn> for On<'e> {
    fn from(conn: &'e mut Conn) -> Self {
        Self::Conn(conn)
    }
}

impl<'e> From<&'e Pool> for On<'e> {
    fn from(pool: &'e Pool) -> Self {
        Self::Pool(pool)
    }
}

impl Query {
    pub(crate) fn bind(mut self, value: impl IntoArg) -> Self {
        self.args.push(value.into_arg());
        self
    }

    pub(crate) async fn execute<'e>(self, on: impl Into<On<'e>>) -> Result<Done, sqlx::Error> {
        match on.into() {
            On::Conn(conn) => match conn {
                Conn::Any(c) => Ok(done(self.any().execute(&mut **c).await?)),
                Conn::AnyTx(t) => Ok(done(self.any().execute(&mut **t).await?)),
                Conn::Lite(h) => Ok(run(h.lite(), &self.sql, &self.args, false)?.1),
            },
            On::Pool(Pool::Any(pool)) => Ok(done(self.any().execute(pool).await?)),
            On::Pool(Pool::Lite(pool)) => Ok(run(pool.acquire().await?.lite(), &self.sql, &self.args, false)?.1),
        }
    }

    pub(crate) async fn fetch_all<'e>(self, on: impl Into<On<'e>>) -> Result<Vec<Row>, sqlx::Error> {
        let any = |rows: Vec<AnyRow>| rows.into_iter().map(Row::Any).collect();
        match on.into() {
            On::Conn(conn) => match conn {
                Conn::Any(c) => Ok(any(self.any().fetch_all(&mut **c).await?)),
                Conn::AnyTx(t) => Ok(any(self.any().fetch_all(&mut **t).await?)),
                Conn::Lite(h) => Ok(run(h.lite(), &self.sql, &self.args, true)?.0),
            },
            On::Pool(Pool::Any(pool)) => Ok(any(self.any().fetch_all(pool).await?)),
            On::Pool(Pool::Lite(pool)) => Ok(run(pool.acquire().await?.lite(), &self.sql, &self.args, true)?.0),
        }
    }

    /// [`Self::fetch_all`] of a read that may scan many rows (the metrics'
    /// counts): on SQLite, on a blocking thread rather than the runtime's.
    pub(crate) async fn fetch_all_apart(self, pool: &Pool) -> Result<Vec<Row>, sqlx::Error> {
        match pool {
            Pool::Any(_) => self.fetch_all(pool).await,
            Pool::Lite(lite) => {
                let mut conn = lite.acquire().await?;
                let read = move || run(conn.lite(), &self.sql, &self.args, true).map(|(rows, _)| rows);
                tokio::task::spawn_blocking(read)
                    .await
                    .map_err(|e| sqlx::Error::Protocol(format!("a read's thread failed: {e}")))?
            }
        }
    }

    /// The first row of all the query's statements, or `None`. (sqlx's
    /// `Any` driver answers `fetch_optional` of several statements from the
    /// first statement alone, hence the rows fetched whole for those.)
    pub(crate) async fn fetch_optional<'e>(self, on: impl Into<On<'e>>) -> Result<Option<Row>, sqlx::Error> {
        Ok(self.fetch_all(on).await?.into_iter().next())
    }

    pub(crate) async fn fetch_one<'e>(self, on: impl Into<On<'e>>) -> Result<Row, sqlx::Error> {
        self.fetch_optional(on).await?.ok_or(sqlx::Error::RowNotFound)
    }

    fn any(self) -> sqlx::query::Query<'static, Any, AnyArguments> {
        let mut q = sqlx::query(AssertSqlSafe(self.sql));
        for arg in self.args {
            q = match arg {
                Arg::Null(Kind::Bool) => q.bind(None::<bool>),
                Arg::Null(Kind::I32) => q.bind(None::<i32>),
                Arg::Null(Kind::I64) => q.bind(None::<i64>),
                Arg::Null(Kind::F64) => q.bind(None::<f64>),
                Arg::Null(Kind::Text) => q.bind(None::<String>),
                Arg::Null(Kind::Blob) => q.bind(None::<Vec<u8>>),
                Arg::Bool(v) => q.bind(v),
                Arg::I32(v) => q.bind(v),
                Arg::I64(v) => q.bind(v),
                Arg::F64(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::Blob(v) => q.bind(v),
            };
        }
        q
    }
}

fn done(r: sqlx::any::AnyQueryResult) -> Done {
    Done { rows_affected: r.rows_affected() }
}

/// A bound argument, typed as sqlx's `Any` driver wants it (PostgreSQL
/// needs a typed `NULL`).
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Null(Kind),
    Bool(bool),
    I32(i32),
    I64(i64),
    F64(f64),
    Text(String),
    Blob(Vec<u8>),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Bool,
    I32,
    I64,
    F64,
    Text,
    Blob,
}

pub(crate) trait IntoArg {
    const KIND: Kind;
    fn into_arg(self) -> Arg;
}

macro_rules! into_arg {
    ($($t:ty => $kind:ident, $v:ident => $e:expr;)*) => {$(
        impl IntoArg for $t {
            const KIND: Kind = Kind::$kind;
            fn into_arg(self) -> Arg {
                let $v = self;
                Arg::$kind($e)
            }
        }
    )*};
}

into_arg! {
    bool => Bool, v => v;
    i32 => I32, v => v;
    i64 => I64, v => v;
    f64 => F64, v => v;
    String => Text, v => v;
    &String => Text, v => v.clone();
    &str => Text, v => v.to_string();
    Cow<'_, str> => Text, v => v.into_owned();
    Vec<u8> => Blob, v => v;
    &[u8] => Blob, v => v.to_vec();
    &Vec<u8> => Blob, v => v.clone();
}

into_arg! {
    &bool => Bool, v => *v;
    &i32 => I32, v => *v;
    &i64 => I64, v => *v;
}

impl<T: IntoArg + Clone> IntoArg for &Option<T> {
    const KIND: Kind = T::KIND;
    fn into_arg(self) -> Arg {
        self.clone().into_arg()
    }
}

impl<T: IntoArg> IntoArg for Option<T> {
    const KIND: Kind = T::KIND;
    fn into_arg(self) -> Arg {
        match self {
            Some(v) => v.into_arg(),
            None => Arg::Null(T::KIND),
        }
    }
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ToSqlOutput::Borrowed;
        Ok(match self {
            Arg::Null(_) => Borrowed(ValueRef::Null),
            Arg::Bool(v) => Borrowed(ValueRef::Integer(i64::from(*v))),
            Arg::I32(v) => Borrowed(ValueRef::Integer(i64::from(*v))),
            Arg::I64(v) => Borrowed(ValueRef::Integer(*v)),
            Arg::F64(v) => Borrowed(ValueRef::Real(*v)),
            Arg::Text(v) => Borrowed(ValueRef::Text(v.as_bytes())),
            Arg::Blob(v) => Borrowed(ValueRef::Blob(v)),
        })
    }
}

/// A result row of either driver.
pub(crate) enum Row {
    Any(AnyRow),
    Lite { names: Arc<[String]>, values: Vec<Value> },
}

impl Row {
    /// Column `index` (a name or a position) as a `T`.
    pub(crate) fn try_get<T: Col, I: ColIndex>(&self, index: I) -> Result<T, sqlx::Error> {
        match self {
            Row::Any(row) => sqlx::Row::try_get(row, index),
            Row::Lite { names, values } => {
                let at = index.position(names).ok_or_else(|| sqlx::Error::ColumnNotFound(index.describe()))?;
                T::from_lite(&values[at])
                    .map_err(|why| sqlx::Error::ColumnDecode { index: index.describe(), source: why.into() })
            }
        }
    }
}

/// A column named or numbered.
pub(crate) trait ColIndex: sqlx::ColumnIndex<AnyRow> {
    fn position(&self, names: &[String]) -> Option<usize>;
    fn describe(&self) -> String;
}

impl ColIndex for &str {
    fn position(&self, names: &[String]) -> Option<usize> {
        names.iter().position(|n| n == self)
    }
    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

impl ColIndex for usize {
    fn position(&self, names: &[String]) -> Option<usize> {
        (*self < names.len()).then_some(*self)
    }
    fn describe(&self) -> String {
        self.to_string()
    }
}

/// A type a column decodes to, from either driver.
pub(crate) trait Col: Sized + for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any> {
    fn from_lite(value: &Value) -> Result<Self, String>;
}

fn mismatch(want: &str, got: &Value) -> String {
    format!("expected {want}, found {:?}", got.data_type())
}

impl Col for i64 {
    fn from_lite(value: &Value) -> Result<Self, String> {
        match value {
            Value::Integer(v) => Ok(*v),
            other => Err(mismatch("an integer", other)),
        }
    }
}

impl Col for i32 {
    fn from_lite(value: &Value) -> Result<Self, String> {
        let v = i64::from_lite(value)?;
        i32::try_from(v).map_err(|_| format!("{v} does not fit in 32 bits"))
    }
}

impl Col for bool {
    fn from_lite(value: &Value) -> Result<Self, String> {
        Ok(i64::from_lite(value)? != 0)
    }
}

impl Col for f64 {
    fn from_lite(value: &Value) -> Result<Self, String> {
        match value {
            Value::Real(v) => Ok(*v),
            #[expect(clippy::cast_precision_loss, reason = "SQLite's REAL affinity does the same")]
            Value::Integer(v) => Ok(*v as f64),
            other => Err(mismatch("a number", other)),
        }
    }
}

impl Col for String {
    fn from_lite(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(v) => Ok(v.clone()),
            other => Err(mismatch("text", other)),
        }
    }
}

impl Col for Vec<u8> {
    fn from_lite(value: &Value) -> Result<Self, String> {
        match value {
            Value::Blob(v) => Ok(v.clone()),
            other => Err(mismatch("a blob", other)),
        }
    }
}

impl<T: Col> Col for Option<T> {
    fn from_lite(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_lite(other).map(Some),
        }
    }
}

/// A connection of either driver; a pooled one goes back when dropped.
pub(crate) enum Conn {
    Any(PoolConnection<Any>),
    /// A PostgreSQL transaction.
    AnyTx(sqlx::Transaction<'static, Any>),
    Lite(LiteHandle),
}

/// A pool of either driver.
#[derive(Clone)]
pub(crate) enum Pool {
    Any(AnyPool),
    Lite(Arc<LitePool>),
}

impl Pool {
    /// A connection of the pool, waiting for one if all are taken.
    pub(crate) async fn acquire(&self) -> Result<Conn, sqlx::Error> {
        match self {
            Pool::Any(pool) => Ok(Conn::Any(pool.acquire().await?)),
            Pool::Lite(pool) => pool.acquire().await.map(Conn::Lite),
        }
    }
}

/// SQLite connections to one file, at most `size` handed out at once.
pub(crate) struct LitePool {
    path: PathBuf,
    pragmas: &'static [&'static str],
    idle: Mutex<Vec<LiteConn>>,
    permits: Arc<Semaphore>,
}

/// A rusqlite connection, and the statements of the multi-statement
/// queries it ran.
pub(crate) struct LiteConn {
    conn: rusqlite::Connection,
    splits: HashMap<String, Arc<[String]>>,
}

/// A connection of a [`LitePool`], given back to it when dropped; if it is
/// still inside a transaction (its holder went away), that is rolled back
/// first.
pub(crate) struct LiteHandle {
    conn: Option<LiteConn>,
    pool: Arc<LitePool>,
    _permit: OwnedSemaphorePermit,
}

impl LitePool {
    /// Opens the first connection now, so that a bad path fails here.
    pub(crate) fn open(path: PathBuf, size: usize, pragmas: &'static [&'static str]) -> Result<Arc<Self>, sqlx::Error> {
        let pool = Arc::new(Self { path, pragmas, idle: Mutex::default(), permits: Arc::new(Semaphore::new(size)) });
        let first = pool.connect()?;
        pool.idle.lock().expect("not poisoned").push(first);
        Ok(pool)
    }

    fn connect(&self) -> Result<LiteConn, sqlx::Error> {
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(&self.path, flags).map_err(lite_error)?;
        conn.set_prepared_statement_cache_capacity(128);
        // as sqlx set them: wait for another process's lock; foreign keys on
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(lite_error)?;
        let mut setup = String::from("PRAGMA foreign_keys = ON;");
        for pragma in self.pragmas {
            setup.push_str(pragma);
            setup.push(';');
        }
        conn.execute_batch(&setup).map_err(lite_error)?;
        Ok(LiteConn { conn, splits: HashMap::new() })
    }

    /// A connection, waiting while `size` are out.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<LiteHandle, sqlx::Error> {
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.idle.lock().expect("not poisoned").pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.connect()?,
        };
        Ok(LiteHandle { conn: Some(conn), pool: self.clone(), _permit: permit })
    }
}

impl LiteHandle {
    pub(crate) fn lite(&mut self) -> &mut LiteConn {
        self.conn.as_mut().expect("held until dropped")
    }
}

impl Drop for LiteHandle {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !conn.conn.is_autocommit() && conn.conn.execute_batch("ROLLBACK").is_err() {
            return; // neither committed nor rolled back: not reused
        }
        self.pool.idle.lock().expect("not poisoned").push(conn);
    }
}

impl LiteConn {
    /// Runs `sql` as it is (`BEGIN`, `COMMIT`, `SAVEPOINT`...), no arguments.
    pub(crate) fn batch(&self, sql: &str) -> Result<(), sqlx::Error> {
        self.conn.execute_batch(sql).map_err(lite_error)
    }

    /// Rows changed by the connection's statements since it was opened.
    pub(crate) fn total_changes(&self) -> u64 {
        self.conn.total_changes()
    }

    /// The statements of `sql`, split once and remembered.
    fn statements(&mut self, sql: &str) -> Result<Arc<[String]>, sqlx::Error> {
        if let Some(split) = self.splits.get(sql) {
            return Ok(split.clone());
        }
        let split: Arc<[String]> = split_statements(sql)?.into();
        if self.splits.len() >= 64 {
            self.splits.clear(); // the store's queries come in a few shapes: a bound, not a working size
        }
        self.splits.insert(sql.to_string(), split.clone());
        Ok(split)
    }
}

/// Runs `sql` on `conn`: every statement, with the arguments its `$N`
/// name; the rows of all (when `rows`) and the changes of all.
fn run(conn: &mut LiteConn, sql: &str, args: &[Arg], rows: bool) -> Result<(Vec<Row>, Done), sqlx::Error> {
    // one statement unless a `;` comes before the end
    let several = sql.trim_end().trim_end_matches(';').contains(';');
    let split = if several { Some(conn.statements(sql)?) } else { None };
    let texts: Vec<&str> = match &split {
        Some(split) => split.iter().map(String::as_str).collect(),
        None => vec![sql],
    };
    let mut out = Vec::new();
    let mut changed = 0u64;
    for text in texts {
        let mut stmt = conn.conn.prepare_cached(text).map_err(lite_error)?;
        for i in 1..=stmt.parameter_count() {
            let name = stmt.parameter_name(i).unwrap_or_default();
            let n = name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).filter(|n| *n >= 1);
            let Some(n) = n else {
                return Err(sqlx::Error::Protocol(format!("parameter '{name}' is not written $N: {text}")));
            };
            let arg = args.get(n - 1).ok_or_else(|| {
                sqlx::Error::Protocol(format!("parameter ${n} has no argument ({} given): {text}", args.len()))
            })?;
            stmt.raw_bind_parameter(i, arg).map_err(lite_error)?;
        }
        let readonly = stmt.readonly();
        if stmt.column_count() == 0 {
            stmt.raw_execute().map_err(lite_error)?;
        } else {
            let names: Arc<[String]> = stmt.column_names().into_iter().map(str::to_string).collect();
            let width = names.len();
            let mut result = stmt.raw_query();
            while let Some(row) = result.next().map_err(lite_error)? {
                if rows {
                    let values = (0..width).map(|i| row.get::<_, Value>(i)).collect::<Result<_, _>>();
                    out.push(Row::Lite { names: names.clone(), values: values.map_err(lite_error)? });
                }
            }
        }
        if !readonly {
            changed += conn.conn.changes();
        }
    }
    Ok((out, Done { rows_affected: changed }))
}

/// `sql` cut into its statements at each `;` outside a string, a quoted
/// name or a comment. Written by hand: rusqlite does not say where a
/// prepared statement's text ends, and only the store's own queries come
/// here (no `CREATE TRIGGER`, whose body holds `;`).
fn split_statements(sql: &str) -> Result<Vec<String>, sqlx::Error> {
    let bytes = sql.as_bytes();
    let (mut out, mut start, mut i) = (Vec::new(), 0, 0);
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
            }
            b'[' => {
                while i < bytes.len() && bytes[i] != b']' {
                    i += 1;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b';' => {
                if !sql[start..i].trim().is_empty() {
                    out.push(sql[start..i].to_string());
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < bytes.len() && !sql[start..].trim().is_empty() {
        out.push(sql[start..].to_string());
    }
    if out.is_empty() {
        return Err(sqlx::Error::Protocol(format!("no statement in: {sql}")));
    }
    Ok(out)
}

/// An SQLite error as sqlx gives one: a database error keeps its code, so
/// that a unique violation is seen as one.
pub(crate) fn lite_error(e: rusqlite::Error) -> sqlx::Error {
    match e {
        rusqlite::Error::SqliteFailure(f, message) => sqlx::Error::Database(Box::new(LiteError {
            code: f.extended_code,
            message: message.unwrap_or_else(|| f.to_string()),
        })),
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// SQLite's error, for sqlx's `Database` variant.
#[derive(Debug)]
struct LiteError {
    code: std::ffi::c_int,
    message: String,
}

impl std::fmt::Display for LiteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for LiteError {}

impl sqlx::error::DatabaseError for LiteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use rusqlite::ffi;
        use sqlx::error::ErrorKind;
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => ErrorKind::UniqueViolation,
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_statements;

    #[test]
    fn statements_split_at_semicolons_outside_strings_names_and_comments() {
        let sql = "INSERT INTO t VALUES ('a;b', \"c;d\"); -- e;f\n UPDATE t SET x = 1 /* g;h */; SELECT [i;j] FROM t";
        let split = split_statements(sql).unwrap();
        assert_eq!(split.len(), 3, "{split:?}");
        assert_eq!(split[0], "INSERT INTO t VALUES ('a;b', \"c;d\")");
        assert!(split[1].trim_start().starts_with("-- e;f\n UPDATE t SET x = 1 /* g;h */"), "{split:?}");
        assert_eq!(split[2].trim(), "SELECT [i;j] FROM t");
        assert_eq!(split_statements("SELECT 1;").unwrap(), ["SELECT 1"]);
        assert!(split_statements(" ; ").is_err());
    }
}
