//! Third-party processors, end to end in both modes (P14, and P12's withdrawal of
//! consent): a tenant's switches, the gate every path to a processor passes, and the
//! usage-analytics exporter as its first caller — posting to a fake analytics processor
//! that records every batch it receives.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use mindmesh_kit::Service;
use mindmesh_kit::auth::Role;
use mindmesh_kit::ids::{TenantId, UserId};
use mindmesh_kit::processing::{self, Denial, Processor};
use mindmesh_proto::mindmesh::dsar::v1 as pb;
use mindmesh_proto::mindmesh::storage::v1 as storage;
use serde_json::Value;
use tonic::Code;

use crate::common::{Backend, TestServer, authed, note, reads};
use crate::dsar::{Dsar, completed, file_verified};

type Settings =
    pb::privacy_settings_service_client::PrivacySettingsServiceClient<tonic::transport::Channel>;

/// A fake analytics processor: every event of every batch posted to it, in order.
#[derive(Clone, Default)]
struct FakeProcessor {
    events: Arc<Mutex<Vec<Value>>>,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl FakeProcessor {
    async fn start() -> (Self, String) {
        let fake = FakeProcessor::default();
        let app = axum::Router::new()
            .route(
                "/v1/batch",
                post(
                    |State(fake): State<FakeProcessor>, body: String| async move {
                        let batch: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                        fake.bodies.lock().unwrap().push(body);
                        if let Some(events) = batch["events"].as_array() {
                            fake.events.lock().unwrap().extend(events.iter().cloned());
                        }
                        Json(serde_json::json!({"accepted": true}))
                    },
                ),
            )
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/batch", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (fake, url)
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// The next event after the first `seen`, waiting up to 20 s for it.
    async fn next(&self, seen: usize) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(event) = self.events().get(seen) {
                return event.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no usage event after {seen}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

async fn server(backend: Backend) -> (TestServer, FakeProcessor) {
    let (fake, url) = FakeProcessor::start().await;
    let server = TestServer::start_with(backend, |config| {
        config.analytics.endpoint = Some(url);
        config.analytics.batch_size = 1;
        config.analytics.flush_interval_ms = 20;
    })
    .await;
    (server, fake)
}

/// `token` opens `doc` and the processor receives the event: its actor pseudonym.
async fn opened(server: &TestServer, fake: &FakeProcessor, token: &str, doc: &str) -> Value {
    let seen = fake.events().len();
    reads(server, token, doc).await.unwrap();
    let event = fake.next(seen).await;
    assert_eq!(event["kind"], "document_opened", "{event}");
    event
}

/// Waits (up to 20 s) until storage's processor gate answers `expected` for `user` of
/// `tenant`: storage and ingest (the exporter's two callers) mirror the dsar service's
/// events.
async fn gate_says(server: &TestServer, tenant: TenantId, user: &str, expected: Option<Denial>) {
    let user: UserId = user.parse().unwrap();
    for service in [Service::Storage, Service::Ingest] {
        let db = server.service_db(service).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let answer = processing::denial(&db, tenant, Processor::Analytics, Some(user))
                .await
                .unwrap();
            if answer == expected {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{service}'s gate says {answer:?}, not {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// `token` opens `doc` as a sentinel after the others' attempts, and waits until its
/// event has arrived and a while after: whatever the others' attempts sent is in by then.
async fn settle(server: &TestServer, fake: &FakeProcessor, token: &str, doc: &str) {
    opened(server, fake, token, doc).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn actors(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .map(|e| e["actor"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn p14_the_gate_closes_for_a_switched_off_tenant_a_restricted_person_and_withdrawn_consent_and_payloads_hold_no_personal_data(
    backend: Backend,
) {
    let (server, fake) = server(backend).await;
    let (acme, admin) = server.create_tenant("Acme").await;
    let (globex, globex_admin) = server.create_tenant("Globex").await;
    let mut people = Vec::new();
    for (first, last, email) in [
        ("Adaqz", "Lovelaceqz", "adaqz@acme.example"),
        ("Bobqz", "Builderqz", "bobqz@acme.example"),
        ("Cyqz", "Cyberqz", "cyqz@acme.example"),
    ] {
        let user = server.create_user(&admin, first, last, email).await;
        let token = server.token(&user.id, Some(acme), &[Role::Member]);
        let doc = note(
            &server,
            &token,
            &format!("Title of {first}"),
            &format!("Text of {first}"),
        )
        .await;
        people.push((user, token, doc));
    }
    let dan = server
        .create_user(&globex_admin, "Danqz", "Globexqz", "danqz@globex.example")
        .await;
    let dan_token = server.token(&dan.id, Some(globex), &[Role::Member]);
    let dan_doc = note(&server, &dan_token, "Title of Danqz", "Text of Danqz").await;

    // Switched on by default: each opened document reaches the processor, once, under a
    // pseudonym of its own.
    let [
        (ada, ada_token, ada_doc),
        (bob, bob_token, bob_doc),
        (cy, cy_token, cy_doc),
    ] = <[_; 3]>::try_from(people).unwrap();
    let ada_seen = opened(&server, &fake, &ada_token, &ada_doc).await;
    let bob_seen = opened(&server, &fake, &bob_token, &bob_doc).await;
    let cy_seen = opened(&server, &fake, &cy_token, &cy_doc).await;
    let dan_seen = opened(&server, &fake, &dan_token, &dan_doc).await;
    assert_eq!(actors(&fake.events()).len(), 4, "{:?}", fake.events());
    assert_eq!(ada_seen["tenant"], bob_seen["tenant"]);
    assert_ne!(ada_seen["tenant"], dan_seen["tenant"]);

    // A search is one event too (its first page).
    let mut docs =
        storage::storage_service_client::StorageServiceClient::new(server.channel().await);
    let seen = fake.events().len();
    docs.list_documents(authed(
        storage::ListDocumentsRequest {
            query: "Adaqz".into(),
            page_size: 10,
            ..Default::default()
        },
        &ada_token,
    ))
    .await
    .unwrap();
    assert_eq!(fake.next(seen).await["kind"], "search_run");
    // So is a sync started (ingest's part of the exporter).
    let seen = fake.events().len();
    server.integration(acme, &admin).await;
    let sync = fake.next(seen).await;
    assert_eq!(sync["kind"], "sync_started", "{sync}");
    assert_eq!(sync["tenant"], ada_seen["tenant"]);

    // Globex switches analytics off; Bob is restricted; Cy withdraws her consent.
    let mut settings = Settings::new(server.channel().await);
    let off = settings
        .set_processor_settings(authed(
            pb::SetProcessorSettingsRequest {
                settings: Some(pb::ProcessorSettings {
                    analytics_enabled: false,
                    llm_enabled: false,
                }),
            },
            &globex_admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert!(!off.analytics_enabled);
    let mut dsar = Dsar::new(server.channel().await);
    let restriction = file_verified(
        &server,
        &mut dsar,
        &bob_token,
        pb::SubmitRequestRequest {
            kind: pb::RequestKind::Restriction as i32,
            subject_email: "bobqz@acme.example".into(),
            requester_email: "bobqz@acme.example".into(),
            ..Default::default()
        },
    )
    .await;
    completed(&mut dsar, &bob_token, &restriction).await;
    settings
        .record_consent(authed(
            pb::RecordConsentRequest {
                user_id: String::new(),
                purpose: "analytics".into(),
                granted: false,
            },
            &cy_token,
        ))
        .await
        .unwrap();
    gate_says(&server, globex, &dan.id, Some(Denial::SwitchedOff)).await;
    gate_says(&server, acme, &bob.id, Some(Denial::Restricted)).await;
    gate_says(&server, acme, &cy.id, Some(Denial::ConsentWithdrawn)).await;
    gate_says(&server, acme, &ada.id, None).await;

    // Their reads go on (the restricted person's own documents are kept, not served),
    // and nothing of them reaches the processor; Ada's still does.
    let before = fake.events().len();
    server.integration(globex, &globex_admin).await;
    assert_eq!(reads(&server, &dan_token, &dan_doc).await, Ok(()));
    assert_eq!(reads(&server, &cy_token, &cy_doc).await, Ok(()));
    assert_eq!(
        reads(&server, &bob_token, &bob_doc).await,
        Err(Code::NotFound)
    );
    settle(&server, &fake, &ada_token, &ada_doc).await;
    let after: Vec<Value> = fake.events()[before..].to_vec();
    assert_eq!(after.len(), 1, "only Ada's event: {after:?}");
    assert_eq!(after[0]["actor"], ada_seen["actor"]);
    for silenced in [&bob_seen, &cy_seen, &dan_seen] {
        assert!(
            !actors(&after).contains(silenced["actor"].as_str().unwrap()),
            "{silenced} sent after the gate closed"
        );
    }
    assert!(after.iter().all(|e| e["tenant"] != dan_seen["tenant"]));

    // Consent given again opens the gate again.
    settings
        .record_consent(authed(
            pb::RecordConsentRequest {
                user_id: String::new(),
                purpose: "analytics".into(),
                granted: true,
            },
            &cy_token,
        ))
        .await
        .unwrap();
    gate_says(&server, acme, &cy.id, None).await;
    let again = opened(&server, &fake, &cy_token, &cy_doc).await;
    assert_eq!(again["actor"], cy_seen["actor"]);

    // No payload names anyone or anything: every event is its four fields, none of
    // which holds an id, a name, an email, a title or a text the processor could read.
    let bodies = fake.bodies.lock().unwrap().clone();
    assert!(!bodies.is_empty());
    let mut canaries = vec![
        acme.to_string(),
        globex.to_string(),
        dan.id.clone(),
        dan_doc.clone(),
        "acme".into(),
        "globex".into(),
        "@".into(),
        "qz".into(),
        "Title".into(),
        "Text".into(),
    ];
    for (user, doc) in [(&ada, &ada_doc), (&bob, &bob_doc), (&cy, &cy_doc)] {
        canaries.push(user.id.clone());
        canaries.push(doc.clone());
    }
    for body in &bodies {
        for canary in &canaries {
            assert!(
                !body.to_lowercase().contains(&canary.to_lowercase()),
                "{canary} in a payload: {body}"
            );
        }
    }
    for event in fake.events() {
        let fields: BTreeSet<&str> = event
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            fields,
            BTreeSet::from(["kind", "tenant", "actor", "minute"]),
            "{event}"
        );
        assert!(
            event["minute"].as_str().unwrap().ends_with(":00Z"),
            "{event}"
        );
    }
    server.stop().await;
}

async fn p12_a_withdrawal_of_consent_stops_the_processing_it_covered(backend: Backend) {
    let (server, fake) = server(backend).await;
    let (acme, admin) = server.create_tenant("Acme").await;
    let eve = server
        .create_user(&admin, "Eve", "Example", "eve@acme.example")
        .await;
    let eve_token = server.token(&eve.id, Some(acme), &[Role::Member]);
    let doc = note(&server, &eve_token, "Eve's notes", "mine").await;
    let mut settings = Settings::new(server.channel().await);
    for purpose in ["analytics", "llm_processing"] {
        settings
            .record_consent(authed(
                pb::RecordConsentRequest {
                    user_id: String::new(),
                    purpose: purpose.into(),
                    granted: true,
                },
                &eve_token,
            ))
            .await
            .unwrap();
    }
    opened(&server, &fake, &eve_token, &doc).await;

    // Withdrawn through a data-subject request (every purpose she consented to).
    let mut dsar = Dsar::new(server.channel().await);
    let id = file_verified(
        &server,
        &mut dsar,
        &eve_token,
        pb::SubmitRequestRequest {
            kind: pb::RequestKind::WithdrawConsent as i32,
            subject_email: "eve@acme.example".into(),
            requester_email: "eve@acme.example".into(),
            ..Default::default()
        },
    )
    .await;
    let done = completed(&mut dsar, &eve_token, &id).await;
    assert_eq!(done.kind, pb::RequestKind::WithdrawConsent as i32);
    gate_says(&server, acme, &eve.id, Some(Denial::ConsentWithdrawn)).await;
    let db = server.service_db(Service::Storage).await;
    let llm = processing::denial(&db, acme, Processor::Llm, Some(eve.id.parse().unwrap()))
        .await
        .unwrap();
    // LLM is off for the tenant anyway (the default); a withdrawn consent closes it too.
    assert!(llm.is_some(), "{llm:?}");

    let before = fake.events().len();
    assert_eq!(reads(&server, &eve_token, &doc).await, Ok(()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fake.events().len(),
        before,
        "{:?}",
        &fake.events()[before..]
    );
    server.stop().await;
}

async fn p14_processor_switches_preferences_and_consents_are_the_callers_to_set_and_audited(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let (acme, admin) = server.create_tenant("Acme").await;
    let ada = server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    let bob = server
        .create_user(&admin, "Bob", "Builder", "bob@acme.example")
        .await;
    let ada_token = server.token(&ada.id, Some(acme), &[Role::Member]);
    let mut settings = Settings::new(server.channel().await);

    // Defaults: analytics on (pseudonymized), the LLM off; no marketing mail.
    let switches = settings
        .get_processor_settings(authed(pb::GetProcessorSettingsRequest {}, &ada_token))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert!(
        switches.analytics_enabled && !switches.llm_enabled,
        "{switches:?}"
    );
    let prefs = settings
        .get_communication_preferences(authed(
            pb::GetCommunicationPreferencesRequest::default(),
            &ada_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .preferences
        .unwrap();
    assert!(!prefs.marketing_mail);

    // Only an admin switches processors; a request without settings names the field.
    let on = pb::SetProcessorSettingsRequest {
        settings: Some(pb::ProcessorSettings {
            analytics_enabled: false,
            llm_enabled: true,
        }),
    };
    let denied = settings
        .set_processor_settings(authed(on, &ada_token))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let missing = settings
        .set_processor_settings(authed(
            pb::SetProcessorSettingsRequest { settings: None },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(missing.message().contains("settings"), "{missing:?}");
    settings
        .set_processor_settings(authed(on, &admin))
        .await
        .unwrap();
    let switches = settings
        .get_processor_settings(authed(pb::GetProcessorSettingsRequest {}, &admin))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert!(
        !switches.analytics_enabled && switches.llm_enabled,
        "{switches:?}"
    );

    // Preferences: one's own, or an admin's for anyone of the tenant.
    let set = |user: &str, marketing: bool| pb::SetCommunicationPreferencesRequest {
        user_id: user.to_owned(),
        preferences: Some(pb::CommunicationPreferences {
            marketing_mail: marketing,
            administrative_contact: false,
        }),
    };
    settings
        .set_communication_preferences(authed(set("", true), &ada_token))
        .await
        .unwrap();
    let others = settings
        .set_communication_preferences(authed(set(&bob.id, true), &ada_token))
        .await
        .unwrap_err();
    assert_eq!(others.code(), Code::PermissionDenied);
    assert!(others.message().contains("user_id"), "{others:?}");
    let malformed = settings
        .set_communication_preferences(authed(set("not-a-user", true), &admin))
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert!(malformed.message().contains("user_id"), "{malformed:?}");
    // Only an admin makes themselves a contact for the tenant's administrative notices.
    let mut contact = set("", true);
    if let Some(p) = contact.preferences.as_mut() {
        p.administrative_contact = true;
    }
    let refused = settings
        .set_communication_preferences(authed(contact, &ada_token))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("administrative_contact"),
        "{refused:?}"
    );
    let mine = settings
        .get_communication_preferences(authed(
            pb::GetCommunicationPreferencesRequest {
                user_id: ada.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .preferences
        .unwrap();
    assert!(mine.marketing_mail);

    // Consent is the person's own; an admin may record its withdrawal; a purpose is a
    // name.
    let consent = |user: &str, purpose: &str, granted: bool| pb::RecordConsentRequest {
        user_id: user.to_owned(),
        purpose: purpose.to_owned(),
        granted,
    };
    let given_by_admin = settings
        .record_consent(authed(consent(&bob.id, "llm_processing", true), &admin))
        .await
        .unwrap_err();
    assert_eq!(given_by_admin.code(), Code::PermissionDenied);
    settings
        .record_consent(authed(consent(&bob.id, "llm_processing", false), &admin))
        .await
        .unwrap();
    let bad = settings
        .record_consent(authed(consent("", "LLM processing!", true), &ada_token))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("purpose"), "{bad:?}");

    // Each change is in the dsar service's audit log.
    let events = crate::common::audit_events(&server, Service::Dsar, &admin).await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for action in ["processors.set", "preferences.set", "consent.withdraw"] {
        assert!(
            actions.contains(&action),
            "{action} not audited: {actions:?}"
        );
    }
    server.stop().await;
}

both_modes!(
    p14_the_gate_closes_for_a_switched_off_tenant_a_restricted_person_and_withdrawn_consent_and_payloads_hold_no_personal_data,
    p12_a_withdrawal_of_consent_stops_the_processing_it_covered,
    p14_processor_switches_preferences_and_consents_are_the_callers_to_set_and_audited,
);
