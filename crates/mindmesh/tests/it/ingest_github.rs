//! The GitHub connector against a fake of GitHub's REST API, end to end into the real
//! storage and permissions services, in embedded mode (SQLite + embedded bus) and
//! distributed mode (PostgreSQL + NATS JetStream): full and incremental syncs with
//! conditional requests (P02), one reader across Drive and GitHub by email (P05),
//! read-only grants (P03), disconnect with revocation (P06), rate limits and hostile
//! answers.

use std::time::Duration;

use crate::common::fake_github::{self, Answer, FakeGitHub, Fault, Issue, Repo, Team, User, World};
use crate::common::fake_google::{self, FakeGoogle, Perm};
use crate::common::ingest::{self, set, sync_ok, titles};
use crate::common::{Backend, TestServer, authed, eventually};
use mindmesh_kit::auth::Role;
use mindmesh_proto::mindmesh::ingest::v1 as pb;
use serde_json::json;
use tonic::Code;

const ALICE: &str = "alice@acme.example";
const BOB: &str = "bob@acme.example";
const CAROL: &str = "carol@acme.example";

/// Acme on GitHub: Alice (public email) in `eng`; Bob (public email) in `platform`, a
/// child team of `eng`; Carol keeps her email private. `handbook` is internal,
/// `secret` private (Alice as collaborator, `platform` as team), `site` public.
fn acme() -> World {
    let user = |id, login: &str, email: Option<&str>| User {
        id,
        login: login.into(),
        name: login.into(),
        email: email.map(str::to_owned),
    };
    let mut handbook = Repo::new(501, "handbook", "internal");
    handbook
        .files
        .insert("README.md".into(), "# Handbook".into());
    handbook
        .files
        .insert("docs/guide.md".into(), "how we work".into());
    handbook
        .files
        .insert("src/main.rs".into(), "fn main() {}".into());
    handbook.issues.push(Issue {
        number: 3,
        title: "Typo".into(),
        body: "fix it".into(),
        updated: fake_github::now() - 3600,
        pull_request: false,
    });
    let mut secret = Repo::new(502, "secret", "private");
    secret.files.insert("README.md".into(), "# Secret".into());
    secret.collaborators.push((11, "read"));
    secret.teams.push((22, "pull"));
    secret.issues.push(Issue {
        number: 1,
        title: "Outage".into(),
        body: "the database is down".into(),
        updated: fake_github::now() - 3600,
        pull_request: false,
    });
    secret.issues.push(Issue {
        number: 2,
        title: "Fix outage".into(),
        body: "a pull request".into(),
        updated: fake_github::now() - 3600,
        pull_request: true,
    });
    let mut site = Repo::new(503, "site", "public");
    site.files.insert("README.md".into(), "# Site".into());
    World {
        org: "acme".into(),
        base_permission: "none".into(),
        members: vec![
            user(11, "alice-gh", Some(ALICE)),
            user(12, "bob-gh", Some(BOB)),
            user(13, "carol-gh", None),
        ],
        teams: vec![
            Team {
                id: 21,
                slug: "eng".into(),
                parent: None,
                members: vec![11],
            },
            Team {
                id: 22,
                slug: "platform".into(),
                parent: Some(21),
                members: vec![12],
            },
        ],
        repos: vec![handbook, secret, site],
        page_size: 2,
        tokens: vec!["github_pat_readonly".into()],
        client_id: "Iv1.client".into(),
        client_secret: "gh-client-secret".into(),
        ..World::default()
    }
}

fn token_request(fake: &FakeGitHub) -> pb::ConnectIntegrationRequest {
    pb::ConnectIntegrationRequest {
        kind: "github".into(),
        display_name: "Acme GitHub".into(),
        settings: fake.settings(),
        access_token: "github_pat_readonly".into(),
        ..Default::default()
    }
}

async fn server(backend: Backend) -> TestServer {
    TestServer::start_with(backend, |c| {
        c.ingest.initial_backoff_ms = 5;
        c.ingest.max_backoff_secs = 2;
        c.ingest.max_attempts = 4;
    })
    .await
}

