//! `make bench`: the storage service, on SQLite (embedded mode) and PostgreSQL
//! (distributed mode), each figure beside a baseline measured in the same run:
//!
//! - writing 20,000 documents of 4 KiB: a plain sea-orm batched insert of the same rows
//!   without encryption or index into the same database (the ceiling), the document
//!   store without the find index (encrypt + store), with it, and `PutDocuments` over
//!   gRPC end to end;
//! - `GetDocument` over gRPC, including its permission check, beside an empty unary RPC
//!   (`grpc.health.v1.Health/Check`) on the same server;
//! - find (`ListDocuments` with a query) over 100,000 documents.
//!
//! `MINDMESH_BENCH_DOCS` and `MINDMESH_BENCH_FIND_DOCS` shrink the run for a quick look;
//! `MINDMESH_BENCH_ONLY=sqlite|postgresql` runs one backend.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up should stop

mod support;

use std::time::{Duration, Instant};

use mindmesh_kit::Service;
use mindmesh_kit::auth::Role;
use mindmesh_kit::config::Mode;
use mindmesh_kit::ids::{IntegrationId, TenantId};
use mindmesh_kit::keyfiles::KeyMaterial;
use mindmesh_permissions::dataset::Rng;
use mindmesh_proto::mindmesh::permissions::v1 as perm;
use mindmesh_proto::mindmesh::storage::v1 as pb;
use mindmesh_storage::documents::{Documents, NewDocument, Origin};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, TransactionTrait};
use support::{BenchServer, Samples, authed, measure, row};

const CONTENT_BYTES: usize = 4 * 1024;
const VOCABULARY: usize = 20_000;
/// Documents per write batch (as `PutDocuments` writes them).
const BATCH: usize = 500;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Pronounceable pseudo-words, so documents read like text to the word splitter.
fn vocabulary() -> Vec<String> {
    const SYLLABLES: [&str; 24] = [
        "ka", "lo", "mi", "ra", "te", "su", "no", "vi", "de", "pa", "zu", "qi", "ben", "tor",
        "ils", "mar", "ux", "go", "he", "fy", "an", "ost", "wi", "ce",
    ];
    let mut rng = Rng(7);
    (0..VOCABULARY)
        .map(|_| {
            let n = 2 + rng.below(2);
            (0..n)
                .map(|_| SYLLABLES[rng.below(SYLLABLES.len())])
                .collect()
        })
        .collect()
}

/// 4 KiB of words drawn with a Zipf-like skew (frequent words are frequent).
fn content(rng: &mut Rng, words: &[String]) -> String {
    let mut text = String::with_capacity(CONTENT_BYTES + 16);
    while text.len() < CONTENT_BYTES {
        let r = rng.next_u64() as f64 / u64::MAX as f64;
        let i = ((words.len() as f64).powf(r) as usize).saturating_sub(1);
        text.push_str(&words[i.min(words.len() - 1)]);
        text.push(' ');
    }
    text.truncate(CONTENT_BYTES);
    text
}

fn document(integration: IntegrationId, i: usize, text: &str) -> NewDocument {
    NewDocument {
        origin: Origin::Imported {
            integration,
            external_id: format!("file-{i}"),
            source_version: "1".into(),
        },
        title: format!("Document {i}"),
        content: text.as_bytes().to_vec(),
        mime_type: "text/plain".into(),
        source_url: format!("https://drive.example/file-{i}"),
        source_owner: "owner@example.com".into(),
        modified_at: chrono::Utc::now(),
    }
}

fn rate_row(name: &str, docs: usize, took: Duration, base: f64) -> f64 {
    let rate = docs as f64 / took.as_secs_f64();
    println!(
        "  {name:<58} {rate:>8.0} docs/s  ({:>6.2} s)   {:>5.2}× the plain insert",
        took.as_secs_f64(),
        rate / base
    );
    rate
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let words = vocabulary();
        // MINDMESH_BENCH_ONLY=sqlite or =postgresql runs one backend.
        let only = std::env::var("MINDMESH_BENCH_ONLY").unwrap_or_default();
        for distributed in [false, true] {
            let name = if distributed { "postgresql" } else { "sqlite" };
            if only.is_empty() || only == name {
                run(distributed, &words).await;
            }
        }
    });
}

