//! What the storage service does for data-subject rights (P12): export the native
//! documents a person wrote (decrypted), and restrict (or lift the restriction of) their
//! processing. Storage keys nothing to emails: the person is the account with that email,
//! asked of the permissions service. Imported documents belong to the source tool's
//! records and are exported, rectified and erased there.

use base64::Engine;
use mindmesh_kit::Result;
use mindmesh_kit::audit::AuditRecord;
use mindmesh_kit::auth::Caller;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::subject_api::{SubjectProvider, SubjectRecord};
use serde_json::json;

use crate::access::Gate;
use crate::documents::Documents;

/// The storage service's [`SubjectProvider`].
pub struct StorageSubject {
    ctx: ServiceContext,
    documents: Documents,
    gate: Gate,
}

impl StorageSubject {
    /// A provider over the service's documents, asking permissions through `gate` who an
    /// email belongs to.
    pub fn new(ctx: ServiceContext, documents: Documents, gate: Gate) -> Self {
        StorageSubject {
            ctx,
            documents,
            gate,
        }
    }
}

#[async_trait::async_trait]
impl SubjectProvider for StorageSubject {
    async fn export(
        &self,
        caller: &Caller,
        tenant: TenantId,
        email: &str,
        request_id: &str,
    ) -> Result<Vec<SubjectRecord>> {
        let mut records = Vec::new();
        if let Some(user) = self.gate.user_by_email(tenant, email).await? {
            for id in self.documents.owned_by(tenant, user).await? {
                let doc = self.documents.get(tenant, id).await?;
                let content = match std::str::from_utf8(&doc.content) {
                    Ok(text) => json!({ "content": text }),
                    Err(_) => json!({
                        "content_base64": base64::engine::general_purpose::STANDARD.encode(&doc.content)
                    }),
                };
                let mut json = json!({
                    "id": doc.id.to_string(),
                    "title": doc.title,
                    "mime_type": doc.mime_type,
                    "size_bytes": doc.size_bytes,
                    "modified_at": doc.modified_at.to_rfc3339(),
                    "archived": doc.archived,
                    "restricted": doc.restricted,
                });
                if let (Some(out), Some(extra)) = (json.as_object_mut(), content.as_object()) {
                    out.extend(extra.clone());
                }
                records.push(SubjectRecord {
                    kind: "document".into(),
                    id: doc.id.to_string(),
                    json,
                    updated_at: doc.modified_at,
                });
            }
        }
        self.ctx
            .audit
            .record(
                &AuditRecord::by(caller, "subject.export", Some(tenant), request_id)
                    .with_details(format!("{} records", records.len())),
            )
            .await?;
        Ok(records)
    }

    async fn restrict(
        &self,
        caller: &Caller,
        tenant: TenantId,
        email: &str,
        request_id: &str,
        restricted: bool,
    ) -> Result<u64> {
        let changed = match self.gate.user_by_email(tenant, email).await? {
            Some(user) => {
                self.documents
                    .restrict_owner(tenant, user, restricted)
                    .await?
            }
            None => 0,
        };
        let action = if restricted {
            "subject.restrict"
        } else {
            "subject.unrestrict"
        };
        self.ctx
            .audit
            .record(
                &AuditRecord::by(caller, action, Some(tenant), request_id)
                    .with_details(format!("{changed} documents")),
            )
            .await?;
        Ok(changed)
    }
}
