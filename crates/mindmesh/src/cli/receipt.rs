//! `mindmesh receipt verify FILE --public-key KEY`: checks a deletion receipt offline —
//! retention's signature, every service's attestation, the signed checkpoint and the
//! receipt's inclusion in it — with no server.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine;
use mindmesh_retention::receipts::{self, ReceiptFile};

/// What `receipt` does.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Verifies a receipt file (as `mindmesh cascades get ID --receipt FILE` writes it).
    Verify {
        /// The receipt file.
        file: PathBuf,
        /// Retention's public key: 32 bytes of base64, or the note verifier key
        /// (`name+id+base64`) that `mindmesh keys public` prints on the server.
        #[arg(long)]
        public_key: String,
    },
}

/// The 32-byte Ed25519 key in `value`: plain base64, or a signed-note verifier key.
fn public_key(value: &str) -> anyhow::Result<[u8; 32]> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let bad = || {
        anyhow::anyhow!(
            "--public-key must be 32 bytes of base64, or a note verifier key (name+id+base64)"
        )
    };
    let value = value.trim();
    if let Ok(key) = b64.decode(value) {
        return key.try_into().map_err(|_| bad());
    }
    // name+keyid+base64(0x01 ‖ key): neither the name nor the hex id holds a '+'.
    let mut parts = value.splitn(3, '+');
    let (Some(_name), Some(_id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let key = b64.decode(key).map_err(|_| bad())?;
    // A verifier key carries the algorithm byte (1: Ed25519) before the key.
    match key.split_first() {
        Some((1, key)) => key.try_into().map_err(|_| bad()),
        _ => Err(bad()),
    }
}

fn read(path: &Path) -> anyhow::Result<ReceiptFile> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a receipt file", path.display()))
}

/// Runs `command`, printing the checks; fails when one does not hold.
pub fn run(command: Command) -> anyhow::Result<()> {
    let Command::Verify {
        file,
        public_key: key,
    } = command;
    let key = public_key(&key)?;
    let receipt_file = read(&file)?;
    let r = &receipt_file.receipt;
    let checked = receipts::verify(&receipt_file, &key);
    let mark = |ok: bool| if ok { "ok" } else { "FAILED" };
    println!(
        "receipt of cascade {} ({} {}), completed {}, backups gone by {}",
        r.cascade_id, r.kind, r.scope_id, r.completed_at, r.backups_expire_at
    );
    println!(
        "  {:<40} {}",
        "retention's signature",
        mark(checked.signature_valid)
    );
    let services: Vec<&str> = r.attestations.iter().map(|a| a.service.as_str()).collect();
    println!(
        "  {:<40} {}",
        format!("attestations ({})", services.join(", ")),
        mark(checked.attestations_valid)
    );
    println!(
        "  {:<40} {}",
        format!(
            "checkpoint ({}, size {})",
            receipt_file.inclusion.log_name, receipt_file.inclusion.tree_size
        ),
        mark(checked.checkpoint_valid)
    );
    println!(
        "  {:<40} {}",
        format!("inclusion (leaf {})", r.log_index),
        mark(checked.included)
    );
    if checked.ok() {
        println!("verified");
        Ok(())
    } else {
        anyhow::bail!("the receipt does NOT verify")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_are_read_in_both_forms() {
        let b64 = base64::engine::general_purpose::STANDARD;
        // A key whose base64 holds '+' (0xfb encodes to "+"), as real keys often do.
        let key = [0xfb; 32];
        assert!(b64.encode(key).contains('+'));
        assert_eq!(public_key(&b64.encode(key)).unwrap(), key);
        let mut with_alg = vec![1u8];
        with_alg.extend_from_slice(&key);
        let note = format!("mindmesh-receipts+0a0b0c0d+{}", b64.encode(&with_alg));
        assert_eq!(public_key(&note).unwrap(), key);
        for bad in ["", "c2hvcnQ=", "name+id+AAAA", "not base64!"] {
            let err = public_key(bad).unwrap_err().to_string();
            assert!(err.contains("--public-key"), "{err}");
        }
    }
}
