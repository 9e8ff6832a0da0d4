//! Tenants and their users (P04): validation, authorization, sealing of personal fields,
//! and the events and audit entries every change writes in its own transaction.
//!
//! A user's first name, last name, email and picture URL are sealed with AES-256-GCM
//! under the person's own data key, bound to tenant, table, column and row (P01). The
//! email is also kept as a keyed HMAC of its lowercase form: the tenant-scoped blind
//! index that finds a person by email (P05) and keeps emails unique. It reveals only
//! whether two users of one tenant share an email, which uniqueness forbids anyway.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use mindmesh_kit::audit::AuditRecord;
use mindmesh_kit::auth::{Caller, Role};
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::crypto::SecretKey;
use mindmesh_kit::holds::{self, HeldScope};
use mindmesh_kit::ids::{CascadeId, KeyId, TenantId, UserId};
use mindmesh_kit::keys::{KeyScope, field_aad};
use mindmesh_kit::tenants::{TenantAuthority, Tenants};
use mindmesh_kit::{Service, inbox, outbox};
use sea_orm::{DatabaseConnection, SqlErr, TransactionTrait};

use crate::error::{Error, Result};
use crate::events;
use crate::policy::Policy;
use crate::records;
use crate::staff::{StaffAccess, StaffView};
use crate::store::{revision, tenant, user};

/// Deletes the account `id` of `tenant` in `txn`, with what is kept only because it
/// exists: the grants naming it and the days it was active. Returns the accounts
/// deleted (0 or 1).
async fn forget_account(
    txn: &sea_orm::DatabaseTransaction,
    tenant: TenantId,
    id: UserId,
) -> Result<u64> {
    crate::store::grants::delete_naming_account(txn, tenant, &id.to_string()).await?;
    mindmesh_kit::activity::forget(txn, tenant, Some(id)).await?;
    user::delete(txn, tenant, id).await
}

/// Longest tenant name, in characters.
pub const MAX_TENANT_NAME: usize = 200;
/// Longest first or last name, in characters.
pub const MAX_NAME: usize = 100;
/// Longest email address (RFC 5321 path limit).
pub const MAX_EMAIL: usize = 254;
/// Longest picture URL.
pub const MAX_PICTURE_URL: usize = 2048;

/// A customer organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    /// Id.
    pub id: TenantId,
    /// Display name.
    pub name: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A person's account: these fields and nothing more (P04).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Tenant.
    pub tenant: TenantId,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Email.
    pub email: String,
    /// Picture URL, empty when none.
    pub picture_url: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Fields of a new user.
#[derive(Clone, Debug, Default)]
pub struct NewUser {
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Email.
    pub email: String,
    /// Picture URL (may be empty).
    pub picture_url: String,
}

/// A partial change of a user; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct UserPatch {
    /// New first name.
    pub first_name: Option<String>,
    /// New last name.
    pub last_name: Option<String>,
    /// New email.
    pub email: Option<String>,
    /// New picture URL; empty removes it.
    pub picture_url: Option<String>,
}

/// How a tenant erasure comes about.
enum Erasure<'a> {
    /// This service starts the cascade: it publishes the request.
    Starts,
    /// Another service requested it: the event's id, claimed in the inbox.
    Requested(&'a str),
}

/// The accounts part of the permissions service.
#[derive(Clone)]
pub struct Accounts {
    ctx: ServiceContext,
    /// Accounts are part of every check (P05): changes bump the tenant's revision and
    /// drop its index.
    policy: Arc<Policy>,
    /// Staff reach tenant data only through recorded consent (P11).
    staff: StaffAccess,
}

impl Accounts {
    /// Accounts over the service's context, keeping `policy` current.
    pub fn new(ctx: ServiceContext, policy: Arc<Policy>) -> Self {
        Accounts {
            staff: StaffAccess::new(ctx.clone()),
            ctx,
            policy,
        }
    }

    fn db(&self) -> &DatabaseConnection {
        &self.ctx.db
    }

