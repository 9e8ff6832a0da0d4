//! The storage service's keys on SQLite and PostgreSQL: rotation while documents are
//! being written and read (no content re-encrypted, every document and every blind-index
//! term still valid, old versions retired), master key rotation, and crypto-shredding
//! against a restored backup.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chrono::Utc;
use mindmesh_kit::Service;
use mindmesh_kit::both_backends;
use mindmesh_kit::crypto::SecretKey;
use mindmesh_kit::ids::{DocumentId, IntegrationId, TenantId, UserId};
use mindmesh_kit::keys::Keystore;
use mindmesh_kit::testing::{Backend, service_context};
use mindmesh_storage::Migrator;
use mindmesh_storage::documents::{Documents, Filter, NewDocument, Origin, PutOutcome};
use sea_orm::{ConnectionTrait, DatabaseConnection};

fn imported(integration: IntegrationId, i: usize) -> NewDocument {
    NewDocument {
        origin: Origin::Imported {
            integration,
            external_id: format!("f{i}"),
            source_version: "1".into(),
        },
        title: format!("Report {i}"),
        content: format!("common words and number{i}").into_bytes(),
        mime_type: "text/plain".into(),
        source_url: String::new(),
        source_owner: "owner".into(),
        modified_at: Utc::now(),
    }
}

fn id_of(outcome: PutOutcome) -> DocumentId {
    match outcome {
        PutOutcome::Created(id) | PutOutcome::Updated(id) | PutOutcome::Unchanged(id) => id,
        PutOutcome::SkippedArchived => panic!("not archived"),
    }
}

/// A second connection to the keystore database: what `mindmesh keys rotate` (another
/// process) works through, with no cache shared with the running service.
async fn other_connection(url: &str) -> DatabaseConnection {
    mindmesh_kit::db::connect(url, 2).await.unwrap()
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

async fn rotation_while_serving(backend: Backend) {
    let (ctx, _guard) = service_context::<Migrator>(Service::Storage, backend)
        .await
        .unwrap();
    let documents = Documents::new(ctx.db.clone(), ctx.keystore.clone());
    let tenant = TenantId::new();
    let drive = IntegrationId::new();
    let owner = UserId::new();
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(id_of(
            documents.put(tenant, imported(drive, i)).await.unwrap(),
        ));
    }
    let native = DocumentId::new();
    documents
        .put(
            tenant,
            NewDocument {
                origin: Origin::Native { id: native, owner },
                title: "Personal notes".into(),
                content: b"my common words".to_vec(),
                mime_type: "text/plain".into(),
                source_url: String::new(),
                source_owner: String::new(),
                modified_at: Utc::now(),
            },
        )
        .await
        .unwrap();
    ids.push(native);

    // Load: writes (new documents, so new data keys too) and reads, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let load = {
        let documents = documents.clone();
        let ids = ids.clone();
        let stop = stop.clone();
        let ops = ops.clone();
        tokio::spawn(async move {
            let mut i = 1000;
            let mut written = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // A new integration now and then: a data key created mid-rotation.
                let integration = if i % 7 == 0 {
                    IntegrationId::new()
                } else {
                    drive
                };
                let id = id_of(
                    documents
                        .put(tenant, imported(integration, i))
                        .await
                        .unwrap(),
                );
                written.push(id);
                let read = documents.get(tenant, ids[i % ids.len()]).await.unwrap();
                assert!(
                    read.content.starts_with(b"common words")
                        || read.content.starts_with(b"my common")
                );
                let found = documents
                    .find(tenant, &format!("number{i}"), &Filter::default(), 0, 5)
                    .await
                    .unwrap();
                assert_eq!(
                    found,
                    vec![id],
                    "a term written during the rotation is found"
                );
                ops.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            written
        })
    };

    // Three rotations from "another process", while the load runs.
    let url = ctx.config.keystore_url(Service::Storage);
    let rotator = Keystore::new(other_connection(&url).await, ctx.keys.master.clone());
    let mut rewrapped = 0;
    for _ in 0..3 {
        let report = rotator.rotate(None).await.unwrap();
        assert_eq!(report.tenants, 1);
        rewrapped += report.data_keys_rewrapped;
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let written = load.await.unwrap();
    assert!(
        ops.load(Ordering::Relaxed) > 0,
        "the load ran during the rotations"
    );
    // Index key, two data keys at least: each rotation re-wrapped every data key.
    assert!(rewrapped >= 3 * 3, "re-wrapped {rewrapped}");

    // A last pass retires whatever the load kept in use; then nothing old is left.
    let report = rotator.rotate(None).await.unwrap();
    assert_eq!(report.versions_in_use, 0, "{report:?}");
    assert_eq!(report.under_previous_masters, 0);
    let keys_db = rotator.db();
    assert_eq!(
        count(keys_db, "SELECT COUNT(*) FROM tenant_key_history").await,
        0
    );
    assert_eq!(
        count(
            keys_db,
            "SELECT CAST(MAX(version) AS BIGINT) FROM tenant_keys"
        )
        .await,
        5,
        "four rotations after version 1"
    );
    assert_eq!(
        count(
            keys_db,
            "SELECT COUNT(*) FROM data_keys WHERE kek_version <> 5"
        )
        .await,
        0
    );

    // A fresh process (no cached keys) opens every document and finds by every term.
    let fresh = Documents::new(
        ctx.db.clone(),
        Keystore::new(other_connection(&url).await, ctx.keys.master.clone()),
    );
    for id in ids.iter().chain(written.iter()) {
        fresh.get(tenant, *id).await.unwrap();
    }
    let found = fresh
        .find(tenant, "common", &Filter::default(), 0, 10_000)
        .await
        .unwrap();
    assert_eq!(found.len(), ids.len() + written.len());
    assert_eq!(
        fresh.get(tenant, native).await.unwrap().title,
        "Personal notes"
    );

    // Master key rotation: the new master with the old one as previous re-wraps every
    // tenant key; afterwards the new master alone opens everything, the old one nothing.
    let new_master = SecretKey::generate().unwrap();
    let during = Keystore::new(other_connection(&url).await, new_master.clone())
        .with_previous_masters(vec![ctx.keys.master.clone()]);
    let report = during.rotate(None).await.unwrap();
    assert_eq!(report.under_previous_masters, 0, "{report:?}");
    let after = Documents::new(
        ctx.db.clone(),
        Keystore::new(other_connection(&url).await, new_master),
    );
    for id in &ids {
        after.get(tenant, *id).await.unwrap();
    }
    let old_only = Documents::new(
        ctx.db.clone(),
        Keystore::new(other_connection(&url).await, ctx.keys.master.clone()),
    );
    let err = old_only.get(tenant, ids[0]).await.unwrap_err();
    assert!(
        err.to_string().contains("keys.previous_master_key_files"),
        "the old master alone names what is missing: {err}"
    );
}

