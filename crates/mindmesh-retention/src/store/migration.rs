//! The retention database schema, migration by migration.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Migrator of the retention database: the kit's tables, then the service's own.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = mindmesh_kit::migrations::service_common();
        all.push(Box::new(AccountActivity));
        all.push(mindmesh_kit::migrations::write_guards());
        all
    }
}

struct AccountActivity;

impl MigrationName for AccountActivity {
    fn name(&self) -> &str {
        "m20261129_000100_retention_account_activity"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AccountActivity {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("account_activity")
                    .if_not_exists()
                    .col(string("tenant_id"))
                    .col(string("user_id"))
                    .col(timestamp_with_time_zone("last_active_at"))
                    .primary_key(Index::create().col("tenant_id").col("user_id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table("account_activity")
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
