//! Storage's questions to the permissions service, the single source of truth about who
//! may read what (P02): `Check` / `FilterReadable` before every read, `ExplainAccess`
//! before a write, `SetDocumentAcls` for native documents, and the consent record that
//! admits staff (P11). Every call carries a short-lived service token for the tenant.

use mindmesh_kit::audit::AuditRecord;
use mindmesh_kit::auth::{Caller, Role};
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::grpc::peer_error;
use mindmesh_kit::ids::{DocumentId, IntegrationId, TenantId, UserId};
use mindmesh_kit::peers::PeerChannel;
use mindmesh_kit::{Error, Result};
use mindmesh_proto::mindmesh::permissions::v1 as pb;
use pb::account_service_client::AccountServiceClient;
use pb::permissions_service_client::PermissionsServiceClient;
use pb::staff_access_service_client::StaffAccessServiceClient;

/// Most ids per `FilterReadable` call (the permissions service's limit).
const FILTER_CHUNK: usize = 10_000;

/// What a staff caller may see of a tenant's documents once admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaffView {
    /// Engineers: every document, in full.
    Full,
    /// Support: metadata, never title, content or link.
    NoContent,
    /// Analysts: pseudonymized records only.
    Pseudonymized,
}

/// The storage service's client of the permissions service.
#[derive(Clone)]
pub struct Gate {
    ctx: ServiceContext,
    permissions: PermissionsServiceClient<PeerChannel>,
    staff: StaffAccessServiceClient<PeerChannel>,
    accounts: AccountServiceClient<PeerChannel>,
}

