//! Data-subject requests over gRPC in both modes (P12): filed by an admin for anyone or
//! by a member for themselves, confirmed with the code mailed to the subject (read from
//! the mailbox directory, as a mail client would), listed by who may see them; an
//! access request carried out across the five services into an archive only its filer
//! downloads, with a manifest whose hashes match.

use mindmesh_kit::auth::Role;
use mindmesh_proto::mindmesh::dsar::v1 as pb;
use tonic::Code;

use crate::common::{Backend, TestServer, authed};

pub(crate) type Dsar = pb::dsar_service_client::DsarServiceClient<tonic::transport::Channel>;

/// The code in the newest mail to `to` in the server's mailbox.
pub(crate) fn mailed_code(server: &TestServer, to: &str) -> String {
    let mut mails: Vec<(std::time::SystemTime, String)> =
        std::fs::read_dir(server.config.mailbox_dir())
            .expect("a mailbox")
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .map(|p| {
                (
                    std::fs::metadata(&p).unwrap().modified().unwrap(),
                    crate::common::mail_text(&std::fs::read_to_string(&p).unwrap()),
                )
            })
            .filter(|(_, text)| text.contains(&format!("\r\nTo: {to}\r\n")))
            // Not the updates on requests already carried out.
            .filter(|(_, text)| text.contains("\r\nSubject: Confirm your data request\r\n"))
            .collect();
    mails.sort();
    let (_, text) = mails.pop().expect("a verification mail to the subject");
    text.lines()
        .map(str::trim)
        .find(|l| l.len() == 8 && l.chars().all(|c| c.is_ascii_digit()))
        .expect("a code")
        .to_owned()
}

