//! Database connections: SQLite or PostgreSQL, chosen by URL, through sea-orm.

use std::path::Path;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};
use sea_orm_migration::MigratorTrait;

use crate::error::{Error, Result};

/// Creates the data directory (SQLite files, event log, generated keys) readable by the
/// owner only. An existing directory is tightened to the same.
pub fn prepare_data_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Config(format!("cannot create data_dir {}: {e}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            Error::Config(format!("cannot restrict data_dir {}: {e}", dir.display()))
        })?;
    }
    Ok(())
}

/// `t` cut to microseconds: what both SQLite and PostgreSQL store, so a time read back
/// equals the time written (and hashes over it verify).
pub fn micros(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// Now, cut to microseconds (see [`micros`]).
pub fn now() -> chrono::DateTime<chrono::Utc> {
    micros(chrono::Utc::now())
}

/// The sea-orm URL of a SQLite file, created if missing.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// True for SQLite URLs.
pub fn is_sqlite_url(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// Opens a pool to `url`. SQLite gets WAL, `synchronous = NORMAL`, a busy timeout,
/// foreign keys and `secure_delete` (what is deleted is overwritten with zeros, not left
/// in free pages), and a single connection: SQLite allows one writer at a time, and one
/// connection keeps transactions from failing with `SQLITE_BUSY` on upgrade.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30));
    if is_sqlite_url(url) {
        if let Some(dir) = sqlite_path(url).and_then(|p| p.parent().map(Path::to_path_buf))
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(&dir).map_err(|e| {
                Error::Config(format!(
                    "cannot create data directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        options
            .max_connections(1)
            .min_connections(1)
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    .pragma("secure_delete", "ON")
                    .create_if_missing(true)
            });
    } else {
        // Idle connections go after a minute: ten pools per process (five services, a
        // keystore each) would otherwise hold their peak against the server's limit.
        options
            .max_connections(max_connections)
            .min_connections(0)
            .idle_timeout(Duration::from_secs(60));
    }
    Database::connect(options)
        .await
        .map_err(|e| match verified_tls(url) {
            // The URL asks for a verified server certificate: say which check failed.
            Some(mode) => Error::Config(format!(
                "the database at the configured URL could not be reached with sslmode={mode} \
             (the server's certificate is checked against sslrootcert{}): {e}",
                if mode == "verify-full" {
                    ", and its name against the URL's host"
                } else {
                    ""
                }
            )),
            None => e.into(),
        })
}

/// The URL's `sslmode` when it asks for a verified certificate (`verify-ca`,
/// `verify-full`).
fn verified_tls(url: &str) -> Option<&'static str> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| match pair {
        "sslmode=verify-ca" => Some("verify-ca"),
        "sslmode=verify-full" => Some("verify-full"),
        _ => None,
    })
}

/// Opens `url`, creating the PostgreSQL database if it is missing (a SQLite file is
/// created by [`connect`]).
pub async fn open_creating(url: &str, max_connections: u32) -> Result<DatabaseConnection> {
    if !is_sqlite_url(url) {
        create_postgres_database_if_missing(url).await?;
    }
    connect(url, max_connections).await
}

/// The key of the PostgreSQL advisory lock migrations hold (advisory locks are per
/// database, so one key serves every service's database).
const MIGRATION_LOCK: i64 = 0x6d6d_6d69_6772_6174; // "mmmigrat"

/// Runs `migrate` on the database at `url` while holding its migration lock: with
/// PostgreSQL an advisory lock taken on a connection of its own, so that replicas (or a
/// migration Job and a starting pod) migrating one database at once take turns — the
/// second finds the work done. SQLite serves one process, which migrates alone.
pub async fn with_migration_lock<T, F>(url: &str, migrate: F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    if is_sqlite_url(url) {
        return migrate.await;
    }
    let lock = connect(url, 1).await?;
    lock.query_one_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_lock($1)",
        [MIGRATION_LOCK.into()],
    ))
    .await?;
    let result = migrate.await;
    // Closing the session releases the lock too; unlocking first says so plainly.
    let unlocked = lock
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_unlock($1)",
            [MIGRATION_LOCK.into()],
        ))
        .await;
    lock.close().await?;
    let value = result?;
    unlocked?;
    Ok(value)
}

/// Opens `url` (creating the PostgreSQL database if missing) and runs migrator `M`,
/// holding the database's migration lock ([`with_migration_lock`]).
pub async fn open_and_migrate<M: MigratorTrait>(
    url: &str,
    max_connections: u32,
) -> Result<DatabaseConnection> {
    let db = open_creating(url, max_connections).await?;
    with_migration_lock(url, async { Ok(M::up(&db, None).await?) }).await?;
    Ok(db)
}

/// The file of a SQLite `url`, if it is one (not in memory).
pub fn sqlite_path(url: &str) -> Option<&Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
}

