//! The local-folder connector: a directory of files and a small ACL manifest, for the
//! embedded quick start and the demo.
//!
//! The manifest (`mindmesh-acl.json` at the folder's top, never imported itself):
//!
//! ```json
//! {
//!   "users":  [{"id": "alice", "email": "alice@example.com", "name": "Alice"}],
//!   "groups": [{"id": "eng", "email": "eng@example.com", "name": "Engineering",
//!               "members": ["alice", "group:platform"]}],
//!   "grants": [{"path": "handbook/", "to": "group:eng", "role": "reader"},
//!              {"path": "*", "to": "domain:example.com", "role": "reader"},
//!              {"path": "notes.md", "to": "user:alice", "role": "owner"}]
//! }
//! ```
//!
//! A grant's `path` is a file, a folder (ending in `/`, everything below it) or `*`;
//! `to` is `user:<id>`, `group:<id>`, `domain:<domain>` or `anyone`. Files are listed in
//! path order, in pages; there is no change log, so every sync is a full listing (an
//! unchanged file is neither read nor rewritten).
//!
//! Each tenant reads only below `ingest.local_folder_root/<tenant id>/`, and everything
//! below the root is opened through [`super::beneath`]: symbolic links are never
//! followed, at connect time or at any sync, and a file is read only if it is still the
//! one listed. Hidden entries are skipped; manifests (at any depth) are never imported.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use mindmesh_kit::config::IngestConfig;
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::{Error, Result};
use serde::Deserialize;

use super::beneath::{Beneath, FileId, Refused};

use crate::connector::{
    Access, Connector, ConnectorInfo, Content, Grantee, Page, Principals, Skipped, SourceDocument,
    SourceGrant, SourceGroup, SourceMembership, SourceUser,
};

/// What the connector is (P03: it asks for no OAuth scope at all).
pub const INFO: ConnectorInfo = ConnectorInfo {
    kind: "local_folder",
    display_name: "Local folder",
    scopes: &[],
    collects: &[
        "file names and contents",
        "users, groups and grants listed in the folder's ACL manifest",
    ],
    setting_keys: &["path"],
    secret_setting_keys: &[],
    notes: &[
        "only files below the tenant's own folder are read; symbolic links, hidden files \
         and the ACL manifests are never imported",
    ],
};

/// The manifest's file name.
pub const MANIFEST: &str = "mindmesh-acl.json";
/// Files per page.
const PAGE: usize = 500;
/// Largest manifest read.
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// Where an integration's folder is: `ingest.local_folder_root/<tenant id>/<path>`.
/// Each tenant has a subtree of its own, and `path` names a folder inside it by plain
/// folder names only (no `.`, `..`, empty or absolute parts).
#[derive(Clone, Debug)]
pub struct Location {
    root: PathBuf,
    steps: Vec<String>,
}

impl Location {
    /// The location of `settings.path` for `tenant`, checked by its spelling.
    pub fn of(
        config: &IngestConfig,
        tenant: TenantId,
        settings: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let root = config.local_folder_root.as_ref().ok_or_else(|| {
            Error::FailedPrecondition(
                "the local-folder connector is off: set ingest.local_folder_root".into(),
            )
        })?;
        let path = settings.get("path").map(String::as_str).unwrap_or_default();
        if path.is_empty() {
            return Err(Error::invalid("settings.path", "is required"));
        }
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        let parts: Vec<&str> = trimmed.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains(['\\', '\0']))
        {
            return Err(Error::invalid(
                "settings.path",
                "must name a folder of your tenant's folder by plain folder names \
                 (no leading /, no . or .. parts)",
            ));
        }
        let mut steps = vec![tenant.to_string()];
        steps.extend(parts.iter().map(|p| (*p).to_owned()));
        Ok(Location {
            root: root.clone(),
            steps,
        })
    }

    /// Opens the folder, refusing any link on the way below the root (at connect time
    /// and again at every sync).
    pub fn open(&self) -> Result<Beneath> {
        let steps: Vec<&str> = self.steps.iter().map(String::as_str).collect();
        Beneath::open(&self.root, &steps).map_err(|refused| match refused {
            Refused::Io(kind) => {
                Error::Unavailable(format!("local folder: opening the folder: {kind}"))
            }
            _ => Error::invalid(
                "settings.path",
                "is not a folder of your tenant's folder (ingest.local_folder_root/<tenant id>/), \
                 or a link is on its way",
            ),
        })
    }
}

/// Checks that `settings` name a folder `tenant` may connect.
pub fn check(
    config: &IngestConfig,
    tenant: TenantId,
    settings: &BTreeMap<String, String>,
) -> Result<()> {
    Location::of(config, tenant, settings)?.open().map(drop)
}

