//! The principals a sync hands to permissions: every user, group and membership the
//! source's directory has, and the people outside it whom grants name — an outside
//! collaborator a file is shared with directly, known only by their email. Those are
//! learned as pages are applied, kept between syncs (the store), and handed over with
//! the directory, so that an outside person with a Mindmesh account under that email
//! reads exactly what is shared with them (P05), and nobody else does.

use std::collections::HashSet;

use crate::connector::{Connector, Grantee, Principals, SourceGrant, SourceUser};

/// The principal set of one sync.
pub struct KnownPrincipals {
    principals: Principals,
    /// External ids of every user in `principals`.
    users: HashSet<String>,
    /// Outside users were learned since the set was last handed over.
    grown: bool,
}

impl KnownPrincipals {
    /// The directory's principals with the outside users learned before.
    pub fn new(mut principals: Principals, outsiders: Vec<SourceUser>) -> Self {
        let mut users: HashSet<String> = principals
            .users
            .iter()
            .map(|u| u.external_id.clone())
            .collect();
        for user in outsiders {
            // One who has joined the directory since is the directory's.
            if users.insert(user.external_id.clone()) {
                principals.users.push(user);
            }
        }
        KnownPrincipals {
            principals,
            users,
            grown: false,
        }
    }

    /// The users `grants` name that are not principals yet and that the connector can
    /// make principals of: added to the set, and returned to be kept.
    pub fn learn(&mut self, connector: &dyn Connector, grants: &[SourceGrant]) -> Vec<SourceUser> {
        let mut learned = Vec::new();
        for grant in grants {
            let Grantee::User(id) = &grant.grantee else {
                continue;
            };
            if self.users.contains(id) {
                continue;
            }
            if let Some(user) = connector.outside_user(id) {
                self.users.insert(id.clone());
                self.principals.users.push(user.clone());
                learned.push(user);
            }
        }
        self.grown |= !learned.is_empty();
        learned
    }

    /// Outside users were learned since [`KnownPrincipals::handed_over`].
    pub fn grown(&self) -> bool {
        self.grown
    }

    /// The whole set, to hand to permissions; marks it handed over.
    pub fn handed_over(&mut self) -> Principals {
        self.grown = false;
        self.principals.clone()
    }
}
