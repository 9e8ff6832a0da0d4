//! Google Drive (Drive API v3) and its directory (Admin SDK Directory API v1).
//!
//! - **Principals**: `users.list`, `groups.list` and `members.list` of the Directory API,
//!   nested groups included (a member of type `GROUP`). Users and groups are named by
//!   their email, lower-cased: that is how Drive permissions name them. A person outside
//!   the directory whom a file is shared with (an outside collaborator) becomes a
//!   principal under the email the permission names.
//! - **Documents**: a full listing is `files.list` (`trashed = false`, every drive the
//!   user can see: `corpora=allDrives`, `supportsAllDrives`, `includeItemsFromAllDrives`),
//!   paged by `nextPageToken` until it is absent. Each file's grants come from
//!   `permissions.list` (user, group, domain and anyone permissions; link-only domain or
//!   anyone permissions — `allowFileDiscovery: false` — and `deleted` ones grant nothing
//!   here), read as a user allowed to (owner or writer). Google Docs, Sheets and Slides
//!   are exported as text (`files.export`), other files downloaded (`alt=media`).
//! - **Changes**: before a full listing, `changes.getStartPageToken` is taken for the
//!   user's own log and for each shared drive's log (`drives.list`); afterwards,
//!   `changes.list` from those tokens until `newStartPageToken`. A trashed file is
//!   removed. A change that is `removed` means the user whose log it is no longer sees
//!   the file (deleted, or their access revoked): reading as one user, the file is
//!   removed; crawling the whole domain, it is read again as its owner (or whoever
//!   described it) and removed only if they do not see it either, else its grants are
//!   replaced by what they read.
//! - **Whole-domain crawls** (a service-account key with domain-wide delegation): Drive
//!   answers as the user whose token is used and lists only what that user can see, so
//!   every user of the directory is impersonated in turn (in directory-id order, so the
//!   cursor names a user by id, never by email); a file seen twice is stored once.
//!   A user's listing yields the files whose permissions that user can read; a file
//!   nobody in the domain may share is not imported in this mode.
//! - **Tokens**: authorization-code exchange and refresh at `token_url`, or JWT-bearer
//!   assertions signed with the service account's key; revoked at `revoke_url` on
//!   disconnect.
//!
//! Here: connecting, tokens and the [`Connector`] face. Then, one concern per file:
//! `directory` (users, groups, members), `listing` (full listings and how a file
//! becomes a document), `permissions` (a file's grants), `changes` (change logs),
//! `tasks` (calls side by side); `wire` is the APIs' JSON and `cursor` the sync cursor.

mod changes;
mod cursor;
mod directory;
mod listing;
mod permissions;
mod tasks;
mod wire;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use mindmesh_kit::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::connector::{
    Access, Connector, ConnectorInfo, Content, Credentials, Grantee, Page, Principals, Skipped,
    SourceDocument, SourceGrant, SourceGroup, SourceMembership, SourceUser,
};
use crate::connectors::Grant;
use crate::http::{Answer, Auth, Call, Http, endpoint, setting_url};
use crate::oauth::{self, CredentialSink, Forget, Renewal, ServiceAccount, TokenSource};
use changes::LogPage;
use cursor::{CURSOR_FORMAT, Cursor, Listing, Log};
use listing::{FILE_FIELDS, Listed, described_at_version, not_a_document};
use permissions::{grants, may_read_permissions};
use tasks::{CALLS_PER_REQUEST, Task, all_pages, most_of, side_by_side};
use wire::{
    ChangeList, DirMember, DriveList, File, FileList, GroupList, MemberList, Permission,
    PermissionList, SharedDrive, StartToken, UserList,
};

/// The scopes the connector asks for: read-only, and no more (P03).
pub const SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/drive.readonly",
    "https://www.googleapis.com/auth/admin.directory.user.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.member.readonly",
];

/// What the connector is.
pub const INFO: ConnectorInfo = ConnectorInfo {
    kind: "google_drive",
    display_name: "Google Drive",
    scopes: SCOPES,
    collects: &[
        "file names, contents (Google Docs, Sheets and Slides as text) and links",
        "who each file is shared with (users, groups, domain, anyone)",
        "users (email and name), groups and group memberships from the directory",
    ],
    setting_keys: &[
        "client_id",
        "client_secret",
        "admin_email",
        "customer",
        "drive_url",
        "directory_url",
        "token_url",
        "revoke_url",
    ],
    secret_setting_keys: &["client_secret"],
    notes: &[
        "files shared only by link (anyone with the link, or a domain without discovery) \
         reach nobody in Mindmesh: showing them to a whole company would reveal what only \
         link holders can open",
        "Google Forms and other files without a text export are skipped, with the reason \
         shown on the integration",
    ],
};

