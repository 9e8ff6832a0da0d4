//! The sync engine: one sync per integration at a time, on schedule, on request
//! (`SyncIntegration`, `NotifyChange`), at most `ingest.max_concurrent_syncs` at once.
//!
//! A sync holds a lease on its integration (so replicas never sync one integration
//! twice), reads every principal and hands them to permissions, then applies the
//! source's pages one by one: content fetched with bounded concurrency only for new or
//! changed versions and streamed to storage, grants set in permissions, deletions and
//! lost access removed. After each page the items and the connector's cursor are
//! committed together, so a sync stopped anywhere resumes at the page that was in
//! flight. A full listing bumps a generation; what it did not see is removed once every
//! page of the sync is applied (a sweep recorded as due, so a stopped sync leaves it to
//! the next), so progress only moves forward: principals, documents, deletions, done.
//! A failed sync keeps its cursor and reports the error on `GetIntegration`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::{IntegrationId, TenantId};
use mindmesh_kit::{Error, Result};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::connector::{Connector, Credentials, Page, SourceDocument};
use crate::connectors::{self, Setup};
use crate::oauth::CredentialSink;
use crate::principals::KnownPrincipals;
use crate::sink::{Outcome, Sink};
use crate::store::{Item, ItemRecord, PageRecord, Store};

/// How long a lease lasts without renewal: how long a crashed sync keeps others out.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a running sync renews its lease (also before every page); when it cannot
/// (the integration is being disconnected), it stops at once.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How often the scheduler looks for due integrations (it is also woken on request).
const TICK: Duration = Duration::from_secs(10);
/// Items removed per step of a full listing's sweep.
const SWEEP_BATCH: u64 = 500;
/// Pages applied at once (committed in order).
const PAGES_APPLYING: usize = 4;
/// Lost items asked about at once.
const RECHECK_CONCURRENCY: usize = 8;
/// Content fetches under way per request the connector may have in flight.
const FETCHES_PER_REQUEST: usize = 32;

/// A sync's phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a slot.
    #[default]
    Queued,
    /// Reading users, groups and memberships.
    Principals,
    /// Reading documents and their grants.
    Documents,
    /// Removing what a full listing did not see.
    Deletions,
    /// Finished.
    Done,
    /// Failed; see `error`.
    Failed,
}

/// Where a running sync stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Phase.
    pub phase: Phase,
    /// Items done in this phase.
    pub done: u64,
    /// Items in this phase, where known (0: unknown).
    pub total: u64,
    /// Documents created.
    pub created: u64,
    /// Documents updated.
    pub updated: u64,
    /// Documents deleted.
    pub deleted: u64,
    /// Documents skipped (archived, unchanged, or unusable with a recorded reason).
    pub skipped: u64,
    /// Why it failed, without secrets.
    pub error: String,
}

impl Progress {
    /// True once the sync has ended.
    pub fn finished(&self) -> bool {
        matches!(self.phase, Phase::Done | Phase::Failed)
    }
}

/// Where a sync's time went (logged when it finishes).
#[derive(Debug, Default)]
struct Timings {
    /// Reading principals and handing them to permissions.
    principals: Duration,
    /// Waiting for the source's pages (listings, change logs, grants); the next page is
    /// read while the current one is applied, so only what was not hidden counts.
    listing: Duration,
    /// Fetching contents and storing them (overlapped: storage encrypts and writes
    /// while the next contents arrive).
    content_and_store: Duration,
    /// Setting grants in permissions.
    grants: Duration,
    /// Removing deleted documents.
    deletions: Duration,
    /// Ingest's own bookkeeping (items, cursor).
    bookkeeping: Duration,
}

impl Timings {
    /// Adds the time one page's application spent.
    fn add(&mut self, page: &Timings) {
        self.principals += page.principals;
        self.listing += page.listing;
        self.content_and_store += page.content_and_store;
        self.grants += page.grants;
        self.deletions += page.deletions;
        self.bookkeeping += page.bookkeeping;
    }
}

/// `work`'s result, its time added to `into`.
async fn timed<T>(into: &mut Duration, work: impl std::future::Future<Output = T>) -> T {
    let start = std::time::Instant::now();
    let out = work.await;
    *into += start.elapsed();
    out
}

struct Running {
    progress: watch::Receiver<Progress>,
    cancel: CancellationToken,
    /// It re-reads everything (ignoring the checkpoint).
    full: bool,
}

