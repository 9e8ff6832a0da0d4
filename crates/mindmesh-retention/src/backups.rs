//! Backups (P10), embedded mode: a consistent copy of every service's SQLite database
//! (`VACUUM INTO`, never a file copy of a live database), each sealed with AES-256-GCM
//! under a key derived from the master key and bound to its backup and file name, with a
//! manifest of the sealed files' SHA-256. The keystores go to another directory than the
//! data (`retention.keystore_backup_dir`, DESIGN.md §6), so that one stolen copy holds
//! either ciphertext or keys, not both. Backups older than
//! `retention.backup_retention_days` (at most 7) are deleted by every sweep.
//!
//! A restore ([`restore_files`], with the server stopped) verifies and unseals a backup
//! into place — every service but retention, whose ledger and receipt log are never
//! rolled back — and the binary then asks every cascade completed since the backup again
//! before any service takes traffic ([`crate::events::replay_since`]), so that nothing
//! deleted since comes back and every receipt still verifies.
//!
//! Distributed mode takes no backups here: PostgreSQL's belong to the database operator
//! (CloudNativePG); after restoring one, `mindmesh backup replay-deletions --since`
//! asks the cascades completed since again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use mindmesh_kit::audit::{AuditLog, AuditRecord};
use mindmesh_kit::config::Config;
use mindmesh_kit::crypto::SecretKey;
use mindmesh_kit::{Error, Result, Service};
use sea_orm::{DatabaseConnection, TransactionTrait};
use serde::{Deserialize, Serialize};

use crate::store::backups as store;

const MANIFEST: &str = "manifest.json";

/// A backup in the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupInfo {
    /// Its id (a UUID), also its directory's name.
    pub id: String,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// When it is deleted.
    pub expires_at: DateTime<Utc>,
    /// Its sealed files' size, data and keystores.
    pub size_bytes: u64,
}

/// What one directory of a backup holds.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    backup_id: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    /// `data` or `keystore`.
    part: String,
    files: Vec<ManifestFile>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestFile {
    /// The database file's name (`storage.db`, `storage_keys.db`); sealed as
    /// `<name>.sealed`.
    name: String,
    service: String,
    /// SHA-256 (hex) of the sealed file.
    sha256: String,
    bytes: u64,
}

/// One database a backup copies.
struct Source {
    service: Service,
    part: &'static str,
    name: String,
    url: String,
    live: PathBuf,
}

/// The databases of every service, data and keystore; FAILED_PRECONDITION unless each
/// is a SQLite file (embedded mode).
fn sources(config: &Config) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for service in Service::ALL {
        for (part, name, url) in [
            (
                "data",
                format!("{service}.db"),
                config.database_url(service),
            ),
            (
                "keystore",
                format!("{service}_keys.db"),
                config.keystore_url(service),
            ),
        ] {
            let Some(live) = mindmesh_kit::db::sqlite_path(&url).map(Path::to_path_buf) else {
                return Err(Error::FailedPrecondition(
                    "backups are taken in embedded mode (SQLite); PostgreSQL's belong to the \
                     database operator (CloudNativePG) — after restoring one, run `mindmesh \
                     backup replay-deletions --since <backup time>`"
                        .into(),
                ));
            };
            out.push(Source {
                service,
                part,
                name,
                url,
                live,
            });
        }
    }
    Ok(out)
}

fn aad(backup: &str, name: &str) -> Vec<u8> {
    format!("mindmesh/backup/v1/{backup}/{name}").into_bytes()
}

fn backup_key(master: &SecretKey) -> Result<SecretKey> {
    master.derive("mindmesh/retention/backup/v1")
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Internal(format!("{what} {}: {e}", path.display()))
}

/// Backups of this process's databases.
#[derive(Clone)]
pub struct Backups {
    config: Arc<Config>,
    db: DatabaseConnection,
    key: SecretKey,
    audit: AuditLog,
}

impl Backups {
    /// Backups of the databases `config` names, catalogued in `db` (retention's),
    /// sealed with a key of `master`, each recorded in `audit`.
    pub fn new(
        config: Arc<Config>,
        db: DatabaseConnection,
        master: &SecretKey,
        audit: AuditLog,
    ) -> Result<Self> {
        Ok(Backups {
            config,
            db,
            key: backup_key(master)?,
            audit,
        })
    }

