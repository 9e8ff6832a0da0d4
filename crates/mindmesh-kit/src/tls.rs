//! TLS for the gRPC server, and mutual TLS between services (P01 in transit): rustls with
//! the ring provider, no OpenSSL.
//!
//! - The server serves TLS from `tls.cert_file` and `tls.key_file` (PEM); with
//!   `tls.client_ca_file` it requires a client certificate issued by that CA, so in
//!   distributed mode a service accepts calls from its peers only with a certificate of
//!   the mesh (the bearer token still decides what a caller may do). A plain connection,
//!   a missing certificate, one from another CA or an expired one fail the handshake.
//! - The files are read again every `tls.reload_interval_secs` when they changed (as
//!   cert-manager rotates them): new connections get the new certificate and CA, open
//!   ones keep theirs, and nothing restarts. A rotation that cannot be read (half
//!   written, mismatched key) keeps the previous one and is logged.
//! - Peers reached at `https://` URLs are verified against `peers.ca_file` and are shown
//!   this service's own certificate (`tls.cert_file`, which cert-manager issues for both
//!   server and client authentication).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::config::TlsConfig;
use crate::{Error, Result};

/// How long a client has to finish its handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(setting: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| Error::Config(format!("{setting} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{setting} {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| Error::Config(format!("tls.key_file {}: {e}", path.display())))
}

fn roots(setting: &str, path: &Path) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(setting, path)? {
        roots
            .add(cert)
            .map_err(|e| Error::Config(format!("{setting} {}: {e}", path.display())))?;
    }
    Ok(roots)
}

/// The files a server's TLS is built from.
#[derive(Clone, Debug)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

impl Files {
    fn modified(&self) -> Vec<Option<SystemTime>> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }

    fn server_config(&self) -> Result<rustls::ServerConfig> {
        let certs = read_certs("tls.cert_file", &self.cert)?;
        let key = read_key(&self.key)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .map_err(|e| Error::Config(format!("tls: {e}")))?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots("tls.client_ca_file", ca)?),
                    provider(),
                )
                .build()
                .map_err(|e| Error::Config(format!("tls.client_ca_file: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| Error::Config(format!("tls.cert_file and tls.key_file: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// A server's TLS, reloaded when its files change.
#[derive(Clone)]
pub struct ServerTls {
    files: Files,
    current: Arc<RwLock<Arc<rustls::ServerConfig>>>,
    reload: Duration,
}

impl ServerTls {
    /// The TLS `config` asks for, if any (`tls.cert_file` unset: plaintext).
    pub fn from_config(config: &TlsConfig) -> Result<Option<Self>> {
        let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) else {
            return Ok(None);
        };
        let files = Files {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: config.client_ca_file.clone(),
        };
        let current = Arc::new(files.server_config()?);
        Ok(Some(ServerTls {
            files,
            current: Arc::new(RwLock::new(current)),
            reload: Duration::from_millis(config.reload_interval_ms.max(10)),
        }))
    }

    /// Whether clients must show a certificate.
    pub fn requires_client_certificates(&self) -> bool {
        self.files.client_ca.is_some()
    }

    fn acceptor(&self) -> TlsAcceptor {
        let config = match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        TlsAcceptor::from(config)
    }

    /// Reads the files again whenever they change, until `shutdown`.
    async fn watch(self, shutdown: CancellationToken) {
        let mut seen = self.files.modified();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.reload) => {}
            }
            let now = self.files.modified();
            if now == seen {
                continue;
            }
            match self.files.server_config() {
                Ok(config) => {
                    if let Ok(mut current) = self.current.write() {
                        *current = Arc::new(config);
                    }
                    seen = now;
                    tracing::info!("TLS certificate reloaded");
                }
                // Half-written files are read again next round; the old ones serve.
                Err(error) => tracing::warn!(%error, "TLS files changed but cannot be used yet"),
            }
        }
    }

    /// The TLS connections accepted on `listener` (handshakes done side by side, each
    /// within ten seconds; failed ones dropped and logged), until `shutdown`.
    pub fn incoming(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(self.clone().watch(shutdown.clone()));
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = self.acceptor();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send(Ok(stream)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::info!(%peer, %error, "a TLS handshake was refused");
                        }
                        Err(_) => tracing::info!(%peer, "a TLS handshake timed out"),
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}

/// How this process calls peers at `https://` URLs: their CA, and its own certificate.
pub fn client_config(config: &TlsConfig) -> Result<Option<tonic::transport::ClientTlsConfig>> {
    let Some(ca) = &config.peer_ca_file else {
        return Ok(None);
    };
    let pem = |setting: &str, path: &Path| {
        std::fs::read(path).map_err(|e| Error::Config(format!("{setting} {}: {e}", path.display())))
    };
    let mut tls = tonic::transport::ClientTlsConfig::new().ca_certificate(
        tonic::transport::Certificate::from_pem(pem("tls.peer_ca_file", ca)?),
    );
    if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            pem("tls.cert_file", cert)?,
            pem("tls.key_file", key)?,
        ));
    }
    Ok(Some(tls))
}
