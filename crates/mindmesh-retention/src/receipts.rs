//! Receipts: the signed, publicly verifiable proof that a cascade completed (DESIGN.md
//! §5.6). A receipt names the cascade, its kind and scope, a keyed hash of its subject
//! (no personal data, so it outlives the data), every participant's signed attestation
//! with the key it verified against, when the cascade completed, and when the last
//! backup that could still hold the data is gone. Retention signs it with its Ed25519
//! key over a deterministic encoding ([`Receipt::body`]) and appends that encoding to
//! the receipt log ([`crate::receipt_log`]).
//!
//! [`verify`] checks a receipt with its inclusion proof without any server: retention's
//! signature, every attestation, the signed checkpoint and the receipt's place in it.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Utc};
use mindmesh_kit::crypto::{hex, verify_signature};
use mindmesh_kit::keyfiles::KeyMaterial;
use mindmesh_kit::{Error, Result, Service};
use sea_orm::ConnectionTrait;
use serde::{Deserialize, Serialize};

use crate::attesters::Attesters;
use crate::ledger::{Cascade, PartState};
use crate::receipt_log::{self, LogName, TreeHead};
use crate::store::receipts as store;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One service's part, as the receipt carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// The service (`ingest`, `permissions`, `storage`, `retention`, `dsar`).
    pub service: String,
    /// `done`, or `retained` (data kept on a recorded ground).
    pub state: String,
    /// Rows deleted, by kind.
    pub counts: BTreeMap<String, u64>,
    /// The data keys it destroyed.
    pub destroyed_key_ids: Vec<String>,
    /// When it reported.
    pub reported_at: DateTime<Utc>,
    /// Its Ed25519 signature over its attestation (base64).
    pub signature: String,
    /// The public key that signature verified against when retention recorded it
    /// (32 bytes, base64).
    pub public_key: String,
}

/// A receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The encoding's version.
    pub version: u32,
    /// The cascade.
    pub cascade_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// `integration`, `user`, `tenant`, `subject` or `inactivity`.
    pub kind: String,
    /// The integration, user or tenant id erased.
    pub scope_id: String,
    /// Keyed hash of the subject (hex), empty when none.
    pub subject_hash: String,
    /// When the cascade was requested.
    pub requested_at: DateTime<Utc>,
    /// When it completed (the receipt's issue time).
    pub completed_at: DateTime<Utc>,
    /// When the last backup that could hold the erased data expires.
    pub backups_expire_at: DateTime<Utc>,
    /// The receipt's leaf index in the receipt log.
    pub log_index: u64,
    /// Every participant's attestation, in service order.
    pub attestations: Vec<Attestation>,
    /// Retention's Ed25519 signature over [`Receipt::body`] (base64).
    pub signature: String,
}

impl Receipt {
    /// The bytes signed and logged: every field but the signature, each length-prefixed,
    /// in a fixed order (counts by name).
    pub fn body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut field = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            out.extend_from_slice(bytes);
        };
        field(b"mindmesh/receipt");
        field(&self.version.to_be_bytes());
        field(self.cascade_id.as_bytes());
        field(self.tenant_id.as_bytes());
        field(self.kind.as_bytes());
        field(self.scope_id.as_bytes());
        field(self.subject_hash.as_bytes());
        field(&self.requested_at.timestamp_micros().to_be_bytes());
        field(&self.completed_at.timestamp_micros().to_be_bytes());
        field(&self.backups_expire_at.timestamp_micros().to_be_bytes());
        field(&self.log_index.to_be_bytes());
        field(&(self.attestations.len() as u64).to_be_bytes());
        for a in &self.attestations {
            field(a.service.as_bytes());
            field(a.state.as_bytes());
            field(&(a.counts.len() as u64).to_be_bytes());
            for (name, count) in &a.counts {
                field(name.as_bytes());
                field(&count.to_be_bytes());
            }
            field(&(a.destroyed_key_ids.len() as u64).to_be_bytes());
            for key in &a.destroyed_key_ids {
                field(key.as_bytes());
            }
            field(&a.reported_at.timestamp_micros().to_be_bytes());
            field(a.signature.as_bytes());
            field(a.public_key.as_bytes());
        }
        out
    }
}

/// Where a receipt sits in the log: a signed checkpoint and the audit path to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inclusion {
    /// The log's name (the checkpoint's origin).
    pub log_name: String,
    /// The size of the tree the path leads to.
    pub tree_size: u64,
    /// Its root hash (hex).
    pub root_hash: String,
    /// The audit path from the receipt's leaf to that root (hex hashes).
    pub audit_path: Vec<String>,
    /// The signed checkpoint of that tree (a C2SP signed note).
    pub checkpoint: String,
}

