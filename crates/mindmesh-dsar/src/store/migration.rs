//! The dsar database schema, migration by migration.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Migrator of the dsar database: the kit's tables, then the service's own.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = mindmesh_kit::migrations::service_common();
        all.push(mindmesh_kit::migrations::write_guards());
        all.push(Box::new(Requests));
        all.push(Box::new(PartsAndExports));
        all.push(Box::new(ErasuresAndConsents));
        all.push(Box::new(Settings));
        all.push(Box::new(NotificationsAndBreaches));
        all
    }
}

/// `dsar_requests`: every data-subject request and where it stands.
struct Requests;

impl MigrationName for Requests {
    fn name(&self) -> &str {
        "m20261203_000100_dsar_requests"
    }
}

/// `dsar_requests`.
#[derive(DeriveIden)]
pub(crate) enum DsarRequests {
    Table,
    Id,
    TenantId,
    Kind,
    Status,
    /// The subject's email, AES-256-GCM sealed (bound to the row).
    SubjectEmailCt,
    /// Keyed hash of the subject's email (hex), to find a person's requests.
    SubjectHash,
    /// The rectification asked for (JSON), sealed; empty otherwise.
    PayloadCt,
    /// Who filed it (the token's subject) and in which role.
    SubmittedBy,
    SubmittedRole,
    SubmittedAt,
    /// One calendar month after submission (GDPR Art. 12(3)).
    FirstDueAt,
    DueAt,
    ExtensionReason,
    RejectionReason,
    /// Keyed hash of the mailed code (hex); empty once used.
    CodeHash,
    CodeExpiresAt,
    CodeAttempts,
    VerifiedAt,
    CompletedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Requests {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DsarRequests::Table)
                    .if_not_exists()
                    .col(string(DsarRequests::Id).primary_key())
                    .col(string(DsarRequests::TenantId))
                    .col(string(DsarRequests::Kind))
                    .col(string(DsarRequests::Status))
                    .col(blob(DsarRequests::SubjectEmailCt))
                    .col(string(DsarRequests::SubjectHash))
                    .col(blob_null(DsarRequests::PayloadCt))
                    .col(string(DsarRequests::SubmittedBy))
                    .col(string(DsarRequests::SubmittedRole))
                    .col(timestamp_with_time_zone(DsarRequests::SubmittedAt))
                    .col(timestamp_with_time_zone(DsarRequests::FirstDueAt))
                    .col(timestamp_with_time_zone(DsarRequests::DueAt))
                    .col(text(DsarRequests::ExtensionReason))
                    .col(text(DsarRequests::RejectionReason))
                    .col(string(DsarRequests::CodeHash))
                    .col(timestamp_with_time_zone_null(DsarRequests::CodeExpiresAt))
                    .col(integer(DsarRequests::CodeAttempts))
                    .col(timestamp_with_time_zone_null(DsarRequests::VerifiedAt))
                    .col(timestamp_with_time_zone_null(DsarRequests::CompletedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("dsar_requests_by_tenant_due")
                    .table(DsarRequests::Table)
                    .col(DsarRequests::TenantId)
                    .col(DsarRequests::DueAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(DsarRequests::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

/// Each service's part in carrying a request out, and the export archives.
struct PartsAndExports;

impl MigrationName for PartsAndExports {
    fn name(&self) -> &str {
        "m20261203_000200_dsar_parts_and_exports"
    }
}

/// `dsar_request_parts`: one row per (request, service) while and after it is carried
/// out.
#[derive(DeriveIden)]
pub(crate) enum DsarRequestParts {
    Table,
    RequestId,
    Service,
    /// `pending`, `done` or `failed`.
    State,
    /// What the service answered (an export's records, JSON), sealed.
    ResultCt,
    /// Why it failed (no personal data).
    Error,
    Attempts,
    NextTryAt,
    UpdatedAt,
}

/// `dsar_exports`: the sealed archive of a completed access or portability request,
/// until it expires.
#[derive(DeriveIden)]
pub(crate) enum DsarExports {
    Table,
    RequestId,
    ArchiveCt,
    SizeBytes,
    CreatedAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for PartsAndExports {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DsarRequestParts::Table)
                    .if_not_exists()
                    .col(string(DsarRequestParts::RequestId))
                    .col(string(DsarRequestParts::Service))
                    .col(string(DsarRequestParts::State))
                    .col(blob_null(DsarRequestParts::ResultCt))
                    .col(text(DsarRequestParts::Error))
                    .col(integer(DsarRequestParts::Attempts))
                    .col(timestamp_with_time_zone(DsarRequestParts::NextTryAt))
                    .col(timestamp_with_time_zone(DsarRequestParts::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(DsarRequestParts::RequestId)
                            .col(DsarRequestParts::Service),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DsarExports::Table)
                    .if_not_exists()
                    .col(string(DsarExports::RequestId).primary_key())
                    .col(blob(DsarExports::ArchiveCt))
                    .col(big_integer(DsarExports::SizeBytes))
                    .col(timestamp_with_time_zone(DsarExports::CreatedAt))
                    .col(timestamp_with_time_zone(DsarExports::ExpiresAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DsarRequestParts::Table.into_iden(),
            DsarExports::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// The cascade of each erasure request, and the consents people gave or withdrew.
struct ErasuresAndConsents;

impl MigrationName for ErasuresAndConsents {
    fn name(&self) -> &str {
        "m20261204_000100_dsar_erasures_and_consents"
    }
}

/// `dsar_erasures`: the deletion cascade that carries an erasure request out, and its
/// receipt once retention issued it.
#[derive(DeriveIden)]
pub(crate) enum DsarErasures {
    Table,
    RequestId,
    CascadeId,
    /// The signed receipt (`mindmesh.retention.v1.Receipt`, encoded); no personal data.
    Receipt,
    StartedAt,
}

/// `dsar_consents`: every consent given or withdrawn, newest last; the newest row of a
/// (tenant, user, purpose) is the consent in force.
#[derive(DeriveIden)]
pub(crate) enum DsarConsents {
    Table,
    Id,
    TenantId,
    UserId,
    Purpose,
    Granted,
    /// The data-subject request that withdrew it, if one did.
    RequestId,
    RecordedBy,
    RecordedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for ErasuresAndConsents {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DsarErasures::Table)
                    .if_not_exists()
                    .col(string(DsarErasures::RequestId).primary_key())
                    .col(string(DsarErasures::CascadeId))
                    .col(blob_null(DsarErasures::Receipt))
                    .col(timestamp_with_time_zone(DsarErasures::StartedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DsarConsents::Table)
                    .if_not_exists()
                    .col(string(DsarConsents::Id).primary_key())
                    .col(string(DsarConsents::TenantId))
                    .col(string(DsarConsents::UserId))
                    .col(string(DsarConsents::Purpose))
                    .col(boolean(DsarConsents::Granted))
                    .col(string(DsarConsents::RequestId))
                    .col(string(DsarConsents::RecordedBy))
                    .col(timestamp_with_time_zone(DsarConsents::RecordedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("dsar_consents_by_user")
                    .table(DsarConsents::Table)
                    .col(DsarConsents::TenantId)
                    .col(DsarConsents::UserId)
                    .col(DsarConsents::Purpose)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DsarErasures::Table.into_iden(),
            DsarConsents::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Each tenant's processor switches and each person's communication preferences.
struct Settings;

impl MigrationName for Settings {
    fn name(&self) -> &str {
        "m20261204_000200_dsar_settings"
    }
}

/// `dsar_processor_settings`: a tenant's third-party processor switches (P14); a tenant
/// without a row has the defaults.
#[derive(DeriveIden)]
pub(crate) enum DsarProcessorSettings {
    Table,
    TenantId,
    AnalyticsEnabled,
    LlmEnabled,
    UpdatedAt,
}

/// `dsar_preferences`: a person's communication preferences (P13); a person without a
/// row has the defaults.
#[derive(DeriveIden)]
pub(crate) enum DsarPreferences {
    Table,
    TenantId,
    UserId,
    MarketingMail,
    /// An admin who receives the tenant's administrative notices (breach notices,
    /// inactivity warnings).
    AdminContact,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Settings {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DsarProcessorSettings::Table)
                    .if_not_exists()
                    .col(string(DsarProcessorSettings::TenantId).primary_key())
                    .col(boolean(DsarProcessorSettings::AnalyticsEnabled))
                    .col(boolean(DsarProcessorSettings::LlmEnabled))
                    .col(timestamp_with_time_zone(DsarProcessorSettings::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DsarPreferences::Table)
                    .if_not_exists()
                    .col(string(DsarPreferences::TenantId))
                    .col(string(DsarPreferences::UserId))
                    .col(boolean(DsarPreferences::MarketingMail))
                    .col(boolean(DsarPreferences::AdminContact).default(false))
                    .col(timestamp_with_time_zone(DsarPreferences::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(DsarPreferences::TenantId)
                            .col(DsarPreferences::UserId),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DsarProcessorSettings::Table.into_iden(),
            DsarPreferences::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// The notifications the notifier delivers, and the breaches declared.
struct NotificationsAndBreaches;

impl MigrationName for NotificationsAndBreaches {
    fn name(&self) -> &str {
        "m20261204_000300_dsar_notifications_and_breaches"
    }
}

/// `dsar_notifications`: one mail to one person, from a `notification.requested` event
/// (or a breach declared); delivered at least once and recorded as sent once.
#[derive(DeriveIden)]
pub(crate) enum DsarNotifications {
    Table,
    Id,
    /// The event it came from: (event, recipient) is unique, so a redelivered event
    /// queues nothing twice.
    EventId,
    TenantId,
    /// The recipient's account; empty when the tenant had nobody to send it to.
    UserId,
    Template,
    Administrative,
    /// Template parameters (JSON; no secrets, no content).
    Params,
    /// The breach it tells of, if any.
    BreachId,
    /// queued | sent | suppressed | failed
    Status,
    Attempts,
    /// When it is next tried (also the lease of the replica trying it).
    NextAttemptAt,
    /// Why it is not sent (non-personal).
    Reason,
    CreatedAt,
    SentAt,
}

/// `dsar_breaches`: every breach declared (P15), one row per affected tenant, with the
/// authority's 72-hour deadline.
#[derive(DeriveIden)]
pub(crate) enum DsarBreaches {
    Table,
    Id,
    TenantId,
    /// What happened, for the affected people (sealed: it may describe them).
    DescriptionCt,
    DetectedAt,
    DeclaredAt,
    /// `detected_at` + 72 hours (GDPR Art. 33(1)).
    AuthorityDueAt,
    DeclaredBy,
}

#[async_trait::async_trait]
impl MigrationTrait for NotificationsAndBreaches {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DsarNotifications::Table)
                    .if_not_exists()
                    .col(string(DsarNotifications::Id).primary_key())
                    .col(string(DsarNotifications::EventId))
                    .col(string(DsarNotifications::TenantId))
                    .col(string(DsarNotifications::UserId))
                    .col(string(DsarNotifications::Template))
                    .col(boolean(DsarNotifications::Administrative))
                    .col(text(DsarNotifications::Params))
                    .col(string_null(DsarNotifications::BreachId))
                    .col(string(DsarNotifications::Status))
                    .col(integer(DsarNotifications::Attempts))
                    .col(timestamp_with_time_zone(DsarNotifications::NextAttemptAt))
                    .col(string(DsarNotifications::Reason))
                    .col(timestamp_with_time_zone(DsarNotifications::CreatedAt))
                    .col(timestamp_with_time_zone_null(DsarNotifications::SentAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("dsar_notifications_once")
                    .table(DsarNotifications::Table)
                    .col(DsarNotifications::EventId)
                    .col(DsarNotifications::UserId)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("dsar_notifications_due")
                    .table(DsarNotifications::Table)
                    .col(DsarNotifications::Status)
                    .col(DsarNotifications::NextAttemptAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DsarBreaches::Table)
                    .if_not_exists()
                    .col(string(DsarBreaches::Id))
                    .col(string(DsarBreaches::TenantId))
                    .col(blob(DsarBreaches::DescriptionCt))
                    .col(timestamp_with_time_zone(DsarBreaches::DetectedAt))
                    .col(timestamp_with_time_zone(DsarBreaches::DeclaredAt))
                    .col(timestamp_with_time_zone(DsarBreaches::AuthorityDueAt))
                    .col(string(DsarBreaches::DeclaredBy))
                    .primary_key(
                        Index::create()
                            .col(DsarBreaches::Id)
                            .col(DsarBreaches::TenantId),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DsarNotifications::Table.into_iden(),
            DsarBreaches::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
