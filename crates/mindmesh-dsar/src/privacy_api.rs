//! The gRPC face of a tenant's privacy settings (`PrivacySettingsService`): processor
//! switches (P14), communication preferences (P13) and consents.
//!
//! `Unsubscribe` takes the sealed token of a marketing mail's link and no bearer token
//! (P13); `DeclareBreach` and `GetBreach` are the operator's (P15).

use mindmesh_kit::Error;
use mindmesh_kit::auth::{Caller, Role};
use mindmesh_kit::ids::{TenantId, UserId};
use mindmesh_kit::processing::Switches;
use mindmesh_kit::tenants::Tenants;
use mindmesh_proto::mindmesh::dsar::v1 as pb;
use tonic::{Request, Response, Status};

use crate::breach::{Affected, Breaches, MAX_TENANTS, MAX_USERS};
use crate::consents::Consents;
use crate::settings::{Preferences, Settings};
use crate::unsubscribe::Tokens;

/// `PrivacySettingsService`.
pub struct PrivacySettingsApi {
    /// Switches and preferences.
    pub settings: Settings,
    /// Consents.
    pub consents: Consents,
    /// Settings change only in a live tenant (P08).
    pub tenants: Tenants,
    /// Unsubscribe links.
    pub tokens: Tokens,
    /// Breaches declared.
    pub breaches: Breaches,
}

/// The person a call is about: the caller (`user_id` empty or their own), or, for an
/// admin, the user named in their tenant.
fn person(caller: &Caller, named: &str) -> mindmesh_kit::Result<(TenantId, UserId)> {
    caller.require_any(&[Role::Member, Role::Admin])?;
    let tenant = caller.tenant()?;
    if named.is_empty() || named == caller.subject {
        let own = caller
            .subject
            .parse()
            .map_err(|_| Error::PermissionDenied("the token's subject is not a user id".into()))?;
        return Ok((tenant, own));
    }
    if !caller.has(Role::Admin) {
        return Err(Error::PermissionDenied(
            "user_id: a member reads and changes their own settings only".into(),
        ));
    }
    Ok((tenant, UserId::parse_field("user_id", named)?))
}

fn preferences_pb(p: Preferences) -> pb::CommunicationPreferences {
    pb::CommunicationPreferences {
        marketing_mail: p.marketing,
        administrative_contact: p.admin_contact,
    }
}

fn switches_pb(s: Switches) -> pb::ProcessorSettings {
    pb::ProcessorSettings {
        analytics_enabled: s.analytics,
        llm_enabled: s.llm,
    }
}

