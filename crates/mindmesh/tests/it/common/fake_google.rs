//! A fake of Google's APIs on 127.0.0.1:0, following their documented wire format:
//! OAuth 2.0 token endpoint (authorization code, refresh token, JWT-bearer assertions
//! verified against the service account's key) and revocation; Admin SDK Directory API
//! (`users.list`, `groups.list`, `members.list`); Drive API v3 (`files.list`,
//! `permissions.list`, `files.get?alt=media`, `files.export`, `about.get`,
//! `drives.list`, `changes.getStartPageToken`, `changes.list`). Paging with
//! `nextPageToken`, Google's JSON error bodies, `Retry-After`. Faults can be scripted:
//! rate limits, hangs, oversize, malformed or looping answers, token expiry.

// Handlers answer `Err(Response)` early, as axum handlers do.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};

/// A Drive permission.
#[derive(Clone, Debug)]
pub struct Perm {
    pub kind: &'static str,
    pub email: String,
    pub domain: String,
    pub role: &'static str,
    pub discoverable: bool,
    pub deleted: bool,
}

impl Perm {
    pub fn user(email: &str, role: &'static str) -> Self {
        Perm {
            kind: "user",
            email: email.into(),
            domain: String::new(),
            role,
            discoverable: false,
            deleted: false,
        }
    }
    pub fn group(email: &str, role: &'static str) -> Self {
        Perm {
            kind: "group",
            ..Perm::user(email, role)
        }
    }
    pub fn domain(domain: &str, discoverable: bool) -> Self {
        Perm {
            kind: "domain",
            email: String::new(),
            domain: domain.into(),
            role: "reader",
            discoverable,
            deleted: false,
        }
    }
    pub fn anyone(discoverable: bool) -> Self {
        Perm {
            kind: "anyone",
            email: String::new(),
            domain: String::new(),
            role: "reader",
            discoverable,
            deleted: false,
        }
    }
}

/// A Drive file.
#[derive(Clone, Debug)]
pub struct File {
    pub id: String,
    pub name: String,
    pub mime_type: String,
    pub content: Vec<u8>,
    pub version: u64,
    pub owner: String,
    pub drive: Option<String>,
    pub perms: Vec<Perm>,
    pub trashed: bool,
}

// Re-exported for the tests that script faults.
#[allow(unused_imports)]
pub use super::fake_http::{Answer, Fault, Seen};

