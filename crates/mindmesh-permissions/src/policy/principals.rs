//! Writing an integration's users, groups and memberships (`SyncPrincipals`): validated,
//! diffed against what the integration synced before, and applied in one transaction.

use super::*;

pub(super) fn validate_sync(
    users: &[SyncedUser],
    groups: &[SyncedGroup],
    memberships: &[Membership],
    integration: IntegrationId,
) -> Result<()> {
    if users.len() > MAX_SYNC_USERS {
        return Err(too_many("users", MAX_SYNC_USERS));
    }
    if groups.len() > MAX_SYNC_GROUPS {
        return Err(too_many("groups", MAX_SYNC_GROUPS));
    }
    if memberships.len() > MAX_SYNC_MEMBERSHIPS {
        return Err(too_many("memberships", MAX_SYNC_MEMBERSHIPS));
    }
    let mut user_ids = FxHashSet::default();
    for u in users {
        check_external_id("users.external_id", &u.external_id)?;
        if !user_ids.insert(u.external_id.as_str()) {
            return Err(Error::invalid("users.external_id", "appears twice"));
        }
        if !u.email.trim().is_empty() && !u.email.contains('@') {
            return Err(Error::invalid("users.email", "is not an email address"));
        }
        if u.display_name.chars().count() > 500 {
            return Err(Error::invalid(
                "users.display_name",
                "must be at most 500 characters",
            ));
        }
    }
    let mut group_ids = FxHashSet::default();
    for g in groups {
        check_external_id("groups.external_id", &g.external_id)?;
        if !group_ids.insert(g.external_id.as_str()) {
            return Err(Error::invalid("groups.external_id", "appears twice"));
        }
        if g.name.chars().count() > 500 {
            return Err(Error::invalid(
                "groups.name",
                "must be at most 500 characters",
            ));
        }
    }
    for m in memberships {
        debug_assert_eq!(m.integration, integration);
        if !group_ids.contains(m.group.as_str()) {
            return Err(Error::invalid(
                "memberships.group_external_id",
                "names a group not in this sync",
            ));
        }
        let known = if m.member_is_group {
            group_ids.contains(m.member.as_str())
        } else {
            user_ids.contains(m.member.as_str())
        };
        if !known {
            return Err(Error::invalid(
                "memberships.member_external_id",
                "names a member not in this sync",
            ));
        }
    }
    Ok(())
}

