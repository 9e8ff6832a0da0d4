//! The retention database: its schema ([`migration`]) and, one module per table group,
//! every query the service makes ([`activity`], [`backups`], [`holds`], [`inactivity`], [`ledger`], [`receipts`]). No SQL lives outside this module.

pub mod activity;
pub mod backups;
pub mod holds;
pub mod inactivity;
pub mod ledger;
pub mod migration;
pub mod receipts;

pub use migration::Migrator;
