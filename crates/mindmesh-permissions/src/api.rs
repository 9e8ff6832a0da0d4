//! The gRPC face of the permissions service: request validation, mapping between proto
//! messages and domain types, and errors to status codes. No SQL here.

use std::collections::BTreeSet;
use std::sync::Arc;

use mindmesh_kit::activity::ActivityReporter;
use mindmesh_kit::auth::{Caller, Role};
use mindmesh_kit::grpc::{from_timestamp, page_size, timestamp};
use mindmesh_kit::ids::{DocumentId, IntegrationId, TenantId, UserId};
use mindmesh_kit::integrations::Integrations;
use mindmesh_kit::tenants::Tenants;
use mindmesh_proto::mindmesh::permissions::v1 as pb;
use tonic::{Request, Response, Status};

use crate::accounts::{Accounts, NewUser, Tenant, User, UserPatch};
use crate::engine::{AccessRole, DocumentAcl, Grant, Grantee, Membership};
use crate::policy::{Policy, SyncedGroup, SyncedUser};
use crate::staff::{StaffAccess, StaffGrant};

/// `AccountService`.
#[derive(Clone)]
pub struct AccountApi {
    accounts: Accounts,
    /// Accounts change only in a tenant that exists and is not being deleted.
    tenants: Tenants,
    /// An admin managing accounts is activity (the inactivity clock, P09).
    activity: ActivityReporter,
}

impl AccountApi {
    /// The API over `accounts`, writing only for live `tenants`, reporting people's
    /// `activity`.
    pub fn new(accounts: Accounts, tenants: Tenants, activity: ActivityReporter) -> Self {
        AccountApi {
            accounts,
            tenants,
            activity,
        }
    }
}

fn tenant_to_proto(t: Tenant) -> pb::Tenant {
    pb::Tenant {
        id: t.id.to_string(),
        name: t.name,
        created_at: Some(timestamp(t.created_at)),
    }
}

fn user_to_proto(u: User) -> pb::User {
    pb::User {
        id: u.id.to_string(),
        tenant_id: u.tenant.to_string(),
        first_name: u.first_name,
        last_name: u.last_name,
        email: u.email,
        picture_url: u.picture_url,
        created_at: Some(timestamp(u.created_at)),
        updated_at: Some(timestamp(u.updated_at)),
    }
}

/// Parses a user id; a malformed one is INVALID_ARGUMENT naming the field.
fn user_id(field: &'static str, value: &str) -> Result<UserId, Status> {
    Ok(UserId::parse_field(field, value)?)
}

#[tonic::async_trait]
impl pb::account_service_server::AccountService for AccountApi {
    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::CreateTenantResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let tenant = self
            .accounts
            .create_tenant(&caller, &request.get_ref().name)
            .await?;
        Ok(Response::new(pb::CreateTenantResponse {
            tenant: Some(tenant_to_proto(tenant)),
        }))
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::GetTenantResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let id = match request.get_ref().tenant_id.as_str() {
            "" => None,
            s => Some(TenantId::parse_field("tenant_id", s)?),
        };
        let tenant = self.accounts.get_tenant(&caller, id).await?;
        Ok(Response::new(pb::GetTenantResponse {
            tenant: Some(tenant_to_proto(tenant)),
        }))
    }

    async fn delete_tenant(
        &self,
        request: Request<pb::DeleteTenantRequest>,
    ) -> Result<Response<pb::DeleteTenantResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let id = TenantId::parse_field("tenant_id", &request.get_ref().tenant_id)?;
        let cascade = self.accounts.delete_tenant(&caller, id).await?;
        Ok(Response::new(pb::DeleteTenantResponse {
            cascade_id: cascade.to_string(),
        }))
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        self.activity.saw(&caller, "write").await;
        let req = request.into_inner();
        let user = self
            .accounts
            .create_user(
                &caller,
                NewUser {
                    first_name: req.first_name,
                    last_name: req.last_name,
                    email: req.email,
                    picture_url: req.picture_url,
                },
            )
            .await?;
        Ok(Response::new(pb::CreateUserResponse {
            user: Some(user_to_proto(user)),
        }))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        self.activity.saw(&caller, "read").await;
        let id = user_id("user_id", &request.get_ref().user_id)?;
        let user = self.accounts.get_user(&caller, id).await?;
        Ok(Response::new(pb::GetUserResponse {
            user: Some(user_to_proto(user)),
        }))
    }

    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::UpdateUserResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        self.activity.saw(&caller, "write").await;
        self.tenants.require_live(caller.tenant()?).await?;
        let req = request.into_inner();
        let id = user_id("user_id", &req.user_id)?;
        let user = self
            .accounts
            .update_user(
                &caller,
                id,
                UserPatch {
                    first_name: req.first_name,
                    last_name: req.last_name,
                    email: req.email,
                    picture_url: req.picture_url,
                },
            )
            .await?;
        Ok(Response::new(pb::UpdateUserResponse {
            user: Some(user_to_proto(user)),
        }))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        self.activity.saw(&caller, "write").await;
        let id = user_id("user_id", &request.get_ref().user_id)?;
        let cascade = self.accounts.delete_user(&caller, id).await?;
        Ok(Response::new(pb::DeleteUserResponse {
            cascade_id: cascade.to_string(),
        }))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        self.activity.saw(&caller, "read").await;
        let req = request.into_inner();
        let limit = page_size(req.page_size, 100, 1000)?;
        let after = match req.page_token.as_str() {
            "" => None,
            token => Some(token.parse::<UserId>().map_err(|_| {
                mindmesh_kit::Error::invalid("page_token", "is not a token this service issued")
            })?),
        };
        let users = self.accounts.list_users(&caller, after, limit).await?;
        let next_page_token = match users.last() {
            Some(last) if users.len() as u64 == limit => last.id.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListUsersResponse {
            users: users.into_iter().map(user_to_proto).collect(),
            next_page_token,
        }))
    }
}

