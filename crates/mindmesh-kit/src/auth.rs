//! Bearer-token authentication (DESIGN.md §7).
//!
//! Every call carries `authorization: Bearer <JWT>` signed with Ed25519 (EdDSA). One
//! interceptor checks it and puts the [`Caller`] into the request's extensions; handlers
//! take the tenant from there and never from the request body.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::{Request, Status};

use crate::crypto::SigningKey;
use crate::error::{Error, Result};
use crate::ids::TenantId;

/// What a caller may be (DESIGN.md §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Runs the platform: creates and deletes tenants, sees no tenant data.
    Operator,
    /// A tenant's administrator.
    Admin,
    /// A tenant's ordinary user.
    Member,
    /// Another Mindmesh service.
    Service,
    /// Staff engineer: all data, under consent.
    StaffEngineer,
    /// Staff support: all but document contents, under consent.
    StaffSupport,
    /// Staff analyst: pseudonymized data only, under consent.
    StaffAnalyst,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 7] = [
        Role::Operator,
        Role::Admin,
        Role::Member,
        Role::Service,
        Role::StaffEngineer,
        Role::StaffSupport,
        Role::StaffAnalyst,
    ];

    /// The name carried in the token's `roles` claim.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Service => "service",
            Role::StaffEngineer => "staff:engineer",
            Role::StaffSupport => "staff:support",
            Role::StaffAnalyst => "staff:analyst",
        }
    }

    /// True for the three staff roles, which need a tenant's consent (P11).
    pub const fn is_staff(self) -> bool {
        matches!(
            self,
            Role::StaffEngineer | Role::StaffSupport | Role::StaffAnalyst
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Error::invalid("roles", format!("unknown role {s:?}")))
    }
}

