//! `make bench`: a full Google Drive sync of 10,000 files (4 KiB each, mixed grants,
//! 200 users, 50 groups) from a local fake of Google's APIs, end to end into storage and
//! permissions, in embedded mode (SQLite, embedded bus) and distributed mode
//! (PostgreSQL, NATS), each figure beside baselines measured in the same run:
//!
//! - **fetch only**: the same listing and 10,000 exports read from the fake with the same
//!   concurrency, nothing stored (the source's ceiling on this machine);
//! - **store only**: the same documents streamed straight to `PutDocuments`, and their
//!   grants to `SetDocumentAcls` (the sink's ceiling);
//! - the sync's own account of where its time went (principals, listing, content and
//!   store, grants, bookkeeping), from its log line, and what sealing the contents alone
//!   costs, for scale.
//!
//! Then Drive at domain scale (#11): a company of 200 users, 10 outside collaborators,
//! 50 nested groups and the same number of files, synced through one identity that sees
//! every file (the baseline), impersonating every user (domain-wide delegation), and
//! impersonating every user under a rate-limit storm (a tenth of the calls 429 with
//! `Retry-After: 1`, a tenth 403 `userRateLimitExceeded`), each as a ratio.
//!
//! `MINDMESH_BENCH_FILES` shrinks the run; `MINDMESH_BENCH_ONLY=sqlite|postgresql` runs
//! one mode; `MINDMESH_BENCH_PART=sync|domain` one part.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up should stop

mod support;

// The tests' fake of Google's APIs (it names its sibling as `super::fake_http`).
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/common/fake_google.rs"]
mod fake_google;
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/common/fake_http.rs"]
mod fake_http;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_google::{FakeGoogle, Perm, World, doc};
use futures::StreamExt;
use mindmesh_kit::ids::TenantId;
use mindmesh_proto::mindmesh::ingest::v1 as pb;
use mindmesh_proto::mindmesh::permissions::v1 as perm;
use mindmesh_proto::mindmesh::storage::v1 as store;
use support::{BenchServer, authed};

const CONTENT_BYTES: usize = 4 * 1024;
const USERS: usize = 200;
const GROUPS: usize = 50;
const ADMIN: &str = "admin@bench.example";
/// Contents fetched at once: the ingest default (`ingest.fetch_concurrency`).
const CONCURRENCY: usize = 8;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn user(i: usize) -> String {
    format!("u{i:03}@bench.example")
}

fn group(i: usize) -> String {
    format!("g{i:02}@bench.example")
}