/// Crypto-shredding: a backup of the document rows taken before an integration was
/// erased, restored afterwards, cannot be read — its key no longer exists anywhere.
async fn restored_backup_of_a_shredded_scope_stays_unreadable(backend: Backend) {
    let (ctx, _guard) = service_context::<Migrator>(Service::Storage, backend)
        .await
        .unwrap();
    let documents = Documents::new(ctx.db.clone(), ctx.keystore.clone());
    let tenant = TenantId::new();
    let (drive, github) = (IntegrationId::new(), IntegrationId::new());
    let gone = id_of(documents.put(tenant, imported(drive, 1)).await.unwrap());
    let kept = id_of(documents.put(tenant, imported(github, 2)).await.unwrap());

    // The backup: every column of the documents table, as a dump would hold it.
    let backup = ctx
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            ctx.db.get_database_backend(),
            "SELECT * FROM documents".to_owned(),
        ))
        .await
        .unwrap();
    assert_eq!(backup.len(), 2);

    documents
        .erase_integration(tenant, drive, mindmesh_kit::ids::CascadeId::new(), None)
        .await
        .unwrap()
        .unwrap();
    // Restore the backup over the live database: delete everything, re-insert the rows.
    let db = &ctx.db;
    let backend_kind = db.get_database_backend();
    db.execute_raw(sea_orm::Statement::from_string(
        backend_kind,
        "DELETE FROM documents".to_owned(),
    ))
    .await
    .unwrap();
    for row in &backup {
        let mut columns: Vec<&str> = Vec::new();
        let mut values: Vec<sea_orm::sea_query::SimpleExpr> = Vec::new();
        for c in [
            "id",
            "tenant_id",
            "integration_id",
            "source_index",
            "source_version",
            "key_id",
            "mime_type",
            "owner",
            "state",
        ] {
            columns.push(c);
            values.push(row.try_get::<String>("", c).unwrap().into());
        }
        for c in ["title_ct", "content_ct", "source_url_ct", "external_id_ct"] {
            columns.push(c);
            values.push(row.try_get::<Vec<u8>>("", c).unwrap().into());
        }
        for c in ["size_bytes", "modified_us"] {
            columns.push(c);
            values.push(row.try_get::<i64>("", c).unwrap().into());
        }
        for c in ["modified_at", "created_at", "updated_at"] {
            columns.push(c);
            values.push(row.try_get::<chrono::DateTime<Utc>>("", c).unwrap().into());
        }
        let insert = sea_orm::sea_query::Query::insert()
            .into_table("documents")
            .columns(columns)
            .values_panic(values)
            .to_owned();
        db.execute(&insert).await.unwrap();
    }
    // The restored rows are there, but the erased integration's cannot be opened.
    assert_eq!(count(db, "SELECT COUNT(*) FROM documents").await, 2);
    assert!(matches!(
        documents.get(tenant, gone).await.unwrap_err(),
        mindmesh_kit::Error::NotFound(_)
    ));
    // A fresh process without any cached key cannot either.
    let url = ctx.config.keystore_url(Service::Storage);
    let fresh = Documents::new(
        ctx.db.clone(),
        Keystore::new(other_connection(&url).await, ctx.keys.master.clone()),
    );
    assert!(matches!(
        fresh.get(tenant, gone).await.unwrap_err(),
        mindmesh_kit::Error::NotFound(_)
    ));
    assert_eq!(fresh.get(tenant, kept).await.unwrap().title, "Report 2");
}

both_backends!(
    rotation_while_serving,
    restored_backup_of_a_shredded_scope_stays_unreadable
);