/// The claims of a Mindmesh access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// Who: a user id, a service name, or a staff member's id.
    pub sub: String,
    /// The tenant the token acts in; absent for operators and platform services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Role names.
    pub roles: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Not valid before, seconds since the epoch; absent: valid from `iat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issuer.
    pub iss: String,
}

/// The authenticated caller of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's subject.
    pub subject: String,
    /// The tenant the caller acts in, from the token only.
    pub tenant: Option<TenantId>,
    /// The caller's roles.
    pub roles: Vec<Role>,
}

impl Caller {
    /// `service` itself acting in `tenant` (work a service does on its own, such as
    /// carrying out a verified request), as its audit records name it.
    pub fn service(service: crate::Service, tenant: TenantId) -> Caller {
        Caller {
            subject: service.as_str().to_owned(),
            tenant: Some(tenant),
            roles: vec![Role::Service],
        }
    }

    /// True when the caller holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// True when the caller holds any of `roles`.
    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.has(*r))
    }

    /// Fails with PERMISSION_DENIED unless the caller holds one of `roles`.
    pub fn require_any(&self, roles: &[Role]) -> Result<()> {
        if self.has_any(roles) {
            Ok(())
        } else {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(Error::PermissionDenied(format!(
                "this call needs one of the roles: {}",
                names.join(", ")
            )))
        }
    }

    /// The caller's tenant, or PERMISSION_DENIED for tokens without one.
    pub fn tenant(&self) -> Result<TenantId> {
        self.tenant.ok_or_else(|| {
            Error::PermissionDenied("this call needs a token bound to a tenant".into())
        })
    }

    /// The tenant a call acts in when its request may name one (`tenant_id`, `named`):
    /// the caller's own (`named` empty or the same), or, for an operator whose token
    /// has none, the tenant named — which it must then name. Errors name `tenant_id`.
    pub fn own_or_named_tenant(&self, named: &str) -> Result<TenantId> {
        match self.tenant {
            Some(own) if named.is_empty() || named == own.to_string() => Ok(own),
            Some(_) => Err(Error::PermissionDenied(
                "tenant_id: the call acts in the caller's own tenant".into(),
            )),
            None if self.has(Role::Operator) && !named.is_empty() => {
                TenantId::parse_field("tenant_id", named)
            }
            None => Err(Error::invalid("tenant_id", "is required for an operator")),
        }
    }

    /// The caller placed in the request by [`AuthInterceptor`].
    pub fn from_request<T>(request: &Request<T>) -> Result<Caller> {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Error::Unauthenticated("missing bearer token".into()))
    }
}

/// Issues tokens (`mindmesh token`, embedded mode, tests).
pub struct TokenIssuer {
    key: EncodingKey,
    issuer: String,
}

impl TokenIssuer {
    /// An issuer signing with `key`.
    pub fn new(key: &SigningKey, issuer: impl Into<String>) -> Self {
        TokenIssuer {
            key: EncodingKey::from_ed_der(key.pkcs8()),
            issuer: issuer.into(),
        }
    }

    /// A token for `subject` in `tenant` with `roles`, valid for `ttl`.
    pub fn issue(
        &self,
        subject: &str,
        tenant: Option<TenantId>,
        roles: &[Role],
        ttl: Duration,
    ) -> Result<String> {
        let now = now_secs();
        self.issue_claims(&Claims {
            sub: subject.to_owned(),
            tenant: tenant.map(|t| t.to_string()),
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            iat: now,
            exp: now + ttl.as_secs(),
            nbf: None,
            iss: self.issuer.clone(),
        })
    }

    /// Signs arbitrary claims (tests use it for expired or malformed tokens).
    pub fn issue_claims(&self, claims: &Claims) -> Result<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &self.key)
            .map_err(|_| Error::Crypto("token signing failed"))
    }
}

/// Short-lived `service` tokens one service presents when it calls another (DESIGN.md
/// §7), minted per tenant from the token signing key and reused until half their life
/// has passed.
pub struct ServiceTokens {
    issuer: Arc<TokenIssuer>,
    subject: String,
    ttl: Duration,
    minted: Mutex<HashMap<TenantId, (String, u64)>>,
}

impl ServiceTokens {
    /// Tokens for `subject` (the calling service's name), each valid for `ttl`.
    pub fn new(issuer: Arc<TokenIssuer>, subject: impl Into<String>, ttl: Duration) -> Self {
        ServiceTokens {
            issuer,
            subject: subject.into(),
            ttl,
            minted: Mutex::new(HashMap::new()),
        }
    }

    /// A `service` token bound to `tenant`.
    pub fn token(&self, tenant: TenantId) -> Result<String> {
        let now = now_secs();
        let half = self.ttl.as_secs() / 2;
        if let Ok(minted) = self.minted.lock()
            && let Some((token, exp)) = minted.get(&tenant)
            && exp.saturating_sub(now) > half
        {
            return Ok(token.clone());
        }
        let token = self
            .issuer
            .issue(&self.subject, Some(tenant), &[Role::Service], self.ttl)?;
        if let Ok(mut minted) = self.minted.lock() {
            minted.insert(tenant, (token.clone(), now + self.ttl.as_secs()));
        }
        Ok(token)
    }

    /// `message` with this service's bearer token for `tenant` and the current trace.
    pub fn request<T>(&self, tenant: TenantId, message: T) -> Result<Request<T>> {
        let mut request = Request::new(message);
        let value = format!("Bearer {}", self.token(tenant)?)
            .parse()
            .map_err(|_| Error::Internal("token is not a valid header value".into()))?;
        request.metadata_mut().insert("authorization", value);
        crate::telemetry::inject_into(&mut request);
        Ok(request)
    }
}

/// Checks tokens: signature, issuer, expiry, `nbf`, an `iat` that is not in the future,
/// and a lifetime (`exp - iat`) of at most `auth.max_token_lifetime_secs`, so that a
/// token minted for a century, or dated ahead to outlive its stated lifetime, is refused.
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
    leeway: u64,
    /// Longest lifetime accepted, in seconds.
    max_lifetime: u64,
    /// Tokens already verified, by SHA-256 of the token, with their expiry: a signature
    /// check costs tens of microseconds, a lookup well under one. Bounded; the expiry is
    /// checked on every use.
    verified: Mutex<HashMap<[u8; 32], (Caller, u64)>>,
}

/// Most verified tokens remembered at once.
const VERIFIED_CACHE: usize = 10_000;

impl TokenVerifier {
    /// A verifier for tokens signed by the Ed25519 key whose public half is `public_key`,
    /// tolerating `leeway` of clock skew and lifetimes up to `max_lifetime`.
    pub fn new(
        public_key: &[u8; 32],
        issuer: &str,
        leeway: Duration,
        max_lifetime: Duration,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "iat"]);
        validation.validate_nbf = true;
        validation.leeway = leeway.as_secs();
        TokenVerifier {
            key: DecodingKey::from_ed_der(public_key),
            validation,
            leeway: leeway.as_secs(),
            max_lifetime: max_lifetime.as_secs(),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Verifies a token and returns its caller.
    pub fn verify(&self, token: &str) -> Result<Caller> {
        self.verify_at(token, now_secs())
    }

    /// [`TokenVerifier::verify`] as of `now` (seconds since the epoch) for the cache.
    fn verify_at(&self, token: &str, now: u64) -> Result<Caller> {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(digest.as_ref());
        if let Ok(cache) = self.verified.lock()
            && let Some((caller, exp)) = cache.get(&fingerprint)
        {
            return if now <= exp.saturating_add(self.leeway) {
                Ok(caller.clone())
            } else {
                Err(Error::Unauthenticated("token expired".into()))
            };
        }
        let (caller, exp) = self.verify_signature(token, now)?;
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= VERIFIED_CACHE {
                // Forget expired entries first; if still full, start over.
                cache.retain(|_, (_, exp)| now <= exp.saturating_add(self.leeway));
                if cache.len() >= VERIFIED_CACHE {
                    cache.clear();
                }
            }
            cache.insert(fingerprint, (caller.clone(), exp));
        }
        Ok(caller)
    }

    fn verify_signature(&self, token: &str, now: u64) -> Result<(Caller, u64)> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    Error::Unauthenticated("token expired".into())
                }
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                    Error::Unauthenticated("token not valid yet (nbf)".into())
                }
                _ => Error::Unauthenticated("invalid token".into()),
            },
        )?;
        let claims = data.claims;
        if claims.iat > now.saturating_add(self.leeway) {
            return Err(Error::Unauthenticated(
                "invalid token: issued in the future (iat)".into(),
            ));
        }
        if claims.exp.saturating_sub(claims.iat) > self.max_lifetime {
            return Err(Error::Unauthenticated(format!(
                "invalid token: lifetime longer than auth.max_token_lifetime_secs ({} s)",
                self.max_lifetime
            )));
        }
        let tenant = claims
            .tenant
            .as_deref()
            .map(TenantId::from_str)
            .transpose()
            .map_err(|_| Error::Unauthenticated("invalid token: bad tenant claim".into()))?;
        let roles = claims
            .roles
            .iter()
            .map(|r| r.parse::<Role>())
            .collect::<Result<Vec<_>>>()
            .map_err(|_| Error::Unauthenticated("invalid token: unknown role".into()))?;
        Ok((
            Caller {
                subject: claims.sub,
                tenant,
                roles,
            },
            claims.exp,
        ))
    }
}

/// The one interceptor that authenticates every call to a Mindmesh API service.
#[derive(Clone)]
pub struct AuthInterceptor {
    verifier: Arc<TokenVerifier>,
}

impl AuthInterceptor {
    /// An interceptor using `verifier`.
    pub fn new(verifier: Arc<TokenVerifier>) -> Self {
        AuthInterceptor { verifier }
    }
}

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if request
            .extensions()
            .get::<crate::grpc::SelfAuthorized>()
            .is_some()
        {
            // The method authorizes itself (crate::grpc::PublicMethods); no caller.
            request.extensions_mut().remove::<Caller>();
            return Ok(request);
        }
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        let value = header
            .to_str()
            .map_err(|_| Status::unauthenticated("malformed authorization header"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be 'Bearer <token>'"))?;
        let caller = self.verifier.verify(token.trim()).map_err(Status::from)?;
        tracing::Span::current().record("caller", caller.subject.as_str());
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn verifier_for(key: &SigningKey) -> TokenVerifier {
        TokenVerifier::new(&key.public_key(), "mindmesh", Duration::from_secs(0), DAY)
    }

    fn pair() -> (TokenIssuer, TokenVerifier) {
        let key = SigningKey::generate().unwrap();
        (TokenIssuer::new(&key, "mindmesh"), verifier_for(&key))
    }

    fn claims(iat: u64, exp: u64, nbf: Option<u64>) -> Claims {
        Claims {
            sub: "u".into(),
            tenant: None,
            roles: vec!["admin".into()],
            exp,
            iat,
            nbf,
            iss: "mindmesh".into(),
        }
    }

    #[test]
    fn tokens_not_valid_yet_dated_ahead_or_too_long_lived_fail() {
        let (issuer, verifier) = pair();
        let now = now_secs();
        let sign = |c: &Claims| issuer.issue_claims(c).unwrap();
        let refused = |c: Claims| verifier.verify(&sign(&c)).unwrap_err().to_string();
        assert!(refused(claims(now, now + 600, Some(now + 300))).contains("nbf"));
        assert!(refused(claims(now + 300, now + 600, None)).contains("iat"));
        let century = 100 * 365 * DAY.as_secs();
        assert!(refused(claims(now, now + century, None)).contains("max_token_lifetime"));
        assert!(
            refused(claims(now - 400 * DAY.as_secs(), now + 600, None))
                .contains("max_token_lifetime"),
            "a token dated back to stretch its lifetime"
        );
        // Within the bounds: accepted, including an nbf already passed.
        assert!(
            verifier
                .verify(&sign(&claims(now, now + 600, None)))
                .is_ok()
        );
        assert!(
            verifier
                .verify(&sign(&claims(
                    now - 10,
                    now + DAY.as_secs() - 10,
                    Some(now - 5)
                )))
                .is_ok()
        );
    }

    #[test]
    fn issued_tokens_verify() {
        let (issuer, verifier) = pair();
        let tenant = TenantId::new();
        let token = issuer
            .issue(
                "u1",
                Some(tenant),
                &[Role::Admin, Role::StaffSupport],
                Duration::from_secs(60),
            )
            .unwrap();
        let caller = verifier.verify(&token).unwrap();
        assert_eq!(caller.subject, "u1");
        assert_eq!(caller.tenant, Some(tenant));
        assert!(caller.has(Role::Admin) && caller.has(Role::StaffSupport));
        assert!(!caller.has(Role::Operator));
    }

    #[test]
    fn expired_foreign_and_garbled_tokens_fail() {
        let (issuer, verifier) = pair();
        let now = now_secs();
        let expired = issuer
            .issue_claims(&claims(now - 3600, now - 120, None))
            .unwrap();
        assert!(
            verifier
                .verify(&expired)
                .unwrap_err()
                .to_string()
                .contains("expired")
        );
        let (other, _) = pair();
        let foreign = other
            .issue("u", None, &[Role::Operator], Duration::from_secs(60))
            .unwrap();
        assert!(verifier.verify(&foreign).is_err());
        assert!(verifier.verify("not.a.token").is_err());
        let key = SigningKey::generate().unwrap();
        let verifier = verifier_for(&key);
        let elsewhere = TokenIssuer::new(&key, "elsewhere");
        let token = elsewhere
            .issue("u", None, &[Role::Operator], Duration::from_secs(60))
            .unwrap();
        assert!(verifier.verify(&token).is_err(), "issuer must match");
    }

    #[test]
    fn a_cached_token_still_expires() {
        let (issuer, verifier) = pair();
        let token = issuer
            .issue("u", None, &[Role::Operator], Duration::from_secs(60))
            .unwrap();
        let now = now_secs();
        assert!(verifier.verify_at(&token, now).is_ok());
        assert!(
            verifier.verify_at(&token, now).is_ok(),
            "served from the cache"
        );
        let later = verifier.verify_at(&token, now + 120).unwrap_err();
        assert!(
            later.to_string().contains("expired"),
            "the cache honours exp"
        );
        let mut tampered = token.clone();
        tampered.push('x');
        assert!(
            verifier.verify(&tampered).is_err(),
            "a different token is verified afresh"
        );
    }

    #[test]
    fn service_tokens_verify_are_reused_and_bound_to_their_tenant() {
        let key = SigningKey::generate().unwrap();
        let verifier = verifier_for(&key);
        let tokens = ServiceTokens::new(
            Arc::new(TokenIssuer::new(&key, "mindmesh")),
            "storage",
            Duration::from_secs(300),
        );
        let (a, b) = (TenantId::new(), TenantId::new());
        let token = tokens.token(a).unwrap();
        assert_eq!(tokens.token(a).unwrap(), token, "reused while fresh");
        assert_ne!(tokens.token(b).unwrap(), token, "one per tenant");
        let caller = verifier.verify(&token).unwrap();
        assert_eq!(
            (caller.subject.as_str(), caller.tenant, caller.roles.clone()),
            ("storage", Some(a), vec![Role::Service])
        );
        let request = tokens.request(a, ()).unwrap();
        let header = request
            .metadata()
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(header, format!("Bearer {token}"));
    }

    #[test]
    fn unknown_roles_are_rejected() {
        let (issuer, verifier) = pair();
        let now = now_secs();
        let token = issuer
            .issue_claims(&Claims {
                roles: vec!["superuser".into()],
                ..claims(now, now + 60, None)
            })
            .unwrap();
        assert!(verifier.verify(&token).is_err());
    }
}
