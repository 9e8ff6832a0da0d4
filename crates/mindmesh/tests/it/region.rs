//! Data stays in the configured region (P17): every service's database is stamped with
//! the deployment's region when first migrated, and neither `mindmesh migrate` nor
//! `mindmesh serve` of another region touches it — the error names both regions.

use mindmesh_kit::Service;
use mindmesh_proto::mindmesh::permissions::v1 as perm;
use tokio_util::sync::CancellationToken;

use crate::common::{Backend, TestServer, authed};

async fn p17_a_database_stamped_with_one_region_is_refused_by_a_deployment_of_another(
    backend: Backend,
) {
    let mut server = TestServer::start(backend).await;
    assert_eq!(server.config.region, "eu");
    let (tenant, admin) = server.create_tenant("Acme").await;
    server.halt().await;

    let mut elsewhere = server.config.clone();
    elsewhere.region = "us".into();
    // The whole chain of the error, as the binary prints it.
    let migrated = format!(
        "{:#}",
        mindmesh::migrate(&elsewhere, &[]).await.unwrap_err()
    );
    for part in ["\"eu\"", "\"us\"", "`region`", "P17"] {
        assert!(migrated.contains(part), "{part} not in: {migrated}");
    }
    let services = match backend {
        Backend::Embedded => Vec::new(),
        Backend::Distributed => Service::ALL.to_vec(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let served = format!(
        "{:#}",
        mindmesh::serve(elsewhere, services, listener, CancellationToken::new())
            .await
            .unwrap_err()
    );
    assert!(
        served.contains("\"eu\"") && served.contains("\"us\""),
        "{served}"
    );

    // Its own region's deployment starts on it as before, the data untouched.
    server.resume().await;
    let mut accounts =
        perm::account_service_client::AccountServiceClient::new(server.channel().await);
    let found = accounts
        .get_tenant(authed(
            perm::GetTenantRequest {
                tenant_id: tenant.to_string(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(found.name, "Acme");
    server.stop().await;
}

both_modes!(p17_a_database_stamped_with_one_region_is_refused_by_a_deployment_of_another);
