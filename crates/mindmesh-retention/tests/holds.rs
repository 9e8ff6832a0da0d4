//! Legal holds in the ledger, on SQLite and on the real PostgreSQL: a part retained
//! under a hold pauses its cascade (no receipt, never asked again as stalled), the
//! release asks it again — after announcing the release — and it then completes; a
//! retention without a ground is a failure; retention keeps its own part under a hold;
//! the reason never leaves retention's database unsealed.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use mindmesh_kit::auth::{Caller, Role};
use mindmesh_kit::both_backends;
use mindmesh_kit::bus::consume::EventHandler;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::holds::{self, HeldScope};
use mindmesh_kit::ids::{CascadeId, HoldId, IntegrationId, TenantId};
use mindmesh_kit::testing::{Backend, ContextGuard, service_context};
use mindmesh_kit::{Service, events};
use mindmesh_proto::mindmesh::common::v1::CascadeState;
use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use mindmesh_proto::mindmesh::events::v1::{
    AccountDeletionRequested, DeletionCompleted, Envelope, IntegrationDisconnected,
};
use mindmesh_retention::Migrator;
use mindmesh_retention::activity::Activity;
use mindmesh_retention::events::{Reasker, RetentionEvents};
use mindmesh_retention::holds::LegalHolds;
use mindmesh_retention::ledger::{Cascade, Ledger, Overall, PartState};
use prost::Message;
use sea_orm::ConnectionTrait;

const REASON: &str = "Litigation hold, case 2026-CV-0142 (Ada Lovelace v. Acme)";

struct Harness {
    handler: RetentionEvents,
    ledger: Ledger,
    holds: LegalHolds,
    ctx: ServiceContext,
    tenant: TenantId,
    admin: Caller,
    _guard: ContextGuard,
}

async fn harness(backend: Backend) -> Harness {
    let (ctx, guard) = service_context::<Migrator>(Service::Retention, backend)
        .await
        .unwrap();
    let (attesters, ledger) = support::ledger(&ctx);
    let holds = support::holds(&ctx, &ledger);
    let handler = support::events(&ctx, attesters, &ledger, holds.clone());
    let tenant = TenantId::new();
    Harness {
        handler,
        ledger,
        holds,
        admin: Caller {
            subject: "admin-1".into(),
            tenant: Some(tenant),
            roles: vec![Role::Admin],
        },
        ctx,
        tenant,
        _guard: guard,
    }
}

impl Harness {
    async fn feed(&self, envelope: &Envelope) {
        self.handler.handle(envelope).await.unwrap();
    }

    fn disconnected(&self, cascade: CascadeId, integration: IntegrationId) -> Envelope {
        events::envelope(
            Service::Ingest,
            Some(self.tenant),
            Payload::IntegrationDisconnected(IntegrationDisconnected {
                integration_id: integration.to_string(),
                cascade_id: cascade.to_string(),
            }),
        )
    }

    /// `service`'s signed report of its part of `cascade`: `state`, on `ground`.
    fn reported(
        &self,
        cascade: CascadeId,
        service: Service,
        state: CascadeState,
        ground: String,
    ) -> Envelope {
        let completion = events::signed_completion(
            &self.ctx.keys.signing,
            DeletionCompleted {
                cascade_id: cascade.to_string(),
                service: service.to_proto() as i32,
                state: state as i32,
                ground,
                ..Default::default()
            },
        );
        events::envelope(
            service,
            Some(self.tenant),
            Payload::DeletionCompleted(completion),
        )
    }

    /// `service`'s confirmation that it applied the placing (or release) of `hold`.
    fn applied(&self, service: Service, hold: HoldId, released: bool) -> Envelope {
        holds::applied_event(service, Some(self.tenant), hold, released)
    }

    fn done(&self, cascade: CascadeId, service: Service) -> Envelope {
        self.reported(cascade, service, CascadeState::Done, String::new())
    }

    fn retained(&self, cascade: CascadeId, service: Service, hold: HoldId) -> Envelope {
        self.reported(
            cascade,
            service,
            CascadeState::RetainedWithGround,
            holds::ground(hold),
        )
    }

    async fn cascade(&self, cascade: CascadeId) -> Cascade {
        self.ledger
            .get(Some(self.tenant), cascade)
            .await
            .unwrap()
            .expect("in the ledger")
    }