async fn run(distributed: bool, words: &[String]) {
    let n = env_or("MINDMESH_BENCH_DOCS", 20_000);
    let find_docs = env_or("MINDMESH_BENCH_FIND_DOCS", 100_000).max(n);
    let backend = if distributed {
        "PostgreSQL (distributed mode)"
    } else {
        "SQLite (embedded mode)"
    };
    println!("\nStorage on {backend}: {n} documents of {CONTENT_BYTES} bytes, batches of {BATCH}");
    let server = BenchServer::start(distributed).await;
    let config = server.config.clone();
    let mode = if distributed {
        Mode::Distributed
    } else {
        Mode::Embedded
    };
    let keys = KeyMaterial::load(&config, mode).unwrap();
    let db = mindmesh_kit::db::connect(&config.database_url(Service::Storage), 4)
        .await
        .unwrap();
    let key_db = mindmesh_kit::db::connect(&config.keystore_url(Service::Storage), 4)
        .await
        .unwrap();
    let documents = Documents::new(db.clone(), keys.keystore(key_db));
    let mut rng = Rng(99);
    let texts: Vec<String> = (0..n).map(|_| content(&mut rng, words)).collect();
    let integration = IntegrationId::new();

    // 1. The ceiling: the same rows, plaintext, no index, same batches, same database
    //    (after one untimed pass, so no variant pays for a cold database).
    let plain_tenant = TenantId::new();
    let mut plain = 0.0;
    for timed in [false, true] {
        let start = Instant::now();
        for (b, chunk) in texts.chunks(BATCH).enumerate() {
            let txn = db.begin().await.unwrap();
            let mut insert = Query::insert();
            insert.into_table("documents").columns([
                "id",
                "tenant_id",
                "integration_id",
                "source_index",
                "source_version",
                "key_id",
                "title_ct",
                "content_ct",
                "source_url_ct",
                "mime_type",
                "owner",
                "size_bytes",
                "modified_at",
                "modified_us",
                "state",
                "created_at",
                "updated_at",
            ]);
            for (j, text) in chunk.iter().enumerate() {
                let i = b * BATCH + j;
                let now = chrono::Utc::now();
                insert.values_panic([
                    uuid::Uuid::now_v7().to_string().into(),
                    plain_tenant.to_string().into(),
                    integration.to_string().into(),
                    format!("file-{i}").into(),
                    "1".into(),
                    String::new().into(),
                    format!("Document {i}").into_bytes().into(),
                    text.as_bytes().to_vec().into(),
                    format!("https://drive.example/file-{i}")
                        .into_bytes()
                        .into(),
                    "text/plain".into(),
                    "owner@example.com".into(),
                    (text.len() as i64).into(),
                    now.into(),
                    now.timestamp_micros().into(),
                    "active".into(),
                    now.into(),
                    now.into(),
                ]);
            }
            txn.execute(&insert).await.unwrap();
            txn.commit().await.unwrap();
        }
        if timed {
            plain = n as f64 / start.elapsed().as_secs_f64();
            println!(
                "  {:<58} {plain:>8.0} docs/s  ({:>6.2} s)   1.00× (baseline)",
                "plain sea-orm batched insert, no encryption, no index",
                start.elapsed().as_secs_f64()
            );
        }
        db.execute(
            &Query::delete()
                .from_table("documents")
                .and_where(Expr::col("tenant_id").eq(plain_tenant.to_string()))
                .to_owned(),
        )
        .await
        .unwrap();
    }

    // 2. The document store without, then with, the find index.
    let mut figures = Vec::new();
    for (name, store) in [
        (
            "document store: encrypt + store, no find index",
            documents.clone().without_find_index(),
        ),
        (
            "document store: encrypt + find index + store",
            documents.clone(),
        ),
    ] {
        let tenant = TenantId::new();
        let start = Instant::now();
        for (b, chunk) in texts.chunks(BATCH).enumerate() {
            let batch = chunk
                .iter()
                .enumerate()
                .map(|(j, t)| document(integration, b * BATCH + j, t))
                .collect();
            store.put_batch(tenant, batch).await.unwrap();
        }
        figures.push(rate_row(name, n, start.elapsed(), plain));
    }

    // 3. PutDocuments over gRPC, end to end, into the tenant the reads below use.
    let channel = server.channel.clone();
    let (tenant, admin) = server.tenant("Bench").await;
    let service = server.service_token(tenant);
    // Imported through an integration ingest has announced, as a sync would.
    let integration = server.integration(tenant, &admin).await;
    let mut storage = pb::storage_service_client::StorageServiceClient::new(channel.clone())
        .max_decoding_message_size(64 * 1024 * 1024);
    let items = put_items(&texts, integration);
    let start = Instant::now();
    let results = storage
        .put_documents(authed(tokio_stream::iter(items), &service))
        .await
        .unwrap()
        .into_inner()
        .results;
    let grpc_rate = rate_row(
        "PutDocuments over gRPC (stream, index, permission-free)",
        n,
        start.elapsed(),
        plain,
    );
    assert_eq!(results.len(), n);
    let ids: Vec<String> = results.iter().map(|r| r.document_id.clone()).collect();

    // 4. GetDocument for a member, with its permission check, beside the empty RPC; and
    //    the same on a second server whose services call each other over its listener
    //    (as before peers were called in-process), measured in turns with the first.
    let here = Reader::new(&server, tenant, &admin, &service, integration, &ids).await;
    let (second, there) = over_loopback(distributed, &texts[..texts.len().min(2_000)]).await;
    let mut figures_here = [Samples::default(), Samples::default()];
    let mut figures_there = [Samples::default(), Samples::default()];
    for _ in 0..4 {
        here.take(&server, 500, &mut figures_here).await;
        there.take(&second, 500, &mut figures_there).await;
    }
    second.stop().await;
    let [empty, get] = figures_here.map(Samples::stats);
    let [loop_empty, loop_get] = figures_there.map(Samples::stats);
    let member = here.member.clone();
    println!();
    row("empty RPC (Health/Check) — baseline", &empty, &empty);
    row("GetDocument 4 KiB, member, Check in-process", &get, &empty);
    row(
        "empty RPC (Health/Check), 2nd server — baseline",
        &loop_empty,
        &loop_empty,
    );
    row(
        "GetDocument, Check over loopback TCP (before)",
        &loop_get,
        &loop_empty,
    );

    // 5. Find over `find_docs` documents (the rest written straight to the store).
    let start = Instant::now();
    let mut written = n;
    while written < find_docs {
        let batch: Vec<NewDocument> = (written..(written + BATCH).min(find_docs))
            .map(|i| document(integration, i, &content(&mut rng, words)))
            .collect();
        written += batch.len();
        documents.put_batch(tenant, batch).await.unwrap();
    }
    if find_docs > n {
        println!(
            "\n  (filled the tenant to {find_docs} documents in {:.1} s)",
            start.elapsed().as_secs_f64()
        );
    }
    // Two words of middling frequency per query: thousands of matches to rank.
    let queries: Vec<String> = (0..50)
        .map(|q| format!("{} {}", words[200 + q * 13], words[900 + q * 17]))
        .collect();
    let find = |token: String| {
        let storage = storage.clone();
        let queries = queries.clone();
        move |i: usize| {
            let mut storage = storage.clone();
            let query = queries[i % queries.len()].clone();
            let token = token.clone();
            async move {
                storage
                    .list_documents(authed(
                        pb::ListDocumentsRequest {
                            query,
                            page_size: 20,
                            ..Default::default()
                        },
                        &token,
                    ))
                    .await
                    .unwrap();
            }
        }
    };
    let by_service = measure(100, find(service.clone())).await;
    let by_member = measure(50, find(member.clone())).await;
    println!();
    row("empty RPC (Health/Check) — baseline", &empty, &empty);
    row(
        &format!("find, {find_docs} docs, first 20, service"),
        &by_service,
        &empty,
    );
    row(
        &format!("find, {find_docs} docs, first 20, member (FilterReadable)"),
        &by_member,
        &empty,
    );

    println!("\n  targets on {backend}:");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let no_index = figures[0] / plain;
    println!(
        "    without the find index ≥ 50% of the plain insert: {:.0}% — {}",
        no_index * 100.0,
        verdict(no_index >= 0.5)
    );
    if distributed {
        println!(
            "    with the index ≥ 2,000 docs/s: store {:.0}/s, over gRPC {:.0}/s — {}",
            figures[1],
            grpc_rate,
            verdict(figures[1] >= 2_000.0 && grpc_rate >= 2_000.0)
        );
    }
    let ratio = get.p99.as_secs_f64() / empty.p99.as_secs_f64();
    let before = loop_get.p99.as_secs_f64() / loop_empty.p99.as_secs_f64();
    println!(
        "    GetDocument p99 ≤ 3× the empty RPC's: {ratio:.2}× with Check in-process \
         ({before:.2}× over loopback) — {}",
        verdict(ratio <= 3.0)
    );
    server.stop().await;
}

