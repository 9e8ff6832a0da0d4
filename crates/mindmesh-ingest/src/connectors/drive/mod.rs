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

mod cursor;
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
use cursor::{CURSOR_FORMAT, Cursor, Listing, Log};
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

/// Listings, change logs or permission reads under way per request the client may have
/// in flight (it sends `ingest.fetch_concurrency` at once): one that Google throttled
/// waits for its retry while the others go on.
const CALLS_PER_REQUEST: usize = 16;

/// How long a page of the listing waits for its last listings once half of them are
/// answered; those still waiting (a `Retry-After`) come with a later page.
const STRAGGLER_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// Runs `work` with up to `n` under way at once — one that is slow (waiting out a
/// `Retry-After`) holds back none of the others — and returns the outputs in order.
async fn side_by_side<T, Fut>(work: impl IntoIterator<Item = Fut>, n: usize) -> Vec<T>
where
    Fut: std::future::Future<Output = T>,
{
    let numbered: Vec<Numbered<Fut>> = work
        .into_iter()
        .enumerate()
        .map(|(i, f)| Numbered(i, f))
        .collect();
    let mut out: Vec<(usize, T)> = futures::stream::iter(numbered)
        .map(Numbered::run)
        .buffer_unordered(n.max(1))
        .collect()
        .await;
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, t)| t).collect()
}

/// A future and its place among others.
struct Numbered<Fut>(usize, Fut);

impl<Fut: std::future::Future> Numbered<Fut> {
    async fn run(self) -> (usize, Fut::Output) {
        (self.0, self.1.await)
    }
}

/// The permission fields read, inline in a file or from `permissions.list`.
const PERMISSION_FIELDS: &str = "id,type,emailAddress,domain,role,allowFileDiscovery,deleted";
/// Drive lists a file's permissions inline when the user may share it (not for items of
/// shared drives): then no `permissions.list` call is needed.
const FILE_FIELDS: &str = "id,name,mimeType,version,modifiedTime,webViewLink,size,trashed,\
                           driveId,ownedByMe,owners(emailAddress),capabilities(canEdit,canShare),\
                           permissions(id,type,emailAddress,domain,role,allowFileDiscovery,deleted)";

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

/// Every page of a listing: `fetch(page_token)` until no `nextPageToken`.
async fn all_pages<T, F, Fut>(name: &str, mut fetch: F) -> Result<Vec<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>)>>,
{
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    let mut seen = HashSet::new();
    for _ in 0..MAX_PAGES {
        let (items, next) = fetch(token.take()).await?;
        out.extend(items);
        match next.filter(|t| !t.is_empty()) {
            None => return Ok(out),
            Some(next) if !seen.insert(next.clone()) => {
                return Err(Error::Unavailable(format!(
                    "google {name}: the source returned a page token it had returned before (a loop)"
                )));
            }
            Some(next) => token = Some(next),
        }
    }
    Err(Error::Unavailable(format!(
        "google {name}: more than {MAX_PAGES} pages"
    )))
}

