//! PostgreSQL over verified TLS, against the machine's server (Debian's PostgreSQL has
//! `ssl = on` with its snakeoil certificate, issued to `localhost`): `verify-ca` with that
//! certificate as the root passes and the session is encrypted; `verify-full` against
//! `127.0.0.1` fails with an error that names the setting; a root that did not issue the
//! certificate fails too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mindmesh_kit::testing::postgres_server;
use sea_orm::ConnectionTrait;

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

fn url(mode: &str, root: &str) -> String {
    format!(
        "{}/postgres?sslmode={mode}&sslrootcert={root}",
        postgres_server()
    )
}

#[tokio::test]
async fn verified_tls_to_postgresql_passes_verify_ca_and_names_the_setting_when_it_fails() {
    assert!(
        std::path::Path::new(SNAKEOIL).exists(),
        "Debian's snakeoil certificate (package ssl-cert, installed with postgresql)"
    );
    let db = mindmesh_kit::db::connect(&url("verify-ca", SNAKEOIL), 1)
        .await
        .expect("verify-ca with the server's own certificate as root");
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(
        row.try_get::<bool>("", "ssl").unwrap(),
        "the session is encrypted"
    );
    db.close().await.unwrap();

    // The certificate names localhost, the URL 127.0.0.1.
    let full = mindmesh_kit::db::connect(&url("verify-full", SNAKEOIL), 1)
        .await
        .expect_err("verify-full against a certificate for another name");
    let text = full.to_string();
    assert!(text.contains("sslmode=verify-full"), "{text}");
    assert!(text.contains("sslrootcert"), "{text}");

    // A root that did not issue the server's certificate.
    let dir = tempfile::tempdir().unwrap();
    let stranger = dir.path().join("stranger.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(&stranger, cert.pem()).unwrap();
    let other = mindmesh_kit::db::connect(&url("verify-ca", stranger.to_str().unwrap()), 1)
        .await
        .expect_err("a root that did not issue the certificate");
    assert!(other.to_string().contains("sslmode=verify-ca"), "{other}");
}