    /// Creates a tenant. Operators only.
    pub async fn create_tenant(&self, caller: &Caller, name: &str) -> Result<Tenant> {
        require(caller, &[Role::Operator])?;
        let name = validate_text("name", name, MAX_TENANT_NAME)?;
        let tenant = Tenant {
            id: TenantId::new(),
            name,
            created_at: mindmesh_kit::db::now(),
        };
        let id = tenant.id.to_string();
        let name_ct =
            records::seal(&self.ctx, tenant.id, ("tenants", "name", &id), &tenant.name).await?;
        let txn = self.db().begin().await?;
        tenant::insert(&txn, tenant.id, name_ct, tenant.created_at).await?;
        self.ctx
            .audit
            .append(
                &txn,
                &AuditRecord::by(
                    caller,
                    "tenant.create",
                    Some(tenant.id),
                    tenant.id.to_string(),
                ),
            )
            .await?;
        txn.commit().await?;
        tracing::info!(tenant_id = %tenant.id, "tenant created");
        Ok(tenant)
    }

    /// Reads a tenant: operators any, everyone else only their own (others: NOT_FOUND).
    pub async fn get_tenant(&self, caller: &Caller, id: Option<TenantId>) -> Result<Tenant> {
        let id = match id {
            Some(id) => id,
            None => caller.tenant()?,
        };
        if !caller.has(Role::Operator) && caller.tenant != Some(id) {
            return Err(Error::NotFound("tenant"));
        }
        if !caller.has(Role::Operator) {
            self.reader(caller, "get_tenant", &id.to_string()).await?;
        }
        let row = tenant::get(self.db(), id)
            .await?
            .ok_or(Error::NotFound("tenant"))?;
        let name = match &row.name_ct {
            Some(sealed) => {
                records::open(&self.ctx, id, ("tenants", "name", &row.id), sealed).await?
            }
            None => row.name, // written before sealing, and not sealed yet
        };
        Ok(Tenant {
            id,
            name,
            created_at: row.created_at,
        })
    }

    /// Deletes a tenant: shreds its keys (so every copy of its data is unreadable at once),
    /// deletes its rows, and starts the cascade through every service. Operators only.
    pub async fn delete_tenant(&self, caller: &Caller, id: TenantId) -> Result<CascadeId> {
        require(caller, &[Role::Operator])?;
        if !tenant::exists(self.db(), id).await? {
            return Err(Error::NotFound("tenant"));
        }
        holds::require_not_kept(self.db(), id, &HeldScope::Tenant).await?;
        let cascade = CascadeId::new();
        let audit = AuditRecord::by(caller, "tenant.delete", Some(id), id.to_string());
        self.erase_tenant(id, cascade, audit, Erasure::Starts)
            .await?;
        tracing::info!(tenant_id = %id, cascade_id = %cascade, "tenant deleted, cascade started");
        Ok(cascade)
    }

    /// Carries out a tenant deletion another service requested (retention expiring an
    /// inactive tenant) as cascade `cascade`, the event `event_id`: the same erasure as
    /// [`Accounts::delete_tenant`], committed with the inbox entry. A tenant already gone
    /// is attested with nothing deleted.
    pub async fn erase_requested_tenant(
        &self,
        id: TenantId,
        cascade: CascadeId,
        event_id: &str,
    ) -> Result<()> {
        // Kept under a legal hold: nothing is erased, the part is retained until the
        // release asks again.
        if let Some(hold) = holds::keeping(self.db(), id, &HeldScope::Tenant).await? {
            let txn = self.db().begin().await?;
            if inbox::claim(&txn, crate::events::CONSUMER, event_id).await? {
                self.ctx.attest_retained(&txn, id, cascade, hold).await?;
            }
            txn.commit().await?;
            self.ctx.relay.wake();
            return Ok(());
        }
        let audit = AuditRecord::by_service(
            Service::Permissions,
            "tenant.delete",
            Some(id),
            id.to_string(),
        );
        self.erase_tenant(id, cascade, audit, Erasure::Requested(event_id))
            .await
    }

