//! The Drive and Directory APIs' JSON, as far as Mindmesh reads it (only the fields it
//! uses; the rest is ignored).

use chrono::{DateTime, Utc};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UserList {
    #[serde(default)]
    pub(super) users: Vec<DirUser>,
    pub(super) next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DirUser {
    pub(super) id: String,
    pub(super) primary_email: String,
    #[serde(default)]
    pub(super) name: Option<DirName>,
    #[serde(default)]
    pub(super) suspended: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DirName {
    #[serde(default)]
    pub(super) full_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GroupList {
    #[serde(default)]
    pub(super) groups: Vec<DirGroup>,
    pub(super) next_page_token: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct DirGroup {
    pub(super) id: String,
    pub(super) email: String,
    #[serde(default)]
    pub(super) name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct MemberList {
    #[serde(default)]
    pub(super) members: Vec<DirMember>,
    pub(super) next_page_token: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct DirMember {
    #[serde(default)]
    pub(super) email: String,
    #[serde(rename = "type", default)]
    pub(super) kind: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct FileList {
    #[serde(default)]
    pub(super) files: Vec<File>,
    pub(super) next_page_token: Option<String>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct File {
    pub(super) id: String,
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) mime_type: String,
    #[serde(default)]
    pub(super) version: Option<String>,
    #[serde(default)]
    pub(super) modified_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(super) web_view_link: String,
    #[serde(default)]
    pub(super) size: Option<String>,
    #[serde(default)]
    pub(super) trashed: bool,
    /// The shared drive the file is in, if it is in one.
    #[serde(default)]
    pub(super) drive_id: Option<String>,
    #[serde(default)]
    pub(super) owned_by_me: bool,
    #[serde(default)]
    pub(super) owners: Vec<Owner>,
    #[serde(default)]
    pub(super) capabilities: Option<Capabilities>,
    #[serde(default)]
    pub(super) permissions: Option<Vec<Permission>>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Owner {
    #[serde(default)]
    pub(super) email_address: String,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Capabilities {
    #[serde(default)]
    pub(super) can_edit: bool,
    #[serde(default)]
    pub(super) can_share: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PermissionList {
    #[serde(default)]
    pub(super) permissions: Vec<Permission>,
    pub(super) next_page_token: Option<String>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Permission {
    #[serde(rename = "type")]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) email_address: String,
    #[serde(default)]
    pub(super) domain: String,
    #[serde(default)]
    pub(super) role: String,
    #[serde(default)]
    pub(super) allow_file_discovery: bool,
    #[serde(default)]
    pub(super) deleted: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StartToken {
    pub(super) start_page_token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DriveList {
    #[serde(default)]
    pub(super) drives: Vec<SharedDrive>,
    pub(super) next_page_token: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct SharedDrive {
    pub(super) id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ChangeList {
    #[serde(default)]
    pub(super) changes: Vec<Change>,
    pub(super) next_page_token: Option<String>,
    pub(super) new_start_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Change {
    #[serde(default)]
    pub(super) file_id: String,
    #[serde(default)]
    pub(super) removed: bool,
    #[serde(default)]
    pub(super) file: Option<File>,
}
