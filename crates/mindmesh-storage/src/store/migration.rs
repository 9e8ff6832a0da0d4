//! The storage database schema: the kit's tables, then documents, their blind-index
//! terms, and tombstones.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Migrator of the storage database.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = mindmesh_kit::migrations::service_common();
        all.push(Box::new(Documents));
        all.push(Box::new(Erasures));
        all.push(Box::new(Listing));
        all.push(Box::new(NativeSources));
        all.push(Box::new(Restrictions));
        all.push(Box::new(PostingBlocks));
        all.push(Box::new(DisconnectedIntegrations));
        all.push(mindmesh_kit::migrations::write_guards());
        all.push(mindmesh_kit::migrations::adopt_known_integrations(
            "m20261201_000100_storage_known_integrations",
            &[
                "SELECT integration_id, tenant_id FROM documents WHERE integration_id <> ''",
                "SELECT integration_id, tenant_id FROM tombstones WHERE integration_id <> ''",
            ],
        ));
        all.push(Box::new(SealedSourceIds));
        all.push(mindmesh_kit::migrations::activity_reports());
        all.push(mindmesh_kit::migrations::legal_holds());
        all.push(Box::new(ArchivePolicies));
        all.push(mindmesh_kit::migrations::processing_gate());
        all
    }
}

struct Documents;

