//! The connector contract: what every source tool provides to the sync engine.
//!
//! A connector declares what it is ([`ConnectorInfo`]: kind, the read-only scopes it asks
//! for, the data it collects — shown before connecting, P03) and reads its source:
//! the full set of principals ([`Principals`]), then pages of changed documents with
//! their grants and of deletions ([`Page`]), each page ending at an opaque cursor the
//! engine persists, so that a sync killed anywhere resumes after the last finished page.
//! Content is fetched lazily, document by document, once the engine knows it needs it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mindmesh_kit::Result;

/// What a connector is and asks for, before anything is connected (P03).
#[derive(Clone, Copy, Debug)]
pub struct ConnectorInfo {
    /// Its kind, e.g. `google_drive`.
    pub kind: &'static str,
    /// Human-readable name.
    pub display_name: &'static str,
    /// The OAuth scopes it requests, every one read-only.
    pub scopes: &'static [&'static str],
    /// What it collects, in words an administrator understands.
    pub collects: &'static [&'static str],
    /// The settings it accepts (every endpoint base URL among them).
    pub setting_keys: &'static [&'static str],
    /// Settings that are secrets: sealed with the credentials, never returned.
    pub secret_setting_keys: &'static [&'static str],
    /// What an administrator should know before connecting: what is not imported, or
    /// reaches nobody, and why (P03).
    pub notes: &'static [&'static str],
}

/// A user as the source knows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceUser {
    /// The source's id of the user (what grants and memberships name).
    pub external_id: String,
    /// Their email: what links them to a Mindmesh account (P05).
    pub email: String,
    /// Display name at the source.
    pub display_name: String,
}

/// A group as the source knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceGroup {
    /// The source's id of the group.
    pub external_id: String,
    /// The group's email, where the source has one.
    pub email: String,
    /// Its name.
    pub name: String,
}

/// One membership edge.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourceMembership {
    /// The group's external id.
    pub group: String,
    /// The member's external id.
    pub member: String,
    /// True when the member is itself a group (nesting).
    pub member_is_group: bool,
}

/// Every principal of a source, read in full on every sync (sources offer no change log
/// of their directory).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Principals {
    /// Users.
    pub users: Vec<SourceUser>,
    /// Groups.
    pub groups: Vec<SourceGroup>,
    /// Membership edges, groups in groups included.
    pub memberships: Vec<SourceMembership>,
}

/// Who a grant reaches.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grantee {
    /// One user, by external id.
    User(String),
    /// A group, by external id (its members transitively).
    Group(String),
    /// Everyone with an email in this domain.
    Domain(String),
    /// Anyone in the tenant.
    Anyone,
}

/// What a grant allows. Source roles such as commenter map to reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Access {
    /// May read.
    Reader,
    /// May read and change.
    Writer,
    /// Owns it.
    Owner,
}

/// One grant on a document.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceGrant {
    /// Who.
    pub grantee: Grantee,
    /// What.
    pub access: Access,
}

/// A document as the source lists it; its content is fetched later by
/// [`Connector::content`] with `content_ref`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceDocument {
    /// The source's id of the document.
    pub external_id: String,
    /// The source's version; an unchanged version is neither fetched nor rewritten.
    pub version: String,
    /// Title.
    pub title: String,
    /// MIME type of the content Mindmesh stores.
    pub mime_type: String,
    /// Link to the document at its source.
    pub url: String,
    /// When it last changed at the source.
    pub modified_at: DateTime<Utc>,
    /// The source's owner id.
    pub owner: String,
    /// Every grant of the document.
    pub grants: Vec<SourceGrant>,
    /// Size as the source reports it, where it does.
    pub size_hint: Option<u64>,
    /// What the connector needs to fetch the content (a URL, a path…); opaque.
    pub content_ref: String,
    /// The group of documents it belongs to that a source can report unchanged as a
    /// whole (a repository's files); empty for none. See [`Page::unchanged`].
    pub group: String,
}

