//! What the fakes of vendor APIs share: scripted faults (rate limits, hangs, oversize,
//! malformed answers) and a log of the requests they received.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// What a scripted fault answers.
#[derive(Clone, Debug)]
pub enum Answer {
    /// A status with a JSON body and a `Retry-After` header when set.
    Status(u16, Value, Option<&'static str>),
    /// A status with a JSON body and these headers.
    WithHeaders(u16, Value, Vec<(&'static str, String)>),
    /// Never answers (until the client gives up or goes away).
    Hang,
    /// A 200 with this raw body.
    Raw(&'static str),
    /// A 200 whose body is this many bytes.
    Huge(usize),
}

/// A fault: requests whose path and query contain `matches` get `answer`, `times` times.
#[derive(Clone, Debug)]
pub struct Fault {
    pub matches: String,
    pub answer: Answer,
    pub times: usize,
}

/// One request a fake received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// Who the request acted as.
    pub user: String,
    pub at: std::time::Instant,
}

/// `path?k=v&…` with the query sorted: what faults match against.
pub fn request_key(path: &str, query: &HashMap<String, String>) -> String {
    let mut sorted: Vec<_> = query.iter().collect();
    sorted.sort();
    format!(
        "{path}?{}",
        sorted
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    )
}

/// The answer of the first fault matching `key` that has times left.
pub fn take_fault(faults: &mut [Fault], key: &str) -> Option<Answer> {
    faults
        .iter_mut()
        .find(|f| f.times > 0 && key.contains(&f.matches))
        .map(|f| {
            f.times -= 1;
            f.answer.clone()
        })
}

/// The response a fault answers with.
pub async fn respond(answer: Answer) -> Response {
    match answer {
        Answer::Status(code, body, retry_after) => {
            let mut response =
                (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response();
            if let Some(after) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", after.parse().unwrap());
            }
            response
        }
        Answer::WithHeaders(code, body, headers) => {
            let mut response =
                (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response();
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Answer::Raw(body) => {
            (StatusCode::OK, [("content-type", "application/json")], body).into_response()
        }
        Answer::Huge(n) => (StatusCode::OK, Body::from(vec![b' '; n])).into_response(),
    }
}