/// `PermissionsService`: the policy decision point.
#[derive(Clone)]
pub struct PermissionsApi {
    policy: Arc<Policy>,
    /// Source principals and grants change only in a live tenant…
    tenants: Tenants,
    /// …and only for a connected integration of it (or native documents).
    integrations: Integrations,
}

impl PermissionsApi {
    /// The API over `policy`, taking writes only for live `tenants` and connected
    /// `integrations`.
    pub fn new(policy: Arc<Policy>, tenants: Tenants, integrations: Integrations) -> Self {
        PermissionsApi {
            policy,
            tenants,
            integrations,
        }
    }

    /// The tenant a write of the source's truth is for: the service role only (ingest,
    /// and storage for native documents) — an admin does not rewrite what a source says
    /// (P02) — and only a live tenant.
    async fn source_writer(&self, caller: &Caller) -> Result<TenantId, Status> {
        caller.require_any(&[Role::Service])?;
        let tenant = caller.tenant()?;
        self.tenants.require_live(tenant).await?;
        Ok(tenant)
    }
}

/// Most pairs one `BatchCheck` may carry.
pub const MAX_BATCH_CHECK: usize = 1_000;
/// Most ids one `FilterReadable` may carry.
pub const MAX_FILTER_READABLE: usize = 10_000;
/// Largest `ListReadable` page.
pub const MAX_LIST_READABLE_PAGE: u32 = 10_000;

/// Who may ask about `user`: services and admins about anyone in the tenant, members
/// about themselves. Staff need the tenant's consent grant (not built yet): denied.
fn require_asker(caller: &Caller, user: UserId) -> Result<TenantId, Status> {
    if caller.has_any(&[Role::Service, Role::Admin])
        || (caller.has(Role::Member) && caller.subject == user.to_string())
    {
        Ok(caller.tenant()?)
    } else if caller.has(Role::Member) {
        Err(Status::permission_denied(
            "members may only ask about themselves",
        ))
    } else {
        Err(Status::permission_denied(
            "this call needs the service or admin role",
        ))
    }
}

fn document_id(field: &'static str, value: &str) -> Result<DocumentId, Status> {
    Ok(DocumentId::parse_field(field, value)?)
}

fn grant_from_proto(g: pb::Grant) -> Result<Grant, Status> {
    let role = match pb::Role::try_from(g.role) {
        Ok(pb::Role::Reader) => AccessRole::Reader,
        Ok(pb::Role::Writer) => AccessRole::Writer,
        Ok(pb::Role::Owner) => AccessRole::Owner,
        _ => {
            return Err(mindmesh_kit::Error::invalid(
                "acls.grants.role",
                "must be reader, writer or owner",
            )
            .into());
        }
    };
    let grantee = match pb::GranteeKind::try_from(g.grantee_kind) {
        Ok(pb::GranteeKind::User) => Grantee::User(g.grantee),
        Ok(pb::GranteeKind::Group) => Grantee::Group(g.grantee),
        Ok(pb::GranteeKind::Domain) => Grantee::Domain(g.grantee.to_lowercase()),
        Ok(pb::GranteeKind::Anyone) if g.grantee.is_empty() => Grantee::Anyone,
        Ok(pb::GranteeKind::Anyone) => {
            return Err(mindmesh_kit::Error::invalid(
                "acls.grants.grantee",
                "must be empty for anyone grants",
            )
            .into());
        }
        _ => {
            return Err(mindmesh_kit::Error::invalid(
                "acls.grants.grantee_kind",
                "must be user, group, domain or anyone",
            )
            .into());
        }
    };
    Ok(Grant { grantee, role })
}

