//! HTTP to the source tools: bounded responses, and retries that respect the source.
//!
//! A request is retried when the source says it is overloaded or rate limiting — HTTP
//! 429, Google's 403 `rateLimitExceeded` / `userRateLimitExceeded`, GitHub's primary
//! (`x-ratelimit-remaining: 0`) and secondary limits — honouring `Retry-After` (or
//! GitHub's `x-ratelimit-reset`), otherwise after a backoff in proportion to how hard the
//! source pushes back on the sync ([`crate::backoff`]); also on 5xx answers and transport
//! errors. Attempts are bounded. A 401 refreshes the token once, then fails with a clear
//! error. Errors name the source and the endpoint, never a token, a query string or
//! content.

use std::sync::Arc;
use std::time::Duration;

use mindmesh_kit::config::IngestConfig;
use mindmesh_kit::{Error, Result};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use tokio::sync::Semaphore;

use crate::backoff::Backoff;
use crate::oauth::TokenSource;

/// How a request authenticates.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    /// No credentials (token endpoints, which take them in the body).
    None,
    /// `Authorization: Bearer` from a token source, refreshed on a 401.
    Bearer(&'a TokenSource),
}

/// One request, described so that it can be sent again.
#[derive(Clone, Debug)]
pub struct Call {
    /// What the errors call it, e.g. `google drive files.list`.
    pub name: String,
    /// HTTP method.
    pub method: Method,
    /// Full URL.
    pub url: reqwest::Url,
    /// Extra headers (`If-None-Match`, `Accept`…).
    pub headers: HeaderMap,
    /// A form body, for token endpoints.
    pub form: Option<Vec<(String, String)>>,
    /// A JSON body.
    pub json: Option<serde_json::Value>,
}

impl Call {
    /// A GET of `url` with `query` appended.
    pub fn get(name: impl Into<String>, url: reqwest::Url) -> Self {
        Call {
            name: name.into(),
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            form: None,
            json: None,
        }
    }

    /// A POST of a form to `url`.
    pub fn post_form(
        name: impl Into<String>,
        url: reqwest::Url,
        form: Vec<(String, String)>,
    ) -> Self {
        Call {
            name: name.into(),
            method: Method::POST,
            url,
            headers: HeaderMap::new(),
            form: Some(form),
            json: None,
        }
    }

    /// A request with `method` and a JSON body to `url`.
    pub fn with_json(
        name: impl Into<String>,
        method: Method,
        url: reqwest::Url,
        json: serde_json::Value,
    ) -> Self {
        Call {
            name: name.into(),
            method,
            url,
            headers: HeaderMap::new(),
            form: None,
            json: Some(json),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.insert(name, value);
        }
        self
    }
}

/// A successful answer, its body read within the size limit.
#[derive(Debug)]
pub struct Answer {
    /// The call it answers (what errors about it are called).
    pub call: String,
    /// HTTP status (2xx, or 304 for a conditional request).
    pub status: StatusCode,
    /// Headers (`ETag`, `Link`…).
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON of type `T`; a body that does not decode fails naming the call.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::Unavailable(format!(
                "{}: the source answered a malformed body ({})",
                self.call,
                decode_failure(&e)
            ))
        })
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What was wrong with a body that did not decode, in words (never its content).
fn decode_failure(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "unexpected field type or missing field",
        serde_json::error::Category::Eof => "truncated",
    }
}

/// The HTTP client of the ingest service.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    max_attempts: u32,
    /// The waits between attempts, and the answers they are measured against: one per
    /// sync (see [`Http::limited`]).
    backoff: Arc<Backoff>,
    max_bytes: u64,
    /// Requests of one sync in flight at once (see [`Http::limited`]); a request
    /// waiting to be retried holds none.
    in_flight: Option<Arc<Semaphore>>,
}

impl Http {
    /// A client with the limits of `config`.
    pub fn new(config: &IngestConfig) -> Result<Self> {
        // reqwest is built without a default TLS provider (no aws-lc, no OpenSSL): ring
        // is installed once per process, here as in the binary (a second install is a
        // no-op error).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.http_timeout_secs))
            .connect_timeout(Duration::from_secs(config.http_timeout_secs.min(10)))
            .user_agent(concat!("mindmesh-ingest/", env!("CARGO_PKG_VERSION")))
            // Redirects could leave the configured endpoint: never follow them.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Config(format!("building the HTTP client failed: {e}")))?;
        Ok(Http {
            client,
            max_attempts: config.max_attempts,
            backoff: Arc::new(Backoff::new(
                Duration::from_millis(config.initial_backoff_ms),
                Duration::from_secs(config.max_backoff_secs),
            )),
            max_bytes: config.max_response_bytes,
            in_flight: None,
        })
    }

