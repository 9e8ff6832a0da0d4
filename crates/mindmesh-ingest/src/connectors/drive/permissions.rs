//! A file's permissions (`permissions.list`, or inline in its listing) and the grants they
//! give.

use super::*;

/// The permission fields read, inline in a file or from `permissions.list`.
pub(super) const PERMISSION_FIELDS: &str =
    "id,type,emailAddress,domain,role,allowFileDiscovery,deleted";

/// Reads files' permissions (`permissions.list`, every page), apart from the connector.
pub(super) struct PermissionReader {
    pub(super) http: Http,
    pub(super) drive: reqwest::Url,
    /// The files described in this sync ([`GoogleDrive::described`]).
    pub(super) described: Arc<std::sync::Mutex<HashMap<String, String>>>,
    /// Reads under way at once.
    pub(super) window: usize,
}

impl PermissionReader {
    /// Every permission of `file`, read as the identity of `tokens`.
    pub(super) async fn read(&self, tokens: &TokenSource, file: &str) -> Result<Vec<Permission>> {
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
    pub(super) async fn fill(
        &self,
        tokens: &TokenSource,
        drive: &str,
        files: &mut [File],
    ) -> Result<()> {
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

/// Whether the user whose listing had `file` may read its permissions.
pub(super) fn may_read_permissions(file: &File) -> bool {
    file.owned_by_me
        || file
            .capabilities
            .as_ref()
            .is_some_and(|c| c.can_share || c.can_edit)
}

/// The grants Drive permissions give: user, group, discoverable domain and anyone
/// permissions that are not deleted.
pub(super) fn grants(permissions: Vec<Permission>) -> Vec<SourceGrant> {
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

impl GoogleDrive {
    pub(super) async fn permissions(&self, user: &str, file: &str) -> Result<Vec<Permission>> {
        let tokens = self.tokens(user).await?;
        self.permission_reader().read(&tokens, file).await
    }

    /// What reads permissions in a task of its own.
    pub(super) fn permission_reader(&self) -> PermissionReader {
        PermissionReader {
            http: self.http.clone(),
            drive: self.endpoints.drive.clone(),
            described: Arc::clone(&self.described),
            window: self.concurrency * CALLS_PER_REQUEST,
        }
    }
}
