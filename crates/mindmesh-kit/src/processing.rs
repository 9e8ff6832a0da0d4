//! The processor gate (P14): the one check every code path that sends data to a
//! third-party processor — the usage-analytics processor, the LLM provider — passes
//! first ([`denial`], [`permits`]).
//!
//! It denies when the tenant switched the processor off, when the person is restricted
//! (Art. 18: their data is kept but not processed beyond storage), or when the person
//! withdrew the consent the processor's processing rests on ([`Processor::purpose`]).
//! The facts come from the dsar service's events, mirrored into each gated service's
//! own tables ([`crate::migrations::processing_gate`]) by [`apply_event`], the way
//! [`crate::holds`] mirrors legal holds, so the gate reads its own database only:
//! `processor.settings_set` (the switches), `subject.restricted` /
//! `subject.unrestricted` and `consent.withdrawn` / `consent.given` (a person's limits).
//!
//! A tenant without switches has the defaults ([`ANALYTICS_BY_DEFAULT`],
//! [`LLM_BY_DEFAULT`]); a person without limits is processed as their tenant allows.

use std::fmt;

use mindmesh_proto::mindmesh::events::v1::Envelope;
use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, TransactionTrait};

use crate::error::{Error, Result};
use crate::ids::{TenantId, UserId};

const SWITCHES: &str = "processor_switches";
const LIMITS: &str = "processing_limits";
const RESTRICTED: &str = "restricted";
const CONSENT_PREFIX: &str = "consent:";

/// Pseudonymized usage analytics go to the analytics processor unless the tenant
/// switches it off (they hold no personal data, P14).
pub const ANALYTICS_BY_DEFAULT: bool = true;

/// Content goes to the LLM provider only when the tenant switches it on.
pub const LLM_BY_DEFAULT: bool = false;

/// A third-party processor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Processor {
    /// The usage-analytics processor (pseudonymized product events).
    Analytics,
    /// The LLM provider (document content).
    Llm,
}

impl Processor {
    /// Its name, as logs and errors say it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Processor::Analytics => "analytics",
            Processor::Llm => "llm",
        }
    }

    /// The consent purpose its processing rests on: withdrawing it stops the processing.
    pub const fn purpose(self) -> &'static str {
        match self {
            Processor::Analytics => "analytics",
            Processor::Llm => "llm_processing",
        }
    }
}

/// A tenant's processor switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Switches {
    /// Whether the analytics processor may receive the tenant's pseudonymized events.
    pub analytics: bool,
    /// Whether the LLM provider may receive the tenant's content.
    pub llm: bool,
}

impl Switches {
    /// The switches of a tenant that never set them.
    pub const DEFAULT: Switches = Switches {
        analytics: ANALYTICS_BY_DEFAULT,
        llm: LLM_BY_DEFAULT,
    };

    /// Whether `processor` is switched on.
    pub const fn allows(&self, processor: Processor) -> bool {
        match processor {
            Processor::Analytics => self.analytics,
            Processor::Llm => self.llm,
        }
    }
}

impl Default for Switches {
    fn default() -> Self {
        Switches::DEFAULT
    }
}

/// Why the gate is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The tenant switched the processor off.
    SwitchedOff,
    /// The person's processing is restricted.
    Restricted,
    /// The person withdrew the consent the processing rests on.
    ConsentWithdrawn,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Denial::SwitchedOff => "the tenant switched the processor off",
            Denial::Restricted => "the person's processing is restricted",
            Denial::ConsentWithdrawn => "the person withdrew their consent",
        })
    }
}

/// Why `processor` may not receive data of `tenant` (about `user`, when it concerns a
/// person); `None` when it may.
pub async fn denial<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    processor: Processor,
    user: Option<UserId>,
) -> Result<Option<Denial>> {
    if !switches(conn, tenant).await?.allows(processor) {
        return Ok(Some(Denial::SwitchedOff));
    }
    let Some(user) = user else {
        return Ok(None);
    };
    let reasons = limits(conn, tenant, user).await?;
    if reasons.iter().any(|r| r == RESTRICTED) {
        return Ok(Some(Denial::Restricted));
    }
    let withdrawn = consent_reason(processor.purpose());
    if reasons.contains(&withdrawn) {
        return Ok(Some(Denial::ConsentWithdrawn));
    }
    Ok(None)
}

/// Whether `processor` may receive data of `tenant` (about `user`).
pub async fn permits<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    processor: Processor,
    user: Option<UserId>,
) -> Result<bool> {
    Ok(denial(conn, tenant, processor, user).await?.is_none())
}

/// The switches of `tenant` as this service last heard them.
pub async fn switches<C: ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<Switches> {
    let row = conn
        .query_one(
            &Query::select()
                .columns(["analytics", "llm"])
                .from(SWITCHES)
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .to_owned(),
        )
        .await?;
    let Some(row) = row else {
        return Ok(Switches::DEFAULT);
    };
    Ok(Switches {
        analytics: row.try_get("", "analytics")?,
        llm: row.try_get("", "llm")?,
    })
}

async fn limits<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    user: UserId,
) -> Result<Vec<String>> {
    let rows = conn
        .query_all(
            &Query::select()
                .column("reason")
                .from(LIMITS)
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .and_where(Expr::col("user_id").eq(user.to_string()))
                .to_owned(),
        )
        .await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<String>("", "reason")?))
        .collect()
}

