//! The storage database schema.

pub mod migration;
