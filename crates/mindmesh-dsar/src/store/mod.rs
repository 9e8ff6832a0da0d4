//! The dsar database: its schema ([`migration`]) and every query the service makes
//! ([`requests`], [`execution`], [`erasures`], [`consents`], [`settings`],
//! [`notifications`]). No SQL lives outside this
//! module.

pub mod consents;
pub mod erasures;
pub mod execution;
pub mod migration;
pub mod notifications;
pub mod requests;
pub mod settings;

pub use migration::Migrator;
