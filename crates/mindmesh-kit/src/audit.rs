//! The append-only, hash-chained audit log each service keeps (P18).
//!
//! Every entry carries the HMAC-SHA256 (under a key derived from the master key) of its
//! own fields and of the previous entry's hash. Changing, removing or reordering any row
//! breaks the chain at that row, and without the key nobody can recompute it.
//! Appends take the `audit_head` row first, which serializes them in PostgreSQL
//! (row lock) as in SQLite (single writer), so the chain never forks.

use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};

use crate::auth::Caller;
use crate::crypto::{SecretKey, hex};
use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::service::Service;

/// What to record. Never put personal data or content in here: ids and field names only.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    /// Who acted (token subject or service name).
    pub actor: String,
    /// The actor's roles.
    pub actor_roles: Vec<String>,
    /// What was done, e.g. `user.create`.
    pub action: String,
    /// Whose data was touched.
    pub tenant: Option<TenantId>,
    /// Id of the record the action was about.
    pub subject_id: String,
    /// Non-personal details.
    pub details: String,
}

impl AuditRecord {
    /// A record of `caller` doing `action` on `subject_id`.
    pub fn by(
        caller: &Caller,
        action: &str,
        tenant: Option<TenantId>,
        subject_id: impl Into<String>,
    ) -> Self {
        AuditRecord {
            actor: caller.subject.clone(),
            actor_roles: caller.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            action: action.to_owned(),
            tenant,
            subject_id: subject_id.into(),
            details: String::new(),
        }
    }

    /// A record of `service` doing `action` on its own (an event it consumed, a schedule).
    pub fn by_service(
        service: Service,
        action: &str,
        tenant: Option<TenantId>,
        subject_id: impl Into<String>,
    ) -> Self {
        AuditRecord {
            actor: service.as_str().to_owned(),
            actor_roles: vec!["service".to_owned()],
            action: action.to_owned(),
            tenant,
            subject_id: subject_id.into(),
            details: String::new(),
        }
    }

    /// Adds non-personal details.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }
}

/// One stored entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Entry id.
    pub id: String,
    /// When.
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    /// Who.
    pub actor: String,
    /// Their roles, comma-separated.
    pub actor_roles: String,
    /// What.
    pub action: String,
    /// Whose data (empty: platform).
    pub tenant_id: String,
    /// About which record.
    pub subject_id: String,
    /// Details.
    pub details: String,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// Hash of this entry.
    pub hash: String,
}

/// Outcome of a chain verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainReport {
    /// Entries checked.
    pub entries_checked: u64,
    /// First entry that does not verify, if any.
    pub first_broken: Option<u64>,
}

/// One service's audit log.
#[derive(Clone)]
pub struct AuditLog {
    db: DatabaseConnection,
    key: SecretKey,
    service: Service,
}

impl AuditLog {
    /// The log in `db`, chained under a key derived from `master` for `service`.
    pub fn new(db: DatabaseConnection, master: &SecretKey, service: Service) -> Result<Self> {
        Ok(AuditLog {
            db,
            key: master.derive(&format!("audit/{service}"))?,
            service,
        })
    }

    /// The service whose log this is.
    pub fn service(&self) -> Service {
        self.service
    }

    /// Appends `record` inside the caller's transaction `conn` (so the audit entry commits
    /// or rolls back with the change it records). Returns the entry's sequence number.
    pub async fn append<C: ConnectionTrait>(&self, conn: &C, record: &AuditRecord) -> Result<u64> {
        // Taking the head row first serializes concurrent appends.
        conn.execute(
            &Query::update()
                .table("audit_head")
                .value("seq", Expr::col("seq").add(1))
                .and_where(Expr::col("id").eq(1))
                .to_owned(),
        )
        .await?;
        let head = conn
            .query_one(
                &Query::select()
                    .columns(["seq", "hash"])
                    .from("audit_head")
                    .and_where(Expr::col("id").eq(1))
                    .to_owned(),
            )
            .await?
            .ok_or_else(|| Error::Internal("audit_head row is missing".into()))?;
        let seq: i64 = head.try_get("", "seq")?;
        let prev_hash: String = head.try_get("", "hash")?;
        let entry = AuditEntry {
            seq: u64::try_from(seq).map_err(|_| Error::Internal("negative audit seq".into()))?,
            id: uuid::Uuid::now_v7().to_string(),
            occurred_at: crate::db::now(),
            actor: record.actor.clone(),
            actor_roles: record.actor_roles.join(","),
            action: record.action.clone(),
            tenant_id: record.tenant.map(|t| t.to_string()).unwrap_or_default(),
            subject_id: record.subject_id.clone(),
            details: record.details.clone(),
            prev_hash,
            hash: String::new(),
        };
        let hash = hex(&self.key.mac(&canonical(&entry)));
        conn.execute(
            &Query::insert()
                .into_table("audit_log")
                .columns([
                    "seq",
                    "id",
                    "occurred_at",
                    "actor",
                    "actor_roles",
                    "action",
                    "tenant_id",
                    "subject_id",
                    "details",
                    "prev_hash",
                    "hash",
                ])
                .values_panic([
                    seq.into(),
                    entry.id.clone().into(),
                    entry.occurred_at.into(),
                    entry.actor.clone().into(),
                    entry.actor_roles.clone().into(),
                    entry.action.clone().into(),
                    entry.tenant_id.clone().into(),
                    entry.subject_id.clone().into(),
                    entry.details.clone().into(),
                    entry.prev_hash.clone().into(),
                    hash.clone().into(),
                ])
                .to_owned(),
        )
        .await?;
        conn.execute(
            &Query::update()
                .table("audit_head")
                .value("hash", hash)
                .and_where(Expr::col("id").eq(1))
                .to_owned(),
        )
        .await?;
        Ok(entry.seq)
    }

