//! Which tenants a service may write for (P08): one that exists, and is not being
//! deleted. The permissions service owns tenants; every other service asks it, and
//! remembers a yes for [`FRESH_FOR`]. A tenant's deletion is also recorded in the
//! service's own database (`erased_tenants`) *before* the service erases anything of
//! it, and that record is read on every write, uncached — so a write that arrives after
//! the erasure began (from a sync that started before the deletion, or on a replica
//! that still remembers the tenant) is refused instead of outliving the cascade.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mindmesh_proto::mindmesh::permissions::v1 as pb;
use pb::account_service_client::AccountServiceClient;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::context::ServiceContext;
use crate::error::{Error, Result};
use crate::grpc::peer_error;
use crate::ids::{CascadeId, TenantId, UserId};
use crate::peers::PeerChannel;

/// How long a tenant the owner confirmed is taken to exist without asking again.
pub const FRESH_FOR: Duration = Duration::from_secs(30);

/// Who says whether a tenant exists.
#[async_trait::async_trait]
pub trait TenantAuthority: Send + Sync + 'static {
    /// True when `tenant` exists.
    async fn exists(&self, tenant: TenantId) -> Result<bool>;
}

/// The permissions service, asked with this service's token for the tenant.
pub struct AskPermissions {
    ctx: ServiceContext,
    accounts: AccountServiceClient<PeerChannel>,
}

impl AskPermissions {
    /// The permissions service at `peers.permissions_url`, asked by the service of `ctx`.
    pub fn new(ctx: ServiceContext) -> Result<Self> {
        let channel = ctx.peer(
            crate::Service::Permissions,
            "peers.permissions_url",
            ctx.config.peers.permissions_url.as_deref(),
        )?;
        Ok(AskPermissions {
            ctx,
            accounts: AccountServiceClient::new(channel),
        })
    }
}

#[async_trait::async_trait]
impl TenantAuthority for AskPermissions {
    async fn exists(&self, tenant: TenantId) -> Result<bool> {
        let request = self.ctx.service_request(
            tenant,
            pb::GetTenantRequest {
                tenant_id: tenant.to_string(),
            },
        )?;
        match self.accounts.clone().get_tenant(request).await {
            Ok(_) => Ok(true),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(false),
            Err(status) => Err(peer_error("permissions", &status)),
        }
    }
}

impl AskPermissions {
    /// The email of account `user` of `tenant`, if the account exists.
    pub async fn user_email(&self, tenant: TenantId, user: UserId) -> Result<Option<String>> {
        let request = self.ctx.service_request(
            tenant,
            pb::GetUserRequest {
                user_id: user.to_string(),
            },
        )?;
        match self.accounts.clone().get_user(request).await {
            Ok(response) => Ok(response.into_inner().user.map(|u| u.email)),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(peer_error("permissions", &status)),
        }
    }

    /// Every account of `tenant`, paged through (breach notices to a whole tenant).
    pub async fn user_ids(&self, tenant: TenantId) -> Result<Vec<UserId>> {
        let mut ids = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = self.ctx.service_request(
                tenant,
                pb::ListUsersRequest {
                    page_size: 1000,
                    page_token,
                },
            )?;
            let response = self
                .accounts
                .clone()
                .list_users(request)
                .await
                .map_err(|s| peer_error("permissions", &s))?
                .into_inner();
            for user in &response.users {
                ids.push(user.id.parse().map_err(|_| {
                    Error::Internal("permissions returned a malformed user id".into())
                })?);
            }
            if response.next_page_token.is_empty() {
                return Ok(ids);
            }
            page_token = response.next_page_token;
        }
    }

    /// The account of `tenant` with `email`, if any (see [`user_by_email`]).
    pub async fn user_by_email(&self, tenant: TenantId, email: &str) -> Result<Option<UserId>> {
        user_by_email(&self.ctx, &self.accounts, tenant, email).await
    }
}