/// `PutDocuments` items for `texts` (header, then the content in one chunk).
fn put_items(texts: &[String], integration: IntegrationId) -> Vec<pb::PutDocumentsRequest> {
    texts
        .iter()
        .enumerate()
        .flat_map(|(i, text)| {
            [
                pb::put_documents_request::Item::Header(pb::DocumentHeader {
                    integration_id: integration.to_string(),
                    external_id: format!("file-{i}"),
                    source_version: "1".into(),
                    title: format!("Document {i}"),
                    mime_type: "text/plain".into(),
                    source_url: format!("https://drive.example/file-{i}"),
                    modified_at: None,
                    owner: "owner@example.com".into(),
                    size_bytes: text.len() as u64,
                }),
                pb::put_documents_request::Item::Chunk(text.as_bytes().to_vec()),
            ]
        })
        .map(|item| pb::PutDocumentsRequest { item: Some(item) })
        .collect()
}

/// A member who may read the first 1,000 of `ids`, whose `GetDocument` calls are timed
/// beside the empty RPC of the same server.
struct Reader {
    member: String,
    readable: Vec<String>,
}

impl Reader {
    async fn new(
        server: &BenchServer,
        tenant: TenantId,
        admin: &str,
        service: &str,
        integration: IntegrationId,
        ids: &[String],
    ) -> Self {
        let channel = server.channel.clone();
        let user = server
            .user(admin, "Bench", "Reader", "reader@bench.example")
            .await;
        let member = server
            .issuer()
            .issue(
                &user.id,
                Some(tenant),
                &[Role::Member],
                Duration::from_secs(7200),
            )
            .unwrap();
        let readable: Vec<String> = ids.iter().take(1_000).cloned().collect();
        let mut permissions =
            perm::permissions_service_client::PermissionsServiceClient::new(channel);
        permissions
            .set_document_acls(authed(
                perm::SetDocumentAclsRequest {
                    acls: readable
                        .iter()
                        .map(|id| perm::DocumentAcl {
                            document_id: id.clone(),
                            integration_id: integration.to_string(),
                            grants: vec![perm::Grant {
                                grantee_kind: perm::GranteeKind::Anyone.into(),
                                grantee: String::new(),
                                role: perm::Role::Reader.into(),
                            }],
                        })
                        .collect(),
                },
                service,
            ))
            .await
            .unwrap();
        Reader { member, readable }
    }