    /// A client sharing this one's connections that sends at most `requests` at once:
    /// one per sync, so that a sync asks a source for no more than
    /// `ingest.fetch_concurrency` answers at a time, while calls the source throttled
    /// wait for their retry without holding back the others. Its backoff weighs the
    /// sync's own answers.
    pub fn limited(&self, requests: usize) -> Http {
        Http {
            in_flight: Some(Arc::new(Semaphore::new(requests.max(1)))),
            backoff: Arc::new(self.backoff.fresh()),
            ..self.clone()
        }
    }

    /// Largest body accepted.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Sends `call`, retrying as the module explains; 2xx and 304 are answers, the rest
    /// errors: 401 → UNAUTHENTICATED, 403 → PERMISSION_DENIED, 404 → NOT_FOUND, a body
    /// over the limit → RESOURCE_EXHAUSTED, exhausted retries → UNAVAILABLE.
    pub async fn send(&self, call: &Call, auth: Auth<'_>) -> Result<Answer> {
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .client
                .request(call.method.clone(), call.url.clone())
                .headers(call.headers.clone());
            if let Some(form) = &call.form {
                request = request.form(form);
            }
            if let Some(json) = &call.json {
                request = request.json(json);
            }
            let mut sent = String::new();
            if let Auth::Bearer(tokens) = auth {
                sent = tokens.access_token(self).await?;
                request = request.bearer_auth(&sent);
            }
            // Held while the request is sent and its answer read, not while waiting.
            let permit = match &self.in_flight {
                Some(limit) => Some(
                    limit
                        .acquire()
                        .await
                        .map_err(|_| Error::Internal("the request limit was closed".into()))?,
                ),
                None => None,
            };
            let answered = request.send().await;
            let wait = match answered {
                Err(e) => {
                    let reason = if e.is_timeout() {
                        "timed out"
                    } else {
                        "could not be reached"
                    };
                    tracing::debug!(call = %call.name, attempt, reason, "source request failed");
                    self.backoff.record(true);
                    Retry::After(None, format!("{}: the source {reason}", call.name))
                }
                Ok(response) => match self.classify(call, response).await {
                    Err(e) => {
                        self.backoff.record(false);
                        return Err(e);
                    }
                    Ok(Verdict::Done(answer)) => {
                        self.backoff.record(false);
                        return Ok(answer);
                    }
                    Ok(Verdict::Unauthorized) => match auth {
                        Auth::Bearer(tokens) if !refreshed && tokens.can_refresh() => {
                            drop(permit);
                            refreshed = true;
                            Box::pin(tokens.renew(self, &sent)).await?;
                            attempt -= 1;
                            continue;
                        }
                        _ => {
                            return Err(Error::Unauthenticated(format!(
                                "{}: the source rejected the integration's credentials (401); \
                                     reconnect the integration",
                                call.name
                            )));
                        }
                    },
                    Ok(Verdict::Retry(retry)) => {
                        self.backoff.record(true);
                        retry
                    }
                },
            };
            drop(permit);
            let Retry::After(hint, reason) = wait;
            if attempt >= self.max_attempts {
                return Err(Error::Unavailable(format!(
                    "{reason}; gave up after {attempt} attempts"
                )));
            }
            let delay = hint
                .map(|d| self.backoff.cap(d))
                .unwrap_or_else(|| self.backoff.delay(attempt));
            tracing::info!(call = %call.name, attempt, delay_ms = delay.as_millis() as u64, "source asks to wait; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn classify(&self, call: &Call, response: reqwest::Response) -> Result<Verdict> {
        let status = response.status();
        let headers = response.headers().clone();
        let retry_after = retry_after(&headers);
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            let body = self.body(call, response).await?;
            return Ok(Verdict::Done(Answer {
                call: call.name.clone(),
                status,
                headers,
                body,
            }));
        }
        // Error bodies are small; read at most 64 KiB of them, to find a reason.
        let body = read_limited(response, 64 * 1024).await.unwrap_or_default();
        let name = &call.name;
        match status {
            StatusCode::UNAUTHORIZED => Ok(Verdict::Unauthorized),
            StatusCode::TOO_MANY_REQUESTS => Ok(Verdict::Retry(Retry::After(
                retry_after,
                format!("{name}: the source is rate limiting (429)"),
            ))),
            StatusCode::FORBIDDEN => {
                if let Some(reason) = google_rate_limit_reason(&body) {
                    return Ok(Verdict::Retry(Retry::After(
                        retry_after,
                        format!("{name}: the source is rate limiting (403 {reason})"),
                    )));
                }
                if headers
                    .get("x-ratelimit-remaining")
                    .is_some_and(|v| v.as_bytes() == b"0")
                {
                    let until_reset = headers
                        .get("x-ratelimit-reset")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(|reset| {
                            Duration::from_secs(
                                reset.saturating_sub(mindmesh_kit::auth::now_secs()),
                            )
                        });
                    return Ok(Verdict::Retry(Retry::After(
                        retry_after.or(until_reset),
                        format!("{name}: the source's rate limit is used up (403)"),
                    )));
                }
                if retry_after.is_some() || is_github_secondary_limit(&body) {
                    return Ok(Verdict::Retry(Retry::After(
                        retry_after,
                        format!("{name}: the source's secondary rate limit was hit (403)"),
                    )));
                }
                Err(Error::PermissionDenied(format!(
                    "{name}: the source refused access (403{})",
                    google_reason(&body)
                        .map(|r| format!(" {r}"))
                        .unwrap_or_default()
                )))
            }
            StatusCode::NOT_FOUND => Err(Error::NotFound("source item")),
            s if s.is_server_error() => Ok(Verdict::Retry(Retry::After(
                retry_after,
                format!("{name}: the source failed ({})", s.as_u16()),
            ))),
            s => {
                let code = oauth_error(&body).or_else(|| google_reason(&body));
                Err(Error::FailedPrecondition(format!(
                    "{name}: the source refused the request ({}{})",
                    s.as_u16(),
                    code.map(|c| format!(" {c}")).unwrap_or_default()
                )))
            }
        }
    }

