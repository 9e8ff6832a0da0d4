//! Data-subject requests (P12): who may file one, the check of the requester's identity
//! (the requester's email must be the subject's, and the subject confirms with a
//! one-time code mailed to that address — kept only as a keyed hash, expiring after
//! `dsar.code_ttl_secs`, rejected after `dsar.max_code_attempts` wrong tries), and the
//! legal deadline: one calendar month after receipt (GDPR Art. 12(3)), extendable by up
//! to two further months, with a reason, before the first month is over.
//!
//! Lifecycle: received → awaiting verification → in progress ([`crate::execution`]
//! carries every kind out) → completed, or rejected, with the reason recorded.

use std::sync::Arc;

use chrono::{DateTime, Months, Utc};
use mindmesh_kit::audit::{AuditLog, AuditRecord};
use mindmesh_kit::auth::{Caller, Role};
use mindmesh_kit::crypto::SecretKey;
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::{Error, Result};
use sea_orm::{DatabaseConnection, TransactionTrait};

use crate::mail::{Mail, Mailer};
use crate::store::requests::{self as store, RequestRow};

/// Longest extension reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Most days one extension adds.
pub const MAX_EXTENSION_DAYS: u32 = 60;
/// Digits of a verification code.
const CODE_DIGITS: usize = 8;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Confirmation and a copy.
    Access,
    /// Correction of personal fields.
    Rectification,
    /// Erasure everywhere.
    Erasure,
    /// Restriction of processing (or, with `lift`, its end).
    Restriction,
    /// A machine-readable copy.
    Portability,
    /// Withdrawal of consent.
    WithdrawConsent,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Access,
        Kind::Rectification,
        Kind::Erasure,
        Kind::Restriction,
        Kind::Portability,
        Kind::WithdrawConsent,
    ];

    /// The name stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Access => "access",
            Kind::Rectification => "rectification",
            Kind::Erasure => "erasure",
            Kind::Restriction => "restriction",
            Kind::Portability => "portability",
            Kind::WithdrawConsent => "withdraw_consent",
        }
    }

    fn parse(value: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == value)
    }
}

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Recorded, before the code is mailed.
    Received,
    /// Waiting for the subject's code.
    AwaitingVerification,
    /// Confirmed by the subject.
    Verified,
    /// Being carried out by the services.
    InProgress,
    /// Carried out.
    Completed,
    /// Refused; the reason is recorded.
    Rejected,
    /// A service could not carry out its part.
    Failed,
}

impl Status {
    const ALL: [Status; 7] = [
        Status::Received,
        Status::AwaitingVerification,
        Status::Verified,
        Status::InProgress,
        Status::Completed,
        Status::Rejected,
        Status::Failed,
    ];

    /// The name stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Received => "received",
            Status::AwaitingVerification => "awaiting_verification",
            Status::Verified => "verified",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
        }
    }

    fn parse(value: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Whether the request still runs against its deadline.
    pub const fn open(self) -> bool {
        !matches!(self, Status::Completed | Status::Rejected)
    }
}

/// A request, opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Its id.
    pub id: String,
    /// Its tenant.
    pub tenant: TenantId,
    /// What it asks.
    pub kind: Kind,
    /// Where it stands.
    pub status: Status,
    /// The person it concerns.
    pub subject_email: String,
    /// The corrections asked for (rectification), as JSON.
    pub rectification: Option<serde_json::Value>,
    /// A restriction that lifts an earlier one.
    pub lift: bool,
    /// The purpose whose consent is withdrawn; empty means every purpose.
    pub purpose: String,
    /// Who filed it.
    pub submitted_by: String,
    /// When.
    pub submitted_at: DateTime<Utc>,
    /// One calendar month after.
    pub first_due_at: DateTime<Utc>,
    /// When it is due now.
    pub due_at: DateTime<Utc>,
    /// Why it was extended; empty when not.
    pub extension_reason: String,
    /// Why it was rejected; empty when not.
    pub rejection_reason: String,
    /// When the mailed code expires, while one is outstanding.
    pub code_expires_at: Option<DateTime<Utc>>,
    /// Wrong codes still accepted.
    pub attempts_left: u32,
    /// When it was carried out.
    pub completed_at: Option<DateTime<Utc>>,
}