impl Gate {
    /// A gate to the permissions service at `peers.permissions_url`.
    pub fn new(ctx: ServiceContext) -> Result<Self> {
        let channel = ctx.peer(
            mindmesh_kit::Service::Permissions,
            "peers.permissions_url",
            ctx.config.peers.permissions_url.as_deref(),
        )?;
        let limit = ctx.config.limits.max_message_bytes;
        Ok(Gate {
            permissions: PermissionsServiceClient::new(channel.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            staff: StaffAccessServiceClient::new(channel.clone()),
            accounts: AccountServiceClient::new(channel),
            ctx,
        })
    }

    /// May `user` read `document`, at a permission state at least `at_least_revision`?
    pub async fn check(
        &self,
        tenant: TenantId,
        user: UserId,
        document: DocumentId,
        at_least_revision: u64,
    ) -> Result<bool> {
        let request = self.ctx.service_request(
            tenant,
            pb::CheckRequest {
                user_id: user.to_string(),
                document_id: document.to_string(),
                at_least_revision,
            },
        )?;
        let response = self
            .permissions
            .clone()
            .check(request)
            .await
            .map_err(|s| peer_error("permissions", &s))?;
        Ok(response.into_inner().allowed)
    }

    /// The readable subset of `documents` for `user`, in their order.
    pub async fn readable(
        &self,
        tenant: TenantId,
        user: UserId,
        documents: &[DocumentId],
        at_least_revision: u64,
    ) -> Result<Vec<DocumentId>> {
        let mut out = Vec::with_capacity(documents.len());
        for chunk in documents.chunks(FILTER_CHUNK) {
            let request = self.ctx.service_request(
                tenant,
                pb::FilterReadableRequest {
                    user_id: user.to_string(),
                    document_ids: chunk.iter().map(ToString::to_string).collect(),
                    at_least_revision,
                },
            )?;
            let response = self
                .permissions
                .clone()
                .filter_readable(request)
                .await
                .map_err(|s| peer_error("permissions", &s))?;
            for id in response.into_inner().document_ids {
                out.push(
                    id.parse().map_err(|_| {
                        Error::Internal("permissions returned a malformed id".into())
                    })?,
                );
            }
        }
        Ok(out)
    }

    /// May `user` change `document`: does a writer or owner grant reach them? The
    /// permissions service explains the most direct grant; a reader grant found first
    /// answers no even where a group also makes the user a writer (fails closed).
    pub async fn may_write(
        &self,
        tenant: TenantId,
        user: UserId,
        document: DocumentId,
    ) -> Result<bool> {
        let request = self.ctx.service_request(
            tenant,
            pb::ExplainAccessRequest {
                user_id: user.to_string(),
                document_id: document.to_string(),
                at_least_revision: 0,
            },
        )?;
        let response = self
            .permissions
            .clone()
            .explain_access(request)
            .await
            .map_err(|s| peer_error("permissions", &s))?
            .into_inner();
        let role = response.grant.map(|g| g.role);
        Ok(response.allowed
            && matches!(
                role.map(pb::Role::try_from),
                Some(Ok(pb::Role::Writer | pb::Role::Owner))
            ))
    }

    /// Records `owner` as the owner of the native document `document`, before the
    /// document is stored (a grant on a document that never came to be reads nothing).
    pub async fn grant_owner(
        &self,
        tenant: TenantId,
        document: DocumentId,
        owner: UserId,
    ) -> Result<u64> {
        self.set_acls(
            tenant,
            vec![pb::DocumentAcl {
                document_id: document.to_string(),
                integration_id: IntegrationId::NATIVE.to_string(),
                grants: vec![pb::Grant {
                    grantee_kind: pb::GranteeKind::User.into(),
                    grantee: owner.to_string(),
                    role: pb::Role::Owner.into(),
                }],
            }],
        )
        .await
    }

    /// Removes every grant of deleted documents.
    pub async fn revoke_all(
        &self,
        tenant: TenantId,
        integration: IntegrationId,
        documents: &[DocumentId],
    ) -> Result<u64> {
        let mut revision = 0;
        for chunk in documents.chunks(1_000) {
            revision = self
                .set_acls(
                    tenant,
                    chunk
                        .iter()
                        .map(|d| pb::DocumentAcl {
                            document_id: d.to_string(),
                            integration_id: integration.to_string(),
                            grants: Vec::new(),
                        })
                        .collect(),
                )
                .await?;
        }
        Ok(revision)
    }

    async fn set_acls(&self, tenant: TenantId, acls: Vec<pb::DocumentAcl>) -> Result<u64> {
        let request = self
            .ctx
            .service_request(tenant, pb::SetDocumentAclsRequest { acls })?;
        let response = self
            .permissions
            .clone()
            .set_document_acls(request)
            .await
            .map_err(|s| peer_error("permissions", &s))?;
        Ok(response.into_inner().revision)
    }

    /// The account of `tenant` with `email` (compared case-insensitively), if any.
    /// Pages through the tenant's accounts: only data-subject requests ask this.
    pub async fn user_by_email(&self, tenant: TenantId, email: &str) -> Result<Option<UserId>> {
        mindmesh_kit::tenants::user_by_email(&self.ctx, &self.accounts, tenant, email).await
    }

    /// Admits a staff caller to `tenant`'s documents if the tenant's admin granted one
    /// of the caller's staff roles and the grant is active (P11), and audits the access
    /// (`action` on `subject_id`). The widest admitted view wins.
    pub async fn admit_staff(
        &self,
        caller: &Caller,
        tenant: TenantId,
        action: &str,
        subject_id: &str,
    ) -> Result<StaffView> {
        let mut active = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = self.ctx.service_request(
                tenant,
                pb::ListStaffAccessRequest {
                    include_inactive: false,
                    page_size: 1000,
                    page_token,
                },
            )?;
            let response = self
                .staff
                .clone()
                .list_staff_access(request)
                .await
                .map_err(|s| peer_error("permissions", &s))?
                .into_inner();
            active.extend(response.grants.iter().map(|g| g.role));
            if response.next_page_token.is_empty() {
                break;
            }
            page_token = response.next_page_token;
        }
        let granted = |staff: pb::StaffRole, role: Role| {
            caller.has(role) && active.contains(&i32::from(staff))
        };
        let view = if granted(pb::StaffRole::Engineer, Role::StaffEngineer) {
            StaffView::Full
        } else if granted(pb::StaffRole::Support, Role::StaffSupport) {
            StaffView::NoContent
        } else if granted(pb::StaffRole::Analyst, Role::StaffAnalyst) {
            StaffView::Pseudonymized
        } else {
            return Err(Error::PermissionDenied(
                "staff access to this tenant needs an active consent grant from its admin".into(),
            ));
        };
        self.ctx
            .audit
            .record(
                &AuditRecord::by(caller, &format!("staff.{action}"), Some(tenant), subject_id)
                    .with_details(format!("view {view:?}")),
            )
            .await?;
        Ok(view)
    }
}
