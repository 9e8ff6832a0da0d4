//! Carrying an access request out, on SQLite and on the real PostgreSQL, with one
//! service failing: the request waits and names it, the failure is never taken for "no
//! data", the service is asked again after a backoff, and the request completes only
//! once every part is in — with an archive holding every service's records.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{Duration, Utc};
use mindmesh_dsar::Migrator;
use mindmesh_dsar::consents::Consents;
use mindmesh_dsar::execution::{Executor, ExportedRecord, Peers};
use mindmesh_dsar::requests::{Kind, NewRequest, Requests, Scope, Status};
use mindmesh_kit::auth::{Caller, Role};
use mindmesh_kit::both_backends;
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::testing::{Backend, service_context};
use mindmesh_kit::{Error, Service};

/// Every service answers one record naming it; storage fails its first `failures`
/// calls, as a service that is down does.
struct Services {
    failures: u32,
    storage_calls: AtomicU32,
}

#[async_trait::async_trait]
impl Peers for Services {
    async fn export(
        &self,
        service: Service,
        _tenant: TenantId,
        email: &str,
        _request_id: &str,
    ) -> mindmesh_kit::Result<Vec<ExportedRecord>> {
        if service == Service::Storage
            && self.storage_calls.fetch_add(1, Ordering::SeqCst) < self.failures
        {
            return Err(Error::Unavailable("the storage service is down".into()));
        }
        Ok(vec![ExportedRecord {
            kind: "record".into(),
            id: format!("{service}-1"),
            json: serde_json::json!({ "held_by": service.as_str(), "about": email }),
            updated_at: Utc::now(),
        }])
    }
}

async fn p12_an_access_request_waits_for_a_failed_service_and_never_completes_early(
    backend: Backend,
) {
    let (ctx, _guard) = service_context::<Migrator>(Service::Dsar, backend)
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
    let services = Arc::new(Services {
        failures: 2,
        storage_calls: AtomicU32::new(0),
    });
    let executor = Executor::new(
        &ctx,
        requests.clone(),
        Consents::new(&ctx),
        services.clone(),
        Duration::days(7),
    )
    .unwrap();
    let tenant = TenantId::new();
    let admin = Caller {
        subject: "dpo".into(),
        tenant: Some(tenant),
        roles: vec![Role::Admin],
    };
    let scope = Scope::Tenant(tenant);
    let now = Utc::now();
    let filed = requests
        .submit(
            &admin,
            tenant,
            NewRequest {
                kind: Kind::Access,
                subject_email: "ada@acme.example".into(),
                requester_email: "ada@acme.example".into(),
                rectification: None,
                lift: false,
                purpose: String::new(),
            },
            now,
        )
        .await
        .unwrap();
    let code = outbox.code_for("ada@acme.example");
    let verified = requests
        .verify(&admin, &scope, &filed.id, &code, now)
        .await
        .unwrap();
    assert_eq!(verified.status, Status::InProgress);

    // Storage is down: four parts are in, storage's failed with its reason.
    assert_eq!(executor.run_once(now).await.unwrap(), 0);
    let parts = executor.parts(&filed.id).await.unwrap();
    assert_eq!(parts.iter().filter(|p| p.state == "done").count(), 4);
    let storage = parts
        .iter()
        .find(|p| p.service == Service::Storage)
        .unwrap();
    assert_eq!(storage.state, "failed");
    assert!(storage.error.contains("down"), "{storage:?}");
    assert_eq!(
        requests.get(&scope, &filed.id).await.unwrap().status,
        Status::InProgress
    );
    // Not asked again before its backoff; asked again after, fails once more.
    assert_eq!(executor.run_once(now).await.unwrap(), 0);
    assert_eq!(services.storage_calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        executor.run_once(now + Duration::seconds(3)).await.unwrap(),
        0
    );
    assert_eq!(services.storage_calls.load(Ordering::SeqCst), 2);
    assert!(executor.archive(&filed.id).await.unwrap().is_none());
    // Back: complete, with every service's records in the archive.
    assert_eq!(
        executor
            .run_once(now + Duration::seconds(10))
            .await
            .unwrap(),
        1
    );
    let done = requests.get(&scope, &filed.id).await.unwrap();
    assert_eq!(done.status, Status::Completed);
    let archive = executor.archive(&filed.id).await.unwrap().unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).unwrap();
    for service in Service::ALL {
        let mut text = String::new();
        zip.by_name(&format!("{service}.json"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.contains(&format!("{service}-1")), "{text}");
    }
    // Completed once: another round changes nothing.
    assert_eq!(
        executor
            .run_once(now + Duration::seconds(20))
            .await
            .unwrap(),
        0
    );
    // Past its time the archive is deleted.
    executor.run_once(now + Duration::days(8)).await.unwrap();
    assert!(executor.archive(&filed.id).await.unwrap().is_none());
}

both_backends!(p12_an_access_request_waits_for_a_failed_service_and_never_completes_early,);
