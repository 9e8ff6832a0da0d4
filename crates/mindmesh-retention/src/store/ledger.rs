//! `cascades` and `cascade_parts`: the deletion ledger ([`crate::ledger`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mindmesh_kit::ids::{CascadeId, TenantId};
use mindmesh_kit::{Error, Result, Service};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use crate::ledger::{Cascade, CascadeKind, ListPosition, Part, PartState};

mod cascade {
    use sea_orm::entity::prelude::*;

    /// One cascade.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "cascades")]
    pub struct Model {
        /// Cascade id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Tenant.
        pub tenant_id: String,
        /// Kind; empty until opened.
        pub kind: String,
        /// Integration, user or tenant id.
        pub scope_id: String,
        /// Keyed hash of the subject (hex), or empty.
        pub subject_hash: String,
        /// When it was requested.
        pub requested_at: Option<DateTimeUtc>,
        /// When retention first heard of it.
        pub first_seen_at: DateTimeUtc,
        /// When it completed.
        pub completed_at: Option<DateTimeUtc>,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod part {
    use sea_orm::entity::prelude::*;

    /// One service's part in a cascade.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "cascade_parts")]
    pub struct Model {
        /// Cascade id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub cascade_id: String,
        /// Service name.
        #[sea_orm(primary_key, auto_increment = false)]
        pub service: String,
        /// pending, done, retained or failed.
        pub state: String,
        /// Rows deleted by kind (a JSON object).
        pub counts: String,
        /// Destroyed key ids (a JSON array).
        pub destroyed_key_ids: String,
        /// The service's signature (base64).
        pub signature: String,
        /// Why it failed or retains.
        pub reason: String,
        /// Since when it is in this state.
        pub since: DateTimeUtc,
        /// When it reported.
        pub reported_at: Option<DateTimeUtc>,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn corrupt(what: &str) -> Error {
    Error::Internal(format!("ledger row with an unreadable {what}"))
}

fn part_of(row: part::Model) -> Result<Part> {
    Ok(Part {
        service: row
            .service
            .parse::<Service>()
            .map_err(|_| corrupt("service"))?,
        state: PartState::parse(&row.state).ok_or_else(|| corrupt("state"))?,
        counts: serde_json::from_str::<BTreeMap<String, u64>>(&row.counts)
            .map_err(|_| corrupt("counts"))?,
        destroyed_key_ids: serde_json::from_str(&row.destroyed_key_ids)
            .map_err(|_| corrupt("key ids"))?,
        signature: row.signature,
        reason: row.reason,
        since: row.since,
        reported_at: row.reported_at,
    })
}

fn cascade_of(row: cascade::Model, mut parts: Vec<Part>) -> Result<Cascade> {
    parts.sort_by_key(|p| Service::ALL.iter().position(|s| *s == p.service));
    Ok(Cascade {
        id: row.id.parse().map_err(|_| corrupt("id"))?,
        tenant: row.tenant_id.parse().map_err(|_| corrupt("tenant"))?,
        kind: match row.kind.as_str() {
            "" => None,
            kind => Some(CascadeKind::parse(kind).ok_or_else(|| corrupt("kind"))?),
        },
        scope_id: row.scope_id,
        subject_hash: row.subject_hash,
        requested_at: row.requested_at,
        first_seen_at: row.first_seen_at,
        completed_at: row.completed_at,
        parts,
    })
}

/// The parts of the cascades `ids`, by cascade id.
async fn parts_of<C: ConnectionTrait>(
    conn: &C,
    ids: Vec<String>,
) -> Result<BTreeMap<String, Vec<Part>>> {
    let mut by_cascade: BTreeMap<String, Vec<Part>> = BTreeMap::new();
    if ids.is_empty() {
        return Ok(by_cascade);
    }
    for row in part::Entity::find()
        .filter(part::Column::CascadeId.is_in(ids))
        .all(conn)
        .await?
    {
        let id = row.cascade_id.clone();
        by_cascade.entry(id).or_default().push(part_of(row)?);
    }
    Ok(by_cascade)
}

/// The cascade `id` with its parts, if the ledger has it; its row locked for the rest
/// of the transaction when `lock` (PostgreSQL; SQLite has one writer at a time).
pub async fn find<C: ConnectionTrait>(
    conn: &C,
    id: CascadeId,
    lock: bool,
) -> Result<Option<Cascade>> {
    let mut query = cascade::Entity::find_by_id(id.to_string());
    if lock {
        query = query.lock_exclusive();
    }
    let Some(row) = query.one(conn).await? else {
        return Ok(None);
    };
    let mut parts = parts_of(conn, vec![row.id.clone()]).await?;
    let parts = parts.remove(&row.id).unwrap_or_default();
    cascade_of(row, parts).map(Some)
}

/// Records a new cascade (its header; parts are put one by one).
pub async fn insert<C: ConnectionTrait>(conn: &C, c: &Cascade) -> Result<()> {
    cascade::Entity::insert(cascade::ActiveModel {
        id: Set(c.id.to_string()),
        tenant_id: Set(c.tenant.to_string()),
        kind: Set(c
            .kind
            .map(CascadeKind::as_str)
            .unwrap_or_default()
            .to_owned()),
        scope_id: Set(c.scope_id.clone()),
        subject_hash: Set(c.subject_hash.clone()),
        requested_at: Set(c.requested_at),
        first_seen_at: Set(c.first_seen_at),
        completed_at: Set(c.completed_at),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Records what the event that opened `c` said: kind, scope, subject, request time.
pub async fn set_opening<C: ConnectionTrait>(conn: &C, c: &Cascade) -> Result<()> {
    cascade::Entity::update_many()
        .set(cascade::ActiveModel {
            kind: Set(c
                .kind
                .map(CascadeKind::as_str)
                .unwrap_or_default()
                .to_owned()),
            scope_id: Set(c.scope_id.clone()),
            subject_hash: Set(c.subject_hash.clone()),
            requested_at: Set(c.requested_at),
            ..Default::default()
        })
        .filter(cascade::Column::Id.eq(c.id.to_string()))
        .exec(conn)
        .await?;
    Ok(())
}

/// Marks cascade `id` complete at `at`.
pub async fn set_completed<C: ConnectionTrait>(
    conn: &C,
    id: CascadeId,
    at: DateTime<Utc>,
) -> Result<()> {
    cascade::Entity::update_many()
        .set(cascade::ActiveModel {
            completed_at: Set(Some(at)),
            ..Default::default()
        })
        .filter(cascade::Column::Id.eq(id.to_string()))
        .exec(conn)
        .await?;
    Ok(())
}

/// Writes `p` as the part of its service in cascade `id`, replacing the one there.
pub async fn put_part<C: ConnectionTrait>(conn: &C, id: CascadeId, p: &Part) -> Result<()> {
    let counts = serde_json::to_string(&p.counts).map_err(|e| Error::Internal(e.to_string()))?;
    let keys =
        serde_json::to_string(&p.destroyed_key_ids).map_err(|e| Error::Internal(e.to_string()))?;
    part::Entity::insert(part::ActiveModel {
        cascade_id: Set(id.to_string()),
        service: Set(p.service.as_str().to_owned()),
        state: Set(p.state.as_str().to_owned()),
        counts: Set(counts),
        destroyed_key_ids: Set(keys),
        signature: Set(p.signature.clone()),
        reason: Set(p.reason.clone()),
        since: Set(p.since),
        reported_at: Set(p.reported_at),
    })
    .on_conflict(
        OnConflict::columns([part::Column::CascadeId, part::Column::Service])
            .update_columns([
                part::Column::State,
                part::Column::Counts,
                part::Column::DestroyedKeyIds,
                part::Column::Signature,
                part::Column::Reason,
                part::Column::Since,
                part::Column::ReportedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Up to `limit` cascades of `tenant` (all tenants' for `None`), newest first (by when
/// retention first heard of them, then id), after `after`, with their parts.
pub async fn page<C: ConnectionTrait>(
    conn: &C,
    tenant: Option<TenantId>,
    limit: u64,
    after: Option<ListPosition>,
) -> Result<Vec<Cascade>> {
    let mut query = cascade::Entity::find();
    if let Some(tenant) = tenant {
        query = query.filter(cascade::Column::TenantId.eq(tenant.to_string()));
    }
    if let Some((seen, id)) = after {
        query = query.filter(
            Condition::any()
                .add(cascade::Column::FirstSeenAt.lt(seen))
                .add(
                    Condition::all()
                        .add(cascade::Column::FirstSeenAt.eq(seen))
                        .add(cascade::Column::Id.lt(id.to_string())),
                ),
        );
    }
    let rows = query
        .order_by_desc(cascade::Column::FirstSeenAt)
        .order_by_desc(cascade::Column::Id)
        .limit(limit)
        .all(conn)
        .await?;
    let mut parts = parts_of(conn, rows.iter().map(|r| r.id.clone()).collect()).await?;
    rows.into_iter()
        .map(|row| {
            let p = parts.remove(&row.id).unwrap_or_default();
            cascade_of(row, p)
        })
        .collect()
}
