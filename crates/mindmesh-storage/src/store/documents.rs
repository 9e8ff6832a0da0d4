//! `documents`: every document's sealed fields, its source's blind index, its state
//! (active or archived, restricted or not) and where the find index holds it.
//!
//! Lookups by a list of ids constrain only the id in SQL, so that every planner uses the
//! primary key (with the tenant as well, SQLite without table statistics prefers
//! scanning the tenant's rows); the tenant is checked on the rows returned.

use chrono::{DateTime, Utc};
use mindmesh_kit::ids::{TenantId, UserId};
use mindmesh_kit::{Error, Result};
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query, SelectStatement};
use sea_orm::{ConnectionTrait, QueryResult};

use crate::documents::{ErasureScope, Filter};

/// Ids per statement that lists them.
const IDS_CHUNK: usize = 500;

/// A document row to insert: its fields already sealed.
pub struct NewRow {
    /// Id.
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Integration (empty for native documents).
    pub integration_id: String,
    /// Blind index of the source (empty for native documents).
    pub source_index: String,
    /// The source's id, sealed.
    pub external_id_ct: Option<Vec<u8>>,
    /// The source's version.
    pub source_version: String,
    /// The data key that seals the fields.
    pub key_id: String,
    /// Sealed title.
    pub title_ct: Vec<u8>,
    /// Sealed content.
    pub content_ct: Vec<u8>,
    /// Sealed source URL.
    pub source_url_ct: Vec<u8>,
    /// MIME type.
    pub mime_type: String,
    /// A native document's owner (an account id), empty for imported ones.
    pub owner: String,
    /// An imported document's owner at the source, sealed.
    pub owner_ct: Option<Vec<u8>>,
    /// Content size.
    pub size_bytes: i64,
    /// Modification time.
    pub modified_at: DateTime<Utc>,
    /// Modification time in µs (the listing's order).
    pub modified_us: i64,
    /// The find index block that holds it (empty when not indexed).
    pub index_block: String,
    /// The stamp of this write in that block.
    pub index_stamp: i64,
    /// Creation and change time.
    pub now: DateTime<Utc>,
}

/// A stored document's metadata (and content, when asked for), still sealed.
pub struct StoredRow {
    /// Id.
    pub id: String,
    /// Integration (empty for native documents).
    pub integration_id: String,
    /// Blind index of the source (an older version's rows: the source's id).
    pub source_index: String,
    /// The source's id, sealed (`None` for native documents and older rows).
    pub external_id_ct: Option<Vec<u8>>,
    /// The source's version.
    pub source_version: String,
    /// The data key that seals the fields.
    pub key_id: String,
    /// Sealed title.
    pub title_ct: Vec<u8>,
    /// Sealed source URL.
    pub source_url_ct: Vec<u8>,
    /// MIME type.
    pub mime_type: String,
    /// A native document's owner; an older row's imported owner in the clear.
    pub owner: String,
    /// An imported document's owner, sealed.
    pub owner_ct: Option<Vec<u8>>,
    /// Modification time.
    pub modified_at: DateTime<Utc>,
    /// Content size.
    pub size_bytes: i64,
    /// `active` or `archived`.
    pub state: String,
    /// Processing restricted.
    pub restricted: bool,
    /// Sealed content, when read with it.
    pub content_ct: Option<Vec<u8>>,
}

const META_COLUMNS: [&str; 16] = [
    "id",
    "integration_id",
    "source_index",
    "external_id_ct",
    "source_version",
    "key_id",
    "title_ct",
    "source_url_ct",
    "mime_type",
    "owner",
    "owner_ct",
    "modified_at",
    "size_bytes",
    "state",
    "tenant_id",
    "restricted",
];

const COLUMNS: [&str; 22] = [
    "id",
    "tenant_id",
    "integration_id",
    "source_index",
    "external_id_ct",
    "source_version",
    "key_id",
    "title_ct",
    "content_ct",
    "source_url_ct",
    "mime_type",
    "owner",
    "owner_ct",
    "size_bytes",
    "modified_at",
    "modified_us",
    "state",
    "archived_at",
    "created_at",
    "updated_at",
    "index_block",
    "index_stamp",
];

