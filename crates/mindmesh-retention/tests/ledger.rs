//! The deletion ledger on SQLite and on the real PostgreSQL, fed through the retention
//! service's event handler as the bus would feed it: events in any order, twice, for
//! cascades nobody opened, and attestations that do not verify (P06).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use mindmesh_kit::both_backends;
use mindmesh_kit::bus::consume::EventHandler;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::crypto::SigningKey;
use mindmesh_kit::ids::{CascadeId, IntegrationId, TenantId, UserId};
use mindmesh_kit::testing::{Backend, ContextGuard, service_context};
use mindmesh_kit::{Service, events};
use mindmesh_proto::mindmesh::common::v1::CascadeState;
use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use mindmesh_proto::mindmesh::events::v1::{
    AccountDeletionRequested, DeletionCompleted, Envelope, IntegrationDisconnected,
};
use mindmesh_retention::Migrator;
use mindmesh_retention::events::{Reasker, RetentionEvents};
use mindmesh_retention::ledger::{Cascade, CascadeKind, Ledger, Overall, PartState};
use mindmesh_retention::receipt_log;
use mindmesh_retention::receipts::{self, ReceiptFile};

struct Harness {
    handler: RetentionEvents,
    ledger: Ledger,
    ctx: ServiceContext,
    tenant: TenantId,
    _guard: ContextGuard,
}

async fn harness(backend: Backend) -> Harness {
    let (ctx, guard) = service_context::<Migrator>(Service::Retention, backend)
        .await
        .unwrap();
    let (attesters, ledger) = support::ledger(&ctx);
    let handler = support::events(&ctx, attesters, &ledger, support::holds(&ctx, &ledger));
    Harness {
        handler,
        ledger,
        ctx,
        tenant: TenantId::new(),
        _guard: guard,
    }
}

impl Harness {
    fn disconnected(&self, cascade: CascadeId) -> Envelope {
        events::envelope(
            Service::Ingest,
            Some(self.tenant),
            Payload::IntegrationDisconnected(IntegrationDisconnected {
                integration_id: IntegrationId::new().to_string(),
                cascade_id: cascade.to_string(),
            }),
        )
    }

    /// `service`'s attestation of `cascade`, signed with `key`.
    fn completed(&self, cascade: CascadeId, service: Service, key: &SigningKey) -> Envelope {
        let completion = events::signed_completion(
            key,
            DeletionCompleted {
                cascade_id: cascade.to_string(),
                service: service.to_proto() as i32,
                counts: [("rows".to_owned(), 7u64)].into(),
                destroyed_key_ids: vec!["key-1".into()],
                state: CascadeState::Done as i32,
                signature: String::new(),
                ground: String::new(),
            },
        );
        events::envelope(
            service,
            Some(self.tenant),
            Payload::DeletionCompleted(completion),
        )
    }

    /// `service`'s attestation of `cascade` with this process's key, as the services
    /// running beside retention sign.
    fn attested(&self, cascade: CascadeId, service: Service) -> Envelope {
        self.completed(cascade, service, &self.ctx.keys.signing)
    }

    async fn feed(&self, envelope: &Envelope) {
        self.handler.handle(envelope).await.unwrap();
    }

    /// The cascade as the ledger holds it.
    async fn cascade(&self, cascade: CascadeId) -> Cascade {
        self.ledger
            .get(Some(self.tenant), cascade)
            .await
            .unwrap()
            .expect("in the ledger")
    }

    async fn overall(&self, cascade: CascadeId) -> Overall {
        self.cascade(cascade).await.overall()
    }
}

impl Harness {
    /// A complete disconnect cascade.
    async fn complete_disconnect(&self) -> CascadeId {
        let cascade = CascadeId::new();
        self.feed(&self.disconnected(cascade)).await;
        for service in DISCONNECT {
            self.feed(&self.attested(cascade, service)).await;
        }
        assert_eq!(self.overall(cascade).await, Overall::Complete);
        cascade
    }

