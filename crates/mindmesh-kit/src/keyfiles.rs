//! Loading the process's key material from config, or (embedded mode only) generating it
//! into `data_dir/keys` on first start with owner-only permissions.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;

use crate::config::{Config, Mode};
use crate::crypto::{SecretKey, SigningKey};
use crate::error::{Error, Result};

/// The keys one process needs.
pub struct KeyMaterial {
    /// The master key every keystore wraps tenant keys under.
    pub master: SecretKey,
    /// The master key being replaced (during a master key rotation): unwraps only.
    pub previous_master: Option<SecretKey>,
    /// The token signing key, where this process has it (embedded mode, `mindmesh token`).
    pub jwt_private: Option<SigningKey>,
    /// The token verification key.
    pub jwt_public: [u8; 32],
    /// The key this process signs attestations and receipts with.
    pub signing: SigningKey,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyMaterial(<redacted>)")
    }
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

impl KeyMaterial {
    /// Loads every key from `config`. In embedded mode a key that is not configured is
    /// read from, or generated into, `data_dir/keys`; distributed mode never generates.
    pub fn load(config: &Config, mode: Mode) -> Result<Self> {
        if mode == Mode::Distributed {
            config.validate_distributed()?;
        }
        let key_dir = config.data_dir.join("keys");
        let keys = &config.keys;
        let mut generated = Vec::new();

        let master = match (&keys.master_key, &keys.master_key_file) {
            (Some(b64), _) => decode_master(b64, "keys.master_key")?,
            (None, Some(path)) => decode_master(
                &read_text(path, "keys.master_key_file")?,
                "keys.master_key_file",
            )?,
            (None, None) => {
                let path = key_dir.join("master.key");
                let text = read_or_generate(&path, &mut generated, || {
                    SecretKey::generate().map(|k| B64.encode(k.expose()).into_bytes())
                })?;
                decode_master(&String::from_utf8_lossy(&text), "generated master key")?
            }
        };

        let previous_master = match &keys.previous_master_key_file {
            Some(path) => Some(decode_master(
                &read_text(path, "keys.previous_master_key_file")?,
                "keys.previous_master_key_file",
            )?),
            None => None,
        };

        let jwt_private = match &keys.jwt_private_key_file {
            Some(path) => Some(SigningKey::from_pkcs8(&read_bytes(
                path,
                "keys.jwt_private_key_file",
            )?)?),
            None if keys.jwt_public_key.is_none() => {
                let der = read_or_generate(&key_dir.join("jwt.pk8"), &mut generated, || {
                    SigningKey::generate().map(|k| k.pkcs8().to_vec())
                })?;
                Some(SigningKey::from_pkcs8(&der)?)
            }
            None => None,
        };
        let jwt_public = match (&keys.jwt_public_key, &jwt_private) {
            (Some(b64), _) => {
                let bytes = B64
                    .decode(b64.trim())
                    .map_err(|_| Error::Config("keys.jwt_public_key is not base64".into()))?;
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| Error::Config("keys.jwt_public_key must be 32 bytes".into()))?
            }
            (None, Some(private)) => private.public_key(),
            (None, None) => return Err(Error::Config("keys.jwt_public_key is required".into())),
        };

        let signing = match &keys.signing_key_file {
            Some(path) => SigningKey::from_pkcs8(&read_bytes(path, "keys.signing_key_file")?)?,
            None => {
                let der = read_or_generate(&key_dir.join("signing.pk8"), &mut generated, || {
                    SigningKey::generate().map(|k| k.pkcs8().to_vec())
                })?;
                SigningKey::from_pkcs8(&der)?
            }
        };
        if !generated.is_empty() {
            tracing::info!(dir = %key_dir.display(), keys = ?generated, "first start: generated keys (owner-only files)");
        }
        Ok(KeyMaterial {
            master,
            previous_master,
            jwt_private,
            jwt_public,
            signing,
        })
    }
}

impl KeyMaterial {
    /// A keystore over `db` with these master keys.
    pub fn keystore(&self, db: sea_orm::DatabaseConnection) -> crate::keys::Keystore {
        crate::keys::Keystore::new(db, self.master.clone())
            .with_previous_masters(self.previous_master.iter().cloned().collect())
    }
}

fn decode_master(b64: &str, what: &str) -> Result<SecretKey> {
    let bytes = B64
        .decode(b64.trim())
        .map_err(|_| Error::Config(format!("{what} is not base64")))?;
    SecretKey::from_slice(&bytes)
        .map_err(|_| Error::Config(format!("{what} must decode to 32 bytes")))
}

fn read_bytes(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| Error::Config(format!("{what}: cannot read {}: {e}", path.display())))
}

fn read_text(path: &Path, what: &str) -> Result<String> {
    String::from_utf8(read_bytes(path, what)?)
        .map_err(|_| Error::Config(format!("{what} is not text")))
}

/// Reads `path`, or writes `make()` to it with mode 0600 if it does not exist (and then
/// adds its file name to `generated`).
fn read_or_generate(
    path: &PathBuf,
    generated: &mut Vec<String>,
    make: impl FnOnce() -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => return Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    }
    let dir = path
        .parent()
        .ok_or_else(|| Error::Config(format!("{} has no parent directory", path.display())))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Config(format!("cannot create {}: {e}", dir.display())))?;
    set_mode(dir, 0o700)?;
    let bytes = make()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        // Another process generated it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return std::fs::read(path)
                .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())));
        }
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot create {}: {e}",
                path.display()
            )));
        }
    };
    file.write_all(&bytes)
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))?;
    generated.push(
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    Ok(bytes)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::Config(format!("cannot restrict {}: {e}", path.display())))?;
    }
    let _ = (path, mode);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_mode_generates_owner_only_keys_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let first = KeyMaterial::load(&config, Mode::Embedded).unwrap();
        let second = KeyMaterial::load(&config, Mode::Embedded).unwrap();
        assert_eq!(first.master.expose(), second.master.expose());
        assert_eq!(first.jwt_public, second.jwt_public);
        assert_eq!(first.signing.public_key(), second.signing.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for name in ["master.key", "jwt.pk8", "signing.pk8"] {
                let mode = std::fs::metadata(dir.path().join("keys").join(name))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{name}");
            }
        }
    }

    #[test]
    fn distributed_mode_never_generates() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.database.url = Some("postgres://127.0.0.1/mm_{service}".into());
        let err = KeyMaterial::load(&config, Mode::Distributed).unwrap_err();
        assert!(err.to_string().contains("keys.master_key"), "{err}");
        assert!(!dir.path().join("keys").exists());
    }
}