/// A directory group: (id, email, name, members as (email, "USER" | "GROUP")).
pub type Group = (String, String, String, Vec<(String, &'static str)>);

#[derive(Default)]
pub struct World {
    /// Directory users: (id, email, name, suspended).
    pub users: Vec<(String, String, String, bool)>,
    /// Groups: (id, email, name, members as (email, "USER" | "GROUP")).
    pub groups: Vec<Group>,
    /// Directory admins (may read the directory).
    pub admins: BTreeSet<String>,
    /// Shared drives: id → member emails.
    pub drives: BTreeMap<String, BTreeSet<String>>,
    pub files: BTreeMap<String, File>,
    /// The change log: (sequence, file id, shared drive, who could see the file before
    /// the change). A user's log holds the changes of files they see, and of files they
    /// saw before (`removed`: deleted, or their access lost), as Drive's does.
    pub changes: Vec<(u64, String, Option<String>, BTreeSet<String>)>,
    pub seq: u64,
    /// Largest page the fake answers, whatever the client asks.
    pub page_size: usize,
    /// Never list permissions inline (as for items Drive does not describe so).
    pub no_inline_permissions: bool,
    /// The user an authorization code or refresh token acts as.
    pub oauth_user: String,
    pub client_id: String,
    pub client_secret: String,
    /// Scopes the token endpoint says it granted.
    pub granted_scope: String,
    /// Access tokens → (user, still valid).
    pub tokens: HashMap<String, (String, bool)>,
    pub refresh_tokens: HashMap<String, String>,
    pub revoked: Vec<String>,
    /// Every successful token grant: (grant type, subject).
    pub grants: Vec<(String, String)>,
    /// Scopes asked for in service-account assertions.
    pub asserted_scopes: Vec<String>,
    /// The service account's public key (DER RSAPublicKey), to verify assertions.
    pub service_account_key: Option<Vec<u8>>,
    /// After this many authenticated requests, every access token stops working once.
    pub expire_tokens_after: Option<usize>,
    /// Lifetime of the access tokens the token endpoint grants, in seconds (0: Google's
    /// 3,599); a token past it is refused with 401, as Google does.
    pub token_lifetime_secs: u64,
    /// When each access token expires.
    pub token_expiry: HashMap<String, std::time::Instant>,
    pub authenticated: usize,
    /// A rate-limit storm: of every ten API calls, one is answered 429 with
    /// `Retry-After: 1` and one 403 `userRateLimitExceeded` (no `Retry-After`).
    pub storm: bool,
    /// The calls the storm throttled: (when, path, status).
    pub throttled: Vec<(std::time::Instant, String, u16)>,
    pub faults: Vec<Fault>,
    pub seen: Vec<Seen>,
    pub next_token: u64,
}

impl World {
    /// Appends a change of `file` to the log (seen by whoever sees it now).
    pub fn touch(&mut self, file: &str) {
        let before = self.viewers(file);
        self.record(file, before);
    }

    fn record(&mut self, file: &str, before: BTreeSet<String>) {
        self.seq += 1;
        let drive = self.files.get(file).and_then(|f| f.drive.clone());
        self.changes
            .push((self.seq, file.to_owned(), drive, before));
    }

    /// Everyone, in the directory or outside it, who can see `file` now.
    pub fn viewers(&self, file: &str) -> BTreeSet<String> {
        let Some(f) = self.files.get(file) else {
            return BTreeSet::new();
        };
        let mut people: BTreeSet<String> = self.users.iter().map(|u| u.1.clone()).collect();
        if !f.owner.is_empty() {
            people.insert(f.owner.clone());
        }
        for p in &f.perms {
            if p.kind == "user" {
                people.insert(p.email.clone());
            }
        }
        for (_, _, _, members) in &self.groups {
            for (m, kind) in members {
                if *kind == "USER" {
                    people.insert(m.clone());
                }
            }
        }
        people.into_iter().filter(|u| self.can_see(u, f)).collect()
    }

    /// Adds or replaces a file, recording the change.
    pub fn put(&mut self, mut file: File) {
        if let Some(old) = self.files.get(&file.id) {
            file.version = old.version + 1;
        }
        let id = file.id.clone();
        let before = self.viewers(&id);
        self.files.insert(id.clone(), file);
        self.record(&id, before);
    }

    /// Changes a file, recording the change (and a new version).
    pub fn edit(&mut self, id: &str, change: impl FnOnce(&mut File)) {
        let before = self.viewers(id);
        if let Some(f) = self.files.get_mut(id) {
            change(f);
            f.version += 1;
        }
        self.record(id, before);
    }

    /// Deletes a file for good, recording the change.
    pub fn delete(&mut self, id: &str) {
        let before = self.viewers(id);
        let drive = self.files.get(id).and_then(|f| f.drive.clone());
        self.files.remove(id);
        self.seq += 1;
        self.changes.push((self.seq, id.to_owned(), drive, before));
    }

    fn groups_of(&self, email: &str) -> BTreeSet<String> {
        // Transitively: groups whose members include the user or one of its groups.
        let mut out = BTreeSet::new();
        let mut frontier = vec![email.to_owned()];
        while let Some(member) = frontier.pop() {
            for (_, group, _, members) in &self.groups {
                if members.iter().any(|(m, _)| *m == member) && out.insert(group.clone()) {
                    frontier.push(group.clone());
                }
            }
        }
        out
    }

    fn can_see(&self, user: &str, f: &File) -> bool {
        self.can_see_in(user, None, f)
    }

    /// `can_see`, with the user's groups when already known (a listing computes them
    /// once, not once per file).
    fn can_see_in(&self, user: &str, groups: Option<&BTreeSet<String>>, f: &File) -> bool {
        if f.trashed {
            return false;
        }
        // Members of a shared drive see its files; a file of one can also be shared
        // with others, as any file can.
        if let Some(drive) = &f.drive
            && self.drives.get(drive).is_some_and(|m| m.contains(user))
        {
            return true;
        }
        let computed;
        let groups = match groups {
            Some(g) => g,
            None => {
                computed = self.groups_of(user);
                &computed
            }
        };
        self.shared_with(user, groups, f)
    }

    /// `user` owns `f` or it is shared with them (directly or through `groups`), shared
    /// drives aside.
    fn shared_with(&self, user: &str, groups: &BTreeSet<String>, f: &File) -> bool {
        if f.trashed {
            return false;
        }
        (!f.owner.is_empty() && f.owner == user)
            || f.perms.iter().any(|p| {
                !p.deleted
                    && ((p.kind == "user" && p.email == user)
                        || (p.kind == "group" && groups.contains(&p.email)))
            })
    }

    fn can_share(&self, user: &str, f: &File) -> bool {
        f.owner == user
            || f.perms.iter().any(|p| {
                p.kind == "user"
                    && p.email == user
                    && (p.role == "writer" || p.role == "owner" || p.role == "organizer")
            })
            || f.drive
                .as_ref()
                .is_some_and(|d| self.drives.get(d).is_some_and(|m| m.contains(user)))
    }

    /// Every permission of `f`, as `permissions.list` answers them.
    fn permissions_json(&self, f: &File) -> Vec<Value> {
        let mut all = Vec::new();
        // Items of shared drives have no owner.
        if !f.owner.is_empty() {
            all.push(json!({"kind": "drive#permission", "id": format!("p-{}", f.owner), "type": "user", "emailAddress": f.owner, "role": "owner"}));
        }
        // A shared drive's members hold inherited permissions on its files.
        if let Some(members) = f.drive.as_ref().and_then(|d| self.drives.get(d)) {
            for m in members {
                all.push(json!({"kind": "drive#permission", "id": format!("p-{m}"), "type": "user", "emailAddress": m, "role": "organizer"}));
            }
        }
        for (i, p) in f.perms.iter().enumerate() {
            let mut v = json!({"kind": "drive#permission", "id": format!("p{i}"), "type": p.kind, "role": p.role, "deleted": p.deleted});
            match p.kind {
                "user" | "group" => v["emailAddress"] = json!(p.email),
                "domain" => {
                    v["domain"] = json!(p.domain);
                    v["allowFileDiscovery"] = json!(p.discoverable);
                }
                _ => v["allowFileDiscovery"] = json!(p.discoverable),
            }
            all.push(v);
        }
        all
    }

    /// A file as `files.list` answers it. Its permissions are inline when asked for,
    /// as Drive does, only for files the user can share outside shared drives.
    fn file_json(&self, user: &str, f: &File, fields: &str) -> Value {
        let share = self.can_share(user, f);
        let mut v = self.file_core(user, f, share);
        if share
            && f.drive.is_none()
            && fields.contains("permissions(")
            && !self.no_inline_permissions
        {
            v["permissions"] = Value::Array(self.permissions_json(f));
        }
        v
    }

    fn file_core(&self, user: &str, f: &File, share: bool) -> Value {
        json!({
            "kind": "drive#file",
            "id": f.id,
            "name": f.name,
            "mimeType": f.mime_type,
            "version": f.version.to_string(),
            "modifiedTime": format!("2026-11-{:02}T10:00:00.000Z", (f.version % 28) + 1),
            "webViewLink": format!("https://docs.google.com/d/{}/view", f.id),
            "size": f.content.len().to_string(),
            "trashed": f.trashed,
            "driveId": f.drive,
            "ownedByMe": f.owner == user,
            "owners": if f.owner.is_empty() { json!([]) } else { json!([{"emailAddress": f.owner}]) },
            "capabilities": {"canEdit": share, "canShare": share},
        })
    }

    pub fn new_token(&mut self, user: &str) -> String {
        self.next_token += 1;
        let token = format!("ya29.fake-{}", self.next_token);
        self.tokens.insert(token.clone(), (user.to_owned(), true));
        token
    }
}

pub type Shared = Arc<Mutex<World>>;

/// The running fake.
pub struct FakeGoogle {
    pub addr: SocketAddr,
    pub world: Shared,
    shutdown: tokio_util::sync::CancellationToken,
}

impl FakeGoogle {
    pub async fn start(world: World) -> Self {
        let world: Shared = Arc::new(Mutex::new(world));
        let app = Router::new()
            .route("/token", post(token))
            .route("/revoke", post(revoke))
            .route("/admin/directory/v1/users", get(users))
            .route("/admin/directory/v1/groups", get(groups))
            .route("/admin/directory/v1/groups/{key}/members", get(members))
            .route("/drive/v3/about", get(about))
            .route("/drive/v3/files", get(files))
            .route("/drive/v3/files/{id}", get(file_media))
            .route("/drive/v3/files/{id}/export", get(export))
            .route("/drive/v3/files/{id}/permissions", get(permissions))
            .route("/drive/v3/drives", get(drives))
            .route("/drive/v3/changes/startPageToken", get(start_token))
            .route("/drive/v3/changes", get(changes))
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
        FakeGoogle {
            addr,
            world,
            shutdown,
        }
    }

    /// The connector settings that point every endpoint here.
    pub fn settings(&self) -> HashMap<String, String> {
        let base = format!("http://{}", self.addr);
        [
            ("drive_url", format!("{base}/drive/v3")),
            ("directory_url", format!("{base}/admin/directory/v1")),
            ("token_url", format!("{base}/token")),
            ("revoke_url", format!("{base}/revoke")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        f(&mut self.world.lock().unwrap())
    }

    /// Requests seen whose path ends with `suffix`.
    pub fn seen(&self, suffix: &str) -> Vec<Seen> {
        self.with(|w| {
            w.seen
                .iter()
                .filter(|s| s.path.ends_with(suffix))
                .cloned()
                .collect()
        })
    }
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn error(status: StatusCode, reason: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "error": {
                "code": status.as_u16(),
                "message": message,
                "errors": [{"domain": "global", "reason": reason, "message": message}],
            }
        })),
    )
        .into_response()
}

/// Authenticates the request and applies scripted faults; the user it acts as, or the
/// answer to send instead.
async fn enter(
    world: &Shared,
    headers: &HeaderMap,
    path: &str,
    query: &HashMap<String, String>,
) -> Result<String, Response> {
    let (user, fault) = {
        let mut w = world.lock().unwrap();
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        let expired = w
            .token_expiry
            .get(&token)
            .is_some_and(|at| *at <= std::time::Instant::now());
        let user = match w.tokens.get(&token) {
            Some((user, true)) if !expired => user.clone(),
            _ => {
                return Err(error(
                    StatusCode::UNAUTHORIZED,
                    "authError",
                    "Request had invalid authentication credentials.",
                ));
            }
        };
        w.authenticated += 1;
        if w.expire_tokens_after == Some(w.authenticated) {
            for (_, valid) in w.tokens.values_mut() {
                *valid = false;
            }
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "authError",
                "Request had invalid authentication credentials.",
            ));
        }
        let full = super::fake_http::request_key(path, query);
        let at = std::time::Instant::now();
        w.seen.push(Seen {
            path: path.to_owned(),
            query: query.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            user: user.clone(),
            at,
        });
        let storm = match w.authenticated % 10 {
            3 if w.storm => Some((
                429,
                Answer::Status(
                    429,
                    json!({"error": {"code": 429, "message": "Too Many Requests", "errors": [{"domain": "usageLimits", "reason": "rateLimitExceeded", "message": "Too Many Requests"}]}}),
                    Some("1"),
                ),
            )),
            7 if w.storm => Some((
                403,
                Answer::Status(
                    403,
                    json!({"error": {"code": 403, "message": "User Rate Limit Exceeded", "errors": [{"domain": "usageLimits", "reason": "userRateLimitExceeded", "message": "User Rate Limit Exceeded"}]}}),
                    None,
                ),
            )),
            _ => None,
        };
        match storm {
            Some((status, answer)) => {
                w.throttled.push((at, path.to_owned(), status));
                (user, Some(answer))
            }
            None => (user, super::fake_http::take_fault(&mut w.faults, &full)),
        }
    };
    match fault {
        None => Ok(user),
        Some(answer) => Err(super::fake_http::respond(answer).await),
    }
}

