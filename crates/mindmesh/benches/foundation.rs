//! `make bench`: figures of the foundation, each beside a baseline measured in the same run
//! (machines are noisy; the ratios are what to compare).
//!
//! - gRPC: `AccountService.GetUser` / `CreateUser` against an empty unary RPC
//!   (`grpc.health.v1.Health/Check`) on the same server, 1 call in flight, in embedded
//!   mode (SQLite, embedded bus) and distributed mode (PostgreSQL, NATS JetStream).
//! - bus: acknowledged publishes, embedded log against JetStream, one at a time.
//! - crypto: sealing a 4 KiB field with AES-256-GCM against copying it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up should stop

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mindmesh_kit::bus::embedded::EmbeddedBus;
use mindmesh_kit::bus::nats::NatsBus;
use mindmesh_kit::bus::{BusMessage, EventBus};
use mindmesh_kit::crypto::SecretKey;
use mindmesh_kit::ids::EventId;
use mindmesh_kit::testing::TestNats;
use mindmesh_proto::mindmesh::permissions::v1 as pb;
use support::{BenchServer, authed, measure, row, stats};

async fn grpc_figures(label: &str, distributed: bool) {
    let server = BenchServer::start(distributed).await;
    let (_, admin) = server.tenant("Bench").await;
    let user = server.user(&admin, "Ada", "L", "ada@example.com").await;
    let channel = server.channel.clone();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let accounts = pb::account_service_client::AccountServiceClient::new(channel);

    let n = 2000;
    let empty = measure(n, |_| {
        let mut h = health.clone();
        async move {
            h.check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
        }
    })
    .await;
    let get = measure(n, |_| {
        let mut a = accounts.clone();
        let request = authed(
            pb::GetUserRequest {
                user_id: user.id.clone(),
            },
            &admin,
        );
        async move {
            a.get_user(request).await.unwrap();
        }
    })
    .await;
    let create = measure(n / 2, |i| {
        let mut a = accounts.clone();
        let request = authed(
            pb::CreateUserRequest {
                first_name: "U".into(),
                last_name: format!("N{i}"),
                email: format!("u{i}@example.com"),
                picture_url: String::new(),
            },
            &admin,
        );
        async move {
            a.create_user(request).await.unwrap();
        }
    })
    .await;
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    println!("gRPC unary, 1 in flight, {label}:");
    row("empty RPC (Health/Check) [baseline]", &empty, &empty);
    row("GetUser (auth, read, open 4 fields)", &get, &empty);
    row("CreateUser (seal, insert, audit, event)", &create, &empty);
    server.stop().await;
}

async fn bus_figures() {
    let n = 2000;
    let message = |_: usize| BusMessage {
        id: EventId::new(),
        event_type: "account.activity".into(),
        payload: bytes::Bytes::from(vec![7u8; 256]),
        traceparent: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let embedded: Arc<dyn EventBus> = Arc::new(
        EmbeddedBus::open(
            &mindmesh_kit::db::sqlite_url(&dir.path().join("events.db")),
            Duration::from_secs(30),
        )
        .await
        .unwrap(),
    );
    let nats_streams = TestNats::new(Duration::from_secs(30));
    let nats: Arc<dyn EventBus> = Arc::new(NatsBus::connect(&nats_streams.config).await.unwrap());
    let on_nats = measure(n, |i| {
        let bus = nats.clone();
        let m = message(i);
        async move {
            bus.publish(&m).await.unwrap();
        }
    })
    .await;
    let on_embedded = measure(n, |i| {
        let bus = embedded.clone();
        let m = message(i);
        async move {
            bus.publish(&m).await.unwrap();
        }
    })
    .await;
    println!("bus, acknowledged publish of 256 B, one at a time:");
    row("NATS JetStream [baseline]", &on_nats, &on_nats);
    row("embedded log (SQLite WAL)", &on_embedded, &on_nats);
}

fn crypto_figures() {
    let key = SecretKey::generate().unwrap();
    let data = vec![42u8; 4096];
    let n = 20_000;
    let time = |f: &mut dyn FnMut()| {
        let mut samples = Vec::with_capacity(n);
        let start = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            f();
            samples.push(t.elapsed());
        }
        stats(samples, start.elapsed())
    };
    let copy = time(&mut || {
        std::hint::black_box(std::hint::black_box(&data).to_vec());
    });
    let seal = time(&mut || {
        std::hint::black_box(
            key.seal(b"tenant|users|email|row", std::hint::black_box(&data))
                .unwrap(),
        );
    });
    println!("crypto, 4 KiB field:");
    row("copy (Vec::to_vec) [baseline]", &copy, &copy);
    row("AES-256-GCM seal", &seal, &copy);
    println!("  seal throughput: {:.2} GB/s", seal.per_sec * 4096.0 / 1e9);
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "mindmesh foundation benchmarks ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    crypto_figures();
    runtime.block_on(async {
        bus_figures().await;
        grpc_figures("embedded (SQLite, embedded bus)", false).await;
        grpc_figures("distributed (PostgreSQL, NATS)", true).await;
    });
}
