//! `mindmesh backup create|list` (talk to a running server) and `restore|replay-deletions`
//! (with the server stopped, on its configuration).

use anyhow::Context as _;
use mindmesh_kit::config::Config;
use mindmesh_proto::mindmesh::retention::v1 as pb;

use super::{Connection, explain};

/// What `backup` does.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Takes a backup now (embedded mode; operators).
    Create {
        #[command(flatten)]
        connection: Connection,
    },
    /// Lists the backups kept, newest first.
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Embedded mode, with the server stopped: puts backup ID back, then erases again
    /// everything deleted since (before anything serves). Start the server afterwards.
    Restore {
        /// The backup id (`mindmesh backup list`).
        id: String,
    },
    /// Distributed mode, after PostgreSQL was restored by its operator and before the
    /// services take traffic: asks every cascade completed since TIME again.
    ReplayDeletions {
        /// When the restored backup was taken (RFC 3339, e.g. 2026-12-01T03:00:00Z).
        #[arg(long)]
        since: String,
    },
}

impl Command {
    /// Whether the command talks to a server (else it works on the configuration).
    pub fn remote(&self) -> bool {
        matches!(self, Command::Create { .. } | Command::List { .. })
    }
}

fn client(
    channel: tonic::transport::Channel,
) -> pb::retention_service_client::RetentionServiceClient<tonic::transport::Channel> {
    pb::retention_service_client::RetentionServiceClient::new(channel)
}

fn line(b: &pb::Backup) -> String {
    let time = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    };
    format!(
        "{}  taken {}  expires {}  {} bytes",
        b.id,
        time(&b.created_at),
        time(&b.expires_at),
        b.size_bytes
    )
}

/// Runs `command` (against `config` for the offline ones), printing to stdout.
pub async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Create { connection } => {
            let backup = client(connection.channel().await?)
                .create_backup(connection.request(pb::CreateBackupRequest {})?)
                .await
                .map_err(explain)?
                .into_inner()
                .backup
                .context("the server answered no backup")?;
            println!("{}", line(&backup));
        }
        Command::List { connection } => {
            let backups = client(connection.channel().await?)
                .list_backups(connection.request(pb::ListBackupsRequest {})?)
                .await
                .map_err(explain)?
                .into_inner()
                .backups;
            for b in &backups {
                println!("{}", line(b));
            }
            if backups.is_empty() {
                println!("no backups");
            }
        }
        Command::Restore { id } => {
            let report = mindmesh::backup::restore_backup(config, &id).await?;
            println!(
                "backup {id} (taken {}) restored: {} databases; {} deletions since then \
                 carried out again. Start the server now.",
                report.taken_at.to_rfc3339(),
                report.files.len(),
                report.deletions_reapplied
            );
        }
        Command::ReplayDeletions { since } => {
            let since = chrono::DateTime::parse_from_rfc3339(&since)
                .with_context(|| format!("--since {since:?} is not an RFC 3339 time"))?
                .with_timezone(&chrono::Utc);
            let replayed = mindmesh::backup::replay_deletions(config, since).await?;
            for r in &replayed {
                println!("asked again: cascade {}", r.cascade);
            }
            println!(
                "{} cascades completed since {} asked again; follow them with `mindmesh \
                 cascades list`",
                replayed.len(),
                since.to_rfc3339()
            );
        }
    }
    Ok(())
}