/// Runs and schedules syncs.
pub struct Engine {
    store: Store,
    sink: Sink,
    setup: Setup,
    ctx: ServiceContext,
    /// This replica's name in leases.
    owner: String,
    running: Mutex<HashMap<IntegrationId, Running>>,
    slots: Arc<Semaphore>,
    wake: Notify,
}

impl Engine {
    /// An engine over the service's store, writing through `sink`.
    pub fn new(ctx: ServiceContext, store: Store, sink: Sink, setup: Setup) -> Arc<Self> {
        Arc::new(Engine {
            slots: Arc::new(Semaphore::new(ctx.config.ingest.max_concurrent_syncs)),
            owner: uuid::Uuid::new_v4().to_string(),
            running: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            store,
            sink,
            setup,
            ctx,
        })
    }

    /// Starts a sync of `id` (or joins the one running in this process) and returns its
    /// progress. A full sync asked for while an incremental one runs is refused rather
    /// than quietly joined: the caller asks again once it has finished.
    pub fn sync(
        self: &Arc<Self>,
        tenant: TenantId,
        id: IntegrationId,
        full: bool,
    ) -> Result<watch::Receiver<Progress>> {
        let mut running = self.running();
        if let Some(r) = running.get(&id) {
            if full && !r.full {
                return Err(Error::FailedPrecondition(
                    "full: an incremental sync of this integration is running; ask for the full \
                     sync when it has finished"
                        .into(),
                ));
            }
            return Ok(r.progress.clone());
        }
        let (tx, rx) = watch::channel(Progress::default());
        let cancel = self.ctx.shutdown.child_token();
        running.insert(
            id,
            Running {
                progress: rx.clone(),
                cancel: cancel.clone(),
                full,
            },
        );
        let engine = Arc::clone(self);
        // One span per sync (exported with the service's traces), its own root: a sync
        // outlives the request that started it.
        let span = tracing::info_span!(
            parent: None,
            "sync",
            tenant_id = %tenant,
            integration_id = %id,
            full
        );
        self.ctx.tasks.spawn(
            async move {
                let outcome = async {
                    let _slot = engine
                        .slots
                        .acquire()
                        .await
                        .map_err(|_| Error::Unavailable("the service is stopping".into()))?;
                    engine.run(tenant, id, full, &tx, &cancel).await
                }
                .await;
                let mut last = tx.borrow().clone();
                match outcome {
                    Ok(()) => last.phase = Phase::Done,
                    Err(e) => {
                        last.phase = Phase::Failed;
                        last.error = e.to_string();
                    }
                }
                // Out of the map first, so that a new request after this one starts afresh.
                engine.running().remove(&id);
                tx.send_replace(last);
            }
            .instrument(span),
        );
        Ok(rx)
    }

    /// Stops the sync of `id` running in this process, if any, and waits until it ended.
    pub async fn stop(&self, id: IntegrationId) {
        let running = self
            .running()
            .get(&id)
            .map(|r| (r.cancel.clone(), r.progress.clone()));
        if let Some((cancel, mut progress)) = running {
            cancel.cancel();
            let _ = progress.wait_for(Progress::finished).await;
        }
    }