    async fn body(&self, call: &Call, response: reqwest::Response) -> Result<Vec<u8>> {
        if response
            .content_length()
            .is_some_and(|len| len > self.max_bytes)
        {
            return Err(too_big(call, self.max_bytes));
        }
        read_limited(response, self.max_bytes)
            .await
            .map_err(|e| match e {
                ReadError::TooBig => too_big(call, self.max_bytes),
                ReadError::Broken => {
                    Error::Unavailable(format!("{}: the source's answer broke off", call.name))
                }
            })
    }
}

fn too_big(call: &Call, limit: u64) -> Error {
    Error::ResourceExhausted(format!(
        "{}: the answer is larger than ingest.max_response_bytes ({limit} bytes)",
        call.name
    ))
}

enum Verdict {
    Done(Answer),
    Unauthorized,
    Retry(Retry),
}

enum Retry {
    /// Wait this long (or back off), for this reason.
    After(Option<Duration>, String),
}

enum ReadError {
    TooBig,
    Broken,
}

async fn read_limited(
    mut response: reqwest::Response,
    limit: u64,
) -> std::result::Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() as u64 + chunk.len() as u64 > limit {
                    return Err(ReadError::TooBig);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => return Err(ReadError::Broken),
        }
    }
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// `s` when it is a short identifier (an error code), safe to repeat in a message.
pub fn identifier(s: &str) -> Option<&str> {
    (!s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'))
    .then_some(s)
}

/// The OAuth error code of a token endpoint's error body: `{"error": "invalid_grant"}`.
fn oauth_error(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    identifier(value.get("error")?.as_str()?).map(str::to_owned)
}

/// Google's error body: `{"error": {"errors": [{"reason": …}], …}}`.
fn google_reason(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let reason = value
        .pointer("/error/errors/0/reason")
        .or_else(|| value.pointer("/error/status"))?
        .as_str()?;
    // Reasons are short identifiers; anything else is not repeated.
    identifier(reason).map(str::to_owned)
}

fn google_rate_limit_reason(body: &[u8]) -> Option<String> {
    google_reason(body).filter(|r| r == "rateLimitExceeded" || r == "userRateLimitExceeded")
}

/// GitHub's secondary limit: a 403 whose message says so.
fn is_github_secondary_limit(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_lowercase)
        })
        .is_some_and(|m| m.contains("secondary rate limit"))
}

