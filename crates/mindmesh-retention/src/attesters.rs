//! Whose key each service's deletion attestations must verify against: the key named
//! for it in `retention.attester_keys`, else the key this process signs with (every
//! service running in one process signs with that one).

use std::collections::BTreeMap;

use mindmesh_kit::config::RetentionConfig;
use mindmesh_kit::{Result, Service};

/// The attesting services' Ed25519 public keys.
#[derive(Clone, Debug)]
pub struct Attesters {
    named: BTreeMap<Service, [u8; 32]>,
    own: [u8; 32],
}

impl Attesters {
    /// The keys of `config`, with `own` (this process's signing key) for the rest.
    pub fn new(config: &RetentionConfig, own: [u8; 32]) -> Result<Self> {
        Ok(Attesters {
            named: config.attester_keys()?,
            own,
        })
    }

    /// The public key `service` signs its attestations with.
    pub fn key(&self, service: Service) -> &[u8; 32] {
        self.named.get(&service).unwrap_or(&self.own)
    }
}
