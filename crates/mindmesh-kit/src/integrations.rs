//! What a service that receives imported data (permissions, storage) knows of the
//! integrations ingest owns, learned from ingest's `integration.connected` and
//! `integration.disconnected` events into its own table `known_integrations`.
//!
//! A write of imported data is taken only for an integration that is known, belongs to
//! the caller's tenant and is connected (P02, P06). The first sync of a new integration
//! can reach a service a moment before the event that announces it, so an unknown
//! integration is waited for, briefly, before the write is refused as UNAVAILABLE.
//! A disconnection is recorded before anything of the integration is erased and is
//! never undone, so a late write cannot outlive the cascade.

use std::collections::BTreeSet;
use std::time::Duration;

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tonic::Code;

use crate::error::{Error, Result};
use crate::ids::{IntegrationId, TenantId};
use crate::service::Service;

/// How long a write for an integration not known yet waits for its announcement.
pub const LEARN_WITHIN: Duration = Duration::from_secs(5);
/// How often it looks again meanwhile.
const LOOK_EVERY: Duration = Duration::from_millis(50);

const CONNECTED: &str = "connected";
const DISCONNECTED: &str = "disconnected";

/// The integrations one service knows.
#[derive(Clone)]
pub struct Integrations {
    db: DatabaseConnection,
    service: Service,
}

impl Integrations {
    /// The register in `db` of `service`.
    pub fn new(db: DatabaseConnection, service: Service) -> Self {
        Integrations { db, service }
    }

    /// Records that `integration` of `tenant` is connected (an `integration.connected`
    /// event). A disconnected one stays disconnected.
    pub async fn connected<C: ConnectionTrait>(
        conn: &C,
        tenant: TenantId,
        integration: IntegrationId,
    ) -> Result<()> {
        record(
            conn,
            tenant,
            integration,
            CONNECTED,
            OnConflict::column("integration_id").do_nothing().to_owned(),
        )
        .await
    }

    /// Records that `integration` of `tenant` is disconnected, before anything of it is
    /// erased: from here nothing is written for it. Idempotent.
    pub async fn disconnected<C: ConnectionTrait>(
        conn: &C,
        tenant: TenantId,
        integration: IntegrationId,
    ) -> Result<()> {
        record(
            conn,
            tenant,
            integration,
            DISCONNECTED,
            OnConflict::column("integration_id")
                .update_columns(["state", "changed_at"])
                .to_owned(),
        )
        .await
    }

    /// Forgets every integration of `tenant` (the tenant's own erasure: from then on the
    /// tenant takes no write at all).
    pub async fn forget_tenant<C: ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<()> {
        conn.execute(
            &Query::delete()
                .from_table("known_integrations")
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    /// Fails, naming `field`, unless every one of `integrations` is a connected
    /// integration of `tenant`: one disconnected is FAILED_PRECONDITION, another
    /// tenant's NOT_FOUND, one still unknown after [`LEARN_WITHIN`] UNAVAILABLE.
    pub async fn require_writable(
        &self,
        tenant: TenantId,
        integrations: &BTreeSet<IntegrationId>,
        field: &'static str,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + LEARN_WITHIN;
        let mut waiting: BTreeSet<IntegrationId> = integrations.clone();
        loop {
            let mut unknown = BTreeSet::new();
            for integration in &waiting {
                match self.state(*integration).await? {
                    Some((owner, _)) if owner != tenant => {
                        return Err(Error::Refused {
                            code: Code::NotFound,
                            message: format!(
                                "{field}: no integration {integration} in this tenant"
                            ),
                        });
                    }
                    Some((_, state)) if state == DISCONNECTED => {
                        return Err(Error::FailedPrecondition(format!(
                            "{field}: integration {integration} is disconnected; nothing more is \
                             written for it"
                        )));
                    }
                    Some(_) => {}
                    None => {
                        unknown.insert(*integration);
                    }
                }
            }
            let Some(first) = unknown.first().copied() else {
                return Ok(());
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Refused {
                    code: Code::Unavailable,
                    message: format!(
                        "{field}: integration {first} is not known to the {} service (no \
                         integration.connected event for it has arrived); retry once ingest \
                         has announced it",
                        self.service
                    ),
                });
            }
            tokio::time::sleep(LOOK_EVERY).await;
            waiting = unknown;
        }
    }

    async fn state(&self, integration: IntegrationId) -> Result<Option<(TenantId, String)>> {
        let row = self
            .db
            .query_one(
                &Query::select()
                    .columns(["tenant_id", "state"])
                    .from("known_integrations")
                    .and_where(Expr::col("integration_id").eq(integration.to_string()))
                    .to_owned(),
            )
            .await?;
        row.map(|r| {
            let tenant: String = r.try_get("", "tenant_id")?;
            let tenant = tenant
                .parse()
                .map_err(|_| Error::Internal("malformed tenant id in known_integrations".into()))?;
            Ok((tenant, r.try_get("", "state")?))
        })
        .transpose()
    }
}

/// Writes `state` for `integration`, resolving a row already there by `on_conflict`.
async fn record<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: IntegrationId,
    state: &str,
    on_conflict: OnConflict,
) -> Result<()> {
    conn.execute(
        &Query::insert()
            .into_table("known_integrations")
            .columns(["integration_id", "tenant_id", "state", "changed_at"])
            .values_panic([
                integration.to_string().into(),
                tenant.to_string().into(),
                state.into(),
                crate::db::now().into(),
            ])
            .on_conflict(on_conflict)
            .to_owned(),
    )
    .await?;
    Ok(())
}
