//! The storage service's part of the disconnect cascade, in both modes: on
//! `integration.disconnected` the integration's documents are unreadable at once (their
//! key destroyed) and then deleted, and storage attests with a signed `deletion.completed`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::{Backend, TestServer};
use mindmesh_kit::Service;
use mindmesh_kit::bus::EventBus;
use mindmesh_kit::bus::embedded::EmbeddedBus;
use mindmesh_kit::bus::nats::NatsBus;
use mindmesh_kit::config::Mode;
use mindmesh_kit::ids::{IntegrationId, TenantId};
use mindmesh_kit::keyfiles::KeyMaterial;
use mindmesh_kit::keys::Keystore;
use mindmesh_proto::mindmesh::events::v1::IntegrationDisconnected;
use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use mindmesh_storage::documents::{Documents, NewDocument, Origin, PutOutcome};

async fn p06_disconnect_erases_the_integrations_documents(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mode = if backend == Backend::Embedded {
        Mode::Embedded
    } else {
        Mode::Distributed
    };
    let keys = KeyMaterial::load(&server.config, mode).unwrap();
    let db = server.service_db(Service::Storage).await;
    let key_db = mindmesh_kit::db::connect(&server.config.keystore_url(Service::Storage), 2)
        .await
        .unwrap();
    let documents = Documents::new(db, Keystore::new(key_db, keys.master.clone()));
    let tenant = TenantId::new();
    let drive = IntegrationId::new();
    let github = IntegrationId::new();
    let mut ids = Vec::new();
    for (integration, n) in [(drive, 5), (github, 2)] {
        for i in 0..n {
            let outcome = documents
                .put(
                    tenant,
                    NewDocument {
                        origin: Origin::Imported {
                            integration,
                            external_id: format!("f{i}"),
                            source_version: "1".into(),
                        },
                        title: format!("doc {i}"),
                        content: b"words".to_vec(),
                        mime_type: "text/plain".into(),
                        source_url: String::new(),
                        source_owner: String::new(),
                        modified_at: Utc::now(),
                    },
                )
                .await
                .unwrap();
            let PutOutcome::Created(id) = outcome else {
                panic!("{outcome:?}")
            };
            ids.push((integration, id));
        }
    }

    let bus: Arc<dyn EventBus> = match backend {
        // The embedded log is a file; a second handle on it sees the same events.
        Backend::Embedded => Arc::new(
            EmbeddedBus::open(
                &mindmesh_kit::db::sqlite_url(&server.config.data_dir.join("events.db")),
                Duration::from_secs(30),
            )
            .await
            .unwrap(),
        ),
        Backend::Distributed => Arc::new(NatsBus::connect(&server.config.bus).await.unwrap()),
    };
    let mut observer = bus.subscribe("observer").await.unwrap();
    let event = mindmesh_kit::events::envelope(
        Service::Ingest,
        Some(tenant),
        Payload::IntegrationDisconnected(IntegrationDisconnected {
            integration_id: drive.to_string(),
            cascade_id: "c-drive".into(),
        }),
    );
    bus.publish(&mindmesh_kit::events::to_bus_message(&event).unwrap())
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let done = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no deletion.completed from storage"
        );
        let Some(d) = observer.next(Duration::from_millis(500)).await.unwrap() else {
            continue;
        };
        let envelope = mindmesh_kit::events::decode(&d.message).unwrap();
        d.ack().await.unwrap();
        if let Some(Payload::DeletionCompleted(done)) = envelope.payload
            && done.cascade_id == "c-drive"
            && done.service == Service::Storage.to_proto() as i32
        {
            break done;
        }
    };
    assert_eq!(done.counts.get("documents"), Some(&5));
    assert_eq!(done.destroyed_key_ids.len(), 1);
    assert!(mindmesh_kit::events::verify_completion(
        &keys.signing.public_key(),
        &done
    ));
    for (integration, id) in ids {
        let found = documents.get(tenant, id).await;
        if integration == drive {
            assert!(
                matches!(found, Err(mindmesh_kit::Error::NotFound(_))),
                "{found:?}"
            );
        } else {
            assert!(found.is_ok(), "the other integration's documents stay");
        }
    }
    server.stop().await;
}

both_modes!(p06_disconnect_erases_the_integrations_documents);
