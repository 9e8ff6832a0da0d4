//! Generated code for the Mindmesh gRPC API and event types, and nothing else.
//!
//! The `.proto` files under `proto/` are the contract and its reference; this crate compiles
//! them with `tonic-prost-build`. RPCs a service does not override answer
//! `UNIMPLEMENTED` (default stubs), so a half-built service never fakes success.

#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/mindmesh.rs"));

/// Encoded `FileDescriptorSet` of every Mindmesh proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mindmesh_descriptor.bin"));

/// Fully qualified names of every gRPC service in the API, from the generated code.
pub const SERVICE_NAMES: &[&str] = &[
    mindmesh::permissions::v1::account_service_server::SERVICE_NAME,
    mindmesh::permissions::v1::permissions_service_server::SERVICE_NAME,
    mindmesh::permissions::v1::staff_access_service_server::SERVICE_NAME,
    mindmesh::ingest::v1::ingest_service_server::SERVICE_NAME,
    mindmesh::storage::v1::storage_service_server::SERVICE_NAME,
    mindmesh::retention::v1::retention_service_server::SERVICE_NAME,
    mindmesh::dsar::v1::dsar_service_server::SERVICE_NAME,
    mindmesh::dsar::v1::privacy_settings_service_server::SERVICE_NAME,
    mindmesh::subject::v1::subject_data_server::SERVICE_NAME,
    mindmesh::audit::v1::audit_server::SERVICE_NAME,
];
