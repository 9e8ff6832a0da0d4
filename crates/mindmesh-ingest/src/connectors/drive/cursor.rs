//! Where a Drive sync stands, as the opaque cursor it resumes from: the listings of a full
//! listing not finished yet and every change log's page token.

use mindmesh_kit::{Error, Result};
use serde::{Deserialize, Serialize};

/// The cursor's format since listings and change logs are read side by side.
pub(super) const CURSOR_FORMAT: u32 = 2;

/// Where a Drive sync stands. Users are named by directory id, never by email.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct Cursor {
    /// [`CURSOR_FORMAT`]; 0 for cursors written before it (one user at a time).
    #[serde(default)]
    pub(super) format: u32,
    /// `list` during a full listing, `changes` after it.
    pub(super) phase: String,
    /// The listings of the full listing not finished yet, in order.
    #[serde(default)]
    pub(super) listings: Vec<Listing>,
    /// Change logs: each user's own and one per shared drive.
    #[serde(default)]
    pub(super) logs: Vec<Log>,
    /// Format 0: the change log being read (those before it were read this round).
    #[serde(default)]
    pub(super) log: usize,
}

/// One listing of a full listing: a user's files (My Drive and shared with them) or a
/// shared drive's, read as one of its members.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub(super) struct Listing {
    /// Directory id of the user it is read as (empty: the connected user).
    pub(super) user: String,
    /// Shared drive id; empty for the user's own files.
    #[serde(default)]
    pub(super) drive: String,
    /// The `files.list` page token to read next; `None` for the first page.
    #[serde(default)]
    pub(super) page_token: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct Log {
    /// Directory id of the user the log is read as (empty: the connected user).
    pub(super) user: String,
    /// Shared drive id; empty for the user's own log.
    pub(super) drive: String,
    /// Page token to read from.
    pub(super) token: String,
    /// Read to its end in this round (a round ends when every log is).
    #[serde(default)]
    pub(super) read: bool,
}

impl Cursor {
    pub(super) fn encode(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|_| Error::Internal("cursor does not encode".into()))
    }
}