impl Request {
    /// Whether it is past due at `now` and still open.
    pub fn overdue(&self, now: DateTime<Utc>) -> bool {
        self.status.open() && self.due_at < now
    }
}

/// What a caller files.
#[derive(Clone, Debug)]
pub struct NewRequest {
    /// What it asks.
    pub kind: Kind,
    /// The person it concerns.
    pub subject_email: String,
    /// The person asking.
    pub requester_email: String,
    /// For rectification: the corrections, as JSON.
    pub rectification: Option<serde_json::Value>,
    /// For restriction: lift an earlier one instead.
    pub lift: bool,
    /// For withdrawal of consent: the purpose; empty means every purpose.
    pub purpose: String,
}

/// Whose requests a caller sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every tenant's (an operator).
    All,
    /// One tenant's (its admins, services).
    Tenant(TenantId),
    /// Those a member filed.
    Own(TenantId, String),
}

impl Scope {
    /// The scope of `caller`.
    pub fn of(caller: &Caller) -> Result<Scope> {
        if caller.has(Role::Operator) && caller.tenant.is_none() {
            return Ok(Scope::All);
        }
        let tenant = caller.tenant()?;
        if caller.has_any(&[Role::Admin, Role::Operator, Role::Service]) {
            Ok(Scope::Tenant(tenant))
        } else if caller.has(Role::Member) {
            Ok(Scope::Own(tenant, caller.subject.clone()))
        } else {
            Err(Error::PermissionDenied(
                "data-subject requests need a member, admin or operator token".into(),
            ))
        }
    }

    fn admits(&self, r: &Request) -> bool {
        match self {
            Scope::All => true,
            Scope::Tenant(t) => r.tenant == *t,
            Scope::Own(t, by) => r.tenant == *t && &r.submitted_by == by,
        }
    }
}

/// `value` as an email address, trimmed and lower-cased; the error names `field`.
pub fn email(field: &'static str, value: &str) -> Result<String> {
    let value = value.trim().to_lowercase();
    let valid = value.len() <= 254
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        })
        && !value.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(Error::invalid(field, "must be an email address"));
    }
    Ok(value)
}

/// The data-subject requests over the dsar database.
#[derive(Clone)]
pub struct Requests {
    db: DatabaseConnection,
    audit: AuditLog,
    mailer: Arc<dyn Mailer>,
    /// Seals the subject's email and the rectification of each row.
    seal_key: SecretKey,
    /// Keys the hash of a subject's email.
    subject_key: SecretKey,
    /// Keys the hash of each mailed code.
    code_key: SecretKey,
    code_ttl: chrono::Duration,
    max_attempts: u32,
}

fn aad(id: &str, column: &str) -> Vec<u8> {
    format!("mindmesh/dsar/dsar_requests/{column}/{id}").into_bytes()
}

impl Requests {
    /// Requests in `db`, audited in `audit`, codes mailed by `mailer`, keys derived from
    /// `master`; codes valid `code_ttl`, `max_attempts` wrong tries.
    pub fn new(
        db: DatabaseConnection,
        audit: AuditLog,
        mailer: Arc<dyn Mailer>,
        master: &SecretKey,
        code_ttl: chrono::Duration,
        max_attempts: u32,
    ) -> Result<Self> {
        Ok(Requests {
            db,
            audit,
            mailer,
            seal_key: master.derive("mindmesh/dsar/request-fields/v1")?,
            subject_key: master.derive("mindmesh/dsar/subject-hash/v1")?,
            code_key: master.derive("mindmesh/dsar/verification-code/v1")?,
            code_ttl,
            max_attempts,
        })
    }

