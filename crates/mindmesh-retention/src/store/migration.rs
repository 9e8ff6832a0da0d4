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
        all.push(Box::new(Ledger));
        all.push(Box::new(ReceiptLog));
        all.push(Box::new(CascadeRequestsTable));
        all.push(Box::new(Inactivity));
        all.push(mindmesh_kit::migrations::legal_holds());
        all.push(Box::new(LegalHoldRecords));
        all.push(Box::new(BackupsAndReplays));
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

/// The deletion ledger: one row per cascade, one per service taking part.
struct Ledger;

impl MigrationName for Ledger {
    fn name(&self) -> &str {
        "m20261202_000100_retention_ledger"
    }
}

/// `cascades`: one per cascade, opened by whichever of its events came first.
#[derive(DeriveIden)]
pub(crate) enum Cascades {
    Table,
    Id,
    TenantId,
    /// Empty until the event that opened the cascade has arrived.
    Kind,
    ScopeId,
    SubjectHash,
    RequestedAt,
    FirstSeenAt,
    CompletedAt,
}

/// `cascade_parts`: one service's part in a cascade.
#[derive(DeriveIden)]
pub(crate) enum CascadeParts {
    Table,
    CascadeId,
    Service,
    State,
    Counts,
    DestroyedKeyIds,
    Signature,
    Reason,
    Since,
    ReportedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Ledger {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Cascades::Table)
                    .if_not_exists()
                    .col(string(Cascades::Id).primary_key())
                    .col(string(Cascades::TenantId))
                    .col(string(Cascades::Kind))
                    .col(string(Cascades::ScopeId))
                    .col(string(Cascades::SubjectHash))
                    .col(timestamp_with_time_zone_null(Cascades::RequestedAt))
                    .col(timestamp_with_time_zone(Cascades::FirstSeenAt))
                    .col(timestamp_with_time_zone_null(Cascades::CompletedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("cascades_by_tenant")
                    .table(Cascades::Table)
                    .col(Cascades::TenantId)
                    .col(Cascades::FirstSeenAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CascadeParts::Table)
                    .if_not_exists()
                    .col(string(CascadeParts::CascadeId))
                    .col(string(CascadeParts::Service))
                    .col(string(CascadeParts::State))
                    .col(text(CascadeParts::Counts))
                    .col(text(CascadeParts::DestroyedKeyIds))
                    .col(text(CascadeParts::Signature))
                    .col(text(CascadeParts::Reason))
                    .col(timestamp_with_time_zone(CascadeParts::Since))
                    .col(timestamp_with_time_zone_null(CascadeParts::ReportedAt))
                    .primary_key(
                        Index::create()
                            .col(CascadeParts::CascadeId)
                            .col(CascadeParts::Service),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(CascadeParts::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Cascades::Table).if_exists().to_owned())
            .await
    }
}

/// The receipts and their Merkle log.
struct ReceiptLog;

impl MigrationName for ReceiptLog {
    fn name(&self) -> &str {
        "m20261202_000200_retention_receipt_log"
    }
}

/// `receipts`: the signed receipt of each completed cascade.
#[derive(DeriveIden)]
pub(crate) enum Receipts {
    Table,
    CascadeId,
    TenantId,
    LogIndex,
    /// The receipt as JSON (its signature included).
    Body,
}

/// `log_hashes`: the receipt log's permanent node hashes, by stored-hash index.
#[derive(DeriveIden)]
pub(crate) enum LogHashes {
    Table,
    Idx,
    Hash,
}

/// `log_head`: one row, the log's size; locked by whoever appends.
#[derive(DeriveIden)]
pub(crate) enum LogHead {
    Table,
    Id,
    Size,
}

#[async_trait::async_trait]
impl MigrationTrait for ReceiptLog {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Receipts::Table)
                    .if_not_exists()
                    .col(string(Receipts::CascadeId).primary_key())
                    .col(string(Receipts::TenantId))
                    .col(big_integer_uniq(Receipts::LogIndex))
                    .col(text(Receipts::Body))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LogHashes::Table)
                    .if_not_exists()
                    .col(big_integer(LogHashes::Idx).primary_key())
                    .col(blob(LogHashes::Hash))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LogHead::Table)
                    .if_not_exists()
                    .col(integer(LogHead::Id).primary_key())
                    .col(big_integer(LogHead::Size))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(LogHead::Table)
                    .columns([LogHead::Id, LogHead::Size])
                    .values_panic([1.into(), 0i64.into()])
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Receipts::Table.into_iden(),
            LogHashes::Table.into_iden(),
            LogHead::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// The requests of open cascades, kept (sealed) to ask a silent participant again.
struct CascadeRequestsTable;

impl MigrationName for CascadeRequestsTable {
    fn name(&self) -> &str {
        "m20261202_000300_retention_cascade_requests"
    }
}

/// `cascade_requests`: the event that opened each cascade still open, sealed (it may
/// name the person whose data is erased); deleted when the cascade completes.
#[derive(DeriveIden)]
pub(crate) enum CascadeRequests {
    Table,
    CascadeId,
    RequestCt,
    AskedAt,
    TimesAsked,
}