    /// Adds `n` empty RPCs to `into[0]` and `n` `GetDocument`s to `into[1]`.
    async fn take(&self, server: &BenchServer, n: usize, into: &mut [Samples; 2]) {
        let health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
        let storage = pb::storage_service_client::StorageServiceClient::new(server.channel.clone());
        into[0]
            .take(n, |_| {
                let mut health = health.clone();
                async move {
                    health
                        .check(tonic_health::pb::HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .unwrap();
                }
            })
            .await;
        into[1]
            .take(n, |i| {
                let mut storage = storage.clone();
                let id = self.readable[(i * 7919) % self.readable.len()].clone();
                let member = self.member.clone();
                async move {
                    let doc = storage
                        .get_document(authed(
                            pb::GetDocumentRequest {
                                document_id: id,
                                at_least_revision: 0,
                            },
                            &member,
                        ))
                        .await
                        .unwrap()
                        .into_inner();
                    assert_eq!(doc.content.len(), CONTENT_BYTES);
                }
            })
            .await;
    }
}

/// A second server whose storage asks permissions over its own listener (as before
/// peers were called in-process), with `texts` stored in it, and its reader.
async fn over_loopback(distributed: bool, texts: &[String]) -> (BenchServer, Reader) {
    let server = BenchServer::start_over_loopback(distributed).await;
    let (tenant, admin) = server.tenant("Bench over loopback").await;
    let service = server.service_token(tenant);
    let integration = server.integration(tenant, &admin).await;
    let mut storage = pb::storage_service_client::StorageServiceClient::new(server.channel.clone())
        .max_decoding_message_size(64 * 1024 * 1024);
    let ids: Vec<String> = storage
        .put_documents(authed(
            tokio_stream::iter(put_items(texts, integration)),
            &service,
        ))
        .await
        .unwrap()
        .into_inner()
        .results
        .into_iter()
        .map(|r| r.document_id)
        .collect();
    let reader = Reader::new(&server, tenant, &admin, &service, integration, &ids).await;
    (server, reader)
}