fn consent_reason(purpose: &str) -> String {
    format!("{CONSENT_PREFIX}{purpose}")
}

/// Records `switches` for `tenant`.
pub async fn set_switches<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    switches: Switches,
) -> Result<()> {
    conn.execute(
        &Query::insert()
            .into_table(SWITCHES)
            .columns(["tenant_id", "analytics", "llm", "updated_at"])
            .values_panic([
                tenant.to_string().into(),
                switches.analytics.into(),
                switches.llm.into(),
                crate::db::now().into(),
            ])
            .on_conflict(
                OnConflict::column("tenant_id")
                    .update_columns(["analytics", "llm", "updated_at"])
                    .to_owned(),
            )
            .to_owned(),
    )
    .await?;
    Ok(())
}

async fn limit<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    user: UserId,
    reason: &str,
) -> Result<()> {
    conn.execute(
        &Query::insert()
            .into_table(LIMITS)
            .columns(["tenant_id", "user_id", "reason"])
            .values_panic([
                tenant.to_string().into(),
                user.to_string().into(),
                reason.into(),
            ])
            .on_conflict(
                OnConflict::columns(["tenant_id", "user_id", "reason"])
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned(),
    )
    .await?;
    Ok(())
}

async fn unlimit<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    user: UserId,
    reason: &str,
) -> Result<()> {
    conn.execute(
        &Query::delete()
            .from_table(LIMITS)
            .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
            .and_where(Expr::col("user_id").eq(user.to_string()))
            .and_where(Expr::col("reason").eq(reason))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Forgets what the gate knows of `user` in `tenant`, or of the whole tenant when
/// `None` (its switches too): part of erasing them. Returns the rows removed.
pub async fn forget<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    user: Option<UserId>,
) -> Result<u64> {
    let mut limits = Query::delete();
    limits
        .from_table(LIMITS)
        .and_where(Expr::col("tenant_id").eq(tenant.to_string()));
    if let Some(user) = user {
        limits.and_where(Expr::col("user_id").eq(user.to_string()));
    }
    let mut removed = conn.execute(&limits).await?.rows_affected();
    if user.is_none() {
        removed += conn
            .execute(
                &Query::delete()
                    .from_table(SWITCHES)
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .to_owned(),
            )
            .await?
            .rows_affected();
    }
    Ok(removed)
}

/// What one event changes in the gate.
enum Change {
    Switches(Switches),
    Limit(UserId, String),
    Unlimit(UserId, String),
}

fn change(envelope: &Envelope) -> Result<Option<Change>> {
    let user = |value: &str| -> Result<Option<UserId>> {
        if value.is_empty() {
            return Ok(None);
        }
        UserId::parse_event_field("user_id", value).map(Some)
    };
    Ok(match &envelope.payload {
        Some(Payload::ProcessorSettingsSet(s)) => Some(Change::Switches(Switches {
            analytics: s.analytics_enabled,
            llm: s.llm_enabled,
        })),
        // A restricted person without an account has nothing a processor could be sent.
        Some(Payload::SubjectRestricted(r)) => {
            user(&r.user_id)?.map(|u| Change::Limit(u, RESTRICTED.to_owned()))
        }
        Some(Payload::SubjectUnrestricted(r)) => {
            user(&r.user_id)?.map(|u| Change::Unlimit(u, RESTRICTED.to_owned()))
        }
        Some(Payload::ConsentWithdrawn(c)) => Some(Change::Limit(
            UserId::parse_event_field("user_id", &c.user_id)?,
            consent_reason(&c.purpose),
        )),
        Some(Payload::ConsentGiven(c)) => Some(Change::Unlimit(
            UserId::parse_event_field("user_id", &c.user_id)?,
            consent_reason(&c.purpose),
        )),
        _ => None,
    })
}

/// Applies `envelope` to the gate if it is one of the events it mirrors, once (claimed
/// in `consumer`'s inbox in the same transaction); returns whether it was one (whose
/// handling is then complete; a restriction of a person without an account counts as
/// applied).
pub async fn apply_event(
    ctx: &crate::context::ServiceContext,
    consumer: &str,
    envelope: &Envelope,
) -> Result<bool> {
    let mirrored = matches!(
        &envelope.payload,
        Some(
            Payload::ProcessorSettingsSet(_)
                | Payload::SubjectRestricted(_)
                | Payload::SubjectUnrestricted(_)
                | Payload::ConsentWithdrawn(_)
                | Payload::ConsentGiven(_)
        )
    );
    if !mirrored {
        return Ok(false);
    }
    let Some(change) = change(envelope)? else {
        return Ok(true);
    };
    let tenant = crate::events::tenant(envelope)?
        .ok_or_else(|| Error::MalformedEvent("a processing event without tenant".into()))?;
    let txn = ctx.db.begin().await?;
    if crate::inbox::claim(&txn, consumer, &envelope.id).await? {
        match change {
            Change::Switches(s) => set_switches(&txn, tenant, s).await?,
            Change::Limit(user, reason) => limit(&txn, tenant, user, &reason).await?,
            Change::Unlimit(user, reason) => unlimit(&txn, tenant, user, &reason).await?,
        }
    }
    txn.commit().await?;
    Ok(true)
}