/// A connected local folder.
pub struct LocalFolder {
    location: Location,
    /// Largest file read (storage's limit); larger ones are skipped with that reason.
    max_file_bytes: u64,
}

impl LocalFolder {
    /// The connector over the folder at `location`, reading files of at most
    /// `max_file_bytes`.
    pub fn new(location: Location, max_file_bytes: u64) -> Self {
        LocalFolder {
            location,
            max_file_bytes,
        }
    }

    /// The folder, opened afresh: a link put on its way since it was connected fails
    /// the sync here.
    async fn opened(&self) -> Result<Arc<Beneath>> {
        let location = self.location.clone();
        blocking(move || location.open().map(Arc::new)).await
    }

    async fn manifest(&self, folder: &Arc<Beneath>) -> Result<Manifest> {
        let folder = folder.clone();
        let read = blocking(move || Ok(folder.read(MANIFEST, None, MAX_MANIFEST_BYTES))).await?;
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(Refused::Missing) => return Ok(Manifest::default()),
            Err(Refused::NotPlain) => {
                return Err(Error::invalid("manifest", "is not a regular file"));
            }
            Err(Refused::TooLarge) => {
                return Err(Error::ResourceExhausted(format!(
                    "local folder: {MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes"
                )));
            }
            Err(Refused::Io(kind)) => {
                return Err(Error::Unavailable(format!(
                    "local folder: reading {MANIFEST}: {kind}"
                )));
            }
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::FailedPrecondition(format!(
                "local folder: {MANIFEST} does not decode (line {}, column {})",
                e.line(),
                e.column()
            ))
        })
    }
}

/// Runs blocking file-system work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| Error::Internal("reading the folder stopped".into()))?
}

/// True for a manifest at any depth: manifests describe grants, they are not documents.
fn is_manifest(path: &str) -> bool {
    path.rsplit('/').next() == Some(MANIFEST)
}

