//! `StorageService`: the enforcement point of every read (P02). A member's or admin's
//! read goes through the permissions service first — a document they may not read is
//! NOT_FOUND, never PERMISSION_DENIED, so its existence does not leak. Services (ingest,
//! dsar) act for the whole tenant. Staff are admitted only under the tenant's consent
//! (P11): engineers see everything, support sees metadata without title, source id (a
//! path is a title), link or content, analysts see pseudonymized records; every staff
//! access is audited.

use mindmesh_kit::activity::ActivityReporter;
use mindmesh_kit::analytics::{Analytics, Usage};
use mindmesh_kit::auth::{Caller, Role};
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::crypto::pseudonym_uuid;
use mindmesh_kit::grpc::{from_timestamp, inbound, page_size, timestamp};
use mindmesh_kit::ids::{DocumentId, IntegrationId, TenantId, UserId};
use mindmesh_kit::integrations::Integrations;
use mindmesh_kit::tenants::Tenants;
use mindmesh_kit::{Error, Result};
use mindmesh_proto::mindmesh::storage::v1 as pb;
use tonic::{Request, Response, Status, Streaming};

use crate::access::{Gate, StaffView};
use crate::documents::{Document, Documents, Filter, NewDocument, Origin, PutOutcome, Read};
use crate::imports::Imports;
use crate::listing::{self, PageRequest, Position};

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 1_000;
/// Longest external id, source version, owner or MIME type, in bytes.
pub const MAX_ID_BYTES: usize = 1_024;
/// Longest source URL, in bytes.
pub const MAX_URL_BYTES: usize = 4_096;
/// Largest content chunk of a `PutDocuments` stream.
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;
/// Documents written per transaction by `PutDocuments`.
pub const PUT_BATCH_DOCUMENTS: usize = crate::imports::BATCH_DOCUMENTS;
/// Longest text query, in bytes.
pub const MAX_QUERY_BYTES: usize = 1_024;

/// Who is reading, once admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reader {
    /// Another Mindmesh service, acting for the whole tenant.
    Service,
    /// A member or admin: reads what the permissions service allows.
    User { user: UserId, admin: bool },
    /// A staff member admitted under consent.
    Staff(StaffView),
}

/// The storage service's gRPC face.
#[derive(Clone)]
pub struct StorageApi {
    ctx: ServiceContext,
    documents: Documents,
    gate: Gate,
    /// Writes are taken only for a tenant that exists and is not being deleted (P08).
    tenants: Tenants,
    /// Imported documents only for a connected integration of the caller's tenant.
    integrations: Integrations,
    /// A person reading or writing is activity (the inactivity clock, P09).
    activity: ActivityReporter,
    /// Searches and opened documents, pseudonymized, for the analytics processor (P14).
    analytics: Analytics,
}

impl StorageApi {
    /// The API over `documents`, asking permissions through `gate`, writing only for
    /// live `tenants` and connected `integrations`.
    pub fn new(
        ctx: ServiceContext,
        documents: Documents,
        gate: Gate,
        tenants: Tenants,
        integrations: Integrations,
        analytics: Analytics,
    ) -> Self {
        StorageApi {
            analytics,
            activity: ActivityReporter::new(ctx.service, ctx.db.clone(), ctx.relay.clone()),
            ctx,
            documents,
            gate,
            tenants,
            integrations,
        }
    }

    /// `user` of `tenant` did `kind`: told to the analytics processor, off the call's path.
    fn usage(&self, tenant: TenantId, user: UserId, kind: Usage) {
        if self.analytics.is_on() {
            let analytics = self.analytics.clone();
            tokio::spawn(async move {
                analytics
                    .record(tenant, Some(user), kind, chrono::Utc::now())
                    .await;
            });
        }
    }

    fn max_content(&self) -> u64 {
        self.ctx.config.storage.max_content_bytes
    }