/// The rows of `rows` that are `tenant`'s (see the module's note on lookups by id).
fn of_tenant(rows: Vec<QueryResult>, tenant: TenantId) -> Result<Vec<QueryResult>> {
    let tenant = tenant.to_string();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if row.try_get::<String>("", "tenant_id")? == tenant {
            out.push(row);
        }
    }
    Ok(out)
}

fn stored(row: &QueryResult, with_content: bool) -> Result<StoredRow> {
    Ok(StoredRow {
        id: row.try_get("", "id")?,
        integration_id: row.try_get("", "integration_id")?,
        source_index: row.try_get("", "source_index")?,
        external_id_ct: row.try_get("", "external_id_ct")?,
        source_version: row.try_get("", "source_version")?,
        key_id: row.try_get("", "key_id")?,
        title_ct: row.try_get("", "title_ct")?,
        source_url_ct: row.try_get("", "source_url_ct")?,
        mime_type: row.try_get("", "mime_type")?,
        owner: row.try_get("", "owner")?,
        owner_ct: row.try_get("", "owner_ct")?,
        modified_at: row.try_get("", "modified_at")?,
        size_bytes: row.try_get("", "size_bytes")?,
        state: row.try_get("", "state")?,
        restricted: row.try_get("", "restricted")?,
        content_ct: if with_content {
            Some(row.try_get("", "content_ct")?)
        } else {
            None
        },
    })
}

fn apply(filter: &Filter, statement: &mut SelectStatement) {
    if let Some(integration) = filter.integration {
        statement.and_where(Expr::col(("documents", "integration_id")).eq(integration.to_string()));
    }
    if let Some(since) = filter.modified_since {
        statement.and_where(Expr::col(("documents", "modified_us")).gte(since.timestamp_micros()));
    }
    if !filter.include_archived {
        statement.and_where(Expr::col(("documents", "state")).eq("active"));
    }
    if !filter.include_restricted {
        statement.and_where(Expr::col(("documents", "restricted")).eq(false));
    }
}

/// Inserts `rows` (active). A row whose source another write stored first is
/// UNAVAILABLE: retryable, and the retry finds it stored.
pub async fn insert<C: ConnectionTrait>(conn: &C, rows: Vec<NewRow>) -> Result<()> {
    // 22 values a row: 400 rows stay under both databases' bind limits.
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut insert = Query::insert();
        insert.into_table("documents").columns(COLUMNS);
        for row in rows.by_ref().take(400) {
            insert.values_panic([
                row.id.into(),
                row.tenant_id.into(),
                row.integration_id.into(),
                row.source_index.into(),
                row.external_id_ct.into(),
                row.source_version.into(),
                row.key_id.into(),
                row.title_ct.into(),
                row.content_ct.into(),
                row.source_url_ct.into(),
                row.mime_type.into(),
                row.owner.into(),
                row.owner_ct.into(),
                row.size_bytes.into(),
                row.modified_at.into(),
                row.modified_us.into(),
                "active".into(),
                Option::<DateTime<Utc>>::None.into(),
                row.now.into(),
                row.now.into(),
                row.index_block.into(),
                row.index_stamp.into(),
            ]);
        }
        conn.execute(&insert).await.map_err(|e| match e.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::Unavailable(
                "a concurrent write stored the same document first; retry".into(),
            ),
            _ => Error::Db(e),
        })?;
    }
    Ok(())
}

/// Deletes the rows `ids` (found in the caller's tenant before); returns how many.
pub async fn delete_ids<C: ConnectionTrait>(conn: &C, ids: &[String]) -> Result<u64> {
    let mut deleted = 0;
    for chunk in ids.chunks(IDS_CHUNK) {
        // By id alone: every planner then uses the primary key.
        deleted += conn
            .execute(
                &Query::delete()
                    .from_table("documents")
                    .and_where(Expr::col("id").is_in(chunk.iter().cloned()))
                    .to_owned(),
            )
            .await?
            .rows_affected();
    }
    Ok(deleted)
}