type Q = Query<HashMap<String, String>>;

/// A page of `items` from `pageToken` (an offset), at most the smaller of the asked
/// and the fake's page size.
fn paged<T: Clone>(
    items: &[T],
    query: &HashMap<String, String>,
    max_key: &str,
    world_max: usize,
) -> (Vec<T>, Option<String>) {
    let start: usize = query
        .get("pageToken")
        .and_then(|t| t.strip_prefix("offset-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let asked: usize = query
        .get(max_key)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let size = asked.min(world_max.max(1));
    let end = (start + size).min(items.len());
    let page = items.get(start..end).unwrap_or_default().to_vec();
    let next = (end < items.len()).then(|| format!("offset-{end}"));
    (page, next)
}

async fn token(State(world): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut w = world.lock().unwrap();
    let bad = |reason: &str| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": reason, "error_description": "Bad Request"})),
        )
            .into_response()
    };
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    let client_ok = form.get("client_id") == Some(&w.client_id)
        && form.get("client_secret") == Some(&w.client_secret);
    let user = match grant.as_str() {
        "authorization_code" => {
            if !client_ok {
                return bad("invalid_client");
            }
            if form.get("code").map(String::as_str) != Some("good-code") {
                return bad("invalid_grant");
            }
            w.oauth_user.clone()
        }
        "refresh_token" => {
            if !client_ok {
                return bad("invalid_client");
            }
            match form
                .get("refresh_token")
                .and_then(|t| w.refresh_tokens.get(t))
            {
                Some(user) => user.clone(),
                None => return bad("invalid_grant"),
            }
        }
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            let assertion = form.get("assertion").cloned().unwrap_or_default();
            let parts: Vec<&str> = assertion.split('.').collect();
            let Some(key) = w.service_account_key.clone() else {
                return bad("unauthorized_client");
            };
            if parts.len() != 3 {
                return bad("invalid_grant");
            }
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let signature = b64.decode(parts[2]).unwrap_or_default();
            let message = format!("{}.{}", parts[0], parts[1]);
            let verified = ring::signature::UnparsedPublicKey::new(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                &key,
            )
            .verify(message.as_bytes(), &signature)
            .is_ok();
            if !verified {
                return bad("invalid_grant");
            }
            let claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap_or_default())
                .unwrap_or_default();
            let scope = claims["scope"].as_str().unwrap_or_default().to_owned();
            w.asserted_scopes.push(scope);
            claims["sub"].as_str().unwrap_or_default().to_owned()
        }
        _ => return bad("unsupported_grant_type"),
    };
    w.grants.push((grant.clone(), user.clone()));
    let access = w.new_token(&user);
    let lifetime = match w.token_lifetime_secs {
        0 => 3599,
        secs => secs,
    };
    w.token_expiry.insert(
        access.clone(),
        std::time::Instant::now() + std::time::Duration::from_secs(lifetime),
    );
    let mut body = json!({
        "access_token": access,
        "expires_in": lifetime,
        "token_type": "Bearer",
        "scope": w.granted_scope,
    });
    if grant == "authorization_code" {
        let refresh = format!("1//refresh-{}", w.grants.len());
        w.refresh_tokens.insert(refresh.clone(), user);
        body["refresh_token"] = json!(refresh);
    }
    axum::Json(body).into_response()
}