/// Splits a PostgreSQL URL into (URL of the `postgres` maintenance database, database name).
pub fn postgres_admin_url(url: &str) -> Result<(String, String)> {
    let mut parsed =
        url::Url::parse(url).map_err(|e| Error::Config(format!("bad database url: {e}")))?;
    let name = parsed.path().trim_start_matches('/').to_owned();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(Error::Config(format!(
            "database name {name:?} must be lowercase letters, digits and underscores"
        )));
    }
    parsed.set_path("/postgres");
    Ok((parsed.to_string(), name))
}

/// Creates the database named in a PostgreSQL URL if it does not exist yet.
pub async fn create_postgres_database_if_missing(url: &str) -> Result<()> {
    let (admin_url, name) = postgres_admin_url(url)?;
    let admin = connect(&admin_url, 1).await?;
    let exists = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM pg_database WHERE datname = $1",
            [name.clone().into()],
        ))
        .await?
        .is_some();
    if !exists {
        // The name was checked above to hold only [a-z0-9_], so quoting it is safe.
        let created = admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await;
        match created {
            Ok(_) => {}
            // Another process created it between our check and our create: PostgreSQL
            // says "already exists", or, when both creates ran at once, reports the
            // unique index of the catalogue.
            Err(e)
                if e.to_string().contains("already exists")
                    || e.to_string().contains("pg_database_datname_index") => {}
            Err(e) => return Err(e.into()),
        }
    }
    admin.close().await?;
    Ok(())
}

/// Drops the database named in a PostgreSQL URL, disconnecting its sessions (tests).
pub async fn drop_postgres_database(url: &str) -> Result<()> {
    let (admin_url, name) = postgres_admin_url(url)?;
    let admin = connect(&admin_url, 1).await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await?;
    admin.close().await?;
    Ok(())
}

/// After an erasure committed: makes sure the erased rows are gone from the files too.
/// SQLite zeroes deleted content (`secure_delete`), but the write-ahead log still holds
/// the pages as they were: it is checkpointed and emptied. PostgreSQL keeps dead row
/// versions until vacuumed: `tables` are vacuumed when more than `vacuum_after` rows
/// went (`database.vacuum_after_rows`; autovacuum gets to smaller erasures).
pub async fn settle_erasure(
    db: &DatabaseConnection,
    tables: &[&str],
    rows: u64,
    vacuum_after: u64,
) -> Result<()> {
    match db.get_database_backend() {
        DbBackend::Sqlite => {
            db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await?;
        }
        _ if rows > vacuum_after => {
            for table in tables {
                db.execute_unprepared(&format!("VACUUM {table}")).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// After values kept in the clear were overwritten (sealing what an older version
/// stored, once): rewrites the database so that none of the old values lingers in its
/// files. SQLite keeps overwritten pages in its free list and its write-ahead log, so
/// the file is rebuilt (`VACUUM`) and the log emptied; PostgreSQL keeps dead row
/// versions until vacuumed, so every table is rewritten (`VACUUM FULL`). Copies made
/// before (PostgreSQL's WAL archive, backups) keep them until they expire.
pub async fn scrub(db: &DatabaseConnection) -> Result<()> {
    match db.get_database_backend() {
        DbBackend::Sqlite => {
            db.execute_unprepared("VACUUM").await?;
            db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await?;
        }
        _ => {
            db.execute_unprepared("VACUUM FULL").await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_url_keeps_credentials_and_options() {
        let (admin, name) =
            postgres_admin_url("postgres://u@127.0.0.1:5432/mm_test_1?sslmode=disable").unwrap();
        assert_eq!(name, "mm_test_1");
        assert_eq!(
            admin,
            "postgres://u@127.0.0.1:5432/postgres?sslmode=disable"
        );
        assert!(postgres_admin_url("postgres://h/Bad-Name").is_err());
        assert!(postgres_admin_url("postgres://h/").is_err());
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite:///tmp/a.db?mode=rwc"),
            Some(Path::new("/tmp/a.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }
}

/// Keeps PostgreSQL's planner statistics of one table fresh under bulk writes.
///
/// PostgreSQL plans from statistics that autovacuum refreshes only after a delay; a
/// table that grew tenfold within a minute gets sequential scans for what an index
/// answers (measured: deleting the grants of 1,000 documents by id went from 6 ms to
/// 800 ms as a first sync filled the table). Writers report the rows they wrote; every
/// `every` rows the table is analyzed. SQLite is left alone: without statistics its
/// planner prefers indexes.
#[derive(Debug)]
pub struct FreshStats {
    table: &'static str,
    every: u64,
    written: std::sync::atomic::AtomicU64,
}

impl FreshStats {
    /// Statistics of `table`, refreshed every `every` rows written.
    pub const fn new(table: &'static str, every: u64) -> Self {
        FreshStats {
            table,
            every,
            written: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Counts `rows` written to the table through `db`; analyzes it when due.
    pub async fn wrote(&self, db: &DatabaseConnection, rows: u64) -> Result<()> {
        use std::sync::atomic::Ordering;
        if rows == 0 || db.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let total = self.written.fetch_add(rows, Ordering::Relaxed) + rows;
        if total < self.every {
            return Ok(());
        }
        self.written.store(0, Ordering::Relaxed);
        db.execute_unprepared(&format!("ANALYZE {}", self.table))
            .await?;
        Ok(())
    }
}
