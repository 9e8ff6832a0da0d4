//! The ingest database schema: the kit's tables, then integrations, their sealed
//! credentials, the items each integration has imported, and items skipped with a reason.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Migrator of the ingest database.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = mindmesh_kit::migrations::service_common();
        all.push(Box::new(Integrations));
        all.push(Box::new(PendingSweeps));
        all.push(mindmesh_kit::migrations::write_guards());
        all.push(Box::new(SealedRecords));
        all.push(Box::new(ItemReferences));
        all.push(Box::new(OutsideUsers));
        all.push(mindmesh_kit::migrations::activity_reports());
        all.push(mindmesh_kit::migrations::processing_gate());
        all
    }
}

struct Integrations;

impl MigrationName for Integrations {
    fn name(&self) -> &str {
        "m20261129_000100_ingest_integrations"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Integrations {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("integrations")
                    .if_not_exists()
                    .col(string("id").primary_key())
                    .col(string("tenant_id"))
                    .col(string("kind"))
                    .col(string("display_name"))
                    // Non-secret settings as JSON (endpoint URLs, domain, …).
                    .col(text("settings"))
                    .col(string("status"))
                    .col(timestamp_with_time_zone("connected_at"))
                    .col(timestamp_with_time_zone_null("last_synced_at"))
                    // When a sync last ended, successfully or not (the schedule's clock).
                    .col(timestamp_with_time_zone_null("last_attempt_at"))
                    .col(text("last_error"))
                    // The connector's opaque position; null before the first sync.
                    .col(text_null("cursor"))
                    // Bumped by every full listing; items not seen in it are gone.
                    .col(big_integer("generation"))
                    .col(boolean("sync_requested"))
                    .col(string_null("lease_owner"))
                    .col(timestamp_with_time_zone_null("lease_until"))
                    .col(string_null("cascade_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("integrations_tenant")
                    .table("integrations")
                    .col("tenant_id")
                    .col("connected_at")
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("credentials")
                    .if_not_exists()
                    .col(string("integration_id").primary_key())
                    .col(string("tenant_id"))
                    .col(string("key_id"))
                    // Tokens and keys, sealed under the integration's data key (P01).
                    .col(blob("secret_ct"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("items")
                    .if_not_exists()
                    .col(string("integration_id"))
                    .col(string("external_id"))
                    .col(string("tenant_id"))
                    .col(string("document_id"))
                    .col(string("source_version"))
                    .col(big_integer("generation"))
                    .primary_key(Index::create().col("integration_id").col("external_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("items_generation")
                    .table("items")
                    .col("integration_id")
                    .col("generation")
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("skipped_items")
                    .if_not_exists()
                    .col(string("integration_id"))
                    .col(string("external_id"))
                    .col(string("tenant_id"))
                    .col(text("reason"))
                    .col(timestamp_with_time_zone("recorded_at"))
                    .primary_key(Index::create().col("integration_id").col("external_id"))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["skipped_items", "items", "credentials", "integrations"] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// `integrations.sweep_generation`: a full listing that completed but whose sweep (the
/// removal of what it did not see) has not run yet. The sweep runs at the end of a sync,
/// after every page, so that progress only moves forward; recorded with the page that
/// completed the listing, a sync stopped before its sweep leaves it to the next one.
struct PendingSweeps;

impl MigrationName for PendingSweeps {
    fn name(&self) -> &str {
        "m20261201_000100_ingest_pending_sweeps"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for PendingSweeps {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("integrations")
                    .add_column(big_integer_null("sweep_generation"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("integrations")
                    .drop_column("sweep_generation")
                    .to_owned(),
            )
            .await
    }
}

/// What describes customer content leaves the clear (P01). An integration's display
/// name, settings and cursor (which holds paths and page tokens) are sealed under its
/// data key (`fields_key_id`) in `*_ct` columns; items and skip records are found by a
/// keyed `source_index` (their source's id hashed; skip records seal the id itself for
/// `GetIntegration`) and items by the keyed `group_index` of the group a source reports
/// unchanged. Rows written before this keep their values in the clear (`legacy`, or no
/// `fields_key_id`) until the service seals them at its next start.
struct SealedRecords;

impl MigrationName for SealedRecords {
    fn name(&self) -> &str {
        "m20261201_000200_ingest_sealed_records"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for SealedRecords {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            string_null("fields_key_id"),
            blob_null("display_name_ct"),
            blob_null("settings_ct"),
            blob_null("cursor_ct"),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table("integrations")
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        for table in ["items", "skipped_items"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .rename_column("external_id", "source_index")
                        .to_owned(),
                )
                .await?;
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .add_column(boolean("legacy").default(true))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table("items")
                    .add_column(string_null("group_index"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("items_group")
                    .table("items")
                    .col("integration_id")
                    .col("group_index")
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("skipped_items")
                    .add_column(blob_null("external_id_ct"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "sealed records cannot be put back in the clear".into(),
        ))
    }
}

/// Each item keeps the connector's reference it was stored with (sealed like the rest:
/// it names the identity that read it), so that a source that reports one identity's
/// lost access can be asked whether the item is still there for the others.
struct ItemReferences;

impl MigrationName for ItemReferences {
    fn name(&self) -> &str {
        "m20261202_000100_ingest_item_references"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ItemReferences {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("items")
                    .add_column(blob_null("reference_ct"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("items")
                    .drop_column("reference_ct")
                    .to_owned(),
            )
            .await
    }
}

/// People outside a source's directory whom its grants name (an outside collaborator's
/// email): kept as principals of the integration between syncs, so that they read what
/// is shared with them (P05). Found by a keyed index, sealed like the rest.
struct OutsideUsers;

impl MigrationName for OutsideUsers {
    fn name(&self) -> &str {
        "m20261202_000200_ingest_outside_users"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for OutsideUsers {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("outside_users")
                    .if_not_exists()
                    .col(string("integration_id"))
                    .col(string("user_index"))
                    .col(string("tenant_id"))
                    .col(blob("user_ct"))
                    .primary_key(Index::create().col("integration_id").col("user_index"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("outside_users_tenant")
                    .table("outside_users")
                    .col("tenant_id")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("outside_users").to_owned())
            .await
    }
}
