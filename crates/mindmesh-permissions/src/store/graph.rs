//! `principals` and `memberships`: each integration's people and groups (by the
//! pseudonyms of the source's ids, their fields sealed) and who is a member of which group.

use mindmesh_kit::ids::{IntegrationId, TenantId};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, Query};

use super::scope;
use crate::engine::{Membership, Principal, PrincipalKind, PrincipalRef};
use crate::error::Result;

/// Rows per INSERT statement (keeps statements small; see DEPENDENCIES.md).
const INSERT_CHUNK: usize = 200;

const PRINCIPAL_COLUMNS: [&str; 8] = [
    "tenant_id",
    "integration_id",
    "kind",
    "external_id",
    "email_index",
    "email_ct",
    "name_ct",
    "external_id_ct",
];

/// A principal row of one integration, its fields sealed.
pub struct PrincipalRow {
    /// `user` or `group`.
    pub kind: &'static str,
    /// Its id as stored (the pseudonym of the source's id).
    pub external_id: String,
    /// The blind index of its email, when it has one.
    pub email_index: Option<String>,
    /// Its email, sealed, when it has one.
    pub email_ct: Option<Vec<u8>>,
    /// Its name, sealed.
    pub name_ct: Vec<u8>,
    /// The source's id, sealed.
    pub external_id_ct: Vec<u8>,
}

/// A membership edge: (group, member, whether the member is a group), by pseudonyms.
pub type Edge = (String, String, bool);

fn malformed(what: &str) -> mindmesh_kit::Error {
    mindmesh_kit::Error::Internal(format!("malformed {what} in store"))
}

/// The index's kind of a principal stored as `kind` (`user` or `group`).
pub fn kind_of(kind: &str) -> PrincipalKind {
    if kind == "group" {
        PrincipalKind::Group
    } else {
        PrincipalKind::User
    }
}

/// Inserts `rows` as principals of `integration`.
pub async fn insert_principals<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: IntegrationId,
    rows: impl IntoIterator<Item = PrincipalRow>,
) -> Result<()> {
    let rows: Vec<PrincipalRow> = rows.into_iter().collect();
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut insert = Query::insert();
        insert.into_table("principals").columns(PRINCIPAL_COLUMNS);
        for row in chunk {
            insert.values_panic([
                tenant.to_string().into(),
                integration.to_string().into(),
                row.kind.into(),
                row.external_id.clone().into(),
                row.email_index.clone().into(),
                row.email_ct.clone().into(),
                row.name_ct.clone().into(),
                row.external_id_ct.clone().into(),
            ]);
        }
        conn.execute(&insert).await?;
    }
    Ok(())
}

/// Inserts `edges` as memberships of `integration`.
pub async fn insert_memberships<'a, C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: IntegrationId,
    edges: impl IntoIterator<Item = &'a Edge>,
) -> Result<u64> {
    let edges: Vec<&Edge> = edges.into_iter().collect();
    for chunk in edges.chunks(INSERT_CHUNK) {
        let mut insert = Query::insert();
        insert.into_table("memberships").columns([
            "tenant_id",
            "integration_id",
            "group_id",
            "member_id",
            "member_is_group",
        ]);
        for (group, member, is_group) in chunk {
            insert.values_panic([
                tenant.to_string().into(),
                integration.to_string().into(),
                group.clone().into(),
                member.clone().into(),
                (*is_group).into(),
            ]);
        }
        conn.execute(&insert).await?;
    }
    Ok(edges.len() as u64)
}

/// Deletes the principal (`kind`, `external_id`) of `integration`.
pub async fn delete_principal<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: IntegrationId,
    kind: &str,
    external_id: &str,
) -> Result<()> {
    scope::delete(
        conn,
        "principals",
        scope::integration(tenant, integration)
            .add(Expr::col("kind").eq(kind))
            .add(Expr::col("external_id").eq(external_id)),
    )
    .await?;
    Ok(())
}

/// Deletes the membership `edge` of `integration`.
pub async fn delete_membership<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: IntegrationId,
    (group, member, is_group): &Edge,
) -> Result<()> {
    scope::delete(
        conn,
        "memberships",
        scope::integration(tenant, integration)
            .add(Expr::col("group_id").eq(group.clone()))
            .add(Expr::col("member_id").eq(member.clone()))
            .add(Expr::col("member_is_group").eq(*is_group)),
    )
    .await?;
    Ok(())
}

/// Deletes the memberships of `integration` that name `member`; returns how many.
pub async fn delete_memberships_of_member<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: &str,
    member: &str,
    member_is_group: bool,
) -> Result<u64> {
    scope::delete(
        conn,
        "memberships",
        scope::tenant(tenant)
            .add(Expr::col("integration_id").eq(integration))
            .add(Expr::col("member_id").eq(member))
            .add(Expr::col("member_is_group").eq(member_is_group)),
    )
    .await
}

/// Deletes the principals of `tenant` whose email has the blind index `index`; returns
/// how many.
pub async fn delete_principals_with_email<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    index: &str,
) -> Result<u64> {
    scope::delete(
        conn,
        "principals",
        scope::tenant(tenant).add(Expr::col("email_index").eq(index)),
    )
    .await
}

