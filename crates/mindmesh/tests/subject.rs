//! `SubjectData` (P12, the permissions part) over real gRPC in both modes: a person's
//! account, source identities and memberships are exported decrypted; rectification
//! changes the account; what is not built answers UNIMPLEMENTED.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

#[macro_use]
mod common;

use common::{Backend, TestServer, authed};
use mindmesh_kit::Service;
use mindmesh_kit::auth::Role;
use mindmesh_kit::ids::IntegrationId;
use mindmesh_proto::mindmesh::permissions::v1 as pb;
use mindmesh_proto::mindmesh::subject::v1 as subject;
use tokio_stream::StreamExt;
use tonic::Code;

async fn p12_permissions_exports_and_rectifies_a_person(backend: Backend) {
    let server = TestServer::start(backend).await;
    let channel = server.channel().await;
    let mut accounts = pb::account_service_client::AccountServiceClient::new(channel.clone());
    let (tenant, admin) = server.create_tenant("Acme").await;
    let ada = accounts
        .create_user(authed(
            pb::CreateUserRequest {
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
    let service = server.token("dsar", Some(tenant), &[Role::Service]);
    let drive = IntegrationId::new();
    pb::permissions_service_client::PermissionsServiceClient::new(channel.clone())
        .sync_principals(authed(
            pb::SyncPrincipalsRequest {
                integration_id: drive.to_string(),
                users: vec![
                    pb::PrincipalUser {
                        external_id: "d-ada".into(),
                        email: "ADA@acme.example".into(),
                        display_name: "Ada L.".into(),
                    },
                    pb::PrincipalUser {
                        external_id: "d-bob".into(),
                        email: "bob@acme.example".into(),
                        display_name: "Bob".into(),
                    },
                ],
                groups: vec![pb::PrincipalGroup {
                    external_id: "eng".into(),
                    email: String::new(),
                    name: "Engineering".into(),
                }],
                memberships: vec![
                    pb::Membership {
                        group_external_id: "eng".into(),
                        member_external_id: "d-ada".into(),
                        member_is_group: false,
                    },
                    pb::Membership {
                        group_external_id: "eng".into(),
                        member_external_id: "d-bob".into(),
                        member_is_group: false,
                    },
                ],
            },
            &service,
        ))
        .await
        .unwrap();

    let mut client = subject::subject_data_client::SubjectDataClient::new(channel.clone());
    let exporter = client.clone();
    let export = |token: String, service: Service, email: &str| {
        let mut client = exporter.clone();
        let request = subject::ExportRequest {
            service: service.to_proto() as i32,
            subject_email: email.into(),
            request_id: "req-1".into(),
        };
        async move {
            let mut stream = client.export(authed(request, &token)).await?.into_inner();
            let mut out = Vec::new();
            while let Some(record) = stream.next().await {
                out.push(record?);
            }
            Ok::<_, tonic::Status>(out)
        }
    };
    let records = export(service.clone(), Service::Permissions, "ada@acme.example")
        .await
        .unwrap();
    let kinds: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        vec!["account", "principal", "membership"],
        "{records:?}"
    );
    let account: serde_json::Value = serde_json::from_str(&records[0].json).unwrap();
    assert_eq!(account["first_name"], "Ada");
    assert_eq!(account["id"], ada.id.as_str());
    let principal: serde_json::Value = serde_json::from_str(&records[1].json).unwrap();
    assert_eq!(principal["name"], "Ada L.", "decrypted for the export");
    assert_eq!(principal["external_id"], "d-ada");
    assert!(
        records.iter().all(|r| !r.json.contains("Bob")),
        "nobody else's data"
    );
    assert!(
        export(service.clone(), Service::Permissions, "nobody@acme.example")
            .await
            .unwrap()
            .is_empty()
    );

    // Rectification changes the account, through the same validation as any update.
    let changed = client
        .rectify(authed(
            subject::RectifyRequest {
                service: Service::Permissions.to_proto() as i32,
                subject_email: "ada@acme.example".into(),
                request_id: "req-2".into(),
                last_name: Some("King".into()),
                ..Default::default()
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner()
        .records_changed;
    assert_eq!(changed, 1);
    let after = accounts
        .get_user(authed(
            pb::GetUserRequest {
                user_id: ada.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(after.last_name, "King");
    let bad = client
        .rectify(authed(
            subject::RectifyRequest {
                service: Service::Permissions.to_proto() as i32,
                subject_email: "ada@acme.example".into(),
                request_id: "req-3".into(),
                email: Some("not-an-email".into()),
                ..Default::default()
            },
            &service,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("email"));

    // What is not built says so; bad requests are refused.
    let status = client
        .restrict(authed(
            subject::RestrictRequest {
                service: Service::Permissions.to_proto() as i32,
                subject_email: "ada@acme.example".into(),
                request_id: "r".into(),
                restricted: true,
            },
            &service,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert_eq!(
        export(service.clone(), Service::Storage, "ada@acme.example")
            .await
            .unwrap_err()
            .code(),
        Code::Unimplemented
    );
    let invalid = client
        .export(authed(
            subject::ExportRequest {
                service: 0,
                subject_email: "ada@acme.example".into(),
                request_id: String::new(),
            },
            &service,
        ))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let member = server.token(&ada.id, Some(tenant), &[Role::Member]);
    assert_eq!(
        export(member, Service::Permissions, "ada@acme.example")
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    server.stop().await;
}

both_modes!(p12_permissions_exports_and_rectifies_a_person);
