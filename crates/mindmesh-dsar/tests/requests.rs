//! Data-subject requests on SQLite and on the real PostgreSQL (P12): the requester's
//! identity (a matching email, then the code mailed to the subject: once, within its
//! time, a bounded number of wrong tries), the legal deadline and its extension, and
//! the order requests are listed in.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::sync::Arc;

use chrono::{DateTime, Duration, Months, Utc};
use mindmesh_dsar::Migrator;
use mindmesh_dsar::requests::{Kind, NewRequest, Request, Requests, Scope, Status};
use mindmesh_kit::auth::{Caller, Role};
use mindmesh_kit::both_backends;
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::testing::{Backend, ContextGuard, service_context};
use mindmesh_kit::{Error, Service};
use sea_orm::ConnectionTrait;

struct Harness {
    requests: Requests,
    outbox: Arc<support::Outbox>,
    tenant: TenantId,
    admin: Caller,
    db: sea_orm::DatabaseConnection,
    _guard: ContextGuard,
}

async fn harness(backend: Backend) -> Harness {
    let (ctx, guard) = service_context::<Migrator>(Service::Dsar, backend)
        .await
        .unwrap();
    let outbox = Arc::new(support::Outbox::default());
    let requests = Requests::new(
        ctx.db.clone(),
        ctx.audit.clone(),
        outbox.clone(),
        &ctx.keys.master,
        Duration::hours(1),
        3,
    )
    .unwrap();
    let tenant = TenantId::new();
    Harness {
        requests,
        outbox,
        admin: Caller {
            subject: "dpo-1".into(),
            tenant: Some(tenant),
            roles: vec![Role::Admin],
        },
        tenant,
        db: ctx.db.clone(),
        _guard: guard,
    }
}

impl Harness {
    fn filing(&self, kind: Kind, subject: &str, requester: &str) -> NewRequest {
        NewRequest {
            kind,
            subject_email: subject.into(),
            requester_email: requester.into(),
            rectification: None,
            lift: false,
            purpose: String::new(),
        }
    }

    fn scope(&self) -> Scope {
        Scope::Tenant(self.tenant)
    }

    /// Files a request of `kind` about `subject`, asked by `requester`, at `at`.
    async fn file(&self, kind: Kind, subject: &str, requester: &str, at: DateTime<Utc>) -> Request {
        self.requests
            .submit(
                &self.admin,
                self.tenant,
                self.filing(kind, subject, requester),
                at,
            )
            .await
            .unwrap()
    }

    async fn verify(
        &self,
        id: &str,
        code: &str,
        at: DateTime<Utc>,
    ) -> mindmesh_kit::Result<Request> {
        self.requests
            .verify(&self.admin, &self.scope(), id, code, at)
            .await
    }
}

async fn p12_a_requester_whose_email_is_not_the_subjects_is_rejected(backend: Backend) {
    let h = harness(backend).await;
    let now = Utc::now();
    let r = h
        .file(Kind::Access, "ada@acme.example", "eve@evil.example", now)
        .await;
    assert_eq!(r.status, Status::Rejected);
    assert!(r.rejection_reason.contains("does not match"), "{r:?}");
    assert!(h.outbox.0.lock().unwrap().is_empty(), "no code mailed");
    // Bad input names the field.
    for (subject, requester, field) in [
        ("not-an-email", "ada@acme.example", "subject_email"),
        ("ada@acme.example", "", "requester_email"),
    ] {
        let err = h
            .requests
            .submit(
                &h.admin,
                h.tenant,
                h.filing(Kind::Access, subject, requester),
                now,
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains(field), "{err}");
    }
    let err = h
        .requests
        .submit(
            &h.admin,
            h.tenant,
            h.filing(Kind::Rectification, "ada@acme.example", "ada@acme.example"),
            now,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("rectification"), "{err}");
}

