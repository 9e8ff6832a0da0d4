//! Disconnecting an integration (P06): no sync of it runs or starts any more, its token
//! is revoked at the provider (best effort), its credentials are destroyed, and the
//! cascade that erases everything it brought — in every service — is published with the
//! audit entry, in one transaction (see `Store::finish_disconnect`).

use std::sync::Arc;
use std::time::Duration;

use mindmesh_kit::audit::AuditRecord;
use mindmesh_kit::auth::Caller;
use mindmesh_kit::ids::{CascadeId, IntegrationId, TenantId};
use mindmesh_kit::{Error, Result};

use crate::connectors::{self, Setup};
use crate::oauth::Forget;
use crate::store::{Integration, Status as IntegrationStatus, Store};
use crate::sync::Engine;

/// How long a disconnect waits for a sync on another replica to notice and stop (it
/// notices within a heartbeat; a crashed one's lease runs out).
const DISCONNECT_WAIT: Duration = Duration::from_secs(2 * crate::sync::LEASE.as_secs());

/// One disconnect, over the service's store, sync engine and connector setup.
pub struct Disconnection<'a> {
    store: &'a Store,
    engine: &'a Arc<Engine>,
    setup: &'a Setup,
}

impl<'a> Disconnection<'a> {
    /// A disconnect over `store`, `engine` and `setup`.
    pub fn new(store: &'a Store, engine: &'a Arc<Engine>, setup: &'a Setup) -> Self {
        Disconnection {
            store,
            engine,
            setup,
        }
    }

    /// Stops syncs, revokes the token at the provider (best effort), then erases the
    /// credentials and publishes the cascade, on behalf of `caller`. Returns the cascade
    /// id; disconnecting again returns the same one.
    pub async fn run(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: IntegrationId,
    ) -> Result<CascadeId> {
        let (integration, cascade) = self.store.begin_disconnect(tenant, id).await?;
        if integration.status == IntegrationStatus::Disconnected {
            return Ok(cascade);
        }
        // From here no sync takes or renews a lease: stop ours, wait for any other.
        self.engine.stop(id).await;
        let deadline = tokio::time::Instant::now() + DISCONNECT_WAIT;
        while self.store.leased(id).await? {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Unavailable(
                    "a sync of this integration on another replica did not stop; retry".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.revoke(&integration).await;
        let audit = AuditRecord::by(
            caller,
            "integration.disconnect",
            Some(tenant),
            id.to_string(),
        )
        .with_details(format!("kind={} cascade={cascade}", integration.kind));
        self.store
            .finish_disconnect(tenant, id, cascade, &audit)
            .await?;
        tracing::info!(tenant_id = %tenant, integration_id = %id, cascade_id = %cascade, "integration disconnected");
        Ok(cascade)
    }

    /// Revokes the integration's token at the provider; a failure is logged, never fatal
    /// (the credentials are destroyed here either way).
    async fn revoke(&self, integration: &Integration) {
        let credentials = match self
            .store
            .credentials(integration.tenant, integration.id)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(integration_id = %integration.id, error = %e, "credentials unreadable; nothing to revoke");
                return;
            }
        };
        let revoked = async {
            connectors::open(
                self.setup,
                integration.tenant,
                &integration.kind,
                &integration.settings,
                credentials,
                Arc::new(Forget),
            )?
            .revoke()
            .await
        }
        .await;
        if let Err(e) = revoked {
            tracing::warn!(integration_id = %integration.id, error = %e, "revoking the token at the provider failed");
        }
    }
}
