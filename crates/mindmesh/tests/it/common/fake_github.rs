//! A fake of GitHub's REST API v3 on 127.0.0.1:0, following its documented wire format:
//! organisations, members, users, teams (with parents) and team members, repositories
//! (public, private, internal), direct collaborators and repository teams, git trees
//! (with `ETag` / `If-None-Match` → 304) and blobs (base64), issues (with `since`, pull
//! requests among them), page-number paging with `Link: <…>; rel="next"`, the OAuth
//! code exchange (errors as 200 with an `error` field) and token revocation. Faults as
//! in [`super::fake_http`].

#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine;
use serde_json::{Value, json};

// Re-exported for the tests that script faults.
#[allow(unused_imports)]
pub use super::fake_http::{Answer, Fault, Seen};

#[derive(Clone, Debug)]
pub struct User {
    pub id: u64,
    pub login: String,
    pub name: String,
    /// Public email; `None` when the user keeps it private.
    pub email: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Team {
    pub id: u64,
    pub slug: String,
    pub parent: Option<u64>,
    /// Direct members (user ids).
    pub members: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    pub body: String,
    /// When it last changed (Unix seconds).
    pub updated: i64,
    pub pull_request: bool,
}

#[derive(Clone, Debug)]
pub struct Repo {
    pub id: u64,
    pub name: String,
    /// "public", "private" or "internal".
    pub visibility: &'static str,
    pub collaborators: Vec<(u64, &'static str)>,
    pub teams: Vec<(u64, &'static str)>,
    pub files: BTreeMap<String, String>,
    pub issues: Vec<Issue>,
}

impl Repo {
    pub fn new(id: u64, name: &str, visibility: &'static str) -> Self {
        Repo {
            id,
            name: name.into(),
            visibility,
            collaborators: Vec::new(),
            teams: Vec::new(),
            files: BTreeMap::new(),
            issues: Vec::new(),
        }
    }

    fn tree_sha(&self) -> String {
        sha(&format!("{:?}", self.files))
    }
}

fn sha(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..20]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Default)]
pub struct World {
    pub org: String,
    /// The organisation's base permission ("none", "read", …).
    pub base_permission: String,
    pub members: Vec<User>,
    pub teams: Vec<Team>,
    pub repos: Vec<Repo>,
    /// Largest page the fake answers.
    pub page_size: usize,
    /// Valid tokens.
    pub tokens: Vec<String>,
    pub client_id: String,
    pub client_secret: String,
    /// Scopes the code exchange says it granted.
    pub granted_scope: String,
    /// Revocations: (basic credentials, token).
    pub revoked: Vec<(String, String)>,
    pub faults: Vec<Fault>,
    pub seen: Vec<Seen>,
    /// 304s answered to conditional tree requests.
    pub not_modified: usize,
}

pub type Shared = Arc<Mutex<World>>;

pub struct FakeGitHub {
    pub addr: SocketAddr,
    pub world: Shared,
    shutdown: tokio_util::sync::CancellationToken,
}

impl FakeGitHub {
    pub async fn start(world: World) -> Self {
        let world: Shared = Arc::new(Mutex::new(world));
        let app = Router::new()
            .route("/login/oauth/access_token", post(exchange))
            .route("/applications/{client}/token", delete(revoke))
            .route("/orgs/{org}", get(org))
            .route("/orgs/{org}/members", get(members))
            .route("/users/{login}", get(user))
            .route("/orgs/{org}/teams", get(teams))
            .route("/orgs/{org}/teams/{slug}/members", get(team_members))
            .route("/orgs/{org}/repos", get(repos))
            .route("/repos/{owner}/{repo}/collaborators", get(collaborators))
            .route("/repos/{owner}/{repo}/teams", get(repo_teams))
            .route("/repos/{owner}/{repo}/git/trees/{branch}", get(tree))
            .route("/repos/{owner}/{repo}/git/blobs/{sha}", get(blob))
            .route("/repos/{owner}/{repo}/issues", get(issues))
            .with_state(world.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        FakeGitHub {
            addr,
            world,
            shutdown,
        }
    }

    /// Settings pointing the connector here.
    pub fn settings(&self) -> HashMap<String, String> {
        let base = format!("http://{}", self.addr);
        let org = self.with(|w| w.org.clone());
        [("api_url", base.clone()), ("oauth_url", base), ("org", org)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        f(&mut self.world.lock().unwrap())
    }

    pub fn seen(&self, contains: &str) -> Vec<Seen> {
        self.with(|w| {
            w.seen
                .iter()
                .filter(|s| s.path.contains(contains))
                .cloned()
                .collect()
        })
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn message(status: StatusCode, text: &str) -> Response {
    (
        status,
        axum::Json(json!({"message": text, "documentation_url": "https://docs.github.com/rest"})),
    )
        .into_response()
}

async fn enter(
    world: &Shared,
    headers: &HeaderMap,
    path: &str,
    query: &HashMap<String, String>,
) -> Result<(), Response> {
    let fault = {
        let mut w = world.lock().unwrap();
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        if !w.tokens.contains(&token) {
            return Err(message(StatusCode::UNAUTHORIZED, "Bad credentials"));
        }
        assert_eq!(
            headers.get("accept").and_then(|v| v.to_str().ok()),
            Some("application/vnd.github+json")
        );
        w.seen.push(Seen {
            path: path.to_owned(),
            query: query.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            user: String::new(),
            at: std::time::Instant::now(),
        });
        let key = super::fake_http::request_key(path, query);
        super::fake_http::take_fault(&mut w.faults, &key)
    };
    match fault {
        None => Ok(()),
        Some(answer) => Err(super::fake_http::respond(answer).await),
    }
}

/// A page of `items` (`page`, `per_page`), with a `Link` header when more follow.
fn paged(
    path: &str,
    items: Vec<Value>,
    query: &HashMap<String, String>,
    world_max: usize,
) -> Response {
    let page: usize = query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let per_page: usize = query
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(30)
        .min(world_max.max(1));
    let start = (page - 1) * per_page;
    let chunk: Vec<Value> = items.iter().skip(start).take(per_page).cloned().collect();
    let mut response = axum::Json(Value::Array(chunk)).into_response();
    if start + per_page < items.len() {
        let link = format!(
            "<http://fake{path}?page={}&per_page={per_page}>; rel=\"next\", <http://fake{path}?page=1>; rel=\"first\"",
            page + 1
        );
        response.headers_mut().insert("link", link.parse().unwrap());
    }
    response
}

type Q = Query<HashMap<String, String>>;

macro_rules! enter {
    ($world:expr, $headers:expr, $path:expr, $query:expr) => {
        if let Err(r) = enter(&$world, &$headers, &$path, &$query).await {
            return r;
        }
    };
}

async fn exchange(
    State(world): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut w = world.lock().unwrap();
    assert_eq!(
        headers.get("accept").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    // GitHub answers a failed exchange with 200 and an error field.
    if form.get("client_id") != Some(&w.client_id)
        || form.get("client_secret") != Some(&w.client_secret)
    {
        return axum::Json(json!({"error": "incorrect_client_credentials"})).into_response();
    }
    if form.get("code").map(String::as_str) != Some("gh-code") {
        return axum::Json(json!({"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired."})).into_response();
    }
    let token = format!("ghu_fake{}", w.tokens.len() + 1);
    w.tokens.push(token.clone());
    axum::Json(json!({"access_token": token, "token_type": "bearer", "scope": w.granted_scope}))
        .into_response()
}

async fn revoke(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path(client): Path<String>,
    body: String,
) -> Response {
    let mut w = world.lock().unwrap();
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    if basic != format!("{}:{}", w.client_id, w.client_secret) || client != w.client_id {
        return message(StatusCode::NOT_FOUND, "Not Found");
    }
    let token = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["access_token"].as_str().map(str::to_owned))
        .unwrap_or_default();
    w.tokens.retain(|t| *t != token);
    w.revoked.push((basic, token));
    StatusCode::NO_CONTENT.into_response()
}

async fn org(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path(org): Path<String>,
    Query(q): Q,
) -> Response {
    enter!(world, headers, format!("/orgs/{org}"), q);
    let w = world.lock().unwrap();
    axum::Json(json!({"login": w.org, "id": 1, "default_repository_permission": w.base_permission}))
        .into_response()
}

async fn members(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path(org): Path<String>,
    Query(q): Q,
) -> Response {
    let path = format!("/orgs/{org}/members");
    enter!(world, headers, path, q);
    let w = world.lock().unwrap();
    let items = w
        .members
        .iter()
        .map(|u| json!({"login": u.login, "id": u.id, "type": "User"}))
        .collect();
    paged(&path, items, &q, w.page_size)
}

async fn user(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path(login): Path<String>,
    Query(q): Q,
) -> Response {
    enter!(world, headers, format!("/users/{login}"), q);
    let w = world.lock().unwrap();
    match w.members.iter().find(|u| u.login == login) {
        Some(u) => {
            axum::Json(json!({"login": u.login, "id": u.id, "name": u.name, "email": u.email}))
                .into_response()
        }
        None => message(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn teams(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path(org): Path<String>,
    Query(q): Q,
) -> Response {
    let path = format!("/orgs/{org}/teams");
    enter!(world, headers, path, q);
    let w = world.lock().unwrap();
    let items = w
        .teams
        .iter()
        .map(|t| {
            let parent = t.parent.map(|p| json!({"id": p, "slug": w.teams.iter().find(|x| x.id == p).map(|x| x.slug.clone())}));
            json!({"id": t.id, "slug": t.slug, "name": t.slug, "parent": parent, "permission": "pull"})
        })
        .collect();
    paged(&path, items, &q, w.page_size)
}

async fn team_members(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path((org, slug)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let path = format!("/orgs/{org}/teams/{slug}/members");
    enter!(world, headers, path, q);
    let w = world.lock().unwrap();
    let Some(team) = w.teams.iter().find(|t| t.slug == slug) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    // As GitHub does: members of child teams are listed too.
    let mut ids = team.members.clone();
    let mut frontier = vec![team.id];
    while let Some(parent) = frontier.pop() {
        for child in w.teams.iter().filter(|t| t.parent == Some(parent)) {
            ids.extend(child.members.iter().copied());
            frontier.push(child.id);
        }
    }
    ids.sort();
    ids.dedup();
    let items = ids
        .iter()
        .filter_map(|id| w.members.iter().find(|u| u.id == *id))
        .map(|u| json!({"login": u.login, "id": u.id}))
        .collect();
    paged(&path, items, &q, w.page_size)
}

fn repo_json(org: &str, r: &Repo) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "full_name": format!("{org}/{}", r.name),
        "private": r.visibility != "public",
        "visibility": r.visibility,
        "default_branch": "main",
        "html_url": format!("https://github.com/{org}/{}", r.name),
    })
}

async fn repos(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path(org): Path<String>,
    Query(q): Q,
) -> Response {
    let path = format!("/orgs/{org}/repos");
    enter!(world, headers, path, q);
    let w = world.lock().unwrap();
    let items = w.repos.iter().map(|r| repo_json(&w.org, r)).collect();
    paged(&path, items, &q, w.page_size)
}

fn find<'a>(w: &'a World, repo: &str) -> Option<&'a Repo> {
    w.repos.iter().find(|r| r.name == repo)
}

async fn collaborators(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/collaborators");
    enter!(world, headers, path, q);
    assert_eq!(q.get("affiliation").map(String::as_str), Some("direct"));
    let w = world.lock().unwrap();
    let Some(r) = find(&w, &repo) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let items = r
        .collaborators
        .iter()
        .filter_map(|(id, role)| w.members.iter().find(|u| u.id == *id).map(|u| (u, role)))
        .map(|(u, role)| {
            json!({"login": u.login, "id": u.id, "role_name": role,
                   "permissions": {"admin": *role == "admin", "push": *role == "write" || *role == "admin", "pull": true}})
        })
        .collect();
    paged(&path, items, &q, w.page_size)
}

async fn repo_teams(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/teams");
    enter!(world, headers, path, q);
    let w = world.lock().unwrap();
    let Some(r) = find(&w, &repo) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let items = r
        .teams
        .iter()
        .filter_map(|(id, perm)| w.teams.iter().find(|t| t.id == *id).map(|t| (t, perm)))
        .map(|(t, perm)| json!({"id": t.id, "slug": t.slug, "name": t.slug, "permission": perm}))
        .collect();
    paged(&path, items, &q, w.page_size)
}

async fn tree(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path((owner, repo, branch)): Path<(String, String, String)>,
    Query(q): Q,
) -> Response {
    enter!(
        world,
        headers,
        format!("/repos/{owner}/{repo}/git/trees/{branch}"),
        q
    );
    let mut w = world.lock().unwrap();
    let Some(r) = find(&w, &repo).cloned() else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let etag = format!("\"{}\"", r.tree_sha());
    if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        w.not_modified += 1;
        return (StatusCode::NOT_MODIFIED, [("etag", etag)]).into_response();
    }
    let tree: Vec<Value> = r
        .files
        .iter()
        .map(|(path, content)| json!({"path": path, "mode": "100644", "type": "blob", "sha": sha(content), "size": content.len()}))
        .collect();
    (
        [("etag", etag)],
        axum::Json(json!({"sha": r.tree_sha(), "tree": tree, "truncated": false})),
    )
        .into_response()
}

async fn blob(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path((owner, repo, blob)): Path<(String, String, String)>,
    Query(q): Q,
) -> Response {
    enter!(
        world,
        headers,
        format!("/repos/{owner}/{repo}/git/blobs/{blob}"),
        q
    );
    let w = world.lock().unwrap();
    let Some(r) = find(&w, &repo) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    match r.files.values().find(|c| sha(c) == blob) {
        Some(content) => {
            // GitHub wraps base64 at 60 characters.
            let encoded = base64::engine::general_purpose::STANDARD.encode(content);
            let wrapped: Vec<String> = encoded
                .as_bytes()
                .chunks(60)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            axum::Json(json!({"sha": blob, "size": content.len(), "content": wrapped.join("\n"), "encoding": "base64"})).into_response()
        }
        None => message(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn issues(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/issues");
    enter!(world, headers, path, q);
    let w = world.lock().unwrap();
    let Some(r) = find(&w, &repo) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let since = q
        .get("since")
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.timestamp());
    let mut list: Vec<&Issue> = r
        .issues
        .iter()
        .filter(|i| since.is_none_or(|s| i.updated >= s))
        .collect();
    list.sort_by_key(|i| i.updated);
    let items = list
        .iter()
        .map(|i| {
            let mut v = json!({
                "id": r.id * 1000 + i.number, "number": i.number, "title": i.title, "body": i.body,
                "state": "open", "html_url": format!("https://github.com/{}/{}/issues/{}", w.org, r.name, i.number),
                "updated_at": chrono::DateTime::from_timestamp(i.updated, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "user": {"login": "someone", "id": 9},
            });
            if i.pull_request {
                v["pull_request"] = json!({"url": "https://api.github.com/pulls/1"});
            }
            v
        })
        .collect();
    paged(&path, items, &q, w.page_size)
}

/// Now, as an issue's `updated`.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
