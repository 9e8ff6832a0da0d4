//! The append-only log of receipts: a Merkle tree with RFC 6962 hashing (a leaf is
//! SHA-256 of `0x00 ‖ receipt`, a node SHA-256 of `0x01 ‖ left ‖ right`), kept as the
//! tree's permanent node hashes (the `tlog` layout of Go's sumdb, through the
//! `tlog_tiles` crate), with signed checkpoints in the C2SP `tlog-checkpoint` /
//! `signed-note` format, so that standard transparency-log tooling reads them.
//!
//! An inclusion proof shows a receipt is in the tree of a checkpoint; a consistency
//! proof between two checkpoints shows the later tree extends the earlier one (the log
//! was never rewritten). Both are checked here without the database, as a customer
//! checks them offline.

use std::cell::RefCell;
use std::collections::HashMap;

use base64::Engine;
use mindmesh_kit::crypto::{SigningKey, verify_signature};
use mindmesh_kit::{Error, Result};
use sea_orm::ConnectionTrait;
use tlog_tiles::{Checkpoint, Hash, HashReader};

use crate::store::receipts as store;

/// The key type byte of an Ed25519 key in a signed note (C2SP signed-note).
const ALG_ED25519: u8 = 1;

/// Reads the tree's stored hashes in two passes: the `tlog` functions ask for the
/// indexes they need (which depend only on the tree's size), those are read from the
/// database, then the function runs again over them.
enum Reader<'a> {
    /// Notes the indexes asked for, answering placeholder hashes.
    Recording(&'a RefCell<Vec<u64>>),
    /// The hashes read.
    Known(HashMap<u64, Hash>),
}

impl HashReader for Reader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> std::result::Result<Vec<Hash>, tlog_tiles::Error> {
        match self {
            Reader::Recording(asked) => {
                asked.borrow_mut().extend_from_slice(indexes);
                Ok(vec![Hash::default(); indexes.len()])
            }
            Reader::Known(known) => indexes
                .iter()
                .map(|i| {
                    known
                        .get(i)
                        .copied()
                        .ok_or(tlog_tiles::Error::IndexesNotInTree)
                })
                .collect(),
        }
    }
}

fn log_error(e: tlog_tiles::Error) -> Error {
    Error::Internal(format!("receipt log: {e}"))
}

/// Runs `f` over the stored hashes it needs, read from `conn`.
async fn with_hashes<C, T>(
    conn: &C,
    f: impl Fn(&Reader<'_>) -> std::result::Result<T, tlog_tiles::Error>,
) -> Result<T>
where
    C: ConnectionTrait,
{
    let asked = RefCell::new(Vec::new());
    // The placeholders may make the first pass fail a check; the indexes are what count.
    let _ = f(&Reader::Recording(&asked));
    let known = store::hashes(conn, &asked.into_inner()).await?;
    let known = known.into_iter().map(|(i, h)| (i, Hash(h))).collect();
    f(&Reader::Known(known)).map_err(log_error)
}

/// A tree head: the size of the log and its root hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeHead {
    /// Receipts in the log.
    pub size: u64,
    /// The root hash of the tree of those receipts.
    pub root: [u8; 32],
}

/// The log's name in its checkpoints (the checkpoint's origin and the note's key name).
#[derive(Clone, Debug)]
pub struct LogName(String);

