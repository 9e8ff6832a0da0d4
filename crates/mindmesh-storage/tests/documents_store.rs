//! The document store on SQLite and on the real PostgreSQL: sealed at rest (P01), bound
//! to its row, archived items kept out of the next sync (P07), find over blind-index
//! terms, and crypto-shredding of an integration's documents.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use chrono::Utc;
use mindmesh_kit::Service;
use mindmesh_kit::both_backends;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::{CascadeId, DocumentId, IntegrationId, TenantId, UserId};
use mindmesh_kit::testing::{Backend, ContextGuard, service_context};
use mindmesh_storage::Migrator;
use mindmesh_storage::documents::{Documents, Filter, NewDocument, Origin, PutOutcome};
use sea_orm::ConnectionTrait;

struct Harness {
    docs: Documents,
    ctx: ServiceContext,
    guard: ContextGuard,
}

async fn harness(backend: Backend) -> Harness {
    let (ctx, guard) = service_context::<Migrator>(Service::Storage, backend)
        .await
        .unwrap();
    Harness {
        docs: Documents::new(ctx.db.clone(), ctx.keystore.clone()),
        ctx,
        guard,
    }
}

fn imported(
    integration: IntegrationId,
    external_id: &str,
    version: &str,
    title: &str,
    content: &str,
) -> NewDocument {
    NewDocument {
        origin: Origin::Imported {
            integration,
            external_id: external_id.into(),
            source_version: version.into(),
        },
        title: title.into(),
        content: content.as_bytes().to_vec(),
        mime_type: "text/plain".into(),
        source_url: format!("https://drive.example/{external_id}"),
        source_owner: "owner-1".into(),
        modified_at: Utc::now(),
    }
}

fn created(outcome: PutOutcome) -> DocumentId {
    match outcome {
        PutOutcome::Created(id) => id,
        other => panic!("expected Created, got {other:?}"),
    }
}

async fn rows_as_text(h: &Harness, backend: Backend) -> String {
    match backend {
        Backend::Sqlite => {
            let mut all = Vec::new();
            for entry in std::fs::read_dir(h.guard.dir.path().join("data")).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    all.extend(std::fs::read(path).unwrap());
                }
            }
            String::from_utf8_lossy(&all).to_lowercase()
        }
        Backend::Postgres => {
            let mut out = String::new();
            for db in [h.ctx.db.clone(), h.ctx.keystore.db().clone()] {
                let tables = db
                    .query_all_raw(sea_orm::Statement::from_string(
                        sea_orm::DbBackend::Postgres,
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                    ))
                    .await
                    .unwrap();
                for t in tables {
                    let table: String = t.try_get("", "tablename").unwrap();
                    for row in db
                        .query_all_raw(sea_orm::Statement::from_string(
                            sea_orm::DbBackend::Postgres,
                            format!("SELECT t::text AS row FROM \"{table}\" t"),
                        ))
                        .await
                        .unwrap()
                    {
                        out.push_str(&row.try_get::<String>("", "row").unwrap().to_lowercase());
                    }
                }
            }
            out
        }
    }
}

