//! The unsubscribe page (P13): a small HTTP server on `dsar.http_listen`, reached from
//! the link in every marketing mail, without login.
//!
//! - `GET /unsubscribe?token=…` shows what the link does and a button; it changes
//!   nothing, so a mail scanner that fetches links unsubscribes nobody.
//! - `POST /unsubscribe?token=…` unsubscribes: the button, or a mail client's RFC 8058
//!   one-click `POST` (body `List-Unsubscribe=One-Click`).
//!
//! A forged token gets 403, an expired one 410, a malformed one 400, each with a short
//! page; the token is never echoed back unless it proved genuine. Pages forbid framing,
//! scripts and referrers (the token is in the address).

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use mindmesh_kit::Error;
use serde::Deserialize;

use crate::settings::Settings;
use crate::unsubscribe::{self, Tokens};

/// What the page needs.
#[derive(Clone)]
pub struct Page {
    /// Preferences to change.
    pub settings: Settings,
    /// Tokens to open.
    pub tokens: Tokens,
}

/// The router: `/unsubscribe` (GET, POST) and `/healthz`.
pub fn router(page: Page) -> Router {
    Router::new()
        .route("/unsubscribe", get(confirm).post(unsubscribe))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(page)
}

/// The token in the link's query.
#[derive(Deserialize)]
struct Link {
    token: Option<String>,
}

/// A one-click or form body (`List-Unsubscribe=One-Click`, or the page's `token`).
#[derive(Deserialize, Default)]
struct Body {
    token: Option<String>,
}

async fn confirm(State(page): State<Page>, Query(link): Query<Link>) -> Response {
    let token = link.token.unwrap_or_default();
    match page.tokens.open(&token, Utc::now()) {
        Ok(_) => html(
            StatusCode::OK,
            "Unsubscribe from Mindmesh product news?",
            &format!(
                "<p>You will no longer receive product news from Mindmesh. Notices about \
                 your account and your data (security, privacy, legal) still reach you.</p>\
                 <form method=\"post\" action=\"/unsubscribe\">\
                 <input type=\"hidden\" name=\"token\" value=\"{}\">\
                 <button type=\"submit\" id=\"unsubscribe\">Unsubscribe</button></form>",
                escape(token.trim())
            ),
        ),
        Err(error) => refused(&error),
    }
}

async fn unsubscribe(
    State(page): State<Page>,
    Query(link): Query<Link>,
    body: Result<Form<Body>, axum::extract::rejection::FormRejection>,
) -> Response {
    let token = link
        .token
        .or_else(|| body.ok().and_then(|Form(b)| b.token))
        .unwrap_or_default();
    match unsubscribe::follow(&page.settings, &page.tokens, &token, Utc::now()).await {
        Ok(_) => html(
            StatusCode::OK,
            "You are unsubscribed",
            "<p id=\"done\">You will no longer receive product news from Mindmesh. You can \
             change this at any time in your privacy settings.</p>",
        ),
        Err(error) => refused(&error),
    }
}

fn refused(error: &Error) -> Response {
    let (status, text) = match error {
        Error::InvalidArgument { .. } => (
            StatusCode::BAD_REQUEST,
            "This is not an unsubscribe link. Open the link from the mail again.",
        ),
        Error::PermissionDenied(_) => (
            StatusCode::FORBIDDEN,
            "This unsubscribe link is not genuine.",
        ),
        Error::FailedPrecondition(_) => (
            StatusCode::GONE,
            "This unsubscribe link has expired. Change your mail preferences in your \
             privacy settings.",
        ),
        _ => {
            tracing::warn!(%error, "an unsubscribe failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "Unsubscribing failed for now. Please try again in a minute.",
            )
        }
    };
    html(
        status,
        "Unsubscribe",
        &format!("<p id=\"error\">{text}</p>"),
    )
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    );
    let mut response = (status, page).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; form-action 'self'; frame-ancestors 'none'"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// `text` for an HTML attribute.
fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}