fn grant_to_proto(g: &Grant) -> pb::Grant {
    let (kind, grantee) = match &g.grantee {
        Grantee::User(id) => (pb::GranteeKind::User, id.clone()),
        Grantee::Group(id) => (pb::GranteeKind::Group, id.clone()),
        Grantee::Domain(d) => (pb::GranteeKind::Domain, d.clone()),
        Grantee::Anyone => (pb::GranteeKind::Anyone, String::new()),
    };
    let role = match g.role {
        AccessRole::Reader => pb::Role::Reader,
        AccessRole::Writer => pb::Role::Writer,
        AccessRole::Owner => pb::Role::Owner,
    };
    pb::Grant {
        grantee_kind: kind as i32,
        grantee,
        role: role as i32,
    }
}

#[tonic::async_trait]
impl pb::permissions_service_server::PermissionsService for PermissionsApi {
    async fn sync_principals(
        &self,
        request: Request<pb::SyncPrincipalsRequest>,
    ) -> Result<Response<pb::SyncPrincipalsResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let tenant = self.source_writer(&caller).await?;
        let req = request.into_inner();
        let integration = IntegrationId::parse_field("integration_id", &req.integration_id)?;
        if integration.is_native() {
            return Err(mindmesh_kit::Error::invalid(
                "integration_id",
                "the nil UUID is reserved for native documents, whose principals are the accounts",
            )
            .into());
        }
        self.integrations
            .require_writable(tenant, &BTreeSet::from([integration]), "integration_id")
            .await?;
        let users = req
            .users
            .into_iter()
            .map(|u| SyncedUser {
                external_id: u.external_id,
                email: u.email,
                display_name: u.display_name,
            })
            .collect();
        let groups = req
            .groups
            .into_iter()
            .map(|g| SyncedGroup {
                external_id: g.external_id,
                email: g.email,
                name: g.name,
            })
            .collect();
        let memberships = req
            .memberships
            .into_iter()
            .map(|m| Membership {
                integration,
                group: m.group_external_id,
                member: m.member_external_id,
                member_is_group: m.member_is_group,
            })
            .collect();
        let revision = self
            .policy
            .sync_principals(tenant, integration, users, groups, memberships)
            .await?;
        Ok(Response::new(pb::SyncPrincipalsResponse { revision }))
    }

    async fn set_document_acls(
        &self,
        request: Request<pb::SetDocumentAclsRequest>,
    ) -> Result<Response<pb::SetDocumentAclsResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let tenant = self.source_writer(&caller).await?;
        let req = request.into_inner();
        if req.acls.len() > crate::policy::MAX_ACLS_PER_CALL {
            return Err(Status::resource_exhausted(format!(
                "acls: at most {} per call",
                crate::policy::MAX_ACLS_PER_CALL
            )));
        }
        let mut acls = Vec::with_capacity(req.acls.len());
        for acl in req.acls {
            acls.push(DocumentAcl {
                document: document_id("acls.document_id", &acl.document_id)?,
                integration: IntegrationId::parse_field(
                    "acls.integration_id",
                    &acl.integration_id,
                )?,
                grants: acl
                    .grants
                    .into_iter()
                    .map(grant_from_proto)
                    .collect::<Result<_, _>>()?,
            });
        }
        let imported: BTreeSet<IntegrationId> = acls
            .iter()
            .map(|a| a.integration)
            .filter(|i| !i.is_native())
            .collect();
        self.integrations
            .require_writable(tenant, &imported, "acls.integration_id")
            .await?;
        let revision = self.policy.set_document_acls(tenant, acls).await?;
        Ok(Response::new(pb::SetDocumentAclsResponse { revision }))
    }

    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let req = request.into_inner();
        let user = user_id("user_id", &req.user_id)?;
        let tenant = require_asker(&caller, user)?;
        let document = document_id("document_id", &req.document_id)?;
        let (allowed, revision) = self
            .policy
            .check(tenant, user, document, req.at_least_revision)
            .await?;
        Ok(Response::new(pb::CheckResponse { allowed, revision }))
    }

    async fn batch_check(
        &self,
        request: Request<pb::BatchCheckRequest>,
    ) -> Result<Response<pb::BatchCheckResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let req = request.into_inner();
        if req.items.len() > MAX_BATCH_CHECK {
            return Err(Status::resource_exhausted(format!(
                "items: at most {MAX_BATCH_CHECK} per call"
            )));
        }
        let mut items = Vec::with_capacity(req.items.len());
        let mut tenant = None;
        for item in req.items {
            let user = user_id("items.user_id", &item.user_id)?;
            tenant = Some(require_asker(&caller, user)?);
            items.push((user, document_id("items.document_id", &item.document_id)?));
        }
        let tenant = match tenant {
            Some(t) => t,
            None => caller.tenant()?,
        };
        let (allowed, revision) = self
            .policy
            .batch_check(tenant, &items, req.at_least_revision)
            .await?;
        Ok(Response::new(pb::BatchCheckResponse { allowed, revision }))
    }

    async fn filter_readable(
        &self,
        request: Request<pb::FilterReadableRequest>,
    ) -> Result<Response<pb::FilterReadableResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let req = request.into_inner();
        let user = user_id("user_id", &req.user_id)?;
        let tenant = require_asker(&caller, user)?;
        if req.document_ids.len() > MAX_FILTER_READABLE {
            return Err(Status::resource_exhausted(format!(
                "document_ids: at most {MAX_FILTER_READABLE} per call"
            )));
        }
        let documents = req
            .document_ids
            .iter()
            .map(|d| document_id("document_ids", d))
            .collect::<Result<Vec<_>, _>>()?;
        let (readable, revision) = self
            .policy
            .filter_readable(tenant, user, &documents, req.at_least_revision)
            .await?;
        Ok(Response::new(pb::FilterReadableResponse {
            document_ids: readable.into_iter().map(|d| d.to_string()).collect(),
            revision,
        }))
    }

    async fn list_readable(
        &self,
        request: Request<pb::ListReadableRequest>,
    ) -> Result<Response<pb::ListReadableResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let req = request.into_inner();
        let user = user_id("user_id", &req.user_id)?;
        let tenant = require_asker(&caller, user)?;
        let limit = page_size(req.page_size, 1_000, MAX_LIST_READABLE_PAGE)?;
        let after = match req.page_token.as_str() {
            "" => None,
            token => Some(token.parse::<DocumentId>().map_err(|_| {
                mindmesh_kit::Error::invalid("page_token", "is not a token this service issued")
            })?),
        };
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let (page, revision) = self
            .policy
            .list_readable(tenant, user, after, limit, req.at_least_revision)
            .await?;
        let next_page_token = match page.last() {
            Some(last) if page.len() == limit => last.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListReadableResponse {
            document_ids: page.into_iter().map(|d| d.to_string()).collect(),
            next_page_token,
            revision,
        }))
    }

    async fn explain_access(
        &self,
        request: Request<pb::ExplainAccessRequest>,
    ) -> Result<Response<pb::ExplainAccessResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let req = request.into_inner();
        let user = user_id("user_id", &req.user_id)?;
        let tenant = require_asker(&caller, user)?;
        let document = document_id("document_id", &req.document_id)?;
        let (explanation, revision) = self
            .policy
            .explain(tenant, user, document, req.at_least_revision)
            .await?;
        Ok(Response::new(match explanation {
            Some(e) => {
                let explanation = match (&e.grant.grantee, e.group_path.as_slice()) {
                    (Grantee::Anyone, _) => "granted to anyone".to_owned(),
                    (Grantee::Domain(d), _) => format!("granted to everyone in {d}"),
                    (Grantee::User(_), _) => "granted to the user directly".to_owned(),
                    (Grantee::Group(_), path) => format!(
                        "granted to a group the user is in through {} group(s): {}",
                        path.len(),
                        path.join(" → ")
                    ),
                };
                pb::ExplainAccessResponse {
                    allowed: true,
                    grant: Some(grant_to_proto(&e.grant)),
                    principal_external_id: e.principal.map(|p| p.external_id).unwrap_or_default(),
                    group_path: e.group_path,
                    explanation,
                    revision,
                }
            }
            None => pb::ExplainAccessResponse {
                allowed: false,
                explanation: "no grant reaches this user".to_owned(),
                revision,
                ..Default::default()
            },
        }))
    }
}

