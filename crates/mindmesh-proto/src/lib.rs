//! Generated code for the Mindmesh gRPC API and event types, and nothing else.
//!
//! The `.proto` files under `proto/` are the contract (see API.md); this crate compiles
//! them with `tonic-prost-build`. RPCs a service does not override answer
//! `UNIMPLEMENTED` (default stubs), so a half-built service never fakes success.

#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/mindmesh.rs"));

/// Encoded `FileDescriptorSet` of every Mindmesh proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mindmesh_descriptor.bin"));

/// Fully qualified names of every gRPC service in the API, in the order of API.md.
pub const SERVICE_NAMES: &[&str] = &[
    "mindmesh.permissions.v1.AccountService",
    "mindmesh.permissions.v1.PermissionsService",
    "mindmesh.permissions.v1.StaffAccessService",
    "mindmesh.ingest.v1.IngestService",
    "mindmesh.storage.v1.StorageService",
    "mindmesh.retention.v1.RetentionService",
    "mindmesh.dsar.v1.DsarService",
    "mindmesh.dsar.v1.PrivacySettingsService",
    "mindmesh.subject.v1.SubjectData",
    "mindmesh.audit.v1.Audit",
];
