//! The five services, by name.

use std::fmt;
use std::str::FromStr;

use mindmesh_proto::mindmesh::common::v1 as pb;

/// One of Mindmesh's five services.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Service {
    /// Connectors, integrations, credentials, sync.
    Ingest,
    /// Accounts, principals, grants, checks, staff access.
    Permissions,
    /// Encrypted documents, keys, tombstones.
    Storage,
    /// Policies, sweeps, ledger, receipts, backups.
    Retention,
    /// Data-subject requests, exports, consents, notifier.
    Dsar,
}

impl Service {
    /// Every service, in a fixed order.
    pub const ALL: [Service; 5] = [
        Service::Ingest,
        Service::Permissions,
        Service::Storage,
        Service::Retention,
        Service::Dsar,
    ];

    /// The lowercase name used in config, database names and consumer names.
    pub const fn as_str(self) -> &'static str {
        match self {
            Service::Ingest => "ingest",
            Service::Permissions => "permissions",
            Service::Storage => "storage",
            Service::Retention => "retention",
            Service::Dsar => "dsar",
        }
    }

    /// The proto enum value.
    pub fn to_proto(self) -> pb::Service {
        match self {
            Service::Ingest => pb::Service::Ingest,
            Service::Permissions => pb::Service::Permissions,
            Service::Storage => pb::Service::Storage,
            Service::Retention => pb::Service::Retention,
            Service::Dsar => pb::Service::Dsar,
        }
    }

    /// From the proto enum's wire value; `None` for unspecified or unknown values.
    pub fn from_proto(value: i32) -> Option<Self> {
        match pb::Service::try_from(value).ok()? {
            pb::Service::Unspecified => None,
            pb::Service::Ingest => Some(Service::Ingest),
            pb::Service::Permissions => Some(Service::Permissions),
            pb::Service::Storage => Some(Service::Storage),
            pb::Service::Retention => Some(Service::Retention),
            pb::Service::Dsar => Some(Service::Dsar),
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name given is not one of the five services.
#[derive(Debug, thiserror::Error)]
#[error("unknown service {0:?} (expected one of ingest, permissions, storage, retention, dsar)")]
pub struct UnknownService(String);

impl FromStr for Service {
    type Err = UnknownService;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Service::ALL
            .into_iter()
            .find(|svc| svc.as_str() == s)
            .ok_or_else(|| UnknownService(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for svc in Service::ALL {
            assert_eq!(svc.as_str().parse::<Service>().unwrap(), svc);
            assert_eq!(Service::from_proto(svc.to_proto() as i32), Some(svc));
        }
        assert!("billing".parse::<Service>().is_err());
        assert_eq!(Service::from_proto(0), None);
    }
}