/// Those of the native documents `ids` that `tenant` stores: (id, index block).
pub async fn native_blocks<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    ids: &[String],
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(IDS_CHUNK) {
        let rows = conn
            .query_all(
                &Query::select()
                    .columns(["id", "tenant_id", "index_block"])
                    .from("documents")
                    .and_where(Expr::col("id").is_in(chunk.iter().cloned()))
                    .to_owned(),
            )
            .await?;
        for row in of_tenant(rows, tenant)? {
            out.push((row.try_get("", "id")?, row.try_get("", "index_block")?));
        }
    }
    Ok(out)
}

/// An imported source as stored: its integration and blind index, and the document
/// (id, source version, index block) or, for a tombstone, none.
pub struct StoredSource {
    /// Integration.
    pub integration_id: String,
    /// Blind index of the source.
    pub source_index: String,
    /// (id, source version, index block) of the stored document.
    pub document: Option<(String, String, String)>,
}

/// The sources among `indexes` (of `integrations`) that are tombstoned (`tombstones`
/// true) or stored as documents.
pub async fn sources<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integrations: &[String],
    indexes: &[String],
    tombstones: bool,
) -> Result<Vec<StoredSource>> {
    let mut out = Vec::new();
    for chunk in indexes.chunks(IDS_CHUNK) {
        // The whole source key, so the (tenant, integration, external id) index is used
        // rather than a scan of the tenant's rows.
        let mut query = Query::select();
        query
            .columns(["integration_id", "source_index"])
            .from(if tombstones {
                "tombstones"
            } else {
                "documents"
            })
            .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
            .and_where(Expr::col("integration_id").is_in(integrations.iter().cloned()))
            .and_where(Expr::col("source_index").is_in(chunk.iter().cloned()));
        if !tombstones {
            query.columns(["id", "source_version", "index_block"]);
            query.and_where(Expr::col("integration_id").ne(""));
        }
        for row in conn.query_all(&query).await? {
            out.push(StoredSource {
                integration_id: row.try_get("", "integration_id")?,
                source_index: row.try_get("", "source_index")?,
                document: if tombstones {
                    None
                } else {
                    Some((
                        row.try_get("", "id")?,
                        row.try_get("", "source_version")?,
                        row.try_get("", "index_block")?,
                    ))
                },
            });
        }
    }
    Ok(out)
}

/// The document `id` of `tenant`, with its content when `with_content`.
pub async fn load<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    id: &str,
    with_content: bool,
) -> Result<Option<StoredRow>> {
    let mut statement = Query::select();
    statement
        .columns(META_COLUMNS)
        .from("documents")
        .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
        .and_where(Expr::col("id").eq(id));
    if with_content {
        statement.column("content_ct");
    }
    conn.query_one(&statement)
        .await?
        .map(|row| stored(&row, with_content))
        .transpose()
}

/// The metadata of those of `ids` that `tenant` stores, in any order.
pub async fn load_many<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    ids: &[String],
) -> Result<Vec<StoredRow>> {
    let rows = conn
        .query_all(
            &Query::select()
                .columns(META_COLUMNS)
                .from("documents")
                .and_where(Expr::col("id").is_in(ids.iter().cloned()))
                .to_owned(),
        )
        .await?;
    of_tenant(rows, tenant)?
        .iter()
        .map(|row| stored(row, false))
        .collect()
}

/// Up to `limit` documents of `tenant` under `filter`, newest first, after `after`
/// (modification time in µs, id): (modification time in µs, id).
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    filter: &Filter,
    after: Option<(i64, String)>,
    limit: u64,
) -> Result<Vec<(i64, String)>> {
    let mut statement = Query::select();
    statement
        .columns([("documents", "id"), ("documents", "modified_us")])
        .from("documents")
        .and_where(Expr::col(("documents", "tenant_id")).eq(tenant.to_string()))
        .order_by(("documents", "modified_us"), Order::Desc)
        .order_by(("documents", "id"), Order::Desc)
        .limit(limit);
    apply(filter, &mut statement);
    if let Some((us, id)) = after {
        statement.and_where(
            Expr::col(("documents", "modified_us"))
                .lt(us)
                .or(Expr::col(("documents", "modified_us"))
                    .eq(us)
                    .and(Expr::col(("documents", "id")).lt(id))),
        );
    }
    conn.query_all(&statement)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("", "modified_us")?, r.try_get("", "id")?)))
        .collect()
}