/// The account of `tenant` with `email` (compared case-insensitively), if any, asked of
/// the permissions service through `accounts` with `ctx`'s service token. Pages through
/// the tenant's accounts: only data-subject requests ask this.
pub async fn user_by_email(
    ctx: &ServiceContext,
    accounts: &AccountServiceClient<PeerChannel>,
    tenant: TenantId,
    email: &str,
) -> Result<Option<UserId>> {
    let wanted = email.trim().to_lowercase();
    let mut page_token = String::new();
    loop {
        let request = ctx.service_request(
            tenant,
            pb::ListUsersRequest {
                page_size: 1000,
                page_token,
            },
        )?;
        let response = accounts
            .clone()
            .list_users(request)
            .await
            .map_err(|s| peer_error("permissions", &s))?
            .into_inner();
        if let Some(user) = response
            .users
            .iter()
            .find(|u| u.email.trim().to_lowercase() == wanted)
        {
            return user
                .id
                .parse()
                .map(Some)
                .map_err(|_| Error::Internal("permissions returned a malformed user id".into()));
        }
        if response.next_page_token.is_empty() {
            return Ok(None);
        }
        page_token = response.next_page_token;
    }
}

/// The tenants one service may write for.
#[derive(Clone)]
pub struct Tenants {
    db: DatabaseConnection,
    authority: Arc<dyn TenantAuthority>,
    /// Tenants the authority confirmed, with when.
    confirmed: Arc<Mutex<HashMap<TenantId, Instant>>>,
}

impl Tenants {
    /// The tenants of the service whose database is `db`, as `authority` knows them.
    pub fn new(db: DatabaseConnection, authority: Arc<dyn TenantAuthority>) -> Self {
        Tenants {
            db,
            authority,
            confirmed: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Fails unless `tenant` exists and is not being deleted: NOT_FOUND either way (the
    /// tenant comes from the caller's own token, so nothing leaks).
    pub async fn require_live(&self, tenant: TenantId) -> Result<()> {
        if erased(&self.db, tenant).await? {
            return Err(Error::NotFound("tenant"));
        }
        let fresh = self
            .confirmed
            .lock()
            .ok()
            .and_then(|c| c.get(&tenant).copied())
            .is_some_and(|at| at.elapsed() < FRESH_FOR);
        if fresh {
            return Ok(());
        }
        if !self.authority.exists(tenant).await? {
            self.forget(tenant);
            return Err(Error::NotFound("tenant"));
        }
        if let Ok(mut confirmed) = self.confirmed.lock() {
            if confirmed.len() >= 100_000 {
                confirmed.retain(|_, at| at.elapsed() < FRESH_FOR);
            }
            confirmed.insert(tenant, Instant::now());
        }
        Ok(())
    }

    /// Whether `tenant` is recorded as erased (or being erased) in this service.
    pub async fn is_erased(&self, tenant: TenantId) -> Result<bool> {
        erased(&self.db, tenant).await
    }

    /// Forgets that `tenant` was confirmed (its deletion was seen).
    pub fn forget(&self, tenant: TenantId) {
        if let Ok(mut confirmed) = self.confirmed.lock() {
            confirmed.remove(&tenant);
        }
    }

    /// Records, before anything of it is erased, that `tenant` is being deleted: from
    /// here no write for it is taken. Idempotent.
    pub async fn mark_erased<C: ConnectionTrait>(
        &self,
        conn: &C,
        tenant: TenantId,
        cascade: CascadeId,
    ) -> Result<()> {
        self.forget(tenant);
        Self::record_erased(conn, tenant, cascade).await
    }

    /// [`Tenants::mark_erased`] inside a transaction of the caller's (which forgets the
    /// tenant in every `Tenants` of the service by the record itself).
    pub async fn record_erased<C: ConnectionTrait>(
        conn: &C,
        tenant: TenantId,
        cascade: CascadeId,
    ) -> Result<()> {
        conn.execute(
            &Query::insert()
                .into_table("erased_tenants")
                .columns(["tenant_id", "cascade_id", "erased_at"])
                .values_panic([
                    tenant.to_string().into(),
                    cascade.to_string().into(),
                    crate::db::now().into(),
                ])
                .on_conflict(OnConflict::column("tenant_id").do_nothing().to_owned())
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}

async fn erased(db: &DatabaseConnection, tenant: TenantId) -> Result<bool> {
    Ok(db
        .query_one(
            &Query::select()
                .column("tenant_id")
                .from("erased_tenants")
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .to_owned(),
        )
        .await?
        .is_some())
}