/// One call under way in a task of its own; dropped, it is abandoned.
struct Task<T>(tokio::task::JoinHandle<Result<T>>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Task<T> {
    async fn answer(mut self) -> Result<T> {
        (&mut self.0)
            .await
            .map_err(|_| Error::Internal("google drive: a read stopped".into()))?
    }

    fn finished(&self) -> bool {
        self.0.is_finished()
    }
}

/// Reads files' permissions (`permissions.list`, every page), apart from the connector.
struct PermissionReader {
    http: Http,
    drive: reqwest::Url,
    /// The files described in this sync ([`GoogleDrive::described`]).
    described: Arc<std::sync::Mutex<HashMap<String, String>>>,
    /// Reads under way at once.
    window: usize,
}

impl PermissionReader {
    /// Every permission of `file`, read as the identity of `tokens`.
    async fn read(&self, tokens: &TokenSource, file: &str) -> Result<Vec<Permission>> {
        let fields = format!("nextPageToken,permissions({PERMISSION_FIELDS})");
        let fields = fields.as_str();
        all_pages("drive permissions.list", |token| async move {
            let mut url = endpoint(&self.drive, &["files", file, "permissions"]);
            url.query_pairs_mut().extend_pairs([
                ("supportsAllDrives", "true"),
                ("pageSize", "100"),
                ("fields", fields),
            ]);
            if let Some(t) = &token {
                url.query_pairs_mut().append_pair("pageToken", t);
            }
            let list: PermissionList = self
                .http
                .send(
                    &Call::get("google drive permissions.list", url),
                    Auth::Bearer(tokens),
                )
                .await?
                .json()?;
            Ok((list.permissions, list.next_page_token))
        })
        .await
    }

    /// Reads, side by side, the permissions of the listed `files` that
    /// [`GoogleDrive::describe`] would read (documents whose permissions the user may
    /// read and the listing did not carry), unless the file was described at its
    /// version in this sync already. A file in a shared drive is read only in the
    /// listing of that drive (`drive`), which describes it.
    async fn fill(&self, tokens: &TokenSource, drive: &str, files: &mut [File]) -> Result<()> {
        let wanted: Vec<(usize, String)> = {
            let described = self.described.lock().unwrap_or_else(|e| e.into_inner());
            files
                .iter()
                .enumerate()
                .filter(|(_, f)| {
                    f.permissions.is_none()
                        && f.drive_id.as_deref().is_none_or(|d| d == drive)
                        && may_read_permissions(f)
                        && not_a_document(f).is_none()
                })
                .filter(|(_, f)| !described_at_version(&described, f))
                .map(|(i, f)| (i, f.id.clone()))
                .collect()
        };
        let read = side_by_side(
            wanted
                .iter()
                .map(|(_, id)| async move { self.read(tokens, id).await }),
            self.window,
        )
        .await;
        for ((i, _), permissions) in wanted.into_iter().zip(read) {
            files[i].permissions = Some(permissions?);
        }
        Ok(())
    }
}

/// Waits until every task is finished, or half of them are and then
/// [`STRAGGLER_GRACE`] has passed: those still waiting (out a `Retry-After`) come
/// with a later page.
async fn most_of<T>(tasks: &[Task<T>]) {
    let mut most_at: Option<std::time::Instant> = None;
    loop {
        let finished = tasks.iter().filter(|t| t.finished()).count();
        if finished == tasks.len() {
            return;
        }
        if finished * 2 >= tasks.len() {
            let at = *most_at.get_or_insert_with(std::time::Instant::now);
            if at.elapsed() >= STRAGGLER_GRACE {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A change log's page: (user, shared drive, page token).
type LogPage = (String, String, String);

fn log_page(log: &Log) -> LogPage {
    (log.user.clone(), log.drive.clone(), log.token.clone())
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

/// A Drive file as a source document, or why it is not one.
enum Listed {
    Document(Box<SourceDocument>),
    Skipped(Skipped),
    /// Not a document (a folder), or not this user's to describe.
    Ignored,
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

    /// The directory id of the user with `email`, if the directory has them.
    async fn directory_id(&self, email: &str) -> Option<String> {
        if email.is_empty() {
            return None;
        }
        self.directory
            .lock()
            .await
            .iter()
            .find(|(id, e)| !id.is_empty() && e.as_str() == email)
            .map(|(id, _)| id.clone())
    }

    /// The users a crawl reads as: every directory user (domain mode), or the connected
    /// user alone (named by the empty id).
    async fn crawl_users(&self) -> Result<Vec<String>> {
        match self.mode {
            Mode::User(_) => Ok(vec![String::new()]),
            Mode::Domain { .. } => {
                self.users_read().await?;
                Ok(self.directory.lock().await.keys().cloned().collect())
            }
        }
    }

    /// Returns once `principals` has read the directory's users.
    async fn users_read(&self) -> Result<()> {
        self.users_known
            .subscribe()
            .wait_for(|known| *known)
            .await
            .map(|_| ())
            .map_err(|_| Error::Internal("google drive: the directory was dropped".into()))
    }

    /// Keeps the directory's users (by directory id), and the connected user's email if
    /// it is known, and lets a listing waiting for them begin.
    async fn know_users(&self, directory: BTreeMap<String, String>) {
        let mut known = self.directory.lock().await;
        let connected = known.remove("");
        *known = directory;
        if let Some(email) = connected {
            known.insert(String::new(), email);
        }
        drop(known);
        self.users_known.send_replace(true);
    }

    /// Starts a full listing: the start tokens of every change log first, so that
    /// nothing changed during the listing is missed. Each user's files are one listing;
    /// each shared drive is listed once, as the first user found among its members. A
    /// listing's first page is asked for as soon as its own log's start token is known
    /// (for the listings the first page of the listing reads at once).
    async fn start_listing(&self) -> Result<Cursor> {
        self.described().clear();
        self.ahead().clear();
        self.ahead_changes().clear();
        let users = self.crawl_users().await?;
        let window = self.concurrency * CALLS_PER_REQUEST;
        let starts: Vec<Result<(String, Log, Vec<SharedDrive>)>> = side_by_side(
            users.into_iter().enumerate().map(|(i, user)| async move {
                let listing = Listing {
                    user: user.clone(),
                    drive: String::new(),
                    page_token: None,
                };
                let (token, drives) = futures::future::try_join(
                    self.start_log(&listing, i < window),
                    self.drives_of(&user),
                )
                .await?;
                Ok((
                    user.clone(),
                    Log {
                        user,
                        drive: String::new(),
                        token,
                        read: false,
                    },
                    drives,
                ))
            }),
            window,
        )
        .await;
        let mut logs = Vec::new();
        let mut listings = Vec::new();
        let mut drives: Vec<(String, String)> = Vec::new();
        let mut drives_seen = BTreeSet::new();
        for start in starts {
            let (user, log, member_of) = start?;
            logs.push(log);
            listings.push(Listing {
                user: user.clone(),
                drive: String::new(),
                page_token: None,
            });
            for drive in member_of {
                if drives_seen.insert(drive.id.clone()) {
                    drives.push((user.clone(), drive.id));
                }
            }
        }
        let before = listings.len();
        let drive_listings: Vec<Listing> = drives
            .into_iter()
            .map(|(user, drive)| Listing {
                user,
                drive,
                page_token: None,
            })
            .collect();
        let drive_logs: Vec<Result<Log>> = side_by_side(
            drive_listings
                .clone()
                .into_iter()
                .enumerate()
                .map(|(i, listing)| async move {
                    let token = self.start_log(&listing, before + i < window).await?;
                    Ok(Log {
                        user: listing.user,
                        drive: listing.drive,
                        token,
                        read: false,
                    })
                }),
            window,
        )
        .await;
        for log in drive_logs {
            logs.push(log?);
        }
        listings.extend(drive_listings);
        Ok(Cursor {
            format: CURSOR_FORMAT,
            phase: "list".into(),
            listings,
            logs,
            log: 0,
        })
    }

    /// The start token of the change log of `listing` (the user's own, or the shared
    /// drive's); then, if `read_ahead`, the listing's first page is asked for.
    async fn start_log(&self, listing: &Listing, read_ahead: bool) -> Result<String> {
        let drive = (!listing.drive.is_empty()).then_some(listing.drive.as_str());
        let token = self.start_token(&listing.user, drive).await?;
        if read_ahead {
            let task = self.listing_task(listing).await?;
            self.ahead().insert(listing.clone(), task);
        }
        Ok(token)
    }

    /// `changes.getStartPageToken` of `user`'s own log, or of a shared drive's.
    async fn start_token(&self, user: &str, drive: Option<&str>) -> Result<String> {
        let mut query = vec![("supportsAllDrives", "true")];
        if let Some(drive) = drive {
            query.push(("driveId", drive));
        }
        let start: StartToken = self
            .get(
                "drive changes.getStartPageToken",
                self.drive_url(&["changes", "startPageToken"], &query),
                user,
            )
            .await?
            .json()?;
        Ok(start.start_page_token)
    }

    /// The shared drives `user` is a member of.
    async fn drives_of(&self, user: &str) -> Result<Vec<SharedDrive>> {
        all_pages("drive drives.list", |token| async move {
            let mut query = vec![("pageSize", "100")];
            if let Some(t) = &token {
                query.push(("pageToken", t));
            }
            let list: DriveList = self
                .get(
                    "drive drives.list",
                    self.drive_url(&["drives"], &query),
                    user,
                )
                .await?
                .json()?;
            Ok((list.drives, list.next_page_token))
        })
        .await
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

    /// The read of `listing`'s page, the one under way if there is one. The task also
    /// reads the permissions of the files whose listing does not carry them (files in
    /// shared drives), so that a page of the listing goes on without a listing whose
    /// permission reads are still under way: it comes with a later page.
    async fn listing_task(&self, listing: &Listing) -> Result<Task<FileList>> {
        if let Some(task) = self.ahead().remove(listing) {
            return Ok(task);
        }
        let tokens = self.tokens(&listing.user).await?;
        let call = Call::get("google drive files.list", self.list_files_url(listing));
        let permissions = self.permission_reader();
        let drive = listing.drive.clone();
        Ok(Task(tokio::spawn(async move {
            let mut list: FileList = permissions
                .http
                .send(&call, Auth::Bearer(&tokens))
                .await?
                .json()?;
            permissions.fill(&tokens, &drive, &mut list.files).await?;
            Ok(list)
        })))
    }

    /// The read of `log`'s page, the one under way if there is one.
    async fn changes_task(&self, log: &Log) -> Result<Task<ChangeList>> {
        if let Some(task) = self.ahead_changes().remove(&log_page(log)) {
            return Ok(task);
        }
        self.spawn_get(
            "google drive changes.list",
            self.list_changes_url(log),
            &log.user,
        )
        .await
    }

    /// Pages of the first listings at `cursor`, read side by side: those answered once
    /// most of them are (a listing still waiting out a `Retry-After` after that goes on
    /// in the background and comes with a later page). The next page of each listing is
    /// asked for as soon as its token is known.
    async fn list_page(&self, mut cursor: Cursor) -> Result<Page> {
        let count = cursor
            .listings
            .len()
            .min(self.concurrency * CALLS_PER_REQUEST);
        let mut tasks = Vec::with_capacity(count);
        for listing in &cursor.listings[..count] {
            tasks.push(self.listing_task(listing).await?);
        }
        most_of(&tasks).await;
        let listed_drives: HashSet<String> = cursor
            .logs
            .iter()
            .filter(|l| !l.drive.is_empty())
            .map(|l| l.drive.clone())
            .collect();
        let mut files = Vec::new();
        let mut listings = Vec::with_capacity(cursor.listings.len());
        let rest = cursor.listings.split_off(count);
        for (mut listing, task) in cursor.listings.into_iter().zip(tasks) {
            if !task.finished() {
                self.ahead().insert(listing.clone(), task);
                listings.push(listing);
                continue;
            }
            let list = task.answer().await?;
            // A user's listing has files of shared drives shared with them; those of a
            // drive the sync lists are described from that drive's listing.
            files.extend(
                list.files
                    .into_iter()
                    .filter(|f| {
                        !listing.drive.is_empty()
                            || f.drive_id
                                .as_ref()
                                .is_none_or(|d| !listed_drives.contains(d.as_str()))
                    })
                    .map(|f| (listing.user.clone(), f)),
            );
            match list.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) if listing.page_token.as_deref() == Some(next.as_str()) => {
                    return Err(Error::Unavailable(
                        "google drive files.list: the next page token is this page's (a loop)"
                            .into(),
                    ));
                }
                Some(next) => {
                    listing.page_token = Some(next);
                    let task = self.listing_task(&listing).await?;
                    self.ahead().insert(listing.clone(), task);
                    listings.push(listing);
                }
                None => {}
            }
        }
        let mut page = self.describe_all(files).await?;
        cursor.listings = listings.into_iter().chain(rest).collect();
        if cursor.listings.is_empty() {
            cursor.phase = "changes".into();
            page.listing_complete = true;
        }
        page.more = true;
        page.cursor = Some(cursor.encode()?);
        Ok(page)
    }

    /// The `files.list` URL of `listing`'s next page.
    fn list_files_url(&self, listing: &Listing) -> reqwest::Url {
        let mut query = vec![
            (
                "q",
                "trashed = false and mimeType != 'application/vnd.google-apps.folder'".to_owned(),
            ),
            ("pageSize", PAGE_SIZE.to_owned()),
            ("supportsAllDrives", "true".to_owned()),
            ("includeItemsFromAllDrives", "true".to_owned()),
            ("fields", format!("nextPageToken,files({FILE_FIELDS})")),
        ];
        if listing.drive.is_empty() {
            query.push(("corpora", "user".to_owned()));
        } else {
            query.push(("corpora", "drive".to_owned()));
            query.push(("driveId", listing.drive.clone()));
        }
        if let Some(token) = &listing.page_token {
            query.push(("pageToken", token.clone()));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.drive_url(&["files"], &query)
    }

    /// Describes listed files, their permission reads side by side. A file several
    /// users' listings had is described once, as the one who needs no call for it (its
    /// permissions came inline) or else as one who may read them; a file already
    /// described at the same version in this sync is not described again.
    async fn describe_all(&self, files: Vec<(String, File)>) -> Result<Page> {
        let mut fresh: Vec<(String, File)> = Vec::with_capacity(files.len());
        let mut place: HashMap<String, usize> = HashMap::new();
        {
            let described = self.described();
            for (user, file) in files {
                if described_at_version(&described, &file) {
                    continue;
                }
                match place.get(&file.id) {
                    None => {
                        place.insert(file.id.clone(), fresh.len());
                        fresh.push((user, file));
                    }
                    Some(&i) if describer_rank(&file) > describer_rank(&fresh[i].1) => {
                        fresh[i] = (user, file);
                    }
                    Some(_) => {}
                }
            }
        }
        let listed: Vec<Result<(String, Listed)>> = side_by_side(
            fresh.into_iter().map(|(user, file)| async move {
                let version = file.version.clone().unwrap_or_default();
                if described_at_version(&self.described(), &file) {
                    return Ok((version, Listed::Ignored));
                }
                Ok((version, self.describe(&user, file).await?))
            }),
            self.concurrency * CALLS_PER_REQUEST,
        )
        .await;
        let mut page = Page::default();
        let mut ids = HashSet::new();
        for entry in listed {
            match entry? {
                (version, Listed::Document(doc)) => {
                    self.described().insert(doc.external_id.clone(), version);
                    if ids.insert(doc.external_id.clone()) {
                        page.documents.push(*doc);
                    }
                }
                (version, Listed::Skipped(s)) => {
                    self.described().insert(s.external_id.clone(), version);
                    if ids.insert(s.external_id.clone()) {
                        page.skipped.push(s);
                    }
                }
                (_, Listed::Ignored) => {}
            }
        }
        Ok(page)
    }

    /// One `changes.list` page of each of the first change logs not read to their end
    /// in this round, side by side.
    async fn changes_page(&self, mut cursor: Cursor) -> Result<Page> {
        let pending: Vec<usize> = (0..cursor.logs.len())
            .filter(|i| !cursor.logs[*i].read)
            .take(self.concurrency * CALLS_PER_REQUEST)
            .collect();
        let mut tasks = Vec::with_capacity(pending.len());
        for i in &pending {
            tasks.push(self.changes_task(&cursor.logs[*i]).await?);
        }
        most_of(&tasks).await;
        let whole_domain = matches!(self.mode, Mode::Domain { .. });
        let mut files = Vec::new();
        let mut page = Page::default();
        for (i, task) in pending.into_iter().zip(tasks) {
            if !task.finished() {
                // Still waiting: read again (from where it is) with a later page.
                self.ahead_changes().insert(log_page(&cursor.logs[i]), task);
                continue;
            }
            let list = task.answer().await?;
            let log = &mut cursor.logs[i];
            for change in list.changes {
                match change.file {
                    _ if change.file_id.is_empty() => {}
                    Some(file) if !change.removed && !file.trashed => {
                        files.push((log.user.clone(), file));
                    }
                    // In the trash: gone for everyone.
                    Some(file) if file.trashed => page.removed.push(change.file_id),
                    // This user no longer sees it: deleted, or only their access revoked.
                    // With one identity that is all Mindmesh may know; crawling the
                    // whole domain, the others' view is asked for (`recheck`).
                    _ if whole_domain => page.lost.push(change.file_id),
                    _ => page.removed.push(change.file_id),
                }
            }
            match (list.next_page_token, list.new_start_page_token) {
                (Some(next), _) if !next.is_empty() => {
                    if next == log.token {
                        return Err(Error::Unavailable(
                            "google drive changes.list: the next page token is this page's (a loop)"
                                .into(),
                        ));
                    }
                    log.token = next;
                    let task = self.changes_task(log).await?;
                    self.ahead_changes().insert(log_page(log), task);
                }
                (_, Some(start)) if !start.is_empty() => {
                    log.token = start;
                    log.read = true;
                }
                _ => {
                    return Err(Error::Unavailable(
                        "google drive changes.list: the answer has neither nextPageToken nor newStartPageToken".into(),
                    ));
                }
            }
        }
        let described = self.describe_all(files).await?;
        page.documents = described.documents;
        page.skipped = described.skipped;
        page.more = cursor.logs.iter().any(|l| !l.read);
        if !page.more {
            // Every log read to its end: the next sync starts a new round.
            for log in &mut cursor.logs {
                log.read = false;
            }
        }
        page.cursor = Some(cursor.encode()?);
        Ok(page)
    }

    /// The `changes.list` URL of `log`'s next page.
    fn list_changes_url(&self, log: &Log) -> reqwest::Url {
        let fields =
            format!("nextPageToken,newStartPageToken,changes(fileId,removed,file({FILE_FIELDS}))");
        let mut query = vec![
            ("pageToken", log.token.as_str()),
            ("pageSize", PAGE_SIZE),
            ("supportsAllDrives", "true"),
            ("fields", fields.as_str()),
        ];
        if log.drive.is_empty() {
            query.push(("includeItemsFromAllDrives", "false"));
        } else {
            query.push(("includeItemsFromAllDrives", "true"));
            query.push(("driveId", log.drive.as_str()));
        }
        self.drive_url(&["changes"], &query)
    }

    async fn describe(&self, user: &str, mut file: File) -> Result<Listed> {
        if let Some(not_a_document) = not_a_document(&file) {
            return Ok(not_a_document);
        }
        let google_native = file.mime_type.starts_with("application/vnd.google-apps.");
        let grants = if may_read_permissions(&file) {
            match file.permissions.take() {
                Some(inline) => grants(inline),
                None => grants(self.permissions(user, &file.id).await?),
            }
        } else {
            match &self.mode {
                // The connected user can read it, and that is all that is known.
                Mode::User(_) => vec![SourceGrant {
                    grantee: Grantee::User(self.connected_email().await?),
                    access: Access::Reader,
                }],
                // Another user of the domain, one allowed to, will describe it.
                Mode::Domain { .. } => return Ok(Listed::Ignored),
            }
        };
        let modified_at = file.modified_time.unwrap_or_else(Utc::now);
        let version = file
            .version
            .clone()
            .unwrap_or_else(|| modified_at.to_rfc3339());
        let size_hint = if google_native {
            None
        } else {
            file.size.as_deref().and_then(|s| s.parse().ok())
        };
        Ok(Listed::Document(Box::new(SourceDocument {
            owner: file
                .owners
                .first()
                .map(|o| o.email_address.to_lowercase())
                .unwrap_or_default(),
            mime_type: export_type(&file.mime_type)
                .unwrap_or(&file.mime_type)
                .to_owned(),
            title: file.name,
            url: file.web_view_link,
            modified_at,
            version,
            grants,
            size_hint,
            content_ref: serde_json::to_string(&ContentRef {
                user: user.to_owned(),
                owner: file
                    .owners
                    .first()
                    .map(|o| o.email_address.to_lowercase())
                    .unwrap_or_default(),
                mime_type: file.mime_type,
            })
            .map_err(|_| Error::Internal("content reference does not encode".into()))?,
            external_id: file.id,
            group: String::new(),
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

    async fn permissions(&self, user: &str, file: &str) -> Result<Vec<Permission>> {
        let tokens = self.tokens(user).await?;
        self.permission_reader().read(&tokens, file).await
    }

    /// What reads permissions in a task of its own.
    fn permission_reader(&self) -> PermissionReader {
        PermissionReader {
            http: self.http.clone(),
            drive: self.endpoints.drive.clone(),
            described: Arc::clone(&self.described),
            window: self.concurrency * CALLS_PER_REQUEST,
        }
    }
}

/// Why a listed file is no document, before anything is read for it: skipped with a
/// reason, or ignored (a folder).
fn not_a_document(file: &File) -> Option<Listed> {
    if file.id.is_empty() || file.id.len() > 256 {
        return Some(Listed::Skipped(Skipped {
            external_id: file.id.chars().take(64).collect(),
            reason: "a file id that is empty or longer than 256 bytes".into(),
        }));
    }
    if file.mime_type == "application/vnd.google-apps.folder" {
        return Some(Listed::Ignored);
    }
    let google_native = file.mime_type.starts_with("application/vnd.google-apps.");
    if google_native && export_type(&file.mime_type).is_none() {
        return Some(Listed::Skipped(Skipped {
            external_id: file.id.clone(),
            reason: format!("a {} has no text export", short(&file.mime_type)),
        }));
    }
    None
}

/// Whether `file` was described at its version in this sync already (`described`:
/// [`GoogleDrive::described`]); a file without a version never counts as described.
fn described_at_version(described: &HashMap<String, String>, file: &File) -> bool {
    file.version
        .as_deref()
        .is_some_and(|v| !v.is_empty() && described.get(&file.id).map(String::as_str) == Some(v))
}

/// How well placed the user whose listing had `file` is to describe it, as
/// [`GoogleDrive::describe`] would: not at all unless they may read its permissions
/// (another user describes it), best with them inline (no call).
fn describer_rank(file: &File) -> u8 {
    match (may_read_permissions(file), file.permissions.is_some()) {
        (false, _) => 0,
        (true, false) => 1,
        (true, true) => 2,
    }
}

/// Whether the user whose listing had `file` may read its permissions.
fn may_read_permissions(file: &File) -> bool {
    file.owned_by_me
        || file
            .capabilities
            .as_ref()
            .is_some_and(|c| c.can_share || c.can_edit)
}

/// The grants Drive permissions give: user, group, discoverable domain and anyone
/// permissions that are not deleted.
fn grants(permissions: Vec<Permission>) -> Vec<SourceGrant> {
    let mut grants: Vec<SourceGrant> = permissions
        .into_iter()
        .filter(|p| !p.deleted)
        .filter_map(|p| {
            let access = match p.role.as_str() {
                "owner" | "organizer" => Access::Owner,
                "fileOrganizer" | "writer" => Access::Writer,
                "commenter" | "reader" => Access::Reader,
                _ => return None,
            };
            let grantee = match p.kind.as_str() {
                "user" if !p.email_address.is_empty() => {
                    Grantee::User(p.email_address.to_lowercase())
                }
                "group" if !p.email_address.is_empty() => {
                    Grantee::Group(p.email_address.to_lowercase())
                }
                // Link-only sharing is not discovery: it grants nothing here.
                "domain" if p.allow_file_discovery && !p.domain.is_empty() => {
                    Grantee::Domain(p.domain.to_lowercase())
                }
                "anyone" if p.allow_file_discovery => Grantee::Anyone,
                _ => return None,
            };
            Some(SourceGrant { grantee, access })
        })
        .collect();
    grants.sort();
    grants.dedup();
    grants
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
        let customer = self.customer.as_str();
        // Users and groups side by side.
        let users = all_pages("directory users.list", |token| async move {
            let mut query = vec![
                ("customer", customer),
                ("maxResults", "500"),
                ("projection", "basic"),
            ];
            if let Some(t) = &token {
                query.push(("pageToken", t));
            }
            let list: UserList = self
                .get(
                    "directory users.list",
                    self.directory_url(&["users"], &query),
                    "",
                )
                .await?
                .json()?;
            Ok((list.users, list.next_page_token))
        });
        let groups = all_pages("directory groups.list", |token| async move {
            let mut query = vec![("customer", customer), ("maxResults", "200")];
            if let Some(t) = &token {
                query.push(("pageToken", t));
            }
            let list: GroupList = self
                .get(
                    "directory groups.list",
                    self.directory_url(&["groups"], &query),
                    "",
                )
                .await?
                .json()?;
            Ok((list.groups, list.next_page_token))
        });
        let (users, groups) = futures::future::try_join(users, groups).await?;

        let mut principals = Principals::default();
        let mut directory = BTreeMap::new();
        let mut user_emails = HashSet::new();
        for u in users {
            let email = u.primary_email.to_lowercase();
            if u.suspended || !email.contains('@') || !user_emails.insert(email.clone()) {
                continue;
            }
            directory.insert(u.id, email.clone());
            principals.users.push(SourceUser {
                external_id: email.clone(),
                email,
                display_name: u.name.map(|n| n.full_name).unwrap_or_default(),
            });
        }
        // The listing may begin while the groups' members are read.
        self.know_users(directory).await;
        let mut group_emails = HashSet::new();
        for g in &groups {
            let email = g.email.to_lowercase();
            if group_emails.insert(email.clone()) {
                principals.groups.push(SourceGroup {
                    external_id: email.clone(),
                    email,
                    name: g.name.clone(),
                });
            }
        }
        let mut edges = BTreeSet::new();
        // Every group's members, read side by side.
        let keys: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
        let all_members: Vec<Result<Vec<DirMember>>> = side_by_side(
            keys.into_iter().map(|key| async move {
                let key = key.as_str();
                all_pages("directory members.list", |token| async move {
                    let mut query = vec![("maxResults", "200")];
                    if let Some(t) = &token {
                        query.push(("pageToken", t));
                    }
                    let list: MemberList = self
                        .get(
                            "directory members.list",
                            self.directory_url(&["groups", key, "members"], &query),
                            "",
                        )
                        .await?
                        .json()?;
                    Ok((list.members, list.next_page_token))
                })
                .await
            }),
            self.concurrency * CALLS_PER_REQUEST,
        )
        .await;
        for (g, members) in groups.iter().zip(all_members) {
            for m in members? {
                let email = m.email.to_lowercase();
                if !email.contains('@') {
                    continue; // CUSTOMER (everyone in the domain) or a malformed entry
                }
                let member_is_group = match m.kind.as_str() {
                    "GROUP" => true,
                    "USER" => false,
                    _ => continue,
                };
                // A member from outside the directory is still a principal.
                if member_is_group && group_emails.insert(email.clone()) {
                    principals.groups.push(SourceGroup {
                        external_id: email.clone(),
                        email: email.clone(),
                        name: String::new(),
                    });
                } else if !member_is_group && user_emails.insert(email.clone()) {
                    principals.users.push(SourceUser {
                        external_id: email.clone(),
                        email: email.clone(),
                        display_name: String::new(),
                    });
                }
                edges.insert(SourceMembership {
                    group: g.email.to_lowercase(),
                    member: email,
                    member_is_group,
                });
            }
        }
        principals.memberships = edges.into_iter().collect();
        Ok(principals)
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