/// The index stamps of those of `ids` that `tenant` stores under `filter`: (id, stamp).
pub async fn stamps<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    ids: Vec<String>,
    filter: &Filter,
) -> Result<Vec<(String, i64)>> {
    let mut statement = Query::select();
    statement
        .columns([
            ("documents", "id"),
            ("documents", "tenant_id"),
            ("documents", "index_stamp"),
        ])
        .from("documents")
        .and_where(Expr::col(("documents", "id")).is_in(ids));
    apply(filter, &mut statement);
    of_tenant(conn.query_all(&statement).await?, tenant)?
        .iter()
        .map(|r| Ok((r.try_get("", "id")?, r.try_get("", "index_stamp")?)))
        .collect()
}

/// An archived document, as a purge weighs it.
#[derive(Clone, Debug)]
pub struct ArchivedRow {
    /// Its id.
    pub id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// The integration that imported it (empty for a native document).
    pub integration_id: String,
    /// Who wrote it (native documents).
    pub owner: String,
    /// When it was archived.
    pub archived_at: Option<DateTime<Utc>>,
    /// The index block its terms live in.
    pub index_block: String,
}

/// Every archived document, in every tenant.
pub async fn archived<C: ConnectionTrait>(conn: &C) -> Result<Vec<ArchivedRow>> {
    conn.query_all(
        &Query::select()
            .columns([
                "id",
                "tenant_id",
                "integration_id",
                "owner",
                "archived_at",
                "index_block",
            ])
            .from("documents")
            .and_where(Expr::col("state").eq("archived"))
            .to_owned(),
    )
    .await?
    .iter()
    .map(|r| {
        Ok(ArchivedRow {
            id: r.try_get("", "id")?,
            tenant_id: r.try_get("", "tenant_id")?,
            integration_id: r.try_get("", "integration_id")?,
            owner: r.try_get("", "owner")?,
            archived_at: r.try_get("", "archived_at")?,
            index_block: r.try_get("", "index_block")?,
        })
    })
    .collect()
}

/// Deletes those of `ids` that are still archived; returns how many.
pub async fn delete_archived<C: ConnectionTrait>(conn: &C, ids: Vec<String>) -> Result<u64> {
    Ok(conn
        .execute(
            &Query::delete()
                .from_table("documents")
                .and_where(Expr::col("id").is_in(ids))
                .and_where(Expr::col("state").eq("archived"))
                .to_owned(),
        )
        .await?
        .rows_affected())
}

/// The native documents of `tenant` that `owner` wrote, newest first.
pub async fn owned_by<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    owner: UserId,
) -> Result<Vec<String>> {
    conn.query_all(
        &Query::select()
            .column("id")
            .from("documents")
            .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
            .and_where(Expr::col("integration_id").eq(""))
            .and_where(Expr::col("owner").eq(owner.to_string()))
            .order_by("modified_us", Order::Desc)
            .to_owned(),
    )
    .await?
    .iter()
    .map(|r| Ok(r.try_get("", "id")?))
    .collect()
}

/// Sets the restriction of `owner`'s native documents; returns how many changed.
pub async fn restrict_owner<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    owner: UserId,
    restricted: bool,
) -> Result<u64> {
    Ok(conn
        .execute(
            &Query::update()
                .table("documents")
                .value("restricted", restricted)
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .and_where(Expr::col("integration_id").eq(""))
                .and_where(Expr::col("owner").eq(owner.to_string()))
                .and_where(Expr::col("restricted").ne(restricted))
                .to_owned(),
        )
        .await?
        .rows_affected())
}

