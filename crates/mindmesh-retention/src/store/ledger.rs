//! `cascades` and `cascade_parts`: the deletion ledger ([`crate::ledger`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mindmesh_kit::ids::{CascadeId, TenantId};
use mindmesh_kit::{Error, Result, Service};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Order, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::migration::{CascadeRequests, ReplayRequests};
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
/// retention first heard of them, then id), after `after`, with their parts; only those
/// still open and first seen before `open_since` when it is given.
pub async fn page<C: ConnectionTrait>(
    conn: &C,
    tenant: Option<TenantId>,
    limit: u64,
    after: Option<ListPosition>,
    open_since: Option<DateTime<Utc>>,
) -> Result<Vec<Cascade>> {
    let mut query = cascade::Entity::find();
    if let Some(tenant) = tenant {
        query = query.filter(cascade::Column::TenantId.eq(tenant.to_string()));
    }
    if let Some(before) = open_since {
        query = query
            .filter(cascade::Column::CompletedAt.is_null())
            .filter(cascade::Column::FirstSeenAt.lt(before));
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
    with_parts(conn, rows).await
}

/// Keeps the sealed request of the open cascade `id`, last asked at `at`.
pub async fn put_request<C: ConnectionTrait>(
    conn: &C,
    id: CascadeId,
    sealed: Vec<u8>,
    at: DateTime<Utc>,
) -> Result<()> {
    conn.execute(
        &Query::insert()
            .into_table(CascadeRequests::Table)
            .columns([
                CascadeRequests::CascadeId,
                CascadeRequests::RequestCt,
                CascadeRequests::AskedAt,
                CascadeRequests::TimesAsked,
            ])
            .values_panic([id.to_string().into(), sealed.into(), at.into(), 0.into()])
            .on_conflict(
                OnConflict::column(CascadeRequests::CascadeId)
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Forgets the request of cascade `id` (it completed).
pub async fn delete_request<C: ConnectionTrait>(conn: &C, id: CascadeId) -> Result<()> {
    conn.execute(
        &Query::delete()
            .from_table(CascadeRequests::Table)
            .and_where(Expr::col(CascadeRequests::CascadeId).eq(id.to_string()))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Up to `limit` open cascades last asked before `before`, oldest first: (id, sealed
/// request, times asked again).
pub async fn requests_asked_before<C: ConnectionTrait>(
    conn: &C,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<(CascadeId, Vec<u8>, u32)>> {
    let rows = conn
        .query_all(
            &Query::select()
                .columns([
                    CascadeRequests::CascadeId,
                    CascadeRequests::RequestCt,
                    CascadeRequests::TimesAsked,
                ])
                .from(CascadeRequests::Table)
                .and_where(Expr::col(CascadeRequests::AskedAt).lt(before))
                .order_by(CascadeRequests::AskedAt, Order::Asc)
                .limit(limit)
                .to_owned(),
        )
        .await?;
    rows.iter()
        .map(|row| {
            let id: String = row
                .try_get("", "cascade_id")
                .map_err(|_| corrupt("request id"))?;
            let sealed: Vec<u8> = row
                .try_get("", "request_ct")
                .map_err(|_| corrupt("request"))?;
            let times: i32 = row
                .try_get("", "times_asked")
                .map_err(|_| corrupt("times asked"))?;
            Ok((
                id.parse().map_err(|_| corrupt("request id"))?,
                sealed,
                u32::try_from(times).unwrap_or(0),
            ))
        })
        .collect()
}

/// Records that cascade `id` was asked again at `at`.
pub async fn asked_again<C: ConnectionTrait>(
    conn: &C,
    id: CascadeId,
    at: DateTime<Utc>,
) -> Result<()> {
    conn.execute(
        &Query::update()
            .table(CascadeRequests::Table)
            .value(CascadeRequests::AskedAt, at)
            .value(
                CascadeRequests::TimesAsked,
                Expr::col(CascadeRequests::TimesAsked).add(1),
            )
            .and_where(Expr::col(CascadeRequests::CascadeId).eq(id.to_string()))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Moves the next asking of cascade `id` to after `at`, without counting an asking (a
/// cascade paused by a legal hold waits for the release, not for a stall).
pub async fn postpone_request<C: ConnectionTrait>(
    conn: &C,
    id: CascadeId,
    at: DateTime<Utc>,
) -> Result<()> {
    conn.execute(
        &Query::update()
            .table(CascadeRequests::Table)
            .value(CascadeRequests::AskedAt, at)
            .and_where(Expr::col(CascadeRequests::CascadeId).eq(id.to_string()))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// The sealed request of the open cascade `id` and how often it was asked again, if the
/// ledger keeps it.
pub async fn request<C: ConnectionTrait>(
    conn: &C,
    id: CascadeId,
) -> Result<Option<(Vec<u8>, u32)>> {
    let row = conn
        .query_one(
            &Query::select()
                .columns([CascadeRequests::RequestCt, CascadeRequests::TimesAsked])
                .from(CascadeRequests::Table)
                .and_where(Expr::col(CascadeRequests::CascadeId).eq(id.to_string()))
                .to_owned(),
        )
        .await?;
    row.map(|row| {
        let sealed: Vec<u8> = row
            .try_get("", "request_ct")
            .map_err(|_| corrupt("request"))?;
        let times: i32 = row
            .try_get("", "times_asked")
            .map_err(|_| corrupt("times asked"))?;
        Ok((sealed, u32::try_from(times).unwrap_or(0)))
    })
    .transpose()
}

/// The open cascades with a part retained on `ground` (a legal hold's), oldest first.
pub async fn retained_on<C: ConnectionTrait>(conn: &C, ground: &str) -> Result<Vec<CascadeId>> {
    let rows = part::Entity::find()
        .filter(part::Column::State.eq(PartState::Retained.as_str()))
        .filter(part::Column::Reason.eq(ground))
        .order_by_asc(part::Column::Since)
        .all(conn)
        .await?;
    let mut ids: Vec<CascadeId> = Vec::new();
    for row in rows {
        let id: CascadeId = row.cascade_id.parse().map_err(|_| corrupt("cascade id"))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Moves the sealed request of cascade `id`, completed at `completed_at`, from the open
/// requests to those kept for replay until `keep_until`.
pub async fn keep_for_replay<C: ConnectionTrait>(
    conn: &C,
    id: CascadeId,
    completed_at: DateTime<Utc>,
    keep_until: DateTime<Utc>,
) -> Result<()> {
    let Some((sealed, _)) = request(conn, id).await? else {
        return Ok(());
    };
    conn.execute(
        &Query::insert()
            .into_table(ReplayRequests::Table)
            .columns([
                ReplayRequests::CascadeId,
                ReplayRequests::RequestCt,
                ReplayRequests::CompletedAt,
                ReplayRequests::KeepUntil,
            ])
            .values_panic([
                id.to_string().into(),
                sealed.into(),
                completed_at.into(),
                keep_until.into(),
            ])
            .on_conflict(
                OnConflict::column(ReplayRequests::CascadeId)
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned(),
    )
    .await?;
    delete_request(conn, id).await
}

/// The sealed requests of the cascades completed after `since`, oldest first.
pub async fn replays_since<C: ConnectionTrait>(
    conn: &C,
    since: DateTime<Utc>,
) -> Result<Vec<(CascadeId, Vec<u8>, DateTime<Utc>)>> {
    let rows = conn
        .query_all(
            &Query::select()
                .columns([
                    ReplayRequests::CascadeId,
                    ReplayRequests::RequestCt,
                    ReplayRequests::CompletedAt,
                ])
                .from(ReplayRequests::Table)
                .and_where(Expr::col(ReplayRequests::CompletedAt).gt(since))
                .order_by(ReplayRequests::CompletedAt, Order::Asc)
                .to_owned(),
        )
        .await?;
    rows.iter()
        .map(|row| {
            let id: String = row
                .try_get("", "cascade_id")
                .map_err(|_| corrupt("replay id"))?;
            Ok((
                id.parse().map_err(|_| corrupt("replay id"))?,
                row.try_get("", "request_ct")
                    .map_err(|_| corrupt("replay request"))?,
                row.try_get("", "completed_at")
                    .map_err(|_| corrupt("replay time"))?,
            ))
        })
        .collect()
}

/// Forgets the requests kept for replay whose last backup is gone by `now`; returns how
/// many.
pub async fn forget_replays<C: ConnectionTrait>(conn: &C, now: DateTime<Utc>) -> Result<u64> {
    Ok(conn
        .execute(
            &Query::delete()
                .from_table(ReplayRequests::Table)
                .and_where(Expr::col(ReplayRequests::KeepUntil).lt(now))
                .to_owned(),
        )
        .await?
        .rows_affected())
}

/// The cascades of `tenant` about the subject with keyed hash `subject_hash`, oldest
/// first, with their parts.
pub async fn about_subject<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    subject_hash: &str,
) -> Result<Vec<Cascade>> {
    let rows = cascade::Entity::find()
        .filter(cascade::Column::TenantId.eq(tenant.to_string()))
        .filter(cascade::Column::SubjectHash.eq(subject_hash))
        .order_by_asc(cascade::Column::FirstSeenAt)
        .all(conn)
        .await?;
    with_parts(conn, rows).await
}

/// The cascades of `rows`, each with its parts.
async fn with_parts<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<cascade::Model>,
) -> Result<Vec<Cascade>> {
    let mut parts = parts_of(conn, rows.iter().map(|r| r.id.clone()).collect()).await?;
    rows.into_iter()
        .map(|row| {
            let p = parts.remove(&row.id).unwrap_or_default();
            cascade_of(row, p)
        })
        .collect()
}
