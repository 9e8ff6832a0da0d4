//! The dsar database: its schema ([`migration`]) and every query the service makes
//! ([`requests`], [`execution`]). No SQL lives outside this module.

pub mod execution;
pub mod migration;
pub mod requests;

pub use migration::Migrator;
