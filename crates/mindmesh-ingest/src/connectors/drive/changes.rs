//! Change logs (`changes.getStartPageToken`, `changes.list`): the user's own and each
//! shared drive's, read from the tokens taken before the full listing.

use super::*;

/// A change log's page: (user, shared drive, page token).
pub(super) type LogPage = (String, String, String);

pub(super) fn log_page(log: &Log) -> LogPage {
    (log.user.clone(), log.drive.clone(), log.token.clone())
}

impl GoogleDrive {
    /// The start token of the change log of `listing` (the user's own, or the shared
    /// drive's); then, if `read_ahead`, the listing's first page is asked for.
    pub(super) async fn start_log(&self, listing: &Listing, read_ahead: bool) -> Result<String> {
        let drive = (!listing.drive.is_empty()).then_some(listing.drive.as_str());
        let token = self.start_token(&listing.user, drive).await?;
        if read_ahead {
            let task = self.listing_task(listing).await?;
            self.ahead().insert(listing.clone(), task);
        }
        Ok(token)
    }

    /// `changes.getStartPageToken` of `user`'s own log, or of a shared drive's.
    pub(super) async fn start_token(&self, user: &str, drive: Option<&str>) -> Result<String> {
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
    pub(super) async fn drives_of(&self, user: &str) -> Result<Vec<SharedDrive>> {
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

    /// The read of `log`'s page, the one under way if there is one.
    pub(super) async fn changes_task(&self, log: &Log) -> Result<Task<ChangeList>> {
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

    /// One `changes.list` page of each of the first change logs not read to their end
    /// in this round, side by side.
    pub(super) async fn changes_page(&self, mut cursor: Cursor) -> Result<Page> {
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
    pub(super) fn list_changes_url(&self, log: &Log) -> reqwest::Url {
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
}
