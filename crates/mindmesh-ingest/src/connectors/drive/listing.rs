//! Full listings (`files.list`), one per user and shared drive in a whole-domain crawl,
//! and how a listed file becomes a source document.

use super::*;

/// Drive lists a file's permissions inline when the user may share it (not for items of
/// shared drives): then no `permissions.list` call is needed.
pub(super) const FILE_FIELDS: &str = "id,name,mimeType,version,modifiedTime,webViewLink,size,trashed,\
                           driveId,ownedByMe,owners(emailAddress),capabilities(canEdit,canShare),\
                           permissions(id,type,emailAddress,domain,role,allowFileDiscovery,deleted)";

/// A Drive file as a source document, or why it is not one.
pub(super) enum Listed {
    Document(Box<SourceDocument>),
    Skipped(Skipped),
    /// Not a document (a folder), or not this user's to describe.
    Ignored,
}

/// Why a listed file is no document, before anything is read for it: skipped with a
/// reason, or ignored (a folder).
pub(super) fn not_a_document(file: &File) -> Option<Listed> {
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
pub(super) fn described_at_version(described: &HashMap<String, String>, file: &File) -> bool {
    file.version
        .as_deref()
        .is_some_and(|v| !v.is_empty() && described.get(&file.id).map(String::as_str) == Some(v))
}

/// How well placed the user whose listing had `file` is to describe it, as
/// [`GoogleDrive::describe`] would: not at all unless they may read its permissions
/// (another user describes it), best with them inline (no call).
pub(super) fn describer_rank(file: &File) -> u8 {
    match (may_read_permissions(file), file.permissions.is_some()) {
        (false, _) => 0,
        (true, false) => 1,
        (true, true) => 2,
    }
}

impl GoogleDrive {
    /// Starts a full listing: the start tokens of every change log first, so that
    /// nothing changed during the listing is missed. Each user's files are one listing;
    /// each shared drive is listed once, as the first user found among its members. A
    /// listing's first page is asked for as soon as its own log's start token is known
    /// (for the listings the first page of the listing reads at once).
    pub(super) async fn start_listing(&self) -> Result<Cursor> {
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

    /// The read of `listing`'s page, the one under way if there is one. The task also
    /// reads the permissions of the files whose listing does not carry them (files in
    /// shared drives), so that a page of the listing goes on without a listing whose
    /// permission reads are still under way: it comes with a later page.
    pub(super) async fn listing_task(&self, listing: &Listing) -> Result<Task<FileList>> {
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

    /// Pages of the first listings at `cursor`, read side by side: those answered once
    /// most of them are (a listing still waiting out a `Retry-After` after that goes on
    /// in the background and comes with a later page). The next page of each listing is
    /// asked for as soon as its token is known.
    pub(super) async fn list_page(&self, mut cursor: Cursor) -> Result<Page> {
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
    pub(super) fn list_files_url(&self, listing: &Listing) -> reqwest::Url {
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
    pub(super) async fn describe_all(&self, files: Vec<(String, File)>) -> Result<Page> {
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

    pub(super) async fn describe(&self, user: &str, mut file: File) -> Result<Listed> {
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
}
