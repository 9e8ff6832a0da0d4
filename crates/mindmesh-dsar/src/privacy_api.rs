//! The gRPC face of a tenant's privacy settings (`PrivacySettingsService`): processor
//! switches (P14), communication preferences (P13) and consents.
//!
//! Not built yet, and answering UNIMPLEMENTED (never a fake success): `Unsubscribe`
//! (the signed link of a marketing mail) and `DeclareBreach` (P15), issue 14.

use mindmesh_kit::Error;
use mindmesh_kit::auth::{Caller, Role};
use mindmesh_kit::ids::{TenantId, UserId};
use mindmesh_kit::processing::Switches;
use mindmesh_kit::tenants::Tenants;
use mindmesh_proto::mindmesh::dsar::v1 as pb;
use tonic::{Request, Response, Status};

use crate::consents::Consents;
use crate::settings::Settings;

/// `PrivacySettingsService`.
pub struct PrivacySettingsApi {
    /// Switches and preferences.
    pub settings: Settings,
    /// Consents.
    pub consents: Consents,
    /// Settings change only in a live tenant (P08).
    pub tenants: Tenants,
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
        let marketing_mail = self.settings.marketing(tenant, user).await?;
        Ok(Response::new(pb::GetCommunicationPreferencesResponse {
            preferences: Some(pb::CommunicationPreferences { marketing_mail }),
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
        self.tenants.require_live(tenant).await?;
        let marketing_mail = self
            .settings
            .set_marketing(
                &caller,
                tenant,
                user,
                preferences.marketing_mail,
                chrono::Utc::now(),
            )
            .await?;
        Ok(Response::new(pb::SetCommunicationPreferencesResponse {
            preferences: Some(pb::CommunicationPreferences { marketing_mail }),
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
}
