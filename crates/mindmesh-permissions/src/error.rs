//! The permissions service's errors: the kit's, like every service's (one mapping to
//! gRPC codes, messages that never contain personal data).

pub use mindmesh_kit::{Error, Result};
