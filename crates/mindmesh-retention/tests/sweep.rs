//! The inactivity sweep on SQLite and on the real PostgreSQL (P09), the clock walked with
//! `as_of`: each warning once and in time, a countdown forgotten when activity comes
//! back, no expiry before every warning, expiry opening a tenant-deletion cascade of
//! kind `inactivity`, and two sweeps at once sending nothing twice.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use mindmesh_kit::Service;
use mindmesh_kit::both_backends;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::{TenantId, UserId};
use mindmesh_kit::testing::{Backend, ContextGuard, service_context};
use mindmesh_proto::mindmesh::events::v1::Envelope;
use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use mindmesh_retention::Migrator;
use mindmesh_retention::activity::Activity;
use mindmesh_retention::ledger::{CascadeKind, Ledger};
use mindmesh_retention::policy::{Policies, Policy};
use mindmesh_retention::sweep::Sweeper;

struct Harness {
    ctx: ServiceContext,
    activity: Activity,
    ledger: Ledger,
    sweeper: Sweeper,
    policies: Policies,
    _guard: ContextGuard,
}

async fn harness(backend: Backend) -> Harness {
    let (ctx, guard) = service_context::<Migrator>(Service::Retention, backend)
        .await
        .unwrap();
    let (_, ledger) = support::ledger(&ctx);
    let policies = Policies::new(ctx.db.clone(), ctx.audit.clone(), ctx.relay.clone());
    let tenants = support::tenants(&ctx);
    let sweeper = Sweeper::new(ctx.clone(), ledger.clone(), policies.clone(), tenants);
    Harness {
        activity: Activity::new(ctx.db.clone()),
        ctx,
        ledger,
        sweeper,
        policies,
        _guard: guard,
    }
}

fn day0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-01-01T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn days(n: i64) -> Duration {
    Duration::days(n)
}

impl Harness {
    async fn active(&self, tenant: TenantId, at: DateTime<Utc>) {
        self.activity
            .touch(self.activity.db(), tenant, UserId::new(), at)
            .await
            .unwrap();
    }

    /// What retention's outbox holds for `tenant`.
    async fn published(&self, tenant: TenantId) -> Vec<Envelope> {
        use prost::Message;
        use sea_orm::ConnectionTrait;
        let rows = self
            .ctx
            .db
            .query_all_raw(sea_orm::Statement::from_string(
                self.ctx.db.get_database_backend(),
                "SELECT payload FROM outbox ORDER BY created_at",
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                Envelope::decode(r.try_get::<Vec<u8>>("", "payload").unwrap().as_slice()).unwrap()
            })
            .filter(|e| e.tenant_id == tenant.to_string())
            .collect()
    }

    /// The warnings sent to `tenant`: days before expiry, in the order sent.
    async fn warnings(&self, tenant: TenantId) -> Vec<u32> {
        self.published(tenant)
            .await
            .into_iter()
            .filter_map(|e| match e.payload {
                Some(Payload::NotificationRequested(n)) => {
                    assert!(n.administrative, "{n:?}");
                    assert_eq!(n.template, "inactivity_warning");
                    Some(n.params["days_before"].parse().unwrap())
                }
                _ => None,
            })
            .collect()
    }

    /// The tenant deletions requested for `tenant`.
    async fn deletions(&self, tenant: TenantId) -> Vec<String> {
        self.published(tenant)
            .await
            .into_iter()
            .filter_map(|e| match e.payload {
                Some(Payload::AccountDeletionRequested(d)) => {
                    assert!(d.user_id.is_empty() && d.sealed_email.is_empty(), "{d:?}");
                    Some(d.cascade_id)
                }
                _ => None,
            })
            .collect()
    }
}

async fn p09_thirteen_months_warn_each_time_once_then_expire(backend: Backend) {
    let h = harness(backend).await;
    let tenant = TenantId::new();
    h.active(tenant, day0()).await;
    let mut sent_on: BTreeMap<u32, i64> = BTreeMap::new();
    let mut expired_on = None;
    for day in 0..=395 {
        // Twice a day, as a schedule and an operator might.
        for hour in [0, 12] {
            let report = h
                .sweeper
                .sweep(day0() + days(day) + Duration::hours(hour), None)
                .await
                .unwrap();
            if report.warnings_sent > 0 {
                let warnings = h.warnings(tenant).await;
                let last = *warnings.last().unwrap();
                assert!(
                    sent_on.insert(last, day).is_none(),
                    "warning {last} sent twice"
                );
                assert_eq!(report.warnings_sent, 1, "day {day}");
            }
            if !report.cascades.is_empty() {
                assert!(expired_on.is_none(), "expired twice");
                expired_on = Some(day);
                assert_eq!(report.cascades.len(), 1);
                let cascade = h
                    .ledger
                    .get(Some(tenant), report.cascades[0])
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(cascade.kind, Some(CascadeKind::Inactivity));
                assert_eq!(cascade.waiting_for(), Service::ALL.to_vec());
            }
        }
    }
    assert_eq!(
        sent_on,
        BTreeMap::from([(60, 305), (30, 335), (7, 358), (1, 364)]),
        "each warning once, on its day"
    );
    assert_eq!(
        expired_on,
        Some(365),
        "expired on its day, after every warning"
    );
    assert_eq!(h.warnings(tenant).await, vec![60, 30, 7, 1]);
    assert_eq!(h.deletions(tenant).await.len(), 1);
}

