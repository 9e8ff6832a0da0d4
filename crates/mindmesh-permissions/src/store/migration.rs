//! The permissions database schema: the kit's tables, then the service's own.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Migrator of the permissions database.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = mindmesh_kit::migrations::service_common();
        all.push(Box::new(Accounts));
        all.push(Box::new(Graph));
        all.push(Box::new(StaffGrants));
        all.push(Box::new(PrincipalSyncs));
        all.push(Box::new(DisconnectedIntegrations));
        all.push(mindmesh_kit::migrations::write_guards());
        all.push(mindmesh_kit::migrations::adopt_known_integrations(
            "m20261201_000100_permissions_known_integrations",
            &[
                "SELECT integration_id, tenant_id FROM principals",
                "SELECT integration_id, tenant_id FROM grants \
                 WHERE integration_id <> '00000000-0000-0000-0000-000000000000'",
            ],
        ));
        all.push(Box::new(SealedRecords));
        all.push(Box::new(PrincipalPseudonyms));
        all.push(mindmesh_kit::migrations::activity_reports());
        all.push(mindmesh_kit::migrations::legal_holds());
        all
    }
}

struct Accounts;

impl MigrationName for Accounts {
    fn name(&self) -> &str {
        "m20261129_000100_permissions_accounts"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Accounts {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("tenants")
                    .if_not_exists()
                    .col(string("id").primary_key())
                    .col(string("name"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("users")
                    .if_not_exists()
                    .col(string("id").primary_key())
                    .col(string("tenant_id"))
                    .col(string("key_id"))
                    .col(string("email_index"))
                    .col(blob("first_name_ct"))
                    .col(blob("last_name_ct"))
                    .col(blob("email_ct"))
                    .col(blob("picture_url_ct"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("users_tenant")
                            .from("users", "tenant_id")
                            .to("tenants", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("users_tenant_email")
                    .table("users")
                    .col("tenant_id")
                    .col("email_index")
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["users", "tenants"] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Principals, memberships and grants imported from source tools, and the per-tenant
/// revision every permission-relevant write moves forward.
struct Graph;

impl MigrationName for Graph {
    fn name(&self) -> &str {
        "m20261129_000200_permissions_graph"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Graph {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("users")
                    .add_column(string("email_domain_index").default(""))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("principals")
                    .if_not_exists()
                    .col(string("tenant_id"))
                    .col(string("integration_id"))
                    .col(string("kind"))
                    .col(string("external_id"))
                    .col(string_null("email_index"))
                    .col(blob_null("email_ct"))
                    .col(blob("name_ct"))
                    .primary_key(
                        Index::create()
                            .col("tenant_id")
                            .col("integration_id")
                            .col("kind")
                            .col("external_id"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("principals_email")
                    .table("principals")
                    .col("tenant_id")
                    .col("email_index")
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("memberships")
                    .if_not_exists()
                    .col(string("tenant_id"))
                    .col(string("integration_id"))
                    .col(string("group_id"))
                    .col(string("member_id"))
                    .col(boolean("member_is_group"))
                    .primary_key(
                        Index::create()
                            .col("tenant_id")
                            .col("integration_id")
                            .col("group_id")
                            .col("member_id")
                            .col("member_is_group"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("grants")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(string("tenant_id"))
                    .col(string("document_id"))
                    .col(string("integration_id"))
                    .col(string("grantee_kind"))
                    .col(string("grantee"))
                    .col(string("role"))
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("grants_document", ["tenant_id", "document_id"]),
            ("grants_integration", ["tenant_id", "integration_id"]),
        ] {
            let mut index = Index::create();
            index.name(name).table("grants").if_not_exists();
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table("tenant_revisions")
                    .if_not_exists()
                    .col(string("tenant_id").primary_key())
                    .col(big_integer("revision"))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["tenant_revisions", "grants", "memberships", "principals"] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table("users")
                    .drop_column("email_domain_index")
                    .to_owned(),
            )
            .await
    }
}

/// Staff access grants: a tenant's recorded consent to a staff role (P11).
struct StaffGrants;

impl MigrationName for StaffGrants {
    fn name(&self) -> &str {
        "m20261129_000300_permissions_staff_grants"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for StaffGrants {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("staff_grants")
                    .if_not_exists()
                    .col(string("id").primary_key())
                    .col(string("tenant_id"))
                    .col(string("role"))
                    .col(text("reason"))
                    .col(string("granted_by"))
                    .col(timestamp_with_time_zone("granted_at"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone_null("revoked_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("staff_grants_tenant")
                    .table("staff_grants")
                    .col("tenant_id")
                    .col("role")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("staff_grants").if_exists().to_owned())
            .await
    }
}

/// `principal_syncs`: a generation (a fresh UUID) per (tenant, integration), replaced by
/// every change to the integration's principals, so a replica knows whether its copy of
/// the set is current. Random rather than counted, so a deleted-and-recreated row can
/// never repeat an old value.
struct PrincipalSyncs;

impl MigrationName for PrincipalSyncs {
    fn name(&self) -> &str {
        "m20261129_000400_permissions_principal_syncs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for PrincipalSyncs {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("principal_syncs")
                    .if_not_exists()
                    .col(string("tenant_id"))
                    .col(string("integration_id"))
                    .col(string("generation"))
                    .primary_key(Index::create().col("tenant_id").col("integration_id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table("principal_syncs")
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

/// Integrations whose disconnect permissions has carried out: no principal or grant is
/// written for them again (a late write of a sync that was still running would outlive
/// the cascade).
struct DisconnectedIntegrations;

impl MigrationName for DisconnectedIntegrations {
    fn name(&self) -> &str {
        "m20261129_000500_permissions_disconnected_integrations"
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

/// A tenant's name and the reasons given for staff access leave the clear (P01):
/// sealed under the tenant's records key in `tenants.name_ct` and
/// `staff_grants.reason_ct`. Rows written before keep them in the clear until the
/// service seals them at its next start.
struct SealedRecords;

impl MigrationName for SealedRecords {
    fn name(&self) -> &str {
        "m20261201_000200_permissions_sealed_records"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for SealedRecords {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, column) in [("tenants", "name_ct"), ("staff_grants", "reason_ct")] {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .add_column(blob_null(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "sealed records cannot be put back in the clear".into(),
        ))
    }
}

/// A source's id of a user or group is often an email (Google Drive's are): principals,
/// memberships and grants of imported integrations refer to a keyed pseudonym of it
/// instead, and the id is sealed beside its principal (`principals.external_id_ct`).
/// `legacy_principal_ids` lists the (tenant, integration) pairs an older version wrote
/// with the ids in the clear; the service converts each at its next start.
struct PrincipalPseudonyms;

impl MigrationName for PrincipalPseudonyms {
    fn name(&self) -> &str {
        "m20261201_000300_permissions_principal_pseudonyms"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for PrincipalPseudonyms {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("principals")
                    .add_column(blob_null("external_id_ct"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("legacy_principal_ids")
                    .if_not_exists()
                    .col(string("tenant_id"))
                    .col(string("integration_id"))
                    .primary_key(Index::create().col("tenant_id").col("integration_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO legacy_principal_ids (tenant_id, integration_id) \
                 SELECT tenant_id, integration_id FROM principals \
                 UNION SELECT tenant_id, integration_id FROM memberships \
                 UNION SELECT tenant_id, integration_id FROM grants \
                 WHERE integration_id <> '00000000-0000-0000-0000-000000000000'",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "principal pseudonyms cannot be turned back into source ids".into(),
        ))
    }
}
