//! Layered configuration: defaults, then a TOML file, then `MINDMESH__SECTION__KEY`
//! environment variables, then command-line overrides. Unknown keys are an error.
//!
//! Nothing here reads the process environment by itself: callers pass the variables in
//! ([`Config::load`]), so tests build configs from values and never touch `std::env`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::service::Service;

/// The whole configuration of one Mindmesh process.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the gRPC server listens on.
    pub listen: SocketAddr,
    /// Directory for SQLite files, the embedded event log and generated keys (embedded mode).
    pub data_dir: PathBuf,
    /// Region the data must stay in (P17); recorded in every service, checked on start.
    pub region: String,
    /// Databases.
    pub database: DatabaseConfig,
    /// Event bus.
    pub bus: BusConfig,
    /// Key material.
    pub keys: KeysConfig,
    /// Token validation and issuing.
    pub auth: AuthConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// Request limits.
    pub limits: LimitsConfig,
    /// Where the services this process calls are reached.
    pub peers: PeersConfig,
    /// The storage service.
    pub storage: StorageConfig,
    /// The ingest service.
    pub ingest: IngestConfig,
    /// The retention service.
    pub retention: RetentionConfig,
    /// The dsar service.
    pub dsar: DsarConfig,
    /// The usage-analytics processor (P14).
    pub analytics: AnalyticsConfig,
    /// TLS of the gRPC server and of calls to peers (P01 in transit).
    pub tls: TlsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data_dir: PathBuf::from("data"),
            region: "eu".to_owned(),
            database: DatabaseConfig::default(),
            bus: BusConfig::default(),
            keys: KeysConfig::default(),
            auth: AuthConfig::default(),
            telemetry: TelemetryConfig::default(),
            limits: LimitsConfig::default(),
            peers: PeersConfig::default(),
            storage: StorageConfig::default(),
            ingest: IngestConfig::default(),
            retention: RetentionConfig::default(),
            dsar: DsarConfig::default(),
            analytics: AnalyticsConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// TLS (`[tls]`, see `mindmesh_kit::tls`): off unless `cert_file` is set.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM); set, the gRPC server serves TLS only.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Set: clients must show a certificate issued by this CA (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// The CA that peers at `https://` URLs are verified against; this process shows
    /// them `cert_file` as its client certificate.
    pub peer_ca_file: Option<PathBuf>,
    /// Milliseconds between two looks at the files (rotated ones are picked up live).
    pub reload_interval_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            peer_ca_file: None,
            reload_interval_ms: 30_000,
        }
    }
}

/// Where each service keeps its data.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Database URL template; `{service}` is replaced by the service name, so one setting
    /// gives every service its own database (e.g. `postgres://pg/mindmesh_{service}`).
    /// Unset: one SQLite file per service under `data_dir`.
    pub url: Option<String>,
    /// Keystore URL template, kept apart from the data it protects (DESIGN.md §6);
    /// `{service}` is replaced as above. Unset: `<service>_keys` beside the data database.
    pub keystore_url: Option<String>,
    /// Connection pool size per service.
    pub max_connections: u32,
    /// PostgreSQL: rows a deletion cascade erases above which the erased tables are
    /// vacuumed as soon as it commits, rather than whenever autovacuum gets to them
    /// (until then the erased rows' dead versions stay in the table files). SQLite
    /// zeroes what it deletes and empties its log after every cascade.
    pub vacuum_after_rows: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            keystore_url: None,
            max_connections: 8,
            vacuum_after_rows: 10_000,
        }
    }
}

/// Which bus implementation carries events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// The durable SQLite-backed log inside the process (single-process mode).
    #[default]
    Embedded,
    /// NATS JetStream (distributed mode).
    Nats,
}

