//! The real `mindmesh` binary as a separate process: it starts, reports SERVING for all
//! five services, lists the whole API over reflection, answers UNIMPLEMENTED for what is
//! not built, and exits 0 on SIGTERM. Distributed mode refuses to start without keys.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mindmesh_proto::mindmesh::dsar::v1 as dsar;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

const BIN: &str = env!("CARGO_BIN_EXE_mindmesh");

/// A child process that is killed when dropped, so a failing test leaves no server behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // Already exited (the normal case): both calls fail harmlessly.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `mindmesh serve` on port 0 and returns it with the address it printed.
fn spawn_server(data_dir: &std::path::Path) -> (Reaped, String) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--set",
            "listen=127.0.0.1:0",
            "--set",
            "dsar.http_listen=127.0.0.1:0",
            "--set",
        ])
        .arg(format!("data_dir={}", data_dir.display()))
        .env("MINDMESH__TELEMETRY__LOG_FILTER", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mindmesh");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && let Some(rest) = line.strip_prefix("mindmesh listening on ") {
                let addr = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send(addr);
                sent = true;
            }
            // Keep draining so the server never blocks on a full pipe.
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server printed its address");
    (Reaped(child), addr)
}

fn token(data_dir: &std::path::Path, role: &str) -> String {
    let out = Command::new(BIN)
        .args(["token", "--role", role, "--set"])
        .arg(format!("data_dir={}", data_dir.display()))
        .output()
        .expect("mindmesh token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn sigterm(child: &Reaped) {
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits without blocking the runtime: the test's client connections must stay able to
/// answer the server's graceful-shutdown handshake.
async fn wait_exit(child: &mut Reaped, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            panic!("mindmesh did not exit within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn serve_reports_health_lists_the_api_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, addr) = spawn_server(&data);
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect");

    let mut health = HealthClient::new(channel.clone());
    let mut names: Vec<String> = ["", "ingest", "permissions", "storage", "retention", "dsar"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    names.extend(mindmesh_proto::SERVICE_NAMES.iter().map(|s| s.to_string()));
    for name in names {
        let status = health
            .check(HealthCheckRequest {
                service: name.clone(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "health of {name:?}");
    }
    // Serving, so the data directory exists by now.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o700,
            "the data directory is the owner's only"
        );
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "billing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses.next().await.expect("one response").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let listed: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in mindmesh_proto::SERVICE_NAMES {
        assert!(
            listed.iter().any(|l| l == name),
            "{name} missing from reflection: {listed:?}"
        );
    }
    assert!(listed.iter().any(|l| l == "grpc.health.v1.Health"));

    // Every RPC is built. Exactly one takes no bearer token (an unsubscribe link's
    // token is its authority): it judges the token; its neighbours want a bearer token.
    let mut privacy =
        dsar::privacy_settings_service_client::PrivacySettingsServiceClient::new(channel.clone());
    let status = privacy
        .unsubscribe(dsar::UnsubscribeRequest {
            token: "not-a-token".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("token"), "{status:?}");
    let status = privacy
        .declare_breach(dsar::DeclareBreachRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");

    sigterm(&child);
    let started = Instant::now();
    let status = wait_exit(&mut child, Duration::from_secs(20)).await;
    // Clients are still connected: the server drains them rather than waiting out the grace period.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    drop(responses);
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn distributed_mode_refuses_to_start_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--service",
            "permissions",
            "--set",
            "listen=127.0.0.1:0",
        ])
        .arg("--set")
        .arg(format!(
            "database.url={}/mindmesh_{{service}}",
            mindmesh_kit::testing::postgres_server()
        ))
        .arg("--set")
        .arg(format!("data_dir={}", dir.path().display()))
        .output()
        .expect("run mindmesh");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("keys.master_key"), "{stderr}");
    assert!(
        !dir.path().join("keys").exists(),
        "distributed mode generated keys"
    );
}

#[test]
fn unknown_configuration_keys_are_rejected() {
    let out = Command::new(BIN)
        .args(["serve", "--set", "listen=127.0.0.1:0"])
        .env("MINDMESH__BUS__COLOUR", "blue")
        .output()
        .expect("run mindmesh");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
}

/// Runs the binary with `args` against the data directory; returns (success, stdout,
/// stderr).
fn cli(data_dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--set")
        .arg(format!("data_dir={}", data_dir.display()))
        .env("MINDMESH__TELEMETRY__LOG_FILTER", "warn")
        .output()
        .expect("run mindmesh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn p06_a_deletion_receipt_saved_with_the_cli_verifies_offline() {
    use mindmesh_proto::mindmesh::permissions::v1 as perm;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, addr) = spawn_server(&data);
    let server = format!("http://{addr}");
    let channel = Channel::from_shared(server.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let operator = token(&data, "operator");
    let mut accounts = perm::account_service_client::AccountServiceClient::new(channel);
    let tenant = accounts
        .create_tenant(crate::common::authed(
            perm::CreateTenantRequest {
                name: "Acme".into(),
            },
            &operator,
        ))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap()
        .id;
    let (ok, admin, err) = cli(
        &data,
        &[
            "token", "--role", "admin", "--tenant", &tenant, "--sub", "admin",
        ],
    );
    assert!(ok, "{err}");
    let admin = admin.trim().to_owned();
    let user = accounts
        .create_user(crate::common::authed(
            perm::CreateUserRequest {
                first_name: "Ada".into(),
                last_name: "Lovelace".into(),
                email: "ada@acme.example".into(),
                picture_url: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let cascade = accounts
        .delete_user(crate::common::authed(
            perm::DeleteUserRequest { user_id: user.id },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .cascade_id;

    // `cascades get` follows it; once complete it saves the receipt.
    let file = dir.path().join("receipt.json");
    let file_arg = file.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let shown = loop {
        let (ok, out, err) = cli(
            &data,
            &[
                "cascades",
                "get",
                &cascade,
                "--receipt",
                &file_arg,
                "--server",
                &server,
                "--token",
                &operator,
            ],
        );
        if ok {
            break out;
        }
        assert!(
            err.contains("not complete") || err.contains("NotFound"),
            "{err}"
        );
        assert!(
            Instant::now() < deadline,
            "the cascade did not complete: {out}{err}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(shown.contains("complete"), "{shown}");
    assert!(shown.contains("storage"), "{shown}");
    let (ok, listed, err) = cli(
        &data,
        &[
            "cascades", "list", "--server", &server, "--token", &operator,
        ],
    );
    assert!(ok && listed.contains(&cascade), "{listed}{err}");
    // A bad token says what to do about it.
    let (ok, _, err) = cli(
        &data,
        &["cascades", "list", "--server", &server, "--token", "nope"],
    );
    assert!(
        !ok && err.contains("Unauthenticated") && err.contains("mindmesh token"),
        "{err}"
    );

    sigterm(&child);
    assert!(
        wait_exit(&mut child, Duration::from_secs(30))
            .await
            .success()
    );

    // Offline: no server, only the published key.
    let (ok, keys, err) = cli(&data, &["keys", "public"]);
    assert!(ok, "{err}");
    let verifier = keys
        .lines()
        .find_map(|l| l.strip_prefix("receipt log verifier key: "))
        .expect("a verifier key")
        .to_owned();
    let (ok, out, err) = cli(
        &data,
        &["receipt", "verify", &file_arg, "--public-key", &verifier],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("verified"), "{out}");
    // One changed count: the receipt no longer verifies, and the exit code says so.
    let text = std::fs::read_to_string(&file).unwrap();
    let tampered = text.replacen("\"accounts\": 1", "\"accounts\": 2", 1);
    assert_ne!(
        tampered, text,
        "the receipt names the accounts permissions deleted"
    );
    std::fs::write(&file, tampered).unwrap();
    let (ok, out, err) = cli(
        &data,
        &["receipt", "verify", &file_arg, "--public-key", &verifier],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAILED") && err.contains("does NOT verify"),
        "{out}{err}"
    );
}