    /// Who `caller` reads as. Staff are admitted (and audited) here, for `action`.
    async fn reader(
        &self,
        caller: &Caller,
        action: &str,
        subject: &str,
    ) -> Result<(TenantId, Reader)> {
        let tenant = caller.tenant()?;
        if caller.has(Role::Service) {
            return Ok((tenant, Reader::Service));
        }
        if caller.has_any(&[Role::Member, Role::Admin]) {
            let user = caller.subject.parse().map_err(|_| {
                Error::PermissionDenied("the token's subject is not a user id".into())
            })?;
            self.activity.saw(caller, "read").await;
            return Ok((
                tenant,
                Reader::User {
                    user,
                    admin: caller.has(Role::Admin),
                },
            ));
        }
        if caller.roles.iter().any(|r| r.is_staff()) {
            let view = self
                .gate
                .admit_staff(caller, tenant, action, subject)
                .await?;
            return Ok((tenant, Reader::Staff(view)));
        }
        Err(Error::PermissionDenied(
            "this call needs the member, admin or service role, or a consented staff role".into(),
        ))
    }

    /// The caller as a member or admin, for writes.
    fn writer(caller: &Caller) -> Result<(TenantId, UserId, bool)> {
        caller.require_any(&[Role::Member, Role::Admin])?;
        let user = caller
            .subject
            .parse()
            .map_err(|_| Error::PermissionDenied("the token's subject is not a user id".into()))?;
        Ok((caller.tenant()?, user, caller.has(Role::Admin)))
    }

    /// The document's metadata, if `user` may read it; NOT_FOUND otherwise.
    async fn readable_meta(
        &self,
        tenant: TenantId,
        user: UserId,
        id: DocumentId,
    ) -> Result<Document> {
        if !self.gate.check(tenant, user, id, 0).await? {
            return Err(Error::NotFound("document"));
        }
        let doc = self.documents.load(tenant, id, Read::MetadataOnly).await?;
        if doc.restricted {
            return Err(Error::NotFound("document"));
        }
        Ok(doc)
    }

    /// The document a change is about, with who acts: a service acts for the whole
    /// tenant (`None`); a member or admin must be able to read it (NOT_FOUND otherwise)
    /// and is returned with whether they are an admin, for the caller's own rule.
    async fn target(
        &self,
        caller: &Caller,
        id: DocumentId,
    ) -> Result<(TenantId, Document, Option<(UserId, bool)>)> {
        if caller.has(Role::Service) {
            let tenant = caller.tenant()?;
            self.tenants.require_live(tenant).await?;
            let doc = self.documents.load(tenant, id, Read::MetadataOnly).await?;
            return Ok((tenant, doc, None));
        }
        let (tenant, user, admin) = Self::writer(caller)?;
        self.tenants.require_live(tenant).await?;
        let doc = self.readable_meta(tenant, user, id).await?;
        Ok((tenant, doc, Some((user, admin))))
    }

    /// Whether `user` may change `doc` (archive, restore, update): admins may change
    /// any document they can read, the owner their native documents, and anyone a
    /// writer or owner grant reaches.
    async fn may_change(
        &self,
        tenant: TenantId,
        user: UserId,
        admin: bool,
        doc: &Document,
    ) -> Result<bool> {
        Ok(
            admin
                || is_native_owner(doc, user)
                || self.gate.may_write(tenant, user, doc.id).await?,
        )
    }

    async fn pseudonymizer(&self, tenant: TenantId) -> Result<mindmesh_kit::crypto::SecretKey> {
        self.ctx
            .keystore
            .index_key(tenant)
            .await?
            .derive("storage/analyst-pseudonyms")
    }

