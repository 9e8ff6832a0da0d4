//! OAuth 2.0 as the source tools speak it: the authorization-code exchange (RFC 6749
//! §4.1), refresh (§6), and Google's service-account JWT-bearer grant (RFC 7523) with
//! per-user impersonation, the assertion signed RS256 with `ring`.
//!
//! A [`TokenSource`] hands out the current access token, refreshes it when it is about to
//! expire or when the source answers 401, and stores refreshed credentials sealed
//! (through a [`CredentialSink`]). Tokens never appear in errors or logs.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Duration, Utc};
use mindmesh_kit::{Error, Result};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;

use crate::connector::Credentials;
use crate::http::{Auth, Call, Http};

/// Tokens are refreshed this long before they expire.
const EARLY_REFRESH_SECS: i64 = 60;

/// Keeps refreshed credentials (sealed, in the ingest database).
#[async_trait::async_trait]
pub trait CredentialSink: Send + Sync {
    /// Stores `credentials` as the integration's current ones.
    async fn save(&self, credentials: &Credentials) -> Result<()>;
}

/// A sink that keeps nothing (service-account tokens are minted again when needed).
pub struct Forget;

#[async_trait::async_trait]
impl CredentialSink for Forget {
    async fn save(&self, _: &Credentials) -> Result<()> {
        Ok(())
    }
}

/// A service account's key, as in the JSON key file Google issues.
#[derive(Clone)]
pub struct ServiceAccount {
    /// `client_email`: the account the assertion is issued by.
    pub client_email: String,
    /// `token_uri`, unless a settings override points elsewhere.
    pub token_uri: String,
    key: Arc<RsaKeyPair>,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Reads a JSON key file (`type: service_account`, `client_email`, `private_key` as
    /// PKCS#8 PEM, `token_uri`). Errors name the field, never its value.
    pub fn from_json(field: &'static str, json: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct KeyFile {
            #[serde(rename = "type")]
            kind: String,
            client_email: String,
            private_key: String,
            #[serde(default)]
            token_uri: String,
        }
        let file: KeyFile = serde_json::from_str(json)
            .map_err(|_| Error::invalid(field, "is not a service-account JSON key"))?;
        if file.kind != "service_account" {
            return Err(Error::invalid(field, "type must be \"service_account\""));
        }
        let der = pem_body(&file.private_key)
            .ok_or_else(|| Error::invalid(field, "private_key is not a PEM PRIVATE KEY"))?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .map_err(|_| Error::invalid(field, "private_key is not a PKCS#8 RSA key"))?;
        Ok(ServiceAccount {
            client_email: file.client_email,
            token_uri: file.token_uri,
            key: Arc::new(key),
        })
    }

    /// A signed JWT-bearer assertion for `scopes`, acting as `subject` when set.
    pub fn assertion(&self, audience: &str, scopes: &str, subject: Option<&str>) -> Result<String> {
        let now = Utc::now().timestamp();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let mut claims = serde_json::json!({
            "iss": self.client_email,
            "scope": scopes,
            "aud": audience,
            "iat": now,
            "exp": now + 3600,
        });
        if let Some(subject) = subject {
            claims["sub"] = serde_json::Value::from(subject);
        }
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let message = format!("{header}.{claims}");
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message.as_bytes(),
                &mut signature,
            )
            .map_err(|_| Error::Crypto("signing the service-account assertion failed"))?;
        Ok(format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// The base64 body of a PEM block.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    if !pem.contains("-----BEGIN PRIVATE KEY-----") {
        return None;
    }
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// How a token source gets a new access token.
#[derive(Clone, Debug)]
pub enum Renewal {
    /// It cannot: a personal access token, or an access token given without a refresh
    /// token.
    None,
    /// `grant_type=refresh_token` at `token_url` with the client's id and secret.
    RefreshToken {
        /// Token endpoint.
        token_url: reqwest::Url,
        /// OAuth client id.
        client_id: String,
        /// OAuth client secret.
        client_secret: String,
    },
    /// A JWT-bearer assertion signed by a service account, acting as `subject`.
    ServiceAccount {
        /// Token endpoint.
        token_url: reqwest::Url,
        /// The key.
        account: ServiceAccount,
        /// Space-separated scopes.
        scopes: String,
        /// The user impersonated (domain-wide delegation).
        subject: Option<String>,
    },
}

/// The current access token of one integration (or one impersonated user).
pub struct TokenSource {
    name: String,
    current: tokio::sync::Mutex<Credentials>,
    renewal: Renewal,
    sink: Arc<dyn CredentialSink>,
}

impl TokenSource {
    /// A source starting from `credentials`; `name` is what errors call the source.
    pub fn new(
        name: impl Into<String>,
        credentials: Credentials,
        renewal: Renewal,
        sink: Arc<dyn CredentialSink>,
    ) -> Self {
        TokenSource {
            name: name.into(),
            current: tokio::sync::Mutex::new(credentials),
            renewal,
            sink,
        }
    }