/// A receipt with its inclusion proof: what `mindmesh receipt verify` reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptFile {
    /// The receipt.
    pub receipt: Receipt,
    /// Its place in the log.
    pub inclusion: Inclusion,
}

/// What a check of a receipt found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verification {
    /// Retention's signature over the receipt verifies.
    pub signature_valid: bool,
    /// Every attestation verifies against the key it names.
    pub attestations_valid: bool,
    /// The checkpoint is signed by retention's key for the log named.
    pub checkpoint_valid: bool,
    /// The audit path leads from the receipt to the checkpoint's root.
    pub included: bool,
}

impl Verification {
    /// Whether everything holds.
    pub fn ok(&self) -> bool {
        self.signature_valid && self.attestations_valid && self.checkpoint_valid && self.included
    }
}

fn unhex(value: &str) -> Option<[u8; 32]> {
    if value.len() != 64 || !value.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&value[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Whether retention's signature over `receipt` verifies against `retention_key`.
pub fn signature_valid(receipt: &Receipt, retention_key: &[u8; 32]) -> bool {
    B64.decode(&receipt.signature)
        .is_ok_and(|sig| verify_signature(retention_key, &receipt.body(), &sig))
}

/// Whether every attestation of `receipt` verifies against the key it names, and each
/// service attests once.
pub fn attestations_valid(receipt: &Receipt) -> bool {
    let mut seen = Vec::new();
    !receipt.attestations.is_empty()
        && receipt.attestations.iter().all(|a| {
            let Ok(service) = a.service.parse::<Service>() else {
                return false;
            };
            if seen.contains(&service) {
                return false;
            }
            seen.push(service);
            let Some(key) = B64.decode(&a.public_key).ok() else {
                return false;
            };
            let retained = match a.state.as_str() {
                "done" => false,
                "retained" => true,
                _ => return false,
            };
            mindmesh_kit::events::verify_attestation(
                &key,
                &receipt.cascade_id,
                service,
                retained,
                &a.counts,
                &a.destroyed_key_ids,
                &a.signature,
            )
        })
}

/// Checks `file` offline against retention's public key: the receipt's signature, its
/// attestations, the checkpoint's signature, and the receipt's inclusion in it.
pub fn verify(file: &ReceiptFile, retention_key: &[u8; 32]) -> Verification {
    let receipt = &file.receipt;
    let proof = &file.inclusion;
    let mut found = Verification {
        signature_valid: signature_valid(receipt, retention_key),
        attestations_valid: attestations_valid(receipt),
        ..Verification::default()
    };
    let Ok(name) = LogName::new(&proof.log_name) else {
        return found;
    };
    let Some(head) = receipt_log::verify_checkpoint(&name, retention_key, &proof.checkpoint) else {
        return found;
    };
    found.checkpoint_valid = true;
    let path: Option<Vec<[u8; 32]>> = proof.audit_path.iter().map(|h| unhex(h)).collect();
    found.included = head.size == proof.tree_size
        && unhex(&proof.root_hash) == Some(head.root)
        && path.is_some_and(|path| {
            receipt_log::verify_inclusion(&receipt.body(), receipt.log_index, &head, &path)
        });
    found
}

/// Issues and reads receipts: retention's key, the log, and what the receipts say of
/// backups.
#[derive(Clone)]
pub struct Notary {
    keys: Arc<KeyMaterial>,
    log: LogName,
    attesters: Attesters,
    backup_retention: chrono::Duration,
}

impl Notary {
    /// A notary signing with `keys.signing`, logging under `log`, naming each
    /// attestation's key from `attesters`, with backups kept `backup_retention_days`.
    pub fn new(
        keys: Arc<KeyMaterial>,
        log: LogName,
        attesters: Attesters,
        backup_retention_days: u32,
    ) -> Self {
        Notary {
            keys,
            log,
            attesters,
            backup_retention: chrono::Duration::days(i64::from(backup_retention_days)),
        }
    }

    /// Retention's public key, which verifies receipts and checkpoints.
    pub fn public_key(&self) -> [u8; 32] {
        self.keys.signing.public_key()
    }

    /// The log's name.
    pub fn log_name(&self) -> &LogName {
        &self.log
    }

    /// Issues the receipt of the complete `cascade` in `conn`'s transaction: signed,
    /// appended to the log (whose head it locks) and stored.
    pub async fn issue<C: ConnectionTrait>(&self, conn: &C, cascade: &Cascade) -> Result<Receipt> {
        let (Some(kind), Some(completed_at)) = (cascade.kind, cascade.completed_at) else {
            return Err(Error::Internal(
                "a receipt for an incomplete cascade".into(),
            ));
        };
        let size = store::lock_size(conn).await?;
        let attestations = kind
            .participants()
            .iter()
            .filter_map(|service| cascade.parts.iter().find(|p| p.service == *service))
            .map(|p| Attestation {
                service: p.service.as_str().to_owned(),
                state: if p.state == PartState::Retained {
                    "retained"
                } else {
                    "done"
                }
                .to_owned(),
                counts: p.counts.clone(),
                destroyed_key_ids: p.destroyed_key_ids.clone(),
                reported_at: p.reported_at.unwrap_or(completed_at),
                signature: p.signature.clone(),
                public_key: B64.encode(self.attesters.key(p.service)),
            })
            .collect();
        let mut receipt = Receipt {
            version: 1,
            cascade_id: cascade.id.to_string(),
            tenant_id: cascade.tenant.to_string(),
            kind: kind.as_str().to_owned(),
            scope_id: cascade.scope_id.clone(),
            subject_hash: cascade.subject_hash.clone(),
            requested_at: cascade.requested_at.unwrap_or(cascade.first_seen_at),
            completed_at,
            backups_expire_at: completed_at + self.backup_retention,
            log_index: size,
            attestations,
            signature: String::new(),
        };
        let body = receipt.body();
        receipt.signature = B64.encode(self.keys.signing.sign(&body));
        receipt_log::append(conn, size, &body).await?;
        let json = serde_json::to_string(&receipt).map_err(|e| Error::Internal(e.to_string()))?;
        store::put_receipt(conn, cascade.id, cascade.tenant, size, &json).await?;
        Ok(receipt)
    }

    /// The receipt of `cascade`, if it completed.
    pub async fn receipt<C: ConnectionTrait>(
        &self,
        conn: &C,
        cascade: mindmesh_kit::ids::CascadeId,
    ) -> Result<Option<Receipt>> {
        store::receipt(conn, cascade)
            .await?
            .map(|json| {
                serde_json::from_str(&json)
                    .map_err(|_| Error::Internal("a stored receipt does not parse".into()))
            })
            .transpose()
    }

    /// The inclusion proof of `receipt` in the log as it is now, with a fresh signed
    /// checkpoint.
    pub async fn inclusion<C: ConnectionTrait>(
        &self,
        conn: &C,
        receipt: &Receipt,
    ) -> Result<Inclusion> {
        let head = receipt_log::head(conn).await?;
        if receipt.log_index >= head.size {
            return Err(Error::Internal("a receipt beyond the log's end".into()));
        }
        let path = receipt_log::prove_inclusion(conn, receipt.log_index, head.size).await?;
        Ok(Inclusion {
            log_name: self.log.as_str().to_owned(),
            tree_size: head.size,
            root_hash: hex(&head.root),
            audit_path: path.iter().map(|h| hex(h)).collect(),
            checkpoint: receipt_log::sign_checkpoint(&self.log, &self.keys.signing, &head)?,
        })
    }

    /// Whether `receipt` is the one the log holds at its index: its body is that leaf
    /// (the proof is checked against the log's current head).
    pub async fn logged<C: ConnectionTrait>(
        &self,
        conn: &C,
        receipt: &Receipt,
    ) -> Result<(bool, Inclusion)> {
        let head = receipt_log::head(conn).await?;
        if receipt.log_index >= head.size {
            let empty = Inclusion {
                log_name: self.log.as_str().to_owned(),
                tree_size: head.size,
                root_hash: hex(&head.root),
                audit_path: Vec::new(),
                checkpoint: receipt_log::sign_checkpoint(&self.log, &self.keys.signing, &head)?,
            };
            return Ok((false, empty));
        }
        let inclusion = self.inclusion(conn, receipt).await?;
        let path: Vec<[u8; 32]> = inclusion
            .audit_path
            .iter()
            .filter_map(|h| unhex(h))
            .collect();
        let included =
            receipt_log::verify_inclusion(&receipt.body(), receipt.log_index, &head, &path);
        Ok((included, inclusion))
    }

    /// The current head of the log, and its signed checkpoint.
    pub async fn checkpoint<C: ConnectionTrait>(&self, conn: &C) -> Result<(TreeHead, String)> {
        let head = receipt_log::head(conn).await?;
        let note = receipt_log::sign_checkpoint(&self.log, &self.keys.signing, &head)?;
        Ok((head, note))
    }
}
