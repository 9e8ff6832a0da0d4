//! Blind indexes: tenant-keyed HMACs of lowercased emails and email domains. They let the
//! service find a person by email, keep emails unique, link a person's identities across
//! integrations (P05) and match domain grants — without storing an email in the clear.
//! Principals' ids are kept the same way: a source's id of a user or group is often an
//! email (Google Drive's are), so principals, memberships and grants refer to a keyed
//! pseudonym of it, and the id itself is sealed beside its principal.
//! What they reveal: whether two values of one tenant are equal; nothing across tenants.

use mindmesh_kit::crypto::{MacKey, SecretKey, hex};
use mindmesh_kit::ids::{IntegrationId, TenantId};
use mindmesh_kit::keys::Keystore;

use crate::error::Result;

/// Computes a tenant's blind indexes.
#[derive(Clone)]
pub struct BlindIndex {
    keystore: Keystore,
}

/// One tenant's index keys, for computing many indexes without going back to the keystore.
#[derive(Clone)]
pub struct TenantBlindKeys {
    email: SecretKey,
    domain: SecretKey,
    principal: MacKey,
}

impl std::fmt::Debug for TenantBlindKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantBlindKeys(<redacted>)")
    }
}

impl TenantBlindKeys {
    /// The blind index of an email address.
    pub fn email(&self, email: &str) -> String {
        hex(&self.email.mac(email.trim().to_lowercase().as_bytes()))
    }

    /// The blind index of an email domain (or of an email address's domain part).
    pub fn domain(&self, domain_or_email: &str) -> String {
        let value = domain_or_email.trim().to_lowercase();
        let domain = value.rsplit_once('@').map_or(value.as_str(), |(_, d)| d);
        hex(&self.domain.mac(domain.as_bytes()))
    }

    /// The pseudonym of the source's id `id` of a principal of `integration`: what the
    /// service stores and matches in its place.
    pub fn principal(&self, integration: IntegrationId, id: &str) -> String {
        self.principal
            .blind_index(&[integration.as_uuid().as_bytes(), id.as_bytes()])
    }
}

impl BlindIndex {
    /// Blind indexes keyed from `keystore`'s tenant index keys (data keys, so a tenant
    /// key rotation re-wraps them and every stored index stays valid).
    pub fn new(keystore: Keystore) -> Self {
        BlindIndex { keystore }
    }

    /// The index keys of `tenant` (creating the tenant's key on first use).
    pub async fn keys(&self, tenant: TenantId) -> Result<TenantBlindKeys> {
        Self::derive(&self.keystore.index_key(tenant).await?)
    }

    /// The index keys of `tenant` if it has a key yet. A tenant without one has no
    /// accounts and no principals, so nothing can match an index anyway.
    pub async fn existing_keys(&self, tenant: TenantId) -> Result<Option<TenantBlindKeys>> {
        match self.keystore.existing_index_key(tenant).await? {
            Some(key) => Ok(Some(Self::derive(&key)?)),
            None => Ok(None),
        }
    }

    fn derive(index_key: &SecretKey) -> Result<TenantBlindKeys> {
        Ok(TenantBlindKeys {
            email: index_key.derive("users/email-index")?,
            domain: index_key.derive("users/domain-index")?,
            principal: index_key.derive("principals/ids")?.mac_key(),
        })
    }
}
