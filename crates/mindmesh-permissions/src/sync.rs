//! Diff-based `SyncPrincipals`: a sync sends an integration's whole principal set, but
//! usually little of it changed. Each replica remembers the set it last wrote or read
//! (fingerprints of every principal, and the membership edges), tagged with the
//! integration's generation in the database; when the generation still matches, only
//! the differences are written. A removed group edge is then one DELETE, not a rewrite
//! of tens of thousands of rows.

use rustc_hash::{FxHashMap, FxHashSet};

use mindmesh_kit::crypto::SecretKey;
use mindmesh_kit::ids::{IntegrationId, TenantId};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};

use crate::error::Result;
use crate::policy::principal_aad;

/// (kind, external id) of a principal.
pub type PrincipalKey = (&'static str, String);
/// (group, member, member is a group) of a membership edge.
pub type Edge = (String, String, bool);

/// What the database holds for one integration, as far as diffs need to know.
#[derive(Debug, Default)]
pub struct StoredSet {
    /// The generation this set was read or written at.
    pub generation: Option<String>,
    /// Fingerprint of every principal's content.
    pub principals: FxHashMap<PrincipalKey, [u8; 32]>,
    /// Every membership edge.
    pub memberships: FxHashSet<Edge>,
}

/// SHA-256 over a principal's content, length-prefixed (kept in memory only).
pub fn fingerprint(kind: &str, external_id: &str, email: &str, name: &str) -> [u8; 32] {
    mindmesh_kit::crypto::digest_parts(&[
        kind.as_bytes(),
        external_id.as_bytes(),
        email.as_bytes(),
        name.as_bytes(),
    ])
}

/// Normalizes a stored kind to its static name.
pub fn kind_name(kind: &str) -> &'static str {
    if kind == "group" { "group" } else { "user" }
}

/// The integration's current generation (`None` before its first sync).
pub async fn generation<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: IntegrationId,
) -> Result<Option<String>> {
    let row = conn
        .query_one(
            &Query::select()
                .column("generation")
                .from("principal_syncs")
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .and_where(Expr::col("integration_id").eq(integration.to_string()))
                .to_owned(),
        )
        .await?;
    Ok(match row {
        Some(row) => Some(row.try_get("", "generation")?),
        None => None,
    })
}

/// Moves the generation from `expected` to `next` if nobody changed it meanwhile;
/// returns false (and changes nothing) when somebody did.
pub async fn advance<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: IntegrationId,
    expected: Option<&str>,
    next: &str,
) -> Result<bool> {
    let affected = match expected {
        Some(expected) => conn
            .execute(
                &Query::update()
                    .table("principal_syncs")
                    .value("generation", next)
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("integration_id").eq(integration.to_string()))
                    .and_where(Expr::col("generation").eq(expected))
                    .to_owned(),
            )
            .await?
            .rows_affected(),
        None => conn
            .execute(
                &Query::insert()
                    .into_table("principal_syncs")
                    .columns(["tenant_id", "integration_id", "generation"])
                    .values_panic([
                        tenant.to_string().into(),
                        integration.to_string().into(),
                        next.into(),
                    ])
                    .on_conflict(
                        OnConflict::columns(["tenant_id", "integration_id"])
                            .do_nothing()
                            .to_owned(),
                    )
                    .to_owned(),
            )
            .await?
            .rows_affected(),
    };
    Ok(affected == 1)
}

/// Sets the generation to `next` whatever it was.
pub async fn force<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: IntegrationId,
    next: &str,
) -> Result<()> {
    conn.execute(
        &Query::insert()
            .into_table("principal_syncs")
            .columns(["tenant_id", "integration_id", "generation"])
            .values_panic([
                tenant.to_string().into(),
                integration.to_string().into(),
                next.into(),
            ])
            .on_conflict(
                OnConflict::columns(["tenant_id", "integration_id"])
                    .update_column("generation")
                    .to_owned(),
            )
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Reads what the database holds for the integration, decrypting names and emails to
/// fingerprint them (a principal whose key is gone fingerprints as changed).
pub async fn load<C: ConnectionTrait>(
    conn: &C,
    key: &SecretKey,
    tenant: TenantId,
    integration: IntegrationId,
) -> Result<StoredSet> {
    let generation = generation(conn, tenant, integration).await?;
    let mut set = StoredSet {
        generation,
        ..StoredSet::default()
    };
    for row in conn
        .query_all(
            &Query::select()
                .columns(["kind", "external_id", "email_ct", "name_ct"])
                .from("principals")
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .and_where(Expr::col("integration_id").eq(integration.to_string()))
                .to_owned(),
        )
        .await?
    {
        let kind: String = row.try_get("", "kind")?;
        let kind = kind_name(&kind);
        let external: String = row.try_get("", "external_id")?;
        let open = |column: &str, sealed: Option<Vec<u8>>| -> Option<String> {
            match sealed {
                None => Some(String::new()),
                Some(ct) => key
                    .open(
                        &principal_aad(tenant, integration, kind, &external, column),
                        &ct,
                    )
                    .ok()
                    .map(|p| String::from_utf8_lossy(&p).into_owned()),
            }
        };
        let email = open("email", row.try_get("", "email_ct")?);
        let name = open("name", Some(row.try_get("", "name_ct")?));
        let print = match (email, name) {
            (Some(email), Some(name)) => fingerprint(kind, &external, &email, &name),
            _ => [0u8; 32],
        };
        set.principals.insert((kind, external), print);
    }
    for row in conn
        .query_all(
            &Query::select()
                .columns(["group_id", "member_id", "member_is_group"])
                .from("memberships")
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .and_where(Expr::col("integration_id").eq(integration.to_string()))
                .to_owned(),
        )
        .await?
    {
        set.memberships.insert((
            row.try_get("", "group_id")?,
            row.try_get("", "member_id")?,
            row.try_get("", "member_is_group")?,
        ));
    }
    Ok(set)
}