/// P01: titles, contents, source links, the source's ids (paths) and owners (emails)
/// are never in the database in the clear, tombstones included, and a ciphertext moved to another row
/// does not open there.
async fn p01_documents_are_sealed_and_bound_to_their_row(backend: Backend) {
    let h = harness(backend).await;
    let tenant = TenantId::new();
    let drive = IntegrationId::new();
    let canary = "zqxcanarytitle";
    let a = created(
        h.docs
            .put(
                tenant,
                imported(
                    drive,
                    "zqxcanarypath/plans.md",
                    "v1",
                    &format!("Plan {canary}"),
                    "zqxcanarybody quarterly numbers",
                ),
            )
            .await
            .unwrap(),
    );
    let native = NewDocument {
        origin: Origin::Native {
            id: DocumentId::new(),
            owner: UserId::new(),
        },
        title: "zqxcanarynative notes".into(),
        content: b"zqxcanarynativebody".to_vec(),
        mime_type: "text/markdown".into(),
        source_url: String::new(),
        source_owner: String::new(),
        modified_at: Utc::now(),
    };
    let b = created(h.docs.put(tenant, native).await.unwrap());
    let archived = created(
        h.docs
            .put(
                tenant,
                imported(drive, "zqxcanaryarchived/old.md", "v1", "Old", "old"),
            )
            .await
            .unwrap(),
    );
    h.docs.archive(tenant, archived).await.unwrap();
    let owned = NewDocument {
        source_owner: "zqxcanaryowner@acme.example".into(),
        ..imported(drive, "f9", "v1", "Owned", "owned")
    };
    let owned = created(h.docs.put(tenant, owned).await.unwrap());
    assert_eq!(
        h.docs.get(tenant, owned).await.unwrap().owner,
        "zqxcanaryowner@acme.example"
    );
    let read = h.docs.get(tenant, a).await.unwrap();
    assert_eq!(read.title, format!("Plan {canary}"));
    assert_eq!(read.external_id, "zqxcanarypath/plans.md");
    assert_eq!(
        h.docs.get(tenant, b).await.unwrap().content,
        b"zqxcanarynativebody"
    );

    let text = rows_as_text(&h, backend).await;
    assert!(text.len() > 1000, "the scan read the stored rows");
    for needle in [
        canary,
        "zqxcanarybody",
        "zqxcanarynative",
        "drive.example",
        "zqxcanarypath",
        "zqxcanaryarchived",
        "zqxcanaryowner",
    ] {
        assert!(!text.contains(needle), "{needle} stored in the clear");
        assert!(
            !text.contains(&mindmesh_kit::crypto::hex(needle.as_bytes())),
            "{needle} stored in the clear (hex)"
        );
    }

    // Move A's sealed title onto B's row: it must not open there.
    let copy = format!(
        "UPDATE documents SET title_ct = (SELECT title_ct FROM documents WHERE id = '{a}'), key_id = (SELECT key_id FROM documents WHERE id = '{a}') WHERE id = '{b}'"
    );
    h.ctx.db.execute_unprepared(&copy).await.unwrap();
    let err = h.docs.get(tenant, b).await.unwrap_err();
    assert!(matches!(err, mindmesh_kit::Error::Crypto(_)), "{err:?}");
    // And another tenant cannot read A at all.
    assert!(matches!(
        h.docs.get(TenantId::new(), a).await.unwrap_err(),
        mindmesh_kit::Error::NotFound(_)
    ));
}

/// P01: what a version before sealed source ids kept in the clear — a document's source
/// id and a tombstone's — is sealed when the service starts, and still finds its
/// document (the next sync sees it unchanged) and keeps its tombstone (still archived).
async fn p01_source_ids_an_older_version_kept_in_the_clear_are_sealed(backend: Backend) {
    let h = harness(backend).await;
    let tenant = TenantId::new();
    let drive = IntegrationId::new();
    let kept = created(
        h.docs
            .put(
                tenant,
                imported(drive, "zqxlegacy/kept.md", "v1", "Kept", "kept"),
            )
            .await
            .unwrap(),
    );
    // As the older version wrote them: the id in the clear, no tombstone hash.
    h.ctx
        .db
        .execute_unprepared(&format!(
            "UPDATE documents SET source_index = 'zqxlegacy/kept.md', external_id_ct = NULL, \
             owner = 'zqxlegacyowner@acme.example', owner_ct = NULL WHERE id = '{kept}'"
        ))
        .await
        .unwrap();
    h.ctx
        .db
        .execute_unprepared(&format!(
            "INSERT INTO tombstones (tenant_id, integration_id, source_index, archived_at, legacy) \
             VALUES ('{tenant}', '{drive}', 'zqxlegacy/archived.md', CURRENT_TIMESTAMP, TRUE)"
        ))
        .await
        .unwrap();
    assert!(rows_as_text(&h, backend).await.contains("zqxlegacy"));

    assert_eq!(h.docs.seal_legacy().await.unwrap(), 2);
    assert_eq!(h.docs.seal_legacy().await.unwrap(), 0, "once is enough");
    let read = h.docs.get(tenant, kept).await.unwrap();
    assert_eq!(read.external_id, "zqxlegacy/kept.md");
    assert_eq!(read.owner, "zqxlegacyowner@acme.example");
    assert!(
        !rows_as_text(&h, backend).await.contains("zqxlegacy"),
        "nothing of it is left in the clear"
    );
    assert_eq!(
        h.docs
            .put(
                tenant,
                imported(drive, "zqxlegacy/kept.md", "v1", "Kept", "kept")
            )
            .await
            .unwrap(),
        PutOutcome::Unchanged(kept)
    );
    assert_eq!(
        h.docs
            .put(
                tenant,
                imported(drive, "zqxlegacy/archived.md", "v2", "A", "a")
            )
            .await
            .unwrap(),
        PutOutcome::SkippedArchived
    );
}