    /// The receipt of `cascade` with its inclusion proof, as a customer keeps it.
    async fn receipt_file(&self, cascade: CascadeId) -> ReceiptFile {
        let receipt = self
            .ledger
            .receipt(Some(self.tenant), cascade)
            .await
            .unwrap()
            .expect("a receipt");
        let inclusion = self
            .ledger
            .notary()
            .inclusion(self.ledger.db(), &receipt)
            .await
            .unwrap();
        ReceiptFile { receipt, inclusion }
    }

    fn retention_key(&self) -> [u8; 32] {
        self.ctx.keys.signing.public_key()
    }
}

const DISCONNECT: [Service; 3] = [Service::Ingest, Service::Permissions, Service::Storage];

async fn p06_a_disconnect_completes_once_every_participant_attested(backend: Backend) {
    let h = harness(backend).await;
    let cascade = CascadeId::new();
    h.feed(&h.disconnected(cascade)).await;
    let opened = h.cascade(cascade).await;
    assert_eq!(opened.kind, Some(CascadeKind::Integration));
    assert_eq!(opened.overall(), Overall::Pending);
    assert_eq!(opened.waiting_for(), DISCONNECT.to_vec());

    h.feed(&h.attested(cascade, Service::Storage)).await;
    h.feed(&h.attested(cascade, Service::Ingest)).await;
    let running = h.cascade(cascade).await;
    assert_eq!(running.overall(), Overall::Running);
    assert_eq!(running.waiting_for(), vec![Service::Permissions]);
    assert!(running.completed_at.is_none());

    h.feed(&h.attested(cascade, Service::Permissions)).await;
    let done = h.cascade(cascade).await;
    assert_eq!(done.overall(), Overall::Complete);
    assert!(done.waiting_for().is_empty());
    assert_eq!(done.parts.len(), 3);
    for part in &done.parts {
        assert_eq!(part.state, PartState::Done);
        assert_eq!(part.counts.get("rows"), Some(&7));
        assert_eq!(part.destroyed_key_ids, vec!["key-1".to_owned()]);
    }
    // Another tenant does not see it.
    assert!(
        h.ledger
            .get(Some(TenantId::new()), cascade)
            .await
            .unwrap()
            .is_none()
    );
}

async fn p06_completions_before_the_opening_event_are_kept(backend: Backend) {
    let h = harness(backend).await;
    let cascade = CascadeId::new();
    for service in DISCONNECT {
        h.feed(&h.attested(cascade, service)).await;
    }
    // Nobody knows yet who takes part: not complete, whatever came.
    let early = h.cascade(cascade).await;
    assert_eq!(early.kind, None);
    assert_eq!(early.parts.len(), 3);
    assert!(early.completed_at.is_none());
    assert_eq!(early.overall(), Overall::Running);

    h.feed(&h.disconnected(cascade)).await;
    assert_eq!(h.overall(cascade).await, Overall::Complete);
    // Opening it again changes nothing.
    h.feed(&h.disconnected(cascade)).await;
    let (page, _) = h.ledger.list(Some(h.tenant), 10, None, None).await.unwrap();
    assert_eq!(page.len(), 1, "one entry for the cascade");
    assert_eq!(page[0].parts.len(), 3);
}

async fn p06_a_repeated_completion_is_recorded_once(backend: Backend) {
    let h = harness(backend).await;
    let cascade = CascadeId::new();
    h.feed(&h.disconnected(cascade)).await;
    let first = h.attested(cascade, Service::Storage);
    h.feed(&first).await;
    let recorded = h.cascade(cascade).await;
    // The same event redelivered, and the service attesting again (a re-asked cascade).
    h.feed(&first).await;
    h.feed(&h.attested(cascade, Service::Storage)).await;
    let again = h.cascade(cascade).await;
    assert_eq!(again, recorded);
    assert_eq!(
        again.waiting_for(),
        vec![Service::Ingest, Service::Permissions]
    );
}

