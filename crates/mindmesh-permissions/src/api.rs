//! The gRPC face of the permissions service: request validation, mapping between proto
//! messages and domain types, and errors to status codes. No SQL here.

use mindmesh_kit::auth::Caller;
use mindmesh_kit::grpc::{page_size, timestamp};
use mindmesh_kit::ids::{TenantId, UserId};
use mindmesh_proto::mindmesh::permissions::v1 as pb;
use tonic::{Request, Response, Status};

use crate::accounts::{Accounts, NewUser, Tenant, User, UserPatch};

/// `AccountService`.
#[derive(Clone)]
pub struct AccountApi {
    accounts: Accounts,
}

impl AccountApi {
    /// The API over `accounts`.
    pub fn new(accounts: Accounts) -> Self {
        AccountApi { accounts }
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

/// `PermissionsService`: not built yet; every RPC answers UNIMPLEMENTED.
#[derive(Clone, Copy, Debug, Default)]
pub struct PermissionsApi;

#[tonic::async_trait]
impl pb::permissions_service_server::PermissionsService for PermissionsApi {}

/// `StaffAccessService`: not built yet; every RPC answers UNIMPLEMENTED.
#[derive(Clone, Copy, Debug, Default)]
pub struct StaffAccessApi;

#[tonic::async_trait]
impl pb::staff_access_service_server::StaffAccessService for StaffAccessApi {}