impl LogName {
    /// `name`, if a signed note may carry it (non-empty, no spaces, no `+`).
    pub fn new(name: &str) -> Result<Self> {
        if signed_note::is_key_name_valid(name) {
            Ok(LogName(name.to_owned()))
        } else {
            Err(Error::Config(format!(
                "retention.log_name {name:?} must be non-empty, without spaces or '+'"
            )))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The note key id of `public_key` under `name` (C2SP signed-note).
fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut key = vec![ALG_ED25519];
    key.extend_from_slice(public_key);
    signed_note::key_id(name, &key)
}

/// The verifier key of the log, as note tooling takes it: `name+keyid+base64(0x01‖key)`.
pub fn verifier_key(name: &LogName, public_key: &[u8; 32]) -> String {
    let mut key = vec![ALG_ED25519];
    key.extend_from_slice(public_key);
    format!(
        "{}+{:08x}+{}",
        name.as_str(),
        key_id(name.as_str(), public_key),
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// Appends `leaf` to the log in `conn`'s transaction (which must hold the log's lock,
/// [`store::lock_size`], and have read its size there as `size`); returns the leaf's
/// index.
pub async fn append<C: ConnectionTrait>(conn: &C, size: u64, leaf: &[u8]) -> Result<u64> {
    let hashes = with_hashes(conn, |r| tlog_tiles::stored_hashes(size, leaf, r)).await?;
    let first = tlog_tiles::stored_hash_index(0, size);
    let hashes: Vec<[u8; 32]> = hashes.into_iter().map(|h| h.0).collect();
    store::put_hashes(conn, first, &hashes).await?;
    store::set_size(conn, size + 1).await?;
    Ok(size)
}

/// The log's current head.
pub async fn head<C: ConnectionTrait>(conn: &C) -> Result<TreeHead> {
    let size = store::size(conn).await?;
    head_at(conn, size).await
}

/// The head of the log when it held `size` receipts.
pub async fn head_at<C: ConnectionTrait>(conn: &C, size: u64) -> Result<TreeHead> {
    let root = with_hashes(conn, |r| tlog_tiles::tree_hash(size, r)).await?;
    Ok(TreeHead { size, root: root.0 })
}

/// The audit path of leaf `index` in the tree of `size` leaves.
pub async fn prove_inclusion<C: ConnectionTrait>(
    conn: &C,
    index: u64,
    size: u64,
) -> Result<Vec<[u8; 32]>> {
    let proof = with_hashes(conn, |r| tlog_tiles::prove_record(size, index, r)).await?;
    Ok(proof.into_iter().map(|h| h.0).collect())
}

/// The proof that the tree of `new` leaves extends the tree of `old` leaves.
pub async fn prove_consistency<C: ConnectionTrait>(
    conn: &C,
    old: u64,
    new: u64,
) -> Result<Vec<[u8; 32]>> {
    let proof = with_hashes(conn, |r| tlog_tiles::prove_tree(new, old, r)).await?;
    Ok(proof.into_iter().map(|h| h.0).collect())
}

/// Whether `proof` shows that `leaf` is leaf `index` of the tree `head`.
pub fn verify_inclusion(leaf: &[u8], index: u64, head: &TreeHead, proof: &[[u8; 32]]) -> bool {
    let proof: Vec<Hash> = proof.iter().copied().map(Hash).collect();
    tlog_tiles::check_record(
        &proof,
        head.size,
        Hash(head.root),
        index,
        tlog_tiles::record_hash(leaf),
    )
    .is_ok()
}

/// Whether `proof` shows that the tree `new` extends the tree `old`.
pub fn verify_consistency(old: &TreeHead, new: &TreeHead, proof: &[[u8; 32]]) -> bool {
    let proof: Vec<Hash> = proof.iter().copied().map(Hash).collect();
    tlog_tiles::check_tree(&proof, new.size, Hash(new.root), old.size, Hash(old.root)).is_ok()
}

/// `head` as a checkpoint signed with `key`: a signed note whose text is the C2SP
/// checkpoint (origin, size, base64 root hash).
pub fn sign_checkpoint(name: &LogName, key: &SigningKey, head: &TreeHead) -> Result<String> {
    let checkpoint = Checkpoint::new(name.as_str(), head.size, Hash(head.root), "")
        .map_err(|e| Error::Internal(format!("receipt log checkpoint: {e}")))?;
    let text = checkpoint.to_bytes();
    let signature = signed_note::Signature::new(
        name.as_str().to_owned(),
        key_id(name.as_str(), &key.public_key()),
        key.sign(&text).to_vec(),
    )
    .map_err(|e| Error::Internal(format!("receipt log note: {e}")))?;
    let note = signed_note::Note::new(&text, &[signature])
        .map_err(|e| Error::Internal(format!("receipt log note: {e}")))?;
    String::from_utf8(note.to_bytes()).map_err(|e| Error::Internal(e.to_string()))
}

/// A note verifier over this crate's Ed25519 check.
struct NoteVerifier {
    name: String,
    id: u32,
    key: [u8; 32],
}

impl signed_note::Verifier for NoteVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        verify_signature(&self.key, msg, sig)
    }
}

/// The head a signed checkpoint names, if it is a checkpoint of the log `name` signed
/// by `public_key`.
pub fn verify_checkpoint(name: &LogName, public_key: &[u8; 32], note: &str) -> Option<TreeHead> {
    let note = signed_note::Note::from_bytes(note.as_bytes()).ok()?;
    let verifiers = signed_note::VerifierList::new(vec![Box::new(NoteVerifier {
        name: name.as_str().to_owned(),
        id: key_id(name.as_str(), public_key),
        key: *public_key,
    })]);
    note.verify(&verifiers).ok()?;
    let checkpoint = Checkpoint::from_bytes(note.text()).ok()?;
    (checkpoint.origin() == name.as_str()).then(|| TreeHead {
        size: checkpoint.size(),
        root: checkpoint.hash().0,
    })
}