    /// Appends `record` in a transaction of its own.
    pub async fn record(&self, record: &AuditRecord) -> Result<u64> {
        let txn = self.db.begin().await?;
        let seq = self.append(&txn, record).await?;
        txn.commit().await?;
        Ok(seq)
    }

    /// Entries after `after_seq`, oldest first, at most `limit`; only `tenant`'s when given.
    pub async fn list(
        &self,
        tenant: Option<TenantId>,
        after_seq: u64,
        limit: u64,
    ) -> Result<Vec<AuditEntry>> {
        let mut query = Query::select();
        query
            .columns(COLUMNS)
            .from("audit_log")
            .and_where(Expr::col("seq").gt(i64::try_from(after_seq).unwrap_or(i64::MAX)))
            .order_by("seq", Order::Asc)
            .limit(limit);
        if let Some(tenant) = tenant {
            query.and_where(Expr::col("tenant_id").eq(tenant.to_string()));
        }
        let rows = self.db.query_all(&query).await?;
        rows.iter().map(row_to_entry).collect()
    }

    /// Recomputes the whole chain.
    pub async fn verify(&self) -> Result<ChainReport> {
        let mut prev_hash = String::new();
        let mut expected_seq = 1u64;
        let mut checked = 0u64;
        loop {
            let rows = self
                .db
                .query_all(
                    &Query::select()
                        .columns(COLUMNS)
                        .from("audit_log")
                        .and_where(
                            Expr::col("seq").gte(i64::try_from(expected_seq).unwrap_or(i64::MAX)),
                        )
                        .order_by("seq", Order::Asc)
                        .limit(1000)
                        .to_owned(),
                )
                .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let entry = row_to_entry(row)?;
                checked += 1;
                let recomputed = hex(&self.key.mac(&canonical(&entry)));
                if entry.seq != expected_seq
                    || entry.prev_hash != prev_hash
                    || entry.hash != recomputed
                {
                    return Ok(ChainReport {
                        entries_checked: checked,
                        first_broken: Some(expected_seq),
                    });
                }
                prev_hash = entry.hash;
                expected_seq += 1;
            }
        }
        // A deleted tail is caught by the head, which records the last hash and seq.
        let head = self
            .db
            .query_one(
                &Query::select()
                    .columns(["seq", "hash"])
                    .from("audit_head")
                    .and_where(Expr::col("id").eq(1))
                    .to_owned(),
            )
            .await?
            .ok_or_else(|| Error::Internal("audit_head row is missing".into()))?;
        let head_seq: i64 = head.try_get("", "seq")?;
        let head_hash: String = head.try_get("", "hash")?;
        if u64::try_from(head_seq).ok() != Some(expected_seq - 1) || head_hash != prev_hash {
            return Ok(ChainReport {
                entries_checked: checked,
                first_broken: Some(expected_seq),
            });
        }
        Ok(ChainReport {
            entries_checked: checked,
            first_broken: None,
        })
    }
}

const COLUMNS: [&str; 11] = [
    "seq",
    "id",
    "occurred_at",
    "actor",
    "actor_roles",
    "action",
    "tenant_id",
    "subject_id",
    "details",
    "prev_hash",
    "hash",
];

fn row_to_entry(row: &sea_orm::QueryResult) -> Result<AuditEntry> {
    let seq: i64 = row.try_get("", "seq")?;
    Ok(AuditEntry {
        seq: u64::try_from(seq).map_err(|_| Error::Internal("negative audit seq".into()))?,
        id: row.try_get("", "id")?,
        occurred_at: row.try_get("", "occurred_at")?,
        actor: row.try_get("", "actor")?,
        actor_roles: row.try_get("", "actor_roles")?,
        action: row.try_get("", "action")?,
        tenant_id: row.try_get("", "tenant_id")?,
        subject_id: row.try_get("", "subject_id")?,
        details: row.try_get("", "details")?,
        prev_hash: row.try_get("", "prev_hash")?,
        hash: row.try_get("", "hash")?,
    })
}

/// Length-prefixed fields, so no two different entries encode alike.
fn canonical(entry: &AuditEntry) -> Vec<u8> {
    let micros = entry.occurred_at.timestamp_micros().to_string();
    let seq = entry.seq.to_string();
    let fields: [&str; 10] = [
        &seq,
        &entry.id,
        &micros,
        &entry.actor,
        &entry.actor_roles,
        &entry.action,
        &entry.tenant_id,
        &entry.subject_id,
        &entry.details,
        &entry.prev_hash,
    ];
    let mut out = Vec::new();
    for field in fields {
        out.extend_from_slice(&(field.len() as u64).to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out
}