    /// How often the request of `cascade` was sent again.
    async fn asked(&self, cascade: CascadeId) -> usize {
        self.outbox()
            .await
            .iter()
            .filter(|e| matches!(&e.payload, Some(Payload::IntegrationDisconnected(d)) if d.cascade_id == cascade.to_string()))
            .count()
    }

    /// Every event in retention's outbox, in the order it is published.
    async fn outbox(&self) -> Vec<Envelope> {
        let rows = self
            .ctx
            .db
            .query_all_raw(sea_orm::Statement::from_string(
                self.ctx.db.get_database_backend(),
                "SELECT payload FROM outbox ORDER BY seq",
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                Envelope::decode(r.try_get::<Vec<u8>>("", "payload").unwrap().as_slice()).unwrap()
            })
            .collect()
    }
}

async fn p06_a_legal_hold_pauses_a_cascade_until_its_release(backend: Backend) {
    let h = harness(backend).await;
    let integration = IntegrationId::new();
    let hold = h
        .holds
        .place(
            &h.admin,
            h.tenant,
            HeldScope::Integration(integration),
            REASON,
        )
        .await
        .unwrap();
    // Announced, without the reason; in force here too.
    let placed = h.outbox().await;
    assert!(placed.iter().any(|e| matches!(&e.payload,
        Some(Payload::LegalHoldPlaced(p)) if p.hold_id == hold.to_string()
            && p.scope_kind == "integration" && p.scope_id == integration.to_string())));
    assert!(holds::in_force(&h.ctx.db, hold).await.unwrap());
    // In force everywhere once both services that erase have confirmed it.
    let instant = std::time::Duration::ZERO;
    assert!(!h.holds.in_force_within(hold, instant).await.unwrap());
    h.feed(&h.applied(Service::Permissions, hold, false)).await;
    assert!(!h.holds.in_force_within(hold, instant).await.unwrap());
    h.feed(&h.applied(Service::Storage, hold, false)).await;
    assert!(h.holds.in_force_within(hold, instant).await.unwrap());

    let cascade = CascadeId::new();
    h.feed(&h.disconnected(cascade, integration)).await;
    h.feed(&h.done(cascade, Service::Ingest)).await;
    h.feed(&h.retained(cascade, Service::Permissions, hold))
        .await;
    h.feed(&h.retained(cascade, Service::Storage, hold)).await;
    // The same retention again changes nothing.
    h.feed(&h.retained(cascade, Service::Storage, hold)).await;
    let paused = h.cascade(cascade).await;
    assert_eq!(paused.overall(), Overall::Held);
    assert_eq!(paused.held_by(), Some(hold));
    assert_eq!(
        paused.waiting_for(),
        vec![Service::Permissions, Service::Storage]
    );
    let storage = paused
        .parts
        .iter()
        .find(|p| p.service == Service::Storage)
        .unwrap();
    assert_eq!(storage.state, PartState::Retained);
    assert_eq!(storage.reason, holds::ground(hold));
    assert!(
        h.ledger
            .receipt(Some(h.tenant), cascade)
            .await
            .unwrap()
            .is_none(),
        "no receipt while data is kept"
    );
    // Held is not stalled: nobody is asked again while the hold stands.
    let reasker = Reasker::new(
        h.ctx.clone(),
        h.ledger.clone(),
        chrono::Duration::minutes(15),
    );
    let later = chrono::Utc::now() + chrono::Duration::hours(2);
    assert_eq!(reasker.run_once(later).await.unwrap(), 0);

    // Released: announced, and the cascade is asked again once both services that
    // erase have applied the release (so neither meets the hold again) — once.
    h.holds
        .release(&h.admin, Some(h.tenant), hold)
        .await
        .unwrap();
    assert!(!holds::in_force(&h.ctx.db, hold).await.unwrap());
    assert!(h.outbox().await.iter().any(|e| matches!(&e.payload,
        Some(Payload::LegalHoldReleased(r)) if r.hold_id == hold.to_string())));
    h.feed(&h.applied(Service::Storage, hold, true)).await;
    assert_eq!(h.asked(cascade).await, 0, "permissions has not let go yet");
    h.feed(&h.applied(Service::Permissions, hold, true)).await;
    assert_eq!(h.asked(cascade).await, 1);
    h.feed(&h.applied(Service::Permissions, hold, true)).await;
    assert_eq!(
        h.asked(cascade).await,
        1,
        "a repeated confirmation asks nobody again"
    );
    // Releasing again changes nothing.
    h.holds
        .release(&h.admin, Some(h.tenant), hold)
        .await
        .unwrap();
    // Another tenant's admin finds no such hold.
    let stranger = Caller {
        subject: "admin-2".into(),
        tenant: Some(TenantId::new()),
        roles: vec![Role::Admin],
    };
    let err = h
        .holds
        .release(&stranger, stranger.tenant, hold)
        .await
        .unwrap_err();
    assert!(matches!(err, mindmesh_kit::Error::NotFound(_)), "{err}");

    // The participants erase now; the cascade completes with a receipt.
    h.feed(&h.done(cascade, Service::Permissions)).await;
    h.feed(&h.done(cascade, Service::Storage)).await;
    assert_eq!(h.cascade(cascade).await.overall(), Overall::Complete);
    assert!(
        h.ledger
            .receipt(Some(h.tenant), cascade)
            .await
            .unwrap()
            .is_some()
    );

    // The reason is nowhere in the clear: not in events, not in the database.
    let needle = "2026-CV-0142";
    for e in h.outbox().await {
        assert!(!format!("{e:?}").contains(needle));
    }
    let audit = h
        .ctx
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            h.ctx.db.get_database_backend(),
            "SELECT details FROM audit_log",
        ))
        .await
        .unwrap();
    assert!(audit.len() >= 2);
    for row in audit {
        let details: String = row.try_get("", "details").unwrap();
        assert!(!details.contains(needle), "{details}");
    }
}