const DRIVE_URL: &str = "https://www.googleapis.com/drive/v3";
const DIRECTORY_URL: &str = "https://admin.googleapis.com/admin/directory/v1";
const TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
const REVOKE_URL: &str = "https://oauth2.googleapis.com/revoke";
/// Files per `files.list` / `changes.list` page (Drive's maximum).
const PAGE_SIZE: &str = "1000";
/// Pages of one paged listing before it is taken for a loop.
const MAX_PAGES: usize = 100_000;

/// Where the connector's endpoints are.
#[derive(Clone, Debug)]
struct Endpoints {
    drive: reqwest::Url,
    directory: reqwest::Url,
    token: reqwest::Url,
    revoke: reqwest::Url,
}

impl Endpoints {
    fn from(settings: &BTreeMap<String, String>) -> Result<Self> {
        Ok(Endpoints {
            drive: setting_url(settings, "settings.drive_url", DRIVE_URL)?,
            directory: setting_url(settings, "settings.directory_url", DIRECTORY_URL)?,
            token: setting_url(settings, "settings.token_url", TOKEN_URL)?,
            revoke: setting_url(settings, "settings.revoke_url", REVOKE_URL)?,
        })
    }
}

/// Checks the settings and obtains credentials: an authorization code exchanged, a
/// ready token (with its refresh token), or a service-account key (in `access_token`,
/// with `admin_email` to read the directory as).
pub async fn connect(
    http: &Http,
    settings: &BTreeMap<String, String>,
    credentials: &mut Credentials,
    grant: Grant,
) -> Result<()> {
    let endpoints = Endpoints::from(settings)?;
    let client_id = settings.get("client_id").cloned().unwrap_or_default();
    let client_secret = credentials
        .secrets
        .get("client_secret")
        .cloned()
        .unwrap_or_default();
    if grant.access_token.trim_start().starts_with('{') {
        // A service-account key: checked now, used to mint tokens at every sync.
        ServiceAccount::from_json("access_token", &grant.access_token)?;
        if settings.get("admin_email").is_none_or(|e| !e.contains('@')) {
            return Err(Error::invalid(
                "settings.admin_email",
                "is required with a service-account key: the directory is read as this admin",
            ));
        }
        credentials
            .secrets
            .insert("service_account_key".into(), grant.access_token);
        return Ok(());
    }
    if !grant.authorization_code.is_empty() {
        if client_id.is_empty() || client_secret.is_empty() {
            return Err(Error::invalid(
                "settings.client_id",
                "client_id and client_secret are required to exchange an authorization code",
            ));
        }
        if grant.redirect_uri.is_empty() {
            return Err(Error::invalid(
                "redirect_uri",
                "is required with an authorization code",
            ));
        }
        let token = oauth::exchange_code(
            http,
            "google drive",
            &endpoints.token,
            &client_id,
            &client_secret,
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
            "authorization_code",
            "set authorization_code, or access_token (a token or a service-account key)",
        ));
    }
    if !grant.refresh_token.is_empty() && (client_id.is_empty() || client_secret.is_empty()) {
        return Err(Error::invalid(
            "settings.client_id",
            "client_id and client_secret are required to refresh the token",
        ));
    }
    credentials.access_token = grant.access_token;
    credentials.refresh_token = grant.refresh_token;
    Ok(())
}

/// P03: a token that grants more than reading is refused, so that Mindmesh never holds
/// write access to a customer's Drive.
fn check_granted_scopes(granted: &str) -> Result<()> {
    for scope in granted.split_whitespace() {
        let google_api = scope.starts_with("https://www.googleapis.com/auth/");
        if google_api && !scope.ends_with(".readonly") {
            return Err(Error::invalid(
                "authorization_code",
                format!(
                    "the authorization grants {scope}, which is not read-only; authorize only \
                     the scopes ListConnectors lists"
                ),
            ));
        }
    }
    Ok(())
}