/// An item the connector could not use, and why (recorded; the sync goes on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The source's id of the item.
    pub external_id: String,
    /// Why, without content or secrets.
    pub reason: String,
}

/// One page of a source's changes.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// Documents added or changed, with their grants.
    pub documents: Vec<SourceDocument>,
    /// External ids deleted at the source, or no longer visible to Mindmesh.
    pub removed: Vec<String>,
    /// External ids that one of several identities Mindmesh reads as can no longer see
    /// (its access was revoked): perhaps gone, perhaps still there for the others. The
    /// engine asks [`Connector::recheck`] which, rather than delete them for everyone.
    pub lost: Vec<String>,
    /// Items skipped, with reasons.
    pub skipped: Vec<Skipped>,
    /// Where to continue after this page, persisted once the page is applied; `None`
    /// starts a full listing next time (a source without a change log).
    pub cursor: Option<String>,
    /// Groups (see [`SourceDocument::group`]) whose items are all still there,
    /// unchanged (a source said "not modified" for them): they count as seen by the
    /// current listing.
    pub unchanged: Vec<String>,
    /// This page starts a new full listing (for sources that list everything on every
    /// sync, keeping their own state in the cursor between syncs).
    pub new_listing: bool,
    /// This page ended a full listing: whatever the listing did not show is gone.
    pub listing_complete: bool,
    /// More pages are available now.
    pub more: bool,
    /// Items in the whole listing, where the source says.
    pub total_hint: Option<u64>,
}

/// A document's content, as Mindmesh stores it.
#[derive(Clone, Debug)]
pub struct Content {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// MIME type, when fetching changed it (an export to text).
    pub mime_type: Option<String>,
}

/// A source tool, connected with one integration's credentials and settings.
#[async_trait::async_trait]
pub trait Connector: Send + Sync {
    /// Every user, group and membership.
    async fn principals(&self) -> Result<Principals>;

    /// The page after `cursor`; `None` starts a full listing.
    async fn page(&self, cursor: Option<&str>) -> Result<Page>;

    /// Whether the first [`Connector::page`] may be read while
    /// [`Connector::principals`] is still under way (the connector then waits, inside
    /// `page`, for what it needs of them). The sync still applies no page before the
    /// principals are handed over.
    fn pages_beside_principals(&self) -> bool {
        false
    }

    /// The content of a listed document. An `InvalidArgument` or `ResourceExhausted`
    /// error skips the document with that reason; any other error fails the sync.
    async fn content(&self, document: &SourceDocument) -> Result<Content>;

    /// A document listed in [`Page::lost`], read again with the `content_ref` it was
    /// last stored with: `Some` with what the source says now (its grants re-read by an
    /// identity that still sees it), `None` when it is gone for every identity Mindmesh
    /// reads as. Connectors that never report lost documents keep the default.
    async fn recheck(
        &self,
        external_id: &str,
        content_ref: &str,
    ) -> Result<Option<SourceDocument>> {
        let _ = (external_id, content_ref);
        Ok(None)
    }

    /// A principal for a user a grant names who is not among [`Connector::principals`]
    /// (an outside collaborator), where the grantee's id says enough to link them to a
    /// Mindmesh account (an email); `None` leaves the grant reaching nobody.
    fn outside_user(&self, grantee: &str) -> Option<SourceUser> {
        let _ = grantee;
        None
    }

    /// Revokes the integration's token at the provider, where it can; called on
    /// disconnect, best effort.
    async fn revoke(&self) -> Result<()> {
        Ok(())
    }
}

/// The secrets of an integration, sealed at rest (P01) and never logged.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    /// OAuth access token (or a personal access token).
    #[serde(default)]
    pub access_token: String,
    /// OAuth refresh token.
    #[serde(default)]
    pub refresh_token: String,
    /// When the access token expires, if known.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// When the access token was obtained, if known (its lifetime decides how early it
    /// is renewed).
    #[serde(default)]
    pub obtained_at: Option<DateTime<Utc>>,
    /// Secret settings (client secret, service-account key…), by setting key.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("obtained_at", &self.obtained_at)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}