async fn github_full_then_incremental_sync(backend: Backend) {
    let server = server(backend).await;
    let fake = FakeGitHub::start(acme()).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let alice = ingest::member(&server, tenant, &admin, ALICE).await.1;
    let bob = ingest::member(&server, tenant, &admin, BOB).await.1;
    let carol = ingest::member(&server, tenant, &admin, CAROL).await.1;
    let mut client = ingest::client(&server).await;
    let integration = ingest::connect(&mut client, &admin, token_request(&fake)).await;
    sync_ok(&mut client, &admin, &integration.id, false).await;

    let internal = [
        "handbook: README.md",
        "handbook: docs/guide.md",
        "handbook #3: Typo",
    ];
    let public = ["site: README.md"];
    let secret = ["secret: README.md", "secret #1: Outage"];
    let all: Vec<&str> = [&internal[..], &public[..], &secret[..]].concat();
    // Alice: member (internal), collaborator (secret), anyone (public). Bob: through
    // `platform`, the team `secret` grants. Carol: her email is private at GitHub, so
    // nothing links her account to her GitHub identity: only what is public.
    assert_eq!(titles(&server, &alice).await, set(&all));
    assert_eq!(titles(&server, &bob).await, set(&all));
    assert_eq!(titles(&server, &carol).await, set(&public));

    // Nothing changed: the trees answer 304, no file is fetched, nothing is removed.
    let blobs = fake.seen("/git/blobs/").len();
    let done = sync_ok(&mut client, &admin, &integration.id, false).await;
    assert_eq!(
        (done.created, done.updated, done.deleted),
        (0, 0, 0),
        "{done:?}"
    );
    assert_eq!(fake.with(|w| w.not_modified), 3);
    assert_eq!(fake.seen("/git/blobs/").len(), blobs);
    assert!(
        fake.seen("/issues")
            .iter()
            .rev()
            .take(3)
            .all(|s| s.query.contains_key("since"))
    );
    assert_eq!(titles(&server, &alice).await, set(&all));

    // At GitHub: a file edited, a new issue, Alice no longer a collaborator of
    // `secret`, `platform` moved out from under `eng` (Bob keeps `secret`), `site`
    // deleted.
    fake.with(|w| {
        let handbook = &mut w.repos[0];
        handbook
            .files
            .insert("README.md".into(), "# Handbook, second edition".into());
        let secret = &mut w.repos[1];
        secret.collaborators.clear();
        secret.issues.push(Issue {
            number: 4,
            title: "Postmortem".into(),
            body: "what happened".into(),
            updated: fake_github::now(),
            pull_request: false,
        });
        w.teams[1].parent = None;
        w.repos.retain(|r| r.name != "site");
    });
    let done = sync_ok(&mut client, &admin, &integration.id, false).await;
    assert_eq!(done.deleted, 1, "{done:?}");
    assert_eq!(done.created, 1, "{done:?}");
    assert_eq!(titles(&server, &alice).await, set(&internal));
    let secret_now = [
        "secret: README.md",
        "secret #1: Outage",
        "secret #4: Postmortem",
    ];
    assert_eq!(
        titles(&server, &bob).await,
        set(&[&internal[..], &secret_now[..]].concat())
    );
    assert!(titles(&server, &carol).await.is_empty());

    // The base permission raised to read, and Carol makes her email public: now
    // linked, she reads every repository as a member.
    fake.with(|w| {
        w.base_permission = "read".into();
        w.members[2].email = Some(CAROL.into());
    });
    sync_ok(&mut client, &admin, &integration.id, false).await;
    assert_eq!(
        titles(&server, &carol).await,
        set(&[&internal[..], &secret_now[..]].concat())
    );
    server.stop().await;
}