async fn p06_a_retention_without_a_ground_is_a_failure(backend: Backend) {
    let h = harness(backend).await;
    let cascade = CascadeId::new();
    h.feed(&h.disconnected(cascade, IntegrationId::new())).await;
    h.feed(&h.reported(
        cascade,
        Service::Storage,
        CascadeState::RetainedWithGround,
        String::new(),
    ))
    .await;
    let c = h.cascade(cascade).await;
    assert_eq!(c.overall(), Overall::Failed);
    // A changed ground breaks the signature: recorded as a failure too.
    let mut forged = h.retained(cascade, Service::Permissions, HoldId::new());
    if let Some(Payload::DeletionCompleted(d)) = &mut forged.payload {
        d.ground = holds::ground(HoldId::new());
    }
    h.feed(&forged).await;
    let c = h.cascade(cascade).await;
    let permissions = c
        .parts
        .iter()
        .find(|p| p.service == Service::Permissions)
        .unwrap();
    assert_eq!(permissions.state, PartState::Failed);
}

async fn retention_keeps_its_own_part_of_a_held_tenant(backend: Backend) {
    let h = harness(backend).await;
    let hold = h
        .holds
        .place(&h.admin, h.tenant, HeldScope::Tenant, REASON)
        .await
        .unwrap();
    let user = mindmesh_kit::ids::UserId::new();
    Activity::new(h.ctx.db.clone())
        .touch(&h.ctx.db, h.tenant, user, chrono::Utc::now())
        .await
        .unwrap();
    let cascade = CascadeId::new();
    h.feed(&events::envelope(
        Service::Retention,
        Some(h.tenant),
        Payload::AccountDeletionRequested(AccountDeletionRequested {
            cascade_id: cascade.to_string(),
            user_id: String::new(),
            sealed_email: Vec::new(),
        }),
    ))
    .await;
    let own = h
        .outbox()
        .await
        .into_iter()
        .find_map(|e| match e.payload {
            Some(Payload::DeletionCompleted(d)) if d.cascade_id == cascade.to_string() => Some(d),
            _ => None,
        })
        .expect("retention's own part");
    assert_eq!(own.state, CascadeState::RetainedWithGround as i32);
    assert_eq!(own.ground, holds::ground(hold));
    assert!(events::verify_completion(
        &h.ctx.keys.signing.public_key(),
        &own
    ));
    // Nothing forgotten, and the tenant is not being erased here.
    assert!(
        Activity::new(h.ctx.db.clone())
            .last_active(h.tenant, user)
            .await
            .unwrap()
            .is_some()
    );
    assert!(!support::tenants(&h.ctx).is_erased(h.tenant).await.unwrap());
}

both_backends!(
    p06_a_legal_hold_pauses_a_cascade_until_its_release,
    p06_a_retention_without_a_ground_is_a_failure,
    retention_keeps_its_own_part_of_a_held_tenant,
);
