//! `make bench`: a data-subject access export in distributed mode (PostgreSQL, NATS) for
//! a person who owns 1,000 documents — from `VerifyRequest` to the request completed
//! with its archive ready (every service's `SubjectData.Export`, the zip, its manifest,
//! sealed at rest) — beside reading the same documents directly, in the same run: one
//! `SubjectData.Export` of the storage service, which holds them. Target ≤ 2 s.
//!
//! `MINDMESH_BENCH_DSAR_DOCS=200` picks another size for a quick look.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up should stop

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use mindmesh_kit::Service;
use mindmesh_kit::auth::Role;
use mindmesh_proto::mindmesh::dsar::v1 as pb;
use mindmesh_proto::mindmesh::storage::v1 as storage;
use mindmesh_proto::mindmesh::subject::v1 as subject;
use support::{BenchServer, authed};

/// Rounds of each measurement, taken in turns; the median is printed.
const ROUNDS: usize = 3;

fn documents() -> usize {
    std::env::var("MINDMESH_BENCH_DSAR_DOCS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1_000)
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

/// The code in the newest mail to `to` in `mailbox` (written as `.eml` files).
fn mailed_code(mailbox: &std::path::Path, to: &str) -> String {
    let mut mails: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(mailbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| {
            (
                std::fs::metadata(&p).unwrap().modified().unwrap(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .filter(|(_, text)| text.contains(&format!("\r\nTo: {to}\r\n")))
        .filter(|(_, text)| text.contains("\r\nSubject: Confirm your data request\r\n"))
        .collect();
    mails.sort();
    let (_, text) = mails.pop().expect("a mail to the subject");
    text.lines()
        .map(str::trim)
        .find(|l| l.len() == 8 && l.chars().all(|c| c.is_ascii_digit()))
        .expect("a code")
        .to_owned()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn run() {
    let n = documents();
    let server = BenchServer::start(true).await;
    let (tenant, admin) = server.tenant("Bench DSAR").await;
    let email = "ada@acme.example";
    let ada = server.user(&admin, "Ada", "Lovelace", email).await;
    let ada_token = server
        .issuer()
        .issue(
            &ada.id,
            Some(tenant),
            &[Role::Member],
            Duration::from_secs(7200),
        )
        .unwrap();
    let docs = storage::storage_service_client::StorageServiceClient::new(server.channel.clone());
    futures::stream::iter(0..n)
        .for_each_concurrent(8, |i| {
            let (mut docs, token) = (docs.clone(), ada_token.clone());
            async move {
                docs.create_document(authed(
                    storage::CreateDocumentRequest {
                        title: format!("Ada's notes {i}"),
                        mime_type: "text/plain".into(),
                        content: format!("notes {i}: revenue, hiring, roadmap").into_bytes(),
                    },
                    &token,
                ))
                .await
                .unwrap();
            }
        })
        .await;

    let mut dsar = pb::dsar_service_client::DsarServiceClient::new(server.channel.clone());
    let mut direct = subject::subject_data_client::SubjectDataClient::new(server.channel.clone());
    let mailbox = server.config.mailbox_dir();
    let (mut exports, mut reads) = (Vec::new(), Vec::new());
    let mut archive_bytes = 0;
    for round in 0..ROUNDS {
        // Baseline: the same documents, read directly from the service that holds them.
        let started = Instant::now();
        let mut stream = direct
            .export(authed(
                subject::ExportRequest {
                    service: Service::Storage.to_proto() as i32,
                    subject_email: email.into(),
                    request_id: format!("bench-{round}"),
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        let mut records = 0;
        while let Some(record) = stream.next().await {
            record.unwrap();
            records += 1;
        }
        reads.push(started.elapsed());
        assert!(records >= n, "storage exported {records} of {n} documents");

        // The export: filed, confirmed with the mailed code, timed from the confirmation.
        let filed = dsar
            .submit_request(authed(
                pb::SubmitRequestRequest {
                    kind: pb::RequestKind::Access as i32,
                    subject_email: email.into(),
                    requester_email: email.into(),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner()
            .request
            .unwrap();
        let code = mailed_code(&mailbox, email);
        let started = Instant::now();
        dsar.verify_request(authed(
            pb::VerifyRequestRequest {
                request_id: filed.id.clone(),
                code,
            },
            &admin,
        ))
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let request = dsar
                .get_request(authed(
                    pb::GetRequestRequest {
                        request_id: filed.id.clone(),
                    },
                    &admin,
                ))
                .await
                .unwrap()
                .into_inner()
                .request
                .unwrap();
            if request.status == pb::RequestStatus::Completed as i32 {
                break;
            }
            assert!(
                request.status != pb::RequestStatus::Failed as i32
                    && request.status != pb::RequestStatus::Rejected as i32,
                "{request:?}"
            );
            assert!(Instant::now() < deadline, "the export did not complete");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        exports.push(started.elapsed());
        // The archive is really there: downloaded whole once.
        if round == 0 {
            let mut chunks = dsar
                .download_export(authed(
                    pb::DownloadExportRequest {
                        request_id: filed.id.clone(),
                    },
                    &admin,
                ))
                .await
                .unwrap()
                .into_inner();
            while let Some(chunk) = chunks.next().await {
                archive_bytes += chunk.unwrap().data.len();
            }
        }
    }
    let (export, read) = (median(exports), median(reads));
    println!(
        "DSAR access export, distributed mode (PostgreSQL, NATS), a person with {n} documents \
         (median of {ROUNDS}):"
    );
    println!(
        "  verified → archive ready (five services, zip, sealed)   {:>9.1?}   target ≤ 2 s",
        export
    );
    println!(
        "  storage's SubjectData.Export alone [baseline]           {:>9.1?}   export {:.1}× baseline",
        read,
        export.as_secs_f64() / read.as_secs_f64()
    );
    println!("  archive size                                            {archive_bytes:>9} bytes");
}