async fn p05_one_email_is_one_reader_across_drive_and_github(backend: Backend) {
    let server = server(backend).await;
    let github = FakeGitHub::start(acme()).await;
    let mut drive_world = fake_google::World {
        page_size: 10,
        oauth_user: "admin@acme.example".into(),
        ..fake_google::World::default()
    };
    drive_world.users.push((
        "100".into(),
        "admin@acme.example".into(),
        "Admin".into(),
        false,
    ));
    drive_world
        .users
        .push(("101".into(), ALICE.into(), "Alice".into(), false));
    drive_world.admins.insert("admin@acme.example".into());
    drive_world.put(fake_google::doc(
        "d-1",
        "Alice's Drive plan",
        "admin@acme.example",
        "plan",
        vec![Perm::user(ALICE, "reader")],
    ));
    let drive = FakeGoogle::start(drive_world).await;
    let drive_token = drive.with(|w| w.new_token("admin@acme.example"));

    let (tenant, admin) = server.create_tenant("Acme").await;
    let alice = ingest::member(&server, tenant, &admin, ALICE).await.1;
    let carol = ingest::member(&server, tenant, &admin, CAROL).await.1;
    let mut client = ingest::client(&server).await;
    let gh = ingest::connect(&mut client, &admin, token_request(&github)).await;
    let gd = ingest::connect(
        &mut client,
        &admin,
        pb::ConnectIntegrationRequest {
            kind: "google_drive".into(),
            display_name: "Acme Drive".into(),
            settings: drive.settings(),
            access_token: drive_token,
            ..Default::default()
        },
    )
    .await;
    sync_ok(&mut client, &admin, &gh.id, false).await;
    sync_ok(&mut client, &admin, &gd.id, false).await;
    // One account, two identities (alice-gh at GitHub, alice@ at Google), one reader.
    let read = titles(&server, &alice).await;
    assert!(read.contains("Alice's Drive plan"), "{read:?}");
    assert!(read.contains("secret: README.md"), "{read:?}");
    let read = titles(&server, &carol).await;
    assert!(
        !read.contains("Alice's Drive plan") && !read.contains("secret: README.md"),
        "{read:?}"
    );
    server.stop().await;
}