/// What a listed file's content reference holds: where it is and which file it was.
#[derive(serde::Serialize, Deserialize)]
struct ContentRef {
    path: String,
    file: FileId,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default)]
    users: Vec<ManifestUser>,
    #[serde(default)]
    groups: Vec<ManifestGroup>,
    #[serde(default)]
    grants: Vec<ManifestGrant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestUser {
    id: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestGroup {
    id: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    members: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestGrant {
    path: String,
    to: String,
    role: String,
}

impl ManifestGrant {
    fn covers(&self, path: &str) -> bool {
        self.path == "*"
            || self.path == path
            || (self.path.ends_with('/') && path.starts_with(&self.path))
    }

    fn grant(&self) -> Result<SourceGrant> {
        let grantee = match self.to.split_once(':') {
            Some(("user", id)) => Grantee::User(id.to_owned()),
            Some(("group", id)) => Grantee::Group(id.to_owned()),
            Some(("domain", d)) => Grantee::Domain(d.to_owned()),
            None if self.to == "anyone" => Grantee::Anyone,
            _ => {
                return Err(Error::FailedPrecondition(format!(
                    "local folder: {MANIFEST}: grants.to must be user:<id>, group:<id>, \
                     domain:<domain> or anyone"
                )));
            }
        };
        let access = match self.role.as_str() {
            "reader" | "commenter" => Access::Reader,
            "writer" => Access::Writer,
            "owner" => Access::Owner,
            _ => {
                return Err(Error::FailedPrecondition(format!(
                    "local folder: {MANIFEST}: grants.role must be reader, writer or owner"
                )));
            }
        };
        Ok(SourceGrant { grantee, access })
    }
}

#[derive(serde::Serialize, Deserialize)]
struct Cursor {
    after: String,
}

#[async_trait::async_trait]
impl Connector for LocalFolder {
    async fn principals(&self) -> Result<Principals> {
        let folder = self.opened().await?;
        let manifest = self.manifest(&folder).await?;
        let mut memberships = Vec::new();
        for group in &manifest.groups {
            for member in &group.members {
                let (member, member_is_group) = match member.strip_prefix("group:") {
                    Some(g) => (g.to_owned(), true),
                    None => (
                        member.strip_prefix("user:").unwrap_or(member).to_owned(),
                        false,
                    ),
                };
                memberships.push(SourceMembership {
                    group: group.id.clone(),
                    member,
                    member_is_group,
                });
            }
        }
        Ok(Principals {
            users: manifest
                .users
                .into_iter()
                .map(|u| SourceUser {
                    external_id: u.id,
                    email: u.email,
                    display_name: u.name,
                })
                .collect(),
            groups: manifest
                .groups
                .into_iter()
                .map(|g| SourceGroup {
                    external_id: g.id,
                    email: g.email,
                    name: g.name,
                })
                .collect(),
            memberships,
        })
    }

    async fn page(&self, cursor: Option<&str>) -> Result<Page> {
        let after = match cursor {
            None => String::new(),
            Some(c) => {
                serde_json::from_str::<Cursor>(c)
                    .map_err(|_| Error::Internal("local folder: malformed cursor".into()))?
                    .after
            }
        };
        let folder = self.opened().await?;
        let manifest = self.manifest(&folder).await?;
        let grants: Vec<(&ManifestGrant, SourceGrant)> = manifest
            .grants
            .iter()
            .map(|g| Ok((g, g.grant()?)))
            .collect::<Result<_>>()?;
        let files = blocking(move || {
            folder.files(is_manifest).map_err(|refused| match refused {
                Refused::Io(kind) => {
                    Error::Unavailable(format!("local folder: listing a folder: {kind}"))
                }
                _ => Error::Unavailable(
                    "local folder: a folder changed into a link or vanished while being listed"
                        .into(),
                ),
            })
        })
        .await?;
        let total = files.len() as u64;
        let rest: Vec<_> = files
            .into_iter()
            .filter(|f| after.is_empty() || f.path > after)
            .collect();
        let more = rest.len() > PAGE;
        let mut page = Page {
            total_hint: Some(total),
            ..Page::default()
        };
        for file in rest.into_iter().take(PAGE) {
            let path = file.path;
            let modified = DateTime::<Utc>::from_timestamp_nanos(file.modified_ns);
            let mut doc_grants: Vec<SourceGrant> = grants
                .iter()
                .filter(|(g, _)| g.covers(&path))
                .map(|(_, g)| g.clone())
                .collect();
            doc_grants.sort();
            doc_grants.dedup();
            if path.len() > 512 {
                page.skipped.push(Skipped {
                    external_id: path.chars().take(200).collect(),
                    reason: "path longer than 512 bytes".into(),
                });
                continue;
            }
            let title = path.rsplit('/').next().unwrap_or(&path).to_owned();
            page.documents.push(SourceDocument {
                version: format!("{}-{}", file.modified_ns, file.len),
                mime_type: mime_type(&title).to_owned(),
                title,
                url: String::new(),
                modified_at: modified,
                owner: String::new(),
                grants: doc_grants,
                size_hint: Some(file.len),
                content_ref: serde_json::to_string(&ContentRef {
                    path: path.clone(),
                    file: file.id,
                })
                .map_err(|_| Error::Internal("content reference does not encode".into()))?,
                external_id: path,
                group: String::new(),
            });
        }
        match page.documents.last() {
            Some(last) if more => {
                page.cursor = Some(
                    serde_json::to_string(&Cursor {
                        after: last.external_id.clone(),
                    })
                    .map_err(|_| Error::Internal("cursor does not encode".into()))?,
                );
                page.more = true;
            }
            _ => {
                // The listing is complete; the next sync lists again from the start.
                page.cursor = None;
                page.listing_complete = true;
            }
        }
        Ok(page)
    }

    async fn content(&self, document: &SourceDocument) -> Result<Content> {
        let reference: ContentRef = serde_json::from_str(&document.content_ref)
            .map_err(|_| Error::Internal("local folder: malformed content reference".into()))?;
        let folder = self.opened().await?;
        let limit = self.max_file_bytes;
        let read =
            blocking(move || Ok(folder.read(&reference.path, Some(reference.file), limit))).await?;
        let bytes = read.map_err(|refused| match refused {
            Refused::Missing => Error::invalid("file", "disappeared before it was read"),
            Refused::NotPlain => Error::invalid(
                "file",
                "is no longer the regular file that was listed (a link or another file took its place)",
            ),
            Refused::TooLarge => Error::ResourceExhausted(format!(
                "larger than storage.max_content_bytes ({limit} bytes)"
            )),
            Refused::Io(kind) => {
                Error::Unavailable(format!("local folder: reading a file: {kind}"))
            }
        })?;
        Ok(Content {
            bytes,
            mime_type: None,
        })
    }
}

fn mime_type(name: &str) -> &'static str {
    match name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .as_deref()
    {
        Some("md" | "markdown") => "text/markdown",
        Some("txt" | "text") => "text/plain",
        Some("html" | "htm") => "text/html",
        Some("json") => "application/json",
        Some("csv") => "text/csv",
        Some("pdf") => "application/pdf",
        _ => "application/octet-stream",
    }
}
