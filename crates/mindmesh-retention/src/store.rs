//! The retention database schema.

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

/// `account_activity`: when each account was last active (the P09 inactivity clock).
pub mod account_activity {
    use sea_orm::entity::prelude::*;

    /// One account's last activity.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "account_activity")]
    pub struct Model {
        /// Tenant.
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        /// User.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        /// Latest activity seen.
        pub last_active_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