    /// Shreds the tenant's keys, deletes its rows, records it erased, audits `audit` and
    /// attests, in one transaction with what `how` adds.
    async fn erase_tenant(
        &self,
        id: TenantId,
        cascade: CascadeId,
        audit: AuditRecord,
        how: Erasure<'_>,
    ) -> Result<()> {
        let destroyed = self.ctx.keystore.shred_tenant(id).await?;
        let txn = self.db().begin().await?;
        if let Erasure::Requested(event_id) = how
            && !inbox::claim(&txn, crate::events::CONSUMER, event_id).await?
        {
            return Ok(());
        }
        let accounts_removed = user::delete_tenant(&txn, id).await?;
        mindmesh_kit::activity::forget(&txn, id, None).await?;
        let graph = self.policy.delete_tenant(&txn, id).await?;
        // Every replica refuses the tenant's writes from the commit on (P08).
        Tenants::record_erased(&txn, id, cascade).await?;
        tenant::delete(&txn, id).await?;
        tracing::info!(tenant_id = %id, principals = graph.principals, grants = graph.grants, "tenant permission data deleted");
        self.ctx
            .audit
            .append(
                &txn,
                &audit.with_details(format!(
                    "cascade {cascade}; {} data keys shredded",
                    destroyed.len()
                )),
            )
            .await?;
        if let Erasure::Starts = how {
            let request = events::account_deletion_requested(&self.ctx, id, cascade, None)?;
            outbox::enqueue(&txn, &request).await?;
        }
        self.ctx
            .attest(
                &txn,
                Some(id),
                cascade,
                HashMap::from([
                    ("principals".to_owned(), graph.principals),
                    ("memberships".to_owned(), graph.memberships),
                    ("grants".to_owned(), graph.grants),
                    ("accounts".to_owned(), accounts_removed),
                ]),
                &destroyed,
            )
            .await?;
        txn.commit().await?;
        self.ctx
            .settle_erasure(
                &["users", "principals", "memberships", "grants"],
                accounts_removed + graph.principals + graph.memberships + graph.grants,
            )
            .await?;
        self.policy.invalidate(id);
        self.ctx.relay.wake();
        Ok(())
    }