    fn code_hash(&self, id: &str, code: &str) -> String {
        mindmesh_kit::crypto::hex(&self.code_key.mac(format!("{id}\n{code}").as_bytes()))
    }

    /// Whether `code` is the one whose keyed hash is `stored` (compared in constant time).
    fn code_matches(&self, id: &str, code: &str, stored: &str) -> bool {
        mindmesh_kit::crypto::unhex(stored).is_some_and(|tag| {
            self.code_key
                .verify_mac(format!("{id}\n{code}").as_bytes(), &tag)
        })
    }

    fn open(&self, row: RequestRow) -> Result<Request> {
        let corrupt = |what: &str| {
            Error::Internal(format!("dsar request {} with an unreadable {what}", row.id))
        };
        let email = self
            .seal_key
            .open(&aad(&row.id, "subject_email_ct"), &row.subject_email_ct)?;
        let kind = Kind::parse(&row.kind).ok_or_else(|| corrupt("kind"))?;
        let payload: Option<serde_json::Value> = match &row.payload_ct {
            Some(ct) => Some(
                serde_json::from_slice(&self.seal_key.open(&aad(&row.id, "payload_ct"), ct)?)
                    .map_err(|_| corrupt("payload"))?,
            ),
            None => None,
        };
        let lift = kind == Kind::Restriction
            && payload
                .as_ref()
                .and_then(|p| p.get("lift"))
                .and_then(|l| l.as_bool())
                .unwrap_or(false);
        let purpose = match (kind, &payload) {
            (Kind::WithdrawConsent, Some(p)) => p
                .get("purpose")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned(),
            _ => String::new(),
        };
        let rectification = payload.filter(|_| kind == Kind::Rectification);
        let outstanding = !row.code_hash.is_empty();
        Ok(Request {
            tenant: row.tenant_id.parse().map_err(|_| corrupt("tenant"))?,
            kind,
            status: Status::parse(&row.status).ok_or_else(|| corrupt("status"))?,
            subject_email: String::from_utf8(email).map_err(|_| corrupt("subject"))?,
            rectification,
            lift,
            purpose,
            submitted_by: row.submitted_by,
            submitted_at: row.submitted_at,
            first_due_at: row.first_due_at,
            due_at: row.due_at,
            extension_reason: row.extension_reason,
            rejection_reason: row.rejection_reason,
            code_expires_at: row.code_expires_at.filter(|_| outstanding),
            attempts_left: self.max_attempts.saturating_sub(row.code_attempts),
            completed_at: row.completed_at,
            id: row.id,
        })
    }

