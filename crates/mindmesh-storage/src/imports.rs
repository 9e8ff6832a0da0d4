//! What ingest imports, written as it streams in: documents gathered into batches (few
//! round trips per document, bounded memory), each batch written while the next one
//! arrives, and only for integrations of the tenant that are still connected (a
//! disconnected one's documents are erased, and none is stored again).
//!
//! The next batch is written only after the previous one committed, so each sees what
//! came before it. A write is a task of the service (shutdown waits for it), and
//! [`Imports::finish`] returns only once every write is done, whatever ended the stream:
//! nothing outlives the call that imported.

use std::collections::BTreeSet;

use mindmesh_kit::ids::{IntegrationId, TenantId};
use mindmesh_kit::integrations::Integrations;
use mindmesh_kit::{Error, Result};
use tokio_util::task::TaskTracker;

use crate::documents::{Documents, NewDocument, Origin, PutOutcome};

/// Documents written per transaction.
pub const BATCH_DOCUMENTS: usize = 500;
/// Content bytes gathered before a batch is written.
pub const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// What became of one imported document: the source's id and the outcome.
pub type Imported = (String, PutOutcome);

/// One import of `tenant`'s documents.
pub struct Imports {
    documents: Documents,
    integrations: Integrations,
    tasks: TaskTracker,
    tenant: TenantId,
    batch: Vec<NewDocument>,
    batch_bytes: usize,
    writing: Option<tokio::task::JoinHandle<Result<Vec<Imported>>>>,
    done: Vec<Imported>,
}

impl Imports {
    /// An import into `documents`, for the connected `integrations`, its writes tracked
    /// by `tasks`.
    pub fn new(
        documents: Documents,
        integrations: Integrations,
        tasks: TaskTracker,
        tenant: TenantId,
    ) -> Self {
        Imports {
            documents,
            integrations,
            tasks,
            tenant,
            batch: Vec::new(),
            batch_bytes: 0,
            writing: None,
            done: Vec::new(),
        }
    }

    /// Adds `doc`; writes the batch once it is full (after the previous write is done).
    pub async fn push(&mut self, doc: NewDocument) -> Result<()> {
        self.batch_bytes += doc.content.len();
        self.batch.push(doc);
        if self.batch.len() >= BATCH_DOCUMENTS || self.batch_bytes >= BATCH_BYTES {
            if let Some(previous) = self.writing.take() {
                self.done.extend(finished(previous).await?);
            }
            let docs = std::mem::take(&mut self.batch);
            let (documents, integrations, tenant) = (
                self.documents.clone(),
                self.integrations.clone(),
                self.tenant,
            );
            self.writing = Some(
                self.tasks
                    .spawn(async move { write(&documents, &integrations, tenant, docs).await }),
            );
            self.batch_bytes = 0;
        }
        Ok(())
    }

    /// Waits for the write in flight and, when the stream was read to its end
    /// (`complete`), writes the rest; returns what became of every document written.
    /// When it was not, the write in flight still finishes, and the rest is dropped.
    pub async fn finish(mut self, complete: bool) -> Result<Vec<Imported>> {
        let previous = match self.writing.take() {
            Some(previous) => Some(finished(previous).await),
            None => None,
        };
        if !complete {
            return Ok(self.done);
        }
        if let Some(previous) = previous {
            self.done.extend(previous?);
        }
        let rest = std::mem::take(&mut self.batch);
        self.done
            .extend(write(&self.documents, &self.integrations, self.tenant, rest).await?);
        Ok(self.done)
    }
}

/// Writes `docs`, each of a connected integration of `tenant`.
async fn write(
    documents: &Documents,
    integrations: &Integrations,
    tenant: TenantId,
    docs: Vec<NewDocument>,
) -> Result<Vec<Imported>> {
    let of: BTreeSet<IntegrationId> = docs
        .iter()
        .filter_map(|d| match &d.origin {
            Origin::Imported { integration, .. } => Some(*integration),
            Origin::Native { .. } => None,
        })
        .collect();
    integrations
        .require_writable(tenant, &of, "header.integration_id")
        .await?;
    let external: Vec<String> = docs
        .iter()
        .map(|d| match &d.origin {
            Origin::Imported { external_id, .. } => external_id.clone(),
            Origin::Native { .. } => String::new(),
        })
        .collect();
    let outcomes = documents.put_batch(tenant, docs).await?;
    Ok(external.into_iter().zip(outcomes).collect())
}

/// The results of a batch written in the background.
async fn finished(task: tokio::task::JoinHandle<Result<Vec<Imported>>>) -> Result<Vec<Imported>> {
    task.await
        .map_err(|e| Error::Internal(format!("a document batch write stopped: {e}")))?
}