    /// The syncs running in this process. A poisoned lock still guards a consistent map
    /// (every change is one insert or one remove), so it is used as it is.
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<IntegrationId, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the scheduler (a sync was requested).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs the schedule until shutdown: every due integration is synced.
    pub fn spawn_scheduler(self: &Arc<Self>) {
        let engine = Arc::clone(self);
        let interval = chrono::Duration::seconds(
            i64::try_from(self.ctx.config.ingest.sync_interval_secs).unwrap_or(i64::MAX / 2),
        );
        let shutdown = self.ctx.shutdown.clone();
        self.ctx.tasks.spawn(async move {
            // A sync resumed at start calls permissions and storage: not before they serve.
            engine.ctx.in_process.serving().await;
            loop {
                match engine.store.due(chrono::Utc::now() - interval).await {
                    Ok(due) => {
                        for (tenant, id) in due {
                            let running = engine.running().contains_key(&id);
                            if !running {
                                // Not running here, so an incremental sync always starts.
                                drop(engine.sync(tenant, id, false));
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "looking for due syncs failed"),
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = engine.wake.notified() => {}
                    () = tokio::time::sleep(TICK) => {}
                }
            }
        });
    }

    async fn run(
        &self,
        tenant: TenantId,
        id: IntegrationId,
        full: bool,
        progress: &watch::Sender<Progress>,
        cancel: &CancellationToken,
    ) -> Result<()> {
        if !self.renew(id).await? {
            // Not ours to run: nothing is recorded on the integration.
            return Err(Error::FailedPrecondition(
                "a sync of this integration is already running, or it is being disconnected".into(),
            ));
        }
        // The lease is renewed while the sync runs; losing it (a disconnect, here or on
        // another replica) stops the sync where it is: what it had not committed is
        // erased with the rest, or fetched again by the next sync.
        let lease_lost = async {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                match self.renew(id).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(integration_id = %id, error = %e, "renewing the sync lease failed; will retry")
                    }
                }
            }
        };
        let result = tokio::select! {
            result = self.run_leased(tenant, id, full, progress, cancel) => result,
            () = lease_lost => {
                cancel.cancel();
                Err(Error::FailedPrecondition("the integration is being disconnected".into()))
            }
        };
        let recorded = match &result {
            Ok(()) => self.store.finish(id, "").await,
            // Stopped (shutdown, disconnect): not a failure of the integration.
            Err(_) if cancel.is_cancelled() => Ok(()),
            Err(e) => {
                tracing::warn!(tenant_id = %tenant, integration_id = %id, error = %e, "sync failed");
                self.store.finish(id, &e.to_string()).await
            }
        };
        let released = self.store.release(id, &self.owner).await;
        result.and(recorded).and(released)
    }

    async fn renew(&self, id: IntegrationId) -> Result<bool> {
        let until = chrono::Utc::now()
            + chrono::Duration::from_std(LEASE).unwrap_or(chrono::Duration::minutes(2));
        self.store.claim(id, &self.owner, until).await
    }

    async fn run_leased(
        &self,
        tenant: TenantId,
        id: IntegrationId,
        full: bool,
        progress: &watch::Sender<Progress>,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        self.store.clear_request(id).await?;
        let integration = self.store.get(tenant, id).await?;
        let credentials = self.store.credentials(tenant, id).await?;
        let saver = Arc::new(SaveCredentials {
            store: self.store.clone(),
            tenant,
            id,
        });
        let connector = connectors::open(
            &self.setup,
            tenant,
            &integration.kind,
            &integration.settings,
            credentials,
            saver,
        )?;

        let mut position = self.store.position(tenant, id, full).await?;
        if position.cursor.is_none() {
            position.generation += 1;
            self.store.start_listing(id, position.generation).await?;
        }
        // A connector that can read its first page while its principals are read does.
        let early = connector
            .pages_beside_principals()
            .then(|| Prefetch::start(Arc::clone(&connector), position.cursor.clone()));

        progress.send_modify(|p| p.phase = Phase::Principals);
        let mut timings = Timings::default();
        let principal_start = std::time::Instant::now();
        let principals = stopped_or(cancel, connector.principals()).await?;
        let count = (principals.users.len() + principals.groups.len()) as u64;
        let outsiders = self.store.outsiders(tenant, id).await?;
        let mut known_principals = KnownPrincipals::new(principals, outsiders);
        self.sink
            .principals(tenant, id, known_principals.handed_over())
            .await?;
        timings.principals = principal_start.elapsed();
        progress.send_modify(|p| {
            p.done = count;
            p.total = count;
        });

        progress.send_modify(|p| {
            p.phase = Phase::Documents;
            p.done = 0;
            p.total = 0;
        });
        let mut seen_cursors: HashSet<String> = HashSet::new();
        let mut pages = 0u64;
        // Pages are read from the source one after the other, each as soon as the
        // previous one's cursor is known, and up to `PAGES_APPLYING` are applied at once
        // (a page waiting for its slowest content holds back none of the next), then
        // committed in order. A page sharing an item with a page being applied, or
        // starting a new listing, waits until those are committed.
        let known_principals = Mutex::new(known_principals);
        let mut reading: Option<Prefetch> =
            Some(early.unwrap_or_else(|| {
                Prefetch::start(Arc::clone(&connector), position.cursor.clone())
            }));
        let mut read_from_cursor = position.cursor.is_some();
        let mut waiting: Option<(Page, bool)> = None;
        let mut applying = futures::stream::FuturesOrdered::new();
        let mut applying_ids: std::collections::VecDeque<HashSet<String>> =
            std::collections::VecDeque::new();
        // Applied pages, in order, waiting to be committed.
        let mut applied: std::collections::VecDeque<Result<(PageRecord, Timings)>> =
            std::collections::VecDeque::new();
        loop {
            if cancel.is_cancelled() {
                return Err(Error::Unavailable("the sync was stopped".into()));
            }
            // The pages being applied go on while this waits on the database (they may
            // hold one of its connections).
            let renewed = while_applying(&mut applying, &mut applied, self.renew(id)).await?;
            if !renewed {
                // Being disconnected: a stop, not a failure of the integration.
                cancel.cancel();
                return Err(Error::FailedPrecondition(
                    "the integration is being disconnected".into(),
                ));
            }
            while let Some(next) = applied.pop_front() {
                let (record, spent) = next?;
                applying_ids.pop_front();
                timings.add(&spent);
                let start = std::time::Instant::now();
                while_applying(
                    &mut applying,
                    &mut applied,
                    self.store.commit_page(tenant, id, &record),
                )
                .await?;
                timings.bookkeeping += start.elapsed();
                tracing::debug!(
                    integration_id = %id,
                    items = record.items.len(),
                    at_ms = started.elapsed().as_millis() as u64,
                    "page committed"
                );
            }
            if let Some((page, after_cursor)) = waiting.take() {
                let ids = page_ids(&page);
                let restarts = page.new_listing && after_cursor;
                let overlaps = applying_ids.iter().any(|a| !a.is_disjoint(&ids));
                if (restarts || overlaps) && !applying_ids.is_empty() {
                    waiting = Some((page, after_cursor));
                } else {
                    if restarts {
                        position.generation += 1;
                        self.store.start_listing(id, position.generation).await?;
                    }
                    let generation = position.generation;
                    let connector = Arc::clone(&connector);
                    let known_principals = &known_principals;
                    applying_ids.push_back(ids);
                    applying.push_back(async move {
                        let mut spent = Timings::default();
                        let mut record = self
                            .apply(
                                tenant,
                                id,
                                connector.as_ref(),
                                &page,
                                generation,
                                full,
                                known_principals,
                                progress,
                                &mut spent,
                            )
                            .await?;
                        if page.listing_complete {
                            // What the listing did not see goes once every page is
                            // applied; recorded with this page, so that a sync stopped
                            // before then leaves it due.
                            record.sweep_due = Some(generation);
                        }
                        record.cursor = page.cursor.clone();
                        Ok::<_, Error>((record, spent))
                    });
                }
            }
            if applying_ids.is_empty() && waiting.is_none() && reading.is_none() {
                break;
            }
            let may_read = waiting.is_none() && applying_ids.len() < PAGES_APPLYING;
            tokio::select! {
                () = cancel.cancelled() => {
                    return Err(Error::Unavailable("the sync was stopped".into()));
                }
                read = async {
                    match reading.as_mut() {
                        Some(next) => next.page().await,
                        None => std::future::pending().await,
                    }
                }, if may_read && reading.is_some() => {
                    reading = None;
                    let (page, took) = read?;
                    timings.listing += took;
                    pages += 1;
                    tracing::debug!(
                        integration_id = %id,
                        page = pages,
                        documents = page.documents.len(),
                        removed = page.removed.len() + page.lost.len(),
                        read_ms = took.as_millis() as u64,
                        at_ms = started.elapsed().as_millis() as u64,
                        "page read"
                    );
                    if let (Some(next), true) = (&page.cursor, page.more) {
                        // A source that hands out a cursor twice in one sync would never end.
                        if !seen_cursors.insert(next.clone()) {
                            return Err(Error::Unavailable(format!(
                                "{}: the source returned a page token it had returned before (a loop)",
                                integration.kind
                            )));
                        }
                        reading = Some(Prefetch::start(Arc::clone(&connector), Some(next.clone())));
                    }
                    waiting = Some((page, read_from_cursor));
                    read_from_cursor = true;
                }
                Some(done) = applying.next(), if !applying.is_empty() => {
                    applied.push_back(done);
                }
            }
        }
        drop(applying);
        let mut known_principals = known_principals
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        if known_principals.grown() {
            // Grants named people outside the directory: they are principals now.
            timed(
                &mut timings.principals,
                self.sink
                    .principals(tenant, id, known_principals.handed_over()),
            )
            .await?;
        }
        if let Some(generation) = self.store.sweep_due(id).await? {
            timed(
                &mut timings.deletions,
                self.sweep(tenant, id, generation, progress),
            )
            .await?;
            self.store.swept(id, generation).await?;
        }
        let p = progress.borrow().clone();
        tracing::info!(
            tenant_id = %tenant,
            integration_id = %id,
            pages,
            created = p.created,
            updated = p.updated,
            deleted = p.deleted,
            skipped = p.skipped,
            elapsed_ms = started.elapsed().as_millis() as u64,
            principals_ms = timings.principals.as_millis() as u64,
            listing_ms = timings.listing.as_millis() as u64,
            content_and_store_ms = timings.content_and_store.as_millis() as u64,
            grants_ms = timings.grants.as_millis() as u64,
            deletions_ms = timings.deletions.as_millis() as u64,
            bookkeeping_ms = timings.bookkeeping.as_millis() as u64,
            "sync finished"
        );
        Ok(())
    }

    /// Applies one page to storage and permissions; returns what to record.
    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        tenant: TenantId,
        id: IntegrationId,
        connector: &dyn Connector,
        page: &Page,
        generation: i64,
        full: bool,
        known_principals: &Mutex<KnownPrincipals>,
        progress: &watch::Sender<Progress>,
        timings: &mut Timings,
    ) -> Result<PageRecord> {
        let max_content = self.ctx.config.storage.max_content_bytes;
        let ids: Vec<String> = page
            .documents
            .iter()
            .map(|d| d.external_id.clone())
            .chain(page.removed.iter().cloned())
            .chain(page.lost.iter().cloned())
            .collect();
        let known = timed(&mut timings.bookkeeping, self.store.items(tenant, id, &ids)).await?;
        // What one identity lost may still be there for others: the source says which.
        let (rechecked, gone) =
            timed(&mut timings.listing, recheck(connector, &page.lost, &known)).await?;
        // A document listed twice in a page: the last listing wins.
        let mut documents: HashMap<&str, &SourceDocument> = HashMap::new();
        for doc in page.documents.iter().chain(&rechecked) {
            documents.insert(&doc.external_id, doc);
        }
        let mut record = PageRecord {
            generation,
            unchanged: page.unchanged.clone(),
            skipped: page
                .skipped
                .iter()
                .map(|s| (s.external_id.clone(), s.reason.clone()))
                .collect(),
            ..PageRecord::default()
        };
        let mut acls = Vec::new();
        let mut to_fetch = Vec::new();
        let mut unchanged = 0u64;
        for doc in documents.values() {
            match known.get(&doc.external_id) {
                // Stored already at this version (and, in a full sync, stored by this
                // listing): only its grants may have changed.
                Some(item)
                    if item.version == doc.version && (!full || item.generation == generation) =>
                {
                    acls.push((item.document, doc.grants.clone()));
                    record.items.push(ItemRecord {
                        external_id: doc.external_id.clone(),
                        group: doc.group.clone(),
                        document: item.document,
                        version: doc.version.clone(),
                        reference: doc.content_ref.clone(),
                    });
                    unchanged += 1;
                }
                _ if doc.size_hint.is_some_and(|s| s > max_content) => {
                    record.skipped.push((
                        doc.external_id.clone(),
                        format!("larger than storage.max_content_bytes ({max_content} bytes)"),
                    ));
                }
                _ => to_fetch.push(*doc),
            }
        }

        // Fetch with bounded concurrency, stream to storage as contents arrive.
        let (tx, rx) = mpsc::channel(self.ctx.config.ingest.fetch_concurrency);
        let fetch = async {
            let mut skipped = Vec::new();
            let fetches: Vec<_> = to_fetch
                .iter()
                .map(|doc| connector.content(doc).map(move |content| (*doc, content)))
                .collect();
            // More fetches under way than requests in flight (the connector's client
            // sends `fetch_concurrency` at once): one the source throttled waits for
            // its retry while the others go on.
            let mut contents = futures::stream::iter(fetches)
                .buffer_unordered(self.ctx.config.ingest.fetch_concurrency * FETCHES_PER_REQUEST);
            while let Some((doc, content)) = contents.next().await {
                match content {
                    Ok(content) if content.bytes.len() as u64 > max_content => {
                        skipped.push((
                            doc.external_id.clone(),
                            format!("larger than storage.max_content_bytes ({max_content} bytes)"),
                        ));
                    }
                    Ok(content) => {
                        if tx.send((doc.clone(), content)).await.is_err() {
                            break; // storage gave up; its error is reported
                        }
                    }
                    Err(e) if skippable(&e) => {
                        skipped.push((doc.external_id.clone(), e.to_string()));
                    }
                    Err(e) => return Err(e),
                }
            }
            drop(tx);
            Ok(skipped)
        };
        let (stored, fetched) = timed(&mut timings.content_and_store, async {
            tokio::join!(self.sink.put(tenant, id, rx), fetch)
        })
        .await;
        record.skipped.extend(fetched?);
        // One record per item (a source may report one twice): the last reason wins.
        let reasons: std::collections::BTreeMap<String, String> =
            std::mem::take(&mut record.skipped).into_iter().collect();
        record.skipped = reasons.into_iter().collect();
        let stored = stored?;

        let mut counts = (0u64, 0u64, unchanged + record.skipped.len() as u64);
        for s in &stored {
            let Some(doc) = documents.get(s.external_id.as_str()) else {
                return Err(Error::Internal(
                    "storage answered for a document not sent".into(),
                ));
            };
            match s.outcome {
                Outcome::Created => counts.0 += 1,
                Outcome::Updated => counts.1 += 1,
                Outcome::Unchanged | Outcome::SkippedArchived => counts.2 += 1,
            }
            match (s.outcome, s.document) {
                // An archived document keeps what it had (P07). It stays an item at the
                // version stored, so that once restored the next sync brings it up to
                // date, and a full listing does not take it for deleted.
                (Outcome::SkippedArchived, _) => {
                    if let Some(item) = known.get(&s.external_id) {
                        record.items.push(ItemRecord {
                            external_id: s.external_id.clone(),
                            group: doc.group.clone(),
                            document: item.document,
                            version: item.version.clone(),
                            reference: doc.content_ref.clone(),
                        });
                    }
                }
                (_, Some(document)) => {
                    acls.push((document, doc.grants.clone()));
                    record.items.push(ItemRecord {
                        external_id: s.external_id.clone(),
                        group: doc.group.clone(),
                        document,
                        version: doc.version.clone(),
                        reference: doc.content_ref.clone(),
                    });
                }
                (_, None) => {
                    return Err(Error::Internal(
                        "storage answered without a document id".into(),
                    ));
                }
            }
        }
        {
            let mut known_principals = known_principals.lock().unwrap_or_else(|e| e.into_inner());
            for (_, grants) in &acls {
                record
                    .outsiders
                    .extend(known_principals.learn(connector, grants));
            }
        }
        timed(&mut timings.grants, self.sink.acls(tenant, id, &acls)).await?;

        let mut deleted = 0u64;
        let deletions_start = std::time::Instant::now();
        // Several of a source's logs may report one removal.
        let removed: std::collections::BTreeSet<&String> =
            page.removed.iter().chain(&gone).collect();
        for external_id in removed {
            if let Some(item) = known.get(external_id) {
                self.sink.delete(tenant, item.document).await?;
                deleted += 1;
            }
            record.removed.push(external_id.clone());
        }
        timings.deletions += deletions_start.elapsed();
        // Which items, and why, is on GetIntegration; a source's ids (paths, titles) stay
        // out of the log.
        if !record.skipped.is_empty() {
            tracing::info!(tenant_id = %tenant, integration_id = %id, skipped = record.skipped.len(), "items skipped");
        }
        progress.send_modify(|p| {
            p.done += (page.documents.len() + page.removed.len() + page.lost.len()) as u64;
            p.total = p.total.max(page.total_hint.unwrap_or(0)).max(p.done);
            p.created += counts.0;
            p.updated += counts.1;
            p.skipped += counts.2;
            p.deleted += deleted;
        });
        Ok(record)
    }

    /// Removes from Mindmesh what the full listing `generation` did not see.
    async fn sweep(
        &self,
        tenant: TenantId,
        id: IntegrationId,
        generation: i64,
        progress: &watch::Sender<Progress>,
    ) -> Result<()> {
        progress.send_modify(|p| {
            p.phase = Phase::Deletions;
            p.done = 0;
            p.total = 0;
        });
        loop {
            let batch = self.store.unseen(id, generation, SWEEP_BATCH).await?;
            if batch.is_empty() {
                return Ok(());
            }
            for (_, item) in &batch {
                self.sink.delete(tenant, item.document).await?;
            }
            let gone: Vec<String> = batch.into_iter().map(|(e, _)| e).collect();
            self.store.forget_items(id, &gone).await?;
            progress.send_modify(|p| {
                p.done += gone.len() as u64;
                p.deleted += gone.len() as u64;
            });
        }
    }
}