async fn revoke(
    State(world): State<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut w = world.lock().unwrap();
    let token = form.get("token").cloned().unwrap_or_default();
    w.refresh_tokens.remove(&token);
    w.revoked.push(token);
    StatusCode::OK.into_response()
}

fn require_admin(world: &Shared, user: &str) -> Result<(), Response> {
    if world.lock().unwrap().admins.contains(user) {
        Ok(())
    } else {
        Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Not Authorized to access this resource/api",
        ))
    }
}

async fn users(State(world): State<Shared>, headers: HeaderMap, Query(q): Q) -> Response {
    let user = match enter(&world, &headers, "/admin/directory/v1/users", &q).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(r) = require_admin(&world, &user) {
        return r;
    }
    let w = world.lock().unwrap();
    let all: Vec<Value> = w
        .users
        .iter()
        .map(|(id, email, name, suspended)| {
            json!({"kind": "admin#directory#user", "id": id, "primaryEmail": email,
                   "name": {"fullName": name}, "suspended": suspended})
        })
        .collect();
    let (page, next) = paged(&all, &q, "maxResults", w.page_size);
    axum::Json(json!({"kind": "admin#directory#users", "users": page, "nextPageToken": next}))
        .into_response()
}

async fn groups(State(world): State<Shared>, headers: HeaderMap, Query(q): Q) -> Response {
    let user = match enter(&world, &headers, "/admin/directory/v1/groups", &q).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(r) = require_admin(&world, &user) {
        return r;
    }
    let w = world.lock().unwrap();
    let all: Vec<Value> = w
        .groups
        .iter()
        .map(|(id, email, name, _)| json!({"kind": "admin#directory#group", "id": id, "email": email, "name": name}))
        .collect();
    let (page, next) = paged(&all, &q, "maxResults", w.page_size);
    axum::Json(json!({"kind": "admin#directory#groups", "groups": page, "nextPageToken": next}))
        .into_response()
}