/// The principals of `integration` among `pseudonyms`: (kind, stored id, the source's id
/// sealed — `None` for rows of an older version).
pub async fn sealed_source_ids<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: IntegrationId,
    pseudonyms: &[String],
) -> Result<Vec<(String, String, Option<Vec<u8>>)>> {
    let mut out = Vec::new();
    for chunk in pseudonyms.chunks(INSERT_CHUNK) {
        let rows = conn
            .query_all(
                &Query::select()
                    .columns(["kind", "external_id", "external_id_ct"])
                    .from("principals")
                    .cond_where(
                        scope::integration(tenant, integration)
                            .add(Expr::col("external_id").is_in(chunk.iter().cloned())),
                    )
                    .to_owned(),
            )
            .await?;
        for row in rows {
            out.push((
                row.try_get("", "kind")?,
                row.try_get("", "external_id")?,
                row.try_get("", "external_id_ct")?,
            ));
        }
    }
    Ok(out)
}

/// Every principal of `tenant`, as the index knows it.
pub async fn principals_of_tenant<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
) -> Result<Vec<Principal>> {
    conn.query_all(
        &Query::select()
            .columns(["integration_id", "kind", "external_id", "email_index"])
            .from("principals")
            .cond_where(scope::tenant(tenant))
            .to_owned(),
    )
    .await?
    .iter()
    .map(|row| {
        let integration: String = row.try_get("", "integration_id")?;
        let kind: String = row.try_get("", "kind")?;
        Ok(Principal {
            principal: PrincipalRef {
                integration: integration
                    .parse()
                    .map_err(|_| malformed("integration id"))?,
                kind: kind_of(&kind),
                external_id: row.try_get("", "external_id")?,
            },
            email_index: row.try_get("", "email_index")?,
        })
    })
    .collect()
}

/// Every membership of `tenant`.
pub async fn memberships_of_tenant<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
) -> Result<Vec<Membership>> {
    conn.query_all(
        &Query::select()
            .columns(["integration_id", "group_id", "member_id", "member_is_group"])
            .from("memberships")
            .cond_where(scope::tenant(tenant))
            .to_owned(),
    )
    .await?
    .iter()
    .map(|row| {
        let integration: String = row.try_get("", "integration_id")?;
        Ok(Membership {
            integration: integration
                .parse()
                .map_err(|_| malformed("integration id"))?,
            group: row.try_get("", "group_id")?,
            member: row.try_get("", "member_id")?,
            member_is_group: row.try_get("", "member_is_group")?,
        })
    })
    .collect()
}

/// A principal as an older version stored it: under the source's id in the clear.
pub struct LegacyPrincipal {
    /// `user` or `group` as stored.
    pub kind: String,
    /// The source's id, in the clear.
    pub source_id: String,
    /// The blind index of its email.
    pub email_index: Option<String>,
    /// Its email, sealed under the source's id.
    pub email_ct: Option<Vec<u8>>,
    /// Its name, sealed under the source's id.
    pub name_ct: Vec<u8>,
}

/// The principals of `integration`, as an older version stored them.
pub async fn legacy_principals<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: IntegrationId,
) -> Result<Vec<LegacyPrincipal>> {
    conn.query_all(
        &Query::select()
            .columns(["kind", "external_id", "email_index", "email_ct", "name_ct"])
            .from("principals")
            .cond_where(scope::integration(tenant, integration))
            .to_owned(),
    )
    .await?
    .iter()
    .map(|row| {
        Ok(LegacyPrincipal {
            kind: row.try_get("", "kind")?,
            source_id: row.try_get("", "external_id")?,
            email_index: row.try_get("", "email_index")?,
            email_ct: row.try_get("", "email_ct")?,
            name_ct: row.try_get("", "name_ct")?,
        })
    })
    .collect()
}

/// One stored principal of an integration: kind, external id, sealed email (if any),
/// sealed name.
pub type SealedPrincipal = (String, String, Option<Vec<u8>>, Vec<u8>);

/// Every principal of `integration`, still sealed.
pub async fn sealed_principals<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: IntegrationId,
) -> Result<Vec<SealedPrincipal>> {
    let rows = conn
        .query_all(
            &Query::select()
                .columns(["kind", "external_id", "email_ct", "name_ct"])
                .from("principals")
                .cond_where(scope::integration(tenant, integration))
                .to_owned(),
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("", "kind")?,
                row.try_get("", "external_id")?,
                row.try_get("", "email_ct")?,
                row.try_get("", "name_ct")?,
            ))
        })
        .collect()
}

/// Every membership edge of `integration`.
pub async fn memberships<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: IntegrationId,
) -> Result<Vec<Edge>> {
    let rows = conn
        .query_all(
            &Query::select()
                .columns(["group_id", "member_id", "member_is_group"])
                .from("memberships")
                .cond_where(scope::integration(tenant, integration))
                .to_owned(),
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("", "group_id")?,
                row.try_get("", "member_id")?,
                row.try_get("", "member_is_group")?,
            ))
        })
        .collect()
}
