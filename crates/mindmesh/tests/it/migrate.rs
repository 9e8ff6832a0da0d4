//! Migrations cannot race: replicas starting at once on one fresh database take turns
//! through PostgreSQL's advisory lock, and every migration is applied exactly once.

use mindmesh_kit::Service;
use mindmesh_kit::config::Config;
use mindmesh_kit::testing::TestPostgres;
use sea_orm::ConnectionTrait;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_migrators_starting_at_once_on_fresh_databases_never_race() {
    let pg = TestPostgres::new();
    let mut config = Config::default();
    config.database.url = Some(pg.template());
    config.database.max_connections = 2;
    let migrators: Vec<_> = (0..4)
        .map(|_| {
            let config = config.clone();
            tokio::spawn(async move { mindmesh::migrate(&config, &[]).await })
        })
        .collect();
    for migrator in migrators {
        migrator.await.unwrap().expect("every migrator succeeds");
    }
    for service in Service::ALL {
        let db = mindmesh_kit::db::connect(&config.database_url(service), 1)
            .await
            .unwrap();
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT version, count(*) AS n FROM seaql_migrations GROUP BY version",
            ))
            .await
            .unwrap();
        assert!(!rows.is_empty(), "{service} was migrated");
        for row in rows {
            let n: i64 = row.try_get("", "n").unwrap();
            let version: String = row.try_get("", "version").unwrap();
            assert_eq!(n, 1, "{service}: {version} applied {n} times");
        }
        let stamped = mindmesh_kit::region::stamped(&db).await.unwrap();
        assert_eq!(stamped.as_deref(), Some("eu"), "{service}");
        db.close().await.unwrap();
    }
}
