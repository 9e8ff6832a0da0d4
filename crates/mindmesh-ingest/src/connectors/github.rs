//! GitHub (REST API v3) for one organisation.
//!
//! - **Principals**: the organisation's members (`/orgs/{org}/members`, each user's
//!   public email from `/users/{login}`: that is what links them to an account, P05),
//!   its teams with their parents (`/orgs/{org}/teams`; a child team is a member of its
//!   parent) and each team's members, and one group, `org:<org>`, of every member (what
//!   internal repositories and the organisation's base permission grant to). Users and
//!   teams are named by their numeric ids, which survive renames.
//! - **Grants per repository**: public → anyone; internal → `org:<org>`; the
//!   organisation's base permission → `org:<org>`; direct collaborators
//!   (`/collaborators?affiliation=direct`) and teams (`/teams`) with their permission.
//! - **Documents**: README and Markdown files of the default branch (`git/trees`
//!   recursive, content from `git/blobs`), and issues (pull requests are not issues
//!   here). Every sync lists every repository again (GitHub has no change log), but
//!   cheaply: the tree is asked for with its `ETag` (`If-None-Match`; a 304 means every
//!   file of the repository is as before) and issues with `since` the last sync — as
//!   long as the repository's grants did not change, otherwise everything of it is sent
//!   again with the new grants. A repository gone or no longer visible is removed.
//! - **Tokens**: a GitHub App (installation or user-to-server) token or a fine-grained
//!   personal access token with read-only permissions; an authorization code is
//!   exchanged at `oauth_url`, and a grant with a write scope is refused (P03). On
//!   disconnect the token is revoked (`DELETE /applications/{client_id}/token`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Utc};
use mindmesh_kit::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::connector::{
    Access, Connector, ConnectorInfo, Content, Credentials, Grantee, Page, Principals,
    SourceDocument, SourceGrant, SourceGroup, SourceMembership, SourceUser,
};
use crate::connectors::Grant;
use crate::http::{Answer, Auth, Call, Http, endpoint, setting_url};
use crate::oauth::{self, CredentialSink, Renewal, TokenSource};

/// The read-only permissions the connector's GitHub App asks for (P03).
pub const SCOPES: &[&str] = &[
    "metadata:read",
    "contents:read",
    "issues:read",
    "members:read",
];

/// What the connector is.
pub const INFO: ConnectorInfo = ConnectorInfo {
    kind: "github",
    display_name: "GitHub",
    scopes: SCOPES,
    collects: &[
        "README and Markdown files of each repository's default branch",
        "issues (title, body, link)",
        "who can read each repository (collaborators, teams, organisation members)",
        "organisation members (login, name, public email), teams and team memberships",
    ],
    setting_keys: &["org", "api_url", "oauth_url", "client_id", "client_secret"],
    secret_setting_keys: &["client_secret"],
    notes: &[
        "members are linked to Mindmesh accounts by their public GitHub email; a member \
         without one reads only what is public or reached through the organisation",
    ],
};

const API_URL: &str = "https://api.github.com";
const OAUTH_URL: &str = "https://github.com";
/// Items per page of a list (GitHub's maximum).
const PER_PAGE: &str = "100";
/// Pages of one list before it is taken for a loop.
const MAX_PAGES: u32 = 10_000;
/// Largest Markdown file imported (larger ones are skipped).
const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;

fn org(settings: &BTreeMap<String, String>) -> Result<String> {
    let org = settings.get("org").map(String::as_str).unwrap_or_default();
    if org.is_empty()
        || org.len() > 100
        || !org
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::invalid(
            "settings.org",
            "must be the organisation's login (letters, digits, -)",
        ));
    }
    Ok(org.to_owned())
}

