//! The data-subject rights beyond access, end to end over gRPC in both modes (P12):
//! erasure (no trace of the person at rest in any service, and a receipt that
//! verifies), rectification (visible wherever the account is read), and restriction
//! (the person's data kept, not processed — and the restriction lifted again), and
//! portability (a machine-readable archive of every service's part).

use mindmesh_kit::auth::Role;
use mindmesh_proto::mindmesh::dsar::v1 as pb;
use mindmesh_proto::mindmesh::permissions::v1 as perm;
use mindmesh_proto::mindmesh::retention::v1 as ret;
use tonic::Code;

use crate::common::{self, Backend, TestServer, authed, note, reads};
use crate::dsar::{Dsar, completed, download, file_verified, unzip};

fn filing(kind: pb::RequestKind, email: &str) -> pb::SubmitRequestRequest {
    pb::SubmitRequestRequest {
        kind: kind as i32,
        subject_email: email.into(),
        requester_email: email.into(),
        ..Default::default()
    }
}

/// What the server keeps in its databases (the mailbox directory is mail sent, not a
/// database: the verification mail to the person is there by design).
async fn databases(server: &TestServer) -> Vec<(String, Vec<u8>)> {
    let mailbox = server.config.mailbox_dir().display().to_string();
    common::at_rest(server)
        .await
        .into_iter()
        .filter(|(place, _)| !place.starts_with(&mailbox))
        .collect()
}

