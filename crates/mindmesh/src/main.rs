//! `mindmesh`: parses arguments, loads configuration, hands over to the library.

#![forbid(unsafe_code)]

mod cli;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use mindmesh_kit::Service;
use mindmesh_kit::auth::Role;
use mindmesh_kit::config::Config;
use mindmesh_kit::ids::TenantId;
use tokio_util::sync::CancellationToken;

/// Mindmesh: the privacy-first backend of a workplace knowledge product.
#[derive(Parser, Debug)]
#[command(name = "mindmesh", version, about)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, short, global = true, env = "MINDMESH_CONFIG")]
    config: Option<PathBuf>,
    /// Override one setting, e.g. `--set listen=127.0.0.1:0` (repeatable; beats everything).
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    overrides: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the server: all five services embedded, or the ones named with --service.
    Serve {
        /// Run only this service (repeatable): distributed mode, PostgreSQL + NATS.
        #[arg(long = "service")]
        services: Vec<Service>,
    },
    /// Creates and migrates the databases (all services, or the ones named).
    Migrate {
        /// Migrate only this service (repeatable).
        #[arg(long = "service")]
        services: Vec<Service>,
    },
    /// Issues an access token from the configured signing key (local use and tests).
    Token {
        /// Tenant the token acts in (not needed for operator or service tokens).
        #[arg(long)]
        tenant: Option<TenantId>,
        /// Subject: a user id, a service or a person's name.
        #[arg(long, default_value = "local-admin")]
        sub: String,
        /// Role (repeatable): operator, admin, member, service, staff:engineer, staff:support, staff:analyst.
        #[arg(long = "role", required = true)]
        roles: Vec<Role>,
        /// Lifetime in seconds (default: auth.token_ttl_secs).
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Deletion cascades in the ledger (talks to a running server).
    Cascades {
        #[command(subcommand)]
        action: cli::cascades::Command,
    },
    /// Backups (P10): take and list them on a running server; restore one, or ask again
    /// the deletions since one, with the services stopped.
    Backup {
        #[command(subcommand)]
        action: cli::backup::Command,
    },
    /// Deletion receipts, checked offline.
    Receipt {
        #[command(subcommand)]
        action: cli::receipt::Command,
    },
    /// Key management.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// Prints the version.
    Version,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Prints the public key this server signs deletion attestations, receipts and
    /// receipt-log checkpoints with: publish it so that anyone can verify a receipt.
    Public,
    /// Gives every tenant (or one) a new key version and re-wraps every data key under
    /// it, re-wraps tenant keys under the current master key, and destroys old versions
    /// nothing uses. Content is not re-encrypted; the services keep serving.
    Rotate {
        /// Rotate only this service's keystore (repeatable; default: all five).
        #[arg(long = "service")]
        services: Vec<Service>,
        /// Rotate only this tenant's keys.
        #[arg(long)]
        tenant: Option<TenantId>,
    },
}

fn parse_overrides(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    raw.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .with_context(|| format!("--set {kv:?}: expected KEY=VALUE"))
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("mindmesh {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        Command::Receipt { action } => return cli::receipt::run(action),
        _ => {}
    }
    let overrides = parse_overrides(&cli.overrides)?;
    let config = Config::load(cli.config.as_deref(), std::env::vars(), &overrides)?;
    // rustls needs one crypto provider for the whole process: ring (no OpenSSL, no aws-lc).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli.command, config))
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Version | Command::Receipt { .. } => Ok(()),
        Command::Cascades { action } => cli::cascades::run(action).await,
        Command::Backup { action } => {
            let _telemetry = (!action.remote())
                .then(|| mindmesh_kit::telemetry::init(&config.telemetry, "mindmesh-backup"))
                .transpose()?;
            cli::backup::run(action, config).await
        }
        Command::Keys {
            action: KeysCommand::Public,
        } => {
            let (public, verifier) = mindmesh::receipt_keys(&config)?;
            println!("attestation and receipt key (Ed25519, base64): {public}");
            println!("receipt log verifier key: {verifier}");
            Ok(())
        }
        Command::Token {
            tenant,
            sub,
            roles,
            ttl,
        } => {
            let ttl = Duration::from_secs(ttl.unwrap_or(config.auth.token_ttl_secs));
            println!(
                "{}",
                mindmesh::issue_token(&config, &sub, tenant, &roles, ttl)?
            );
            Ok(())
        }
        Command::Keys {
            action: KeysCommand::Rotate { services, tenant },
        } => {
            let _telemetry = mindmesh_kit::telemetry::init(&config.telemetry, "mindmesh-keys")?;
            for (service, r) in mindmesh::rotate_keys(&config, &services, tenant).await? {
                println!(
                    "{service}: {} tenants rotated, {} data keys re-wrapped, {} tenant keys \
                     moved to the current master, {} old versions retired, {} still in use, \
                     {} under the previous master",
                    r.tenants,
                    r.data_keys_rewrapped,
                    r.tenant_keys_rewrapped,
                    r.versions_retired,
                    r.versions_in_use,
                    r.under_previous_masters
                );
            }
            Ok(())
        }
        Command::Migrate { services } => {
            let _telemetry = mindmesh_kit::telemetry::init(&config.telemetry, "mindmesh-migrate")?;
            mindmesh::migrate(&config, &services).await
        }
        Command::Serve { services } => {
            let name = match services.as_slice() {
                [one] => format!("mindmesh-{one}"),
                _ => "mindmesh".to_owned(),
            };
            let _telemetry = mindmesh_kit::telemetry::init(&config.telemetry, &name)?;
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            let addr = listener.local_addr()?;
            let mode = mindmesh::mode_for(&services);
            tracing::info!(%addr, ?mode, "mindmesh listening");
            // Scripts and tests wait for this line (README, "Two ways to run"): keep it.
            eprintln!("mindmesh listening on {addr} ({mode:?} mode)");
            eprintln!("get a token: cargo run -q --bin mindmesh -- token --role operator");
            let shutdown = CancellationToken::new();
            tokio::spawn(signal_shutdown(shutdown.clone()));
            mindmesh::serve(config, services, listener, shutdown).await?;
            tracing::info!("mindmesh stopped");
            Ok(())
        }
    }
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
async fn signal_shutdown(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown requested: draining in-flight calls");
    shutdown.cancel();
}