/// P07: an archived item is not brought back by the next sync; restored, it syncs again.
async fn p07_archived_items_stay_out_of_the_next_sync(backend: Backend) {
    let h = harness(backend).await;
    let tenant = TenantId::new();
    let drive = IntegrationId::new();
    let id = created(
        h.docs
            .put(tenant, imported(drive, "f1", "v1", "Old plan", "one"))
            .await
            .unwrap(),
    );
    assert_eq!(
        h.docs
            .put(tenant, imported(drive, "f1", "v1", "Old plan", "one"))
            .await
            .unwrap(),
        PutOutcome::Unchanged(id)
    );
    h.docs.archive(tenant, id).await.unwrap();
    assert!(
        h.docs.get(tenant, id).await.unwrap().archived,
        "kept for reversal"
    );
    assert_eq!(
        h.docs
            .put(tenant, imported(drive, "f1", "v2", "New plan", "two"))
            .await
            .unwrap(),
        PutOutcome::SkippedArchived
    );
    assert_eq!(
        h.docs.get(tenant, id).await.unwrap().title,
        "Old plan",
        "the sync changed nothing"
    );
    h.docs.restore(tenant, id).await.unwrap();
    assert_eq!(
        h.docs
            .put(tenant, imported(drive, "f1", "v2", "New plan", "two"))
            .await
            .unwrap(),
        PutOutcome::Updated(id)
    );
    let doc = h.docs.get(tenant, id).await.unwrap();
    assert_eq!(
        (doc.title.as_str(), doc.content.as_slice(), doc.archived),
        ("New plan", b"two".as_slice(), false)
    );
}

