//! `make bench`: a disconnect cascade in distributed mode (PostgreSQL, NATS JetStream),
//! from `DisconnectIntegration` to a receipt `VerifyReceipt` accepts, for integrations
//! of 1,000, 10,000 and 100,000 documents — beside the time storage alone took to erase
//! the same documents inside that cascade (from the request to its signed attestation,
//! by the ledger's clocks), measured in the same run.
//!
//! `MINDMESH_BENCH_CASCADE_DOCS=1000,10000` picks the sizes for a quick look.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up should stop

mod support;

use std::time::{Duration, Instant};

use mindmesh_kit::Service;
use mindmesh_kit::auth::Role;
use mindmesh_kit::ids::IntegrationId;
use mindmesh_proto::mindmesh::common::v1::CascadeState;
use mindmesh_proto::mindmesh::ingest::v1 as ingest;
use mindmesh_proto::mindmesh::retention::v1 as pb;
use mindmesh_proto::mindmesh::storage::v1 as storage;
use support::{BenchServer, authed};

/// Documents per `PutDocuments` stream.
const STREAM: usize = 5_000;

fn sizes() -> Vec<usize> {
    std::env::var("MINDMESH_BENCH_CASCADE_DOCS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000])
}

fn items(integration: IntegrationId, from: usize, n: usize) -> Vec<storage::PutDocumentsRequest> {
    (from..from + n)
        .flat_map(|i| {
            let text = format!("quarterly notes {i}: revenue, hiring, roadmap");
            [
                storage::put_documents_request::Item::Header(storage::DocumentHeader {
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
                storage::put_documents_request::Item::Chunk(text.into_bytes()),
            ]
        })
        .map(|item| storage::PutDocumentsRequest { item: Some(item) })
        .collect()
}

fn seconds(t: &prost_types::Timestamp) -> f64 {
    t.seconds as f64 + f64::from(t.nanos) / 1e9
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let server = BenchServer::start(true).await;
    let operator = server
        .issuer()
        .issue("op", None, &[Role::Operator], Duration::from_secs(7200))
        .unwrap();
    println!("disconnect cascade, distributed mode (PostgreSQL, NATS), to a verified receipt:");
    println!(
        "  {:>8}  {:>10}  {:>12}  {:>8}  {:>10}",
        "docs", "cascade", "storage alone [baseline]", "ratio", "per doc"
    );
    let mut figures = Vec::new();
    for n in sizes() {
        let (tenant, admin) = server.tenant(&format!("Bench {n}")).await;
        let service = server.service_token(tenant);
        let integration = server.integration(tenant, &admin).await;
        let mut store =
            storage::storage_service_client::StorageServiceClient::new(server.channel.clone());
        for from in (0..n).step_by(STREAM) {
            let results = store
                .put_documents(authed(
                    tokio_stream::iter(items(integration, from, STREAM.min(n - from))),
                    &service,
                ))
                .await
                .unwrap()
                .into_inner()
                .results;
            assert!(results.iter().all(|r| !r.document_id.is_empty()));
        }

        let started = Instant::now();
        let cascade =
            ingest::ingest_service_client::IngestServiceClient::new(server.channel.clone())
                .disconnect_integration(authed(
                    ingest::DisconnectIntegrationRequest {
                        integration_id: integration.to_string(),
                    },
                    &admin,
                ))
                .await
                .unwrap()
                .into_inner()
                .cascade_id;
        let mut retention =
            pb::retention_service_client::RetentionServiceClient::new(server.channel.clone());
        let deadline = Instant::now() + Duration::from_secs(600);
        let done = loop {
            let answer = retention
                .get_cascade(authed(
                    pb::GetCascadeRequest {
                        cascade_id: cascade.clone(),
                    },
                    &operator,
                ))
                .await;
            if let Ok(r) = answer
                && let Some(c) = r.into_inner().cascade
                && c.state == CascadeState::Done as i32
            {
                break c;
            }
            assert!(Instant::now() < deadline, "cascade of {n} did not complete");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let verified = retention
            .verify_receipt(authed(
                pb::VerifyReceiptRequest {
                    receipt: done.receipt.clone(),
                },
                &operator,
            ))
            .await
            .unwrap()
            .into_inner();
        let total = started.elapsed();
        assert!(verified.signature_valid && verified.attestations_valid && verified.included);
        let part = done
            .services
            .iter()
            .find(|s| s.service == Service::Storage.to_proto() as i32)
            .unwrap();
        assert_eq!(part.counts.get("documents"), Some(&(n as u64)));
        let storage_alone = seconds(part.completed_at.as_ref().unwrap())
            - seconds(done.started_at.as_ref().unwrap());
        let total_s = total.as_secs_f64();
        println!(
            "  {n:>8}  {:>9.2}s  {:>11.2}s  {:>7.2}×  {:>8.1}µs",
            total_s,
            storage_alone,
            total_s / storage_alone,
            total_s * 1e6 / n as f64
        );
        figures.push((n, total_s));
    }
    // Growth between the two largest sizes (the smallest is mostly fixed costs).
    if let [.., (small_n, small), (big_n, big)] = figures.as_slice() {
        let growth = (big / small) / (*big_n as f64 / *small_n as f64);
        println!(
            "  growth {big_n} vs {small_n} documents: {growth:.2}× linear (≤ 1.00: linear or better)"
        );
    }
    if let Some((n, t)) = figures.iter().find(|(n, _)| *n == 100_000) {
        let verdict = if *t <= 10.0 { "met" } else { "MISSED" };
        println!("  target ≤ 10 s for {n} documents: {verdict} ({t:.2} s)");
    }
    server.stop().await;
}