    /// Takes a backup now, recorded as done by `actor`.
    pub async fn create(&self, actor: AuditRecord) -> Result<BackupInfo> {
        let sources = sources(&self.config)?;
        let id = uuid::Uuid::now_v7().to_string();
        let created_at = mindmesh_kit::db::now();
        let expires_at = created_at
            + chrono::Duration::days(i64::from(self.config.retention.backup_retention_days));
        let roots = [
            ("data", self.config.backup_dir().join(&id)),
            ("keystore", self.config.keystore_backup_dir().join(&id)),
        ];
        for (_, root) in &roots {
            mindmesh_kit::db::prepare_data_dir(root)?;
        }
        let mut size = 0;
        let mut manifests: Vec<Manifest> = roots
            .iter()
            .map(|(part, _)| Manifest {
                version: 1,
                backup_id: id.clone(),
                created_at,
                expires_at,
                part: (*part).to_owned(),
                files: Vec::new(),
            })
            .collect();
        let copied = async {
            for source in &sources {
                let index = usize::from(source.part == "keystore");
                let root = &roots[index].1;
                let staging = root.join(format!("{}.staging", source.name));
                let conn = mindmesh_kit::db::connect(&source.url, 1).await?;
                let snap = store::snapshot(&conn, &staging).await;
                conn.close().await?;
                snap?;
                let plain = tokio::fs::read(&staging)
                    .await
                    .map_err(|e| io("cannot read", &staging, e))?;
                let _ = tokio::fs::remove_file(&staging).await;
                let sealed = self.key.seal(&aad(&id, &source.name), &plain)?;
                let path = root.join(format!("{}.sealed", source.name));
                tokio::fs::write(&path, &sealed)
                    .await
                    .map_err(|e| io("cannot write", &path, e))?;
                size += sealed.len() as u64;
                manifests[index].files.push(ManifestFile {
                    name: source.name.clone(),
                    service: source.service.as_str().to_owned(),
                    sha256: mindmesh_kit::crypto::hex(&mindmesh_kit::crypto::sha256(&sealed)),
                    bytes: sealed.len() as u64,
                });
            }
            for ((_, root), manifest) in roots.iter().zip(&manifests) {
                let path = root.join(MANIFEST);
                let json = serde_json::to_vec_pretty(manifest)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                tokio::fs::write(&path, json)
                    .await
                    .map_err(|e| io("cannot write", &path, e))?;
            }
            Ok::<(), Error>(())
        };
        if let Err(e) = copied.await {
            // Nothing half-made stays behind.
            for (_, root) in &roots {
                let _ = tokio::fs::remove_dir_all(root).await;
            }
            return Err(e);
        }
        let info = BackupInfo {
            id: id.clone(),
            created_at,
            expires_at,
            size_bytes: size,
        };
        let txn = self.db.begin().await?;
        store::insert(&txn, &info).await?;
        self.audit
            .append(
                &txn,
                &actor.with_details(format!(
                    "{} databases, {size} bytes sealed, expires {}",
                    sources.len(),
                    expires_at.to_rfc3339()
                )),
            )
            .await?;
        txn.commit().await?;
        tracing::info!(backup_id = %id, bytes = size, "backup taken");
        Ok(info)
    }

    /// The backups in the catalog, newest first.
    pub async fn list(&self) -> Result<Vec<BackupInfo>> {
        store::list(&self.db).await
    }

    /// The newest backup's time, if there is one.
    pub async fn latest(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(self.list().await?.first().map(|b| b.created_at))
    }

    /// Deletes the backups expired by `now` (files, then the catalog row); returns how
    /// many.
    pub async fn prune(&self, now: DateTime<Utc>) -> Result<u64> {
        let mut pruned = 0;
        for backup in self.list().await? {
            if backup.expires_at > now {
                continue;
            }
            for root in [
                self.config.backup_dir().join(&backup.id),
                self.config.keystore_backup_dir().join(&backup.id),
            ] {
                match tokio::fs::remove_dir_all(&root).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io("cannot delete", &root, e)),
                }
            }
            let txn = self.db.begin().await?;
            store::delete(&txn, &backup.id).await?;
            self.audit
                .append(
                    &txn,
                    &AuditRecord::by_service(Service::Retention, "backup.delete", None, &backup.id)
                        .with_details("expired".to_owned()),
                )
                .await?;
            txn.commit().await?;
            tracing::info!(backup_id = %backup.id, "expired backup deleted");
            pruned += 1;
        }
        Ok(pruned)
    }
}