async fn find_ranks_by_matched_words_without_plaintext(backend: Backend) {
    let h = harness(backend).await;
    let tenant = TenantId::new();
    let drive = IntegrationId::new();
    let both = created(
        h.docs
            .put(
                tenant,
                imported(
                    drive,
                    "a",
                    "1",
                    "Quarterly budget",
                    "The budget for the quarter",
                ),
            )
            .await
            .unwrap(),
    );
    let one = created(
        h.docs
            .put(
                tenant,
                imported(drive, "b", "1", "Team offsite", "budget pending"),
            )
            .await
            .unwrap(),
    );
    let none = created(
        h.docs
            .put(tenant, imported(drive, "c", "1", "Recipes", "soup"))
            .await
            .unwrap(),
    );
    let found = h
        .docs
        .find(tenant, "QUARTERLY Budget!", &Filter::default(), 0, 10)
        .await
        .unwrap();
    assert_eq!(found, vec![both, one]);
    assert!(!found.contains(&none));
    // Other tenants' terms are keyed differently: nothing matches across tenants.
    assert!(
        h.docs
            .find(TenantId::new(), "budget", &Filter::default(), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    h.docs.archive(tenant, both).await.unwrap();
    assert_eq!(
        h.docs
            .find(tenant, "budget", &Filter::default(), 0, 10)
            .await
            .unwrap(),
        vec![one]
    );
    assert_eq!(
        h.docs
            .find(
                tenant,
                "budget",
                &Filter {
                    include_archived: true,
                    ..Filter::default()
                },
                0,
                10
            )
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        h.docs
            .find(tenant, "  ", &Filter::default(), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Disconnect: the integration's key is destroyed first, so a copy of the database taken
/// before the deletion (a backup) cannot be read either; then its rows are deleted.
async fn disconnect_shreds_then_deletes(backend: Backend) {
    let h = harness(backend).await;
    let tenant = TenantId::new();
    let drive = IntegrationId::new();
    let other = IntegrationId::new();
    let gone = created(
        h.docs
            .put(
                tenant,
                imported(drive, "f1", "1", "Drive doc", "secret words"),
            )
            .await
            .unwrap(),
    );
    let kept = created(
        h.docs
            .put(
                tenant,
                imported(other, "g1", "1", "GitHub doc", "other words"),
            )
            .await
            .unwrap(),
    );
    // The "backup": the document rows as they were before the deletion.
    let backup = h
        .ctx
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            h.ctx.db.get_database_backend(),
            format!("SELECT key_id, title_ct FROM documents WHERE id = '{gone}'"),
        ))
        .await
        .unwrap();
    let key_id: String = backup[0].try_get("", "key_id").unwrap();
    let title_ct: Vec<u8> = backup[0].try_get("", "title_ct").unwrap();

    let erasure = h
        .docs
        .erase_integration(tenant, drive, CascadeId::new(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(erasure.deleted, 1);
    assert_eq!(erasure.destroyed.len(), 1);
    assert_eq!(erasure.destroyed[0].to_string(), key_id);
    assert!(matches!(
        h.docs.get(tenant, gone).await.unwrap_err(),
        mindmesh_kit::Error::NotFound(_)
    ));
    assert_eq!(h.docs.get(tenant, kept).await.unwrap().title, "GitHub doc");
    // The backed-up ciphertext has no key left to open it.
    let key = h.ctx.keystore.key(tenant, key_id.parse().unwrap()).await;
    assert!(matches!(key, Err(mindmesh_kit::Error::NotFound(_))));
    assert!(!title_ct.is_empty());
    // Its terms are gone too.
    assert!(
        h.docs
            .find(tenant, "secret", &Filter::default(), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = h
        .docs
        .erase_integration(tenant, drive, CascadeId::new(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.deleted, again.destroyed.len()),
        (0, 0),
        "a repeat finds nothing"
    );
}

async fn count(h: &Harness, sql: &str) -> i64 {
    let row = h
        .ctx
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            h.ctx.db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index(0).unwrap()
}

/// A disconnect of an integration with 10,000 documents: the erasure is interrupted
/// half-way (the process stops), a new process resumes it where it stopped, and its
/// totals count every document once, report the key destroyed in the first run, and
/// leave no document and no index entry of the integration behind.
async fn interrupted_erasure_resumes(backend: Backend) {
    let resume = CascadeId::new();
    let h = harness(backend).await;
    let tenant = TenantId::new();
    let drive = IntegrationId::new();
    let other = IntegrationId::new();
    let n: u32 = 10_000;
    for start in (0..n).step_by(500) {
        let batch = (start..start + 500)
            .map(|i| {
                imported(
                    drive,
                    &format!("f{i}"),
                    "1",
                    &format!("doc {i}"),
                    "shared words",
                )
            })
            .collect();
        h.docs.put_batch(tenant, batch).await.unwrap();
    }
    let kept = created(
        h.docs
            .put(tenant, imported(other, "g1", "1", "Kept", "shared words"))
            .await
            .unwrap(),
    );
    let key = h
        .ctx
        .keystore
        .scope_key_ids(
            tenant,
            &mindmesh_kit::keys::KeyScope::Integration(drive.to_string()),
        )
        .await
        .unwrap();
    assert_eq!(key.len(), 1);
    let blocks_before = count(&h, "SELECT COUNT(*) FROM index_blocks").await;
    assert_eq!(
        blocks_before, 21,
        "20 batches of the integration, 1 of the other"
    );

    // The first process stops after ten batches of the erasure, as a crash would.
    assert!(
        h.docs
            .erase_integration(tenant, drive, resume, Some(10))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        count(&h, "SELECT COUNT(*) FROM documents").await,
        i64::from(n) + 1 - 10 * mindmesh_storage::documents::ERASE_BATCH as i64
    );
    // Meanwhile nothing of it can be read or found: its key is gone.
    assert_eq!(
        h.docs
            .find(tenant, "shared", &Filter::default(), 0, 100)
            .await
            .unwrap(),
        vec![kept]
    );

    // A new process: new connections, no cached keys.
    let fresh = Documents::new(
        mindmesh_kit::db::connect(&h.ctx.config.database_url(Service::Storage), 2)
            .await
            .unwrap(),
        h.ctx.keys.keystore(
            mindmesh_kit::db::connect(&h.ctx.config.keystore_url(Service::Storage), 2)
                .await
                .unwrap(),
        ),
    );
    let done = fresh
        .erase_integration(tenant, drive, resume, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.deleted, u64::from(n), "every document counted once");
    assert_eq!(
        done.destroyed, key,
        "the key destroyed in the first run is still reported"
    );
    assert_eq!(count(&h, "SELECT COUNT(*) FROM documents").await, 1);
    assert_eq!(
        count(&h, "SELECT COUNT(*) FROM index_blocks").await,
        1,
        "the other's block"
    );
    let other_block = count(
        &h,
        &format!("SELECT COUNT(*) FROM term_blocks t JOIN documents d ON d.index_block = t.block_id WHERE d.id = '{kept}'"),
    )
    .await;
    assert_eq!(
        count(&h, "SELECT COUNT(*) FROM term_blocks").await,
        other_block,
        "the integration's index entries are gone too"
    );
    // A duplicate delivery of the same cascade is harmless.
    let again = fresh
        .erase_integration(tenant, drive, resume, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.deleted, u64::from(n));
    assert_eq!(fresh.get(tenant, kept).await.unwrap().title, "Kept");
}

/// A batch decides each document as single puts in order would: a source listed twice
/// is created then updated; tombstoned and unchanged ones are reported as such.
async fn batches_decide_like_single_puts_in_order(backend: Backend) {
    let h = harness(backend).await;
    let tenant = TenantId::new();
    let drive = IntegrationId::new();
    let archived = created(
        h.docs
            .put(tenant, imported(drive, "old", "1", "Old", "words"))
            .await
            .unwrap(),
    );
    h.docs.archive(tenant, archived).await.unwrap();
    let kept = created(
        h.docs
            .put(tenant, imported(drive, "kept", "1", "Kept", "words"))
            .await
            .unwrap(),
    );
    let outcomes = h
        .docs
        .put_batch(
            tenant,
            vec![
                imported(drive, "a", "1", "A", "first version"),
                imported(drive, "old", "2", "Old", "again"),
                imported(drive, "kept", "1", "Kept", "words"),
                imported(drive, "a", "2", "A", "second version"),
                imported(
                    IntegrationId::new(),
                    "a",
                    "1",
                    "Other A",
                    "another integration",
                ),
            ],
        )
        .await
        .unwrap();
    let PutOutcome::Created(a) = outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert_eq!(outcomes[1], PutOutcome::SkippedArchived);
    assert_eq!(outcomes[2], PutOutcome::Unchanged(kept));
    assert_eq!(outcomes[3], PutOutcome::Updated(a));
    assert!(matches!(outcomes[4], PutOutcome::Created(other) if other != a));
    assert_eq!(
        h.docs.get(tenant, a).await.unwrap().content,
        b"second version"
    );
    assert_eq!(
        h.docs
            .find(tenant, "first", &Filter::default(), 0, 10)
            .await
            .unwrap(),
        Vec::<DocumentId>::new(),
        "the first version's terms went with it"
    );
    assert_eq!(
        h.docs
            .find(tenant, "second", &Filter::default(), 0, 10)
            .await
            .unwrap(),
        vec![a]
    );
}

/// Deleted and rewritten documents leave the find index: a block mostly stale is
/// rewritten without them, an empty one dropped, and a find never returns them.
async fn index_blocks_are_compacted_and_dropped(backend: Backend) {
    let h = harness(backend).await;
    let tenant = TenantId::new();
    let drive = IntegrationId::new();
    let outcomes = h
        .docs
        .put_batch(
            tenant,
            vec![
                imported(drive, "a", "1", "Alpha", "apple banana"),
                imported(drive, "b", "1", "Beta", "banana cherry"),
                imported(drive, "c", "1", "Gamma", "cherry damson"),
                imported(drive, "d", "1", "Delta", "damson elder"),
            ],
        )
        .await
        .unwrap();
    let ids: Vec<DocumentId> = outcomes.into_iter().map(created).collect();
    // One block, one row per distinct word of the batch: 4 titles + 5 fruits.
    assert_eq!(count(&h, "SELECT COUNT(*) FROM index_blocks").await, 1);
    assert_eq!(count(&h, "SELECT COUNT(*) FROM term_blocks").await, 9);
    // A rewrite moves a document to a new block; its old words are no longer found.
    h.docs
        .put(tenant, imported(drive, "a", "2", "Alpha", "fig"))
        .await
        .unwrap();
    let found = |q: &'static str| {
        let docs = h.docs.clone();
        async move {
            docs.find(tenant, q, &Filter::default(), 0, 10)
                .await
                .unwrap()
        }
    };
    assert_eq!(found("apple").await, Vec::<DocumentId>::new());
    assert_eq!(found("fig").await, vec![ids[0]]);
    assert_eq!(found("banana").await, vec![ids[1]]);
    // Two of four left in the first block: not yet compacted (half is current).
    assert!(h.docs.delete(tenant, ids[1]).await.unwrap());
    assert_eq!(count(&h, "SELECT COUNT(*) FROM index_blocks").await, 2);
    assert_eq!(found("banana").await, Vec::<DocumentId>::new());
    // One of four: rewritten with only Delta's words (delta, damson, elder) left.
    assert!(h.docs.delete(tenant, ids[2]).await.unwrap());
    let first_block_rows = count(
        &h,
        &format!(
            "SELECT COUNT(*) FROM term_blocks t JOIN documents d ON d.index_block = t.block_id WHERE d.id = '{}'",
            ids[3]
        ),
    )
    .await;
    assert_eq!(first_block_rows, 3);
    assert_eq!(found("damson elder").await, vec![ids[3]]);
    // None left: the block is dropped.
    assert!(h.docs.delete(tenant, ids[3]).await.unwrap());
    assert_eq!(
        count(&h, "SELECT COUNT(*) FROM index_blocks").await,
        1,
        "the rewrite's block"
    );
    assert!(
        !h.docs.delete(tenant, ids[3]).await.unwrap(),
        "deleting twice finds nothing"
    );
}

/// P07: once the restore window has passed, an archived document's content goes; its
/// tombstone stays, so the next sync still skips it.
async fn p07_purged_archives_keep_their_tombstones(backend: Backend) {
    let h = harness(backend).await;
    let tenant = TenantId::new();
    let drive = IntegrationId::new();
    let gone = created(
        h.docs
            .put(tenant, imported(drive, "old", "1", "Old plans", "zebra"))
            .await
            .unwrap(),
    );
    let kept = created(
        h.docs
            .put(tenant, imported(drive, "live", "1", "Live", "zebra"))
            .await
            .unwrap(),
    );
    h.docs.archive(tenant, gone).await.unwrap();
    // Inside the window nothing goes.
    assert_eq!(
        h.docs
            .purge_archived(Utc::now(), chrono::Duration::days(30))
            .await
            .unwrap(),
        0
    );
    assert!(h.docs.get(tenant, gone).await.is_ok());
    // Past it, the archived one goes (and only it).
    let later = Utc::now() + chrono::Duration::days(30) + chrono::Duration::seconds(1);
    assert_eq!(
        h.docs
            .purge_archived(later, chrono::Duration::days(30))
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        h.docs.get(tenant, gone).await.unwrap_err(),
        mindmesh_kit::Error::NotFound(_)
    ));
    assert!(h.docs.get(tenant, kept).await.is_ok());
    assert_eq!(
        h.docs
            .find(
                tenant,
                "zebra",
                &Filter {
                    include_archived: true,
                    ..Filter::default()
                },
                0,
                10
            )
            .await
            .unwrap(),
        vec![kept]
    );
    assert_eq!(
        h.docs
            .put(tenant, imported(drive, "old", "2", "Old plans", "zebra"))
            .await
            .unwrap(),
        PutOutcome::SkippedArchived,
        "the tombstone outlives the content"
    );
    assert_eq!(
        h.docs
            .purge_archived(later, chrono::Duration::days(30))
            .await
            .unwrap(),
        0
    );
}

/// Concurrent puts of the same new source: one creates it; the others find it stored or
/// are told to retry (UNAVAILABLE) — never an internal error, never two documents.
async fn concurrent_puts_of_one_new_source_store_it_once(backend: Backend) {
    let h = harness(backend).await;
    let tenant = TenantId::new();
    let drive = IntegrationId::new();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let docs = h.docs.clone();
            tokio::spawn(async move {
                docs.put(tenant, imported(drive, "same", "1", "Same", "raced words"))
                    .await
            })
        })
        .collect();
    let mut created_count = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(PutOutcome::Created(_)) => created_count += 1,
            Ok(PutOutcome::Unchanged(_)) | Err(mindmesh_kit::Error::Unavailable(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created_count, 1);
    assert_eq!(count(&h, "SELECT COUNT(*) FROM documents").await, 1);
}

/// Batches rewriting documents of the same index blocks at once: one releasing (and
/// dropping) a block while another compacts it takes the block's locks in the same
/// order, so no write fails on a deadlock, and every document ends current once.
async fn concurrent_rewrites_and_compactions_of_shared_blocks_never_deadlock(backend: Backend) {
    const DOCS: usize = 120;
    const TASKS: usize = 8;
    const ROUNDS: usize = 20;
    let h = harness(backend).await;
    let tenant = TenantId::new();
    let drive = IntegrationId::new();
    let doc = move |i: usize, round: usize| {
        imported(
            drive,
            &format!("f-{i}"),
            &format!("v{round}"),
            &format!("Doc {i}"),
            &format!("word{i} round{round}"),
        )
    };
    h.docs
        .put_batch(tenant, (0..DOCS).map(|i| doc(i, 0)).collect())
        .await
        .unwrap();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let docs = h.docs.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let mut failures = Vec::new();
                for round in 1..=ROUNDS {
                    // Each round deals the documents out afresh, so every block of the
                    // round before loses documents to several batches at once.
                    let mine: Vec<NewDocument> = (0..DOCS)
                        .filter(|i| {
                            (i.wrapping_mul(2_654_435_761) >> 5).wrapping_add(round * 7) % TASKS
                                == t
                        })
                        .map(|i| doc(i, round))
                        .collect();
                    barrier.wait().await;
                    // A failed batch is recorded, not returned: the others wait for
                    // this task at the next round's barrier.
                    if let Err(e) = docs.put_batch(tenant, mine).await {
                        failures.push(format!("round {round}: {e}"));
                    }
                }
                failures
            })
        })
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        failures.extend(task.await.unwrap());
    }
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(
        count(&h, "SELECT COUNT(*) FROM documents").await,
        DOCS as i64
    );
    for i in [0, DOCS / 2, DOCS - 1] {
        let found = h
            .docs
            .find(tenant, &format!("word{i}"), &Filter::default(), 0, 10)
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "word{i}: {found:?}");
    }
}