#[async_trait::async_trait]
impl MigrationTrait for CascadeRequestsTable {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CascadeRequests::Table)
                    .if_not_exists()
                    .col(string(CascadeRequests::CascadeId).primary_key())
                    .col(blob(CascadeRequests::RequestCt))
                    .col(timestamp_with_time_zone(CascadeRequests::AskedAt))
                    .col(integer(CascadeRequests::TimesAsked))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(CascadeRequests::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

/// Per-tenant policies and the inactivity countdown (P09).
struct Inactivity;

impl MigrationName for Inactivity {
    fn name(&self) -> &str {
        "m20261202_000400_retention_inactivity"
    }
}

/// `policies`: a tenant's retention policy (absent: the defaults).
#[derive(DeriveIden)]
pub(crate) enum Policies {
    Table,
    TenantId,
    InactivityDays,
    /// JSON array of days before expiry.
    WarningDays,
    ArchivePurgeDays,
    UpdatedAt,
}

/// `inactivity_warnings`: each warning sent, for the countdown from one last activity.
#[derive(DeriveIden)]
pub(crate) enum InactivityWarnings {
    Table,
    TenantId,
    CountdownFrom,
    DaysBefore,
    SentAt,
}

/// `expiries`: the tenants expired for inactivity, and the cascade that erased each.
#[derive(DeriveIden)]
pub(crate) enum Expiries {
    Table,
    TenantId,
    CascadeId,
    ExpiredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Inactivity {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Policies::Table)
                    .if_not_exists()
                    .col(string(Policies::TenantId).primary_key())
                    .col(integer(Policies::InactivityDays))
                    .col(text(Policies::WarningDays))
                    .col(integer(Policies::ArchivePurgeDays))
                    .col(timestamp_with_time_zone(Policies::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(InactivityWarnings::Table)
                    .if_not_exists()
                    .col(string(InactivityWarnings::TenantId))
                    .col(timestamp_with_time_zone(InactivityWarnings::CountdownFrom))
                    .col(integer(InactivityWarnings::DaysBefore))
                    .col(timestamp_with_time_zone(InactivityWarnings::SentAt))
                    .primary_key(
                        Index::create()
                            .col(InactivityWarnings::TenantId)
                            .col(InactivityWarnings::CountdownFrom)
                            .col(InactivityWarnings::DaysBefore),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Expiries::Table)
                    .if_not_exists()
                    .col(string(Expiries::TenantId).primary_key())
                    .col(string(Expiries::CascadeId))
                    .col(timestamp_with_time_zone(Expiries::ExpiredAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Policies::Table.into_iden(),
            InactivityWarnings::Table.into_iden(),
            Expiries::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// `hold_records`: every legal hold ever placed, with its sealed reason and who placed
/// and released it (the holds in force are mirrored in the kit's `legal_holds`).
struct LegalHoldRecords;

impl MigrationName for LegalHoldRecords {
    fn name(&self) -> &str {
        "m20261203_000100_retention_hold_records"
    }
}

/// `hold_records`.
#[derive(DeriveIden)]
pub(crate) enum HoldRecords {
    Table,
    Id,
    TenantId,
    ScopeKind,
    ScopeId,
    /// The reason, AES-256-GCM sealed (it may name people).
    ReasonCt,
    PlacedBy,
    PlacedAt,
    ReleasedBy,
    ReleasedAt,
}

/// `hold_acks`: which service has applied a hold's placing or release
/// (`legal_hold.applied`).
#[derive(DeriveIden)]
pub(crate) enum HoldAcks {
    Table,
    HoldId,
    Service,
    Released,
    At,
}

#[async_trait::async_trait]
impl MigrationTrait for LegalHoldRecords {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(HoldRecords::Table)
                    .if_not_exists()
                    .col(string(HoldRecords::Id).primary_key())
                    .col(string(HoldRecords::TenantId))
                    .col(string(HoldRecords::ScopeKind))
                    .col(string(HoldRecords::ScopeId))
                    .col(blob(HoldRecords::ReasonCt))
                    .col(string(HoldRecords::PlacedBy))
                    .col(timestamp_with_time_zone(HoldRecords::PlacedAt))
                    .col(string_null(HoldRecords::ReleasedBy))
                    .col(timestamp_with_time_zone_null(HoldRecords::ReleasedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(HoldAcks::Table)
                    .if_not_exists()
                    .col(string(HoldAcks::HoldId))
                    .col(string(HoldAcks::Service))
                    .col(boolean(HoldAcks::Released))
                    .col(timestamp_with_time_zone(HoldAcks::At))
                    .primary_key(
                        Index::create()
                            .col(HoldAcks::HoldId)
                            .col(HoldAcks::Service)
                            .col(HoldAcks::Released),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [HoldRecords::Table.into_iden(), HoldAcks::Table.into_iden()] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// The backup catalog, and the requests of completed cascades kept (sealed) until the
/// last backup that could hold their data is gone, so that a restore can erase again
/// what they erased (P10).
struct BackupsAndReplays;

impl MigrationName for BackupsAndReplays {
    fn name(&self) -> &str {
        "m20261203_000200_retention_backups"
    }
}

/// `backups`: each backup taken, until it is deleted.
#[derive(DeriveIden)]
pub(crate) enum Backups {
    Table,
    Id,
    CreatedAt,
    ExpiresAt,
    SizeBytes,
}

/// `replay_requests`: the sealed request of each completed cascade, kept until
/// `keep_until` (its receipt's `backups_expire_at`).
#[derive(DeriveIden)]
pub(crate) enum ReplayRequests {
    Table,
    CascadeId,
    RequestCt,
    CompletedAt,
    KeepUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for BackupsAndReplays {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Backups::Table)
                    .if_not_exists()
                    .col(string(Backups::Id).primary_key())
                    .col(timestamp_with_time_zone(Backups::CreatedAt))
                    .col(timestamp_with_time_zone(Backups::ExpiresAt))
                    .col(big_integer(Backups::SizeBytes))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReplayRequests::Table)
                    .if_not_exists()
                    .col(string(ReplayRequests::CascadeId).primary_key())
                    .col(blob(ReplayRequests::RequestCt))
                    .col(timestamp_with_time_zone(ReplayRequests::CompletedAt))
                    .col(timestamp_with_time_zone(ReplayRequests::KeepUntil))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Backups::Table.into_iden(),
            ReplayRequests::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