    async fn record<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        caller: &Caller,
        action: &str,
        r: &RequestRow,
        details: String,
    ) -> Result<()> {
        let tenant = r.tenant_id.parse().ok();
        self.audit
            .append(
                conn,
                &AuditRecord::by(caller, action, tenant, r.id.clone()).with_details(details),
            )
            .await?;
        Ok(())
    }

    /// Files `new` in `tenant` as `caller` at `now` (the API has checked that a member
    /// files about themselves; admins and operators file for anyone). A requester whose
    /// email is not the subject's gets the request recorded as rejected, with the
    /// reason; otherwise a code is mailed to the subject.
    pub async fn submit(
        &self,
        caller: &Caller,
        tenant: TenantId,
        new: NewRequest,
        now: DateTime<Utc>,
    ) -> Result<Request> {
        let subject = email("subject_email", &new.subject_email)?;
        let requester = email("requester_email", &new.requester_email)?;
        if new.kind == Kind::Rectification
            && new
                .rectification
                .as_ref()
                .and_then(|r| r.as_object())
                .is_none_or(|o| o.is_empty())
        {
            return Err(Error::invalid(
                "rectification",
                "a rectification names at least one field to correct",
            ));
        }
        let purpose = match new.kind {
            Kind::WithdrawConsent if !new.purpose.trim().is_empty() => {
                crate::consents::purpose(&new.purpose)?
            }
            _ => String::new(),
        };
        // What the request asks beyond its kind, sealed with it.
        let payload = match new.kind {
            Kind::Rectification => new.rectification.clone(),
            Kind::Restriction => Some(serde_json::json!({ "lift": new.lift })),
            Kind::WithdrawConsent => Some(serde_json::json!({ "purpose": purpose })),
            _ => None,
        };
        let id = uuid::Uuid::now_v7().to_string();
        let now = mindmesh_kit::db::micros(now);
        let first_due = now
            .checked_add_months(Months::new(1))
            .ok_or_else(|| Error::Internal("due date out of range".into()))?;
        let role = if caller.has(Role::Operator) {
            "operator"
        } else if caller.has(Role::Admin) {
            "admin"
        } else {
            "member"
        };
        let mut row = RequestRow {
            id: id.clone(),
            tenant_id: tenant.to_string(),
            kind: new.kind.as_str().to_owned(),
            status: Status::Received.as_str().to_owned(),
            subject_email_ct: self
                .seal_key
                .seal(&aad(&id, "subject_email_ct"), subject.as_bytes())?,
            subject_hash: self.subject_hash(tenant, &subject),
            payload_ct: match payload {
                Some(v) => Some(self.seal_key.seal(
                    &aad(&id, "payload_ct"),
                    &serde_json::to_vec(&v).map_err(|e| Error::Internal(e.to_string()))?,
                )?),
                None => None,
            },
            submitted_by: caller.subject.clone(),
            submitted_role: role.to_owned(),
            submitted_at: now,
            first_due_at: first_due,
            due_at: first_due,
            extension_reason: String::new(),
            rejection_reason: String::new(),
            code_hash: String::new(),
            code_expires_at: None,
            code_attempts: 0,
            verified_at: None,
            completed_at: None,
        };
        let mut code = None;
        if requester != subject {
            row.status = Status::Rejected.as_str().to_owned();
            row.rejection_reason =
                "the requester's email does not match the subject's email on file".into();
            row.completed_at = Some(now);
        } else {
            let digits = new_code()?;
            row.status = Status::AwaitingVerification.as_str().to_owned();
            row.code_hash = self.code_hash(&id, &digits);
            row.code_expires_at = Some(now + self.code_ttl);
            code = Some(digits);
        }
        let txn = self.db.begin().await?;
        store::put(&txn, &row).await?;
        self.record(
            &txn,
            caller,
            "dsar.submit",
            &row,
            format!("{} by {role}; {}", row.kind, row.status),
        )
        .await?;
        txn.commit().await?;
        if let Some(code) = code {
            // After the commit: a mail never names a request that does not exist. A
            // failed send leaves the request waiting; filing again mails a new code.
            self.mailer
                .send(&verification_mail(
                    &subject,
                    &id,
                    &code,
                    now + self.code_ttl,
                ))
                .await?;
        }
        self.open(row)
    }

    /// Checks `code` for request `id` (in `scope`) at `now`. The right code verifies it
    /// (once: the code is spent); a wrong one counts, and the last allowed wrong one, or
    /// an expired code, rejects the request. A wrong code is INVALID_ARGUMENT naming the
    /// tries left.
    pub async fn verify(
        &self,
        caller: &Caller,
        scope: &Scope,
        id: &str,
        code: &str,
        now: DateTime<Utc>,
    ) -> Result<Request> {
        let txn = self.db.begin().await?;
        let mut row = self.visible(&txn, scope, id, true).await?;
        let status = Status::parse(&row.status).unwrap_or(Status::Failed);
        if status != Status::AwaitingVerification || row.code_hash.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "the request is {}; it does not wait for a code",
                status.as_str()
            )));
        }
        let code = code.trim();
        let (action, outcome) = if row.code_expires_at.is_none_or(|at| at <= now) {
            row.status = Status::Rejected.as_str().to_owned();
            row.rejection_reason = "the verification code expired".into();
            row.code_hash.clear();
            row.completed_at = Some(now);
            ("dsar.reject", Ok(()))
        } else if self.code_matches(&row.id, code, &row.code_hash) {
            // Carried out from here on (crate::execution).
            row.status = Status::InProgress.as_str().to_owned();
            row.code_hash.clear();
            row.verified_at = Some(now);
            ("dsar.verify", Ok(()))
        } else {
            row.code_attempts += 1;
            let left = self.max_attempts.saturating_sub(row.code_attempts);
            if left == 0 {
                row.status = Status::Rejected.as_str().to_owned();
                row.rejection_reason = format!(
                    "the verification code was wrong {} times",
                    row.code_attempts
                );
                row.code_hash.clear();
                row.completed_at = Some(now);
                ("dsar.reject", Ok(()))
            } else {
                (
                    "dsar.verify_failed",
                    Err(Error::invalid(
                        "code",
                        format!("does not match; {left} tries left"),
                    )),
                )
            }
        };
        store::put(&txn, &row).await?;
        let details = match action {
            "dsar.reject" => row.rejection_reason.clone(),
            "dsar.verify" => "verified by the subject's code".to_owned(),
            _ => format!(
                "wrong code ({} of {})",
                row.code_attempts, self.max_attempts
            ),
        };
        self.record(&txn, caller, action, &row, details).await?;
        txn.commit().await?;
        outcome?;
        self.open(row)
    }

    /// The requests of `tenant` about the person with `email`, oldest first.
    pub async fn about(&self, tenant: TenantId, email: &str) -> Result<Vec<Request>> {
        let subject = email.trim().to_lowercase();
        let hash = self.subject_hash(tenant, &subject);
        let mut found = store::about_subject(&self.db, tenant, &hash)
            .await?
            .into_iter()
            .map(|row| self.open(row))
            .collect::<Result<Vec<_>>>()?;
        found.sort_by_key(|r| r.submitted_at);
        Ok(found)
    }

    fn subject_hash(&self, tenant: TenantId, subject: &str) -> String {
        mindmesh_kit::crypto::hex(
            &self
                .subject_key
                .mac(format!("{tenant}\n{subject}").as_bytes()),
        )
    }

    /// Records that `caller` downloaded the `bytes`-byte export of `request`.
    pub async fn downloaded(&self, caller: &Caller, request: &Request, bytes: usize) -> Result<()> {
        self.audit
            .record(
                &AuditRecord::by(
                    caller,
                    "dsar.download",
                    Some(request.tenant),
                    request.id.clone(),
                )
                .with_details(format!("{bytes} bytes")),
            )
            .await?;
        Ok(())
    }

    /// Marks request `id` carried out at `now`, in `conn`'s transaction.
    pub async fn complete<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut row = store::find(conn, id, true)
            .await?
            .ok_or(Error::NotFound("data-subject request"))?;
        row.status = Status::Completed.as_str().to_owned();
        row.completed_at = Some(now);
        store::put(conn, &row).await
    }

    /// The request `id`, if `scope` sees it (else NOT_FOUND).
    pub async fn get(&self, scope: &Scope, id: &str) -> Result<Request> {
        let row = self.visible(&self.db, scope, id, false).await?;
        self.open(row)
    }

    async fn visible<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        scope: &Scope,
        id: &str,
        lock: bool,
    ) -> Result<RequestRow> {
        let row = store::find(conn, id, lock)
            .await?
            .ok_or(Error::NotFound("data-subject request"))?;
        let visible = match scope {
            Scope::All => true,
            Scope::Tenant(t) => row.tenant_id == t.to_string(),
            Scope::Own(t, by) => row.tenant_id == t.to_string() && &row.submitted_by == by,
        };
        if !visible {
            return Err(Error::NotFound("data-subject request"));
        }
        Ok(row)
    }

    /// The requests `scope` sees, as of `now`: overdue first (most overdue first), then
    /// the open ones by due date (nearly due first), then the closed ones, newest first;
    /// `limit` of them after the first `offset`, and the next offset if there are more.
    pub async fn list(
        &self,
        scope: &Scope,
        now: DateTime<Utc>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Request>, Option<usize>)> {
        let (tenant, by) = match scope {
            Scope::All => (None, None),
            Scope::Tenant(t) => (Some(*t), None),
            Scope::Own(t, by) => (Some(*t), Some(by.as_str())),
        };
        let mut all = Vec::new();
        for row in store::all(&self.db, tenant, by).await? {
            let request = self.open(row)?;
            if scope.admits(&request) {
                all.push(request);
            }
        }
        all.sort_by(|a, b| {
            let rank = |r: &Request| (!r.overdue(now), !r.status.open());
            rank(a)
                .cmp(&rank(b))
                .then_with(|| match a.status.open() {
                    true => a.due_at.cmp(&b.due_at),
                    false => b.submitted_at.cmp(&a.submitted_at),
                })
                .then_with(|| a.id.cmp(&b.id))
        });
        let next = (all.len() > offset + limit).then_some(offset + limit);
        Ok((all.into_iter().skip(offset).take(limit).collect(), next))
    }

    /// Extends request `id` by `days` (1–60) for `reason`, as `caller` at `now`: only an
    /// open request, only before its first due date, never beyond two months past it
    /// (GDPR Art. 12(3)).
    pub async fn extend(
        &self,
        caller: &Caller,
        scope: &Scope,
        id: &str,
        days: u32,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Request> {
        if !caller.has_any(&[Role::Admin, Role::Operator]) {
            return Err(Error::PermissionDenied(
                "extending a deadline needs the admin or operator role".into(),
            ));
        }
        if !(1..=MAX_EXTENSION_DAYS).contains(&days) {
            return Err(Error::invalid(
                "days",
                format!("must be between 1 and {MAX_EXTENSION_DAYS}"),
            ));
        }
        let reason = mindmesh_kit::validate::line("reason", reason, MAX_REASON_CHARS, true)?;
        let txn = self.db.begin().await?;
        let mut row = self.visible(&txn, scope, id, true).await?;
        let status = Status::parse(&row.status).unwrap_or(Status::Failed);
        if !status.open() {
            return Err(Error::FailedPrecondition(format!(
                "the request is {}; its deadline no longer runs",
                status.as_str()
            )));
        }
        if now >= row.first_due_at {
            return Err(Error::FailedPrecondition(
                "a deadline is extended only within the first month after receipt (GDPR Art. 12(3))"
                    .into(),
            ));
        }
        let limit = row
            .first_due_at
            .checked_add_months(Months::new(2))
            .ok_or_else(|| Error::Internal("due date out of range".into()))?;
        let due = row.due_at + chrono::Duration::days(i64::from(days));
        if due > limit {
            return Err(Error::invalid(
                "days",
                format!(
                    "would extend beyond two months after the first due date ({})",
                    limit.to_rfc3339()
                ),
            ));
        }
        row.due_at = due;
        row.extension_reason = reason;
        store::put(&txn, &row).await?;
        self.record(
            &txn,
            caller,
            "dsar.extend",
            &row,
            format!("by {days} days to {}", due.to_rfc3339()),
        )
        .await?;
        txn.commit().await?;
        self.open(row)
    }
}

/// A fresh code of [`CODE_DIGITS`] decimal digits.
fn new_code() -> Result<String> {
    let bytes: [u8; 8] = mindmesh_kit::crypto::random_bytes()?;
    let n = u64::from_be_bytes(bytes) % 10u64.pow(CODE_DIGITS as u32);
    Ok(format!("{n:0width$}", width = CODE_DIGITS))
}

fn verification_mail(to: &str, id: &str, code: &str, expires: DateTime<Utc>) -> Mail {
    Mail::new(
        to,
        "Confirm your data request",
        format!(
            "Someone asked, with this email address, to exercise your data protection rights \
             (request {id}).\n\nIf that was you, confirm it with this code:\n\n    {code}\n\n\
             The code is valid until {}. If it was not you, ignore this mail: nothing happens \
             without the code.\n",
            expires.to_rfc2822()
        ),
    )
}