async fn p06_an_attestation_that_does_not_verify_is_a_failure(backend: Backend) {
    let h = harness(backend).await;
    let cascade = CascadeId::new();
    h.feed(&h.disconnected(cascade)).await;
    h.feed(&h.attested(cascade, Service::Ingest)).await;
    h.feed(&h.attested(cascade, Service::Permissions)).await;
    // Storage's part signed with some other key: recorded, as a failure.
    let forger = SigningKey::generate().unwrap();
    h.feed(&h.completed(cascade, Service::Storage, &forger))
        .await;
    let failed = h.cascade(cascade).await;
    assert_eq!(failed.overall(), Overall::Failed);
    let storage = failed
        .parts
        .iter()
        .find(|p| p.service == Service::Storage)
        .unwrap();
    assert_eq!(storage.state, PartState::Failed);
    assert!(
        storage.reason.contains("does not verify"),
        "{}",
        storage.reason
    );
    assert!(failed.completed_at.is_none());

    // A tampered count breaks the genuine signature too.
    let mut tampered = h.attested(cascade, Service::Storage);
    if let Some(Payload::DeletionCompleted(c)) = &mut tampered.payload {
        c.counts.insert("rows".into(), 0);
    }
    h.feed(&tampered).await;
    assert_eq!(h.overall(cascade).await, Overall::Failed);

    // Storage's own attestation, when it comes, settles it.
    h.feed(&h.attested(cascade, Service::Storage)).await;
    assert_eq!(h.overall(cascade).await, Overall::Complete);
}

async fn p06_a_reported_failure_never_completes(backend: Backend) {
    let h = harness(backend).await;
    let cascade = CascadeId::new();
    h.feed(&h.disconnected(cascade)).await;
    h.feed(&h.attested(cascade, Service::Ingest)).await;
    h.feed(&h.attested(cascade, Service::Storage)).await;
    let mut failure = DeletionCompleted {
        cascade_id: cascade.to_string(),
        service: Service::Permissions.to_proto() as i32,
        state: CascadeState::Failed as i32,
        ..Default::default()
    };
    failure = events::signed_completion(&h.ctx.keys.signing, failure);
    h.feed(&events::envelope(
        Service::Permissions,
        Some(h.tenant),
        Payload::DeletionCompleted(failure),
    ))
    .await;
    let c = h.cascade(cascade).await;
    assert_eq!(c.overall(), Overall::Failed);
    assert_eq!(c.waiting_for(), vec![Service::Permissions]);
}

async fn p06_a_user_deletion_waits_for_all_five_services(backend: Backend) {
    let h = harness(backend).await;
    let cascade = CascadeId::new();
    let requested = events::envelope(
        Service::Permissions,
        Some(h.tenant),
        Payload::AccountDeletionRequested(AccountDeletionRequested {
            cascade_id: cascade.to_string(),
            user_id: UserId::new().to_string(),
            sealed_email: h
                .ctx
                .event_seal
                .seal_email(h.tenant, "Ada@Example.com")
                .unwrap(),
        }),
    );
    h.feed(&requested).await;
    let opened = h.cascade(cascade).await;
    assert_eq!(opened.kind, Some(CascadeKind::User));
    assert_eq!(opened.waiting_for(), Service::ALL.to_vec());
    // The subject is a keyed hash, never the email.
    // (Hex: "ada" may well occur in it by chance; "@" and "example" cannot.)
    assert_eq!(opened.subject_hash.len(), 64);
    assert!(opened.subject_hash.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(!opened.subject_hash.contains("example"));
    assert_eq!(
        opened.subject_hash,
        h.ledger.subject_hash(h.tenant, "ada@example.com")
    );
    for service in DISCONNECT {
        h.feed(&h.attested(cascade, service)).await;
    }
    assert_eq!(h.overall(cascade).await, Overall::Running);
    h.feed(&h.attested(cascade, Service::Retention)).await;
    h.feed(&h.attested(cascade, Service::Dsar)).await;
    assert_eq!(h.overall(cascade).await, Overall::Complete);
}

async fn cascades_are_listed_newest_first_in_pages(backend: Backend) {
    let h = harness(backend).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let cascade = CascadeId::new();
        h.feed(&h.disconnected(cascade)).await;
        ids.push(cascade);
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = h.ledger.list(Some(h.tenant), 2, after, None).await.unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|c| c.id));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    ids.reverse();
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 5, "every cascade once: {seen:?}");
    // Newest first (cascades seen in the same microsecond by id, descending).
    let (all, _) = h.ledger.list(Some(h.tenant), 10, None, None).await.unwrap();
    let firsts: Vec<_> = all.iter().map(|c| (c.first_seen_at, c.id)).collect();
    let mut ordered = firsts.clone();
    ordered.sort_by(|a, b| b.cmp(a));
    assert_eq!(firsts, ordered);
    assert_eq!(seen, all.iter().map(|c| c.id).collect::<Vec<_>>());
    // Other tenants' cascades are not listed.
    assert!(
        h.ledger
            .list(Some(TenantId::new()), 10, None, None)
            .await
            .unwrap()
            .0
            .is_empty()
    );
}