async fn members(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Q,
) -> Response {
    let user = match enter(
        &world,
        &headers,
        &format!("/admin/directory/v1/groups/{key}/members"),
        &q,
    )
    .await
    {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(r) = require_admin(&world, &user) {
        return r;
    }
    let w = world.lock().unwrap();
    let Some((_, _, _, members)) = w
        .groups
        .iter()
        .find(|(id, email, _, _)| *id == key || *email == key)
    else {
        return error(
            StatusCode::NOT_FOUND,
            "notFound",
            "Resource Not Found: groupKey",
        );
    };
    let all: Vec<Value> = members
        .iter()
        .map(|(email, kind)| json!({"kind": "admin#directory#member", "email": email, "type": kind, "role": "MEMBER", "status": "ACTIVE"}))
        .collect();
    let (page, next) = paged(&all, &q, "maxResults", w.page_size);
    axum::Json(json!({"kind": "admin#directory#members", "members": page, "nextPageToken": next}))
        .into_response()
}

async fn about(State(world): State<Shared>, headers: HeaderMap, Query(q): Q) -> Response {
    match enter(&world, &headers, "/drive/v3/about", &q).await {
        Ok(user) => axum::Json(json!({"user": {"emailAddress": user}})).into_response(),
        Err(r) => r,
    }
}

async fn files(State(world): State<Shared>, headers: HeaderMap, Query(q): Q) -> Response {
    let user = match enter(&world, &headers, "/drive/v3/files", &q).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let w = world.lock().unwrap();
    let query = q.get("q").cloned().unwrap_or_default();
    assert!(
        query.contains("trashed = false"),
        "files.list without trashed = false: {query}"
    );
    assert_eq!(q.get("supportsAllDrives").map(String::as_str), Some("true"));
    assert_eq!(
        q.get("includeItemsFromAllDrives").map(String::as_str),
        Some("true")
    );
    let groups = w.groups_of(&user);
    // `user`: My Drive and what is shared with the user; `drive`: one shared drive's
    // files, for its members; `allDrives`: both.
    let corpora = q.get("corpora").map(String::as_str).unwrap_or("user");
    let drive = q.get("driveId").cloned();
    if corpora == "drive" && drive.is_none() {
        return error(StatusCode::BAD_REQUEST, "invalid", "Invalid Value: driveId");
    }
    let member = |d: &Option<String>| {
        d.as_ref()
            .is_some_and(|d| w.drives.get(d).is_some_and(|m| m.contains(&user)))
    };
    let visible: Vec<&File> = w
        .files
        .values()
        .filter(|f| match corpora {
            "drive" => f.drive == drive && member(&f.drive) && !f.trashed,
            "allDrives" => w.can_see_in(&user, Some(&groups), f),
            _ => w.shared_with(&user, &groups, f),
        })
        .filter(|f| {
            !(query.contains("mimeType != 'application/vnd.google-apps.folder'")
                && f.mime_type == "application/vnd.google-apps.folder")
        })
        .collect();
    let (page, next) = paged(&visible, &q, "pageSize", w.page_size);
    let fields = q.get("fields").map(String::as_str).unwrap_or_default();
    let page: Vec<Value> = page.iter().map(|f| w.file_json(&user, f, fields)).collect();
    axum::Json(json!({"kind": "drive#fileList", "files": page, "nextPageToken": next}))
        .into_response()
}

async fn file_media(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
) -> Response {
    let user = match enter(&world, &headers, &format!("/drive/v3/files/{id}"), &q).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let w = world.lock().unwrap();
    match w.files.get(&id) {
        Some(f) if w.can_see(&user, f) => {
            if q.get("alt").map(String::as_str) != Some("media") {
                let fields = q.get("fields").map(String::as_str).unwrap_or_default();
                return axum::Json(w.file_json(&user, f, fields)).into_response();
            }
            if f.mime_type.starts_with("application/vnd.google-apps.") {
                return error(
                    StatusCode::FORBIDDEN,
                    "fileNotDownloadable",
                    "Only files with binary content can be downloaded. Use Export with Docs Editors files.",
                );
            }
            (StatusCode::OK, f.content.clone()).into_response()
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "notFound",
            &format!("File not found: {id}."),
        ),
    }
}

async fn export(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
) -> Response {
    let user = match enter(
        &world,
        &headers,
        &format!("/drive/v3/files/{id}/export"),
        &q,
    )
    .await
    {
        Ok(u) => u,
        Err(r) => return r,
    };
    let w = world.lock().unwrap();
    match w.files.get(&id) {
        Some(f) if w.can_see(&user, f) => {
            if !f.mime_type.starts_with("application/vnd.google-apps.") {
                return error(
                    StatusCode::FORBIDDEN,
                    "fileNotExportable",
                    "Export only supports Docs Editors files.",
                );
            }
            (StatusCode::OK, f.content.clone()).into_response()
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "notFound",
            &format!("File not found: {id}."),
        ),
    }
}

async fn permissions(
    State(world): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
) -> Response {
    let user = match enter(
        &world,
        &headers,
        &format!("/drive/v3/files/{id}/permissions"),
        &q,
    )
    .await
    {
        Ok(u) => u,
        Err(r) => return r,
    };
    let w = world.lock().unwrap();
    let Some(f) = w.files.get(&id).filter(|f| w.can_see(&user, f)) else {
        return error(
            StatusCode::NOT_FOUND,
            "notFound",
            &format!("File not found: {id}."),
        );
    };
    if !w.can_share(&user, f) {
        return error(
            StatusCode::FORBIDDEN,
            "insufficientFilePermissions",
            "The user does not have sufficient permissions for this file.",
        );
    }
    let all = w.permissions_json(f);
    let (page, next) = paged(&all, &q, "pageSize", w.page_size);
    axum::Json(json!({"kind": "drive#permissionList", "permissions": page, "nextPageToken": next}))
        .into_response()
}

async fn drives(State(world): State<Shared>, headers: HeaderMap, Query(q): Q) -> Response {
    let user = match enter(&world, &headers, "/drive/v3/drives", &q).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let w = world.lock().unwrap();
    let mine: Vec<Value> = w
        .drives
        .iter()
        .filter(|(_, m)| m.contains(&user))
        .map(|(id, _)| json!({"kind": "drive#drive", "id": id, "name": id}))
        .collect();
    let (page, next) = paged(&mine, &q, "pageSize", w.page_size);
    axum::Json(json!({"kind": "drive#driveList", "drives": page, "nextPageToken": next}))
        .into_response()
}

async fn start_token(State(world): State<Shared>, headers: HeaderMap, Query(q): Q) -> Response {
    if let Err(r) = enter(&world, &headers, "/drive/v3/changes/startPageToken", &q).await {
        return r;
    }
    let w = world.lock().unwrap();
    axum::Json(json!({"kind": "drive#startPageToken", "startPageToken": format!("{}", w.seq + 1)}))
        .into_response()
}

async fn changes(State(world): State<Shared>, headers: HeaderMap, Query(q): Q) -> Response {
    let user = match enter(&world, &headers, "/drive/v3/changes", &q).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let w = world.lock().unwrap();
    let Some(from) = q.get("pageToken").and_then(|t| t.parse::<u64>().ok()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "Invalid Value: pageToken",
        );
    };
    let drive = q.get("driveId").cloned();
    let size = q
        .get("pageSize")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(100)
        .min(w.page_size.max(1));
    let log: Vec<_> = w
        .changes
        .iter()
        .filter(|(seq, _, d, _)| *seq >= from && *d == drive)
        .collect();
    let page = &log[..log.len().min(size)];
    let fields = q.get("fields").map(String::as_str).unwrap_or_default();
    let changes: Vec<Value> = page
        .iter()
        .filter_map(|(_, id, _, before)| {
            // A shared drive's log is its members'; a user's own log holds what they see
            // or saw before the change.
            let saw = drive.is_some() || before.contains(&user);
            match w.files.get(id) {
                Some(f) if w.can_see(&user, f) || (f.trashed && saw) => Some(json!({"kind": "drive#change", "changeType": "file", "fileId": id, "removed": false, "file": w.file_json(&user, f, fields)})),
                _ if saw => Some(json!({"kind": "drive#change", "changeType": "file", "fileId": id, "removed": true})),
                _ => None,
            }
        })
        .collect();
    let mut body = json!({"kind": "drive#changeList", "changes": changes});
    if log.len() > size {
        body["nextPageToken"] = json!(format!("{}", page.last().map(|c| c.0 + 1).unwrap_or(from)));
    } else {
        body["newStartPageToken"] = json!(format!("{}", w.seq + 1));
    }
    axum::Json(body).into_response()
}

