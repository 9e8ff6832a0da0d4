//! What the benchmarks share: a server on port 0 (embedded or distributed, in throwaway
//! databases and streams), bearer requests, and timing with percentiles.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::{Duration, Instant};

use mindmesh_kit::auth::{Role, TokenIssuer};
use mindmesh_kit::config::Config;
use mindmesh_kit::ids::{IntegrationId, TenantId};
use tonic::transport::Channel;

/// A rate and two percentiles.
pub struct Stats {
    pub per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
}

pub fn stats(mut samples: Vec<Duration>, total: Duration) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    Stats {
        per_sec: samples.len() as f64 / total.as_secs_f64(),
        p50: at(0.5),
        p99: at(0.99),
    }
}

/// Times `n` sequential calls of `f` after a 10% warm-up.
pub async fn measure<F, Fut>(n: usize, f: F) -> Stats
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut samples = Samples::default();
    samples.take(n, f).await;
    samples.stats()
}

/// Latencies gathered over several rounds (so that two variants measured in turns see
/// the same drift of a noisy machine), and the time they took.
#[derive(Default)]
pub struct Samples {
    latencies: Vec<Duration>,
    total: Duration,
}

impl Samples {
    /// Adds `n` sequential calls of `f`, after a 10% warm-up.
    pub async fn take<F, Fut>(&mut self, n: usize, mut f: F)
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = ()>,
    {
        for i in 0..n / 10 {
            f(i).await;
        }
        let start = Instant::now();
        for i in 0..n {
            let t = Instant::now();
            f(n + i).await;
            self.latencies.push(t.elapsed());
        }
        self.total += start.elapsed();
    }

    /// The rate and percentiles of every call taken.
    pub fn stats(self) -> Stats {
        stats(self.latencies, self.total)
    }
}

/// Times `n` calls of `f` with `in_flight` of them running at once.
pub async fn measure_concurrent<F, Fut>(in_flight: usize, n: usize, f: F) -> Stats
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let per_task = n / in_flight;
    for i in 0..in_flight {
        f(i).await; // warm-up: one call per connection stream
    }
    let start = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|t| {
            let f = f.clone();
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let s = Instant::now();
                    f(t * per_task + i).await;
                    samples.push(s.elapsed());
                }
                samples
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    stats(all, start.elapsed())
}

pub fn row(name: &str, s: &Stats, base: &Stats) {
    println!(
        "  {name:<46} {:>9.0}/s  p50 {:>8.1?}  p99 {:>8.1?}   rate {:>5.2}× baseline, p99 {:>5.2}× baseline",
        s.per_sec,
        s.p50,
        s.p99,
        s.per_sec / base.per_sec,
        s.p99.as_secs_f64() / base.p99.as_secs_f64()
    );
}

#[path = "../../tests/support/server.rs"]
mod server;
pub use server::authed;
use server::{Backend, TestServer};

/// A Mindmesh server in this process (the tests' harness, `tests/support/server.rs`),
/// with a connection to it and its configuration at hand.
pub struct BenchServer {
    /// A connection to the server.
    pub channel: Channel,
    /// Its configuration.
    pub config: Config,
    server: TestServer,
}

impl BenchServer {
    /// Embedded (SQLite, embedded bus) or distributed (PostgreSQL, NATS) on port 0.
    pub async fn start(distributed: bool) -> Self {
        Self::start_with(distributed, |_| {}).await
    }

    /// [`BenchServer::start`], with the configuration changed by `tweak` first.
    pub async fn start_with(distributed: bool, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_routed(distributed, false, tweak).await
    }

    /// [`BenchServer::start`], but its services call each other over its own listener
    /// (`peers.*_url` set to it), as every process did before peers were called
    /// in-process: the "before" of the in-process figures.
    pub async fn start_over_loopback(distributed: bool) -> Self {
        Self::start_routed(distributed, true, |_| {}).await
    }

    async fn start_routed(
        distributed: bool,
        over_loopback: bool,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let backend = if distributed {
            Backend::Distributed
        } else {
            Backend::Embedded
        };
        let server = TestServer::start_configured(backend, |config, addr| {
            // Long runs: redeliver only what a consumer truly lost.
            config.bus.ack_wait_ms = 30_000;
            tweak(config);
            config.limits.max_message_bytes = 16 * 1024 * 1024;
            if over_loopback {
                config.peers.permissions_url = Some(format!("http://{addr}"));
                config.peers.storage_url = Some(format!("http://{addr}"));
            }
        })
        .await;
        BenchServer {
            channel: server.channel().await,
            config: server.config.clone(),
            server,
        }
    }

    /// What signs the server's tokens.
    pub fn issuer(&self) -> &TokenIssuer {
        self.server.issuer()
    }

    /// A new tenant named `name` and an admin token of it (valid two hours).
    pub async fn tenant(&self, name: &str) -> (TenantId, String) {
        let (tenant, _) = self.server.create_tenant(name).await;
        let admin = self.server.token_for(
            "admin",
            Some(tenant),
            &[Role::Admin],
            Duration::from_secs(7200),
        );
        (tenant, admin)
    }

    /// The user `first_name last_name <email>`, created by `admin` as an admin would.
    pub async fn user(
        &self,
        admin: &str,
        first_name: &str,
        last_name: &str,
        email: &str,
    ) -> mindmesh_proto::mindmesh::permissions::v1::User {
        self.server
            .create_user(admin, first_name, last_name, email)
            .await
    }

    /// A service token of `tenant` (as ingest holds one), valid two hours.
    pub fn service_token(&self, tenant: TenantId) -> String {
        self.server.service_token(tenant, Duration::from_secs(7200))
    }

    /// A connected integration of `tenant` (an empty local folder, connected by
    /// `admin`, its first sync done), so that a benchmark can write principals, grants
    /// and documents for it with a service token, as ingest does.
    pub async fn integration(&self, tenant: TenantId, admin: &str) -> IntegrationId {
        use mindmesh_proto::mindmesh::ingest::v1 as pb;
        let root = self.config.ingest.local_folder_root.clone().unwrap();
        let name = uuid::Uuid::new_v4().simple().to_string();
        std::fs::create_dir_all(root.join(tenant.to_string()).join(&name)).unwrap();
        let mut ingest = pb::ingest_service_client::IngestServiceClient::new(self.channel.clone());
        let integration = ingest
            .connect_integration(authed(
                pb::ConnectIntegrationRequest {
                    kind: "local_folder".into(),
                    display_name: "Benchmark source".into(),
                    settings: [("path".to_owned(), name)].into(),
                    ..Default::default()
                },
                admin,
            ))
            .await
            .unwrap()
            .into_inner()
            .integration
            .unwrap();
        // Its first sync (requested at connect) ends before the benchmark writes.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut progress = ingest
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
            while let Some(p) = progress.message().await.unwrap() {
                last = Some(p);
            }
            let last = last.unwrap();
            if last.phase == pb::SyncPhase::Done as i32 {
                break;
            }
            assert!(last.error.contains("already running"), "{}", last.error);
            assert!(
                Instant::now() < deadline,
                "the connect-time sync still running after 120 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        integration.id.parse().unwrap()
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}
