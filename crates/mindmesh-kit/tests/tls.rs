//! The gRPC server over TLS with a real CA generated here (rcgen): mutual TLS accepted
//! with a certificate of the mesh; refused without one, with one of another CA, with an
//! expired one, and over plaintext; a rotated server certificate picked up live, with no
//! restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use mindmesh_kit::config::TlsConfig;
use mindmesh_kit::tls::ServerTls;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A leaf of `ca` for `name` (server and client authentication, as cert-manager issues
/// them to the mesh), valid now unless `expired`: (certificate PEM, key PEM).
fn leaf(ca: &Ca, name: &str, expired: bool) -> (String, String) {
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Writes `contents` to `path` as a rotation does: a new file renamed into place.
fn install(path: &Path, contents: &str) {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, contents).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

/// A server on loopback serving TLS from files in `dir`, clients verified by `client_ca`.
async fn server(dir: &Path, client_ca: Option<&Ca>) -> (String, CancellationToken) {
    let config = TlsConfig {
        cert_file: Some(dir.join("tls.crt")),
        key_file: Some(dir.join("tls.key")),
        client_ca_file: client_ca.map(|ca| {
            install(&dir.join("ca.crt"), &ca.pem);
            dir.join("ca.crt")
        }),
        peer_ca_file: None,
        reload_interval_ms: 50,
    };
    let tls = ServerTls::from_config(&config)
        .unwrap()
        .expect("TLS configured");
    assert_eq!(tls.requires_client_certificates(), client_ca.is_some());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let shutdown = CancellationToken::new();
    tokio::spawn(mindmesh_kit::server::serve(
        listener,
        tonic::service::RoutesBuilder::default().routes(),
        vec!["test".into()],
        shutdown.clone(),
        Duration::from_secs(1),
        Some(tls),
    ));
    (format!("localhost:{port}"), shutdown)
}

/// Whether a health check over TLS to `address`, trusting `ca`, showing `identity`, is
/// answered.
async fn answered(address: &str, ca: &Ca, identity: Option<&(String, String)>) -> bool {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let endpoint = Endpoint::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5));
    check(endpoint).await
}

async fn check(endpoint: Endpoint) -> bool {
    let Ok(channel): Result<Channel, _> = endpoint.connect().await else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_the_mesh_and_refuses_everyone_else() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let mesh = ca("mesh CA");
    let (cert, key) = leaf(&mesh, "localhost", false);
    install(&dir.path().join("tls.crt"), &cert);
    install(&dir.path().join("tls.key"), &key);
    let (address, shutdown) = server(dir.path(), Some(&mesh)).await;

    let peer = leaf(&mesh, "storage.mindmesh.svc", false);
    assert!(
        answered(&address, &mesh, Some(&peer)).await,
        "a peer of the mesh"
    );
    assert!(
        !answered(&address, &mesh, None).await,
        "no client certificate"
    );
    let stranger = leaf(&ca("another CA"), "storage.mindmesh.svc", false);
    assert!(
        !answered(&address, &mesh, Some(&stranger)).await,
        "another CA"
    );
    let expired = leaf(&mesh, "storage.mindmesh.svc", true);
    assert!(
        !answered(&address, &mesh, Some(&expired)).await,
        "an expired certificate"
    );
    // How a service calls its peer at an https:// URL: verified against the mesh CA,
    // showing its own certificate; without tls.peer_ca_file it refuses to start.
    let own = dir.path().join("client");
    std::fs::create_dir_all(&own).unwrap();
    install(&own.join("tls.crt"), &peer.0);
    install(&own.join("tls.key"), &peer.1);
    install(&own.join("ca.crt"), &mesh.pem);
    let client = mindmesh_kit::tls::client_config(&TlsConfig {
        cert_file: Some(own.join("tls.crt")),
        key_file: Some(own.join("tls.key")),
        peer_ca_file: Some(own.join("ca.crt")),
        ..TlsConfig::default()
    })
    .unwrap()
    .expect("a client TLS config");
    let url = format!("https://{address}");
    let channel =
        mindmesh_kit::grpc::peer_channel("peers.storage_url", Some(&url), Some(&client)).unwrap();
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("a peer over mutual TLS");
    let refused = mindmesh_kit::grpc::peer_channel("peers.storage_url", Some(&url), None)
        .err()
        .unwrap();
    assert!(
        refused.to_string().contains("tls.peer_ca_file"),
        "{refused}"
    );

    let plain = Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5));
    assert!(!check(plain).await, "plaintext where TLS is required");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (ca("old CA"), ca("new CA"));
    let (cert, key) = leaf(&old, "localhost", false);
    install(&dir.path().join("tls.crt"), &cert);
    install(&dir.path().join("tls.key"), &key);
    let (address, shutdown) = server(dir.path(), None).await;
    assert!(answered(&address, &old, None).await);
    assert!(!answered(&address, &new, None).await, "not rotated yet");

    // cert-manager renews: key first, then the certificate (a moment of mismatch).
    let (cert, key) = leaf(&new, "localhost", false);
    install(&dir.path().join("tls.key"), &key);
    install(&dir.path().join("tls.crt"), &cert);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !answered(&address, &new, None).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!answered(&address, &old, None).await, "the old one is gone");
    shutdown.cancel();
}

#[test]
fn unreadable_or_mismatched_files_are_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = ca("mesh CA");
    let (cert, _) = leaf(&mesh, "localhost", false);
    let (_, other_key) = leaf(&mesh, "localhost", false);
    install(&dir.path().join("tls.crt"), &cert);
    install(&dir.path().join("tls.key"), &other_key);
    let config = |cert: &str, key: &str| TlsConfig {
        cert_file: Some(dir.path().join(cert)),
        key_file: Some(dir.path().join(key)),
        ..TlsConfig::default()
    };
    let missing = ServerTls::from_config(&config("nope.crt", "tls.key"))
        .err()
        .unwrap();
    assert!(missing.to_string().contains("tls.cert_file"), "{missing}");
    let mismatched = ServerTls::from_config(&config("tls.crt", "tls.key"))
        .err()
        .unwrap();
    assert!(
        mismatched.to_string().contains("tls.key_file"),
        "{mismatched}"
    );
    assert!(
        ServerTls::from_config(&TlsConfig::default())
            .unwrap()
            .is_none()
    );
}