/// The event bus.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// Implementation. Distributed mode always uses NATS.
    pub kind: BusKind,
    /// NATS server URL.
    pub nats_url: String,
    /// JetStream stream holding the events.
    pub stream: String,
    /// Subject root: events go to `<root>.events.<type>`, dead letters to
    /// `<root>.deadletter.<consumer>` (stream `<stream>_DEADLETTER`).
    pub subject_root: String,
    /// Stream replicas (3 in a cluster).
    pub replicas: usize,
    /// How long a delivered, unacknowledged event waits before it is redelivered.
    pub ack_wait_ms: u64,
    /// Deliveries of one event before it goes to the dead-letter subject.
    pub max_deliver: u32,
    /// How often the outbox relay looks for unpublished events when not woken.
    pub relay_interval_ms: u64,
    /// NATS over TLS: the CA the server's certificate is verified against (with a
    /// `tls://` URL, or any URL once set).
    pub tls_ca_file: Option<PathBuf>,
    /// The client certificate shown to a NATS server that verifies clients (PEM).
    pub tls_cert_file: Option<PathBuf>,
    /// Its key (PEM).
    pub tls_key_file: Option<PathBuf>,
    /// The NATS user to log in as.
    pub user: Option<String>,
    /// A file holding that user's password (a mounted Secret).
    pub password_file: Option<PathBuf>,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            kind: BusKind::Embedded,
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            stream: "MINDMESH_EVENTS".to_owned(),
            subject_root: "mindmesh".to_owned(),
            replicas: 1,
            ack_wait_ms: 30_000,
            max_deliver: 5,
            relay_interval_ms: 1_000,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            user: None,
            password_file: None,
        }
    }
}

impl BusConfig {
    /// The password of `user`, from `password_file` (trailing line break removed).
    pub fn password(&self) -> Result<Option<String>> {
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "bus.password_file {} cannot be read: {e}",
                path.display()
            ))
        })?;
        Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()))
    }

    /// Redelivery delay for unacknowledged events.
    pub fn ack_wait(&self) -> Duration {
        Duration::from_millis(self.ack_wait_ms)
    }

    /// The subject an event of `event_type` is published on.
    pub fn event_subject(&self, event_type: &str) -> String {
        format!("{}.events.{event_type}", self.subject_root)
    }

    /// The subject that dead letters of `consumer` go to.
    pub fn dead_letter_subject(&self, consumer: &str) -> String {
        format!("{}.deadletter.{consumer}", self.subject_root)
    }

    /// The stream holding dead letters.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}_DEADLETTER", self.stream)
    }
}

/// Key material. In embedded mode, missing keys are generated into `data_dir/keys`;
/// distributed mode refuses to start without them.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Master key (32 bytes, base64). Prefer `master_key_file`.
    pub master_key: Option<String>,
    /// File holding the master key (32 bytes, base64).
    pub master_key_file: Option<PathBuf>,
    /// The master key being replaced, during a master key rotation (32 bytes, base64):
    /// it only unwraps. Remove it once `mindmesh keys rotate` reports nothing under it.
    pub previous_master_key_file: Option<PathBuf>,
    /// Ed25519 private key (PKCS#8 DER) that signs access tokens; only `mindmesh token`
    /// and embedded mode need it.
    pub jwt_private_key_file: Option<PathBuf>,
    /// Ed25519 public key (32 bytes, base64) that verifies access tokens.
    pub jwt_public_key: Option<String>,
    /// Ed25519 private key (PKCS#8 DER) this process signs deletion attestations and
    /// receipts with.
    pub signing_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for KeysConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeysConfig")
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| "<redacted>"),
            )
            .field("master_key_file", &self.master_key_file)
            .field("previous_master_key_file", &self.previous_master_key_file)
            .field("jwt_private_key_file", &self.jwt_private_key_file)
            .field("jwt_public_key", &self.jwt_public_key)
            .field("signing_key_file", &self.signing_key_file)
            .finish()
    }
}

