//! What the permissions service does for data-subject rights (P12): export every record
//! it holds about a person — their account, the source identities that share their email
//! (decrypted), their group memberships, and staff grants they gave — and rectify their
//! account. Restriction of processing is not built yet (UNIMPLEMENTED).

use chrono::Utc;
use mindmesh_kit::audit::AuditRecord;
use mindmesh_kit::auth::Caller;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::{IntegrationId, TenantId};
use mindmesh_kit::keys::KeyScope;
use mindmesh_kit::subject_api::{Rectification, SubjectProvider, SubjectRecord};
use mindmesh_kit::{Error, Result};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use serde_json::json;

use crate::accounts::{Accounts, UserPatch};
use crate::policy::{Policy, principal_aad};
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
        let principals = self
            .ctx
            .db
            .query_all(
                &Query::select()
                    .columns([
                        "integration_id",
                        "kind",
                        "external_id",
                        "external_id_ct",
                        "email_ct",
                        "name_ct",
                    ])
                    .from("principals")
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("email_index").eq(index))
                    .to_owned(),
            )
            .await?;
        let now = Utc::now();
        for row in principals {
            let integration: String = row.try_get("", "integration_id")?;
            let kind: String = row.try_get("", "kind")?;
            let external: String = row.try_get("", "external_id")?;
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
            let email_plain = open("email", row.try_get("", "email_ct")?)?;
            let name = open("name", Some(row.try_get("", "name_ct")?))?;
            // The principal is stored under a pseudonym of the source's id (see `blind`).
            let source_id = open("external_id", row.try_get("", "external_id_ct")?)?
                .unwrap_or_else(|| external.clone());
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
            let groups = self
                .ctx
                .db
                .query_all(
                    &Query::select()
                        .column("group_id")
                        .from("memberships")
                        .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                        .and_where(Expr::col("integration_id").eq(integration.clone()))
                        .and_where(Expr::col("member_id").eq(external.clone()))
                        .and_where(Expr::col("member_is_group").eq(kind == "group"))
                        .to_owned(),
                )
                .await?;
            let group_ids: Vec<String> = groups
                .iter()
                .map(|g| g.try_get("", "group_id"))
                .collect::<std::result::Result<_, _>>()?;
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
            let grants = self
                .ctx
                .db
                .query_all(
                    &Query::select()
                        .columns([
                            "id",
                            "role",
                            "reason",
                            "reason_ct",
                            "granted_at",
                            "expires_at",
                        ])
                        .from("staff_grants")
                        .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                        .and_where(Expr::col("granted_by").eq(user.id.to_string()))
                        .to_owned(),
                )
                .await?;
            for g in grants {
                let id: String = g.try_get("", "id")?;
                let granted_at: chrono::DateTime<Utc> = g.try_get("", "granted_at")?;
                let expires_at: chrono::DateTime<Utc> = g.try_get("", "expires_at")?;
                let reason = match g.try_get::<Option<Vec<u8>>>("", "reason_ct")? {
                    Some(sealed) => {
                        crate::records::open(
                            &self.ctx,
                            tenant,
                            ("staff_grants", "reason", &id),
                            &sealed,
                        )
                        .await?
                    }
                    None => g.try_get::<String>("", "reason")?,
                };
                records.push(SubjectRecord {
                    kind: "staff_access_grant".into(),
                    id: id.clone(),
                    json: json!({
                        "id": id,
                        "role": g.try_get::<String>("", "role")?,
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
}
