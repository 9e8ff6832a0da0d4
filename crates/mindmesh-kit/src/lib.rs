//! What every Mindmesh service shares.
//!
//! A tour, in the order a service meets these pieces:
//! - [`config`]: layered configuration (defaults → TOML → `MINDMESH__…` env → flags).
//! - [`telemetry`]: `tracing` + OpenTelemetry, W3C trace context over gRPC and events.
//! - [`db`] and [`migrations`]: sea-orm on SQLite or PostgreSQL, chosen by URL; the
//!   tables every service has (outbox, inbox, audit log).
//! - [`keyfiles`], [`keys`] and [`crypto`]: the master key, the per-service keystore
//!   (tenant keys, data keys, crypto-shredding) and the `ring` primitives under them.
//! - [`bus`], [`events`], [`outbox`], [`inbox`]: events over NATS JetStream or the
//!   embedded log, written through a transactional outbox, applied exactly once.
//! - [`auth`]: bearer JWTs, roles, the one interceptor; [`error`]: the one mapping from
//!   errors to gRPC codes; [`grpc`]: paging and timestamp helpers; [`validate`]: the
//!   checks of names, titles, MIME types, URLs and times that callers send.
//! - [`audit`] and [`audit_api`]: the hash-chained audit log and its gRPC face;
//!   [`subject_api`]: the per-process `SubjectData` service.
//! - [`tenants`] and [`integrations`]: which tenants and which imported integrations a
//!   service may still write for, so that nothing outlives a deletion (P06, P08);
//!   [`holds`]: the legal holds that keep data from a cascade until released.
//! - [`context`] and [`server`]: what a service is given when it starts, and the one
//!   gRPC server (health, reflection, graceful shutdown) every process runs;
//!   [`module`]: the contract each service crate keeps with the binary; [`peers`]: how a
//!   service reaches another — in-process when this process runs it, else over gRPC.
//! - `testing` (feature `testing`, for tests and benches only): throwaway PostgreSQL
//!   databases and NATS streams, service contexts on either backend, `both_backends!`.

#![forbid(unsafe_code)]

pub mod activity;
pub mod analytics;
pub mod audit;
pub mod audit_api;
pub mod auth;
pub mod bus;
pub mod config;
pub mod context;
pub mod crypto;
pub mod db;
pub mod error;
pub mod events;
pub mod grpc;
pub mod holds;
pub mod ids;
pub mod inbox;
pub mod integrations;
pub mod keyfiles;
pub mod keys;
pub mod migrations;
pub mod module;
pub mod outbox;
pub mod peers;
pub mod processing;
pub mod region;
pub mod server;
pub mod service;
pub mod subject_api;
pub mod telemetry;
pub mod tenants;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod validate;

pub use error::{Error, Result};
pub use service::Service;