/// The next page, read by a task of its own while the current one is applied; dropped
/// (a sync that stops or fails), the read is abandoned.
struct Prefetch(tokio::task::JoinHandle<Result<(Page, Duration)>>);

impl Prefetch {
    fn start(connector: Arc<dyn Connector>, cursor: Option<String>) -> Self {
        Prefetch(tokio::spawn(async move {
            let start = std::time::Instant::now();
            let page = connector.page(cursor.as_deref()).await?;
            Ok((page, start.elapsed()))
        }))
    }

    /// The page and how long reading it took.
    async fn page(&mut self) -> Result<(Page, Duration)> {
        (&mut self.0)
            .await
            .map_err(|_| Error::Internal("reading the next page stopped".into()))?
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `work`, while the pages in `applying` go on being applied (those that finish are
/// added to `applied`, in order).
async fn while_applying<T, F>(
    applying: &mut futures::stream::FuturesOrdered<F>,
    applied: &mut std::collections::VecDeque<F::Output>,
    work: impl std::future::Future<Output = T>,
) -> T
where
    F: std::future::Future,
{
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            Some(done) = applying.next(), if !applying.is_empty() => applied.push_back(done),
        }
    }
}

/// Every item a page touches.
fn page_ids(page: &Page) -> HashSet<String> {
    page.documents
        .iter()
        .map(|d| d.external_id.clone())
        .chain(page.removed.iter().cloned())
        .chain(page.lost.iter().cloned())
        .chain(page.skipped.iter().map(|s| s.external_id.clone()))
        .collect()
}

/// Asks the connector about each known item of `lost`: the documents still there (with
/// their grants as the source has them now), and the external ids gone for everyone.
/// Items never imported are neither; an item recorded without a reference can only be
/// taken for gone.
async fn recheck(
    connector: &dyn Connector,
    lost: &[String],
    known: &HashMap<String, Item>,
) -> Result<(Vec<SourceDocument>, Vec<String>)> {
    let mut asked: HashMap<String, String> = HashMap::new();
    for external_id in lost {
        if let Some(item) = known.get(external_id) {
            asked.insert(
                external_id.clone(),
                item.reference.clone().unwrap_or_default(),
            );
        }
    }
    let answers: Vec<Result<(String, Option<SourceDocument>)>> = futures::stream::iter(
        asked
            .into_iter()
            .map(|(external_id, reference)| async move {
                let now = if reference.is_empty() {
                    None
                } else {
                    connector.recheck(&external_id, &reference).await?
                };
                Ok((external_id, now))
            }),
    )
    .buffer_unordered(RECHECK_CONCURRENCY)
    .collect()
    .await;
    let (mut still, mut gone) = (Vec::new(), Vec::new());
    for answer in answers {
        match answer? {
            (_, Some(doc)) => still.push(doc),
            (external_id, None) => gone.push(external_id),
        }
    }
    Ok((still, gone))
}

/// Errors of one document that skip it rather than fail the sync.
fn skippable(e: &Error) -> bool {
    matches!(
        e,
        Error::InvalidArgument { .. } | Error::ResourceExhausted(_) | Error::NotFound(_)
    )
}

/// `work`, unless the sync is stopped first.
async fn stopped_or<T>(
    cancel: &CancellationToken,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        () = cancel.cancelled() => Err(Error::Unavailable("the sync was stopped".into())),
        r = work => r,
    }
}

/// Stores refreshed credentials of one integration, sealed.
struct SaveCredentials {
    store: Store,
    tenant: TenantId,
    id: IntegrationId,
}

#[async_trait::async_trait]
impl CredentialSink for SaveCredentials {
    async fn save(&self, credentials: &Credentials) -> Result<()> {
        self.store
            .save_credentials(self.tenant, self.id, credentials)
            .await
    }
}
