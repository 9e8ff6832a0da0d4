//! The retention database: its schema ([`migration`]) and, one module per table group,
//! every query the service makes ([`activity`]). No SQL lives outside this module.

pub mod activity;
pub mod migration;

pub use migration::Migrator;