async fn p12_an_erasure_leaves_no_trace_and_completes_with_a_receipt_that_verifies(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let (first, last, email) = ("Zqxerasefirst", "Zqxeraselast", "zqxerase@acme.example");
    let ada = server.create_user(&admin, first, last, email).await;
    let bob = server
        .create_user(&admin, "Bob", "Builder", "bob@acme.example")
        .await;
    let ada_token = server.token(&ada.id, Some(tenant), &[Role::Member]);
    let bob_token = server.token(&bob.id, Some(tenant), &[Role::Member]);
    note(&server, &ada_token, "Zqxerasetitle", "Zqxerasecontent").await;
    let bobs = note(&server, &bob_token, "Bob's note", "kept").await;
    let before = databases(&server).await;
    assert!(
        !common::where_stored(&before, &ada.id).is_empty(),
        "the scan finds what is stored in the clear (ids)"
    );

    let mut dsar = Dsar::new(server.channel().await);
    let id = file_verified(
        &server,
        &mut dsar,
        &admin,
        filing(pb::RequestKind::Erasure, email),
    )
    .await;
    let done = completed(&mut dsar, &admin, &id).await;
    assert!(!done.cascade_id.is_empty(), "{done:?}");
    assert_eq!(done.parts.len(), 5, "{done:?}");
    assert!(done.parts.iter().all(|p| p.state == "done"), "{done:?}");
    let receipt = done.receipt.clone().expect("the cascade's receipt");
    assert_eq!(receipt.cascade_id, done.cascade_id);
    assert_eq!(receipt.scope_kind, "subject");
    let mut retention =
        ret::retention_service_client::RetentionServiceClient::new(server.channel().await);
    let verified = retention
        .verify_receipt(authed(
            ret::VerifyReceiptRequest {
                receipt: Some(receipt),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        verified.signature_valid && verified.attestations_valid && verified.included,
        "{verified:?}"
    );

    // Nothing of the person is left at rest, in any service's database or event log.
    let after = databases(&server).await;
    for canary in [email, first, last, "Zqxerasetitle", "Zqxerasecontent"] {
        assert_eq!(
            common::where_stored(&after, canary),
            Vec::<String>::new(),
            "{canary} left at rest"
        );
    }
    // The account's id is a random handle that names nobody once the person's data is
    // gone; it stays only where history is append-only (the hash-chained audit log; in
    // embedded mode also the event log and the keystore's shred records, which a file
    // scan cannot tell apart). Everything else that named it — grants, days of
    // activity — went with the account.
    if backend == Backend::Distributed {
        let left: Vec<String> = common::where_stored(&after, &ada.id)
            .into_iter()
            .filter(|place| !place.ends_with(".audit_log"))
            .collect();
        assert_eq!(left, Vec::<String>::new(), "the account's id left at rest");
    }
    // Everyone else is untouched; the account is gone.
    assert_eq!(reads(&server, &bob_token, &bobs).await, Ok(()));
    let mut accounts =
        perm::account_service_client::AccountServiceClient::new(server.channel().await);
    let gone = accounts
        .get_user(authed(
            perm::GetUserRequest {
                user_id: ada.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    server.stop().await;
}

async fn p12_a_rectification_is_visible_wherever_the_account_is_read(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let ada = server
        .create_user(&admin, "Ada", "Byron", "ada@acme.example")
        .await;
    let ada_token = server.token(&ada.id, Some(tenant), &[Role::Member]);
    let mut dsar = Dsar::new(server.channel().await);
    let id = file_verified(
        &server,
        &mut dsar,
        &ada_token,
        pb::SubmitRequestRequest {
            rectification: Some(pb::RectificationPayload {
                last_name: Some("Lovelace".into()),
                ..Default::default()
            }),
            ..filing(pb::RequestKind::Rectification, "ada@acme.example")
        },
    )
    .await;
    let done = completed(&mut dsar, &ada_token, &id).await;
    assert_eq!(done.parts.len(), 1, "the account's owner: {done:?}");
    let mut accounts =
        perm::account_service_client::AccountServiceClient::new(server.channel().await);
    let user = accounts
        .get_user(authed(
            perm::GetUserRequest {
                user_id: ada.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(
        (user.first_name.as_str(), user.last_name.as_str()),
        ("Ada", "Lovelace")
    );
    // An access request afterwards exports the corrected name, not the old one.
    let access = file_verified(
        &server,
        &mut dsar,
        &ada_token,
        filing(pb::RequestKind::Access, "ada@acme.example"),
    )
    .await;
    completed(&mut dsar, &ada_token, &access).await;
    let mut stream = dsar
        .download_export(authed(
            pb::DownloadExportRequest { request_id: access },
            &ada_token,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut archive = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        archive.extend_from_slice(&chunk.data);
    }
    let text = String::from_utf8_lossy(&archive).to_string();
    assert!(!text.contains("Byron"), "the old name is gone");

    // A rectification names a field to correct.
    let empty = dsar
        .submit_request(authed(
            filing(pb::RequestKind::Rectification, "ada@acme.example"),
            &ada_token,
        ))
        .await
        .unwrap_err();
    assert!(empty.message().contains("rectification"), "{empty:?}");
    server.stop().await;
}

async fn p12_a_restriction_keeps_the_data_unprocessed_until_it_is_lifted(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let ada = server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    let ada_token = server.token(&ada.id, Some(tenant), &[Role::Member]);
    let doc = note(&server, &ada_token, "Notes", "mine").await;
    let mut dsar = Dsar::new(server.channel().await);
    let id = file_verified(
        &server,
        &mut dsar,
        &ada_token,
        filing(pb::RequestKind::Restriction, "ada@acme.example"),
    )
    .await;
    let done = completed(&mut dsar, &ada_token, &id).await;
    assert_eq!(done.parts.len(), 5, "{done:?}");
    assert!(!done.lift);
    // Kept, not served for processing.
    assert_ne!(reads(&server, &ada_token, &doc).await, Ok(()));
    let lifted = file_verified(
        &server,
        &mut dsar,
        &ada_token,
        pb::SubmitRequestRequest {
            lift: true,
            ..filing(pb::RequestKind::Restriction, "ada@acme.example")
        },
    )
    .await;
    let done = completed(&mut dsar, &ada_token, &lifted).await;
    assert!(done.lift);
    assert_eq!(reads(&server, &ada_token, &doc).await, Ok(()));
    // `lift` belongs to a restriction only.
    let misplaced = dsar
        .submit_request(authed(
            pb::SubmitRequestRequest {
                lift: true,
                ..filing(pb::RequestKind::Access, "ada@acme.example")
            },
            &ada_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(misplaced.code(), Code::InvalidArgument);
    assert!(misplaced.message().contains("lift"), "{misplaced:?}");
    server.stop().await;
}

async fn p12_a_portability_archive_is_machine_readable_with_every_services_part_and_nothing_of_another_person(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let ada = server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    let bob = server
        .create_user(&admin, "Bob", "Builder", "bob@acme.example")
        .await;
    let ada_token = server.token(&ada.id, Some(tenant), &[Role::Member]);
    let bob_token = server.token(&bob.id, Some(tenant), &[Role::Member]);
    let plan = note(&server, &ada_token, "Launch plan", "Ada's launch plan, v2").await;
    note(&server, &bob_token, "Bob's ledger", "Bob's private sums").await;
    reads(&server, &ada_token, &plan).await.unwrap();
    let mut settings = pb::privacy_settings_service_client::PrivacySettingsServiceClient::new(
        server.channel().await,
    );
    settings
        .record_consent(authed(
            pb::RecordConsentRequest {
                user_id: String::new(),
                purpose: "llm_processing".into(),
                granted: true,
            },
            &ada_token,
        ))
        .await
        .unwrap();

    let mut dsar = Dsar::new(server.channel().await);
    let id = file_verified(
        &server,
        &mut dsar,
        &ada_token,
        filing(pb::RequestKind::Portability, "ada@acme.example"),
    )
    .await;
    let done = completed(&mut dsar, &ada_token, &id).await;
    assert!(done.parts.iter().all(|p| p.state == "done"), "{done:?}");
    let files = unzip(&download(&mut dsar, &ada_token, &id).await.unwrap());

    // Machine-readable: each service's file is JSON, its records typed and dated.
    let mut parts = std::collections::BTreeMap::new();
    for service in ["ingest", "permissions", "storage", "retention", "dsar"] {
        let part: serde_json::Value =
            serde_json::from_slice(&files[&format!("{service}.json")]).unwrap();
        assert_eq!(part["service"], service);
        let records = part["records"].as_array().unwrap().clone();
        for record in &records {
            for field in ["kind", "id", "updated_at", "data"] {
                assert!(
                    !record[field].is_null(),
                    "{service}: {record} without {field}"
                );
            }
        }
        parts.insert(service, serde_json::Value::Array(records));
    }
    let holds = |service: &str, text: &str| parts[service].to_string().contains(text);
    assert!(holds("permissions", "ada@acme.example"));
    assert!(holds("storage", "Launch plan") && holds("storage", "Ada's launch plan, v2"));
    assert!(holds("dsar", "llm_processing") && holds("dsar", "marketing_mail"));
    assert!(holds("dsar", &id));
    for bytes in files.values() {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains("Bob") && !text.contains("bob@acme.example"),
            "nobody else's data: {text}"
        );
    }
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let listed = manifest["files"].as_array().unwrap();
    assert_eq!(
        listed.len() + 1,
        files.len(),
        "every file but the manifest listed"
    );
    for entry in listed {
        let name = entry["name"].as_str().unwrap();
        let digest = ring::digest::digest(&ring::digest::SHA256, &files[name]);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(entry["sha256"], hex.as_str(), "{name}");
    }
    server.stop().await;
}

both_modes!(
    p12_a_portability_archive_is_machine_readable_with_every_services_part_and_nothing_of_another_person,
    p12_an_erasure_leaves_no_trace_and_completes_with_a_receipt_that_verifies,
    p12_a_rectification_is_visible_wherever_the_account_is_read,
    p12_a_restriction_keeps_the_data_unprocessed_until_it_is_lifted,
);
