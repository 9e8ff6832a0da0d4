//! What the storage service keeps in its database, and the queries over it. Sealed
//! fields are sealed and opened by the domain modules; this layer only moves bytes.

pub mod documents;
pub mod erasures;
pub mod index;
pub mod migration;
pub mod policies;
pub mod tombstones;