impl Policy {
    /// Replaces an integration's principals and memberships (users removed at the source
    /// lose access at once). Writes only what changed since the set this replica knows,
    /// when the database confirms that set is still current (see [`crate::sync`]).
    /// Returns the new revision.
    pub async fn sync_principals(
        &self,
        tenant: TenantId,
        integration: IntegrationId,
        users: Vec<SyncedUser>,
        groups: Vec<SyncedGroup>,
        memberships: Vec<Membership>,
    ) -> Result<u64> {
        let started = std::time::Instant::now();
        validate_sync(&users, &groups, &memberships, integration)?;
        let keys = self.blind.keys(tenant).await?;
        let (_, data_key) = self
            .ctx
            .keystore
            .data_key(tenant, &KeyScope::Integration(integration.to_string()))
            .await?;

        // From here the source's ids are their pseudonyms (see `blind`): a source's id of
        // a person is often an email. Each id is sealed beside its principal.
        let pseudonyms: FxHashMap<&str, String> = users
            .iter()
            .map(|u| u.external_id.as_str())
            .chain(groups.iter().map(|g| g.external_id.as_str()))
            .map(|id| (id, keys.principal(integration, id)))
            .collect();
        let pseudonym = |id: &str| {
            pseudonyms
                .get(id)
                .cloned()
                .unwrap_or_else(|| keys.principal(integration, id))
        };

        // The desired state: (kind, pseudonym) → (email, name, fingerprint, source id),
        // and the edges.
        let mut desired: FxHashMap<sync::PrincipalKey, (String, String, [u8; 32], String)> =
            FxHashMap::default();
        for (kind, id, email, name) in users
            .iter()
            .map(|u| ("user", &u.external_id, u.email.trim(), &u.display_name))
            .chain(
                groups
                    .iter()
                    .map(|g| ("group", &g.external_id, g.email.trim(), &g.name)),
            )
        {
            let pid = pseudonym(id);
            let print = sync::fingerprint(kind, &pid, email, name);
            desired.insert(
                (kind, pid),
                (email.to_owned(), name.clone(), print, id.clone()),
            );
        }
        let edges: FxHashSet<sync::Edge> = memberships
            .iter()
            .map(|m| (pseudonym(&m.group), pseudonym(&m.member), m.member_is_group))
            .collect();

        let slot = self.slot(tenant);
        let _writer = slot.writer.lock().await;
        let generation = principal_syncs::generation(&self.ctx.db, tenant, integration).await?;
        let cached = self
            .synced_set(tenant, integration)
            .filter(|s| s.generation == generation);
        let stored = match cached {
            Some(stored) => stored,
            None => Arc::new(sync::load(&self.ctx.db, &data_key, tenant, integration).await?),
        };
        let removed: Vec<&sync::PrincipalKey> = stored
            .principals
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .collect();
        let changed: Vec<&sync::PrincipalKey> = desired
            .iter()
            .filter(|(k, (_, _, print, _))| stored.principals.get(*k) != Some(print))
            .map(|(k, _)| k)
            .collect();
        let edges_removed: Vec<&sync::Edge> = stored.memberships.difference(&edges).collect();
        let edges_added: Vec<&sync::Edge> = edges.difference(&stored.memberships).collect();
        let work = removed.len() + changed.len() + edges_removed.len() + edges_added.len();
        // Rewriting everything is cheaper than many single-row statements.
        let mut wholesale = work * 2 > desired.len() + edges.len();

        let seal = |kind: &str, id: &str, column: &str, value: &str| {
            data_key.seal(
                &principal_aad(tenant, integration, kind, id, column),
                value.as_bytes(),
            )
        };
        let principal_row = |key: &sync::PrincipalKey| -> Result<graph::PrincipalRow> {
            let (kind, id) = key;
            let (email, name, _, source_id) = &desired[key];
            Ok(graph::PrincipalRow {
                kind,
                external_id: id.clone(),
                email_index: (!email.is_empty()).then(|| keys.email(email)),
                email_ct: if email.is_empty() {
                    None
                } else {
                    Some(seal(kind, id, "email", email)?)
                },
                name_ct: seal(kind, id, "name", name)?,
                external_id_ct: seal(kind, id, "external_id", source_id)?,
            })
        };

        // What the index needs to follow the diff (computed now, while the sets are
        // borrowed; used after commit).
        let engine_principal = |(kind, id): &sync::PrincipalKey| {
            let (email, _, _, _) = &desired[&(*kind, id.clone())];
            Principal {
                principal: PrincipalRef {
                    integration,
                    kind: graph::kind_of(kind),
                    external_id: id.clone(),
                },
                email_index: (!email.is_empty()).then(|| keys.email(email)),
            }
        };
        let engine_edge = |(group, member, is_group): &sync::Edge| Membership {
            integration,
            group: group.clone(),
            member: member.clone(),
            member_is_group: *is_group,
        };
        let diff = (!wholesale).then(|| {
            (
                changed
                    .iter()
                    .map(|k| engine_principal(k))
                    .collect::<Vec<_>>(),
                removed
                    .iter()
                    .map(|(k, id)| (graph::kind_of(k), id.clone()))
                    .collect::<Vec<_>>(),
                edges_added
                    .iter()
                    .map(|e| engine_edge(e))
                    .collect::<Vec<_>>(),
                edges_removed
                    .iter()
                    .map(|e| engine_edge(e))
                    .collect::<Vec<_>>(),
            )
        });

        let next_generation = uuid::Uuid::now_v7().to_string();
        let txn = self.ctx.db.begin().await?;
        if !principal_syncs::advance(
            &txn,
            tenant,
            integration,
            generation.as_deref(),
            &next_generation,
        )
        .await?
        {
            // Another replica synced in between: our diff base is stale.
            wholesale = true;
            principal_syncs::force(&txn, tenant, integration, &next_generation).await?;
        }
        let (principal_rows, edge_rows): (Vec<&sync::PrincipalKey>, Vec<&sync::Edge>) = if wholesale
        {
            for table in ["principals", "memberships"] {
                scope::delete(&txn, table, scope::integration(tenant, integration)).await?;
            }
            (desired.keys().collect(), edges.iter().collect())
        } else {
            for (kind, id) in removed.iter().chain(changed.iter()) {
                graph::delete_principal(&txn, tenant, integration, kind, id).await?;
            }
            for edge in &edges_removed {
                graph::delete_membership(&txn, tenant, integration, edge).await?;
            }
            (changed, edges_added)
        };
        let principal_rows = principal_rows
            .into_iter()
            .map(principal_row)
            .collect::<Result<Vec<_>>>()?;
        graph::insert_principals(&txn, tenant, integration, principal_rows).await?;
        graph::insert_memberships(&txn, tenant, integration, edge_rows).await?;
        let revision = revision::bump(&txn, tenant).await?;
        txn.commit().await?;
        self.remember_synced(
            tenant,
            integration,
            sync::StoredSet {
                generation: Some(next_generation),
                principals: desired
                    .iter()
                    .map(|(k, (_, _, print, _))| (k.clone(), *print))
                    .collect(),
                memberships: edges,
            },
        );

        let mut guard = slot.index.write().map_err(|_| poisoned())?;
        match (guard.as_mut(), diff) {
            (Some(index), Some((upserted, gone, added, cut)))
                if !wholesale && slot.patchable() && index.revision() + 1 == revision =>
            {
                index.apply_principal_changes(integration, upserted, gone, added, cut, revision);
            }
            (Some(index), _) if slot.patchable() && index.revision() + 1 == revision => {
                let principals = desired.keys().map(engine_principal).collect();
                index.set_principals(integration, principals, memberships, revision);
            }
            // Another replica wrote in between: reload on the next read.
            _ => *guard = None,
        }
        drop(guard);
        tracing::info!(tenant_id = %tenant, integration_id = %integration, users = users.len(), groups = groups.len(), changed = work, wholesale, revision, elapsed_ms = started.elapsed().as_millis() as u64, "principals synced");
        Ok(revision)
    }

    pub(super) fn synced_set(
        &self,
        tenant: TenantId,
        integration: IntegrationId,
    ) -> Option<Arc<sync::StoredSet>> {
        self.synced
            .lock()
            .ok()?
            .get(&(tenant, integration))
            .cloned()
    }

    pub(super) fn remember_synced(
        &self,
        tenant: TenantId,
        integration: IntegrationId,
        set: sync::StoredSet,
    ) {
        if let Ok(mut synced) = self.synced.lock() {
            synced.insert((tenant, integration), Arc::new(set));
        }
    }

    pub(super) fn forget_synced(&self, tenant: TenantId) {
        if let Ok(mut synced) = self.synced.lock() {
            synced.retain(|(t, _), _| *t != tenant);
        }
    }
}
