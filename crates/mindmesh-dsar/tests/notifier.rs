//! The notifier on both databases, with a mailer that fails on demand: a notification
//! is queued once per (event, recipient), a failed send is retried after its backoff and
//! sent once, every try failing ends in `failed` with the reason, and a person gone from
//! the tenant is recorded as such instead of retried forever.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{Duration, Utc};
use mindmesh_dsar::Migrator;
use mindmesh_dsar::mail::{Mail, Mailer};
use mindmesh_dsar::notifier::{Addresses, Notice, Notifier, Origin};
use mindmesh_dsar::store::notifications as store;
use mindmesh_kit::ids::{TenantId, UserId};
use mindmesh_kit::testing::{Backend, service_context};
use mindmesh_kit::{Error, Result, Service};

/// Fails the first `failures` sends, then keeps every mail.
struct Flaky {
    failures: AtomicUsize,
    sent: std::sync::Mutex<Vec<Mail>>,
}

#[async_trait::async_trait]
impl Mailer for Flaky {
    async fn send(&self, mail: &Mail) -> Result<()> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::Unavailable(
                "the SMTP relay refused it for now".into(),
            ));
        }
        self.sent.lock().unwrap().push(mail.clone());
        Ok(())
    }
}

/// Knows one account.
struct OneAccount(UserId);

#[async_trait::async_trait]
impl Addresses for OneAccount {
    async fn email(&self, _tenant: TenantId, user: UserId) -> Result<Option<String>> {
        Ok((user == self.0).then(|| "ada@acme.example".to_owned()))
    }
}

fn notice(user: UserId) -> Notice {
    Notice {
        user_id: user.to_string(),
        template: "dsar_update".into(),
        administrative: true,
        params: BTreeMap::from([
            ("request_id".to_owned(), "r-1".to_owned()),
            ("status".to_owned(), "completed".to_owned()),
        ]),
    }
}

async fn failed_sends_are_retried_after_their_backoff_and_given_up_with_the_reason(
    backend: Backend,
) {
    let (ctx, _guard) = service_context::<Migrator>(Service::Dsar, backend)
        .await
        .unwrap();
    let ada = UserId::new();
    let mailer = Arc::new(Flaky {
        failures: AtomicUsize::new(2),
        sent: Default::default(),
    });
    let notifier = Notifier::new(
        ctx.db.clone(),
        mailer.clone(),
        Arc::new(OneAccount(ada)),
        mindmesh_dsar::unsubscribe::Tokens::new(&ctx.keys.master, Duration::days(30)).unwrap(),
        "http://127.0.0.1:8480".into(),
        &ctx.keys.master,
        3,
    )
    .unwrap();
    let tenant = TenantId::new();
    let origin = |event: &'static str| Origin {
        event_id: event,
        tenant,
        breach_id: None,
    };
    let now = Utc::now();
    assert_eq!(
        notifier
            .queue(&ctx.db, &origin("e-1"), &notice(ada), now)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        notifier
            .queue(&ctx.db, &origin("e-1"), &notice(ada), now)
            .await
            .unwrap(),
        0,
        "the same event queues nothing twice"
    );

    // Two failures, each retried only once its backoff (2 s, then 4 s) has passed.
    assert_eq!(notifier.deliver_due(now).await.unwrap(), 1);
    assert_eq!(
        notifier
            .deliver_due(now + Duration::seconds(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        notifier
            .deliver_due(now + Duration::seconds(70))
            .await
            .unwrap(),
        1
    );
    let row = &store::of_user(&ctx.db, tenant, &ada.to_string())
        .await
        .unwrap()[0];
    assert_eq!((row.status.as_str(), row.attempts), (store::QUEUED, 2));
    assert!(row.reason.contains("for now"), "{row:?}");
    assert_eq!(
        notifier
            .deliver_due(now + Duration::seconds(140))
            .await
            .unwrap(),
        1
    );
    let row = &store::of_user(&ctx.db, tenant, &ada.to_string())
        .await
        .unwrap()[0];
    assert_eq!(row.status, store::SENT, "{row:?}");
    assert_eq!(mailer.sent.lock().unwrap().len(), 1);
    assert_eq!(
        mailer.sent.lock().unwrap()[0].id,
        row.id,
        "the Message-ID is the row's"
    );
    assert_eq!(
        notifier
            .deliver_due(now + Duration::seconds(900))
            .await
            .unwrap(),
        0
    );

    // Every try failing: given up after three, with the reason.
    mailer.failures.store(10, Ordering::SeqCst);
    notifier
        .queue(&ctx.db, &origin("e-2"), &notice(ada), now)
        .await
        .unwrap();
    for minutes in [1, 20, 40, 60] {
        notifier
            .deliver_due(now + Duration::minutes(minutes))
            .await
            .unwrap();
    }
    let rows = store::of_user(&ctx.db, tenant, &ada.to_string())
        .await
        .unwrap();
    let given_up = rows.iter().find(|r| r.event_id == "e-2").unwrap();
    assert_eq!(
        (given_up.status.as_str(), given_up.attempts),
        (store::FAILED, 3)
    );
    assert!(given_up.reason.contains("for now"), "{given_up:?}");

    // Someone without an account: recorded, not retried; an unknown template too.
    let gone = UserId::new();
    notifier
        .queue(&ctx.db, &origin("e-3"), &notice(gone), now)
        .await
        .unwrap();
    let unknown = Notice {
        template: "free_text".into(),
        ..notice(ada)
    };
    notifier
        .queue(&ctx.db, &origin("e-4"), &unknown, now)
        .await
        .unwrap();
    mailer.failures.store(0, Ordering::SeqCst);
    notifier
        .deliver_due(now + Duration::hours(2))
        .await
        .unwrap();
    let row = &store::of_user(&ctx.db, tenant, &gone.to_string())
        .await
        .unwrap()[0];
    assert_eq!(
        (row.status.as_str(), row.reason.as_str()),
        (store::FAILED, "the account no longer exists")
    );
    let rows = store::of_user(&ctx.db, tenant, &ada.to_string())
        .await
        .unwrap();
    let free = rows.iter().find(|r| r.event_id == "e-4").unwrap();
    assert_eq!((free.status.as_str(), free.attempts), (store::FAILED, 0));
    assert_eq!(
        mailer.sent.lock().unwrap().len(),
        1,
        "nothing else was sent"
    );
}

mindmesh_kit::both_backends!(
    failed_sends_are_retried_after_their_backoff_and_given_up_with_the_reason
);