/// How the connector reads: as one user (OAuth) or as every user of the domain.
enum Mode {
    User(Arc<TokenSource>),
    Domain {
        account: ServiceAccount,
        admin: Arc<TokenSource>,
        /// Token sources of impersonated users, by email.
        users: tokio::sync::Mutex<HashMap<String, Arc<TokenSource>>>,
    },
}

/// A connected Google Drive.
pub struct GoogleDrive {
    http: Http,
    endpoints: Endpoints,
    customer: String,
    mode: Mode,
    /// Directory users by directory id (email, in order), read by `principals`.
    directory: tokio::sync::Mutex<BTreeMap<String, String>>,
    /// Set once `principals` has read the directory's users: a whole-domain listing,
    /// begun beside `principals`, waits for it.
    users_known: tokio::sync::watch::Sender<bool>,
    /// Requests the client sends at once (`ingest.fetch_concurrency`).
    concurrency: usize,
    /// Files described in this sync, with the version described: another user's
    /// listing of the same version adds nothing.
    described: Arc<std::sync::Mutex<HashMap<String, String>>>,
    /// Listing pages being read (or read) ahead of the cursor, by the listing state
    /// they answer: a page left behind by one `page` call (still waiting out a
    /// `Retry-After`) or the next page of a listing, asked for as soon as its token is
    /// known. Dropped with the connector, they are abandoned.
    ahead: std::sync::Mutex<HashMap<Listing, Task<FileList>>>,
    /// Change-log pages being read ahead, likewise.
    ahead_changes: std::sync::Mutex<HashMap<LogPage, Task<ChangeList>>>,
}

/// Opens the connector of an integration.
pub fn open(
    http: &Http,
    settings: &BTreeMap<String, String>,
    credentials: Credentials,
    sink: Arc<dyn CredentialSink>,
    concurrency: usize,
) -> Result<GoogleDrive> {
    let endpoints = Endpoints::from(settings)?;
    let scopes = SCOPES.join(" ");
    let mode = if let Some(key) = credentials.secrets.get("service_account_key") {
        let account = ServiceAccount::from_json("service_account_key", key)?;
        let admin_email = settings.get("admin_email").cloned().unwrap_or_default();
        let admin = TokenSource::new(
            "google directory",
            Credentials::default(),
            Renewal::ServiceAccount {
                token_url: endpoints.token.clone(),
                account: account.clone(),
                scopes: scopes.clone(),
                subject: Some(admin_email),
            },
            Arc::new(Forget),
        );
        Mode::Domain {
            account,
            admin: Arc::new(admin),
            users: tokio::sync::Mutex::new(HashMap::new()),
        }
    } else {
        let renewal = match (
            credentials.refresh_token.is_empty(),
            settings.get("client_id"),
            credentials.secrets.get("client_secret"),
        ) {
            (false, Some(id), Some(secret)) => Renewal::RefreshToken {
                token_url: endpoints.token.clone(),
                client_id: id.clone(),
                client_secret: secret.clone(),
            },
            _ => Renewal::None,
        };
        Mode::User(Arc::new(TokenSource::new(
            "google drive",
            credentials,
            renewal,
            sink,
        )))
    };
    Ok(GoogleDrive {
        http: http.clone(),
        endpoints,
        customer: settings
            .get("customer")
            .cloned()
            .unwrap_or_else(|| "my_customer".into()),
        mode,
        directory: tokio::sync::Mutex::new(BTreeMap::new()),
        users_known: tokio::sync::watch::Sender::new(false),
        concurrency: concurrency.max(1),
        described: Arc::new(std::sync::Mutex::new(HashMap::new())),
        ahead: std::sync::Mutex::new(HashMap::new()),
        ahead_changes: std::sync::Mutex::new(HashMap::new()),
    })
}

impl GoogleDrive {
    /// The token source acting as the user with directory id `user` (empty: the
    /// connected user, or the admin in a domain crawl).
    async fn tokens(&self, user: &str) -> Result<Arc<TokenSource>> {
        match &self.mode {
            Mode::User(tokens) => Ok(Arc::clone(tokens)),
            Mode::Domain { admin, .. } if user.is_empty() => Ok(Arc::clone(admin)),
            Mode::Domain { account, users, .. } => {
                self.users_read().await?;
                let email = self
                    .directory
                    .lock()
                    .await
                    .get(user)
                    .cloned()
                    .ok_or_else(|| {
                        Error::Unavailable("google drive: a listed user left the directory".into())
                    })?;
                let mut users = users.lock().await;
                let tokens = users.entry(email.clone()).or_insert_with(|| {
                    Arc::new(TokenSource::new(
                        "google drive",
                        Credentials::default(),
                        Renewal::ServiceAccount {
                            token_url: self.endpoints.token.clone(),
                            account: account.clone(),
                            scopes: SCOPES[0].to_owned(),
                            subject: Some(email),
                        },
                        Arc::new(Forget),
                    ))
                });
                Ok(Arc::clone(tokens))
            }
        }
    }

