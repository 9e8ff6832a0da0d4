//! `mindmesh cascades get|list`: follow deletion cascades in the ledger, and save a
//! complete cascade's receipt for `mindmesh receipt verify`.

use std::path::PathBuf;

use anyhow::Context as _;
use mindmesh_kit::Service;
use mindmesh_proto::mindmesh::common::v1::CascadeState;
use mindmesh_proto::mindmesh::retention::v1 as pb;

use super::{Connection, explain};

/// What `cascades` does.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Shows one cascade: its state, each service's part, and who it waits for.
    Get {
        /// The cascade id (as `DisconnectIntegration`, `DeleteUser` or `DeleteTenant`
        /// answered it).
        id: String,
        /// Once complete, write its receipt and inclusion proof to this file.
        #[arg(long)]
        receipt: Option<PathBuf>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Lists cascades, newest first.
    List {
        /// How many (1–1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Only cascades still waiting after retention.cascade_stall_after_secs.
        #[arg(long)]
        stalled: bool,
        #[command(flatten)]
        connection: Connection,
    },
}

fn state(value: i32) -> &'static str {
    match CascadeState::try_from(value) {
        Ok(CascadeState::Pending) => "pending",
        Ok(CascadeState::Running) => "running",
        Ok(CascadeState::Done) => "complete",
        Ok(CascadeState::RetainedWithGround) => "retained",
        Ok(CascadeState::Failed) => "failed",
        _ => "unknown",
    }
}

fn service(value: i32) -> String {
    Service::from_proto(value).map_or_else(|| "?".to_owned(), |s| s.to_string())
}

fn client(
    channel: tonic::transport::Channel,
) -> pb::retention_service_client::RetentionServiceClient<tonic::transport::Channel> {
    pb::retention_service_client::RetentionServiceClient::new(channel)
}

/// Runs `command`, printing to stdout.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Get {
            id,
            receipt,
            connection,
        } => {
            let answer = client(connection.channel().await?)
                .get_cascade(connection.request(pb::GetCascadeRequest { cascade_id: id })?)
                .await
                .map_err(explain)?
                .into_inner();
            let cascade = answer.cascade.context("the server answered no cascade")?;
            println!(
                "cascade {}  {} {}  {}",
                cascade.id,
                cascade.scope_kind,
                cascade.scope_id,
                state(cascade.state)
            );
            println!(
                "{:<12} {:<10} {:<30} REPORTED",
                "SERVICE", "STATE", "COUNTS"
            );
            for part in &cascade.services {
                let mut counts: Vec<String> = part
                    .counts
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                counts.sort();
                let reported = part
                    .completed_at
                    .as_ref()
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<12} {:<10} {:<30} {reported}",
                    service(part.service),
                    state(part.state),
                    counts.join(",")
                );
            }
            if !cascade.waiting_for.is_empty() {
                let waiting: Vec<String> =
                    cascade.waiting_for.iter().map(|s| service(*s)).collect();
                let since = cascade
                    .waiting_since
                    .as_ref()
                    .map(|t| format!(" since {t}"))
                    .unwrap_or_default();
                let stalled = if cascade.stalled {
                    " (stalled: asked again)"
                } else {
                    ""
                };
                println!("waiting for: {}{since}{stalled}", waiting.join(", "));
            }
            if let Some(path) = receipt {
                let (Some(r), Some(proof)) = (&cascade.receipt, &answer.inclusion) else {
                    anyhow::bail!("the cascade is not complete: it has no receipt yet");
                };
                let file = mindmesh_retention::api::receipt_file(r, proof)?;
                std::fs::write(&path, serde_json::to_vec_pretty(&file)?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("receipt written to {}", path.display());
            }
            Ok(())
        }
        Command::List {
            limit,
            stalled,
            connection,
        } => {
            let answer = client(connection.channel().await?)
                .list_cascades(connection.request(pb::ListCascadesRequest {
                    page_size: limit,
                    page_token: String::new(),
                    stalled_only: stalled,
                })?)
                .await
                .map_err(explain)?
                .into_inner();
            println!(
                "{:<38} {:<12} {:<10} WAITING FOR",
                "CASCADE", "KIND", "STATE"
            );
            for c in &answer.cascades {
                let waiting: Vec<String> = c.waiting_for.iter().map(|s| service(*s)).collect();
                println!(
                    "{:<38} {:<12} {:<10} {}",
                    c.id,
                    c.scope_kind,
                    state(c.state),
                    waiting.join(",")
                );
            }
            Ok(())
        }
    }
}