/// A Google-native document.
pub fn doc(id: &str, name: &str, owner: &str, text: &str, perms: Vec<Perm>) -> File {
    File {
        id: id.into(),
        name: name.into(),
        mime_type: "application/vnd.google-apps.document".into(),
        content: text.as_bytes().to_vec(),
        version: 1,
        owner: owner.into(),
        drive: None,
        perms,
        trashed: false,
    }
}

/// A binary (or plain) file.
pub fn blob(id: &str, name: &str, owner: &str, content: &[u8], perms: Vec<Perm>) -> File {
    File {
        mime_type: "text/plain".into(),
        content: content.to_vec(),
        ..doc(id, name, owner, "", perms)
    }
}

/// The test service account: its key as Google hands it out (PEM in JSON) and its
/// public key (DER), which the fake verifies assertions with.
pub fn service_account() -> (serde_json::Value, Vec<u8>) {
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/fixtures/service-account-test-key.pem"
    ))
    .unwrap();
    let der = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>(),
    )
    .unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    let public = ring::signature::KeyPair::public_key(&pair)
        .as_ref()
        .to_vec();
    let key = json!({
        "type": "service_account",
        "client_email": "mindmesh@acme-project.iam.gserviceaccount.com",
        "private_key": pem,
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    (key, public)
}

/// The shape of a generated company (see [`company`]).
#[derive(Clone, Copy, Debug)]
pub struct Company {
    /// Directory users (the first is the directory admin).
    pub users: usize,
    /// People outside the directory that files are shared with (half of them also
    /// members of a directory group).
    pub outsiders: usize,
    /// Directory groups, nested as a tree (group i inside group (i-1)/2).
    pub groups: usize,
    /// Files, a tenth of them in two shared drives.
    pub files: usize,
    /// Bytes of each file's text.
    pub content_bytes: usize,
    /// Varies the sharing.
    pub seed: u64,
}

/// The company's domain.
pub const COMPANY_DOMAIN: &str = "corp.example";

/// A directory user of [`company`].
pub fn company_user(i: usize) -> String {
    format!("u{i:03}@{COMPANY_DOMAIN}")
}

/// A person outside the directory of [`company`].
pub fn company_outsider(i: usize) -> String {
    if i.is_multiple_of(2) {
        format!("ext{i}@partner.example")
    } else {
        format!("ext{i}@gmail.com")
    }
}

/// A group of [`company`].
pub fn company_group(i: usize) -> String {
    format!("team{i:02}@{COMPANY_DOMAIN}")
}

/// A whole company in Drive, its sharing drawn from `seed`: files owned by directory
/// users and shared with users, outside people, nested groups, the domain and anyone
/// (discoverable or by link only); shared drives; a few Google Forms (no text export)
/// and folders. Titles are the file ids, so that readable sets compare with
/// [`World::may_read`].
pub fn company(shape: Company) -> World {
    let mut w = World {
        page_size: 1000,
        oauth_user: company_user(0),
        ..World::default()
    };
    let mut state = shape.seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| -> usize {
        // splitmix64: enough to vary the sharing, the same for every run of a seed.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n.max(1) as u64) as usize
    };
    for i in 0..shape.users {
        w.users.push((
            (1000 + i).to_string(),
            company_user(i),
            format!("User {i}"),
            false,
        ));
    }
    w.admins.insert(company_user(0));
    for g in 0..shape.groups {
        let mut members: Vec<(String, &'static str)> = (0..shape.users)
            .filter(|u| u % shape.groups == g)
            .map(|u| (company_user(u), "USER"))
            .collect();
        members.extend(
            (1..shape.groups)
                .filter(|child| (child - 1) / 2 == g)
                .map(|child| (company_group(child), "GROUP")),
        );
        if g < shape.outsiders / 2 {
            members.push((company_outsider(2 * g + 1), "USER"));
        }
        w.groups.push((
            format!("gid{g}"),
            company_group(g),
            format!("Team {g}"),
            members,
        ));
    }
    for d in 0..2 {
        let members: BTreeSet<String> = (0..shape.users)
            .filter(|u| u % 3 == d)
            .map(company_user)
            .collect();
        w.drives.insert(format!("drive-{d}"), members);
    }
    let body = "lorem ipsum dolor sit amet ".repeat(shape.content_bytes / 27 + 1);
    for i in 0..shape.files {
        let id = format!("cf-{i:05}");
        let owner = company_user(next(shape.users));
        let mut perms = Vec::new();
        for _ in 0..next(3) {
            let role = ["reader", "commenter", "writer"][next(3)];
            perms.push(Perm::user(&company_user(next(shape.users)), role));
        }
        if shape.outsiders > 0 && next(8) == 0 {
            perms.push(Perm::user(
                &company_outsider(next(shape.outsiders)),
                "reader",
            ));
        }
        if next(3) == 0 {
            perms.push(Perm::group(&company_group(next(shape.groups)), "reader"));
        }
        match next(20) {
            0 => perms.push(Perm::domain(COMPANY_DOMAIN, true)),
            1 => perms.push(Perm::domain(COMPANY_DOMAIN, false)),
            2 => perms.push(Perm::anyone(true)),
            3 => perms.push(Perm::anyone(false)),
            _ => {}
        }
        let text = format!(
            "{id} {}",
            &body[..shape.content_bytes.saturating_sub(id.len() + 1)]
        );
        let mut file = doc(&id, &id, &owner, &text, perms);
        match next(40) {
            0 => file.mime_type = "application/vnd.google-apps.form".into(),
            1 => file.mime_type = "application/vnd.google-apps.folder".into(),
            2..=5 => {
                file.drive = Some(format!("drive-{}", next(2)));
                file.owner = String::new();
                file.perms.retain(|p| p.kind == "user" || p.kind == "group");
            }
            _ => {}
        }
        w.put(file);
    }
    w
}

impl World {
    /// The ids of the files `person` may read, as Drive decides and Mindmesh must
    /// reproduce: not trashed, with a text export; owned, in one of their shared drives,
    /// or shared with them directly, through a group (nested), their domain or anyone —
    /// domain and anyone only when discoverable (link-only sharing reaches nobody).
    pub fn may_read(&self, person: &str) -> BTreeSet<String> {
        let groups = self.groups_of(person);
        let domain = person.rsplit('@').next().unwrap_or_default();
        self.files
            .values()
            .filter(|f| !f.trashed)
            .filter(|f| {
                f.mime_type != "application/vnd.google-apps.form"
                    && f.mime_type != "application/vnd.google-apps.folder"
            })
            .filter(|f| {
                self.can_see_in(person, Some(&groups), f)
                    || f.perms.iter().any(|p| {
                        !p.deleted
                            && p.discoverable
                            && (p.kind == "anyone" || (p.kind == "domain" && p.domain == domain))
                    })
            })
            .map(|f| f.name.clone())
            .collect()
    }
}