/// Access tokens.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `iss` claim issued and required.
    pub issuer: String,
    /// Lifetime of tokens issued by `mindmesh token`, in seconds.
    pub token_ttl_secs: u64,
    /// Clock skew tolerated when checking `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// Longest token lifetime (`exp - iat`) accepted, in seconds; longer tokens are
    /// refused, so that a leaked token cannot be one that never expires.
    pub max_token_lifetime_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            issuer: "mindmesh".to_owned(),
            token_ttl_secs: 3600,
            leeway_secs: 5,
            max_token_lifetime_secs: 86_400,
        }
    }
}

/// Log format on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// Logs and traces.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/gRPC collector endpoint, e.g. `http://otel-collector:4317`. Unset: no export.
    pub otlp_endpoint: Option<String>,
    /// `tracing` filter directive, e.g. `info,mindmesh_kit=debug`.
    pub log_filter: String,
    /// Log format.
    pub log_format: LogFormat,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            log_filter: "info,sea_orm_migration=warn".to_owned(),
            log_format: LogFormat::Text,
        }
    }
}

/// Request limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest gRPC message accepted or sent, in bytes.
    pub max_message_bytes: usize,
    /// Seconds in-flight calls get to finish after SIGTERM.
    pub shutdown_grace_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_bytes: 4 * 1024 * 1024,
            shutdown_grace_secs: 20,
        }
    }
}

/// Where this process reaches the services it calls over gRPC. Unset: the service in this
/// process, called without a socket, when the process runs it (always so in embedded
/// mode); set, that URL even then.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeersConfig {
    /// The permissions service, e.g. `http://mindmesh-permissions:50051` (storage asks it
    /// before every read).
    pub permissions_url: Option<String>,
    /// The storage service (ingest writes documents to it).
    pub storage_url: Option<String>,
    /// The ingest service (dsar asks it what it holds about a person).
    pub ingest_url: Option<String>,
    /// The retention service (dsar asks it what it holds about a person).
    pub retention_url: Option<String>,
}

/// The storage service.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Largest document content accepted, in bytes (sent in chunks by `PutDocuments`).
    pub max_content_bytes: u64,
    /// Days an archived document is kept (restorable) before its content is purged;
    /// its tombstone stays, so it is never re-imported.
    pub archive_purge_after_days: u32,
    /// Seconds between two purges of archived documents.
    pub purge_interval_secs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            max_content_bytes: 25 * 1024 * 1024,
            archive_purge_after_days: 30,
            purge_interval_secs: 3600,
        }
    }
}

/// The ingest service: how often and how hard it reads the source tools.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Seconds between two scheduled syncs of one integration.
    pub sync_interval_secs: u64,
    /// Syncs that run at the same time in one process (each integration syncs alone).
    pub max_concurrent_syncs: usize,
    /// Documents whose content is fetched from a source at the same time, per sync.
    pub fetch_concurrency: usize,
    /// Seconds one HTTP request to a source may take.
    pub http_timeout_secs: u64,
    /// Attempts of one HTTP request when the source is rate limiting or failing.
    pub max_attempts: u32,
    /// First wait of the exponential backoff, in milliseconds (doubled per attempt).
    pub initial_backoff_ms: u64,
    /// Longest wait between two attempts, in seconds (also caps a source's `Retry-After`).
    pub max_backoff_secs: u64,
    /// Largest response accepted from a source, in bytes (a JSON page or a file).
    pub max_response_bytes: u64,
    /// The directory under which local-folder integrations may read, each tenant only
    /// below `<root>/<tenant id>/`; unset: the local-folder connector is off (an admin
    /// must not read arbitrary server paths).
    pub local_folder_root: Option<PathBuf>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            sync_interval_secs: 3600,
            max_concurrent_syncs: 2,
            fetch_concurrency: 8,
            http_timeout_secs: 60,
            max_attempts: 6,
            initial_backoff_ms: 500,
            max_backoff_secs: 60,
            max_response_bytes: 64 * 1024 * 1024,
            local_folder_root: None,
        }
    }
}