    /// The metadata `reader` may see of `doc`.
    async fn meta(&self, reader: Reader, doc: &Document) -> Result<pb::DocumentMeta> {
        let mut meta = to_meta(doc);
        match reader {
            Reader::Service | Reader::User { .. } | Reader::Staff(StaffView::Full) => {}
            // A source's id is often a path, which is the title (local folders, GitHub).
            Reader::Staff(StaffView::NoContent) => {
                meta.title.clear();
                meta.source_url.clear();
                meta.external_id.clear();
            }
            Reader::Staff(StaffView::Pseudonymized) => {
                let key = self.pseudonymizer(doc.tenant).await?;
                let pseudonym = |value: &str| {
                    if value.is_empty() {
                        String::new()
                    } else {
                        pseudonym_uuid(&key.mac(value.as_bytes())).to_string()
                    }
                };
                meta.id = pseudonym(&meta.id);
                meta.integration_id = pseudonym(&meta.integration_id);
                meta.owner = pseudonym(&meta.owner);
                meta.external_id = pseudonym(&meta.external_id);
                meta.source_version.clear();
                meta.title.clear();
                meta.source_url.clear();
            }
        }
        Ok(meta)
    }

    /// Writes a batch of a `PutDocuments` stream; returns its results in order.
    /// Reads the next imported document of a `PutDocuments` stream: its header, then
    /// exactly `size_bytes` of content in chunks. `None` at the end of the stream.
    async fn next_document(
        &self,
        stream: &mut Streaming<pb::PutDocumentsRequest>,
        pending: &mut Option<pb::DocumentHeader>,
        index: usize,
    ) -> std::result::Result<Option<(pb::DocumentHeader, Vec<u8>)>, Status> {
        let header = match pending.take() {
            Some(header) => header,
            None => match stream.message().await.map_err(inbound)? {
                None => return Ok(None),
                Some(pb::PutDocumentsRequest {
                    item: Some(pb::put_documents_request::Item::Header(header)),
                }) => header,
                Some(_) => {
                    return Err(Error::invalid(
                        "chunk",
                        format!("document {index}: content arrived before its header"),
                    )
                    .into());
                }
            },
        };
        check_header(&header, index, self.max_content())?;
        let size = usize::try_from(header.size_bytes).unwrap_or(usize::MAX);
        let mut content = Vec::with_capacity(size.min(MAX_CHUNK_BYTES));
        loop {
            match stream.message().await.map_err(inbound)? {
                None => break,
                Some(pb::PutDocumentsRequest { item: None }) => {
                    return Err(Error::invalid("item", "is required: a header or a chunk").into());
                }
                Some(pb::PutDocumentsRequest {
                    item: Some(pb::put_documents_request::Item::Header(next)),
                }) => {
                    *pending = Some(next);
                    break;
                }
                Some(pb::PutDocumentsRequest {
                    item: Some(pb::put_documents_request::Item::Chunk(chunk)),
                }) => {
                    if chunk.len() > MAX_CHUNK_BYTES {
                        return Err(Error::invalid(
                            "chunk",
                            format!("document {index}: chunks are at most {MAX_CHUNK_BYTES} bytes"),
                        )
                        .into());
                    }
                    if content.len() + chunk.len() > size {
                        return Err(Error::invalid(
                            "chunk",
                            format!(
                                "document {index}: more content than header.size_bytes ({size}) declared"
                            ),
                        )
                        .into());
                    }
                    content.extend_from_slice(&chunk);
                }
            }
        }
        if content.len() != size {
            return Err(Error::invalid(
                "chunk",
                format!(
                    "document {index}: {} bytes of content arrived, header.size_bytes declared {size}",
                    content.len()
                ),
            )
            .into());
        }
        Ok(Some((header, content)))
    }
}

fn is_native_owner(doc: &Document, user: UserId) -> bool {
    doc.integration.is_none() && doc.owner == user.to_string()
}

fn to_meta(doc: &Document) -> pb::DocumentMeta {
    pb::DocumentMeta {
        id: doc.id.to_string(),
        tenant_id: doc.tenant.to_string(),
        integration_id: doc.integration.map(|i| i.to_string()).unwrap_or_default(),
        external_id: doc.external_id.clone(),
        source_version: doc.source_version.clone(),
        title: doc.title.clone(),
        mime_type: doc.mime_type.clone(),
        source_url: doc.source_url.clone(),
        modified_at: Some(timestamp(doc.modified_at)),
        owner: doc.owner.clone(),
        size_bytes: doc.size_bytes,
        state: if doc.archived {
            pb::DocumentState::Archived
        } else {
            pb::DocumentState::Active
        }
        .into(),
    }
}

