//! The connectors Mindmesh has, and how an integration of each kind is connected
//! (settings checked, secrets set apart, an authorization code exchanged) and opened
//! for a sync.

pub mod beneath;
pub mod drive;
pub mod github;
pub mod local;

use std::collections::BTreeMap;
use std::sync::Arc;

use mindmesh_kit::config::Config;
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::{Error, Result};

use crate::connector::{Connector, ConnectorInfo, Credentials};
use crate::http::Http;
use crate::oauth::CredentialSink;

/// Every connector kind, as `ListConnectors` shows them (P03).
pub const ALL: &[ConnectorInfo] = &[drive::INFO, github::INFO, local::INFO];

/// The connector of `kind`.
pub fn info(kind: &str) -> Result<&'static ConnectorInfo> {
    ALL.iter()
        .find(|c| c.kind == kind)
        .ok_or_else(|| Error::invalid("kind", format!("unknown connector kind {:?}", short(kind))))
}

/// What an administrator hands over when connecting.
#[derive(Clone, Default)]
pub struct Grant {
    /// An OAuth authorization code to exchange.
    pub authorization_code: String,
    /// The redirect URI the code was obtained with.
    pub redirect_uri: String,
    /// A ready access token, personal access token or service-account key.
    pub access_token: String,
    /// A refresh token accompanying `access_token`.
    pub refresh_token: String,
}

/// What connecting needs from the service.
#[derive(Clone)]
pub struct Setup {
    /// The process configuration.
    pub config: Arc<Config>,
    /// The HTTP client.
    pub http: Http,
}

/// Checks `settings` for `info` (connected by `tenant`), moves secret settings into the
/// credentials and obtains tokens from `grant`. Returns the settings kept apart from the
/// credentials and the credentials to seal.
pub async fn connect(
    setup: &Setup,
    tenant: TenantId,
    info: &ConnectorInfo,
    mut settings: BTreeMap<String, String>,
    grant: Grant,
) -> Result<(BTreeMap<String, String>, Credentials)> {
    for key in settings.keys() {
        if !info.setting_keys.contains(&key.as_str()) {
            return Err(Error::invalid(
                "settings",
                format!(
                    "{:?} is not a setting of {} (known: {})",
                    short(key),
                    info.kind,
                    info.setting_keys.join(", ")
                ),
            ));
        }
    }
    let mut credentials = Credentials::default();
    for key in info.secret_setting_keys {
        if let Some(value) = settings.remove(*key) {
            credentials.secrets.insert((*key).to_owned(), value);
        }
    }
    match info.kind {
        "local_folder" => {
            local::check(&setup.config.ingest, tenant, &settings)?;
            if !grant.authorization_code.is_empty() || !grant.access_token.is_empty() {
                return Err(Error::invalid(
                    "access_token",
                    "the local-folder connector takes no credentials",
                ));
            }
        }
        "google_drive" => drive::connect(&setup.http, &settings, &mut credentials, grant).await?,
        "github" => github::connect(&setup.http, &settings, &mut credentials, grant).await?,
        other => {
            return Err(Error::Internal(format!(
                "connector {other} is listed but not wired"
            )));
        }
    }
    Ok((settings, credentials))
}

/// The connector of an integration of `tenant`, ready to sync.
pub fn open(
    setup: &Setup,
    tenant: TenantId,
    kind: &str,
    settings: &BTreeMap<String, String>,
    credentials: Credentials,
    sink: Arc<dyn CredentialSink>,
) -> Result<Arc<dyn Connector>> {
    // One sync's requests share one limit (see `Http::limited`).
    let http = setup.http.limited(setup.config.ingest.fetch_concurrency);
    match kind {
        "github" => Ok(Arc::new(github::open(&http, settings, credentials, sink)?)),
        "google_drive" => Ok(Arc::new(drive::open(
            &http,
            settings,
            credentials,
            sink,
            setup.config.ingest.fetch_concurrency,
        )?)),
        "local_folder" => Ok(Arc::new(local::LocalFolder::new(
            local::Location::of(&setup.config.ingest, tenant, settings)?,
            setup.config.storage.max_content_bytes,
        ))),
        other => Err(Error::FailedPrecondition(format!(
            "connector {:?} is not available",
            short(other)
        ))),
    }
}

/// The group (see `SourceDocument::group`) of an item of a connector of `kind`, from
/// its external id: for items recorded before groups were.
pub fn group_of(kind: &str, external_id: &str) -> String {
    match kind {
        "github" => github::group_of(external_id),
        _ => String::new(),
    }
}

/// At most 64 characters of something a caller sent, for an error message.
fn short(s: &str) -> String {
    s.chars().take(64).collect()
}
