//! What the benchmarks share: a server on port 0 (embedded or distributed, in throwaway
//! databases and streams), bearer requests, and timing with percentiles.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::{Duration, Instant};

use mindmesh_kit::Service;
use mindmesh_kit::auth::{Role, TokenIssuer};
use mindmesh_kit::config::{Config, Mode};
use mindmesh_kit::ids::{IntegrationId, TenantId};
use mindmesh_kit::keyfiles::KeyMaterial;
use mindmesh_kit::testing::{TestNats, TestPostgres};
use mindmesh_proto::mindmesh::permissions::v1 as perm;
use tokio_util::sync::CancellationToken;
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

pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// A Mindmesh server in this process.
pub struct BenchServer {
    pub channel: Channel,
    pub config: Config,
    pub issuer: TokenIssuer,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
    _pg: Option<TestPostgres>,
    _nats: Option<TestNats>,
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
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        tweak(&mut config);
        config.limits.max_message_bytes = 16 * 1024 * 1024;
        // Local folders for the integrations a benchmark connects (see `integration`).
        config.ingest.local_folder_root = Some(dir.path().join("import"));
        let (pg, nats, services, mode) = if distributed {
            let pg = TestPostgres::new();
            let nats = TestNats::new(Duration::from_secs(30));
            config.database.url = Some(pg.template());
            config.bus = nats.config.clone();
            // Distributed mode generates nothing: let embedded mode write key files for it.
            KeyMaterial::load(
                &Config {
                    data_dir: dir.path().join("generated"),
                    ..Config::default()
                },
                Mode::Embedded,
            )
            .unwrap();
            let key_dir = dir.path().join("generated/keys");
            config.keys.master_key_file = Some(key_dir.join("master.key"));
            config.keys.jwt_private_key_file = Some(key_dir.join("jwt.pk8"));
            config.keys.signing_key_file = Some(key_dir.join("signing.pk8"));
            (
                Some(pg),
                Some(nats),
                Service::ALL.to_vec(),
                Mode::Distributed,
            )
        } else {
            (None, None, Vec::new(), Mode::Embedded)
        };
        let keys = KeyMaterial::load(&config, mode).unwrap();
        let issuer = TokenIssuer::new(keys.jwt_private.as_ref().unwrap(), "mindmesh");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        if over_loopback {
            config.peers.permissions_url = Some(format!("http://{addr}"));
            config.peers.storage_url = Some(format!("http://{addr}"));
        }
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(mindmesh::serve(
            config.clone(),
            services,
            listener,
            shutdown.clone(),
        ));
        let deadline = Instant::now() + Duration::from_secs(60);
        let channel = loop {
            assert!(
                Instant::now() < deadline,
                "the server at {addr} did not answer within 60 s"
            );
            if let Ok(c) = Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .tcp_nodelay(true)
                .connect()
                .await
            {
                let mut health = tonic_health::pb::health_client::HealthClient::new(c.clone());
                if health
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .is_ok()
                {
                    break c;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        BenchServer {
            channel,
            config,
            issuer,
            shutdown,
            handle,
            _dir: dir,
            _pg: pg,
            _nats: nats,
        }
    }

    /// A new tenant named `name` and an admin token of it (valid two hours).
    pub async fn tenant(&self, name: &str) -> (TenantId, String) {
        let operator = self
            .issuer
            .issue("op", None, &[Role::Operator], Duration::from_secs(7200))
            .unwrap();
        let mut accounts =
            perm::account_service_client::AccountServiceClient::new(self.channel.clone());
        let tenant: TenantId = accounts
            .create_tenant(authed(
                perm::CreateTenantRequest { name: name.into() },
                &operator,
            ))
            .await
            .unwrap()
            .into_inner()
            .tenant
            .unwrap()
            .id
            .parse()
            .unwrap();
        let admin = self
            .issuer
            .issue(
                "admin",
                Some(tenant),
                &[Role::Admin],
                Duration::from_secs(7200),
            )
            .unwrap();
        (tenant, admin)
    }

    /// A service token of `tenant` (as ingest holds one), valid two hours.
    pub fn service_token(&self, tenant: TenantId) -> String {
        self.issuer
            .issue(
                "ingest",
                Some(tenant),
                &[Role::Service],
                Duration::from_secs(7200),
            )
            .unwrap()
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
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
    }
}
