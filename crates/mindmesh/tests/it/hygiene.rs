//! Secrets hygiene (issue 15): a whole scenario — connect a folder, sync, read, a DSAR
//! access request, disconnect — runs with every log at debug level, and no token, key,
//! verification code, email, name, title or document text appears in the logs, in the
//! errors returned to clients, or in any event on the bus (the embedded event log, read
//! as bytes).

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine;
use mindmesh_kit::auth::Role;
use mindmesh_proto::mindmesh::dsar::v1 as dsar;
use mindmesh_proto::mindmesh::permissions::v1 as perm;

use crate::common::ingest::{self, folder_server, readable, sync_ok, write};
use crate::common::{Backend, authed, reads};
use crate::dsar::{Dsar, completed, download, mailed_code};

/// Everything logged, kept for the scan.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_content_reaches_the_logs_the_errors_or_the_bus() {
    let logs = Logs::default();
    let writer = logs.clone();
    // Each test runs in its own process (nextest): this subscriber sees this server only.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let (server, root) = folder_server(Backend::Embedded).await;
    let (tenant, admin) = server.create_tenant("Zqorgname Ltd").await;
    let dir = root.path().join(tenant.to_string()).join("shared");
    write(&dir, "zqtitleplan.md", "zqtextbody of the secret plan");
    write(
        &dir,
        "mindmesh-acl.json",
        &serde_json::json!({
            "users": [{"id": "ada", "email": "zqada@acme.example", "name": "Zqadaname"}],
            "grants": [{"path": "zqtitleplan.md", "to": "user:ada", "role": "owner"}]
        })
        .to_string(),
    );
    let ada = server
        .create_user(&admin, "Zqfirstname", "Zqlastname", "zqada@acme.example")
        .await;
    let ada_token = server.token(&ada.id, Some(tenant), &[Role::Member]);
    let mut client = ingest::client(&server).await;
    let integration = ingest::connect_folder(&mut client, &admin, "Zqsource", "shared")
        .await
        .unwrap()
        .id;
    sync_ok(&mut client, &admin, &integration, false).await;
    let docs = readable(&server, &ada_token).await;
    assert_eq!(docs.len(), 1);
    reads(&server, &ada_token, &docs[0].id).await.unwrap();

    // Bad input carrying personal data: the errors name the field, not the value.
    let mut accounts =
        perm::account_service_client::AccountServiceClient::new(server.channel().await);
    let mut errors = Vec::new();
    for email in ["zqbad-email-no-at", "zqdup@acme.example\u{0}"] {
        let refused = accounts
            .create_user(authed(
                perm::CreateUserRequest {
                    first_name: "Zqerrname".into(),
                    last_name: "Zqerrlast".into(),
                    email: email.into(),
                    picture_url: "javascript:zqpicture".into(),
                },
                &admin,
            ))
            .await
            .unwrap_err();
        errors.push(refused.message().to_owned());
    }

    // A DSAR access request, confirmed with the mailed code, downloaded.
    let mut requests = Dsar::new(server.channel().await);
    let filed = requests
        .submit_request(authed(
            dsar::SubmitRequestRequest {
                kind: dsar::RequestKind::Access as i32,
                subject_email: "zqada@acme.example".into(),
                requester_email: "zqada@acme.example".into(),
                ..Default::default()
            },
            &ada_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    let code = mailed_code(&server, "zqada@acme.example");
    let wrong = requests
        .verify_request(authed(
            dsar::VerifyRequestRequest {
                request_id: filed.id.clone(),
                code: "zqwrongcode".into(),
            },
            &ada_token,
        ))
        .await
        .unwrap_err();
    errors.push(wrong.message().to_owned());
    requests
        .verify_request(authed(
            dsar::VerifyRequestRequest {
                request_id: filed.id.clone(),
                code: code.clone(),
            },
            &ada_token,
        ))
        .await
        .unwrap();
    completed(&mut requests, &ada_token, &filed.id).await;
    download(&mut requests, &ada_token, &filed.id)
        .await
        .unwrap();

    // Disconnect: the cascade runs through every service.
    ingest::disconnect(&mut client, &admin, &integration).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !readable(&server, &ada_token).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cascade did not run"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let data_dir = server.config.data_dir.clone();
    let master = base64::engine::general_purpose::STANDARD.encode(server.master_key().expose());

    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(logged.contains("DEBUG"), "debug logs were captured");
    let mut bus = Vec::new();
    for name in ["events.db", "events.db-wal"] {
        if let Ok(bytes) = std::fs::read(data_dir.join(name)) {
            bus.extend(bytes);
        }
    }
    assert!(!bus.is_empty(), "the event log was read");
    server.stop().await;
    let bus = String::from_utf8_lossy(&bus).to_lowercase();
    let secrets = [
        admin.as_str(),
        ada_token.as_str(),
        master.as_str(),
        code.as_str(),
        "zqada@acme.example",
        "zqfirstname",
        "zqlastname",
        "zqadaname",
        "zqtitleplan",
        "zqtextbody",
        "zqorgname",
        "zqsource",
        "zqbad-email",
        "zqerrname",
        "zqpicture",
        "zqwrongcode",
    ];
    for secret in secrets {
        let lower = secret.to_lowercase();
        assert!(
            !logged.to_lowercase().contains(&lower),
            "{secret} in the logs"
        );
        assert!(!bus.contains(&lower), "{secret} in an event");
        for error in &errors {
            assert!(
                !error.to_lowercase().contains(&lower),
                "{secret} in an error: {error}"
            );
        }
    }
}