/// Checks the settings and obtains the token.
pub async fn connect(
    http: &Http,
    settings: &BTreeMap<String, String>,
    credentials: &mut Credentials,
    grant: Grant,
) -> Result<()> {
    org(settings)?;
    setting_url(settings, "settings.api_url", API_URL)?;
    let oauth_url = setting_url(settings, "settings.oauth_url", OAUTH_URL)?;
    if !grant.authorization_code.is_empty() {
        let (Some(client_id), Some(client_secret)) = (
            settings.get("client_id"),
            credentials.secrets.get("client_secret"),
        ) else {
            return Err(Error::invalid(
                "settings.client_id",
                "client_id and client_secret are required to exchange an authorization code",
            ));
        };
        let token = oauth::exchange_code(
            http,
            "github",
            &endpoint(&oauth_url, &["login", "oauth", "access_token"]),
            client_id,
            client_secret,
            &grant.authorization_code,
            &grant.redirect_uri,
        )
        .await?;
        if let Some(scope) = &token.scope {
            check_granted_scopes(scope)?;
        }
        credentials.access_token = token.access_token;
        credentials.refresh_token = token.refresh_token.unwrap_or_default();
        credentials.expires_at = token.expires_at;
        credentials.obtained_at = Some(chrono::Utc::now());
        return Ok(());
    }
    if grant.access_token.is_empty() {
        return Err(Error::invalid(
            "access_token",
            "set access_token (a GitHub App or read-only fine-grained token) or authorization_code",
        ));
    }
    credentials.access_token = grant.access_token;
    credentials.refresh_token = grant.refresh_token;
    Ok(())
}

/// P03: classic OAuth scopes that write (`repo`, `admin:org`, …) are refused; GitHub App
/// tokens carry no scopes, and `read:` scopes read.
fn check_granted_scopes(granted: &str) -> Result<()> {
    for scope in granted
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !scope.starts_with("read:") {
            return Err(Error::invalid(
                "authorization_code",
                format!(
                    "the authorization grants the scope {scope}, which is not read-only; \
                     install the GitHub App with read-only permissions instead"
                ),
            ));
        }
    }
    Ok(())
}

/// A connected GitHub organisation.
pub struct GitHub {
    http: Http,
    api: reqwest::Url,
    org: String,
    client: Option<(String, String)>,
    tokens: Arc<TokenSource>,
    /// The grants of the repository being read, by its id: read once for its files and
    /// all its pages of issues (a connector serves one sync).
    repo_grants: tokio::sync::Mutex<Option<(u64, Vec<SourceGrant>)>>,
}