/// The index block of the document `id` of `tenant`, if it is stored.
pub async fn block_of<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    id: &str,
) -> Result<Option<String>> {
    conn.query_one(
        &Query::select()
            .column("index_block")
            .from("documents")
            .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
            .and_where(Expr::col("id").eq(id))
            .to_owned(),
    )
    .await?
    .map(|r| Ok(r.try_get("", "index_block")?))
    .transpose()
}

/// Deletes the document `id` of `tenant`; returns how many rows went (0 or 1).
pub async fn delete<C: ConnectionTrait>(conn: &C, tenant: TenantId, id: &str) -> Result<u64> {
    Ok(conn
        .execute(
            &Query::delete()
                .from_table("documents")
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .and_where(Expr::col("id").eq(id))
                .to_owned(),
        )
        .await?
        .rows_affected())
}

/// Archives the document `id` of `tenant` as of `at`, or restores it when `None`.
pub async fn set_archived<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    id: &str,
    at: Option<DateTime<Utc>>,
) -> Result<()> {
    conn.execute(
        &Query::update()
            .table("documents")
            .value("state", if at.is_some() { "archived" } else { "active" })
            .value("archived_at", at)
            .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
            .and_where(Expr::col("id").eq(id))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Up to `limit` documents of `tenant` that `scope` covers.
pub async fn ids_in_scope<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    scope: &ErasureScope,
    limit: u64,
) -> Result<Vec<String>> {
    let mut select = Query::select();
    select
        .column("id")
        .from("documents")
        .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
        .limit(limit);
    match scope {
        ErasureScope::Integration(integration) => {
            select.and_where(Expr::col("integration_id").eq(integration.to_string()));
        }
        ErasureScope::Owner(user) => {
            select
                .and_where(Expr::col("integration_id").eq(""))
                .and_where(Expr::col("owner").eq(user.to_string()));
        }
        ErasureScope::Tenant => {}
    }
    conn.query_all(&select)
        .await?
        .iter()
        .map(|r| Ok(r.try_get("", "id")?))
        .collect()
}

/// An imported document an older version wrote with its source's id and owner in the
/// clear.
pub struct LegacyRow {
    /// Id.
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Integration.
    pub integration_id: String,
    /// The source's id, in the clear.
    pub external_id: String,
    /// The data key that seals its fields.
    pub key_id: String,
    /// The source's owner, in the clear.
    pub owner: String,
}

/// Up to 500 legacy rows, other than `skip`.
pub async fn legacy<C: ConnectionTrait>(
    conn: &C,
    skip: impl IntoIterator<Item = String>,
) -> Result<Vec<LegacyRow>> {
    conn.query_all(
        &Query::select()
            .columns([
                "id",
                "tenant_id",
                "integration_id",
                "source_index",
                "key_id",
                "owner",
            ])
            .from("documents")
            .and_where(Expr::col("external_id_ct").is_null())
            .and_where(Expr::col("integration_id").ne(""))
            .and_where(Expr::col("id").is_not_in(skip))
            .limit(500)
            .to_owned(),
    )
    .await?
    .iter()
    .map(|r| {
        Ok(LegacyRow {
            id: r.try_get("", "id")?,
            tenant_id: r.try_get("", "tenant_id")?,
            integration_id: r.try_get("", "integration_id")?,
            external_id: r.try_get("", "source_index")?,
            key_id: r.try_get("", "key_id")?,
            owner: r.try_get("", "owner")?,
        })
    })
    .collect()
}

/// Stores a legacy row's source id as its blind index and sealed, and its owner sealed.
pub async fn seal_legacy<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    source_index: String,
    external_id_ct: Vec<u8>,
    owner_ct: Vec<u8>,
) -> Result<()> {
    conn.execute(
        &Query::update()
            .table("documents")
            .value("source_index", source_index)
            .value("external_id_ct", external_id_ct)
            .value("owner", "")
            .value("owner_ct", owner_ct)
            .and_where(Expr::col("id").eq(id))
            .to_owned(),
    )
    .await?;
    Ok(())
}