/// An endpoint base URL from the settings, checked: https, or http only to a loopback
/// address (a test double or a local proxy).
pub fn base_url(setting: &'static str, value: &str) -> Result<reqwest::Url> {
    let url = reqwest::Url::parse(value.trim_end_matches('/'))
        .map_err(|_| Error::invalid(setting, "is not a URL"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(Error::invalid(
                setting,
                "must be an https:// URL (http:// only to a loopback address)",
            ));
        }
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(Error::invalid(
            setting,
            "must not carry a query, a fragment or credentials",
        ));
    }
    Ok(url)
}

/// The endpoint base URL the setting `field` (`settings.<key>`) names, or `default`;
/// checked as [`base_url`] does.
pub fn setting_url(
    settings: &std::collections::BTreeMap<String, String>,
    field: &'static str,
    default: &str,
) -> Result<reqwest::Url> {
    let key = field.strip_prefix("settings.").unwrap_or(field);
    base_url(
        field,
        settings.get(key).map(String::as_str).unwrap_or(default),
    )
}

/// `base` joined with `path` segments, each percent-encoded.
pub fn endpoint(base: &reqwest::Url, segments: &[&str]) -> reqwest::Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        for segment in segments {
            path.push(segment);
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_must_be_https_or_loopback() {
        assert!(base_url("x", "https://www.googleapis.com").is_ok());
        assert!(base_url("x", "http://127.0.0.1:8080/").is_ok());
        assert!(base_url("x", "http://localhost:1").is_ok());
        let err = base_url("drive_url", "http://example.com").unwrap_err();
        assert!(err.to_string().contains("drive_url"), "{err}");
        assert!(base_url("x", "ftp://127.0.0.1").is_err());
        assert!(base_url("x", "https://user:pw@host").is_err());
        assert!(base_url("x", "not a url").is_err());
    }

    #[test]
    fn endpoint_segments_are_encoded() {
        let base = base_url("x", "http://127.0.0.1:1/drive/v3").unwrap();
        let url = endpoint(&base, &["files", "a/b c"]);
        assert_eq!(url.as_str(), "http://127.0.0.1:1/drive/v3/files/a%2Fb%20c");
    }

    #[test]
    fn google_reasons_are_read_and_sanitised() {
        let body = br#"{"error":{"errors":[{"domain":"usageLimits","reason":"userRateLimitExceeded"}],"code":403}}"#;
        assert_eq!(
            google_rate_limit_reason(body).as_deref(),
            Some("userRateLimitExceeded")
        );
        let body = br#"{"error":{"errors":[{"reason":"insufficientFilePermissions"}]}}"#;
        assert_eq!(google_rate_limit_reason(body), None);
        let body = br#"{"error":{"errors":[{"reason":"<script> secret token"}]}}"#;
        assert_eq!(google_reason(body), None);
        assert!(is_github_secondary_limit(
            br#"{"message":"You have exceeded a secondary rate limit. Please wait."}"#
        ));
    }

    proptest::proptest! {
        /// Whatever a source sends back, reading it never panics, and what is repeated
        /// from it in a message is a short identifier.
        #[test]
        fn answers_from_sources_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512), text in ".{0,200}") {
            for reason in [google_reason(&body), oauth_error(&body)].into_iter().flatten() {
                proptest::prop_assert!(identifier(&reason).is_some());
            }
            let _ = is_github_secondary_limit(&body);
            let _ = base_url("settings.x", &text);
            if let Ok(value) = HeaderValue::from_str(&text) {
                let mut headers = HeaderMap::new();
                headers.insert("retry-after", value);
                let _ = retry_after(&headers);
            }
            if let Some(id) = identifier(&text) {
                proptest::prop_assert!(id.len() <= 64 && !id.contains(' '));
            }
            let as_json = format!("{{\"error\": {:?}}}", text);
            if let Some(code) = oauth_error(as_json.as_bytes()) {
                proptest::prop_assert!(identifier(&code).is_some());
            }
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
