//! `mindmesh.subject.v1.SubjectData`, served once per process. Each service will plug in
//! what it holds about a person; until then every RPC answers UNIMPLEMENTED.

use mindmesh_proto::mindmesh::subject::v1::subject_data_server::SubjectData;

/// The SubjectData service of this process.
#[derive(Clone, Copy, Debug, Default)]
pub struct SubjectDataApi;

#[tonic::async_trait]
impl SubjectData for SubjectDataApi {}
