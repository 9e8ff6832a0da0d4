//! The cryptographic building blocks, all from `ring`: AES-256-GCM with associated data,
//! HMAC-SHA256, HKDF key derivation, Ed25519 signatures and random bytes. Nothing here
//! invents a primitive; it only composes these.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use ring::{hkdf, hmac};

use crate::error::{Error, Result};

/// Length of every symmetric key, in bytes.
pub const KEY_LEN: usize = 32;

/// Format byte in front of every sealed value, so the layout can change later.
const SEALED_V1: u8 = 1;

/// Fills a fresh array with random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| Error::Crypto("system random source failed"))?;
    Ok(out)
}

/// A 256-bit secret key. Its `Debug` output never shows the bytes.
#[derive(Clone)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self> {
        random_bytes().map(SecretKey)
    }

    /// Wraps raw key bytes; the slice must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let array: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| Error::Crypto("a key must be 32 bytes"))?;
        Ok(SecretKey(array))
    }

    /// The raw bytes, for wrapping under another key.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Derives an independent key for `purpose` (HKDF-SHA256), so one master key can
    /// feed several uses without any two sharing a key.
    pub fn derive(&self, purpose: &str) -> Result<SecretKey> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"mindmesh.v1").extract(&self.0);
        let info = [purpose.as_bytes()];
        let okm = prk
            .expand(&info, HkdfLen)
            .map_err(|_| Error::Crypto("key derivation failed"))?;
        let mut out = [0u8; KEY_LEN];
        okm.fill(&mut out)
            .map_err(|_| Error::Crypto("key derivation failed"))?;
        Ok(SecretKey(out))
    }

    /// Seals `plaintext` with AES-256-GCM under a fresh random nonce. `aad` binds the
    /// ciphertext to its place (tenant, table, row, column): opening it with any other
    /// `aad` fails. Output: version byte, nonce, ciphertext and tag.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let key = self.aead_key()?;
        let nonce_bytes: [u8; NONCE_LEN] = random_bytes()?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce_bytes);
        let mut in_out = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(aad),
            &mut in_out,
        )
        .map_err(|_| Error::Crypto("seal failed"))?;
        out.extend_from_slice(&in_out);
        Ok(out)
    }

    /// Opens what [`SecretKey::seal`] produced with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        let (version, rest) = sealed
            .split_first()
            .ok_or(Error::Crypto("sealed value is empty"))?;
        if *version != SEALED_V1 {
            return Err(Error::Crypto("sealed value has an unknown format"));
        }
        if rest.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(Error::Crypto("sealed value is truncated"));
        }
        let (nonce_bytes, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce_bytes)
            .map_err(|_| Error::Crypto("bad nonce"))?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .aead_key()?
            .open_in_place(nonce, Aad::from(aad), &mut in_out)
            .map_err(|_| Error::Crypto("open failed: wrong key, wrong place or tampered"))?;
        Ok(plain.to_vec())
    }

    /// HMAC-SHA256 of `data` under this key.
    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let tag = hmac::sign(&key, data);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// The HMAC-SHA256 key, prepared once for many MACs.
    pub fn mac_key(&self) -> MacKey {
        MacKey(hmac::Key::new(hmac::HMAC_SHA256, &self.0))
    }

    /// Constant-time check of an HMAC-SHA256 tag.
    pub fn verify_mac(&self, data: &[u8], tag: &[u8]) -> bool {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        hmac::verify(&key, data, tag).is_ok()
    }

    fn aead_key(&self) -> Result<LessSafeKey> {
        UnboundKey::new(&AES_256_GCM, &self.0)
            .map(LessSafeKey::new)
            .map_err(|_| Error::Crypto("bad AES key"))
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

struct HkdfLen;

impl hkdf::KeyType for HkdfLen {
    fn len(&self) -> usize {
        KEY_LEN
    }
}

/// An Ed25519 key pair that signs attestations, receipts or tokens.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl SigningKey {
    /// A fresh key pair; [`SigningKey::pkcs8`] gives the bytes to store.
    pub fn generate() -> Result<Self> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| Error::Crypto("key generation failed"))?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// Loads a key pair from PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self> {
        let pair = Ed25519KeyPair::from_pkcs8(der)
            .map_err(|_| Error::Crypto("not an Ed25519 PKCS#8 key"))?;
        Ok(SigningKey {
            pair,
            pkcs8: der.to_vec(),
        })
    }

    /// The PKCS#8 DER encoding (secret: store with owner-only permissions).
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Checks an Ed25519 signature.
pub fn verify_signature(public_key: &[u8], message: &[u8], sig: &[u8]) -> bool {
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(message, sig)
        .is_ok()
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

/// SHA-256 over `parts`, each length-prefixed so that no two lists of parts collide.
pub fn digest_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// An HMAC-SHA256 key prepared for repeated use (see [`SecretKey::mac_key`]).
#[derive(Clone)]
pub struct MacKey(hmac::Key);

impl MacKey {
    /// HMAC-SHA256 of `data`; the same as [`SecretKey::mac`] with the key it came from.
    pub fn sign(&self, data: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&self.0, data).as_ref());
        out
    }

    /// A blind index of `parts` (each length-prefixed, so no two lists collide): the
    /// lowercase hex of their HMAC. It finds a row by a value without storing the value;
    /// to whoever lacks the key it reveals only which rows share one.
    pub fn blind_index(&self, parts: &[&[u8]]) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        for part in parts {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        hex(ctx.sign().as_ref())
    }
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(<redacted>)")
    }
}