/// Request `id` once completed (within 60 s), as `token` reads it.
pub(crate) async fn completed(dsar: &mut Dsar, token: &str, id: &str) -> pb::DataSubjectRequest {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let request = dsar
            .get_request(authed(
                pb::GetRequestRequest {
                    request_id: id.to_owned(),
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner()
            .request
            .unwrap();
        if request.status == pb::RequestStatus::Completed as i32 {
            return request;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "request {id} did not complete: {request:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The export archive of request `id`, downloaded as `token`.
pub(crate) async fn download(
    dsar: &mut Dsar,
    token: &str,
    id: &str,
) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = dsar
        .download_export(authed(
            pb::DownloadExportRequest {
                request_id: id.to_owned(),
            },
            token,
        ))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await? {
        assert_eq!(chunk.offset, out.len() as u64);
        out.extend_from_slice(&chunk.data);
        assert!(out.len() as u64 <= chunk.total_size);
    }
    Ok(out)
}

/// The files of a zip archive, by name.
pub(crate) fn unzip(archive: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read as _;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        out.insert(file.name().unwrap().to_string(), bytes);
    }
    out
}

/// Files `request` as `token` and confirms it with the code mailed to its subject;
/// returns the request's id.
pub(crate) async fn file_verified(
    server: &TestServer,
    dsar: &mut Dsar,
    token: &str,
    request: pb::SubmitRequestRequest,
) -> String {
    let subject = request.subject_email.clone();
    let filed = dsar
        .submit_request(authed(request, token))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(
        filed.status,
        pb::RequestStatus::AwaitingVerification as i32,
        "{filed:?}"
    );
    let code = mailed_code(server, &subject);
    dsar.verify_request(authed(
        pb::VerifyRequestRequest {
            request_id: filed.id.clone(),
            code,
        },
        token,
    ))
    .await
    .unwrap();
    filed.id
}

fn access(subject: &str, requester: &str) -> pb::SubmitRequestRequest {
    pb::SubmitRequestRequest {
        kind: pb::RequestKind::Access as i32,
        subject_email: subject.into(),
        requester_email: requester.into(),
        ..Default::default()
    }
}

async fn p12_a_request_is_confirmed_with_the_code_mailed_to_the_subject(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let ada = server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    let bob = server
        .create_user(&admin, "Bob", "Builder", "bob@acme.example")
        .await;
    let mut dsar = Dsar::new(server.channel().await);

    // A member files about themselves; not about someone else.
    let ada_token = server.token(&ada.id, Some(tenant), &[Role::Member]);
    let bob_token = server.token(&bob.id, Some(tenant), &[Role::Member]);
    let denied = dsar
        .submit_request(authed(
            access("ada@acme.example", "ada@acme.example"),
            &bob_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let filed = dsar
        .submit_request(authed(
            access("ada@acme.example", "ada@acme.example"),
            &ada_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(filed.status, pb::RequestStatus::AwaitingVerification as i32);
    assert!(filed.due_at.is_some() && !filed.overdue);

    // Confirmed with the mailed code; a wrong one says how many tries are left.
    let wrong = dsar
        .verify_request(authed(
            pb::VerifyRequestRequest {
                request_id: filed.id.clone(),
                code: "not-it".into(),
            },
            &ada_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::InvalidArgument);
    assert!(wrong.message().contains("tries left"), "{wrong:?}");
    let code = mailed_code(&server, "ada@acme.example");
    let verified = dsar
        .verify_request(authed(
            pb::VerifyRequestRequest {
                request_id: filed.id.clone(),
                code,
            },
            &ada_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(verified.status, pb::RequestStatus::InProgress as i32);

    // Carried out across the five services, then downloadable by who filed it only.
    let done = completed(&mut dsar, &ada_token, &filed.id).await;
    assert_eq!(done.parts.len(), 5, "{done:?}");
    // And Ada is told, by an administrative mail naming the request.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let told = std::fs::read_dir(server.config.mailbox_dir())
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
            .map(|m| crate::common::mail_text(&m))
            .filter(|m| m.contains("\r\nTo: ada@acme.example\r\n"))
            .filter(|m| m.contains("\r\nSubject: Your data request\r\n"))
            .filter(|m| m.contains(&format!("{} is now completed", filed.id)))
            .count();
        if told == 1 {
            break;
        }
        assert!(
            told == 0 && tokio::time::Instant::now() < deadline,
            "{told} updates"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(done.parts.iter().all(|p| p.state == "done"), "{done:?}");
    let archive = download(&mut dsar, &ada_token, &filed.id).await.unwrap();
    let files = unzip(&archive);
    for name in [
        "ingest.json",
        "permissions.json",
        "storage.json",
        "retention.json",
        "dsar.json",
        "summary.txt",
        "manifest.json",
    ] {
        assert!(
            files.contains_key(name),
            "{name} missing: {:?}",
            files.keys()
        );
    }
    let permissions = String::from_utf8(files["permissions.json"].clone()).unwrap();
    assert!(permissions.contains("Lovelace"), "{permissions}");
    let dsar_part = String::from_utf8(files["dsar.json"].clone()).unwrap();
    assert!(dsar_part.contains(&filed.id), "{dsar_part}");
    assert!(
        files
            .values()
            .all(|bytes| !String::from_utf8_lossy(bytes).contains("Builder")),
        "nobody else's data"
    );
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    for entry in manifest["files"].as_array().unwrap() {
        let name = entry["name"].as_str().unwrap();
        let digest = ring::digest::digest(&ring::digest::SHA256, &files[name]);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(entry["sha256"], hex.as_str(), "{name}");
    }
    assert_eq!(
        download(&mut dsar, &bob_token, &filed.id)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        download(&mut dsar, &admin, &filed.id)
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied,
        "the admin did not file it"
    );

    // An admin files for a person without an account too (imported data); a requester
    // whose email differs is rejected with the reason.
    let for_outsider = dsar
        .submit_request(authed(
            access("someone@partner.example", "someone@partner.example"),
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(
        for_outsider.status,
        pb::RequestStatus::AwaitingVerification as i32
    );
    let mismatch = dsar
        .submit_request(authed(
            access("ada@acme.example", "eve@evil.example"),
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(mismatch.status, pb::RequestStatus::Rejected as i32);
    assert!(mismatch.rejection_reason.contains("does not match"));

    // Who sees what: Ada her own; the admin all three; another tenant none.
    let list = |token: String| {
        let mut dsar = dsar.clone();
        async move {
            dsar.list_requests(authed(pb::ListRequestsRequest::default(), &token))
                .await
                .unwrap()
                .into_inner()
                .requests
        }
    };
    assert_eq!(list(ada_token.clone()).await.len(), 1);
    assert_eq!(list(admin.clone()).await.len(), 3);
    let (_, stranger) = server.create_tenant("Globex").await;
    assert!(list(stranger.clone()).await.is_empty());
    let hidden = dsar
        .get_request(authed(
            pb::GetRequestRequest {
                request_id: filed.id.clone(),
            },
            &stranger,
        ))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);

    // Bad input names the field; an operator names the tenant.
    let no_kind = dsar
        .submit_request(authed(
            pb::SubmitRequestRequest {
                kind: 0,
                ..access("ada@acme.example", "ada@acme.example")
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert!(no_kind.message().contains("kind"), "{no_kind:?}");
    let operator = server.token("dpo", None, &[Role::Operator]);
    let no_tenant = dsar
        .submit_request(authed(
            access("ada@acme.example", "ada@acme.example"),
            &operator,
        ))
        .await
        .unwrap_err();
    assert!(no_tenant.message().contains("tenant_id"), "{no_tenant:?}");
    let by_dpo = dsar
        .submit_request(authed(
            pb::SubmitRequestRequest {
                tenant_id: tenant.to_string(),
                ..access("bob@acme.example", "bob@acme.example")
            },
            &operator,
        ))
        .await
        .unwrap();
    assert!(by_dpo.into_inner().request.is_some());
    server.stop().await;
}

both_modes!(p12_a_request_is_confirmed_with_the_code_mailed_to_the_subject,);