/// The directory and the files: each file shared with one user and one group, every
/// tenth with the whole domain; groups nest (group i inside group i/2).
fn world(files: usize) -> World {
    let mut w = World {
        page_size: 1000,
        oauth_user: ADMIN.into(),
        ..World::default()
    };
    w.users
        .push(("1".into(), ADMIN.into(), "Admin".into(), false));
    for i in 0..USERS {
        w.users
            .push(((100 + i).to_string(), user(i), format!("User {i}"), false));
    }
    w.admins.insert(ADMIN.into());
    for g in 0..GROUPS {
        let mut members: Vec<(String, &'static str)> = (0..USERS)
            .filter(|u| u % GROUPS == g)
            .map(|u| (user(u), "USER"))
            .collect();
        members.extend(
            (1..GROUPS)
                .filter(|child| child / 2 == g && *child != g)
                .map(|child| (group(child), "GROUP")),
        );
        w.groups
            .push((format!("gid{g}"), group(g), format!("Group {g}"), members));
    }
    let body: String = "lorem ipsum dolor sit amet ".repeat(CONTENT_BYTES / 27 + 1);
    for i in 0..files {
        let mut perms = vec![
            Perm::user(&user(i % USERS), "reader"),
            Perm::group(&group(i % GROUPS), "reader"),
        ];
        if i % 10 == 0 {
            perms.push(Perm::domain("bench.example", true));
        }
        let text = format!("{i:08} {}", &body[..CONTENT_BYTES - 9]);
        w.put(doc(
            &format!("file-{i:05}"),
            &format!("Document {i}"),
            ADMIN,
            &text,
            perms,
        ));
    }
    w
}

/// Baseline: the listing and every export from the fake, `CONCURRENCY` at a time.
async fn fetch_only(fake: &FakeGoogle, token: &str) -> (usize, Duration) {
    let client = reqwest::Client::new();
    let base = format!("http://{}/drive/v3", fake.addr);
    let start = Instant::now();
    let mut ids = Vec::new();
    let mut page_token: Option<String> = None;
    loop {
        let mut query = vec![
            ("q", "trashed = false"),
            ("pageSize", "1000"),
            ("corpora", "allDrives"),
            ("supportsAllDrives", "true"),
            ("includeItemsFromAllDrives", "true"),
            (
                "fields",
                "nextPageToken,files(id,permissions(id,type,emailAddress,role))",
            ),
        ];
        if let Some(t) = &page_token {
            query.push(("pageToken", t));
        }
        let url = reqwest::Url::parse_with_params(&format!("{base}/files"), &query).unwrap();
        let page: serde_json::Value = client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for f in page["files"].as_array().unwrap() {
            ids.push(f["id"].as_str().unwrap().to_owned());
        }
        match page["nextPageToken"].as_str() {
            Some(t) => page_token = Some(t.to_owned()),
            None => break,
        }
    }
    let fetched = futures::stream::iter(ids.iter())
        .map(|id| {
            let url = reqwest::Url::parse_with_params(
                &format!("{base}/files/{id}/export"),
                &[("mimeType", "text/plain")],
            )
            .unwrap();
            let request = client.get(url).bearer_auth(token);
            async move { request.send().await.unwrap().bytes().await.unwrap().len() }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    assert!(fetched.iter().all(|n| *n >= CONTENT_BYTES));
    (ids.len(), start.elapsed())
}

/// Baseline: the documents straight to `PutDocuments` (one stream per 1,000, as the
/// sync sends a page), then their grants to `SetDocumentAcls`.
async fn store_only(
    server: &BenchServer,
    tenant: TenantId,
    admin: &str,
    files: usize,
) -> (Duration, Duration) {
    let token = server.service_token(tenant);
    let integration = server.integration(tenant, admin).await;
    let mut storage =
        store::storage_service_client::StorageServiceClient::new(server.channel.clone())
            .max_encoding_message_size(64 * 1024 * 1024)
            .max_decoding_message_size(64 * 1024 * 1024);
    let body = "x".repeat(CONTENT_BYTES);
    let start = Instant::now();
    let mut ids = Vec::with_capacity(files);
    for chunk in (0..files).collect::<Vec<_>>().chunks(1000) {
        let messages: Vec<store::PutDocumentsRequest> = chunk
            .iter()
            .flat_map(|i| {
                [
                    store::put_documents_request::Item::Header(store::DocumentHeader {
                        integration_id: integration.to_string(),
                        external_id: format!("base-{i}"),
                        source_version: "1".into(),
                        title: format!("Document {i}"),
                        mime_type: "text/plain".into(),
                        source_url: String::new(),
                        modified_at: None,
                        owner: ADMIN.into(),
                        size_bytes: CONTENT_BYTES as u64,
                    }),
                    store::put_documents_request::Item::Chunk(body.as_bytes().to_vec()),
                ]
            })
            .map(|item| store::PutDocumentsRequest { item: Some(item) })
            .collect();
        let results = storage
            .put_documents(authed(tokio_stream::iter(messages), &token))
            .await
            .unwrap()
            .into_inner()
            .results;
        ids.extend(results.into_iter().map(|r| r.document_id));
    }
    let stored = start.elapsed();
    let mut permissions =
        perm::permissions_service_client::PermissionsServiceClient::new(server.channel.clone())
            .max_encoding_message_size(64 * 1024 * 1024);
    let start = Instant::now();
    for (c, chunk) in ids.chunks(1000).enumerate() {
        let acls = chunk
            .iter()
            .enumerate()
            .map(|(j, id)| {
                let i = c * 1000 + j;
                perm::DocumentAcl {
                    document_id: id.clone(),
                    integration_id: integration.to_string(),
                    grants: vec![
                        perm::Grant {
                            grantee_kind: perm::GranteeKind::User as i32,
                            grantee: user(i % USERS),
                            role: perm::Role::Reader as i32,
                        },
                        perm::Grant {
                            grantee_kind: perm::GranteeKind::Group as i32,
                            grantee: group(i % GROUPS),
                            role: perm::Role::Reader as i32,
                        },
                    ],
                }
            })
            .collect();
        permissions
            .set_document_acls(authed(perm::SetDocumentAclsRequest { acls }, &token))
            .await
            .unwrap();
    }
    (stored, start.elapsed())
}

/// How long sealing every content takes (what encryption costs in a sync).
fn encrypt_only(files: usize) -> Duration {
    let key = mindmesh_kit::crypto::SecretKey::generate().unwrap();
    let content = vec![b'x'; CONTENT_BYTES];
    let start = Instant::now();
    for i in 0..files {
        let sealed = key.seal(format!("doc-{i}").as_bytes(), &content).unwrap();
        std::hint::black_box(sealed);
    }
    start.elapsed()
}

/// The sync's own "sync finished" log fields, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(path) = std::env::var("MINDMESH_BENCH_TRACE") {
            // Where each page of a sync went (the engine's debug lines), for reading.
            if let Ok(mut file) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
            {
                let _ = file.write_all(buf);
            }
        }
        self.0
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(buf).into_owned());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn run(distributed: bool, files: usize, log: &Captured) {
    let label = if distributed {
        "distributed (PostgreSQL + NATS)"
    } else {
        "embedded (SQLite + embedded bus)"
    };
    println!("\n{label}");
    let fake = FakeGoogle::start(world(files)).await;
    let token = fake.with(|w| w.new_token(ADMIN));
    let server = BenchServer::start(distributed).await;
    let (tenant, admin) = server.tenant("Bench").await;

    let (listed, took) = fetch_only(&fake, &token).await;
    assert_eq!(listed, files);
    let fetch_rate = files as f64 / took.as_secs_f64();
    println!(
        "  {:<54} {fetch_rate:>8.0} docs/s  ({:>6.2} s)",
        "baseline: fetch only (listing + exports)",
        took.as_secs_f64()
    );
    let (stored, acls) = store_only(&server, tenant, &admin, files).await;
    let store_rate = files as f64 / (stored + acls).as_secs_f64();
    println!(
        "  {:<54} {store_rate:>8.0} docs/s  ({:>6.2} s: store {:.2} s, grants {:.2} s)",
        "baseline: store only (PutDocuments + SetDocumentAcls)",
        (stored + acls).as_secs_f64(),
        stored.as_secs_f64(),
        acls.as_secs_f64()
    );
    let encrypt = encrypt_only(files);
    println!(
        "  {:<54} {:>8.0} docs/s  ({:>6.2} s)",
        "for scale: AES-256-GCM seal of the contents, 1 thread",
        files as f64 / encrypt.as_secs_f64(),
        encrypt.as_secs_f64()
    );

    log.0.lock().unwrap().clear();
    let (last, took) = connect_and_sync(&server, &admin, fake.settings(), token.clone()).await;
    assert_eq!(last.created, files as u64, "{last:?}");
    let rate = files as f64 / took.as_secs_f64();
    println!(
        "  {:<54} {rate:>8.0} docs/s  ({:>6.2} s)   {:>4.2}× fetch only, {:>4.2}× store only",
        "full sync, connect to done",
        took.as_secs_f64(),
        rate / fetch_rate,
        rate / store_rate
    );
    let lines = log.0.lock().unwrap().clone();
    if let Some(line) = lines.iter().find(|l| l.contains("sync finished")) {
        let fields: Vec<&str> = line
            .split_whitespace()
            .filter(|f| f.contains("_ms="))
            .collect();
        println!("  where the sync's time went: {}", fields.join(" "));
    }
    server.stop().await;
}

/// Connects Drive with `access_token` (a token or a service-account key) and waits for
/// the first sync; returns its final progress and how long connect-to-done took.
async fn connect_and_sync(
    server: &BenchServer,
    admin: &str,
    settings: std::collections::HashMap<String, String>,
    access_token: String,
) -> (pb::SyncProgress, Duration) {
    let mut ingest = pb::ingest_service_client::IngestServiceClient::new(server.channel.clone());
    let start = Instant::now();
    let integration = ingest
        .connect_integration(authed(
            pb::ConnectIntegrationRequest {
                kind: "google_drive".into(),
                display_name: "Bench Drive".into(),
                settings,
                access_token,
                ..Default::default()
            },
            admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .integration
        .unwrap();
    let mut stream = ingest
        .sync_integration(authed(
            pb::SyncIntegrationRequest {
                integration_id: integration.id.clone(),
                full: false,
            },
            admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(p) = stream.message().await.unwrap() {
        last = Some(p);
    }
    let last = last.unwrap();
    assert_eq!(last.phase, pb::SyncPhase::Done as i32, "{}", last.error);
    (last, start.elapsed())
}

/// The last sync's own account of where its time went, from its log line.
fn breakdown(log: &Captured) -> String {
    let lines = std::mem::take(&mut *log.0.lock().unwrap());
    lines
        .iter()
        .rev()
        .find(|l| l.contains("sync finished"))
        .map(|line| {
            line.split_whitespace()
                .filter(|f| f.contains("_ms="))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The longest time between two calls the fake received.
fn longest_gap(fake: &FakeGoogle) -> Duration {
    fake.with(|w| {
        let mut at: Vec<Instant> = w.seen.iter().map(|s| s.at).collect();
        at.sort();
        at.windows(2)
            .map(|p| p[1].duration_since(p[0]))
            .max()
            .unwrap_or_default()
    })
}

/// #11: the same company synced three ways in one run — through one identity that
/// sees every file (the baseline), impersonating each of its users (domain-wide
/// delegation), and impersonating each user under a rate-limit storm.
async fn domain(distributed: bool, files: usize, log: &Captured) {
    use fake_google::{Company, company, company_user};
    let label = if distributed {
        "distributed (PostgreSQL + NATS)"
    } else {
        "embedded (SQLite + embedded bus)"
    };
    println!("\n{label}: Drive at domain scale");
    let shape = Company {
        users: USERS,
        outsiders: 10,
        groups: GROUPS,
        files,
        content_bytes: CONTENT_BYTES,
        seed: 1,
    };
    let mut world = company(shape);
    // The baseline's identity sees and may share every file: the same corpus.
    let all_seeing = company_user(0);
    for f in world.files.values_mut() {
        if f.owner != all_seeing {
            f.perms.push(Perm::user(&all_seeing, "writer"));
        }
    }
    for members in world.drives.values_mut() {
        members.insert(all_seeing.clone());
    }
    let (key, public) = fake_google::service_account();
    world.service_account_key = Some(public);
    let key = key.to_string();
    let fake = FakeGoogle::start(world).await;
    // A storm fails a call five times running now and then; more attempts keep the
    // sync whole (the same setting for all three runs).
    let server = BenchServer::start_with(distributed, |c| c.ingest.max_attempts = 10).await;
    let max_backoff = Duration::from_secs(server.config.ingest.max_backoff_secs);

    log.0.lock().unwrap().clear();
    let (_, admin) = server.tenant("Single").await;
    let token = fake.with(|w| w.new_token(&all_seeing));
    let (single, single_took) = connect_and_sync(&server, &admin, fake.settings(), token).await;
    let single_rate = single.created as f64 / single_took.as_secs_f64();
    println!(
        "  {:<54} {single_rate:>8.0} docs/s  ({:>6.2} s, {} documents)",
        "baseline: one identity that sees every file",
        single_took.as_secs_f64(),
        single.created
    );
    println!("  {:<54} {}", "", breakdown(log));

    let mut settings = fake.settings();
    settings.insert("admin_email".into(), all_seeing.clone());
    let (_, admin) = server.tenant("Domain").await;
    fake.with(|w| w.seen.clear());
    let (whole, whole_took) =
        connect_and_sync(&server, &admin, settings.clone(), key.clone()).await;
    assert_eq!(whole.created, single.created, "{whole:?}");
    let clean_gap = longest_gap(&fake);
    let whole_rate = whole.created as f64 / whole_took.as_secs_f64();
    println!(
        "  {:<54} {whole_rate:>8.0} docs/s  ({:>6.2} s)   {:>4.2}× one identity (target ≥ 0.5×)",
        format!("whole domain, {USERS} users impersonated"),
        whole_took.as_secs_f64(),
        whole_rate / single_rate
    );
    println!("  {:<54} {}", "", breakdown(log));

    let (_, admin) = server.tenant("Storm").await;
    fake.with(|w| {
        w.seen.clear();
        w.throttled.clear();
        w.storm = true;
    });
    let (stormy, storm_took) = connect_and_sync(&server, &admin, settings, key).await;
    assert_eq!(stormy.created, single.created, "{stormy:?}");
    let (throttled, calls) = fake.with(|w| (w.throttled.len(), w.seen.len()));
    if let Ok(path) = std::env::var("MINDMESH_BENCH_TRACE") {
        trace_calls(&fake, &path);
    }
    let gap = longest_gap(&fake);
    println!(
        "  {:<54} {:>8.0} docs/s  ({:>6.2} s)   {:>4.2}× the clean time (target ≤ 3×)",
        "whole domain under a storm (10% 429, 10% 403)",
        stormy.created as f64 / storm_took.as_secs_f64(),
        storm_took.as_secs_f64(),
        storm_took.as_secs_f64() / whole_took.as_secs_f64()
    );
    println!("  {:<54} {}", "", breakdown(log));
    println!(
        "  {:<54} {throttled} of {calls} calls throttled; longest gap between calls {:.2} s \
         (clean {:.2} s; bound: Retry-After 1 s + max backoff {} s)",
        "",
        gap.as_secs_f64(),
        clean_gap.as_secs_f64(),
        max_backoff.as_secs()
    );
    server.stop().await;
}

/// For reading where a storm's time goes: each kind of call, how many, and when the
/// first and last were answered (seconds after the first call).
fn trace_calls(fake: &FakeGoogle, path: &str) {
    use std::io::Write as _;
    let summary = fake.with(|w| {
        let start = w.seen.first().map(|s| s.at);
        let mut kinds: std::collections::BTreeMap<String, (usize, f64, f64)> =
            std::collections::BTreeMap::new();
        for seen in &w.seen {
            let kind = seen
                .path
                .split('/')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    if p.len() > 12 || p.contains('-') {
                        "*"
                    } else {
                        p
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let at = start.map_or(0.0, |s| seen.at.duration_since(s).as_secs_f64());
            let entry = kinds.entry(kind).or_insert((0, at, at));
            entry.0 += 1;
            entry.1 = entry.1.min(at);
            entry.2 = entry.2.max(at);
        }
        kinds
            .into_iter()
            .map(|(k, (n, first, last))| format!("calls {k}: {n}, {first:.2}..{last:.2} s\n"))
            .collect::<String>()
    });
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
    {
        let _ = file.write_all(summary.as_bytes());
    }
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let log = Captured::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_env_filter(if std::env::var_os("MINDMESH_BENCH_TRACE").is_some() {
            "mindmesh_ingest=info,mindmesh_ingest::sync=debug"
        } else {
            "mindmesh_ingest=info"
        })
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let files = env_or("MINDMESH_BENCH_FILES", 10_000);
    let only = std::env::var("MINDMESH_BENCH_ONLY").unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "ingest: full Google Drive sync of {files} files of {CONTENT_BYTES} bytes, {USERS} users, {GROUPS} groups"
    );
    let part = std::env::var("MINDMESH_BENCH_PART").unwrap_or_default();
    runtime.block_on(async {
        for (distributed, mode) in [(false, "sqlite"), (true, "postgresql")] {
            if !only.is_empty() && only != mode {
                continue;
            }
            if part.is_empty() || part == "sync" {
                run(distributed, files, &log).await;
            }
            if part.is_empty() || part == "domain" {
                domain(distributed, files, &log).await;
            }
        }
    });
}