async fn p12_the_mailed_code_verifies_once(backend: Backend) {
    let h = harness(backend).await;
    let now = Utc::now();
    let r = h
        .file(Kind::Erasure, "Ada@Acme.example ", "ada@acme.example", now)
        .await;
    assert_eq!(r.status, Status::AwaitingVerification);
    assert_eq!(r.subject_email, "ada@acme.example");
    assert_eq!(r.attempts_left, 3);
    let code = h.outbox.code_for("ada@acme.example");
    // The code is stored only as a keyed hash; the email only sealed.
    let rows =
        h.db.query_all_raw(sea_orm::Statement::from_string(
            h.db.get_database_backend(),
            "SELECT * FROM dsar_requests",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let dump = format!("{rows:?}").to_lowercase();
    assert!(
        !dump.contains(&code) && !dump.contains("ada@acme"),
        "{dump}"
    );

    let verified = h.verify(&r.id, &code, now).await.unwrap();
    assert_eq!(verified.status, Status::InProgress);
    assert!(verified.code_expires_at.is_none());
    // A code is used once.
    let again = h.verify(&r.id, &code, now).await.unwrap_err();
    assert!(matches!(again, Error::FailedPrecondition(_)), "{again}");
    // Another tenant's admin does not see it.
    let other = Scope::Tenant(TenantId::new());
    assert!(matches!(
        h.requests.get(&other, &r.id).await.unwrap_err(),
        Error::NotFound(_)
    ));
}

async fn p12_wrong_codes_until_the_attempts_are_used_up_reject(backend: Backend) {
    let h = harness(backend).await;
    let now = Utc::now();
    let r = h
        .file(Kind::Access, "ada@acme.example", "ada@acme.example", now)
        .await;
    let code = h.outbox.code_for("ada@acme.example");
    let wrong = if code == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    for left in [2, 1] {
        let err = h.verify(&r.id, wrong, now).await.unwrap_err();
        assert!(
            err.to_string().contains(&format!("{left} tries left")),
            "{err}"
        );
    }
    let rejected = h.verify(&r.id, wrong, now).await.unwrap();
    assert_eq!(rejected.status, Status::Rejected);
    assert!(rejected.rejection_reason.contains("wrong 3 times"));
    // The right code comes too late.
    let late = h.verify(&r.id, &code, now).await.unwrap_err();
    assert!(matches!(late, Error::FailedPrecondition(_)), "{late}");
}

async fn p12_an_expired_code_rejects(backend: Backend) {
    let h = harness(backend).await;
    let now = Utc::now();
    let r = h
        .file(
            Kind::Portability,
            "ada@acme.example",
            "ada@acme.example",
            now,
        )
        .await;
    let code = h.outbox.code_for("ada@acme.example");
    let later = now + Duration::hours(1) + Duration::seconds(1);
    let expired = h.verify(&r.id, &code, later).await.unwrap();
    assert_eq!(expired.status, Status::Rejected);
    assert!(expired.rejection_reason.contains("expired"));
}

async fn p12_deadlines_are_a_month_extended_at_most_two_more_within_the_first(backend: Backend) {
    let h = harness(backend).await;
    let now = Utc::now();
    let r = h
        .file(Kind::Access, "ada@acme.example", "ada@acme.example", now)
        .await;
    let month = mindmesh_kit::db::micros(now)
        .checked_add_months(Months::new(1))
        .unwrap();
    assert_eq!(r.due_at, month);
    // Members do not extend; days and reason are checked.
    let member = Caller {
        subject: "u1".into(),
        tenant: Some(h.tenant),
        roles: vec![Role::Member],
    };
    assert!(matches!(
        h.requests
            .extend(&member, &h.scope(), &r.id, 10, "complex", now)
            .await
            .unwrap_err(),
        Error::PermissionDenied(_)
    ));
    for (days, reason, field) in [(0, "why", "days"), (61, "why", "days"), (10, "", "reason")] {
        let err = h
            .requests
            .extend(&h.admin, &h.scope(), &r.id, days, reason, now)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(field), "{err}");
    }
    let once = h
        .requests
        .extend(
            &h.admin,
            &h.scope(),
            &r.id,
            45,
            "many systems to search",
            now,
        )
        .await
        .unwrap();
    assert_eq!(once.due_at, month + Duration::days(45));
    assert_eq!(once.extension_reason, "many systems to search");
    // Two months past the first due date at most (59 to 62 days).
    let limit = month.checked_add_months(Months::new(2)).unwrap();
    let left = (limit - once.due_at).num_days();
    assert!(left >= 14, "{left}");
    let too_far = h
        .requests
        .extend(
            &h.admin,
            &h.scope(),
            &r.id,
            u32::try_from(left + 1).unwrap(),
            "more",
            now,
        )
        .await
        .unwrap_err();
    assert!(too_far.to_string().contains("two months"), "{too_far}");
    // After the first month, no extension at all.
    let late = h
        .requests
        .extend(
            &h.admin,
            &h.scope(),
            &r.id,
            1,
            "late",
            month + Duration::days(1),
        )
        .await
        .unwrap_err();
    assert!(matches!(late, Error::FailedPrecondition(_)), "{late}");
}

async fn p12_requests_are_listed_overdue_first_then_nearly_due(backend: Backend) {
    let h = harness(backend).await;
    let start = Utc::now() - Duration::days(45);
    let mut ids = Vec::new();
    // Filed 45, 40 and 10 days ago; the oldest one was extended by 30 days.
    for (ago, who) in [(45, "a"), (40, "b"), (10, "c")] {
        let at = start + Duration::days(45 - ago);
        let r = h
            .file(
                Kind::Access,
                &format!("{who}@acme.example"),
                &format!("{who}@acme.example"),
                at,
            )
            .await;
        ids.push(r.id);
    }
    h.requests
        .extend(&h.admin, &h.scope(), &ids[0], 30, "complex", start)
        .await
        .unwrap();
    let rejected = h
        .file(Kind::Access, "d@acme.example", "x@acme.example", start)
        .await;
    let now = Utc::now();
    let (page, next) = h.requests.list(&h.scope(), now, 0, 10).await.unwrap();
    assert!(next.is_none());
    let order: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
    // b is overdue (due 10 days ago); a is due in 15 days, c in ~20; the rejected last.
    assert_eq!(order, vec![&ids[1], &ids[0], &ids[2], &rejected.id]);
    assert!(page[0].overdue(now) && !page[1].overdue(now));
    let (first, next) = h.requests.list(&h.scope(), now, 0, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let (rest, _) = h
        .requests
        .list(&h.scope(), now, next.unwrap(), 2)
        .await
        .unwrap();
    assert_eq!(rest[0].id, ids[2]);
    // A member sees only what they filed.
    let own = Scope::Own(h.tenant, "someone-else".into());
    assert!(
        h.requests
            .list(&own, now, 0, 10)
            .await
            .unwrap()
            .0
            .is_empty()
    );
}

both_backends!(
    p12_a_requester_whose_email_is_not_the_subjects_is_rejected,
    p12_the_mailed_code_verifies_once,
    p12_wrong_codes_until_the_attempts_are_used_up_reject,
    p12_an_expired_code_rejects,
    p12_deadlines_are_a_month_extended_at_most_two_more_within_the_first,
    p12_requests_are_listed_overdue_first_then_nearly_due,
);
