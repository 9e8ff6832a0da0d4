//! Where a sync writes: documents to the storage service (`PutDocuments`, client
//! streaming, so a slow store slows the fetchers down), principals and grants to the
//! permissions service (`SyncPrincipals`, `SetDocumentAcls`), deletions to storage
//! (which revokes the grants with the document). Every call carries a short-lived
//! service token for the tenant.

use mindmesh_kit::Service;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::grpc::{peer_error, timestamp};
use mindmesh_kit::ids::{DocumentId, IntegrationId, TenantId};
use mindmesh_kit::peers::PeerChannel;
use mindmesh_kit::{Error, Result};
use mindmesh_proto::mindmesh::permissions::v1 as perm;
use mindmesh_proto::mindmesh::storage::v1 as store;
use perm::permissions_service_client::PermissionsServiceClient;
use store::storage_service_client::StorageServiceClient;
use tokio::sync::mpsc;
use tonic::Code;

use crate::connector::{Access, Content, Grantee, Principals, SourceDocument, SourceGrant};

/// Content bytes per `PutDocuments` message (storage accepts at most 1 MiB).
const CHUNK_BYTES: usize = 1024 * 1024;
/// Document ACLs per `SetDocumentAcls` call (the permissions service's limit).
const ACLS_PER_CALL: usize = 1_000;

/// What storage did with one document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Newly stored.
    Created,
    /// A new version replaced the old one.
    Updated,
    /// Same version as stored.
    Unchanged,
    /// Archived in Mindmesh: not re-imported (P07).
    SkippedArchived,
}

/// Storage's answer for one document.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The source's id.
    pub external_id: String,
    /// Storage's id (none for an archived document whose content was purged).
    pub document: Option<DocumentId>,
    /// What happened.
    pub outcome: Outcome,
}

/// The ingest service's clients of storage and permissions.
#[derive(Clone)]
pub struct Sink {
    ctx: ServiceContext,
    storage: StorageServiceClient<PeerChannel>,
    permissions: PermissionsServiceClient<PeerChannel>,
}

impl Sink {
    /// Clients of the services at `peers.storage_url` and `peers.permissions_url`.
    pub fn new(ctx: ServiceContext) -> Result<Self> {
        let storage = ctx.peer(
            Service::Storage,
            "peers.storage_url",
            ctx.config.peers.storage_url.as_deref(),
        )?;
        let permissions = ctx.peer(
            Service::Permissions,
            "peers.permissions_url",
            ctx.config.peers.permissions_url.as_deref(),
        )?;
        let limit = ctx.config.limits.max_message_bytes;
        Ok(Sink {
            storage: StorageServiceClient::new(storage)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            permissions: PermissionsServiceClient::new(permissions)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            ctx,
        })
    }

    /// Replaces the integration's principal set.
    pub async fn principals(
        &self,
        tenant: TenantId,
        integration: IntegrationId,
        principals: Principals,
    ) -> Result<u64> {
        let request = perm::SyncPrincipalsRequest {
            integration_id: integration.to_string(),
            users: principals
                .users
                .into_iter()
                .map(|u| perm::PrincipalUser {
                    external_id: u.external_id,
                    email: u.email,
                    display_name: u.display_name,
                })
                .collect(),
            groups: principals
                .groups
                .into_iter()
                .map(|g| perm::PrincipalGroup {
                    external_id: g.external_id,
                    email: g.email,
                    name: g.name,
                })
                .collect(),
            memberships: principals
                .memberships
                .into_iter()
                .map(|m| perm::Membership {
                    group_external_id: m.group,
                    member_external_id: m.member,
                    member_is_group: m.member_is_group,
                })
                .collect(),
        };
        // One call carries the whole set; say which limit it is over rather than let
        // the connection fail with it.
        let size = prost::Message::encoded_len(&request);
        let limit = self.ctx.config.limits.max_message_bytes;
        if size > limit {
            return Err(Error::ResourceExhausted(format!(
                "principals: {} users, {} groups and {} memberships encode to {size} bytes, \
                 more than one SyncPrincipals call may carry (limits.max_message_bytes = {limit})",
                request.users.len(),
                request.groups.len(),
                request.memberships.len()
            )));
        }
        let response = self
            .permissions
            .clone()
            .sync_principals(self.ctx.service_request(tenant, request)?)
            .await
            .map_err(|s| peer_error("permissions", &s))?;
        Ok(response.into_inner().revision)
    }

