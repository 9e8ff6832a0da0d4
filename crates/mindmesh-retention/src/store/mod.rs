//! The retention database: its schema ([`migration`]) and, one module per table group,
//! every query the service makes ([`activity`], [`ledger`]). No SQL lives outside this module.

pub mod activity;
pub mod ledger;
pub mod migration;

pub use migration::Migrator;
