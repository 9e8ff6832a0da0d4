//! Building and reading event envelopes (DESIGN.md §4).

use bytes::Bytes;
use mindmesh_proto::mindmesh::events::v1::Envelope;
use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use prost::Message;

use crate::bus::BusMessage;
use crate::error::{Error, Result};
use crate::ids::{EventId, TenantId};
use crate::service::Service;

/// The type name of a payload, as used in subjects (`mindmesh.events.<type>`).
pub fn event_type(payload: &Payload) -> &'static str {
    match payload {
        Payload::IntegrationConnected(_) => "integration.connected",
        Payload::IntegrationDisconnected(_) => "integration.disconnected",
        Payload::DocumentArchived(_) => "document.archived",
        Payload::DocumentRestored(_) => "document.restored",
        Payload::AccountDeletionRequested(_) => "account.deletion_requested",
        Payload::SubjectErasureRequested(_) => "subject.erasure_requested",
        Payload::SubjectRestricted(_) => "subject.restricted",
        Payload::SubjectUnrestricted(_) => "subject.unrestricted",
        Payload::ConsentWithdrawn(_) => "consent.withdrawn",
        Payload::DeletionCompleted(_) => "deletion.completed",
        Payload::NotificationRequested(_) => "notification.requested",
        Payload::AccountActivity(_) => "account.activity",
        Payload::LegalHoldPlaced(_) => "legal_hold.placed",
        Payload::LegalHoldReleased(_) => "legal_hold.released",
        Payload::RetentionPolicySet(_) => "retention.policy_set",
        Payload::LegalHoldApplied(_) => "legal_hold.applied",
        Payload::ConsentGiven(_) => "consent.given",
        Payload::ProcessorSettingsSet(_) => "processor.settings_set",
    }
}

/// A new envelope from `source` about `tenant`, stamped now, carrying the current trace.
pub fn envelope(source: Service, tenant: Option<TenantId>, payload: Payload) -> Envelope {
    let now = chrono::Utc::now();
    Envelope {
        id: EventId::new().to_string(),
        r#type: event_type(&payload).to_owned(),
        tenant_id: tenant.map(|t| t.to_string()).unwrap_or_default(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: i32::try_from(now.timestamp_subsec_nanos()).unwrap_or(0),
        }),
        source: source.to_proto() as i32,
        traceparent: crate::telemetry::current_traceparent().unwrap_or_default(),
        payload: Some(payload),
    }
}

/// The bus's view of an envelope.
pub fn to_bus_message(envelope: &Envelope) -> Result<BusMessage> {
    let id = envelope
        .id
        .parse::<EventId>()
        .map_err(|_| Error::Internal("envelope id is not a UUID".into()))?;
    Ok(BusMessage {
        id,
        event_type: envelope.r#type.clone(),
        payload: Bytes::from(envelope.encode_to_vec()),
        traceparent: (!envelope.traceparent.is_empty()).then(|| envelope.traceparent.clone()),
    })
}

/// Decodes a bus message back into its envelope, checking that id and type agree.
pub fn decode(message: &BusMessage) -> Result<Envelope> {
    let envelope = Envelope::decode(message.payload.as_ref())
        .map_err(|e| Error::MalformedEvent(format!("undecodable envelope: {e}")))?;
    if envelope.id != message.id.to_string() {
        return Err(Error::MalformedEvent(
            "envelope id differs from message id".into(),
        ));
    }
    match &envelope.payload {
        Some(p) if event_type(p) == envelope.r#type => Ok(envelope),
        Some(_) => Err(Error::MalformedEvent(
            "envelope type differs from its payload".into(),
        )),
        None => Err(Error::MalformedEvent("envelope without payload".into())),
    }
}