    async fn get(&self, name: &str, url: reqwest::Url, user: &str) -> Result<Answer> {
        let tokens = self.tokens(user).await?;
        self.http
            .send(
                &Call::get(format!("google {name}"), url),
                Auth::Bearer(&tokens),
            )
            .await
    }

    fn directory_url(&self, segments: &[&str], query: &[(&str, &str)]) -> reqwest::Url {
        let mut url = endpoint(&self.endpoints.directory, segments);
        url.query_pairs_mut().extend_pairs(query);
        url
    }

    fn drive_url(&self, segments: &[&str], query: &[(&str, &str)]) -> reqwest::Url {
        let mut url = endpoint(&self.endpoints.drive, segments);
        url.query_pairs_mut().extend_pairs(query);
        url
    }

    /// The files described in this sync. A poisoned lock still guards a consistent map
    /// (every change is one insert), so it is used as it is.
    fn described(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.described.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The listing pages read ahead. A poisoned lock still guards a consistent map
    /// (every change is one insert or one remove), so it is used as it is.
    fn ahead(&self) -> std::sync::MutexGuard<'_, HashMap<Listing, Task<FileList>>> {
        self.ahead.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The change-log pages read ahead (as [`GoogleDrive::ahead`]).
    fn ahead_changes(&self) -> std::sync::MutexGuard<'_, HashMap<LogPage, Task<ChangeList>>> {
        self.ahead_changes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A `GET` of `url` as `user` in a task of its own, its answer decoded.
    async fn spawn_get<T>(
        &self,
        name: &'static str,
        url: reqwest::Url,
        user: &str,
    ) -> Result<Task<T>>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let tokens = self.tokens(user).await?;
        let http = self.http.clone();
        let call = Call::get(name, url);
        Ok(Task(tokio::spawn(async move {
            http.send(&call, Auth::Bearer(&tokens)).await?.json()
        })))
    }

    /// The connected user's email (single-user mode), from Drive's `about`.
    async fn connected_email(&self) -> Result<String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct About {
            user: AboutUser,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct AboutUser {
            email_address: String,
        }
        let mut directory = self.directory.lock().await;
        if let Some(email) = directory.get("") {
            return Ok(email.clone());
        }
        let about: About = self
            .get(
                "drive about.get",
                self.drive_url(&["about"], &[("fields", "user(emailAddress)")]),
                "",
            )
            .await?
            .json()?;
        let email = about.user.email_address.to_lowercase();
        directory.insert(String::new(), email.clone());
        Ok(email)
    }
}

/// What `content` needs: who to read as (a directory id, empty for the connected
/// user), and the file's Drive type; and whom to ask whether it is still there when the
/// reader lost it (its owner's email).
#[derive(Serialize, Deserialize)]
struct ContentRef {
    user: String,
    #[serde(default)]
    owner: String,
    mime_type: String,
}

/// The text type a Google-native file is exported as.
fn export_type(mime_type: &str) -> Option<&'static str> {
    match mime_type {
        "application/vnd.google-apps.document" => Some("text/plain"),
        "application/vnd.google-apps.presentation" => Some("text/plain"),
        "application/vnd.google-apps.spreadsheet" => Some("text/csv"),
        _ => None,
    }
}

fn short(s: &str) -> String {
    s.chars().take(100).collect()
}

#[async_trait::async_trait]
impl Connector for GoogleDrive {
    async fn principals(&self) -> Result<Principals> {
        self.read_principals().await
    }

    /// A whole-domain listing waits for the directory's users, not for its groups.
    fn pages_beside_principals(&self) -> bool {
        true
    }