async fn p06_a_complete_cascade_has_a_receipt_that_verifies_offline(backend: Backend) {
    let h = harness(backend).await;
    let cascade = h.complete_disconnect().await;
    let file = h.receipt_file(cascade).await;
    let r = &file.receipt;
    assert_eq!(r.cascade_id, cascade.to_string());
    assert_eq!(r.kind, "integration");
    assert_eq!(r.attestations.len(), 3);
    assert!(r.backups_expire_at - r.completed_at <= chrono::Duration::days(7));
    assert!(r.backups_expire_at > r.completed_at);
    let checked = receipts::verify(&file, &h.retention_key());
    assert!(checked.ok(), "{checked:?}");
    // Read back as JSON (the offline file), it still verifies.
    let json = serde_json::to_string(&file).unwrap();
    let read: ReceiptFile = serde_json::from_str(&json).unwrap();
    assert!(receipts::verify(&read, &h.retention_key()).ok());
    // Against another key, nothing verifies.
    let other = SigningKey::generate().unwrap().public_key();
    let checked = receipts::verify(&file, &other);
    assert!(
        !checked.signature_valid && !checked.checkpoint_valid,
        "{checked:?}"
    );
    // Not before it completes: a cascade still running has none.
    let running = CascadeId::new();
    h.feed(&h.disconnected(running)).await;
    assert!(
        h.ledger
            .receipt(Some(h.tenant), running)
            .await
            .unwrap()
            .is_none()
    );
}

async fn p06_a_changed_receipt_or_proof_is_rejected(backend: Backend) {
    let h = harness(backend).await;
    let cascade = h.complete_disconnect().await;
    let file = h.receipt_file(cascade).await;
    let key = h.retention_key();

    // One changed byte anywhere in what was signed.
    let mut changed = file.clone();
    changed.receipt.subject_hash.push('0');
    let checked = receipts::verify(&changed, &key);
    assert!(!checked.signature_valid && !checked.included, "{checked:?}");
    let mut changed = file.clone();
    changed.receipt.attestations[2]
        .counts
        .insert("rows".into(), 6);
    let checked = receipts::verify(&changed, &key);
    assert!(
        !checked.signature_valid && !checked.attestations_valid,
        "{checked:?}"
    );
    let mut changed = file.clone();
    let mut sig = changed.receipt.signature.into_bytes();
    sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
    changed.receipt.signature = String::from_utf8(sig).unwrap();
    assert!(!receipts::verify(&changed, &key).signature_valid);

    // A forged attestation, even inside a receipt signed with retention's key.
    let mut forged = file.clone();
    let forger = SigningKey::generate().unwrap();
    let a = &mut forged.receipt.attestations[0];
    a.signature = {
        let mut other = a.signature.clone().into_bytes();
        other[5] = if other[5] == b'A' { b'B' } else { b'A' };
        String::from_utf8(other).unwrap()
    };
    use base64::Engine;
    forged.receipt.signature = base64::engine::general_purpose::STANDARD
        .encode(h.ctx.keys.signing.sign(&forged.receipt.body()));
    let checked = receipts::verify(&forged, &key);
    assert!(checked.signature_valid, "{checked:?}");
    assert!(!checked.attestations_valid, "{checked:?}");
    drop(forger);

    // A wrong inclusion proof: a changed path, another index, another root.
    let mut wrong = file.clone();
    wrong.inclusion.audit_path.push("00".repeat(32));
    assert!(!receipts::verify(&wrong, &key).included);
    let mut wrong = file.clone();
    wrong.inclusion.root_hash = "11".repeat(32);
    assert!(!receipts::verify(&wrong, &key).included);
    let mut wrong = file.clone();
    wrong.inclusion.checkpoint = wrong.inclusion.checkpoint.replace("\n1\n", "\n2\n");
    let checked = receipts::verify(&wrong, &key);
    assert!(
        !checked.checkpoint_valid && !checked.included,
        "{checked:?}"
    );
}

