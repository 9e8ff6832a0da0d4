//! What the permissions service keeps in its database, and the queries over it.
//! Personal fields are stored sealed (see `accounts`); this layer only moves bytes.

pub mod grants;
pub mod graph;
pub mod identities;
pub mod legacy;
pub mod migration;
pub mod principal_syncs;
pub mod revision;
pub mod scope;
pub mod staff_grants;
pub mod tenant;
pub mod user;