impl MigrationName for Documents {
    fn name(&self) -> &str {
        "m20261129_000100_storage_documents"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Documents {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("documents")
                    .if_not_exists()
                    .col(string("id").primary_key())
                    .col(string("tenant_id"))
                    // Empty for native documents.
                    .col(string("integration_id"))
                    .col(string("external_id"))
                    .col(string("source_version"))
                    .col(string("key_id"))
                    .col(blob("title_ct"))
                    .col(blob("content_ct"))
                    .col(blob("source_url_ct"))
                    .col(string("mime_type"))
                    .col(string("owner"))
                    .col(big_integer("size_bytes"))
                    .col(timestamp_with_time_zone("modified_at"))
                    .col(string("state"))
                    .col(timestamp_with_time_zone_null("archived_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("documents_source")
                    .table("documents")
                    .col("tenant_id")
                    .col("integration_id")
                    .col("external_id")
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("document_terms")
                    .if_not_exists()
                    .col(string("tenant_id"))
                    .col(string("term"))
                    .col(string("document_id"))
                    .primary_key(
                        Index::create()
                            .col("tenant_id")
                            .col("term")
                            .col("document_id"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("document_terms_document")
                    .table("document_terms")
                    .col("document_id")
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("tombstones")
                    .if_not_exists()
                    .col(string("tenant_id"))
                    .col(string("integration_id"))
                    .col(string("external_id"))
                    .col(timestamp_with_time_zone("archived_at"))
                    .primary_key(
                        Index::create()
                            .col("tenant_id")
                            .col("integration_id")
                            .col("external_id"),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["tombstones", "document_terms", "documents"] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// `erasures`: progress of each integration erasure, so one interrupted half-way resumes
/// where it stopped and still reports the whole count and the keys it destroyed.
struct Erasures;

impl MigrationName for Erasures {
    fn name(&self) -> &str {
        "m20261129_000200_storage_erasures"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Erasures {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("erasures")
                    .if_not_exists()
                    .col(string("cascade_id").primary_key())
                    .col(string("tenant_id"))
                    // The scope erased: `integration:<id>`, `owner:<user id>` or `tenant`.
                    .col(string("integration_id"))
                    .col(text("destroyed_key_ids"))
                    .col(big_integer("deleted"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("erasures").if_exists().to_owned())
            .await
    }
}

/// `documents.modified_us`: the modification time in microseconds since the epoch, so
/// that listing newest first and paging by (time, id) order the same way on SQLite
/// (which keeps timestamps as text) and PostgreSQL.
struct Listing;

impl MigrationName for Listing {
    fn name(&self) -> &str {
        "m20261129_000300_storage_listing"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Listing {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("documents")
                    .add_column(big_integer("modified_us").default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("documents_listing")
                    .table("documents")
                    .col("tenant_id")
                    .col("modified_us")
                    .col("id")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name("documents_listing").to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("documents")
                    .drop_column("modified_us")
                    .to_owned(),
            )
            .await
    }
}

/// The source of an imported document is unique per tenant; native documents have no
/// source (empty integration and external id), so the unique index covers only imported
/// rows. Partial indexes read the same on SQLite and PostgreSQL.
struct NativeSources;

impl MigrationName for NativeSources {
    fn name(&self) -> &str {
        "m20261129_000400_storage_native_sources"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for NativeSources {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("documents_source")
                    .table("documents")
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX documents_source ON documents \
                 (tenant_id, integration_id, external_id) WHERE integration_id <> ''",
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("documents_owner")
                    .table("documents")
                    .col("tenant_id")
                    .col("owner")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("documents_owner")
                    .table("documents")
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("documents_source")
                    .table("documents")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("documents_source")
                    .table("documents")
                    .col("tenant_id")
                    .col("integration_id")
                    .col("external_id")
                    .unique()
                    .to_owned(),
            )
            .await
    }
}

/// `documents.restricted`: processing of the owner's data is restricted (a data-subject
/// request): kept, but served to no one but the services that carry out the request.
struct Restrictions;

impl MigrationName for Restrictions {
    fn name(&self) -> &str {
        "m20261129_000500_storage_restrictions"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Restrictions {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("documents")
                    .add_column(boolean("restricted").default(false))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("documents")
                    .drop_column("restricted")
                    .to_owned(),
            )
            .await
    }
}

/// The find index as sealed posting blocks (see `find.rs`), replacing one row per word
/// per document: `index_blocks` (one per scope and write batch) and `term_blocks` (one
/// per term in a block); each document records the block and stamp of its postings.
struct PostingBlocks;

impl MigrationName for PostingBlocks {
    fn name(&self) -> &str {
        "m20261129_000600_storage_posting_blocks"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for PostingBlocks {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("document_terms").if_exists().to_owned())
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("index_blocks")
                    .if_not_exists()
                    .col(string("block_id").primary_key())
                    .col(string("tenant_id"))
                    // `integration:<id>` or `owner:<user id>`: erased together.
                    .col(string("scope"))
                    .col(string("key_id"))
                    .col(big_integer("documents"))
                    .col(big_integer("live"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("index_blocks_scope")
                    .table("index_blocks")
                    .col("tenant_id")
                    .col("scope")
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("term_blocks")
                    .if_not_exists()
                    .col(string("term"))
                    .col(string("block_id"))
                    .col(blob("postings"))
                    .primary_key(Index::create().col("term").col("block_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("term_blocks_block")
                    .table("term_blocks")
                    .col("block_id")
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("documents")
                    .add_column(string("index_block").default(""))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("documents")
                    .add_column(big_integer("index_stamp").default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("documents_index_block")
                    .table("documents")
                    .col("index_block")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["term_blocks", "index_blocks"] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Integrations whose disconnect storage has carried out: nothing more is stored for
/// them (a late write of a sync that was still running would outlive the cascade).
struct DisconnectedIntegrations;

impl MigrationName for DisconnectedIntegrations {
    fn name(&self) -> &str {
        "m20261129_000700_storage_disconnected_integrations"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for DisconnectedIntegrations {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("disconnected_integrations")
                    .if_not_exists()
                    .col(string("tenant_id"))
                    .col(string("integration_id"))
                    .col(timestamp_with_time_zone("disconnected_at"))
                    .primary_key(Index::create().col("tenant_id").col("integration_id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table("disconnected_integrations")
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

/// The source's id of an imported document (a file path, a repository path) is customer
/// content: `documents.external_id` becomes `source_index`, a keyed hash that finds the
/// document by its source (the unique index follows the rename), and the id itself is
/// sealed in `external_id_ct`, as is its owner at the source (`owner_ct`; for Drive an
/// email address). Tombstones keep only the hash. Rows written before this
/// (`external_id_ct` null, `tombstones.legacy` true) still hold the id in the clear
/// until the service seals them at its next start (`Documents::seal_legacy`).
struct SealedSourceIds;

impl MigrationName for SealedSourceIds {
    fn name(&self) -> &str {
        "m20261201_000200_storage_sealed_source_ids"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for SealedSourceIds {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["documents", "tombstones"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .rename_column("external_id", "source_index")
                        .to_owned(),
                )
                .await?;
        }
        // An imported document's owner at its source (for Drive an email) is sealed too.
        for column in ["external_id_ct", "owner_ct"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("documents")
                        .add_column(blob_null(column))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table("tombstones")
                    .add_column(boolean("legacy").default(true))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "sealed source ids cannot be put back in the clear".into(),
        ))
    }
}

/// `archive_policies`: how long each tenant keeps archived documents, from its retention
/// policy (`retention.policy_set`); a tenant without a row keeps them
/// `storage.archive_purge_after_days`.
struct ArchivePolicies;

impl MigrationName for ArchivePolicies {
    fn name(&self) -> &str {
        "m20261203_000100_storage_archive_policies"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ArchivePolicies {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("archive_policies")
                    .if_not_exists()
                    .col(string("tenant_id").primary_key())
                    .col(integer("purge_after_days"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table("archive_policies")
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