#[tonic::async_trait]
impl pb::privacy_settings_service_server::PrivacySettingsService for PrivacySettingsApi {
    async fn get_communication_preferences(
        &self,
        request: Request<pb::GetCommunicationPreferencesRequest>,
    ) -> Result<Response<pb::GetCommunicationPreferencesResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let (tenant, user) = person(&caller, &request.get_ref().user_id)?;
        let preferences = self.settings.preferences(tenant, user).await?;
        Ok(Response::new(pb::GetCommunicationPreferencesResponse {
            preferences: Some(preferences_pb(preferences)),
        }))
    }

    async fn set_communication_preferences(
        &self,
        request: Request<pb::SetCommunicationPreferencesRequest>,
    ) -> Result<Response<pb::SetCommunicationPreferencesResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let req = request.into_inner();
        let (tenant, user) = person(&caller, &req.user_id)?;
        let preferences = req
            .preferences
            .ok_or_else(|| Error::invalid("preferences", "is required"))?;
        // Whether someone is an admin is their token's to say: only an admin makes
        // themselves a contact (anyone may stop being one, or be stopped by an admin).
        if preferences.administrative_contact
            && !(caller.has(Role::Admin) && user.to_string() == caller.subject)
        {
            return Err(Error::PermissionDenied(
                "preferences.administrative_contact: an admin sets it for themselves".into(),
            )
            .into());
        }
        self.tenants.require_live(tenant).await?;
        let stored = self
            .settings
            .set_preferences(
                Some(&caller),
                tenant,
                user,
                Preferences {
                    marketing: preferences.marketing_mail,
                    admin_contact: preferences.administrative_contact,
                },
                chrono::Utc::now(),
            )
            .await?;
        Ok(Response::new(pb::SetCommunicationPreferencesResponse {
            preferences: Some(preferences_pb(stored)),
        }))
    }

    async fn get_processor_settings(
        &self,
        request: Request<pb::GetProcessorSettingsRequest>,
    ) -> Result<Response<pb::GetProcessorSettingsResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        // Everyone of the tenant may see where their data may go.
        caller.require_any(&[Role::Member, Role::Admin])?;
        let switches = self.settings.processors(caller.tenant()?).await?;
        Ok(Response::new(pb::GetProcessorSettingsResponse {
            settings: Some(switches_pb(switches)),
        }))
    }

    async fn set_processor_settings(
        &self,
        request: Request<pb::SetProcessorSettingsRequest>,
    ) -> Result<Response<pb::SetProcessorSettingsResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        caller.require_any(&[Role::Admin])?;
        let tenant = caller.tenant()?;
        let settings = request
            .into_inner()
            .settings
            .ok_or_else(|| Error::invalid("settings", "is required"))?;
        self.tenants.require_live(tenant).await?;
        let switches = self
            .settings
            .set_processors(
                &caller,
                tenant,
                Switches {
                    analytics: settings.analytics_enabled,
                    llm: settings.llm_enabled,
                },
                chrono::Utc::now(),
            )
            .await?;
        Ok(Response::new(pb::SetProcessorSettingsResponse {
            settings: Some(switches_pb(switches)),
        }))
    }

    async fn record_consent(
        &self,
        request: Request<pb::RecordConsentRequest>,
    ) -> Result<Response<pb::RecordConsentResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let req = request.into_inner();
        let (tenant, user) = person(&caller, &req.user_id)?;
        // Consent is the person's own act; an admin may record its withdrawal for them.
        if req.granted && user.to_string() != caller.subject {
            return Err(Error::PermissionDenied(
                "user_id: consent is given by the person themselves; an admin may only \
                 record its withdrawal"
                    .into(),
            )
            .into());
        }
        self.tenants.require_live(tenant).await?;
        let consent_id = self
            .consents
            .record(
                &caller,
                tenant,
                user,
                &req.purpose,
                req.granted,
                chrono::Utc::now(),
            )
            .await?;
        Ok(Response::new(pb::RecordConsentResponse { consent_id }))
    }

    async fn unsubscribe(
        &self,
        request: Request<pb::UnsubscribeRequest>,
    ) -> Result<Response<pb::UnsubscribeResponse>, Status> {
        // No bearer token: the link's sealed token is the authority (PublicMethods).
        crate::unsubscribe::follow(
            &self.settings,
            &self.tokens,
            &request.get_ref().token,
            chrono::Utc::now(),
        )
        .await?;
        Ok(Response::new(pb::UnsubscribeResponse {}))
    }

    async fn declare_breach(
        &self,
        request: Request<pb::DeclareBreachRequest>,
    ) -> Result<Response<pb::DeclareBreachResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        caller.require_any(&[Role::Operator])?;
        let req = request.into_inner();
        let affected = affected(&req)?;
        let detected = req
            .detected_at
            .ok_or_else(|| Error::invalid("detected_at", "is required"))
            .and_then(|t| {
                chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
                    .ok_or_else(|| Error::invalid("detected_at", "is not a valid time"))
            })?;
        let declared = self
            .breaches
            .declare(
                &caller,
                &req.description,
                detected,
                affected,
                chrono::Utc::now(),
            )
            .await?;
        Ok(Response::new(pb::DeclareBreachResponse {
            breach_id: declared.id,
            notifications_queued: declared.queued,
            authority_deadline: Some(timestamp(declared.authority_deadline)),
            declared_within_deadline: declared.within_deadline,
            unknown_user_ids: declared.unknown,
        }))
    }

    async fn get_breach(
        &self,
        request: Request<pb::GetBreachRequest>,
    ) -> Result<Response<pb::GetBreachResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        caller.require_any(&[Role::Operator])?;
        let req = request.into_inner();
        let tenant = TenantId::parse_field("tenant_id", &req.tenant_id)?;
        if uuid::Uuid::parse_str(&req.breach_id).is_err() {
            return Err(Error::invalid("breach_id", "is not a UUID").into());
        }
        let status = self
            .breaches
            .status(&caller, tenant, &req.breach_id)
            .await?;
        Ok(Response::new(pb::GetBreachResponse {
            breach_id: status.breach.id,
            detected_at: Some(timestamp(status.breach.detected_at)),
            declared_at: Some(timestamp(status.breach.declared_at)),
            authority_deadline: Some(timestamp(status.breach.authority_due_at)),
            declared_within_deadline: status.breach.declared_at <= status.breach.authority_due_at,
            queued: status.queued,
            sent: status.sent,
            failed: status.failed,
        }))
    }
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// Whom a declaration affects, from its `tenant_ids` and `affected_user_ids`.
fn affected(req: &pb::DeclareBreachRequest) -> mindmesh_kit::Result<Affected> {
    if req.tenant_ids.is_empty() {
        return Err(Error::invalid("tenant_ids", "names no tenant"));
    }
    if req.tenant_ids.len() > MAX_TENANTS {
        return Err(Error::invalid(
            "tenant_ids",
            format!("names more than {MAX_TENANTS} tenants"),
        ));
    }
    if req.affected_user_ids.len() > MAX_USERS {
        return Err(Error::invalid(
            "affected_user_ids",
            format!("names more than {MAX_USERS} people"),
        ));
    }
    let mut tenants = Vec::with_capacity(req.tenant_ids.len());
    for id in &req.tenant_ids {
        let tenant = TenantId::parse_field("tenant_ids", id)?;
        if !tenants.contains(&tenant) {
            tenants.push(tenant);
        }
    }
    if req.affected_user_ids.is_empty() {
        return Ok(Affected::Everyone(tenants));
    }
    let [tenant] = tenants[..] else {
        return Err(Error::invalid(
            "tenant_ids",
            "must name exactly one tenant when affected_user_ids names people",
        ));
    };
    let mut users = Vec::with_capacity(req.affected_user_ids.len());
    let mut seen = std::collections::HashSet::with_capacity(req.affected_user_ids.len());
    for id in &req.affected_user_ids {
        let user = UserId::parse_field("affected_user_ids", id)?;
        if seen.insert(user) {
            users.push(user);
        }
    }
    Ok(Affected::People(tenant, users))
}