    /// Creates a user in the caller's tenant. Admins (and services) only.
    pub async fn create_user(&self, caller: &Caller, new: NewUser) -> Result<User> {
        require(caller, &[Role::Admin, Role::Service])?;
        let tenant = caller.tenant()?;
        let fields = Fields::validate(new)?;
        if !tenant::exists(self.db(), tenant).await? {
            return Err(Error::NotFound("tenant"));
        }
        let blind = self.policy.blind().keys(tenant).await?;
        let index = blind.email(&fields.email);
        if self.find_by_index(tenant, &index).await?.is_some() {
            return Err(Error::AlreadyExists(
                "a user with this email exists in the tenant".into(),
            ));
        }
        let id = UserId::new();
        let scope = KeyScope::Person(id.to_string());
        let (key_id, key) = self.ctx.keystore.data_key(tenant, &scope).await?;
        let now = mindmesh_kit::db::now();
        let sealed = fields.seal(&key, tenant, id)?;
        let txn = self.db().begin().await?;
        let inserted = user::insert(
            &txn,
            user::Model {
                id: id.to_string(),
                tenant_id: tenant.to_string(),
                key_id: key_id.to_string(),
                email_index: index,
                email_domain_index: blind.domain(&fields.email),
                first_name_ct: sealed.first_name,
                last_name_ct: sealed.last_name,
                email_ct: sealed.email,
                picture_url_ct: sealed.picture_url,
                created_at: now,
                updated_at: now,
            },
        )
        .await;
        if let Err(e) = inserted {
            drop(txn);
            // Nothing refers to the key yet; do not leave it behind.
            self.ctx.keystore.shred(tenant, &scope).await?;
            return Err(match e.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => {
                    Error::AlreadyExists("a user with this email exists in the tenant".into())
                }
                _ => e.into(),
            });
        }
        self.ctx
            .audit
            .append(
                &txn,
                &AuditRecord::by(caller, "user.create", Some(tenant), id.to_string()),
            )
            .await?;
        outbox::enqueue(&txn, &events::account_created(self.ctx.service, tenant, id)).await?;
        let revision = revision::bump(&txn, tenant).await?;
        txn.commit().await?;
        self.policy.accounts_changed(tenant, revision).await?;
        self.ctx.relay.wake();
        tracing::info!(tenant_id = %tenant, user_id = %id, "user created");
        Ok(fields.into_user(id, tenant, now, now))
    }

    /// Reads a user of the caller's tenant.
    pub async fn get_user(&self, caller: &Caller, id: UserId) -> Result<User> {
        let (tenant, view) = self.reader(caller, "get_user", &id.to_string()).await?;
        let row = self.load(tenant, id).await?;
        let user = self.open(tenant, row).await?;
        self.shape(tenant, view, user).await
    }

    /// Changes a user, as asked through `UpdateUser`: the tenant's admin may change
    /// every field; the user themself (member role) their names and picture, not their
    /// email — it links the account to source identities (P05), so an address nobody
    /// proved must never do that. Nobody else may, whatever their token's `sub`.
    pub async fn update_user(&self, caller: &Caller, id: UserId, patch: UserPatch) -> Result<User> {
        let editor = if caller.has(Role::Admin) {
            Editor::Admin
        } else if caller.has(Role::Member) && caller.subject == id.to_string() {
            Editor::Themself
        } else {
            return Err(Error::PermissionDenied(
                "only the tenant's admin or the user themself (member role) may change a user"
                    .into(),
            ));
        };
        self.change_user(caller, editor, id, patch).await
    }

    /// Corrects a user for a data-subject request (P12): a tenant admin may correct any
    /// field; dsar (service role) carrying out the person's request may not re-point
    /// the email, which nobody has proven yet.
    pub async fn rectify_user(
        &self,
        caller: &Caller,
        id: UserId,
        patch: UserPatch,
    ) -> Result<User> {
        let editor = if caller.has(Role::Admin) {
            Editor::Admin
        } else if caller.has(Role::Service) {
            Editor::SubjectRequest
        } else {
            return Err(Error::PermissionDenied(
                "rectification is carried out by dsar or the tenant's admin".into(),
            ));
        };
        self.change_user(caller, editor, id, patch).await
    }

    async fn change_user(
        &self,
        caller: &Caller,
        editor: Editor,
        id: UserId,
        patch: UserPatch,
    ) -> Result<User> {
        let tenant = caller.tenant()?;
        let row = self.load(tenant, id).await?;
        let current = self.open(tenant, row.clone()).await?;
        let mut changed = Vec::new();
        let next = Fields::validate(NewUser {
            first_name: patch
                .first_name
                .inspect(|_| changed.push("first_name"))
                .unwrap_or(current.first_name.clone()),
            last_name: patch
                .last_name
                .inspect(|_| changed.push("last_name"))
                .unwrap_or(current.last_name.clone()),
            email: patch
                .email
                .inspect(|_| changed.push("email"))
                .unwrap_or(current.email.clone()),
            picture_url: patch
                .picture_url
                .inspect(|_| changed.push("picture_url"))
                .unwrap_or(current.picture_url.clone()),
        })?;
        if changed.is_empty() {
            return Ok(current);
        }
        let key_id: KeyId = parse_key_id(&row.key_id)?;
        let key = self.ctx.keystore.key(tenant, key_id).await?;
        let blind = self.policy.blind().keys(tenant).await?;
        let index = blind.email(&next.email);
        // The same address in another case links the same identities; another address
        // is a claim to be someone else at the source.
        if index != row.email_index {
            editor.may_change_email()?;
        }
        if index != row.email_index
            && let Some(other) = self.find_by_index(tenant, &index).await?
            && other.id != row.id
        {
            return Err(Error::AlreadyExists(
                "a user with this email exists in the tenant".into(),
            ));
        }
        let sealed = next.seal(&key, tenant, id)?;
        let now = mindmesh_kit::db::now();
        let txn = self.db().begin().await?;
        let changed_row = user::Model {
            email_index: index,
            email_domain_index: blind.domain(&next.email),
            first_name_ct: sealed.first_name,
            last_name_ct: sealed.last_name,
            email_ct: sealed.email,
            picture_url_ct: sealed.picture_url,
            updated_at: now,
            ..row
        };
        user::update(&txn, changed_row)
            .await
            .map_err(|e| match e.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => {
                    Error::AlreadyExists("a user with this email exists in the tenant".into())
                }
                _ => e.into(),
            })?;
        self.ctx
            .audit
            .append(
                &txn,
                &AuditRecord::by(caller, "user.update", Some(tenant), id.to_string())
                    .with_details(format!("changed: {}", changed.join(","))),
            )
            .await?;
        let revision = revision::bump(&txn, tenant).await?;
        txn.commit().await?;
        self.policy.accounts_changed(tenant, revision).await?;
        Ok(next.into_user(id, tenant, current.created_at, now))
    }

    /// Deletes a user: shreds their data key first, deletes the row, and starts the
    /// cascade through every service. Admins only.
    pub async fn delete_user(&self, caller: &Caller, id: UserId) -> Result<CascadeId> {
        require(caller, &[Role::Admin, Role::Service])?;
        let tenant = caller.tenant()?;
        let row = self.load(tenant, id).await?;
        holds::require_not_kept(self.db(), tenant, &HeldScope::User(id)).await?;
        // The services that hold data about the person find it by email (P05).
        let email = self.open(tenant, row).await?.email;
        let destroyed = self
            .ctx
            .keystore
            .shred(tenant, &KeyScope::Person(id.to_string()))
            .await?;
        let cascade = CascadeId::new();
        let txn = self.db().begin().await?;
        forget_account(&txn, tenant, id).await?;
        self.ctx
            .audit
            .append(
                &txn,
                &AuditRecord::by(caller, "user.delete", Some(tenant), id.to_string()).with_details(
                    format!("cascade {cascade}; {} data keys shredded", destroyed.len()),
                ),
            )
            .await?;
        outbox::enqueue(
            &txn,
            &events::account_deletion_requested(&self.ctx, tenant, cascade, Some((id, email)))?,
        )
        .await?;
        self.ctx
            .attest(
                &txn,
                Some(tenant),
                cascade,
                HashMap::from([("accounts".to_owned(), 1)]),
                &destroyed,
            )
            .await?;
        let revision = revision::bump(&txn, tenant).await?;
        txn.commit().await?;
        self.ctx.settle_erasure(&["users"], 1).await?;
        self.policy.accounts_changed(tenant, revision).await?;
        self.ctx.relay.wake();
        tracing::info!(tenant_id = %tenant, user_id = %id, cascade_id = %cascade, "user deleted, cascade started");
        Ok(cascade)
    }

    /// Carries out a user deletion another service requested as cascade `cascade`, the
    /// event `event_id` — retention asking again after a restore brought the account
    /// back: the person's key shredded first, then the row, committed with the inbox
    /// entry and the attestation (nothing there: attested with nothing deleted).
    pub async fn erase_requested_user(
        &self,
        tenant: TenantId,
        id: UserId,
        cascade: CascadeId,
        event_id: &str,
    ) -> Result<()> {
        let destroyed = self
            .ctx
            .keystore
            .shred(tenant, &KeyScope::Person(id.to_string()))
            .await?;
        let txn = self.db().begin().await?;
        if !inbox::claim(&txn, crate::events::CONSUMER, event_id).await? {
            return Ok(());
        }
        let removed = forget_account(&txn, tenant, id).await?;
        if removed > 0 {
            self.ctx
                .audit
                .append(
                    &txn,
                    &AuditRecord::by_service(
                        Service::Permissions,
                        "user.delete",
                        Some(tenant),
                        id.to_string(),
                    )
                    .with_details(format!(
                        "cascade {cascade} asked again; account erased again"
                    )),
                )
                .await?;
        }
        self.ctx
            .attest(
                &txn,
                Some(tenant),
                cascade,
                HashMap::from([("accounts".to_owned(), removed)]),
                &destroyed,
            )
            .await?;
        let revision = revision::bump(&txn, tenant).await?;
        txn.commit().await?;
        self.ctx.settle_erasure(&["users"], removed).await?;
        self.policy.accounts_changed(tenant, revision).await?;
        self.ctx.relay.wake();
        Ok(())
    }

    /// Carries out a data subject's erasure (`subject.erasure_requested`, cascade
    /// `cascade`, the event `event_id`): the principals with `email` from every
    /// integration, the memberships naming them, and the person's account — `user`,
    /// the account the request found, else the one with that email now — key shredded
    /// first; committed with the inbox entry and the attestation.
    pub async fn erase_subject(
        &self,
        tenant: TenantId,
        user: Option<UserId>,
        email: &str,
        cascade: CascadeId,
        event_id: &str,
    ) -> Result<()> {
        let user = match user {
            Some(id) => Some(id),
            None => self.find_by_email(tenant, email).await?.map(|u| u.id),
        };
        let destroyed = match user {
            Some(id) => {
                self.ctx
                    .keystore
                    .shred(tenant, &KeyScope::Person(id.to_string()))
                    .await?
            }
            None => Vec::new(),
        };
        let txn = self.db().begin().await?;
        if !inbox::claim(&txn, crate::events::CONSUMER, event_id).await? {
            return Ok(());
        }
        let graph = self.policy.delete_subject(&txn, tenant, email).await?;
        let accounts = match user {
            Some(id) => forget_account(&txn, tenant, id).await?,
            None => 0,
        };
        self.ctx
            .audit
            .append(
                &txn,
                &AuditRecord::by_service(
                    Service::Permissions,
                    "subject.erase",
                    Some(tenant),
                    cascade.to_string(),
                )
                .with_details(format!(
                    "{accounts} accounts, {} principals, {} memberships; {} data keys shredded",
                    graph.principals,
                    graph.memberships,
                    destroyed.len()
                )),
            )
            .await?;
        self.ctx
            .attest(
                &txn,
                Some(tenant),
                cascade,
                HashMap::from([
                    ("principals".to_owned(), graph.principals),
                    ("memberships".to_owned(), graph.memberships),
                    ("grants".to_owned(), graph.grants),
                    ("accounts".to_owned(), accounts),
                ]),
                &destroyed,
            )
            .await?;
        let revision = revision::bump(&txn, tenant).await?;
        txn.commit().await?;
        self.ctx
            .settle_erasure(
                &["users", "principals", "memberships", "grants"],
                accounts + graph.principals + graph.memberships + graph.grants,
            )
            .await?;
        self.policy.invalidate(tenant);
        self.policy.accounts_changed(tenant, revision).await?;
        self.ctx.relay.wake();
        tracing::info!(tenant_id = %tenant, cascade_id = %cascade, accounts, principals = graph.principals, "data subject's permission data erased");
        Ok(())
    }

    /// Users of the caller's tenant after `after` (exclusive), oldest first.
    pub async fn list_users(
        &self,
        caller: &Caller,
        after: Option<UserId>,
        limit: u64,
    ) -> Result<Vec<User>> {
        if !caller.has_any(&[Role::Admin, Role::Service]) && caller.has(Role::Member) {
            return Err(Error::PermissionDenied(
                "listing users needs the admin role".into(),
            ));
        }
        let (tenant, view) = self.reader(caller, "list_users", "").await?;
        let rows = user::page(self.db(), tenant, after, limit).await?;
        let mut users = Vec::with_capacity(rows.len());
        for row in rows {
            let user = self.open(tenant, row).await?;
            users.push(self.shape(tenant, view, user).await?);
        }
        Ok(users)
    }

    /// The tenant `caller` may read accounts of, and how much of them: tenant members
    /// fully; staff only under an active consent grant (P11), each access audited.
    async fn reader(
        &self,
        caller: &Caller,
        action: &str,
        subject: &str,
    ) -> Result<(TenantId, StaffView)> {
        if caller.has_any(&[Role::Admin, Role::Member, Role::Service]) {
            return Ok((caller.tenant()?, StaffView::Full));
        }
        if caller.roles.iter().any(|r| r.is_staff()) {
            let tenant = caller.tenant()?;
            let view = self.staff.admit(caller, tenant, action, subject).await?;
            return Ok((tenant, view));
        }
        Err(Error::PermissionDenied(
            "this call needs a role in the tenant".into(),
        ))
    }

    /// What a reader with `view` receives of `user`: analysts get a keyed pseudonym in
    /// place of the id and nothing personal.
    async fn shape(&self, tenant: TenantId, view: StaffView, user: User) -> Result<User> {
        if view != StaffView::Pseudonymized {
            return Ok(user);
        }
        let key = self
            .ctx
            .keystore
            .index_key(tenant)
            .await?
            .derive("analyst-pseudonyms")?;
        Ok(User {
            id: UserId::from_uuid(mindmesh_kit::crypto::pseudonym_uuid(
                &key.mac(user.id.to_string().as_bytes()),
            )),
            tenant,
            first_name: String::new(),
            last_name: String::new(),
            email: String::new(),
            picture_url: String::new(),
            created_at: user.created_at,
            updated_at: user.updated_at,
        })
    }

    async fn load(&self, tenant: TenantId, id: UserId) -> Result<user::Model> {
        user::get(self.db(), tenant, id)
            .await?
            .ok_or(Error::NotFound("user"))
    }

    /// The account of `tenant` with `email` (case-insensitive), if any.
    pub async fn find_by_email(&self, tenant: TenantId, email: &str) -> Result<Option<User>> {
        let index = self.policy.blind().keys(tenant).await?.email(email);
        match self.find_by_index(tenant, &index).await? {
            Some(row) => Ok(Some(self.open(tenant, row).await?)),
            None => Ok(None),
        }
    }

    async fn find_by_index(&self, tenant: TenantId, index: &str) -> Result<Option<user::Model>> {
        user::with_email_index(self.db(), tenant, index).await
    }

    async fn open(&self, tenant: TenantId, row: user::Model) -> Result<User> {
        let id: UserId = row
            .id
            .parse()
            .map_err(|_| mindmesh_kit::Error::Internal("malformed user id in store".into()))?;
        let key = match self
            .ctx
            .keystore
            .key(tenant, parse_key_id(&row.key_id)?)
            .await
        {
            Ok(key) => key,
            // The key was shredded: the person is being deleted and their data is gone.
            Err(mindmesh_kit::Error::NotFound(_)) => return Err(Error::NotFound("user")),
            Err(e) => return Err(e),
        };
        let open = |column: &str, sealed: &[u8]| -> Result<String> {
            let plain = key.open(&field_aad(tenant, "users", column, &row.id), sealed)?;
            String::from_utf8(plain)
                .map_err(|_| mindmesh_kit::Error::Internal("sealed field is not UTF-8".into()))
        };
        Ok(User {
            id,
            tenant,
            first_name: open("first_name", &row.first_name_ct)?,
            last_name: open("last_name", &row.last_name_ct)?,
            email: open("email", &row.email_ct)?,
            picture_url: open("picture_url", &row.picture_url_ct)?,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// Who changes a user, which decides whether the email may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Editor {
    /// The tenant's admin: the authority on who an account is.
    Admin,
    /// The user, as a member.
    Themself,
    /// dsar, carrying out the person's rectification request.
    SubjectRequest,
}

impl Editor {
    fn may_change_email(self) -> Result<()> {
        match self {
            Editor::Admin => Ok(()),
            Editor::Themself => Err(Error::PermissionDenied(
                "email: only the tenant's admin may change an account's email, because it \
                 links the account to the person's identities in connected tools"
                    .into(),
            )),
            Editor::SubjectRequest => Err(mindmesh_kit::Error::FailedPrecondition(
                "email: a new email links the account to source identities and must be \
                 proven by its owner first; the tenant's admin can change it with UpdateUser"
                    .into(),
            )),
        }
    }
}

/// The tenants table as the authority on which tenants exist, for this service's own
/// [`Tenants`] (the other services ask `AccountService.GetTenant`).
pub struct TenantRecords {
    db: DatabaseConnection,
}

impl TenantRecords {
    /// The records in `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        TenantRecords { db }
    }
}

#[async_trait::async_trait]
impl TenantAuthority for TenantRecords {
    async fn exists(&self, tenant: TenantId) -> mindmesh_kit::Result<bool> {
        tenant::exists(&self.db, tenant).await
    }
}

/// Validated user fields.
struct Fields {
    first_name: String,
    last_name: String,
    email: String,
    picture_url: String,
}

struct Sealed {
    first_name: Vec<u8>,
    last_name: Vec<u8>,
    email: Vec<u8>,
    picture_url: Vec<u8>,
}

impl Fields {
    fn validate(new: NewUser) -> Result<Self> {
        Ok(Fields {
            first_name: validate_text("first_name", &new.first_name, MAX_NAME)?,
            last_name: validate_text("last_name", &new.last_name, MAX_NAME)?,
            email: validate_email(&new.email)?,
            picture_url: validate_picture_url(&new.picture_url)?,
        })
    }

    fn seal(&self, key: &SecretKey, tenant: TenantId, id: UserId) -> Result<Sealed> {
        let row = id.to_string();
        let seal = |column: &str, value: &str| {
            key.seal(&field_aad(tenant, "users", column, &row), value.as_bytes())
        };
        Ok(Sealed {
            first_name: seal("first_name", &self.first_name)?,
            last_name: seal("last_name", &self.last_name)?,
            email: seal("email", &self.email)?,
            picture_url: seal("picture_url", &self.picture_url)?,
        })
    }

    fn into_user(
        self,
        id: UserId,
        tenant: TenantId,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> User {
        User {
            id,
            tenant,
            first_name: self.first_name,
            last_name: self.last_name,
            email: self.email,
            picture_url: self.picture_url,
            created_at,
            updated_at,
        }
    }
}

fn parse_key_id(s: &str) -> Result<KeyId> {
    s.parse()
        .map_err(|_| mindmesh_kit::Error::Internal("malformed key id in store".into()))
}

fn require(caller: &Caller, roles: &[Role]) -> Result<()> {
    caller.require_any(roles)
}

/// Trims and checks a required single-line text field: no control, bidirectional
/// override, zero-width or tag characters (see `mindmesh_kit::validate`).
pub fn validate_text(field: &'static str, value: &str, max: usize) -> Result<String> {
    mindmesh_kit::validate::line(field, value, max, true)
}

/// Checks an email address: one `@`, a local part of at most 64 characters without
/// spaces, and a domain of dot-separated labels of letters, digits and hyphens.
pub fn validate_email(value: &str) -> Result<String> {
    let value = value.trim();
    let bad = |reason: &str| Err(Error::invalid("email", reason.to_owned()));
    if value.is_empty() {
        return bad("must not be empty");
    }
    if value.len() > MAX_EMAIL {
        return bad("must be at most 254 characters");
    }
    let Some((local, domain)) = value.rsplit_once('@') else {
        return bad("is not a valid address");
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !(local_ok && domain_ok) {
        return bad("is not a valid address");
    }
    Ok(value.to_owned())
}

/// Checks a picture URL: empty, or an absolute `https` URL of a public host, without
/// credentials or whitespace (clients fetch it by themselves).
pub fn validate_picture_url(value: &str) -> Result<String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(String::new());
    }
    if value.len() > MAX_PICTURE_URL {
        return Err(Error::invalid(
            "picture_url",
            format!("must be at most {MAX_PICTURE_URL} characters"),
        ));
    }
    mindmesh_kit::validate::url(
        "picture_url",
        value,
        mindmesh_kit::validate::UrlRule::PublicHttps,
    )?;
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in [
            "ada@example.com",
            "a.b+tag@sub.example.co.uk",
            "X@EXAMPLE.ORG",
        ] {
            assert!(validate_email(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@ex ample.com",
            "ada@-x.com",
            "a..b@example.com",
        ] {
            let err = validate_email(bad).unwrap_err();
            assert!(err.to_string().contains("email"), "{bad}: {err}");
        }
        assert!(validate_email(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(
            validate_text("first_name", "  Ada ", MAX_NAME).unwrap(),
            "Ada"
        );
        assert!(
            validate_text("first_name", "   ", MAX_NAME)
                .unwrap_err()
                .to_string()
                .contains("first_name")
        );
        assert!(
            validate_text("last_name", &"x".repeat(101), MAX_NAME)
                .unwrap_err()
                .to_string()
                .contains("100")
        );
        assert!(validate_text("last_name", "a\u{0}b", MAX_NAME).is_err());
        assert!(
            validate_text("last_name", &"é".repeat(100), MAX_NAME).is_ok(),
            "characters, not bytes"
        );
    }

    #[test]
    fn picture_urls() {
        assert_eq!(validate_picture_url("").unwrap(), "");
        assert!(validate_picture_url("https://cdn.example.com/a.png").is_ok());
        for bad in [
            "http://cdn.example.com/a.png",
            "javascript:alert(1)",
            "data:image/png;base64,AA",
            "not a url",
            "file:///etc/passwd",
        ] {
            assert!(
                validate_picture_url(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("picture_url"),
                "{bad}"
            );
        }
        assert!(validate_picture_url(&format!("https://e.com/{}", "a".repeat(2048))).is_err());
    }
}
