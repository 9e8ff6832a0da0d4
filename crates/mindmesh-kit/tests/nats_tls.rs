//! The bus over TLS with credentials, against a NATS server this test starts itself
//! (JetStream on, TLS required with client certificates verified, user and password):
//! the event streams are created over it; no client certificate, a wrong password or a
//! plaintext connection are refused, and no error shows the password.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use mindmesh_kit::bus::nats::NatsBus;
use mindmesh_kit::config::{BusConfig, BusKind};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

const PASSWORD: &str = "correct-horse-battery";

/// nats-server, killed when dropped.
struct Nats(std::process::Child);

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pems(dir: &Path) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "NATS CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_key = KeyPair::generate().unwrap();
    std::fs::write(
        dir.join("ca.crt"),
        params.self_signed(&ca_key).unwrap().pem(),
    )
    .unwrap();
    let issuer = Issuer::new(params, ca_key);
    for (name, usage) in [
        ("server", ExtendedKeyUsagePurpose::ServerAuth),
        ("client", ExtendedKeyUsagePurpose::ClientAuth),
    ] {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

async fn start(dir: &Path) -> (Nats, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir.display();
    std::fs::write(
        dir.join("nats.conf"),
        format!(
            "listen: 127.0.0.1:{port}\n\
             jetstream {{ store_dir: \"{d}/js\" }}\n\
             tls {{\n  cert_file: \"{d}/server.crt\"\n  key_file: \"{d}/server.key\"\n  \
             ca_file: \"{d}/ca.crt\"\n  verify: true\n}}\n\
             authorization {{ user: mindmesh, password: \"{PASSWORD}\" }}\n"
        ),
    )
    .unwrap();
    let binary = ["/usr/sbin/nats-server", "nats-server"]
        .into_iter()
        .find(|b| !b.starts_with('/') || Path::new(b).exists())
        .unwrap();
    let child = std::process::Command::new(binary)
        .arg("-c")
        .arg(dir.join("nats.conf"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server (`make test` installs it)");
    let server = Nats(child);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nats-server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (server, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_connects_over_verified_tls_with_credentials_and_is_refused_without() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    pems(dir.path());
    std::fs::write(dir.path().join("password"), format!("{PASSWORD}\n")).unwrap();
    std::fs::write(dir.path().join("wrong"), "not-it\n").unwrap();
    let (_nats, port) = start(dir.path()).await;
    let config = BusConfig {
        kind: BusKind::Nats,
        nats_url: format!("tls://localhost:{port}"),
        stream: "TLS_TEST".into(),
        subject_root: "tlstest".into(),
        tls_ca_file: Some(dir.path().join("ca.crt")),
        tls_cert_file: Some(dir.path().join("client.crt")),
        tls_key_file: Some(dir.path().join("client.key")),
        user: Some("mindmesh".into()),
        password_file: Some(dir.path().join("password")),
        ..BusConfig::default()
    };
    let bus = NatsBus::connect(&config)
        .await
        .expect("TLS, certificate, password");
    bus.delete_streams().await.unwrap();

    let refused = |config: BusConfig| async move {
        let error = NatsBus::connect(&config).await.err().expect("refused");
        let text = error.to_string();
        assert!(!text.contains(PASSWORD), "{text}");
        text
    };
    refused(BusConfig {
        tls_cert_file: None,
        tls_key_file: None,
        ..config.clone()
    })
    .await;
    refused(BusConfig {
        password_file: Some(dir.path().join("wrong")),
        ..config.clone()
    })
    .await;
    refused(BusConfig {
        nats_url: format!("nats://localhost:{port}"),
        tls_ca_file: None,
        tls_cert_file: None,
        tls_key_file: None,
        ..config.clone()
    })
    .await;
}