    /// Streams the documents that arrive on `documents` to storage; returns storage's
    /// answer for each, once the channel is closed.
    pub async fn put(
        &self,
        tenant: TenantId,
        integration: IntegrationId,
        mut documents: mpsc::Receiver<(SourceDocument, Content)>,
    ) -> Result<Vec<Stored>> {
        let (tx, rx) = mpsc::channel::<store::PutDocumentsRequest>(4);
        // Headers and chunks are produced as documents arrive; the bounded channel is
        // the back-pressure from storage to the fetchers.
        let feeder = async move {
            while let Some((doc, content)) = documents.recv().await {
                let header = store::DocumentHeader {
                    integration_id: integration.to_string(),
                    external_id: doc.external_id,
                    source_version: doc.version,
                    title: shown_title(&doc.title),
                    mime_type: usable_mime_type(content.mime_type.unwrap_or(doc.mime_type)),
                    source_url: usable_link(doc.url),
                    modified_at: Some(timestamp(doc.modified_at)),
                    owner: doc.owner,
                    size_bytes: content.bytes.len() as u64,
                };
                let item = store::put_documents_request::Item::Header(header);
                if tx
                    .send(store::PutDocumentsRequest { item: Some(item) })
                    .await
                    .is_err()
                {
                    return;
                }
                for chunk in content.bytes.chunks(CHUNK_BYTES) {
                    let item = store::put_documents_request::Item::Chunk(chunk.to_vec());
                    if tx
                        .send(store::PutDocumentsRequest { item: Some(item) })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        };
        let request = self
            .ctx
            .service_request(tenant, tokio_stream::wrappers::ReceiverStream::new(rx))?;
        let mut storage = self.storage.clone();
        let (response, ()) = tokio::join!(storage.put_documents(request), feeder);
        let response = response.map_err(|s| peer_error("storage", &s))?;
        response
            .into_inner()
            .results
            .into_iter()
            .map(|r| {
                let outcome = match store::PutOutcome::try_from(r.outcome) {
                    Ok(store::PutOutcome::Created) => Outcome::Created,
                    Ok(store::PutOutcome::Updated) => Outcome::Updated,
                    Ok(store::PutOutcome::Unchanged) => Outcome::Unchanged,
                    Ok(store::PutOutcome::SkippedArchived) => Outcome::SkippedArchived,
                    _ => {
                        return Err(Error::Internal(
                            "storage answered an unknown outcome".into(),
                        ));
                    }
                };
                let document =
                    match r.document_id.as_str() {
                        "" if outcome == Outcome::SkippedArchived => None,
                        id => Some(id.parse().map_err(|_| {
                            Error::Internal("storage answered a malformed id".into())
                        })?),
                    };
                Ok(Stored {
                    document,
                    external_id: r.external_id,
                    outcome,
                })
            })
            .collect()
    }

    /// Replaces the grants of each document.
    pub async fn acls(
        &self,
        tenant: TenantId,
        integration: IntegrationId,
        acls: &[(DocumentId, Vec<SourceGrant>)],
    ) -> Result<()> {
        for chunk in acls.chunks(ACLS_PER_CALL) {
            let request = perm::SetDocumentAclsRequest {
                acls: chunk
                    .iter()
                    .map(|(document, grants)| perm::DocumentAcl {
                        document_id: document.to_string(),
                        integration_id: integration.to_string(),
                        grants: grants.iter().map(grant).collect(),
                    })
                    .collect(),
            };
            self.permissions
                .clone()
                .set_document_acls(self.ctx.service_request(tenant, request)?)
                .await
                .map_err(|s| peer_error("permissions", &s))?;
        }
        Ok(())
    }

    /// Deletes a document from storage, which revokes its grants; one already gone is
    /// not an error.
    pub async fn delete(&self, tenant: TenantId, document: DocumentId) -> Result<()> {
        let request = store::DeleteDocumentRequest {
            document_id: document.to_string(),
        };
        match self
            .storage
            .clone()
            .delete_document(self.ctx.service_request(tenant, request)?)
            .await
        {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::NotFound => Ok(()),
            Err(status) => Err(peer_error("storage", &status)),
        }
    }
}

/// Longest title storage keeps, in characters.
const MAX_TITLE_CHARS: usize = 1_000;
/// Longest link storage keeps, in bytes.
const MAX_LINK_BYTES: usize = 4_096;

/// A source's title as storage takes it: what would deceive a reader (controls, bidi
/// overrides, invisible characters) cleaned out, and cut to the length storage keeps.
fn shown_title(title: &str) -> String {
    mindmesh_kit::validate::clean_line(title)
        .chars()
        .take(MAX_TITLE_CHARS)
        .collect()
}

/// A source's MIME type, or `application/octet-stream` where it is not one.
fn usable_mime_type(mime: String) -> String {
    match mindmesh_kit::validate::mime_type("mime_type", &mime) {
        Ok(()) => mime,
        Err(_) => "application/octet-stream".to_owned(),
    }
}

/// A source's link to the item, kept only if it is a plain web link.
fn usable_link(url: String) -> String {
    let usable = url.len() <= MAX_LINK_BYTES
        && mindmesh_kit::validate::url(
            "source_url",
            &url,
            mindmesh_kit::validate::UrlRule::SourceLink,
        )
        .is_ok();
    if usable { url } else { String::new() }
}

fn grant(g: &SourceGrant) -> perm::Grant {
    let (kind, grantee) = match &g.grantee {
        Grantee::User(id) => (perm::GranteeKind::User, id.clone()),
        Grantee::Group(id) => (perm::GranteeKind::Group, id.clone()),
        Grantee::Domain(domain) => (perm::GranteeKind::Domain, domain.clone()),
        Grantee::Anyone => (perm::GranteeKind::Anyone, String::new()),
    };
    let role = match g.access {
        Access::Reader => perm::Role::Reader,
        Access::Writer => perm::Role::Writer,
        Access::Owner => perm::Role::Owner,
    };
    perm::Grant {
        grantee_kind: kind as i32,
        grantee,
        role: role as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_source_says_is_made_safe_to_store() {
        assert_eq!(shown_title("report\u{202e}fdp.exe\n"), "reportfdp.exe");
        assert_eq!(shown_title(&"x".repeat(1500)).chars().count(), 1000);
        assert_eq!(usable_mime_type("text/markdown".into()), "text/markdown");
        assert_eq!(
            usable_mime_type("text/html\r\nX: y".into()),
            "application/octet-stream"
        );
        assert_eq!(usable_link("javascript:alert(1)".into()), "");
        assert_eq!(
            usable_link("https://github.com/o/r".into()),
            "https://github.com/o/r"
        );
    }
}
