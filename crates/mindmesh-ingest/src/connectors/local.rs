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
//! unchanged file is neither read nor rewritten). Symbolic links and hidden entries are
//! not followed: nothing outside the folder is ever read.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use mindmesh_kit::config::IngestConfig;
use mindmesh_kit::{Error, Result};
use serde::Deserialize;

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
};

/// The manifest's file name.
pub const MANIFEST: &str = "mindmesh-acl.json";
/// Files per page.
const PAGE: usize = 500;
/// Largest manifest read.
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// The folder of an integration, checked against `ingest.local_folder_root`.
pub fn folder(config: &IngestConfig, settings: &BTreeMap<String, String>) -> Result<PathBuf> {
    let root = config.local_folder_root.as_ref().ok_or_else(|| {
        Error::FailedPrecondition(
            "the local-folder connector is off: set ingest.local_folder_root".into(),
        )
    })?;
    let path = settings.get("path").map(String::as_str).unwrap_or_default();
    if path.is_empty() {
        return Err(Error::invalid("settings.path", "is required"));
    }
    let relative = Path::new(path);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(Error::invalid(
            "settings.path",
            "must be a relative path below ingest.local_folder_root, without ..",
        ));
    }
    let folder = root.join(relative);
    let meta = std::fs::symlink_metadata(&folder).map_err(|_| {
        Error::invalid(
            "settings.path",
            "is not a folder below ingest.local_folder_root",
        )
    })?;
    if !meta.is_dir() {
        return Err(Error::invalid(
            "settings.path",
            "is not a folder below ingest.local_folder_root",
        ));
    }
    Ok(folder)
}

/// A connected local folder.
pub struct LocalFolder {
    folder: PathBuf,
}

impl LocalFolder {
    /// The connector over `folder`.
    pub fn new(folder: PathBuf) -> Self {
        LocalFolder { folder }
    }

    fn manifest(&self) -> Result<Manifest> {
        let path = self.folder.join(MANIFEST);
        match std::fs::symlink_metadata(&path) {
            Err(_) => return Ok(Manifest::default()),
            Ok(m) if !m.is_file() => {
                return Err(Error::invalid("manifest", "is not a regular file"));
            }
            Ok(m) if m.len() > MAX_MANIFEST_BYTES => {
                return Err(Error::ResourceExhausted(format!(
                    "local folder: {MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes"
                )));
            }
            Ok(_) => {}
        }
        let bytes = std::fs::read(&path).map_err(|e| {
            Error::Unavailable(format!("local folder: reading {MANIFEST}: {}", e.kind()))
        })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::FailedPrecondition(format!(
                "local folder: {MANIFEST} does not decode (line {}, column {})",
                e.line(),
                e.column()
            ))
        })
    }

    /// Every file below the folder, by relative path, in order.
    fn files(&self) -> Result<Vec<(String, std::fs::Metadata)>> {
        let mut out = Vec::new();
        let mut stack = vec![(self.folder.clone(), String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| {
                Error::Unavailable(format!("local folder: listing a folder: {}", e.kind()))
            })?;
            for entry in entries {
                let entry = entry.map_err(|e| {
                    Error::Unavailable(format!("local folder: listing a folder: {}", e.kind()))
                })?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue; // not UTF-8: no id it could have
                };
                if name.starts_with('.') || (prefix.is_empty() && name == MANIFEST) {
                    continue;
                }
                // symlink_metadata: a link is neither a file nor a folder here.
                let Ok(meta) = entry.path().symlink_metadata() else {
                    continue;
                };
                let relative = format!("{prefix}{name}");
                if meta.is_dir() {
                    stack.push((entry.path(), format!("{relative}/")));
                } else if meta.is_file() {
                    out.push((relative, meta));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
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
        let manifest = self.manifest()?;
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
        let manifest = self.manifest()?;
        let grants: Vec<(&ManifestGrant, SourceGrant)> = manifest
            .grants
            .iter()
            .map(|g| Ok((g, g.grant()?)))
            .collect::<Result<_>>()?;
        let folder = self.folder.clone();
        let files = tokio::task::spawn_blocking(move || LocalFolder { folder }.files())
            .await
            .map_err(|_| Error::Internal("listing the folder stopped".into()))??;
        let total = files.len() as u64;
        let rest: Vec<_> = files
            .into_iter()
            .filter(|(path, _)| after.is_empty() || *path > after)
            .collect();
        let more = rest.len() > PAGE;
        let mut page = Page {
            total_hint: Some(total),
            ..Page::default()
        };
        for (path, meta) in rest.into_iter().take(PAGE) {
            let modified: DateTime<Utc> = meta
                .modified()
                .map(DateTime::<Utc>::from)
                .unwrap_or_else(|_| Utc::now());
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
                version: format!(
                    "{}-{}",
                    modified.timestamp_nanos_opt().unwrap_or_default(),
                    meta.len()
                ),
                mime_type: mime_type(&title).to_owned(),
                title,
                url: String::new(),
                modified_at: modified,
                owner: String::new(),
                grants: doc_grants,
                size_hint: Some(meta.len()),
                content_ref: path.clone(),
                external_id: path,
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
        let path = self.folder.join(&document.content_ref);
        // Links are not followed, even if one replaced the file since it was listed.
        let meta = tokio::fs::symlink_metadata(&path)
            .await
            .map_err(|_| Error::invalid("file", "disappeared before it was read"))?;
        if !meta.is_file() {
            return Err(Error::invalid("file", "is no longer a regular file"));
        }
        let bytes = tokio::fs::read(&path).await.map_err(|e| {
            Error::Unavailable(format!("local folder: reading a file: {}", e.kind()))
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