/// `StaffAccessService`: a tenant admin's consent to staff access (P11).
#[derive(Clone)]
pub struct StaffAccessApi {
    staff: StaffAccess,
    /// Consent is given or withdrawn only in a live tenant.
    tenants: Tenants,
}

impl StaffAccessApi {
    /// The API over `staff`, writing only for live `tenants`.
    pub fn new(staff: StaffAccess, tenants: Tenants) -> Self {
        StaffAccessApi { staff, tenants }
    }
}

fn staff_role_from_proto(value: i32) -> Result<Role, Status> {
    match pb::StaffRole::try_from(value) {
        Ok(pb::StaffRole::Engineer) => Ok(Role::StaffEngineer),
        Ok(pb::StaffRole::Support) => Ok(Role::StaffSupport),
        Ok(pb::StaffRole::Analyst) => Ok(Role::StaffAnalyst),
        _ => {
            Err(mindmesh_kit::Error::invalid("role", "must be engineer, support or analyst").into())
        }
    }
}

fn staff_grant_to_proto(g: StaffGrant) -> pb::StaffAccessGrant {
    let role = match g.role {
        Role::StaffEngineer => pb::StaffRole::Engineer,
        Role::StaffSupport => pb::StaffRole::Support,
        Role::StaffAnalyst => pb::StaffRole::Analyst,
        _ => pb::StaffRole::Unspecified,
    };
    pb::StaffAccessGrant {
        id: g.id.to_string(),
        tenant_id: g.tenant.to_string(),
        role: role as i32,
        reason: g.reason,
        granted_by: g.granted_by,
        granted_at: Some(timestamp(g.granted_at)),
        expires_at: Some(timestamp(g.expires_at)),
        revoked_at: g.revoked_at.map(timestamp),
    }
}