/// A stable UUID-shaped pseudonym from an HMAC (version 8: custom), so that analysts can
/// count and join records without learning whose they are.
pub fn pseudonym_uuid(mac: &[u8; 32]) -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&mac[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The bytes of lowercase or uppercase hex `value`; `None` when it is not hex.
pub fn unhex(value: &str) -> Option<Vec<u8>> {
    if !value.len().is_multiple_of(2) {
        return None;
    }
    (0..value.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(value.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_in_their_place() {
        let key = SecretKey::generate().unwrap();
        let sealed = key
            .seal(b"tenant-a|users|email|row-1", b"ada@example.com")
            .unwrap();
        assert_eq!(
            key.open(b"tenant-a|users|email|row-1", &sealed).unwrap(),
            b"ada@example.com"
        );
        assert!(key.open(b"tenant-a|users|email|row-2", &sealed).is_err());
        let other = SecretKey::generate().unwrap();
        assert!(other.open(b"tenant-a|users|email|row-1", &sealed).is_err());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(key.open(b"tenant-a|users|email|row-1", &tampered).is_err());
        assert!(key.open(b"x", &[]).is_err());
        assert!(key.open(b"x", &[1, 2, 3]).is_err());
    }

    #[test]
    fn two_seals_differ() {
        let key = SecretKey::generate().unwrap();
        assert_ne!(
            key.seal(b"", b"same").unwrap(),
            key.seal(b"", b"same").unwrap()
        );
    }

    #[test]
    fn derived_keys_are_independent_and_stable() {
        let master = SecretKey::generate().unwrap();
        let a1 = master.derive("audit").unwrap();
        let a2 = master.derive("audit").unwrap();
        let b = master.derive("blind-index").unwrap();
        assert_eq!(a1.expose(), a2.expose());
        assert_ne!(a1.expose(), b.expose());
    }

    #[test]
    fn macs_and_signatures_verify() {
        let key = SecretKey::generate().unwrap();
        let tag = key.mac(b"data");
        assert!(key.verify_mac(b"data", &tag));
        assert!(!key.verify_mac(b"datb", &tag));
        let signer = SigningKey::generate().unwrap();
        let sig = signer.sign(b"receipt");
        assert!(verify_signature(&signer.public_key(), b"receipt", &sig));
        assert!(!verify_signature(&signer.public_key(), b"receipT", &sig));
        let reloaded = SigningKey::from_pkcs8(signer.pkcs8()).unwrap();
        assert_eq!(reloaded.public_key(), signer.public_key());
    }
}