async fn p09_activity_coming_back_forgets_the_countdown(backend: Backend) {
    let h = harness(backend).await;
    let tenant = TenantId::new();
    h.active(tenant, day0()).await;
    h.sweeper.sweep(day0() + days(306), None).await.unwrap();
    assert_eq!(h.warnings(tenant).await, vec![60]);
    // Someone is active again on day 310: nothing more of the old countdown.
    h.active(tenant, day0() + days(310)).await;
    for day in 311..=600 {
        let report = h.sweeper.sweep(day0() + days(day), None).await.unwrap();
        assert_eq!(report, Default::default(), "day {day}");
    }
    // The new countdown runs from day 310: its first warning 305 days later.
    let report = h.sweeper.sweep(day0() + days(615), None).await.unwrap();
    assert_eq!(report.warnings_sent, 1);
    assert_eq!(h.warnings(tenant).await, vec![60, 60]);
}

async fn p09_a_late_sweep_never_expires_an_unwarned_tenant(backend: Backend) {
    let h = harness(backend).await;
    let tenant = TenantId::new();
    h.active(tenant, day0()).await;
    // Nobody swept for 500 days: the first warning goes out now and promises 60 days.
    let late = day0() + days(500);
    let report = h.sweeper.sweep(late, None).await.unwrap();
    assert_eq!((report.warnings_sent, report.cascades.len()), (1, 0));
    let mut expired = None;
    for day in 1..=70 {
        let report = h.sweeper.sweep(late + days(day), None).await.unwrap();
        if !report.cascades.is_empty() {
            expired = Some(day);
            break;
        }
    }
    assert_eq!(h.warnings(tenant).await, vec![60, 30, 7, 1]);
    assert_eq!(expired, Some(60), "60 days after the first (late) warning");
}

async fn p09_a_tenant_policy_sets_the_clock(backend: Backend) {
    let h = harness(backend).await;
    let tenant = TenantId::new();
    let caller = mindmesh_kit::auth::Caller {
        subject: "admin".into(),
        tenant: Some(tenant),
        roles: vec![mindmesh_kit::auth::Role::Admin],
    };
    let policy = Policy {
        inactivity_days: 90,
        warning_days: vec![1, 14],
        archive_purge_days: 10,
    };
    let stored = h.policies.set(&caller, tenant, policy).await.unwrap();
    assert_eq!(stored.warning_days, vec![14, 1]);
    h.active(tenant, day0()).await;
    let mut cascades = Vec::new();
    for day in 0..=100 {
        cascades.extend(
            h.sweeper
                .sweep(day0() + days(day), None)
                .await
                .unwrap()
                .cascades,
        );
    }
    assert_eq!(h.warnings(tenant).await, vec![14, 1]);
    assert_eq!(cascades.len(), 1);
    // Another tenant keeps the default year.
    let other = TenantId::new();
    h.active(other, day0()).await;
    assert_eq!(
        h.sweeper.sweep(day0() + days(100), None).await.unwrap(),
        Default::default()
    );
}

async fn p09_two_sweeps_at_once_send_nothing_twice(backend: Backend) {
    let h = harness(backend).await;
    let tenants: Vec<TenantId> = (0..5).map(|_| TenantId::new()).collect();
    for t in &tenants {
        h.active(*t, day0()).await;
    }
    let other = h.sweeper.clone();
    for day in [305, 335, 358, 364, 365, 366] {
        let at = day0() + days(day);
        let (a, b) = tokio::join!(h.sweeper.sweep(at, None), other.sweep(at, None));
        let (a, b) = (a.unwrap(), b.unwrap());
        let expected = if day >= 365 { 0 } else { 5 };
        assert_eq!(a.warnings_sent + b.warnings_sent, expected, "day {day}");
    }
    for t in &tenants {
        assert_eq!(h.warnings(*t).await, vec![60, 30, 7, 1]);
        assert_eq!(h.deletions(*t).await.len(), 1, "one cascade per tenant");
    }
}

both_backends!(
    p09_thirteen_months_warn_each_time_once_then_expire,
    p09_activity_coming_back_forgets_the_countdown,
    p09_a_late_sweep_never_expires_an_unwarned_tenant,
    p09_a_tenant_policy_sets_the_clock,
    p09_two_sweeps_at_once_send_nothing_twice,
);