fn bounded(field: &'static str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(Error::invalid(field, format!("is longer than {max} bytes")));
    }
    Ok(())
}

fn check_title(field: &'static str, title: &str, required: bool) -> Result<()> {
    mindmesh_kit::validate::line(field, title, MAX_TITLE_CHARS, required).map(drop)
}

/// A MIME type, where one is given (empty: unknown, or the default).
fn check_mime_type(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Ok(());
    }
    mindmesh_kit::validate::mime_type(field, value)
}

fn too_large(field: &str, size: u64, max: u64) -> Error {
    Error::ResourceExhausted(format!(
        "{field}: {size} bytes is over the storage.max_content_bytes limit of {max} bytes"
    ))
}

fn check_header(header: &pb::DocumentHeader, index: usize, max_content: u64) -> Result<()> {
    let integration = IntegrationId::parse_field("header.integration_id", &header.integration_id)?;
    if integration.is_native() {
        return Err(Error::invalid(
            "header.integration_id",
            "the nil UUID is reserved for native documents",
        ));
    }
    if header.external_id.is_empty() {
        return Err(Error::invalid(
            "header.external_id",
            format!("document {index}: is required"),
        ));
    }
    if header.source_version.is_empty() {
        return Err(Error::invalid(
            "header.source_version",
            format!("document {index}: is required"),
        ));
    }
    bounded("header.external_id", &header.external_id, MAX_ID_BYTES)?;
    bounded(
        "header.source_version",
        &header.source_version,
        MAX_ID_BYTES,
    )?;
    check_mime_type("header.mime_type", &header.mime_type)?;
    bounded("header.owner", &header.owner, MAX_ID_BYTES)?;
    bounded("header.source_url", &header.source_url, MAX_URL_BYTES)?;
    if !header.source_url.is_empty() {
        mindmesh_kit::validate::url(
            "header.source_url",
            &header.source_url,
            mindmesh_kit::validate::UrlRule::SourceLink,
        )?;
    }
    check_title("header.title", &header.title, false)?;
    if header.size_bytes > max_content {
        return Err(too_large(
            "header.size_bytes",
            header.size_bytes,
            max_content,
        ));
    }
    Ok(())
}

fn document_id(value: &str) -> Result<DocumentId> {
    DocumentId::parse_field("document_id", value)
}

/// A page position as the API carries it (`page_token`): `t<µs>.<id>` after a listing's
/// key, `o<n>` after a find's first `n` candidates.
struct PageToken(Position);

impl PageToken {
    fn parse(token: &str, finding: bool) -> Result<Option<PageToken>> {
        if token.is_empty() {
            return Ok(None);
        }
        let bad = || {
            Error::invalid(
                "page_token",
                "is not a token this service issued for this query",
            )
        };
        let parsed = match (token.split_at_checked(1), finding) {
            (Some(("o", offset)), true) => Position::Find(offset.parse().map_err(|_| bad())?),
            (Some(("t", rest)), false) => {
                let (us, id) = rest.split_once('.').ok_or_else(bad)?;
                Position::List((
                    us.parse().map_err(|_| bad())?,
                    id.parse().map_err(|_| bad())?,
                ))
            }
            _ => return Err(bad()),
        };
        Ok(Some(PageToken(parsed)))
    }

    fn encode(&self) -> String {
        match self.0 {
            Position::List((us, id)) => format!("t{us}.{id}"),
            Position::Find(offset) => format!("o{offset}"),
        }
    }
}

