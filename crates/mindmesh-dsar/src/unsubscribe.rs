//! Unsubscribe links (P13): every marketing mail carries a link whose token names the
//! person and an expiry, sealed (AES-256-GCM) with a key derived from the master key —
//! so the link works without login, cannot be forged or altered, and shows nobody who
//! it is for. Following it (one `POST`, RFC 8058, or the gRPC `Unsubscribe`) switches
//! the person's marketing mail off; administrative mail is not affected.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use mindmesh_kit::crypto::SecretKey;
use mindmesh_kit::ids::{TenantId, UserId};
use mindmesh_kit::{Error, Result};

use crate::settings::{Preferences, Settings};

/// The master-key derivation purpose of the tokens' key.
const KEY_PURPOSE: &str = "mindmesh/unsubscribe-links/v1";
/// Bound into every sealed token, so no other sealed value passes for one.
const AAD: &[u8] = b"mindmesh unsubscribe token v1";
/// Longest token accepted (a real one is about 130 characters).
pub const MAX_TOKEN_LEN: usize = 512;

/// Who a valid token unsubscribes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsubscriber {
    /// Their tenant.
    pub tenant: TenantId,
    /// Their account.
    pub user: UserId,
}

/// Issues and opens unsubscribe tokens.
#[derive(Clone)]
pub struct Tokens {
    key: std::sync::Arc<SecretKey>,
    ttl: chrono::Duration,
}

impl Tokens {
    /// Tokens sealed with a key derived from `master`, valid for `ttl`.
    pub fn new(master: &SecretKey, ttl: chrono::Duration) -> Result<Self> {
        Ok(Tokens {
            key: std::sync::Arc::new(master.derive(KEY_PURPOSE)?),
            ttl,
        })
    }

    /// A token unsubscribing `user` of `tenant`, issued at `now`.
    pub fn issue(&self, tenant: TenantId, user: UserId, now: DateTime<Utc>) -> Result<String> {
        let expires = (now + self.ttl).timestamp();
        let plain = format!("{tenant}|{user}|{expires}");
        let sealed = self.key.seal(AAD, plain.as_bytes())?;
        Ok(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// Who `token` unsubscribes, if it is genuine and not expired at `now`. Errors
    /// name the `token` and never say more than malformed, not genuine or expired.
    pub fn open(&self, token: &str, now: DateTime<Utc>) -> Result<Unsubscriber> {
        let token = token.trim();
        if token.is_empty() {
            return Err(Error::invalid("token", "is required"));
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(Error::invalid(
                "token",
                format!("is longer than {MAX_TOKEN_LEN} characters"),
            ));
        }
        let forged =
            || Error::PermissionDenied("token: this unsubscribe link is not genuine".into());
        let sealed = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| Error::invalid("token", "is not an unsubscribe token"))?;
        let plain = self.key.open(AAD, &sealed).map_err(|_| forged())?;
        let plain = String::from_utf8(plain).map_err(|_| forged())?;
        let mut parts = plain.split('|');
        let (Some(tenant), Some(user), Some(expires), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(forged());
        };
        let expires: i64 = expires.parse().map_err(|_| forged())?;
        if now.timestamp() > expires {
            return Err(Error::FailedPrecondition(
                "token: this unsubscribe link has expired; change your mail preferences in the app"
                    .into(),
            ));
        }
        Ok(Unsubscriber {
            tenant: tenant.parse().map_err(|_| forged())?,
            user: user.parse().map_err(|_| forged())?,
        })
    }
}

/// Follows `token` at `now`: switches its person's marketing mail off (their other
/// preferences unchanged; audited). Following it again changes nothing.
pub async fn follow(
    settings: &Settings,
    tokens: &Tokens,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Unsubscriber> {
    let who = tokens.open(token, now)?;
    let current = settings.preferences(who.tenant, who.user).await?;
    // Marketing mail is off unless a row says on: a person with no row (never opted
    // in, or erased since) has nothing to switch off, and nothing is written for them.
    if current.marketing {
        settings
            .set_preferences(
                None,
                who.tenant,
                who.user,
                Preferences {
                    marketing: false,
                    ..current
                },
                now,
            )
            .await?;
    }
    Ok(who)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(&SecretKey::generate().unwrap(), chrono::Duration::days(30)).unwrap()
    }

    #[test]
    fn a_token_opens_to_its_person_until_it_expires() {
        let tokens = tokens();
        let (tenant, user) = (TenantId::new(), UserId::new());
        let now = Utc::now();
        let token = tokens.issue(tenant, user, now).unwrap();
        assert!(token.len() < MAX_TOKEN_LEN);
        assert!(!token.contains(&user.to_string()));
        assert_eq!(
            tokens.open(&token, now).unwrap(),
            Unsubscriber { tenant, user }
        );
        let late = tokens
            .open(&token, now + chrono::Duration::days(31))
            .unwrap_err();
        assert!(late.to_string().contains("expired"), "{late}");
    }

    #[test]
    fn a_forged_altered_or_foreign_token_is_refused() {
        let tokens = tokens();
        let now = Utc::now();
        let token = tokens.issue(TenantId::new(), UserId::new(), now).unwrap();
        let mut altered = token.clone().into_bytes();
        altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        for bad in [altered.as_str(), "", "!!!", &"A".repeat(600)] {
            let err = tokens.open(bad, now).unwrap_err();
            assert!(err.to_string().contains("token"), "{err}");
        }
        let other =
            Tokens::new(&SecretKey::generate().unwrap(), chrono::Duration::days(30)).unwrap();
        assert!(other.open(&token, now).is_err());
    }
}