/// The dsar service: data-subject requests.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DsarConfig {
    /// Seconds a verification code mailed to a data subject stays valid.
    pub code_ttl_secs: u64,
    /// Wrong codes accepted before the request is rejected.
    pub max_code_attempts: u32,
    /// Embedded mode and tests: mails are written as `.eml` files here; default
    /// `<data_dir>/mailbox`.
    pub mailbox_dir: Option<PathBuf>,
    /// The sender of every mail.
    pub mail_from: String,
    /// Seconds an access or portability archive is kept for download.
    pub export_ttl_secs: u64,
    /// Distributed mode: the SMTP relay mails go through; unset, mails are written to
    /// `mailbox_dir` as in embedded mode.
    pub smtp: Option<SmtpConfig>,
    /// Address of the unsubscribe page (`/unsubscribe`, served without login, P13).
    pub http_listen: SocketAddr,
    /// The unsubscribe page's address as recipients reach it (e.g.
    /// `https://privacy.example.com`); unset: `http://<http_listen>`.
    pub public_url: Option<String>,
    /// Seconds an unsubscribe link keeps working (at least a day).
    pub unsubscribe_ttl_secs: u64,
    /// Tries to deliver a notification before it is given up as failed (1 to 50).
    pub notification_max_attempts: u32,
}

/// An SMTP relay (`[dsar.smtp]`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The relay's host name (verified against its certificate unless `security` is
    /// `none`).
    pub host: String,
    /// Its port (465 for `tls`, 587 for `starttls`, 25 for a local relay).
    pub port: u16,
    /// How the connection is secured.
    #[serde(default)]
    pub security: SmtpSecurity,
    /// The user to log in as; unset: no login.
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the password (a mounted Secret).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username.as_ref().map(|_| "<set>"))
            .field("password_file", &self.password_file)
            .finish()
    }
}

impl SmtpConfig {
    /// The password from `password_file` (trailing line break removed).
    pub fn password(&self) -> Result<String> {
        let path = self.password_file.as_ref().ok_or_else(|| {
            Error::Config("dsar.smtp.username is set but dsar.smtp.password_file is not".into())
        })?;
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "dsar.smtp.password_file {} cannot be read: {e}",
                path.display()
            ))
        })?;
        Ok(text.trim_end_matches(['\r', '\n']).to_owned())
    }
}

/// How an SMTP connection is secured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// TLS from the first byte (port 465).
    #[default]
    Tls,
    /// Plaintext upgraded with STARTTLS, which is required.
    Starttls,
    /// Plaintext: only for a relay on the same host or pod.
    None,
}

impl Default for DsarConfig {
    fn default() -> Self {
        DsarConfig {
            code_ttl_secs: 24 * 3600,
            max_code_attempts: 5,
            mailbox_dir: None,
            mail_from: "Mindmesh Privacy <privacy@mindmesh.invalid>".to_owned(),
            export_ttl_secs: 7 * 24 * 3600,
            smtp: None,
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8480)),
            public_url: None,
            unsubscribe_ttl_secs: 180 * 24 * 3600,
            notification_max_attempts: 8,
        }
    }
}

/// The usage-analytics processor: where pseudonymized product events go (P14). Off
/// unless `endpoint` is set.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// The processor's HTTP endpoint, which receives each batch as a JSON `POST`;
    /// unset: nothing is ever sent.
    pub endpoint: Option<String>,
    /// Events sent in one batch at most (1 to 10,000).
    pub batch_size: usize,
    /// Milliseconds an event waits at most before its batch is sent.
    pub flush_interval_ms: u64,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            endpoint: None,
            batch_size: 500,
            flush_interval_ms: 10_000,
        }
    }
}

