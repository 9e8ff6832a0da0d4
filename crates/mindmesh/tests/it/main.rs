//! The binary crate's integration tests, compiled as one test binary (one link, one
//! copy of the support code): each module is one area, its tests run in both modes where
//! the `both_modes!` macro lists them.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

#[macro_use]
mod common;

mod accounts;
mod attack;
mod backups;
mod decoders;
mod dsar;
mod dsar_rights;
mod holds;
mod hygiene;
mod ingest_drive;
mod ingest_github;
mod ingest_local;
mod isolation;
mod migrate;
mod notifications;
mod permissions;
mod probing;
mod processors;
mod region;
mod retention;
mod serve_process;
mod staff;
mod storage;
mod storage_api;
mod subject;