async fn p03_github_refuses_write_scopes_and_p06_revokes_on_disconnect(backend: Backend) {
    let server = server(backend).await;
    let mut world = acme();
    world.granted_scope = "repo,read:org".into();
    let fake = FakeGitHub::start(world).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let alice = ingest::member(&server, tenant, &admin, ALICE).await.1;
    let mut client = ingest::client(&server).await;
    let member = server.token("m", Some(tenant), &[Role::Member]);
    let listed = client
        .list_connectors(authed(pb::ListConnectorsRequest {}, &member))
        .await
        .unwrap()
        .into_inner()
        .connectors
        .into_iter()
        .find(|c| c.kind == "github")
        .unwrap();
    assert!(
        listed.scopes.iter().all(|s| s.ends_with(":read")),
        "{:?}",
        listed.scopes
    );

    let mut settings = fake.settings();
    settings.insert("client_id".into(), "Iv1.client".into());
    settings.insert("client_secret".into(), "gh-client-secret".into());
    let by_code = |code: &str| pb::ConnectIntegrationRequest {
        kind: "github".into(),
        display_name: "Acme GitHub".into(),
        settings: settings.clone(),
        authorization_code: code.into(),
        redirect_uri: "https://app.example/cb".into(),
        ..Default::default()
    };
    let err = client
        .connect_integration(authed(by_code("gh-code"), &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("repo") && err.message().contains("not read-only"),
        "{}",
        err.message()
    );
    // GitHub answers a bad code with 200 and an error field: refused all the same.
    let err = client
        .connect_integration(authed(by_code("expired"), &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        err.message().contains("bad_verification_code"),
        "{}",
        err.message()
    );

    // A GitHub App's user token has no classic scopes.
    fake.with(|w| w.granted_scope = String::new());
    let integration = client
        .connect_integration(authed(by_code("gh-code"), &admin))
        .await
        .unwrap()
        .into_inner()
        .integration
        .unwrap();
    sync_ok(&mut client, &admin, &integration.id, false).await;
    assert!(!titles(&server, &alice).await.is_empty());
    let token = fake.with(|w| w.tokens.last().cloned().unwrap());
    client
        .disconnect_integration(authed(
            pb::DisconnectIntegrationRequest {
                integration_id: integration.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap();
    let revoked = fake.with(|w| w.revoked.clone());
    assert_eq!(
        revoked,
        vec![("Iv1.client:gh-client-secret".to_owned(), token)]
    );
    assert!(
        eventually(Duration::from_secs(30), || async {
            titles(&server, &alice).await.is_empty()
        })
        .await,
        "the integration's documents are erased"
    );
    server.stop().await;
}

async fn github_rate_limits_and_hostile_answers(backend: Backend) {
    let server = server(backend).await;
    let mut world = acme();
    let reset = (chrono::Utc::now().timestamp()).to_string();
    world.faults = vec![
        // Secondary limit: 403 with a message and Retry-After.
        Fault {
            matches: "/orgs/acme/members".into(),
            answer: Answer::Status(
                403,
                json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}),
                Some("0"),
            ),
            times: 2,
        },
        // Primary limit used up: 403 with x-ratelimit-remaining: 0 until the reset.
        Fault {
            matches: "/orgs/acme/repos".into(),
            answer: Answer::WithHeaders(
                403,
                json!({"message": "API rate limit exceeded"}),
                vec![
                    ("x-ratelimit-remaining", "0".into()),
                    ("x-ratelimit-reset", reset),
                ],
            ),
            times: 1,
        },
        Fault {
            matches: "/collaborators".into(),
            answer: Answer::Status(429, json!({"message": "Too Many Requests"}), Some("0")),
            times: 2,
        },
        Fault {
            matches: "/git/blobs/".into(),
            answer: Answer::Status(502, json!({"message": "Server Error"}), None),
            times: 1,
        },
    ];
    let fake = FakeGitHub::start(world).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let alice = ingest::member(&server, tenant, &admin, ALICE).await.1;
    let mut client = ingest::client(&server).await;
    let integration = ingest::connect(&mut client, &admin, token_request(&fake)).await;
    sync_ok(&mut client, &admin, &integration.id, false).await;
    assert_eq!(titles(&server, &alice).await.len(), 6);
    let imported = titles(&server, &alice).await;

    // A 403 that is not a rate limit fails at once, naming the call.
    fake.with(|w| {
        w.faults = vec![Fault {
            matches: "/orgs/acme/teams".into(),
            answer: Answer::Status(
                403,
                json!({"message": "Resource not accessible by integration"}),
                None,
            ),
            times: 100,
        }]
    });
    let last = ingest::sync(&mut client, &admin, &integration.id, false)
        .await
        .pop()
        .unwrap();
    assert_eq!(last.phase, pb::SyncPhase::Failed as i32);
    assert!(
        last.error.contains("github teams") && last.error.contains("refused access"),
        "{}",
        last.error
    );

    for (answer, expected) in [
        (
            Answer::Raw(r#"[{"id": "not a number", "full_name": "acme/x"}]"#),
            "unexpected field type",
        ),
        (
            Answer::Raw(r#"{"message": "an object where a list belongs"}"#),
            "unexpected field type",
        ),
        (Answer::Raw("[{\"id\": 1"), "truncated"),
    ] {
        fake.with(|w| {
            w.faults = vec![Fault {
                matches: "/orgs/acme/repos".into(),
                answer: answer.clone(),
                times: 100,
            }]
        });
        let last = ingest::sync(&mut client, &admin, &integration.id, false)
            .await
            .pop()
            .unwrap();
        assert_eq!(last.phase, pb::SyncPhase::Failed as i32, "{answer:?}");
        assert!(
            last.error.contains("github repos") && last.error.contains(expected),
            "{answer:?}: {}",
            last.error
        );
        assert_eq!(
            titles(&server, &alice).await,
            imported,
            "nothing imported is lost"
        );
    }

    // The token revoked at GitHub: 401, nothing to refresh with: the sync says so.
    fake.with(|w| {
        w.faults.clear();
        w.tokens.clear();
    });
    let last = ingest::sync(&mut client, &admin, &integration.id, false)
        .await
        .pop()
        .unwrap();
    assert_eq!(last.phase, pb::SyncPhase::Failed as i32);
    assert!(
        last.error.contains("401") && last.error.contains("reconnect"),
        "{}",
        last.error
    );
    assert!(!last.error.contains("github_pat"), "no token in errors");
    assert_eq!(titles(&server, &alice).await, imported);
    server.stop().await;
}

both_modes!(
    github_full_then_incremental_sync,
    p05_one_email_is_one_reader_across_drive_and_github,
    p03_github_refuses_write_scopes_and_p06_revokes_on_disconnect,
    github_rate_limits_and_hostile_answers,
);