/// The retention service: the deletion ledger.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// The Ed25519 public key (32 bytes, base64) each service's deletion attestations
    /// are checked against, by service name (`retention.attester_keys.storage = "…"`).
    /// A service not named signs with the key this process signs with
    /// (`keys.signing_key_file`), as every service running in one process does.
    pub attester_keys: std::collections::BTreeMap<String, String>,
    /// The receipt log's name: the origin of its checkpoints and the key name of their
    /// signatures (C2SP tlog-checkpoint); no spaces, no `+`.
    pub log_name: String,
    /// Days a backup is kept (1 to 7): a receipt says the erased data is gone from every
    /// backup this long after the cascade completed.
    pub backup_retention_days: u32,
    /// Seconds a cascade may wait for a participant before it counts as stalled: its
    /// request is then sent again (and again after as long), and it is listed as stalled.
    pub cascade_stall_after_secs: u64,
    /// Seconds between two inactivity sweeps (`RunSweep` sweeps at once). Each sweep
    /// also deletes the backups older than `backup_retention_days`.
    pub sweep_interval_secs: u64,
    /// Embedded mode: how often a backup is taken — `"daily"`, `"hourly"` or `"off"`
    /// (`CreateBackup` takes one at once). Distributed mode takes none: PostgreSQL
    /// backups belong to the database operator.
    pub backup_schedule: String,
    /// Where the data backups go (sealed); default `<data_dir>/backups`.
    pub backup_dir: Option<std::path::PathBuf>,
    /// Where the keystore backups go, apart from the data (DESIGN.md §6); default
    /// `<data_dir>/backups-keystore`. Put it on another volume.
    pub keystore_backup_dir: Option<std::path::PathBuf>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            attester_keys: std::collections::BTreeMap::new(),
            log_name: "mindmesh-receipts".to_owned(),
            backup_retention_days: 7,
            cascade_stall_after_secs: 900,
            sweep_interval_secs: 3600,
            backup_schedule: "daily".to_owned(),
            backup_dir: None,
            keystore_backup_dir: None,
        }
    }
}

impl RetentionConfig {
    /// `backup_schedule` read: the time between two backups, `None` when off; an error
    /// naming the setting when it is none of `daily`, `hourly`, `off`.
    pub fn backup_interval(&self) -> Result<Option<std::time::Duration>> {
        match self.backup_schedule.as_str() {
            "daily" => Ok(Some(std::time::Duration::from_secs(24 * 3600))),
            "hourly" => Ok(Some(std::time::Duration::from_secs(3600))),
            "off" => Ok(None),
            other => Err(Error::Config(format!(
                "retention.backup_schedule must be \"daily\", \"hourly\" or \"off\", not {other:?}"
            ))),
        }
    }

    /// `attester_keys` read: each name a service, each key 32 bytes of base64.
    pub fn attester_keys(&self) -> Result<std::collections::BTreeMap<Service, [u8; 32]>> {
        use base64::Engine;
        self.attester_keys
            .iter()
            .map(|(name, key)| {
                let setting = format!("retention.attester_keys.{name}");
                let service = name
                    .parse::<Service>()
                    .map_err(|e| Error::Config(format!("{setting}: {e}")))?;
                let key: [u8; 32] = base64::engine::general_purpose::STANDARD
                    .decode(key.trim())
                    .ok()
                    .and_then(|k| k.try_into().ok())
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "{setting} must be an Ed25519 public key: 32 bytes, base64"
                        ))
                    })?;
                Ok((service, key))
            })
            .collect()
    }
}

/// How the process runs (DESIGN.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// All five services in one process, SQLite, embedded bus.
    Embedded,
    /// Some services in this process, PostgreSQL, NATS JetStream.
    Distributed,
}

