//! Data-subject requests over gRPC in both modes (P12): filed by an admin for anyone or
//! by a member for themselves, confirmed with the code mailed to the subject (read from
//! the mailbox directory, as a mail client would), listed by who may see them; what is
//! not built answers UNIMPLEMENTED.

use mindmesh_kit::auth::Role;
use mindmesh_proto::mindmesh::dsar::v1 as pb;
use tonic::Code;

use crate::common::{Backend, TestServer, authed};

type Dsar = pb::dsar_service_client::DsarServiceClient<tonic::transport::Channel>;

/// The code in the newest mail to `to` in the server's mailbox.
fn mailed_code(server: &TestServer, to: &str) -> String {
    let mut mails: Vec<(std::time::SystemTime, String)> =
        std::fs::read_dir(server.config.mailbox_dir())
            .expect("a mailbox")
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .map(|p| {
                (
                    std::fs::metadata(&p).unwrap().modified().unwrap(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .filter(|(_, text)| text.contains(&format!("\r\nTo: {to}\r\n")))
            .collect();
    mails.sort();
    let (_, text) = mails.pop().expect("a mail to the subject");
    assert!(
        text.contains("Subject: Confirm your data request\r\n"),
        "{text}"
    );
    text.lines()
        .map(str::trim)
        .find(|l| l.len() == 8 && l.chars().all(|c| c.is_ascii_digit()))
        .expect("a code")
        .to_owned()
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
    assert_eq!(verified.status, pb::RequestStatus::Verified as i32);

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
    // Not built yet: says so.
    let mut export = dsar
        .download_export(authed(
            pb::DownloadExportRequest {
                request_id: filed.id,
            },
            &ada_token,
        ))
        .await;
    if let Ok(stream) = &mut export {
        let first = stream.get_mut().message().await;
        assert_eq!(first.unwrap_err().code(), Code::Unimplemented);
    } else {
        assert_eq!(export.unwrap_err().code(), Code::Unimplemented);
    }
    server.stop().await;
}

both_modes!(p12_a_request_is_confirmed_with_the_code_mailed_to_the_subject,);
