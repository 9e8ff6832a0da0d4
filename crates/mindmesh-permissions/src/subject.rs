//! What the permissions service does for data-subject rights (P12): export every record
//! it holds about a person — their account, the source identities that share their email
//! (decrypted), their group memberships, and staff grants they gave — and rectify their
//! account. It sends nothing to processors, so a restriction changes nothing here.

use chrono::Utc;
use mindmesh_kit::audit::AuditRecord;
use mindmesh_kit::auth::Caller;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::{IntegrationId, TenantId};
use mindmesh_kit::keys::KeyScope;
use mindmesh_kit::subject_api::{self, Rectification, SubjectProvider, SubjectRecord};
use mindmesh_kit::{Error, Result};
use serde_json::json;

use crate::accounts::{Accounts, UserPatch};
use crate::policy::{Policy, principal_aad};
use crate::store::{identities, staff_grants};
use std::sync::Arc;

/// The permissions service's [`SubjectProvider`].
pub struct PermissionsSubject {
    ctx: ServiceContext,
    accounts: Accounts,
    policy: Arc<Policy>,
}

impl PermissionsSubject {
    /// A provider over the service's state.
    pub fn new(ctx: ServiceContext, accounts: Accounts, policy: Arc<Policy>) -> Self {
        PermissionsSubject {
            ctx,
            accounts,
            policy,
        }
    }
}

#[async_trait::async_trait]
impl SubjectProvider for PermissionsSubject {
    async fn export(
        &self,
        caller: &Caller,
        tenant: TenantId,
        email: &str,
        request_id: &str,
    ) -> Result<Vec<SubjectRecord>> {
        let mut records = Vec::new();
        let account = self.accounts.find_by_email(tenant, email).await?;
        if let Some(user) = &account {
            records.push(SubjectRecord {
                kind: "account".into(),
                id: user.id.to_string(),
                json: json!({
                    "id": user.id.to_string(),
                    "first_name": user.first_name,
                    "last_name": user.last_name,
                    "email": user.email,
                    "picture_url": user.picture_url,
                    "created_at": user.created_at.to_rfc3339(),
                    "updated_at": user.updated_at.to_rfc3339(),
                }),
                updated_at: user.updated_at,
            });
        }
        let index = self.policy.blind().keys(tenant).await?.email(email);
        let principals = identities::with_email(&self.ctx.db, tenant, index).await?;
        let now = Utc::now();
        for principal in principals {
            let integration = principal.integration_id;
            let kind = principal.kind;
            let external = principal.external_id;
            let integration_id: IntegrationId = integration
                .parse()
                .map_err(|_| Error::Internal("malformed integration id in store".into()))?;
            let key = self
                .ctx
                .keystore
                .data_key(tenant, &KeyScope::Integration(integration.clone()))
                .await?
                .1;
            let open = |column: &str, sealed: Option<Vec<u8>>| -> Result<Option<String>> {
                sealed
                    .map(|ct| {
                        key.open(
                            &principal_aad(tenant, integration_id, &kind, &external, column),
                            &ct,
                        )
                        .map(|p| String::from_utf8_lossy(&p).into_owned())
                    })
                    .transpose()
            };
            let email_plain = open("email", principal.email_ct)?;
            let name = open("name", Some(principal.name_ct))?;
            // The principal is stored under a pseudonym of the source's id (see `blind`).
            let source_id =
                open("external_id", principal.external_id_ct)?.unwrap_or_else(|| external.clone());
            records.push(SubjectRecord {
                kind: "principal".into(),
                id: format!("{integration}/{kind}/{external}"),
                json: json!({
                    "integration_id": integration,
                    "kind": kind,
                    "external_id": source_id,
                    "email": email_plain,
                    "name": name,
                }),
                updated_at: now,
            });
            let group_ids = identities::groups_of(
                &self.ctx.db,
                tenant,
                &integration,
                &external,
                kind == "group",
            )
            .await?;
            let names = self
                .policy
                .source_ids(tenant, integration_id, &group_ids)
                .await?;
            for group in group_ids {
                let group_source_id = names.get(&group).cloned().unwrap_or_else(|| group.clone());
                records.push(SubjectRecord {
                    kind: "membership".into(),
                    id: format!("{integration}/{group}/{external}"),
                    json: json!({ "integration_id": integration, "group_external_id": group_source_id, "member_external_id": source_id }),
                    updated_at: now,
                });
            }
        }
        if let Some(user) = &account {
            let grants =
                staff_grants::granted_by(&self.ctx.db, tenant, &user.id.to_string()).await?;
            for (grant, sealed) in grants {
                let id = grant.id.to_string();
                let (granted_at, expires_at) = (grant.granted_at, grant.expires_at);
                let reason = match sealed {
                    Some(sealed) => {
                        crate::records::open(
                            &self.ctx,
                            tenant,
                            ("staff_grants", "reason", &id),
                            &sealed,
                        )
                        .await?
                    }
                    None => grant.reason,
                };
                records.push(SubjectRecord {
                    kind: "staff_access_grant".into(),
                    id: id.clone(),
                    json: json!({
                        "id": id,
                        "role": grant.role.as_str(),
                        "reason": reason,
                        "granted_at": granted_at.to_rfc3339(),
                        "expires_at": expires_at.to_rfc3339(),
                    }),
                    updated_at: granted_at,
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

    async fn rectify(
        &self,
        caller: &Caller,
        tenant: TenantId,
        email: &str,
        request_id: &str,
        changes: Rectification,
    ) -> Result<u64> {
        let Some(user) = self.accounts.find_by_email(tenant, email).await? else {
            return Ok(0);
        };
        let patch = UserPatch {
            first_name: changes.first_name,
            last_name: changes.last_name,
            email: changes.email,
            picture_url: changes.picture_url,
        };
        let before = user.clone();
        let after = self.accounts.rectify_user(caller, user.id, patch).await?;
        self.ctx
            .audit
            .record(&AuditRecord::by(
                caller,
                "subject.rectify",
                Some(tenant),
                request_id,
            ))
            .await?;
        Ok(u64::from(after != before))
    }

    async fn restrict(
        &self,
        caller: &Caller,
        tenant: TenantId,
        _email: &str,
        request_id: &str,
        restricted: bool,
    ) -> Result<u64> {
        subject_api::nothing_to_change(
            &self.ctx.audit,
            caller,
            subject_api::restrict_action(restricted),
            tenant,
            request_id,
            "permissions sends nothing to processors or analytics",
        )
        .await
    }
}