impl Config {
    /// Builds the configuration from defaults, an optional TOML file, the given environment
    /// (only `MINDMESH__…` variables are read) and `key=value` overrides (dotted keys).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[(String, String)],
    ) -> Result<Config> {
        let env: HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("MINDMESH__"))
            .collect();
        let defaults = config::Config::try_from(&Config::default())
            .map_err(|e| Error::Config(e.to_string()))?;
        let mut builder = config::Config::builder().add_source(defaults);
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("MINDMESH")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env.into_iter().collect())),
        );
        for (key, value) in overrides {
            builder = builder
                .set_override(key.as_str(), value.as_str())
                .map_err(|e| Error::Config(e.to_string()))?;
        }
        let config: Config = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| Error::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<()> {
        self.retention.attester_keys()?;
        if self.retention.sweep_interval_secs == 0 {
            return Err(Error::Config(
                "retention.sweep_interval_secs must be at least 1".into(),
            ));
        }
        if self.retention.cascade_stall_after_secs == 0 {
            return Err(Error::Config(
                "retention.cascade_stall_after_secs must be at least 1".into(),
            ));
        }
        self.retention.backup_interval()?;
        if !(1..=10_000).contains(&self.analytics.batch_size) {
            return Err(Error::Config(
                "analytics.batch_size must be between 1 and 10000".into(),
            ));
        }
        if let Some(endpoint) = &self.analytics.endpoint {
            let url = url::Url::parse(endpoint)
                .map_err(|e| Error::Config(format!("analytics.endpoint is not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(Error::Config(
                    "analytics.endpoint must be an http or https URL".into(),
                ));
            }
        }
        if self.dsar.code_ttl_secs < 60 {
            return Err(Error::Config(
                "dsar.code_ttl_secs must be at least 60".into(),
            ));
        }
        if !(1..=10).contains(&self.dsar.max_code_attempts) {
            return Err(Error::Config(
                "dsar.max_code_attempts must be between 1 and 10".into(),
            ));
        }
        if self.bus.tls_cert_file.is_some() != self.bus.tls_key_file.is_some() {
            return Err(Error::Config(
                "bus.tls_cert_file and bus.tls_key_file go together".into(),
            ));
        }
        if self.bus.user.is_some() != self.bus.password_file.is_some() {
            return Err(Error::Config(
                "bus.user and bus.password_file go together".into(),
            ));
        }
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(_), None) => {
                return Err(Error::Config(
                    "tls.cert_file is set but tls.key_file is not".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(Error::Config(
                    "tls.key_file is set but tls.cert_file is not".into(),
                ));
            }
            (None, None) if self.tls.client_ca_file.is_some() => {
                return Err(Error::Config(
                    "tls.client_ca_file needs tls.cert_file and tls.key_file".into(),
                ));
            }
            _ => {}
        }
        if self.dsar.unsubscribe_ttl_secs < 86_400 {
            return Err(Error::Config(
                "dsar.unsubscribe_ttl_secs must be at least 86400 (a day)".into(),
            ));
        }
        if !(1..=50).contains(&self.dsar.notification_max_attempts) {
            return Err(Error::Config(
                "dsar.notification_max_attempts must be between 1 and 50".into(),
            ));
        }
        if let Some(url) = &self.dsar.public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(Error::Config(
                "dsar.public_url must start with https:// or http://".into(),
            ));
        }
        if let Some(smtp) = &self.dsar.smtp {
            if smtp.host.trim().is_empty() {
                return Err(Error::Config("dsar.smtp.host must not be empty".into()));
            }
            if smtp.username.is_some() {
                smtp.password()?;
            }
        }
        if !(1..=7).contains(&self.retention.backup_retention_days) {
            return Err(Error::Config(
                "retention.backup_retention_days must be between 1 and 7 (P10)".into(),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(Error::Config(
                "database.max_connections must be at least 1".into(),
            ));
        }
        if self.bus.replicas == 0 || self.bus.replicas > 5 {
            return Err(Error::Config("bus.replicas must be between 1 and 5".into()));
        }
        if self.bus.max_deliver == 0 {
            return Err(Error::Config("bus.max_deliver must be at least 1".into()));
        }
        if self.bus.ack_wait_ms < 100 {
            return Err(Error::Config("bus.ack_wait_ms must be at least 100".into()));
        }
        if self.limits.max_message_bytes < 1024 {
            return Err(Error::Config(
                "limits.max_message_bytes must be at least 1024".into(),
            ));
        }
        for (name, url) in [
            ("peers.permissions_url", &self.peers.permissions_url),
            ("peers.storage_url", &self.peers.storage_url),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(Error::Config(format!(
                    "{name} must be an http:// or https:// URL"
                )));
            }
        }
        if self.storage.max_content_bytes == 0 {
            return Err(Error::Config(
                "storage.max_content_bytes must be at least 1".into(),
            ));
        }
        if self.storage.purge_interval_secs == 0 {
            return Err(Error::Config(
                "storage.purge_interval_secs must be at least 1".into(),
            ));
        }
        let ingest = &self.ingest;
        for (name, value) in [
            ("ingest.sync_interval_secs", ingest.sync_interval_secs),
            (
                "ingest.max_concurrent_syncs",
                ingest.max_concurrent_syncs as u64,
            ),
            ("ingest.fetch_concurrency", ingest.fetch_concurrency as u64),
            ("ingest.http_timeout_secs", ingest.http_timeout_secs),
            ("ingest.max_attempts", u64::from(ingest.max_attempts)),
            ("ingest.max_response_bytes", ingest.max_response_bytes),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("{name} must be at least 1")));
            }
        }
        if self.auth.token_ttl_secs == 0
            || self.auth.token_ttl_secs > self.auth.max_token_lifetime_secs
        {
            return Err(Error::Config(
                "auth.token_ttl_secs must be between 1 and auth.max_token_lifetime_secs".into(),
            ));
        }
        if self.region.trim().is_empty() {
            return Err(Error::Config("region must not be empty".into()));
        }
        for (name, url) in [
            ("database.url", &self.database.url),
            ("database.keystore_url", &self.database.keystore_url),
        ] {
            if let Some(url) = url
                && !(url.starts_with("postgres://")
                    || url.starts_with("postgresql://")
                    || url.starts_with("sqlite:"))
            {
                return Err(Error::Config(format!(
                    "{name} must be a postgres:// or sqlite: URL"
                )));
            }
        }
        Ok(())
    }

    /// Extra checks for distributed mode: every dependency and key must be configured,
    /// since nothing is generated there. The error names what is missing.
    pub fn validate_distributed(&self) -> Result<()> {
        if self.database.url.is_none() {
            return Err(Error::Config(
                "distributed mode needs database.url (MINDMESH__DATABASE__URL)".into(),
            ));
        }
        if self.keys.master_key.is_none() && self.keys.master_key_file.is_none() {
            return Err(Error::Config(
                "distributed mode needs keys.master_key_file or keys.master_key".into(),
            ));
        }
        if self.keys.jwt_public_key.is_none() && self.keys.jwt_private_key_file.is_none() {
            return Err(Error::Config(
                "distributed mode needs keys.jwt_public_key or keys.jwt_private_key_file".into(),
            ));
        }
        if self.keys.signing_key_file.is_none() {
            return Err(Error::Config(
                "distributed mode needs keys.signing_key_file".into(),
            ));
        }
        Ok(())
    }

    /// The database URL of `service`: the template with `{service}` filled in, or a
    /// SQLite file under `data_dir`.
    pub fn database_url(&self, service: Service) -> String {
        match &self.database.url {
            Some(template) => template.replace("{service}", service.as_str()),
            None => crate::db::sqlite_url(&self.data_dir.join(format!("{service}.db"))),
        }
    }

    /// Where data backups go.
    pub fn backup_dir(&self) -> std::path::PathBuf {
        self.retention
            .backup_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("backups"))
    }

    /// Where mails are written in embedded mode and tests.
    pub fn mailbox_dir(&self) -> PathBuf {
        self.dsar
            .mailbox_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("mailbox"))
    }

    /// Where keystore backups go, apart from the data.
    pub fn keystore_backup_dir(&self) -> std::path::PathBuf {
        self.retention
            .keystore_backup_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("backups-keystore"))
    }

    /// The keystore URL of `service` (DESIGN.md §6: apart from the data it protects).
    pub fn keystore_url(&self, service: Service) -> String {
        match (&self.database.keystore_url, &self.database.url) {
            (Some(template), _) => template.replace("{service}", service.as_str()),
            (None, Some(template)) => template.replace("{service}", &format!("{service}_keys")),
            (None, None) => {
                crate::db::sqlite_url(&self.data_dir.join(format!("{service}_keys.db")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mindmesh.toml");
        std::fs::write(
            &file,
            "region = \"us\"\n[bus]\nmax_deliver = 7\nack_wait_ms = 1000\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&file),
            env(&[("MINDMESH__BUS__MAX_DELIVER", "9"), ("HOME", "/root")]),
            &[("bus.ack_wait_ms".to_owned(), "2000".to_owned())],
        )
        .unwrap();
        assert_eq!(config.region, "us");
        assert_eq!(config.bus.max_deliver, 9, "env beats file");
        assert_eq!(config.bus.ack_wait_ms, 2000, "flags beat everything");
        assert_eq!(config.bus.stream, "MINDMESH_EVENTS", "defaults stay");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::load(None, env(&[("MINDMESH__BUS__COLOUR", "blue")]), &[]).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:1\"\n").unwrap();
        let err = Config::load(Some(&file), Vec::new(), &[]).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn validate_names_the_bad_key() {
        let err = Config::load(None, env(&[("MINDMESH__BUS__REPLICAS", "0")]), &[]).unwrap_err();
        assert!(err.to_string().contains("bus.replicas"), "{err}");
        let err =
            Config::load(None, env(&[("MINDMESH__DATABASE__URL", "mysql://x")]), &[]).unwrap_err();
        assert!(err.to_string().contains("database.url"), "{err}");

        let err = Config::load(
            None,
            env(&[("MINDMESH__PEERS__PERMISSIONS_URL", "permissions:50051")]),
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("peers.permissions_url"), "{err}");
        let err = Config::load(
            None,
            Vec::new(),
            &[("storage.max_content_bytes".into(), "0".into())],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("storage.max_content_bytes"),
            "{err}"
        );
    }

    #[test]
    fn attester_keys_name_the_bad_setting() {
        let key = "A".repeat(43) + "=";
        let good = [("retention.attester_keys.storage".to_owned(), key.clone())];
        let config = Config::load(None, Vec::new(), &good).unwrap();
        let keys = config.retention.attester_keys().unwrap();
        assert_eq!(keys.get(&Service::Storage), Some(&[0u8; 32]));
        for (name, value, says) in [
            ("billing", key.as_str(), "unknown service"),
            ("storage", "c2hvcnQ=", "32 bytes"),
            ("storage", "not base64!", "32 bytes"),
        ] {
            let bad = [(format!("retention.attester_keys.{name}"), value.to_owned())];
            let err = Config::load(None, Vec::new(), &bad)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("retention.attester_keys.{name}")),
                "{err}"
            );
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn distributed_mode_names_the_missing_key() {
        let mut config = Config::default();
        config.database.url = Some("postgres://127.0.0.1/mindmesh_{service}".into());
        let err = config.validate_distributed().unwrap_err();
        assert!(err.to_string().contains("keys.master_key"), "{err}");
        config.keys.master_key_file = Some("/k".into());
        let err = config.validate_distributed().unwrap_err();
        assert!(err.to_string().contains("keys.jwt_public_key"), "{err}");
    }

    #[test]
    fn database_urls_per_service() {
        let mut config = Config::default();
        assert!(
            config
                .database_url(Service::Storage)
                .ends_with("storage.db?mode=rwc")
        );
        assert!(
            config
                .keystore_url(Service::Storage)
                .ends_with("storage_keys.db?mode=rwc")
        );
        config.database.url = Some("postgres://h/mm_{service}".into());
        assert_eq!(config.database_url(Service::Dsar), "postgres://h/mm_dsar");
        assert_eq!(
            config.keystore_url(Service::Dsar),
            "postgres://h/mm_dsar_keys"
        );
    }
}