async fn p06_consistency_proofs_hold_across_later_appends(backend: Backend) {
    let h = harness(backend).await;
    let first = h.complete_disconnect().await;
    let db = h.ledger.db();
    let early = receipt_log::head(db).await.unwrap();
    assert_eq!(early.size, 1);
    let mut heads = vec![early];
    for _ in 0..6 {
        h.complete_disconnect().await;
        heads.push(receipt_log::head(db).await.unwrap());
    }
    let last = *heads.last().unwrap();
    assert_eq!(last.size, 7);
    for old in &heads {
        let proof = receipt_log::prove_consistency(db, old.size, last.size)
            .await
            .unwrap();
        assert!(
            receipt_log::verify_consistency(old, &last, &proof),
            "{old:?}"
        );
        // A rewritten past does not match.
        let forged_old = receipt_log::TreeHead {
            size: old.size,
            root: [7u8; 32],
        };
        assert!(!receipt_log::verify_consistency(&forged_old, &last, &proof));
    }
    // The first receipt is still in the grown log, and its proof checks offline.
    let file = h.receipt_file(first).await;
    assert_eq!(file.inclusion.tree_size, 7);
    assert!(receipts::verify(&file, &h.retention_key()).ok());
}

/// The `integration.disconnected` events retention's outbox holds for `cascade`.
async fn requests_sent(h: &Harness, cascade: CascadeId) -> Vec<Envelope> {
    use prost::Message;
    use sea_orm::ConnectionTrait;
    let rows = h
        .ctx
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            h.ctx.db.get_database_backend(),
            "SELECT payload FROM outbox WHERE subject = 'integration.disconnected'",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| Envelope::decode(r.try_get::<Vec<u8>>("", "payload").unwrap().as_slice()).unwrap())
        .filter(|e| matches!(&e.payload, Some(Payload::IntegrationDisconnected(d)) if d.cascade_id == cascade.to_string()))
        .collect()
}

/// Metrics recorded in this test process, read back after a flush.
struct Metrics {
    provider: opentelemetry_sdk::metrics::SdkMeterProvider,
    exporter: opentelemetry_sdk::metrics::InMemoryMetricExporter,
}

impl Metrics {
    /// Installs an in-memory meter provider as the global one (each test runs in its own
    /// process).
    fn install() -> Self {
        use opentelemetry_sdk::metrics::{
            InMemoryMetricExporter, PeriodicReader, SdkMeterProvider,
        };
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        opentelemetry::global::set_meter_provider(provider.clone());
        Metrics { provider, exporter }
    }

    /// The last value of the u64 gauge `name`.
    fn gauge(&self, name: &str) -> Option<u64> {
        use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
        self.provider.force_flush().unwrap();
        let mut last = None;
        for resource in self.exporter.get_finished_metrics().unwrap() {
            for scope in resource.scope_metrics() {
                for metric in scope.metrics().filter(|m| m.name() == name) {
                    if let AggregatedMetrics::U64(MetricData::Gauge(g)) = metric.data() {
                        last = g.data_points().last().map(|p| p.value()).or(last);
                    }
                }
            }
        }
        last
    }
}

