//! Consents (P12, P14): what a person agreed to, by purpose, and its withdrawal. Every
//! consent given or withdrawn is a row (`dsar_consents`), the newest per purpose is the
//! one in force, and each change is published — `consent.given`, `consent.withdrawn` —
//! so that every service's processor gate (`mindmesh_kit::processing`) stops the
//! processing a withdrawn consent covered, and is audited.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mindmesh_kit::audit::{AuditLog, AuditRecord};
use mindmesh_kit::auth::Caller;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::{TenantId, UserId};
use mindmesh_kit::outbox::OutboxRelay;
use mindmesh_kit::{Error, Result, outbox};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};

use crate::store::consents::{self as store, ConsentRow};

/// Longest purpose name.
pub const MAX_PURPOSE_CHARS: usize = 64;

/// `value` as a purpose name: 1–64 characters of `a-z`, `0-9` and `_`; the error names
/// `purpose`.
pub fn purpose(value: &str) -> Result<String> {
    let value = value.trim();
    if value.is_empty()
        || value.chars().count() > MAX_PURPOSE_CHARS
        || !value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(Error::invalid(
            "purpose",
            format!(
                "must be 1–{MAX_PURPOSE_CHARS} characters of a-z, 0-9 and _ (e.g. \"llm_processing\")"
            ),
        ));
    }
    Ok(value.to_owned())
}

/// The consents over the dsar database.
#[derive(Clone)]
pub struct Consents {
    db: DatabaseConnection,
    audit: AuditLog,
    relay: OutboxRelay,
}

impl Consents {
    /// Consents in `ctx`'s database, audited there, published by its relay.
    pub fn new(ctx: &ServiceContext) -> Self {
        Consents {
            db: ctx.db.clone(),
            audit: ctx.audit.clone(),
            relay: ctx.relay.clone(),
        }
    }

    /// Records `user`'s consent to `purpose` in `tenant` as given or withdrawn, as
    /// `caller` at `now`; returns the record's id.
    pub async fn record(
        &self,
        caller: &Caller,
        tenant: TenantId,
        user: UserId,
        purpose: &str,
        granted: bool,
        now: DateTime<Utc>,
    ) -> Result<String> {
        let purpose = self::purpose(purpose)?;
        let txn = self.db.begin().await?;
        let id = self
            .append(&txn, caller, tenant, user, &purpose, granted, "", now)
            .await?;
        txn.commit().await?;
        self.relay.wake();
        Ok(id)
    }

    /// The purposes `user` consents to now, in `conn`.
    pub async fn in_force<C: ConnectionTrait>(
        &self,
        conn: &C,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Vec<String>> {
        let mut newest = BTreeMap::new();
        for row in store::of_user(conn, tenant, &user.to_string()).await? {
            newest.insert(row.purpose.clone(), row.granted);
        }
        Ok(newest
            .into_iter()
            .filter(|(_, granted)| *granted)
            .map(|(purpose, _)| purpose)
            .collect())
    }

    /// Withdraws `user`'s consent to `purpose` (every purpose in force when `None`) for
    /// data-subject request `request_id`, in `conn`'s transaction; returns the
    /// purposes withdrawn.
    #[allow(clippy::too_many_arguments)]
    pub async fn withdraw<C: ConnectionTrait>(
        &self,
        conn: &C,
        caller: &Caller,
        tenant: TenantId,
        user: UserId,
        purpose: Option<&str>,
        request_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        let purposes = match purpose {
            Some(p) => vec![p.to_owned()],
            None => self.in_force(conn, tenant, user).await?,
        };
        for p in &purposes {
            self.append(conn, caller, tenant, user, p, false, request_id, now)
                .await?;
        }
        Ok(purposes)
    }

    /// Every consent record of `user`, oldest first (their access export).
    pub async fn history(&self, tenant: TenantId, user: UserId) -> Result<Vec<ConsentRow>> {
        store::of_user(&self.db, tenant, &user.to_string()).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn append<C: ConnectionTrait>(
        &self,
        conn: &C,
        caller: &Caller,
        tenant: TenantId,
        user: UserId,
        purpose: &str,
        granted: bool,
        request_id: &str,
        now: DateTime<Utc>,
    ) -> Result<String> {
        let id = uuid::Uuid::now_v7().to_string();
        store::insert(
            conn,
            &ConsentRow {
                id: id.clone(),
                tenant_id: tenant.to_string(),
                user_id: user.to_string(),
                purpose: purpose.to_owned(),
                granted,
                request_id: request_id.to_owned(),
                recorded_by: caller.subject.clone(),
                recorded_at: mindmesh_kit::db::micros(now),
            },
        )
        .await?;
        let action = if granted {
            "consent.give"
        } else {
            "consent.withdraw"
        };
        outbox::enqueue(
            conn,
            &crate::events::consent_changed(tenant, user, purpose, granted),
        )
        .await?;
        self.audit
            .append(
                conn,
                &AuditRecord::by(caller, action, Some(tenant), user.to_string())
                    .with_details(format!("purpose {purpose}")),
            )
            .await?;
        Ok(id)
    }
}
