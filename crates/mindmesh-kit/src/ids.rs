//! Newtype ids over UUIDs, so a tenant id can never be passed where a user id belongs.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::error::Error;

/// A string that is not an id in its hyphenated form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a UUID in its hyphenated form")]
pub struct InvalidId;

/// `value` as a UUID, only in the one textual form every service writes and compares:
/// 8-4-4-4-12 hex digits (either case). The braced, hyphen-less and `urn:uuid:` forms
/// that `Uuid::parse_str` also takes are refused, so one id has one spelling everywhere.
pub fn canonical_uuid(value: &str) -> Option<Uuid> {
    let hyphens_in_place = value.len() == 36
        && value
            .bytes()
            .enumerate()
            .all(|(i, b)| matches!(i, 8 | 13 | 18 | 23) == (b == b'-'));
    if !hyphens_in_place {
        return None;
    }
    Uuid::try_parse(value).ok()
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUIDv7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID.
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// The inner UUID.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses a request field, naming the field in the error.
            pub fn parse_field(field: &'static str, value: &str) -> Result<Self, Error> {
                if value.is_empty() {
                    return Err(Error::invalid(field, "is required"));
                }
                canonical_uuid(value).map(Self).ok_or_else(|| {
                    Error::invalid(
                        field,
                        "is not a UUID in its hyphenated form (8-4-4-4-12 hex digits)",
                    )
                })
            }

            /// Parses a field of a received event: one that is not an id makes the event
            /// malformed ([`Error::MalformedEvent`], dead-lettered at once).
            pub fn parse_event_field(field: &'static str, value: &str) -> Result<Self, Error> {
                canonical_uuid(value)
                    .map(Self)
                    .ok_or_else(|| Error::MalformedEvent(format!("{field} is not a UUID")))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                canonical_uuid(s).map(Self).ok_or(InvalidId)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

id_type!(
    /// A customer organisation.
    TenantId
);
id_type!(
    /// A Mindmesh account (a person in a tenant).
    UserId
);
id_type!(
    /// An event on the bus; also its de-duplication id.
    EventId
);
id_type!(
    /// A deletion cascade.
    CascadeId
);
id_type!(
    /// A connected source tool.
    IntegrationId
);
id_type!(
    /// A document in storage.
    DocumentId
);
id_type!(
    /// A data key in a keystore.
    KeyId
);
id_type!(
    /// A legal hold (retention).
    HoldId
);

impl IntegrationId {
    /// The reserved integration of documents written in Mindmesh itself: its user
    /// principals are the tenant's accounts, named by their user id, so a native
    /// document's grants live in the same permission model as imported ones.
    pub const NATIVE: IntegrationId = IntegrationId(Uuid::nil());

    /// True for [`IntegrationId::NATIVE`].
    pub fn is_native(&self) -> bool {
        self.0.is_nil()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_field_that_is_not_an_id_makes_the_event_malformed() {
        let id = CascadeId::new();
        assert_eq!(
            CascadeId::parse_event_field("cascade_id", &id.to_string()).unwrap(),
            id
        );
        for bad in ["", "c1", "{00000000-0000-0000-0000-000000000000}"] {
            match CascadeId::parse_event_field("cascade_id", bad) {
                Err(Error::MalformedEvent(why)) => assert!(why.contains("cascade_id"), "{why}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn parse_field_names_the_field() {
        let err = TenantId::parse_field("tenant_id", "nope").unwrap_err();
        assert!(err.to_string().contains("tenant_id"), "{err}");
        let err = TenantId::parse_field("tenant_id", "").unwrap_err();
        assert!(err.to_string().contains("required"), "{err}");
        let id = TenantId::new();
        assert_eq!(TenantId::parse_field("x", &id.to_string()).unwrap(), id);
        assert_eq!(
            TenantId::parse_field("x", &id.to_string().to_uppercase()).unwrap(),
            id
        );
    }

    #[test]
    fn only_the_hyphenated_form_is_an_id() {
        let id = DocumentId::new();
        let uuid = id.as_uuid();
        for other_spelling in [
            format!("{{{uuid}}}"),
            uuid.simple().to_string(),
            uuid.urn().to_string(),
            format!(" {uuid}"),
            format!("{uuid}\n"),
        ] {
            assert!(
                DocumentId::parse_field("document_id", &other_spelling).is_err(),
                "{other_spelling}"
            );
            assert!(
                other_spelling.parse::<DocumentId>().is_err(),
                "{other_spelling}"
            );
        }
        assert_eq!(id.to_string().parse::<DocumentId>().unwrap(), id);
        // Hyphens in the wrong places, or a non-hex digit.
        assert!(canonical_uuid("0123456-78901-2345-6789-0123456789ab").is_none());
        assert!(canonical_uuid("g1234567-8901-2345-6789-0123456789ab").is_none());
    }
}