    async fn page(&self, cursor: Option<&str>) -> Result<Page> {
        let mut new_listing = false;
        let cursor = match cursor {
            None => self.start_listing().await?,
            Some(c) => {
                let mut cursor: Cursor = serde_json::from_str(c)
                    .map_err(|_| Error::Internal("google drive: malformed cursor".into()))?;
                if cursor.format < CURSOR_FORMAT {
                    if cursor.phase == "list" {
                        // A listing of the older format, one user at a time: listed again.
                        new_listing = true;
                        cursor = self.start_listing().await?;
                    } else {
                        for log in cursor.logs.iter_mut().take(cursor.log) {
                            log.read = true;
                        }
                        cursor.format = CURSOR_FORMAT;
                    }
                }
                cursor
            }
        };
        let mut page = if cursor.phase == "list" {
            self.list_page(cursor).await?
        } else {
            self.changes_page(cursor).await?
        };
        page.new_listing |= new_listing;
        Ok(page)
    }

    async fn content(&self, document: &SourceDocument) -> Result<Content> {
        let reference: ContentRef = serde_json::from_str(&document.content_ref)
            .map_err(|_| Error::Internal("google drive: malformed content reference".into()))?;
        let (name, url) = match export_type(&reference.mime_type) {
            Some(export) => (
                "drive files.export",
                self.drive_url(
                    &["files", &document.external_id, "export"],
                    &[("mimeType", export)],
                ),
            ),
            None => (
                "drive files.get",
                self.drive_url(
                    &["files", &document.external_id],
                    &[("alt", "media"), ("supportsAllDrives", "true")],
                ),
            ),
        };
        let answer = self.get(name, url, &reference.user).await?;
        Ok(Content {
            bytes: answer.body,
            mime_type: None,
        })
    }

    /// Drive names users by email: a person outside the directory a file is shared
    /// with is a principal under that email.
    fn outside_user(&self, grantee: &str) -> Option<SourceUser> {
        let plausible = grantee.len() <= 320
            && grantee
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
            && !grantee.chars().any(|c| c.is_whitespace() || c.is_control());
        plausible.then(|| SourceUser {
            external_id: grantee.to_owned(),
            email: grantee.to_owned(),
            display_name: String::new(),
        })
    }

    /// Whole-domain crawls: a file one user lost is read again as its owner, then as
    /// the user who last described it, whichever still sees it and may read its
    /// permissions; gone only when neither does.
    async fn recheck(
        &self,
        external_id: &str,
        content_ref: &str,
    ) -> Result<Option<SourceDocument>> {
        if !matches!(self.mode, Mode::Domain { .. }) {
            return Ok(None);
        }
        let Ok(reference) = serde_json::from_str::<ContentRef>(content_ref) else {
            return Ok(None);
        };
        let mut candidates = Vec::new();
        if let Some(owner) = self.directory_id(&reference.owner).await {
            candidates.push(owner);
        }
        if !reference.user.is_empty() && !candidates.contains(&reference.user) {
            candidates.push(reference.user);
        }
        for user in candidates {
            let url = self.drive_url(
                &["files", external_id],
                &[("supportsAllDrives", "true"), ("fields", FILE_FIELDS)],
            );
            let file: File = match self.get("drive files.get", url, &user).await {
                Ok(answer) => answer.json()?,
                Err(Error::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            if file.trashed {
                return Ok(None);
            }
            match self.describe(&user, file).await? {
                Listed::Document(doc) => return Ok(Some(*doc)),
                Listed::Skipped(_) | Listed::Ignored => continue,
            }
        }
        Ok(None)
    }

    async fn revoke(&self) -> Result<()> {
        let Mode::User(tokens) = &self.mode else {
            return Ok(()); // service-account tokens expire on their own
        };
        let credentials = tokens.credentials().await;
        let token = if credentials.refresh_token.is_empty() {
            credentials.access_token
        } else {
            credentials.refresh_token
        };
        if token.is_empty() {
            return Ok(());
        }
        let call = Call::post_form(
            "google token revocation",
            self.endpoints.revoke.clone(),
            vec![("token".into(), token)],
        );
        self.http.send(&call, Auth::None).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_only_google_scopes_are_accepted() {
        assert!(check_granted_scopes(&SCOPES.join(" ")).is_ok());
        assert!(
            check_granted_scopes("openid email https://www.googleapis.com/auth/drive.readonly")
                .is_ok()
        );
        let err = check_granted_scopes("https://www.googleapis.com/auth/drive").unwrap_err();
        assert!(err.to_string().contains("not read-only"), "{err}");
    }

    #[test]
    fn every_requested_scope_is_read_only() {
        for scope in SCOPES {
            assert!(scope.ends_with(".readonly"), "{scope}");
        }
    }
}