    /// True when a rejected token can be replaced.
    pub fn can_refresh(&self) -> bool {
        !matches!(self.renewal, Renewal::None)
    }

    /// The access token, renewed first when it is about to expire (or when there is
    /// none yet and it can be minted). Concurrent callers share one renewal.
    pub async fn access_token(&self, http: &Http) -> Result<String> {
        let stale = {
            let current = self.current.lock().await;
            if (!current.access_token.is_empty() && fresh(&current, Utc::now()))
                || !self.can_refresh()
            {
                return Ok(current.access_token.clone());
            }
            current.access_token.clone()
        };
        Box::pin(self.renew(http, &stale)).await?;
        Ok(self.current.lock().await.access_token.clone())
    }

    /// The current credentials (for revocation).
    pub async fn credentials(&self) -> Credentials {
        self.current.lock().await.clone()
    }

    /// Replaces the access token `rejected` (refused by the source, or about to
    /// expire) with a new one and stores it — unless another caller replaced it already,
    /// so that concurrent fetches renew it once.
    pub async fn renew(&self, http: &Http, rejected: &str) -> Result<()> {
        let mut current = self.current.lock().await;
        if current.access_token != rejected && !current.access_token.is_empty() {
            return Ok(());
        }
        let call = match &self.renewal {
            Renewal::None => {
                return Err(Error::Unauthenticated(format!(
                    "{}: the token expired and cannot be refreshed; reconnect the integration",
                    self.name
                )));
            }
            Renewal::RefreshToken {
                token_url,
                client_id,
                client_secret,
            } => Call::post_form(
                format!("{} token refresh", self.name),
                token_url.clone(),
                vec![
                    ("grant_type".into(), "refresh_token".into()),
                    ("refresh_token".into(), current.refresh_token.clone()),
                    ("client_id".into(), client_id.clone()),
                    ("client_secret".into(), client_secret.clone()),
                ],
            ),
            Renewal::ServiceAccount {
                token_url,
                account,
                scopes,
                subject,
            } => Call::post_form(
                format!("{} service-account token", self.name),
                token_url.clone(),
                vec![
                    (
                        "grant_type".into(),
                        "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
                    ),
                    (
                        "assertion".into(),
                        account.assertion(token_url.as_str(), scopes, subject.as_deref())?,
                    ),
                ],
            ),
        };
        let token = request_token(http, &call).await?;
        current.access_token = token.access_token;
        current.expires_at = token.expires_at;
        current.obtained_at = Some(Utc::now());
        if let Some(refresh) = token.refresh_token {
            current.refresh_token = refresh;
        }
        self.sink.save(&current).await?;
        Ok(())
    }
}

/// True while `credentials`' access token may still be used at `now`: until a fifth of
/// its lifetime (at most [`EARLY_REFRESH_SECS`]) before it expires, so that a token
/// living an hour is renewed a minute early and one living three seconds after about
/// two and a half — never on every call.
fn fresh(credentials: &Credentials, now: chrono::DateTime<Utc>) -> bool {
    let Some(expires_at) = credentials.expires_at else {
        return true;
    };
    let margin = match credentials.obtained_at {
        Some(obtained) => (expires_at - obtained) / 5,
        None => Duration::seconds(EARLY_REFRESH_SECS),
    }
    .min(Duration::seconds(EARLY_REFRESH_SECS));
    expires_at - now > margin
}

/// What a token endpoint answered.
#[derive(Clone)]
pub struct Token {
    /// The access token.
    pub access_token: String,
    /// A new refresh token, when the endpoint rotates them.
    pub refresh_token: Option<String>,
    /// When the access token expires.
    pub expires_at: Option<chrono::DateTime<Utc>>,
    /// The scopes actually granted, space-separated, when the endpoint says.
    pub scope: Option<String>,
}

/// Exchanges an authorization code (RFC 6749 §4.1.3).
pub async fn exchange_code(
    http: &Http,
    name: &str,
    token_url: &reqwest::Url,
    client_id: &str,
    client_secret: &str,
    code: &str,
    redirect_uri: &str,
) -> Result<Token> {
    let call = Call::post_form(
        format!("{name} authorization-code exchange"),
        token_url.clone(),
        vec![
            ("grant_type".into(), "authorization_code".into()),
            ("code".into(), code.to_owned()),
            ("redirect_uri".into(), redirect_uri.to_owned()),
            ("client_id".into(), client_id.to_owned()),
            ("client_secret".into(), client_secret.to_owned()),
        ],
    )
    .header("accept", "application/json");
    request_token(http, &call).await
}

async fn request_token(http: &Http, call: &Call) -> Result<Token> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        access_token: String,
        #[serde(default)]
        refresh_token: Option<String>,
        #[serde(default)]
        expires_in: Option<i64>,
        #[serde(default)]
        scope: Option<String>,
        #[serde(default)]
        error: Option<String>,
    }
    let answer: Answer = http
        .send(call, Auth::None)
        .await
        .map_err(|e| match e {
            // The endpoint refused the grant: the integration must be authorised again.
            Error::FailedPrecondition(m) => {
                Error::Unauthenticated(format!("{m}; reconnect the integration"))
            }
            e => e,
        })?
        .json()?;
    // GitHub answers errors with 200 and an `error` field.
    if let Some(error) = answer.error.filter(|e| !e.is_empty()) {
        return Err(Error::Unauthenticated(format!(
            "{}: the source refused the grant ({})",
            call.name,
            crate::http::identifier(&error).unwrap_or("unknown error")
        )));
    }
    if answer.access_token.is_empty() {
        return Err(Error::Unavailable(format!(
            "{}: the answer holds no access_token",
            call.name
        )));
    }
    Ok(Token {
        access_token: answer.access_token,
        refresh_token: answer.refresh_token.filter(|t| !t.is_empty()),
        expires_at: answer
            .expires_in
            .filter(|s| *s > 0)
            .map(|s| Utc::now() + Duration::seconds(s.min(365 * 24 * 3600))),
        scope: answer.scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_that_is_not_one_is_refused_by_field() {
        let err = ServiceAccount::from_json("access_token", "{}").unwrap_err();
        assert!(err.to_string().contains("access_token"), "{err}");
        let err = ServiceAccount::from_json(
            "access_token",
            r#"{"type":"service_account","client_email":"a@b","private_key":"nope"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("private_key"), "{err}");
        assert!(!err.to_string().contains("nope"), "{err}");
    }

    fn token(
        lifetime_secs: i64,
        age_secs: i64,
        known_age: bool,
    ) -> (Credentials, chrono::DateTime<Utc>) {
        let obtained = Utc::now();
        let credentials = Credentials {
            access_token: "t".into(),
            expires_at: Some(obtained + Duration::seconds(lifetime_secs)),
            obtained_at: known_age.then_some(obtained),
            ..Credentials::default()
        };
        (credentials, obtained + Duration::seconds(age_secs))
    }

    #[test]
    fn a_token_is_renewed_early_by_a_share_of_its_lifetime() {
        // An hour's token: used until a minute before it expires.
        let (c, at) = token(3600, 3530, true);
        assert!(fresh(&c, at));
        let (c, at) = token(3600, 3545, true);
        assert!(!fresh(&c, at));
        // Three seconds: used for two of them, not renewed on every call.
        let (c, at) = token(3, 2, true);
        assert!(fresh(&c, at));
        let (c, at) = token(3, 3, true);
        assert!(!fresh(&c, at));
        // Of unknown age: a minute early, as before.
        let (c, at) = token(3600, 3545, false);
        assert!(!fresh(&c, at));
        // Without an expiry: always.
        let c = Credentials {
            access_token: "t".into(),
            ..Credentials::default()
        };
        assert!(fresh(&c, Utc::now()));
    }
}