#[tonic::async_trait]
impl pb::storage_service_server::StorageService for StorageApi {
    async fn put_documents(
        &self,
        request: Request<Streaming<pb::PutDocumentsRequest>>,
    ) -> std::result::Result<Response<pb::PutDocumentsResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        // The source's truth arrives from ingest only; people write native documents.
        caller.require_any(&[Role::Service])?;
        let tenant = caller.tenant()?;
        self.tenants.require_live(tenant).await?;
        let mut stream = request.into_inner();
        let mut pending = None;
        let mut index = 0;
        let mut imports = Imports::new(
            self.documents.clone(),
            self.integrations.clone(),
            self.ctx.tasks.clone(),
            tenant,
        );
        let received: std::result::Result<(), Status> = async {
            while let Some((header, content)) =
                self.next_document(&mut stream, &mut pending, index).await?
            {
                index += 1;
                let integration =
                    IntegrationId::parse_field("header.integration_id", &header.integration_id)?;
                let modified_at = match &header.modified_at {
                    Some(t) => from_timestamp("header.modified_at", t)?,
                    None => chrono::Utc::now(),
                };
                imports
                    .push(NewDocument {
                        origin: Origin::Imported {
                            integration,
                            external_id: header.external_id,
                            source_version: header.source_version,
                        },
                        title: header.title,
                        content,
                        mime_type: header.mime_type,
                        source_url: header.source_url,
                        source_owner: header.owner,
                        modified_at,
                    })
                    .await?;
            }
            Ok(())
        }
        .await;
        // Whatever ended the stream, the write in flight is waited for.
        let imported = imports.finish(received.is_ok()).await;
        received?;
        let results = imported?
            .into_iter()
            .map(|(external_id, outcome)| {
                let (document_id, outcome) = match outcome {
                    PutOutcome::Created(id) => (id.to_string(), pb::PutOutcome::Created),
                    PutOutcome::Updated(id) => (id.to_string(), pb::PutOutcome::Updated),
                    PutOutcome::Unchanged(id) => (id.to_string(), pb::PutOutcome::Unchanged),
                    PutOutcome::SkippedArchived => (String::new(), pb::PutOutcome::SkippedArchived),
                };
                pb::PutResult {
                    external_id,
                    document_id,
                    outcome: outcome.into(),
                }
            })
            .collect();
        Ok(Response::new(pb::PutDocumentsResponse { results }))
    }

    async fn create_document(
        &self,
        request: Request<pb::CreateDocumentRequest>,
    ) -> std::result::Result<Response<pb::CreateDocumentResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let (tenant, user, _) = Self::writer(&caller)?;
        self.tenants.require_live(tenant).await?;
        self.activity.saw(&caller, "write").await;
        let req = request.into_inner();
        check_title("title", &req.title, true)?;
        check_mime_type("mime_type", &req.mime_type)?;
        let size = req.content.len() as u64;
        if size > self.max_content() {
            return Err(too_large("content", size, self.max_content()).into());
        }
        let id = DocumentId::new();
        // The grant first: a document is never stored without its owner's grant.
        self.gate.grant_owner(tenant, id, user).await?;
        self.documents
            .put(
                tenant,
                NewDocument {
                    origin: Origin::Native { id, owner: user },
                    title: req.title,
                    content: req.content,
                    mime_type: if req.mime_type.is_empty() {
                        "text/plain".to_owned()
                    } else {
                        req.mime_type
                    },
                    source_url: String::new(),
                    source_owner: String::new(),
                    modified_at: chrono::Utc::now(),
                },
            )
            .await?;
        let doc = self.documents.load(tenant, id, Read::MetadataOnly).await?;
        Ok(Response::new(pb::CreateDocumentResponse {
            document: Some(to_meta(&doc)),
        }))
    }

    async fn update_document(
        &self,
        request: Request<pb::UpdateDocumentRequest>,
    ) -> std::result::Result<Response<pb::UpdateDocumentResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        // Admins may archive what they can read, but only owners and writers edit it.
        let (tenant, user, _admin) = Self::writer(&caller)?;
        self.tenants.require_live(tenant).await?;
        let req = request.into_inner();
        let id = document_id(&req.document_id)?;
        if let Some(title) = &req.title {
            check_title("title", title, true)?;
        }
        if let Some(content) = &req.content
            && content.len() as u64 > self.max_content()
        {
            return Err(too_large("content", content.len() as u64, self.max_content()).into());
        }
        let meta = self.readable_meta(tenant, user, id).await?;
        if meta.integration.is_some() {
            return Err(Error::FailedPrecondition(
                "imported documents change at their source, not in Mindmesh".into(),
            )
            .into());
        }
        if !(is_native_owner(&meta, user) || self.gate.may_write(tenant, user, id).await?) {
            return Err(Error::PermissionDenied(
                "only the owner or a writer may change this document".into(),
            )
            .into());
        }
        if meta.archived {
            return Err(Error::FailedPrecondition(
                "the document is archived; restore it before changing it".into(),
            )
            .into());
        }
        let owner: UserId = meta
            .owner
            .parse()
            .map_err(|_| Error::Internal("native document without a user owner".into()))?;
        let mut doc = self.documents.get(tenant, id).await?;
        if let Some(title) = req.title {
            doc.title = title;
        }
        if let Some(content) = req.content {
            doc.content = content;
        }
        self.documents
            .put(
                tenant,
                NewDocument {
                    origin: Origin::Native { id, owner },
                    title: doc.title,
                    content: doc.content,
                    mime_type: doc.mime_type,
                    source_url: String::new(),
                    source_owner: String::new(),
                    modified_at: chrono::Utc::now(),
                },
            )
            .await?;
        let doc = self.documents.load(tenant, id, Read::MetadataOnly).await?;
        Ok(Response::new(pb::UpdateDocumentResponse {
            document: Some(to_meta(&doc)),
        }))
    }

    async fn get_document(
        &self,
        request: Request<pb::GetDocumentRequest>,
    ) -> std::result::Result<Response<pb::GetDocumentResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let req = request.into_inner();
        let id = document_id(&req.document_id)?;
        let (tenant, reader) = self
            .reader(&caller, "document.get", &req.document_id)
            .await?;
        let doc = match reader {
            // The check and the read run at once; nothing is returned unless allowed.
            Reader::User { user, .. } => {
                let (allowed, doc) = tokio::join!(
                    self.gate.check(tenant, user, id, req.at_least_revision),
                    self.documents.load(tenant, id, Read::WithContent)
                );
                if !allowed? {
                    return Err(Error::NotFound("document").into());
                }
                doc?
            }
            Reader::Service | Reader::Staff(StaffView::Full) => {
                self.documents.load(tenant, id, Read::WithContent).await?
            }
            Reader::Staff(_) => self.documents.load(tenant, id, Read::MetadataOnly).await?,
        };
        // Restricted at its owner's request: kept, served to services only.
        if doc.restricted && reader != Reader::Service {
            return Err(Error::NotFound("document").into());
        }
        if let Reader::User { user, .. } = reader {
            self.usage(tenant, user, Usage::DocumentOpened);
        }
        Ok(Response::new(pb::GetDocumentResponse {
            document: Some(self.meta(reader, &doc).await?),
            content: doc.content,
        }))
    }

    async fn list_documents(
        &self,
        request: Request<pb::ListDocumentsRequest>,
    ) -> std::result::Result<Response<pb::ListDocumentsResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size, 50, 1000)?;
        bounded("query", &req.query, MAX_QUERY_BYTES)?;
        let finding = !req.query.trim().is_empty();
        if finding && crate::documents::words(&req.query).is_empty() {
            return Err(Error::invalid(
                "query",
                "has no word of two or more letters or digits to find",
            )
            .into());
        }
        let token = PageToken::parse(&req.page_token, finding)?;
        let filter = Filter {
            integration: match req.integration_id.as_str() {
                "" => None,
                value => Some(IntegrationId::parse_field("integration_id", value)?),
            },
            modified_since: req
                .modified_since
                .as_ref()
                .map(|t| from_timestamp("modified_since", t))
                .transpose()?,
            include_archived: req.include_archived,
            include_restricted: false,
        };
        let (tenant, reader) = self.reader(&caller, "document.list", "").await?;
        let filter = Filter {
            include_restricted: reader == Reader::Service,
            ..filter
        };
        let user = match reader {
            Reader::User { user, .. } => Some(user),
            Reader::Service | Reader::Staff(_) => None,
        };
        let page = listing::page(
            &self.documents,
            &self.gate,
            tenant,
            user,
            PageRequest {
                query: &req.query,
                filter: &filter,
                limit,
                from: token.map(|t| t.0),
            },
        )
        .await?;
        // A search is counted once, on its first page.
        if let (Some(user), true, true) = (user, finding, req.page_token.is_empty()) {
            self.usage(tenant, user, Usage::SearchRun);
        }
        let docs = self.documents.load_many(tenant, &page.documents).await?;
        let mut documents = Vec::with_capacity(docs.len());
        for doc in &docs {
            documents.push(self.meta(reader, doc).await?);
        }
        Ok(Response::new(pb::ListDocumentsResponse {
            documents,
            next_page_token: page.next.map(|p| PageToken(p).encode()).unwrap_or_default(),
        }))
    }

    async fn archive_document(
        &self,
        request: Request<pb::ArchiveDocumentRequest>,
    ) -> std::result::Result<Response<pb::ArchiveDocumentResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let document = self
            .change_state(&caller, &request.get_ref().document_id, true)
            .await?;
        Ok(Response::new(pb::ArchiveDocumentResponse {
            document: Some(document),
        }))
    }

    async fn restore_document(
        &self,
        request: Request<pb::RestoreDocumentRequest>,
    ) -> std::result::Result<Response<pb::RestoreDocumentResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let document = self
            .change_state(&caller, &request.get_ref().document_id, false)
            .await?;
        Ok(Response::new(pb::RestoreDocumentResponse {
            document: Some(document),
        }))
    }

    async fn delete_document(
        &self,
        request: Request<pb::DeleteDocumentRequest>,
    ) -> std::result::Result<Response<pb::DeleteDocumentResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let id = document_id(&request.get_ref().document_id)?;
        let (tenant, doc, acting) = self.target(&caller, id).await?;
        if let Some((user, admin)) = acting
            && !(admin || is_native_owner(&doc, user))
        {
            return Err(Error::PermissionDenied(
                "only an admin, or the owner of a native document, may delete it".into(),
            )
            .into());
        }
        self.documents.delete(tenant, id).await?;
        self.gate
            .revoke_all(
                tenant,
                doc.integration.unwrap_or(IntegrationId::NATIVE),
                &[id],
            )
            .await?;
        Ok(Response::new(pb::DeleteDocumentResponse {}))
    }
}

impl StorageApi {
    /// Archives (`archive`) or restores a document the caller may change, publishing
    /// `document.archived` / `document.restored` with the change.
    async fn change_state(
        &self,
        caller: &Caller,
        document_id: &str,
        archive: bool,
    ) -> Result<pb::DocumentMeta> {
        let id = self::document_id(document_id)?;
        let (tenant, doc, acting) = self.target(caller, id).await?;
        if let Some((user, admin)) = acting
            && !self.may_change(tenant, user, admin, &doc).await?
        {
            return Err(Error::PermissionDenied(
                "only an admin, the owner or a writer may archive or restore this document".into(),
            ));
        }
        if archive {
            self.documents.archive(tenant, id).await?;
        } else {
            self.documents.restore(tenant, id).await?;
        }
        self.ctx.relay.wake();
        let doc = self.documents.load(tenant, id, Read::MetadataOnly).await?;
        Ok(to_meta(&doc))
    }
}
