//! The directory (Admin SDK Directory API): users, groups and their members, and the
//! directory ids a whole-domain crawl impersonates users by.

use super::*;

impl GoogleDrive {
    /// The directory id of the user with `email`, if the directory has them.
    pub(super) async fn directory_id(&self, email: &str) -> Option<String> {
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
    pub(super) async fn crawl_users(&self) -> Result<Vec<String>> {
        match self.mode {
            Mode::User(_) => Ok(vec![String::new()]),
            Mode::Domain { .. } => {
                self.users_read().await?;
                Ok(self.directory.lock().await.keys().cloned().collect())
            }
        }
    }

    /// Returns once `principals` has read the directory's users.
    pub(super) async fn users_read(&self) -> Result<()> {
        self.users_known
            .subscribe()
            .wait_for(|known| *known)
            .await
            .map(|_| ())
            .map_err(|_| Error::Internal("google drive: the directory was dropped".into()))
    }

    /// Keeps the directory's users (by directory id), and the connected user's email if
    /// it is known, and lets a listing waiting for them begin.
    pub(super) async fn know_users(&self, directory: BTreeMap<String, String>) {
        let mut known = self.directory.lock().await;
        let connected = known.remove("");
        *known = directory;
        if let Some(email) = connected {
            known.insert(String::new(), email);
        }
        drop(known);
        self.users_known.send_replace(true);
    }

    /// The directory's users, groups and memberships (`users.list`, `groups.list`,
    /// `members.list`), nested groups included.
    pub(super) async fn read_principals(&self) -> Result<Principals> {
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
}
