//! One page of a listing or a find, as a reader may see it: the permission filter
//! applied until the page is full, and where the next page starts.
//!
//! Candidates come a batch at a time — for a find, slices of one ranking (most matched
//! words, then newest), each kept to the documents still as indexed; for a listing, the
//! next keys of the newest-first order — and the permissions service filters each batch
//! for a member or admin until the page is full. A position names the candidate after
//! which the next page resumes, so a page never repeats or skips a readable document.

use std::collections::HashSet;

use mindmesh_kit::Result;
use mindmesh_kit::ids::{DocumentId, TenantId, UserId};

use crate::access::Gate;
use crate::documents::{Documents, Filter, ListPosition};

/// Ranked candidates checked (still current, then readable) per step of a find.
const FIND_FILTER_BATCH: usize = 2_000;

/// Where a page starts: after a listing's key, or after a find's `n` first candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// After this (modification time in µs, id) of the newest-first listing.
    List(ListPosition),
    /// After this many candidates of the ranking.
    Find(u64),
}

/// What a page is asked for.
pub struct PageRequest<'a> {
    /// Words to find; empty lists instead.
    pub query: &'a str,
    /// Which documents it covers.
    pub filter: &'a Filter,
    /// Most documents on the page.
    pub limit: u64,
    /// Where it starts (none: at the beginning); of the same kind as the request.
    pub from: Option<Position>,
}

/// A page: its documents in order, and where the next one starts (none: this was the
/// last).
pub struct Page {
    /// The documents.
    pub documents: Vec<DocumentId>,
    /// Where the next page starts.
    pub next: Option<Position>,
}

/// The page `request` asks for of `tenant`'s documents, as `user` may read them (every
/// document under the filter when `None`: a service or an admitted staff member).
pub async fn page(
    documents: &Documents,
    gate: &Gate,
    tenant: TenantId,
    user: Option<UserId>,
    request: PageRequest<'_>,
) -> Result<Page> {
    let PageRequest {
        query,
        filter,
        limit,
        from,
    } = request;
    let finding = !query.trim().is_empty();
    let batch = if finding {
        FIND_FILTER_BATCH
    } else {
        Ord::max(limit * 2, 100) as usize
    };
    let ranked = if finding {
        documents.rank(tenant, query).await?
    } else {
        Vec::new()
    };
    let mut page: Vec<DocumentId> = Vec::new();
    let mut next = None;
    let (mut after, mut offset) = match from {
        Some(Position::List(position)) => (Some(position), 0),
        Some(Position::Find(offset)) => (None, usize::try_from(offset).unwrap_or(usize::MAX)),
        None => (None, 0),
    };
    loop {
        // Each candidate with the position to resume after it.
        let candidates: Vec<(DocumentId, Position)> = if finding {
            let slice = &ranked[offset.min(ranked.len())..(offset + batch).min(ranked.len())];
            let current: HashSet<DocumentId> = documents
                .current(tenant, slice, filter)
                .await?
                .into_iter()
                .collect();
            let start = offset;
            offset += slice.len();
            slice
                .iter()
                .enumerate()
                .filter(|(_, c)| current.contains(&c.posting.document))
                .map(|(i, c)| (c.posting.document, Position::Find((start + i + 1) as u64)))
                .collect()
        } else {
            let listed = documents.list(tenant, filter, after, batch as u64).await?;
            if let Some(last) = listed.last() {
                after = Some(*last);
            }
            listed
                .into_iter()
                .map(|position| (position.1, Position::List(position)))
                .collect()
        };
        let exhausted = if finding {
            offset >= ranked.len()
        } else {
            candidates.len() < batch
        };
        let ids: Vec<DocumentId> = candidates.iter().map(|(id, _)| *id).collect();
        let readable: HashSet<DocumentId> = match user {
            Some(user) if !ids.is_empty() => gate
                .readable(tenant, user, &ids, 0)
                .await?
                .into_iter()
                .collect(),
            _ => ids.iter().copied().collect(),
        };
        let last = candidates.len();
        let mut full = false;
        for (i, (id, position)) in candidates.into_iter().enumerate() {
            if readable.contains(&id) {
                page.push(id);
                if page.len() as u64 == limit {
                    if !(exhausted && i + 1 == last) {
                        next = Some(position);
                    }
                    full = true;
                    break;
                }
            }
        }
        if full || exhausted {
            break;
        }
    }
    Ok(Page {
        documents: page,
        next,
    })
}
