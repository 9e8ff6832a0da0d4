//! `grants`: who may read or change each document, as the source says (by pseudonyms for
//! imported users and groups, by the blind index of a domain for domain grants).

use mindmesh_kit::ids::{DocumentId, IntegrationId, TenantId};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Condition, Expr, ExprTrait, Query};

use super::scope;
use crate::engine::{AccessRole, Grant, Grantee};
use crate::error::Result;

/// Rows per statement (keeps statements small; see DEPENDENCIES.md).
const CHUNK: usize = 200;

/// One grant of one document.
pub struct GrantRow {
    /// The document.
    pub document: String,
    /// The integration that brought it (the native one for Mindmesh's own documents).
    pub integration: String,
    /// `user`, `group`, `domain` or `anyone`.
    pub grantee_kind: String,
    /// The grantee (empty for `anyone`).
    pub grantee: String,
    /// `reader`, `writer` or `owner`.
    pub role: String,
}

impl GrantRow {
    /// The row of `grant` on `document`.
    pub fn new(document: DocumentId, integration: IntegrationId, grant: &Grant) -> Self {
        let (kind, grantee) = match &grant.grantee {
            Grantee::User(id) => ("user", id.clone()),
            Grantee::Group(id) => ("group", id.clone()),
            Grantee::Domain(d) => ("domain", d.to_lowercase()),
            Grantee::Anyone => ("anyone", String::new()),
        };
        GrantRow {
            document: document.to_string(),
            integration: integration.to_string(),
            grantee_kind: kind.to_owned(),
            grantee,
            role: match grant.role {
                AccessRole::Reader => "reader",
                AccessRole::Writer => "writer",
                AccessRole::Owner => "owner",
            }
            .to_owned(),
        }
    }

    /// The grant this row records.
    pub fn grant(&self) -> Grant {
        let grantee = self.grantee.clone();
        Grant {
            grantee: match self.grantee_kind.as_str() {
                "user" => Grantee::User(grantee),
                "group" => Grantee::Group(grantee),
                "domain" => Grantee::Domain(grantee),
                _ => Grantee::Anyone,
            },
            role: match self.role.as_str() {
                "owner" => AccessRole::Owner,
                "writer" => AccessRole::Writer,
                _ => AccessRole::Reader,
            },
        }
    }
}

/// Deletes every grant of `documents` in `tenant`.
pub async fn delete_of_documents<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    documents: &[String],
) -> Result<()> {
    for chunk in documents.chunks(CHUNK) {
        scope::delete(
            conn,
            "grants",
            scope::tenant(tenant).add(Expr::col("document_id").is_in(chunk.iter().cloned())),
        )
        .await?;
    }
    Ok(())
}

/// Deletes the grants naming the account `user` itself (its native documents' grants);
/// returns how many.
pub async fn delete_naming_account<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    user: &str,
) -> Result<u64> {
    scope::delete(
        conn,
        "grants",
        scope::integration(tenant, IntegrationId::NATIVE)
            .add(Expr::col("grantee_kind").eq("user"))
            .add(Expr::col("grantee").eq(user)),
    )
    .await
}

/// Inserts `rows` as grants of `tenant`.
pub async fn insert<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    rows: &[GrantRow],
) -> Result<()> {
    for chunk in rows.chunks(CHUNK) {
        let mut insert = Query::insert();
        insert.into_table("grants").columns([
            "tenant_id",
            "document_id",
            "integration_id",
            "grantee_kind",
            "grantee",
            "role",
        ]);
        for row in chunk {
            insert.values_panic([
                tenant.to_string().into(),
                row.document.clone().into(),
                row.integration.clone().into(),
                row.grantee_kind.clone().into(),
                row.grantee.clone().into(),
                row.role.clone().into(),
            ]);
        }
        conn.execute(&insert).await?;
    }
    Ok(())
}

async fn rows<C: ConnectionTrait>(conn: &C, scope: Condition) -> Result<Vec<GrantRow>> {
    conn.query_all(
        &Query::select()
            .columns([
                "document_id",
                "integration_id",
                "grantee_kind",
                "grantee",
                "role",
            ])
            .from("grants")
            .cond_where(scope)
            .to_owned(),
    )
    .await?
    .iter()
    .map(|row| {
        Ok(GrantRow {
            document: row.try_get("", "document_id")?,
            integration: row.try_get("", "integration_id")?,
            grantee_kind: row.try_get("", "grantee_kind")?,
            grantee: row.try_get("", "grantee")?,
            role: row.try_get("", "role")?,
        })
    })
    .collect()
}

/// Every grant of `tenant`.
pub async fn of_tenant<C: ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<Vec<GrantRow>> {
    rows(conn, scope::tenant(tenant)).await
}

/// The grants of `integration` that name a user or a group.
pub async fn naming_principals<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: IntegrationId,
) -> Result<Vec<GrantRow>> {
    rows(conn, naming_principals_of(tenant, integration)).await
}

/// The scope of the grants of `integration` that name a user or a group.
pub fn naming_principals_of(tenant: TenantId, integration: IntegrationId) -> Condition {
    scope::integration(tenant, integration).add(Expr::col("grantee_kind").is_in(["user", "group"]))
}