#[tonic::async_trait]
impl pb::staff_access_service_server::StaffAccessService for StaffAccessApi {
    async fn grant_staff_access(
        &self,
        request: Request<pb::GrantStaffAccessRequest>,
    ) -> Result<Response<pb::GrantStaffAccessResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        // Who may ask comes before what was asked: a member learns nothing of the checks.
        caller.require_any(&[Role::Admin])?;
        self.tenants.require_live(caller.tenant()?).await?;
        let req = request.into_inner();
        let role = staff_role_from_proto(req.role)?;
        let expires_at = req
            .expires_at
            .as_ref()
            .ok_or_else(|| mindmesh_kit::Error::invalid("expires_at", "is required"))
            .and_then(|t| from_timestamp("expires_at", t))?;
        let grant = self
            .staff
            .grant(&caller, role, &req.reason, expires_at)
            .await?;
        Ok(Response::new(pb::GrantStaffAccessResponse {
            grant: Some(staff_grant_to_proto(grant)),
        }))
    }

    async fn revoke_staff_access(
        &self,
        request: Request<pb::RevokeStaffAccessRequest>,
    ) -> Result<Response<pb::RevokeStaffAccessResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        self.tenants.require_live(caller.tenant()?).await?;
        let id = mindmesh_kit::ids::canonical_uuid(&request.get_ref().grant_id)
            .ok_or_else(|| mindmesh_kit::Error::invalid("grant_id", "is not a valid UUID"))?;
        let grant = self.staff.revoke(&caller, id).await?;
        Ok(Response::new(pb::RevokeStaffAccessResponse {
            grant: Some(staff_grant_to_proto(grant)),
        }))
    }

    async fn list_staff_access(
        &self,
        request: Request<pb::ListStaffAccessRequest>,
    ) -> Result<Response<pb::ListStaffAccessResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size, 100, 1000)?;
        let before = match req.page_token.as_str() {
            "" => None,
            token => Some(mindmesh_kit::ids::canonical_uuid(token).ok_or_else(|| {
                mindmesh_kit::Error::invalid("page_token", "is not a token this service issued")
            })?),
        };
        let grants = self
            .staff
            .list(&caller, req.include_inactive, before, limit)
            .await?;
        let next_page_token = match grants.last() {
            Some(last) if grants.len() as u64 == limit => last.id.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListStaffAccessResponse {
            grants: grants.into_iter().map(staff_grant_to_proto).collect(),
            next_page_token,
        }))
    }
}