async fn p06_a_silent_participant_is_named_and_asked_again(backend: Backend) {
    let metrics = Metrics::install();
    let h = harness(backend).await;
    let cascade = CascadeId::new();
    let request = h.disconnected(cascade);
    h.feed(&request).await;
    h.feed(&h.attested(cascade, Service::Ingest)).await;
    h.feed(&h.attested(cascade, Service::Permissions)).await;
    let waiting = h.cascade(cascade).await;
    assert_eq!(waiting.waiting_for(), vec![Service::Storage]);
    let since = waiting.waiting_since().expect("waiting since");
    assert!(since <= chrono::Utc::now());

    let reasker = Reasker::new(
        h.ctx.clone(),
        h.ledger.clone(),
        chrono::Duration::minutes(15),
    );
    let now = chrono::Utc::now();
    assert_eq!(reasker.run_once(now).await.unwrap(), 0, "not stalled yet");
    assert!(requests_sent(&h, cascade).await.is_empty());
    let stalled_at = now + chrono::Duration::minutes(16);
    assert_eq!(reasker.run_once(stalled_at).await.unwrap(), 1);
    assert_eq!(
        metrics.gauge("mindmesh.retention.cascades_stalled"),
        Some(1),
        "the stalled cascade is counted"
    );
    // The same request, under a new id so that every inbox takes it.
    let sent = requests_sent(&h, cascade).await;
    assert_eq!(sent.len(), 1);
    assert_ne!(sent[0].id, request.id);
    assert_eq!(sent[0].payload, request.payload);
    assert_eq!(sent[0].tenant_id, request.tenant_id);
    // Asked again only once it has waited as long again.
    let minute = chrono::Duration::minutes(1);
    assert_eq!(reasker.run_once(stalled_at + minute).await.unwrap(), 0);
    assert_eq!(reasker.run_once(stalled_at + minute * 16).await.unwrap(), 1);
    assert_eq!(requests_sent(&h, cascade).await.len(), 2);
    // Listed as stalled; a fresh cascade is not.
    let fresh = CascadeId::new();
    h.feed(&h.disconnected(fresh)).await;
    let cutoff = h.cascade(fresh).await.first_seen_at;
    let (stalled, _) = h
        .ledger
        .list(Some(h.tenant), 10, None, Some(cutoff))
        .await
        .unwrap();
    assert_eq!(
        stalled.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![cascade]
    );
    // The request coming round again is the same cascade.
    h.feed(&sent[0]).await;
    assert_eq!(
        h.cascade(cascade).await.waiting_for(),
        vec![Service::Storage]
    );
    // Storage answers: complete, and nobody is asked any more.
    h.feed(&h.attested(cascade, Service::Storage)).await;
    assert_eq!(h.overall(cascade).await, Overall::Complete);
    assert!(h.cascade(cascade).await.waiting_since().is_none());
    assert_eq!(
        reasker.run_once(stalled_at + minute * 60).await.unwrap(),
        1,
        "only the fresh one"
    );
    assert_eq!(
        metrics.gauge("mindmesh.retention.cascades_stalled"),
        Some(1),
        "the complete one is no longer counted, the fresh one is"
    );
    let (stalled, _) = h
        .ledger
        .list(Some(h.tenant), 10, None, Some(cutoff))
        .await
        .unwrap();
    assert!(stalled.is_empty());
}

both_backends!(
    p06_a_silent_participant_is_named_and_asked_again,
    p06_a_complete_cascade_has_a_receipt_that_verifies_offline,
    p06_a_changed_receipt_or_proof_is_rejected,
    p06_consistency_proofs_hold_across_later_appends,
    p06_a_disconnect_completes_once_every_participant_attested,
    p06_completions_before_the_opening_event_are_kept,
    p06_a_repeated_completion_is_recorded_once,
    p06_an_attestation_that_does_not_verify_is_a_failure,
    p06_a_reported_failure_never_completes,
    p06_a_user_deletion_waits_for_all_five_services,
    cascades_are_listed_newest_first_in_pages,
);
