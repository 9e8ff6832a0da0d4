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

use crate::error::Result;
use crate::policy::principal_aad;
use crate::store::{graph, principal_syncs};

/// (kind, external id) of a principal.
pub type PrincipalKey = (&'static str, String);
/// (group, member, member is a group) of a membership edge.
pub use crate::store::graph::Edge;

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

/// Reads what the database holds for the integration, decrypting names and emails to
/// fingerprint them (a principal whose key is gone fingerprints as changed).
pub async fn load<C: ConnectionTrait>(
    conn: &C,
    key: &SecretKey,
    tenant: TenantId,
    integration: IntegrationId,
) -> Result<StoredSet> {
    let generation = principal_syncs::generation(conn, tenant, integration).await?;
    let mut set = StoredSet {
        generation,
        ..StoredSet::default()
    };
    for (kind, external, email_ct, name_ct) in
        graph::sealed_principals(conn, tenant, integration).await?
    {
        let kind = kind_name(&kind);
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
        let email = open("email", email_ct);
        let name = open("name", Some(name_ct));
        let print = match (email, name) {
            (Some(email), Some(name)) => fingerprint(kind, &external, &email, &name),
            _ => [0u8; 32],
        };
        set.principals.insert((kind, external), print);
    }
    set.memberships = graph::memberships(conn, tenant, integration)
        .await?
        .into_iter()
        .collect();
    Ok(set)
}