/// The tenant of an envelope, if it names one.
pub fn tenant(envelope: &Envelope) -> Result<Option<TenantId>> {
    if envelope.tenant_id.is_empty() {
        return Ok(None);
    }
    envelope
        .tenant_id
        .parse::<TenantId>()
        .map(Some)
        .map_err(|_| Error::MalformedEvent("envelope tenant_id is not a UUID".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mindmesh_proto::mindmesh::events::v1::AccountActivity;

    #[test]
    fn envelopes_round_trip_through_the_bus_form() {
        let tenant = TenantId::new();
        let env = envelope(
            Service::Permissions,
            Some(tenant),
            Payload::AccountActivity(AccountActivity {
                user_id: "u".into(),
                kind: "created".into(),
            }),
        );
        assert_eq!(env.r#type, "account.activity");
        let msg = to_bus_message(&env).unwrap();
        assert_eq!(msg.event_type, "account.activity");
        let back = decode(&msg).unwrap();
        assert_eq!(back, env);
        assert_eq!(super::tenant(&back).unwrap(), Some(tenant));
    }

    #[test]
    fn garbage_does_not_decode() {
        let msg = BusMessage {
            id: EventId::new(),
            event_type: "account.activity".into(),
            payload: Bytes::from_static(b"\xff\xff\xff"),
            traceparent: None,
        };
        assert!(decode(&msg).is_err());
    }
}

/// The bytes a service signs to attest its part of a cascade: every field of the
/// `deletion.completed` payload but the signature, in a fixed order (counts by key).
pub fn completion_bytes(c: &mindmesh_proto::mindmesh::events::v1::DeletionCompleted) -> Vec<u8> {
    let mut counts: Vec<(&String, &u64)> = c.counts.iter().collect();
    counts.sort();
    let mut keys: Vec<&String> = c.destroyed_key_ids.iter().collect();
    keys.sort();
    let mut out = Vec::new();
    let mut field = |bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    field(b"mindmesh/deletion.completed/v1");
    field(c.cascade_id.as_bytes());
    field(&c.service.to_be_bytes());
    field(&c.state.to_be_bytes());
    for (k, v) in counts {
        field(k.as_bytes());
        field(&v.to_be_bytes());
    }
    field(b"keys");
    for k in keys {
        field(k.as_bytes());
    }
    // Only when set, so that attestations of a deletion sign what they always signed.
    if !c.ground.is_empty() {
        field(b"ground");
        field(c.ground.as_bytes());
    }
    out
}

/// A signed `deletion.completed` payload.
pub fn signed_completion(
    signer: &crate::crypto::SigningKey,
    mut completion: mindmesh_proto::mindmesh::events::v1::DeletionCompleted,
) -> mindmesh_proto::mindmesh::events::v1::DeletionCompleted {
    use base64::Engine;
    completion.signature = String::new();
    let signature = signer.sign(&completion_bytes(&completion));
    completion.signature = base64::engine::general_purpose::STANDARD.encode(signature);
    completion
}

/// Checks the signature of a `deletion.completed` payload against a service's key.
pub fn verify_completion(
    public_key: &[u8],
    completion: &mindmesh_proto::mindmesh::events::v1::DeletionCompleted,
) -> bool {
    use base64::Engine;
    let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(&completion.signature)
    else {
        return false;
    };
    crate::crypto::verify_signature(public_key, &completion_bytes(completion), &signature)
}

/// Checks a service's attestation as a receipt carries it (without the bus's types):
/// `retained` when the service settled its part by retaining data on a ground, else
/// done.
pub fn verify_attestation(
    public_key: &[u8],
    cascade_id: &str,
    service: Service,
    retained: bool,
    counts: &std::collections::BTreeMap<String, u64>,
    destroyed_key_ids: &[String],
    signature: &str,
) -> bool {
    use mindmesh_proto::mindmesh::common::v1::CascadeState;
    let state = if retained {
        CascadeState::RetainedWithGround
    } else {
        CascadeState::Done
    };
    verify_completion(
        public_key,
        &mindmesh_proto::mindmesh::events::v1::DeletionCompleted {
            cascade_id: cascade_id.to_owned(),
            service: service.to_proto() as i32,
            counts: counts.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            destroyed_key_ids: destroyed_key_ids.to_vec(),
            state: state as i32,
            signature: signature.to_owned(),
            ground: String::new(),
        },
    )
}

#[cfg(test)]
mod completion_tests {
    use super::*;
    use mindmesh_proto::mindmesh::events::v1::DeletionCompleted;

    #[test]
    fn completions_verify_and_tampering_is_detected() {
        let signer = crate::crypto::SigningKey::generate().unwrap();
        let signed = signed_completion(
            &signer,
            DeletionCompleted {
                cascade_id: "c1".into(),
                service: 2,
                counts: [("grants".to_owned(), 3u64), ("principals".to_owned(), 2u64)].into(),
                destroyed_key_ids: vec!["k1".into()],
                state: 3,
                signature: String::new(),
                ground: String::new(),
            },
        );
        assert!(verify_completion(&signer.public_key(), &signed));
        let mut tampered = signed.clone();
        tampered.counts.insert("grants".into(), 0);
        assert!(!verify_completion(&signer.public_key(), &tampered));
        let other = crate::crypto::SigningKey::generate().unwrap();
        assert!(!verify_completion(&other.public_key(), &signed));
    }
}

/// Seals the personal data an event must carry — the email by which a cascade or a
/// restriction finds a person — so that no event log (JetStream's, or the embedded one,
/// which keep events long after they were handled) holds it in the clear: AES-256-GCM
/// under a key derived from the master key every service shares, bound to the tenant.
/// During a master-key rotation an event sealed under the previous key still opens.
#[derive(Clone)]
pub struct EventSeal {
    current: crate::crypto::SecretKey,
    previous: Option<crate::crypto::SecretKey>,
}

impl std::fmt::Debug for EventSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSeal(<redacted>)")
    }
}

const EVENT_SEAL_PURPOSE: &str = "mindmesh/events/personal-fields/v1";

impl EventSeal {
    /// The seal of `keys`.
    pub fn new(keys: &crate::keyfiles::KeyMaterial) -> Result<Self> {
        Ok(EventSeal {
            current: keys.master.derive(EVENT_SEAL_PURPOSE)?,
            previous: keys
                .previous_master
                .as_ref()
                .map(|k| k.derive(EVENT_SEAL_PURPOSE))
                .transpose()?,
        })
    }

    fn aad(tenant: TenantId) -> Vec<u8> {
        format!("mindmesh/events/email/{tenant}").into_bytes()
    }

    /// `email` of a person of `tenant`, sealed for an event.
    pub fn seal_email(&self, tenant: TenantId, email: &str) -> Result<Vec<u8>> {
        self.current.seal(&Self::aad(tenant), email.as_bytes())
    }

    /// The email sealed in an event about `tenant`; an empty field is an empty email
    /// (an event about a whole tenant). One that does not open is a malformed event.
    pub fn open_email(&self, tenant: TenantId, sealed: &[u8]) -> Result<String> {
        if sealed.is_empty() {
            return Ok(String::new());
        }
        let aad = Self::aad(tenant);
        let plain = self
            .current
            .open(&aad, sealed)
            .or_else(|e| match &self.previous {
                Some(previous) => previous.open(&aad, sealed),
                None => Err(e),
            })
            .map_err(|_| {
                Error::MalformedEvent(
                    "sealed_email does not open under this deployment's master key".into(),
                )
            })?;
        String::from_utf8(plain)
            .map_err(|_| Error::MalformedEvent("sealed_email is not UTF-8".into()))
    }
}