/// Opens the connector of an integration.
pub fn open(
    http: &Http,
    settings: &BTreeMap<String, String>,
    credentials: Credentials,
    sink: Arc<dyn CredentialSink>,
) -> Result<GitHub> {
    let api = setting_url(settings, "settings.api_url", API_URL)?;
    let oauth = setting_url(settings, "settings.oauth_url", OAUTH_URL)?;
    let client = match (
        settings.get("client_id"),
        credentials.secrets.get("client_secret"),
    ) {
        (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
        _ => None,
    };
    let renewal = match (&client, credentials.refresh_token.is_empty()) {
        (Some((id, secret)), false) => Renewal::RefreshToken {
            token_url: endpoint(&oauth, &["login", "oauth", "access_token"]),
            client_id: id.clone(),
            client_secret: secret.clone(),
        },
        _ => Renewal::None,
    };
    Ok(GitHub {
        http: http.clone(),
        org: org(settings)?,
        tokens: Arc::new(TokenSource::new("github", credentials, renewal, sink)),
        api,
        client,
        repo_grants: tokio::sync::Mutex::new(None),
    })
}

// --- Wire format (only the fields Mindmesh reads) ---

#[derive(Deserialize)]
struct Member {
    id: u64,
    login: String,
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Team {
    id: u64,
    slug: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    parent: Option<TeamRef>,
    #[serde(default)]
    permission: String,
}

#[derive(Deserialize)]
struct TeamRef {
    id: u64,
}

#[derive(Deserialize)]
struct Org {
    #[serde(default)]
    default_repository_permission: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
struct Repo {
    id: u64,
    full_name: String,
    #[serde(default)]
    private: bool,
    #[serde(default)]
    visibility: Option<String>,
    #[serde(default)]
    default_branch: String,
    #[serde(default)]
    html_url: String,
}

#[derive(Deserialize)]
struct Collaborator {
    id: u64,
    #[serde(default)]
    permissions: Option<RepoPermissions>,
    #[serde(default)]
    role_name: String,
}

#[derive(Deserialize)]
struct RepoPermissions {
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    push: bool,
}

#[derive(Deserialize)]
struct Tree {
    #[serde(default)]
    tree: Vec<TreeEntry>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Deserialize)]
struct TreeEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    sha: String,
    #[serde(default)]
    size: Option<u64>,
}

#[derive(Deserialize)]
struct Blob {
    content: String,
    #[serde(default)]
    encoding: String,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    html_url: String,
    updated_at: DateTime<Utc>,
    #[serde(default)]
    user: Option<IssueUser>,
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct IssueUser {
    id: u64,
}

// --- The cursor ---

/// What is remembered of a repository between syncs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct RepoState {
    /// The default branch tree's `ETag`.
    tree_etag: String,
    /// A fingerprint of the repository's grants when its documents were last sent.
    grants: String,
    /// Issues changed since this time are read next time.
    issues_since: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Cursor {
    /// The repositories of the listing in progress (empty between syncs).
    #[serde(default)]
    repos: Vec<Repo>,
    /// The repository being read.
    #[serde(default)]
    next: usize,
    /// 0: its files; n ≥ 1: page n of its issues.
    #[serde(default)]
    issues_page: u32,
    /// When the listing started.
    #[serde(default)]
    started_at: Option<DateTime<Utc>>,
    /// The organisation's base permission, read when the listing started.
    #[serde(default)]
    base_permission: String,
    /// Per repository id.
    #[serde(default)]
    state: BTreeMap<String, RepoState>,
}

impl Cursor {
    fn encode(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|_| Error::Internal("cursor does not encode".into()))
    }
}

/// What `content` needs.
#[derive(Serialize, Deserialize)]
enum ContentRef {
    Blob { repo: String, sha: String },
    Issue { body: String },
}

impl GitHub {
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> reqwest::Url {
        let mut url = endpoint(&self.api, segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    fn call(&self, name: &str, url: reqwest::Url) -> Call {
        Call::get(format!("github {name}"), url)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
    }

    async fn get(&self, call: Call) -> Result<Answer> {
        self.http.send(&call, Auth::Bearer(&self.tokens)).await
    }

    /// Every page of a list (`page=1, 2, …` while the `Link` header has `rel="next"`).
    async fn all<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let page = page.to_string();
            let mut q = query.to_vec();
            q.push(("per_page", PER_PAGE));
            q.push(("page", &page));
            let answer = self.get(self.call(name, self.url(segments, &q))).await?;
            let items: Vec<T> = answer.json()?;
            let more = has_next(&answer);
            if items.is_empty() || !more {
                out.extend(items);
                return Ok(out);
            }
            out.extend(items);
        }
        Err(Error::Unavailable(format!(
            "github {name}: more than {MAX_PAGES} pages"
        )))
    }

    /// The grants of `repo`, read from GitHub the first time this sync asks for them.
    async fn grants_of(&self, repo: &Repo, base_permission: &str) -> Result<Vec<SourceGrant>> {
        let mut cached = self.repo_grants.lock().await;
        if let Some((id, grants)) = cached.as_ref()
            && *id == repo.id
        {
            return Ok(grants.clone());
        }
        let grants = self.grants(repo, base_permission).await?;
        *cached = Some((repo.id, grants.clone()));
        Ok(grants)
    }

    /// The grants of a repository.
    async fn grants(&self, repo: &Repo, base_permission: &str) -> Result<Vec<SourceGrant>> {
        let org_group = format!("org:{}", self.org);
        let mut grants = Vec::new();
        match repo.visibility.as_deref() {
            Some("public") => grants.push(SourceGrant {
                grantee: Grantee::Anyone,
                access: Access::Reader,
            }),
            None if !repo.private => grants.push(SourceGrant {
                grantee: Grantee::Anyone,
                access: Access::Reader,
            }),
            Some("internal") => grants.push(SourceGrant {
                grantee: Grantee::Group(org_group.clone()),
                access: Access::Reader,
            }),
            _ => {}
        }
        if let Some(access) = role_access(base_permission) {
            grants.push(SourceGrant {
                grantee: Grantee::Group(org_group),
                access,
            });
        }
        let (owner, name) = repo
            .full_name
            .split_once('/')
            .ok_or_else(|| Error::Unavailable("github repos: a full_name without owner".into()))?;
        let collaborators: Vec<Collaborator> = self
            .all(
                "collaborators",
                &["repos", owner, name, "collaborators"],
                &[("affiliation", "direct")],
            )
            .await?;
        for c in collaborators {
            let access = match &c.permissions {
                Some(p) if p.admin => Access::Owner,
                Some(p) if p.push => Access::Writer,
                _ => role_access(&c.role_name).unwrap_or(Access::Reader),
            };
            grants.push(SourceGrant {
                grantee: Grantee::User(c.id.to_string()),
                access,
            });
        }
        let teams: Vec<Team> = self
            .all("repository teams", &["repos", owner, name, "teams"], &[])
            .await?;
        for t in teams {
            let access = role_access(&t.permission).unwrap_or(Access::Reader);
            grants.push(SourceGrant {
                grantee: Grantee::Group(t.id.to_string()),
                access,
            });
        }
        grants.sort();
        grants.dedup();
        Ok(grants)
    }

    /// Starts a listing: the organisation's base permission and its repositories.
    async fn start(&self, previous: Cursor) -> Result<Page> {
        let org: Org = self
            .get(self.call("orgs", self.url(&["orgs", &self.org], &[])))
            .await?
            .json()?;
        let mut repos: Vec<Repo> = self
            .all("repos", &["orgs", &self.org, "repos"], &[("type", "all")])
            .await?;
        repos.sort_by_key(|r| r.id);
        repos.dedup_by_key(|r| r.id);
        let total = repos.len() as u64;
        let mut state = previous.state;
        state.retain(|id, _| repos.iter().any(|r| r.id.to_string() == *id));
        let cursor = Cursor {
            repos,
            next: 0,
            issues_page: 0,
            started_at: Some(Utc::now()),
            base_permission: org.default_repository_permission.unwrap_or_default(),
            state,
        };
        Ok(Page {
            new_listing: true,
            more: true,
            total_hint: Some(total),
            cursor: Some(cursor.encode()?),
            ..Page::default()
        })
    }

    /// One step of one repository: its files, or a page of its issues.
    async fn step(&self, mut cursor: Cursor) -> Result<Page> {
        let mut page = Page::default();
        let Some(repo) = cursor.repos.get(cursor.next).cloned() else {
            // Every repository read: the listing is complete.
            cursor.repos.clear();
            cursor.next = 0;
            page.listing_complete = true;
            page.cursor = Some(cursor.encode()?);
            return Ok(page);
        };
        let id = repo.id.to_string();
        let grants = self.grants_of(&repo, &cursor.base_permission).await?;
        let fingerprint = fingerprint(&grants);
        let previous = cursor.state.get(&id).cloned().unwrap_or_default();
        // Changed grants: everything of the repository goes again, with them.
        let same_grants = previous.grants == fingerprint;
        let (owner, name) = repo
            .full_name
            .split_once('/')
            .ok_or_else(|| Error::Unavailable("github repos: a full_name without owner".into()))?;
        let mut state = previous.clone();
        if cursor.issues_page == 0 {
            let mut call = self.call(
                "git trees",
                self.url(
                    &["repos", owner, name, "git", "trees", &repo.default_branch],
                    &[("recursive", "1")],
                ),
            );
            if same_grants && !previous.tree_etag.is_empty() {
                call = call.header("if-none-match", &previous.tree_etag);
            }
            let answer = match self.get(call).await {
                // An empty repository has no tree.
                Err(Error::NotFound(_)) | Err(Error::FailedPrecondition(_)) => None,
                Err(e) => return Err(e),
                Ok(a) => Some(a),
            };
            match answer {
                Some(a) if a.status == reqwest::StatusCode::NOT_MODIFIED => {
                    page.unchanged.push(files_of(&id));
                }
                Some(a) => {
                    let tree: Tree = a.json()?;
                    if tree.truncated {
                        tracing::warn!(repo_id = %id, "github tree truncated; some files are not imported");
                    }
                    for entry in tree.tree {
                        if entry.kind != "blob" || !is_markdown(&entry.path) {
                            continue;
                        }
                        if entry.size.is_some_and(|s| s > MAX_FILE_BYTES) || entry.path.len() > 400
                        {
                            page.skipped.push(crate::connector::Skipped {
                                external_id: format!(
                                    "{id}/{}",
                                    entry.path.chars().take(100).collect::<String>()
                                ),
                                reason: format!(
                                    "larger than {MAX_FILE_BYTES} bytes, or a path over 400 bytes"
                                ),
                            });
                            continue;
                        }
                        let title = format!("{name}: {}", entry.path);
                        page.documents.push(SourceDocument {
                            external_id: format!("{id}/{}", entry.path),
                            group: files_of(&id),
                            version: entry.sha.clone(),
                            title,
                            mime_type: "text/markdown".into(),
                            url: format!(
                                "{}/blob/{}/{}",
                                repo.html_url, repo.default_branch, entry.path
                            ),
                            modified_at: Utc::now(),
                            owner: String::new(),
                            grants: grants.clone(),
                            size_hint: entry.size,
                            content_ref: serde_json::to_string(&ContentRef::Blob {
                                repo: repo.full_name.clone(),
                                sha: entry.sha,
                            })
                            .map_err(|_| {
                                Error::Internal("content reference does not encode".into())
                            })?,
                        });
                    }
                    state.tree_etag = a.header("etag").unwrap_or_default().to_owned();
                }
                None => state.tree_etag.clear(),
            }
            cursor.issues_page = 1;
        } else {
            let number = cursor.issues_page.to_string();
            let since = previous
                .issues_since
                .filter(|_| same_grants)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            let mut query = vec![
                ("state", "all"),
                ("sort", "updated"),
                ("direction", "asc"),
                ("per_page", PER_PAGE),
                ("page", number.as_str()),
            ];
            if let Some(since) = &since {
                query.push(("since", since));
            }
            let answer = self
                .get(self.call(
                    "issues",
                    self.url(&["repos", owner, name, "issues"], &query),
                ))
                .await?;
            let issues: Vec<Issue> = answer.json()?;
            let more = has_next(&answer) && !issues.is_empty();
            for issue in issues {
                if issue.pull_request.is_some() {
                    continue;
                }
                page.documents.push(SourceDocument {
                    external_id: format!("{id}#{}", issue.number),
                    group: issues_of(&id),
                    version: issue.updated_at.to_rfc3339(),
                    title: format!("{name} #{}: {}", issue.number, issue.title),
                    mime_type: "text/markdown".into(),
                    url: issue.html_url,
                    modified_at: issue.updated_at,
                    owner: issue.user.map(|u| u.id.to_string()).unwrap_or_default(),
                    grants: grants.clone(),
                    size_hint: None,
                    content_ref: serde_json::to_string(&ContentRef::Issue {
                        body: issue.body.unwrap_or_default(),
                    })
                    .map_err(|_| Error::Internal("content reference does not encode".into()))?,
                });
            }
            if more {
                if cursor.issues_page >= MAX_PAGES {
                    return Err(Error::Unavailable(
                        "github issues: more than 10000 pages".into(),
                    ));
                }
                cursor.issues_page += 1;
            } else {
                if since.is_some() {
                    // Issues not changed since the last sync are all still there.
                    page.unchanged.push(issues_of(&id));
                }
                // A minute of overlap: clocks differ, and `since` is inclusive anyway.
                state.issues_since = cursor.started_at.map(|t| t - chrono::Duration::minutes(1));
                // Only now is every document of the repository sent with these grants.
                state.grants = fingerprint;
                cursor.next += 1;
                cursor.issues_page = 0;
            }
        }
        cursor.state.insert(id, state);
        page.more = true;
        page.cursor = Some(cursor.encode()?);
        Ok(page)
    }
}

/// The group of a repository's files (their ids are `<repository id>/<path>`): a
/// conditional tree request answered "not modified" reports them all unchanged.
fn files_of(repo_id: &str) -> String {
    format!("{repo_id}/")
}

/// The group of a repository's issues (`<repository id>#<number>`): an issue listing
/// `since` the last sync reports those it does not list unchanged.
fn issues_of(repo_id: &str) -> String {
    format!("{repo_id}#")
}

/// The group of a GitHub item by its external id (what [`files_of`] and [`issues_of`]
/// gave it), for items recorded before groups were.
pub fn group_of(external_id: &str) -> String {
    match external_id.find(['/', '#']) {
        Some(at) => external_id[..=at].to_owned(),
        None => String::new(),
    }
}

fn fingerprint(grants: &[SourceGrant]) -> String {
    let text = format!("{grants:?}");
    mindmesh_kit::crypto::hex(&mindmesh_kit::crypto::digest_parts(&[text.as_bytes()])[..16])
}

fn has_next(answer: &Answer) -> bool {
    answer
        .header("link")
        .is_some_and(|link| link.split(',').any(|part| part.contains("rel=\"next\"")))
}

fn is_markdown(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.ends_with(".md")
        || lower.ends_with(".markdown")
        || lower.rsplit('/').next() == Some("readme")
}

/// GitHub's role names, as access.
fn role_access(role: &str) -> Option<Access> {
    match role {
        "read" | "pull" | "triage" => Some(Access::Reader),
        "write" | "push" | "maintain" => Some(Access::Writer),
        "admin" => Some(Access::Owner),
        _ => None,
    }
}

#[async_trait::async_trait]
impl Connector for GitHub {
    async fn principals(&self) -> Result<Principals> {
        let members: Vec<Member> = self
            .all("members", &["orgs", &self.org, "members"], &[])
            .await?;
        let mut principals = Principals::default();
        let org_group = format!("org:{}", self.org);
        principals.groups.push(SourceGroup {
            external_id: org_group.clone(),
            email: String::new(),
            name: format!("{} members", self.org),
        });
        let mut user_ids = BTreeSet::new();
        for m in members {
            if !user_ids.insert(m.id) {
                continue;
            }
            let user: User = self
                .get(self.call("users", self.url(&["users", &m.login], &[])))
                .await?
                .json()?;
            let email = user
                .email
                .filter(|e| e.contains('@'))
                .map(|e| e.to_lowercase())
                .unwrap_or_default();
            principals.users.push(SourceUser {
                external_id: m.id.to_string(),
                email,
                display_name: user.name.unwrap_or(m.login),
            });
            principals.memberships.push(SourceMembership {
                group: org_group.clone(),
                member: m.id.to_string(),
                member_is_group: false,
            });
        }
        let teams: Vec<Team> = self
            .all("teams", &["orgs", &self.org, "teams"], &[])
            .await?;
        let team_ids: BTreeSet<u64> = teams.iter().map(|t| t.id).collect();
        let mut edges = BTreeSet::new();
        for t in &teams {
            principals.groups.push(SourceGroup {
                external_id: t.id.to_string(),
                email: String::new(),
                name: t.name.clone(),
            });
            if let Some(parent) = &t.parent
                && team_ids.contains(&parent.id)
            {
                edges.insert(SourceMembership {
                    group: parent.id.to_string(),
                    member: t.id.to_string(),
                    member_is_group: true,
                });
            }
            let members: Vec<Member> = self
                .all(
                    "team members",
                    &["orgs", &self.org, "teams", &t.slug, "members"],
                    &[],
                )
                .await?;
            for m in members {
                // Outside collaborators on a team are principals too.
                if user_ids.insert(m.id) {
                    principals.users.push(SourceUser {
                        external_id: m.id.to_string(),
                        email: String::new(),
                        display_name: m.login,
                    });
                }
                edges.insert(SourceMembership {
                    group: t.id.to_string(),
                    member: m.id.to_string(),
                    member_is_group: false,
                });
            }
        }
        principals.memberships.extend(edges);
        Ok(principals)
    }

    async fn page(&self, cursor: Option<&str>) -> Result<Page> {
        let cursor: Cursor = match cursor {
            None => Cursor::default(),
            Some(c) => serde_json::from_str(c)
                .map_err(|_| Error::Internal("github: malformed cursor".into()))?,
        };
        if cursor.repos.is_empty() {
            self.start(cursor).await
        } else {
            self.step(cursor).await
        }
    }

    async fn content(&self, document: &SourceDocument) -> Result<Content> {
        let reference: ContentRef = serde_json::from_str(&document.content_ref)
            .map_err(|_| Error::Internal("github: malformed content reference".into()))?;
        match reference {
            ContentRef::Issue { body } => Ok(Content {
                bytes: body.into_bytes(),
                mime_type: None,
            }),
            ContentRef::Blob { repo, sha } => {
                let (owner, name) = repo
                    .split_once('/')
                    .ok_or_else(|| Error::Internal("github: malformed repository name".into()))?;
                let blob: Blob = self
                    .get(self.call(
                        "git blobs",
                        self.url(&["repos", owner, name, "git", "blobs", &sha], &[]),
                    ))
                    .await?
                    .json()?;
                if blob.encoding != "base64" {
                    return Err(Error::invalid(
                        "file",
                        format!(
                            "blob encoding {:?} is not base64",
                            blob.encoding.chars().take(20).collect::<String>()
                        ),
                    ));
                }
                let compact: String = blob.content.split_whitespace().collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map_err(|_| Error::invalid("file", "blob content is not valid base64"))?;
                Ok(Content {
                    bytes,
                    mime_type: None,
                })
            }
        }
    }

    async fn revoke(&self) -> Result<()> {
        let Some((client_id, client_secret)) = &self.client else {
            return Ok(()); // a token an administrator made: they revoke it at GitHub
        };
        let token = self.tokens.credentials().await.access_token;
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{client_id}:{client_secret}"));
        let call = Call::with_json(
            "github token revocation",
            reqwest::Method::DELETE,
            endpoint(&self.api, &["applications", client_id, "token"]),
            serde_json::json!({ "access_token": token }),
        )
        .header("accept", "application/vnd.github+json")
        .header("authorization", &format!("Basic {basic}"));
        self.http.send(&call, Auth::None).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_scopes_are_refused() {
        assert!(check_granted_scopes("").is_ok());
        assert!(check_granted_scopes("read:org,read:user").is_ok());
        for scope in ["repo", "read:org,repo", "admin:org", "public_repo"] {
            assert!(check_granted_scopes(scope).is_err(), "{scope}");
        }
    }

    #[test]
    fn markdown_paths() {
        assert!(is_markdown("README.md"));
        assert!(is_markdown("docs/Guide.MARKDOWN"));
        assert!(is_markdown("README"));
        assert!(!is_markdown("src/main.rs"));
    }
}