/// P07 with a retention policy and legal holds: a tenant's policy sets its archive
/// window (others keep the default), and what a legal hold keeps — the importing
/// integration, a native document's owner — is never purged until the hold is released.
async fn p07_the_purge_follows_each_tenants_policy_and_spares_held_archives(backend: Backend) {
    use mindmesh_kit::holds::{self, HeldScope, Hold};
    let h = harness(backend).await;
    let (short, default) = (TenantId::new(), TenantId::new());
    mindmesh_storage::store::policies::set(&h.ctx.db, short, 10)
        .await
        .unwrap();
    let (held_drive, free_drive) = (IntegrationId::new(), IntegrationId::new());
    let owner = UserId::new();
    let mut archived = Vec::new();
    for (tenant, doc) in [
        (short, imported(held_drive, "held", "1", "Held", "alpha")),
        (short, imported(free_drive, "free", "1", "Free", "beta")),
        (
            default,
            imported(free_drive, "other", "1", "Other", "gamma"),
        ),
        (
            short,
            NewDocument {
                origin: Origin::Native {
                    id: DocumentId::new(),
                    owner,
                },
                title: "Owner's notes".into(),
                content: b"delta".to_vec(),
                mime_type: "text/plain".into(),
                source_url: String::new(),
                source_owner: String::new(),
                modified_at: Utc::now(),
            },
        ),
    ] {
        let id = created(h.docs.put(tenant, doc).await.unwrap());
        h.docs.archive(tenant, id).await.unwrap();
        archived.push((tenant, id));
    }
    let on_drive = Hold {
        id: mindmesh_kit::ids::HoldId::new(),
        tenant: short,
        scope: HeldScope::Integration(held_drive),
    };
    let on_owner = Hold {
        id: mindmesh_kit::ids::HoldId::new(),
        tenant: short,
        scope: HeldScope::User(owner),
    };
    holds::place(&h.ctx.db, &on_drive).await.unwrap();
    holds::place(&h.ctx.db, &on_owner).await.unwrap();
    let thirty = chrono::Duration::days(30);
    let in_eleven_days = Utc::now() + chrono::Duration::days(11);
    // Ten days for the short tenant: only its document no hold keeps goes.
    assert_eq!(
        h.docs.purge_archived(in_eleven_days, thirty).await.unwrap(),
        1
    );
    let gone = |i: usize| {
        let (tenant, id) = archived[i];
        let docs = h.docs.clone();
        async move { docs.get(tenant, id).await.is_err() }
    };
    assert!(gone(1).await);
    assert!(!gone(0).await && !gone(2).await && !gone(3).await);
    // Released, the held ones go too; the default tenant's waits its thirty days.
    holds::release(&h.ctx.db, on_drive.id).await.unwrap();
    holds::release(&h.ctx.db, on_owner.id).await.unwrap();
    assert_eq!(
        h.docs.purge_archived(in_eleven_days, thirty).await.unwrap(),
        2
    );
    assert!(gone(0).await && gone(3).await && !gone(2).await);
    let in_a_month = Utc::now() + chrono::Duration::days(31);
    assert_eq!(h.docs.purge_archived(in_a_month, thirty).await.unwrap(), 1);
    assert!(gone(2).await);
}

both_backends!(
    p07_the_purge_follows_each_tenants_policy_and_spares_held_archives,
    p01_documents_are_sealed_and_bound_to_their_row,
    p07_archived_items_stay_out_of_the_next_sync,
    find_ranks_by_matched_words_without_plaintext,
    p01_source_ids_an_older_version_kept_in_the_clear_are_sealed,
    disconnect_shreds_then_deletes,
    interrupted_erasure_resumes,
    batches_decide_like_single_puts_in_order,
    index_blocks_are_compacted_and_dropped,
    p07_purged_archives_keep_their_tombstones,
    concurrent_puts_of_one_new_source_store_it_once,
    concurrent_rewrites_and_compactions_of_shared_blocks_never_deadlock,
);
