//! The authorization suite generated from the API itself (issue 15): every RPC of every
//! service in the file descriptor set is called — so a new RPC is covered without anyone
//! remembering — as each caller below, with an empty request, and its answer is held
//! against one table of expected outcomes. An RPC missing from the table fails the suite;
//! the summary prints the matrix and how many cells matched.
//!
//! Callers so far: no token, an expired token, a token signed by another key, garbage,
//! and a member or a tenant admin calling what only operators may (and a member what
//! only admins may). (Still to add: another tenant's admin
//! naming this tenant's ids, members where admin is required, staff with and without
//! consent.)

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes};
use mindmesh_kit::auth::{Claims, Role};
use prost::Message;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::common::{Backend, TestServer};

/// Passes already encoded messages through: the suite needs no generated types.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// One RPC of the API.
struct Rpc {
    path: String,
    client_streaming: bool,
    server_streaming: bool,
}

fn rpcs() -> Vec<Rpc> {
    let set = prost_types::FileDescriptorSet::decode(mindmesh_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set");
    let mut out = Vec::new();
    for file in set.file {
        let package = file.package().to_owned();
        for service in file.service {
            for method in &service.method {
                out.push(Rpc {
                    path: format!("/{package}.{}/{}", service.name(), method.name()),
                    client_streaming: method.client_streaming(),
                    server_streaming: method.server_streaming(),
                });
            }
        }
    }
    out
}

/// `request` with `token` as its bearer token, if any.
fn authorize<T>(mut request: tonic::Request<T>, token: Option<&str>) -> tonic::Request<T> {
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

/// The code `rpc` answers an empty request carrying `token` (none when `None`).
async fn call(channel: &tonic::transport::Channel, rpc: &Rpc, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("the server is up");
    let path: http::uri::PathAndQuery = rpc.path.parse().unwrap();
    let with_token = |request| authorize(request, token);
    let with_token_stream = |request| authorize(request, token);
    let result = match (rpc.client_streaming, rpc.server_streaming) {
        (false, false) => grpc
            .unary(with_token(tonic::Request::new(Bytes::new())), path, Raw)
            .await
            .map(|_| ()),
        (false, true) => match grpc
            .server_streaming(with_token(tonic::Request::new(Bytes::new())), path, Raw)
            .await
        {
            Ok(response) => response.into_inner().message().await.map(|_| ()),
            Err(status) => Err(status),
        },
        (true, false) => grpc
            .client_streaming(
                with_token_stream(tonic::Request::new(tokio_stream::iter(vec![Bytes::new()]))),
                path,
                Raw,
            )
            .await
            .map(|_| ()),
        (true, true) => match grpc
            .streaming(
                with_token_stream(tonic::Request::new(tokio_stream::iter(vec![Bytes::new()]))),
                path,
                Raw,
            )
            .await
        {
            Ok(response) => response.into_inner().message().await.map(|_| ()),
            Err(status) => Err(status),
        },
    };
    match result {
        Ok(()) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// The callers whose token proves nothing.
const UNPROVEN: [&str; 4] = ["no token", "expired", "another key", "garbage"];

/// What `rpc` must answer `caller`. Every RPC of the API must be named here.
fn expected(rpc: &str, caller: &str) -> Option<Code> {
    let method = rpc.rsplit('/').next().unwrap_or_default();
    let service = rpc
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    // Public by design: health and reflection (probes, grpcurl), and the unsubscribe
    // link's own token (P13). Each answers an empty request on its own terms.
    let public: Option<Code> = match (service, method) {
        ("mindmesh.dsar.v1.PrivacySettingsService", "Unsubscribe") => Some(Code::InvalidArgument),
        _ => None,
    };
    if UNPROVEN.contains(&caller) {
        return Some(public.unwrap_or(Code::Unauthenticated));
    }
    // What only an operator may: tenants, breaches, backups.
    let operator_only = [
        ("mindmesh.permissions.v1.AccountService", "CreateTenant"),
        ("mindmesh.dsar.v1.PrivacySettingsService", "DeclareBreach"),
        ("mindmesh.dsar.v1.PrivacySettingsService", "GetBreach"),
        ("mindmesh.retention.v1.RetentionService", "CreateBackup"),
        ("mindmesh.retention.v1.RetentionService", "ListBackups"),
        ("mindmesh.retention.v1.RetentionService", "RestoreBackup"),
    ];
    // What a tenant admin (or an operator) may, and a member not.
    let admin_only = [
        ("mindmesh.retention.v1.RetentionService", "RunSweep"),
        (
            "mindmesh.permissions.v1.StaffAccessService",
            "GrantStaffAccess",
        ),
    ];
    let denied = match caller {
        "member" => {
            operator_only.contains(&(service, method)) || admin_only.contains(&(service, method))
        }
        "admin" => operator_only.contains(&(service, method)),
        _ => false,
    };
    if denied {
        return Some(Code::PermissionDenied);
    }
    None
}

async fn every_rpc_answers_each_caller_as_the_table_says(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let member = server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    let now = mindmesh_kit::auth::now_secs();
    let expired = server
        .issuer()
        .issue_claims(&Claims {
            sub: member.id.clone(),
            tenant: Some(tenant.to_string()),
            roles: vec!["member".into()],
            exp: now - 600,
            iat: now - 1200,
            nbf: None,
            iss: "mindmesh".into(),
        })
        .unwrap();
    let foreign = mindmesh_kit::auth::TokenIssuer::new(
        &mindmesh_kit::crypto::SigningKey::generate().unwrap(),
        "mindmesh",
    )
    .issue(
        &member.id,
        Some(tenant),
        &[Role::Operator],
        std::time::Duration::from_secs(600),
    )
    .unwrap();
    let member_token = server.token(&member.id, Some(tenant), &[Role::Member]);
    let callers: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("expired", Some(expired)),
        ("another key", Some(foreign)),
        ("garbage", Some("not.a.jwt".into())),
        ("member", Some(member_token)),
        ("admin", Some(admin.clone())),
    ];

    let channel = server.channel().await;
    let rpcs = rpcs();
    assert!(
        rpcs.len() > 50,
        "the descriptor set lists {} RPCs",
        rpcs.len()
    );
    let (mut cells, mut matched) = (0, 0);
    let mut mismatches = BTreeMap::new();
    for rpc in &rpcs {
        for (caller, token) in &callers {
            let Some(want) = expected(&rpc.path, caller) else {
                continue;
            };
            cells += 1;
            let got = call(&channel, rpc, token.as_deref()).await;
            if got == want {
                matched += 1;
            } else {
                mismatches.insert(format!("{} as {caller}", rpc.path), (want, got));
            }
        }
    }
    // Every RPC is in the table for every unproven caller (so none was forgotten).
    assert!(cells >= rpcs.len() * UNPROVEN.len());
    println!(
        "authorization matrix: {} RPCs × {} callers, {cells} cells declared, {matched} matched",
        rpcs.len(),
        callers.len()
    );
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    server.stop().await;
}

both_modes!(every_rpc_answers_each_caller_as_the_table_says);
