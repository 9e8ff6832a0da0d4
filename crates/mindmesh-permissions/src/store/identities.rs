//! The reads behind a data subject's export: the source identities that share a
//! person's email (found by its blind index), and the groups each one is a member of.

use mindmesh_kit::ids::TenantId;
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, Query};

use crate::error::Result;

/// A source identity as stored: its fields still sealed.
pub struct SealedIdentity {
    /// The integration it came from.
    pub integration_id: String,
    /// `user` or `group`.
    pub kind: String,
    /// Its id as stored (a pseudonym of the source's id).
    pub external_id: String,
    /// The source's id, sealed (`None` for rows of an older version).
    pub external_id_ct: Option<Vec<u8>>,
    /// Its email, sealed, if it has one.
    pub email_ct: Option<Vec<u8>>,
    /// Its name, sealed.
    pub name_ct: Vec<u8>,
}

/// The principals of `tenant` whose email has the blind index `email_index`.
pub async fn with_email<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    email_index: String,
) -> Result<Vec<SealedIdentity>> {
    let rows = conn
        .query_all(
            &Query::select()
                .columns([
                    "integration_id",
                    "kind",
                    "external_id",
                    "external_id_ct",
                    "email_ct",
                    "name_ct",
                ])
                .from("principals")
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .and_where(Expr::col("email_index").eq(email_index))
                .to_owned(),
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(SealedIdentity {
                integration_id: row.try_get("", "integration_id")?,
                kind: row.try_get("", "kind")?,
                external_id: row.try_get("", "external_id")?,
                external_id_ct: row.try_get("", "external_id_ct")?,
                email_ct: row.try_get("", "email_ct")?,
                name_ct: row.try_get("", "name_ct")?,
            })
        })
        .collect()
}

/// The groups (ids as stored) that `member` of `integration` belongs to directly.
pub async fn groups_of<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: &str,
    member: &str,
    member_is_group: bool,
) -> Result<Vec<String>> {
    let rows = conn
        .query_all(
            &Query::select()
                .column("group_id")
                .from("memberships")
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .and_where(Expr::col("integration_id").eq(integration))
                .and_where(Expr::col("member_id").eq(member))
                .and_where(Expr::col("member_is_group").eq(member_is_group))
                .to_owned(),
        )
        .await?;
    rows.iter()
        .map(|row| Ok(row.try_get("", "group_id")?))
        .collect()
}