/// Keeps the backups on schedule until `shutdown`: every tick, deletes the expired ones
/// (and the cascade requests kept for replay whose last backup is gone, in both modes),
/// and in embedded mode takes a backup when the newest is older than
/// `retention.backup_schedule`.
pub async fn run_schedule(
    backups: Backups,
    ledger: crate::ledger::Ledger,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let interval = backups.config.retention.backup_interval().unwrap_or(None);
    let embedded = sources(&backups.config).is_ok();
    let tick = interval
        .map(|i| i / 4)
        .unwrap_or(std::time::Duration::from_secs(900))
        .min(std::time::Duration::from_secs(900));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let now = Utc::now();
        if let Err(e) = backups.prune(now).await {
            tracing::warn!(error = %e, "deleting expired backups failed; retrying later");
        }
        if let Err(e) = ledger.forget_replays(now).await {
            tracing::warn!(error = %e, "forgetting expired cascade requests failed; retrying later");
        }
        let Some(interval) = interval.filter(|_| embedded) else {
            continue;
        };
        let due = match backups.latest().await {
            Ok(latest) => latest.is_none_or(|at| {
                now - at >= chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX)
            }),
            Err(e) => {
                tracing::warn!(error = %e, "reading the backup catalog failed; retrying later");
                false
            }
        };
        if due {
            let actor =
                AuditRecord::by_service(Service::Retention, "backup.create", None, "scheduled");
            if let Err(e) = backups.create(actor).await {
                tracing::warn!(error = %e, "scheduled backup failed; retrying at the next tick");
            }
        }
    }
}

/// What a restore put back.
#[derive(Clone, Debug)]
pub struct Restored {
    /// When the backup was taken: every cascade completed since is asked again.
    pub taken_at: DateTime<Utc>,
    /// The databases put back, by file name.
    pub files: Vec<String>,
}

fn read_manifest(root: &Path, id: &str, part: &str) -> Result<Manifest> {
    let path = root.join(MANIFEST);
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound("backup (no manifest in its directory)"),
        _ => io("cannot read", &path, e),
    })?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Internal(format!("backup manifest {}: {e}", path.display())))?;
    if manifest.backup_id != id || manifest.part != part || manifest.version != 1 {
        return Err(Error::Internal(format!(
            "backup manifest {} is not the {part} manifest of backup {id}",
            path.display()
        )));
    }
    Ok(manifest)
}

/// Puts backup `id` back in place of the databases `config` names, with the server
/// stopped: every sealed file checked against its manifest and opened with the key of
/// `master` before anything is replaced (a damaged backup replaces nothing); then each
/// service's database and keystore, except retention's while it has one (its ledger
/// and receipt log go on). Ask the cascades completed since `taken_at` again before
/// serving.
pub fn restore_files(config: &Config, master: &SecretKey, id: &str) -> Result<Restored> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(Error::invalid("backup_id", "is not a backup id"));
    }
    let key = backup_key(master)?;
    let sources = sources(config)?;
    let data = read_manifest(&config.backup_dir().join(id), id, "data")?;
    let keys = read_manifest(&config.keystore_backup_dir().join(id), id, "keystore")?;
    let keep_retention = sources
        .iter()
        .any(|s| s.service == Service::Retention && s.part == "data" && s.live.exists());
    let mut opened = Vec::new();
    for (manifest, root) in [
        (&data, config.backup_dir().join(id)),
        (&keys, config.keystore_backup_dir().join(id)),
    ] {
        for file in &manifest.files {
            let source = sources
                .iter()
                .find(|s| s.name == file.name)
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "backup {id} holds {}, which is no database here",
                        file.name
                    ))
                })?;
            if keep_retention && source.service == Service::Retention {
                continue;
            }
            let path = root.join(format!("{}.sealed", file.name));
            let sealed = std::fs::read(&path).map_err(|e| io("cannot read", &path, e))?;
            if mindmesh_kit::crypto::hex(&mindmesh_kit::crypto::sha256(&sealed)) != file.sha256 {
                return Err(Error::Internal(format!(
                    "backup {id}: {} does not match its manifest (damaged or changed)",
                    file.name
                )));
            }
            let plain = key.open(&aad(id, &file.name), &sealed).map_err(|_| {
                Error::Internal(format!(
                    "backup {id}: {} does not open with this master key",
                    file.name
                ))
            })?;
            opened.push((source.live.clone(), file.name.clone(), plain));
        }
    }
    let mut files = Vec::new();
    for (live, name, plain) in opened {
        let staging = live.with_extension("db.restoring");
        std::fs::write(&staging, &plain).map_err(|e| io("cannot write", &staging, e))?;
        for suffix in ["-wal", "-shm"] {
            let mut side = live.clone().into_os_string();
            side.push(suffix);
            match std::fs::remove_file(PathBuf::from(side)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("cannot remove", &live, e)),
            }
        }
        std::fs::rename(&staging, &live).map_err(|e| io("cannot replace", &live, e))?;
        files.push(name);
    }
    tracing::info!(backup_id = %id, files = files.len(), "backup restored");
    Ok(Restored {
        taken_at: data.created_at,
        files,
    })
}
