//! Mail, end to end in both modes (P13, P15): `notification.requested` events and
//! declared breaches become mails in the server's mailbox directory (read as a mail
//! client would); a marketing mail's unsubscribe link works with one POST and no login,
//! from plain HTTP and from a real headless browser opening the link of the `.eml` file;
//! administrative mail is always delivered; every mail is sent once.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use mindmesh_kit::Service;
use mindmesh_kit::auth::Role;
use mindmesh_kit::ids::TenantId;
use mindmesh_proto::mindmesh::dsar::v1 as pb;
use mindmesh_proto::mindmesh::events::v1::{Envelope, NotificationRequested, envelope::Payload};
use tonic::Code;

use crate::common::{Backend, TestServer, authed};

type Settings =
    pb::privacy_settings_service_client::PrivacySettingsServiceClient<tonic::transport::Channel>;

/// Every mail in the server's mailbox, as text.
fn mails(server: &TestServer) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(server.config.mailbox_dir()) else {
        return Vec::new();
    };
    dir.map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| crate::common::mail_text(&std::fs::read_to_string(p).unwrap()))
        .collect()
}

/// The mails to `to` with `subject`.
fn mails_to(server: &TestServer, to: &str, subject: &str) -> Vec<String> {
    mails(server)
        .into_iter()
        .filter(|m| m.contains(&format!("\r\nTo: {to}\r\n")))
        .filter(|m| m.contains(&format!("\r\nSubject: {subject}\r\n")))
        .collect()
}

/// Waits (up to 30 s) until `count` mails to `to` with `subject` are in the mailbox.
async fn await_mails(server: &TestServer, to: &str, subject: &str, count: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = mails_to(server, to, subject);
        if found.len() >= count {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} mails to {to} about {subject:?} did not arrive: {} did",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of header `name` of `mail`, if present.
fn header(mail: &str, name: &str) -> Option<String> {
    let head = mail.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::to_owned)
}

/// `notification.requested` for `user` of `tenant`, as retention or any peer emits it.
fn notification(tenant: TenantId, user: &str, template: &str, administrative: bool) -> Envelope {
    mindmesh_kit::events::envelope(
        Service::Retention,
        Some(tenant),
        Payload::NotificationRequested(NotificationRequested {
            user_id: user.to_owned(),
            template: template.to_owned(),
            administrative,
            params: HashMap::from([
                ("headline".to_owned(), "Search got faster".to_owned()),
                ("request_id".to_owned(), "r-1".to_owned()),
                ("status".to_owned(), "completed".to_owned()),
            ]),
        }),
    )
}

async fn publish(server: &TestServer, event: &Envelope) {
    server
        .bus()
        .await
        .publish(&mindmesh_kit::events::to_bus_message(event).unwrap())
        .await
        .unwrap();
}

async fn marketing(settings: &mut Settings, token: &str) -> bool {
    settings
        .get_communication_preferences(authed(
            pb::GetCommunicationPreferencesRequest::default(),
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .preferences
        .unwrap()
        .marketing_mail
}

async fn set_preferences(settings: &mut Settings, token: &str, marketing: bool, contact: bool) {
    settings
        .set_communication_preferences(authed(
            pb::SetCommunicationPreferencesRequest {
                user_id: String::new(),
                preferences: Some(pb::CommunicationPreferences {
                    marketing_mail: marketing,
                    administrative_contact: contact,
                }),
            },
            token,
        ))
        .await
        .unwrap();
}

/// The one-click unsubscribe link of a marketing mail, checked against RFC 2369/8058.
fn unsubscribe_link(mail: &str) -> String {
    let list = header(mail, "List-Unsubscribe").expect("a List-Unsubscribe header");
    assert_eq!(
        header(mail, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click"),
        "{mail}"
    );
    let url = list
        .strip_prefix('<')
        .and_then(|l| l.strip_suffix('>'))
        .expect("<url>")
        .to_owned();
    assert!(mail.contains(&url), "the link is in the body too: {mail}");
    url
}

/// One-click POST (RFC 8058) of `url`, without any login: the status and page.
async fn one_click(url: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// `url` with its token replaced by `token`.
fn with_token(url: &str, token: &str) -> String {
    let base = url.split("token=").next().unwrap();
    format!("{base}token={token}")
}

async fn p13_a_marketing_mail_unsubscribes_with_one_post_without_login_and_administrative_mail_still_goes_out(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let ada = server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    let ada_token = server.token(&ada.id, Some(tenant), &[Role::Member]);
    let mut settings = Settings::new(server.channel().await);
    set_preferences(&mut settings, &ada_token, true, false).await;

    // A marketing notification, delivered twice by the bus: one mail.
    let news = notification(tenant, &ada.id, "product_news", false);
    publish(&server, &news).await;
    publish(&server, &news).await;
    let mail = await_mails(&server, "ada@acme.example", "Mindmesh product news", 1)
        .await
        .remove(0);
    assert!(mail.contains("Search got faster"), "{mail}");
    let url = unsubscribe_link(&mail);

    // GET shows the page and changes nothing (a link scanner unsubscribes nobody).
    let page = reqwest::get(&url).await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert_eq!(
        page.headers()["referrer-policy"].to_str().unwrap(),
        "no-referrer"
    );
    assert!(page.text().await.unwrap().contains("<form method=\"post\""));
    assert!(marketing(&mut settings, &ada_token).await);

    // Forged, malformed and expired links are refused and change nothing.
    let token = url.split("token=").nth(1).unwrap();
    let mut forged = token.as_bytes().to_vec();
    forged[20] = if forged[20] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(one_click(&with_token(&url, &forged)).await.0, 403);
    assert_eq!(one_click(&with_token(&url, "%21%21")).await.0, 400);
    let tokens =
        mindmesh_dsar::unsubscribe::Tokens::new(&server.master_key(), chrono::Duration::days(1))
            .unwrap();
    let ada_id = ada.id.parse().unwrap();
    let expired = tokens
        .issue(tenant, ada_id, Utc::now() - chrono::Duration::days(2))
        .unwrap();
    let (status, page) = one_click(&with_token(&url, &expired)).await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("expired"), "{page}");
    assert!(marketing(&mut settings, &ada_token).await);

    // One POST, no login: unsubscribed.
    let (status, page) = one_click(&url).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("You are unsubscribed"), "{page}");
    assert!(!marketing(&mut settings, &ada_token).await);
    assert_eq!(
        one_click(&url).await.0,
        200,
        "following it again is harmless"
    );

    // Marketing mail stops; administrative mail is still delivered, without a link.
    publish(
        &server,
        &notification(tenant, &ada.id, "product_news", false),
    )
    .await;
    publish(&server, &notification(tenant, &ada.id, "dsar_update", true)).await;
    let update = await_mails(&server, "ada@acme.example", "Your data request", 1)
        .await
        .remove(0);
    assert!(header(&update, "List-Unsubscribe").is_none(), "{update}");
    assert!(update.contains("r-1 is now completed"), "{update}");
    assert_eq!(
        mails_to(&server, "ada@acme.example", "Mindmesh product news").len(),
        1,
        "neither the redelivered event nor the opted-out one sent a second news mail"
    );

    // The gRPC Unsubscribe takes the same token and no bearer token — that method only.
    let mut anonymous = Settings::new(server.channel().await);
    anonymous
        .unsubscribe(pb::UnsubscribeRequest {
            token: tokens.issue(tenant, ada_id, Utc::now()).unwrap(),
        })
        .await
        .unwrap();
    let garbage = anonymous
        .unsubscribe(pb::UnsubscribeRequest {
            token: "not a token".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(garbage.code(), Code::InvalidArgument);
    assert!(garbage.message().contains("token"), "{garbage:?}");
    let forged_grpc = anonymous
        .unsubscribe(pb::UnsubscribeRequest { token: forged })
        .await
        .unwrap_err();
    assert_eq!(forged_grpc.code(), Code::PermissionDenied);
    let others = anonymous
        .get_communication_preferences(pb::GetCommunicationPreferencesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(others.code(), Code::Unauthenticated);

    // The unsubscribe is in the audit log, as the person's own act through the link.
    let events = crate::common::audit_events(&server, Service::Dsar, &admin).await;
    assert!(
        events
            .iter()
            .any(|e| e.action == "preferences.unsubscribed"),
        "{events:?}"
    );
    server.stop().await;
}

fn timestamp(t: chrono::DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

const BREACH_SUBJECT: &str = "Important: a personal data breach";

async fn p15_a_declared_breach_notifies_every_affected_person_and_admin_once_each_and_tracks_the_72_hour_deadline(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let (globex, globex_admin) = server.create_tenant("Globex").await;
    let mut people = Vec::new();
    for (first, email) in [
        ("Grace", "grace@acme.example"),
        ("Ada", "ada@acme.example"),
        ("Bob", "bob@acme.example"),
        ("Carol", "carol@acme.example"),
    ] {
        people.push(server.create_user(&admin, first, "Example", email).await);
    }
    let dan = server
        .create_user(&globex_admin, "Dan", "Globex", "dan@globex.example")
        .await;
    let (grace, ada, bob) = (&people[0], &people[1], &people[2]);
    // Grace is Acme's admin and its contact for administrative notices; she opted out of
    // marketing, which administrative mail ignores.
    let grace_token = server.token(&grace.id, Some(tenant), &[Role::Admin]);
    let mut settings = Settings::new(server.channel().await);
    set_preferences(&mut settings, &grace_token, false, true).await;

    let operator = server.token("dpo-operator", None, &[Role::Operator]);
    let declare =
        |users: Vec<String>, tenants: Vec<String>, hours_ago: i64| pb::DeclareBreachRequest {
            description: "A misconfigured backup bucket was readable from the internet.".into(),
            detected_at: Some(timestamp(Utc::now() - chrono::Duration::hours(hours_ago))),
            affected_user_ids: users,
            tenant_ids: tenants,
        };

    // Operators only; bad input names its field.
    let not_operator = settings
        .declare_breach(authed(declare(vec![], vec![tenant.to_string()], 1), &admin))
        .await
        .unwrap_err();
    assert_eq!(not_operator.code(), Code::PermissionDenied);
    for (request, field) in [
        (
            pb::DeclareBreachRequest {
                description: " ".into(),
                ..declare(vec![], vec![tenant.to_string()], 1)
            },
            "description",
        ),
        (declare(vec![], vec![], 1), "tenant_ids"),
        (
            declare(
                vec![ada.id.clone()],
                vec![tenant.to_string(), globex.to_string()],
                1,
            ),
            "tenant_ids",
        ),
        (declare(vec![], vec![tenant.to_string()], -2), "detected_at"),
        (
            declare(vec!["nope".into()], vec![tenant.to_string()], 1),
            "affected_user_ids",
        ),
    ] {
        let refused = settings
            .declare_breach(authed(request, &operator))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains(field), "{field}: {refused:?}");
    }
    assert!(
        mails(&server).is_empty(),
        "a refused declaration sends nothing"
    );

    // Ada, Bob and Grace affected (and someone unknown): each told once — Grace, also
    // the admin contact, gets one notice, not two.
    let stranger = mindmesh_kit::ids::UserId::new().to_string();
    let declared = settings
        .declare_breach(authed(
            declare(
                vec![
                    ada.id.clone(),
                    bob.id.clone(),
                    grace.id.clone(),
                    stranger.clone(),
                ],
                vec![tenant.to_string()],
                10,
            ),
            &operator,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(declared.notifications_queued, 3);
    assert_eq!(declared.unknown_user_ids, vec![stranger]);
    assert!(declared.declared_within_deadline);
    let detected = Utc::now() - chrono::Duration::hours(10);
    let deadline = declared.authority_deadline.unwrap().seconds;
    assert!(
        (deadline - (detected + chrono::Duration::hours(72)).timestamp()).abs() < 60,
        "the authority deadline is detection + 72 h"
    );
    for to in ["ada@acme.example", "bob@acme.example", "grace@acme.example"] {
        let notice = await_mails(&server, to, BREACH_SUBJECT, 1).await.remove(0);
        assert!(notice.contains("misconfigured backup bucket"), "{notice}");
        assert!(notice.contains(&declared.breach_id), "{notice}");
        assert!(header(&notice, "List-Unsubscribe").is_none(), "{notice}");
    }
    let status = || async {
        Settings::new(server.channel().await)
            .get_breach(authed(
                pb::GetBreachRequest {
                    breach_id: declared.breach_id.clone(),
                    tenant_id: tenant.to_string(),
                },
                &operator,
            ))
            .await
            .unwrap()
            .into_inner()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let report = loop {
        let report = status().await;
        if report.sent == 3 || tokio::time::Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (report.sent, report.queued, report.failed),
        (3, 0, 0),
        "{report:?}"
    );
    assert!(report.declared_within_deadline);
    let elsewhere = settings
        .get_breach(authed(
            pb::GetBreachRequest {
                breach_id: declared.breach_id.clone(),
                tenant_id: globex.to_string(),
            },
            &operator,
        ))
        .await
        .unwrap_err();
    assert_eq!(elsewhere.code(), Code::NotFound);

    // A whole tenant, declared late: everyone of Acme told (Grace once more, for this
    // breach), nobody of Globex; the missed deadline is recorded.
    let late = settings
        .declare_breach(authed(
            declare(vec![], vec![tenant.to_string()], 80),
            &operator,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(late.notifications_queued, 4);
    assert!(!late.declared_within_deadline);
    for (to, count) in [
        ("ada@acme.example", 2),
        ("bob@acme.example", 2),
        ("grace@acme.example", 2),
        ("carol@acme.example", 1),
    ] {
        await_mails(&server, to, BREACH_SUBJECT, count).await;
    }
    // Redelivery of nothing: the counts hold once everything was delivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        mails_to(&server, "grace@acme.example", BREACH_SUBJECT).len(),
        2
    );
    assert!(mails_to(&server, &dan.email, BREACH_SUBJECT).is_empty());

    let events = crate::common::audit_events(&server, Service::Dsar, &admin).await;
    let declared_events = events
        .iter()
        .filter(|e| e.action == "breach.declared")
        .count();
    assert_eq!(declared_events, 2, "{events:?}");
    server.stop().await;
}

/// chromedriver on a free port, killed when dropped.
struct Chromedriver {
    child: std::process::Child,
    url: String,
}

impl Chromedriver {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; `make test` installs it)");
        let driver = Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        driver
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The link of a mail file, opened in headless Chromium as a person would: the page
/// asks, the button unsubscribes, no login anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p13_the_unsubscribe_link_of_a_mail_file_works_in_a_real_browser() {
    let server = TestServer::start(Backend::Embedded).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let ada = server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    let ada_token = server.token(&ada.id, Some(tenant), &[Role::Member]);
    let mut settings = Settings::new(server.channel().await);
    set_preferences(&mut settings, &ada_token, true, false).await;
    publish(
        &server,
        &notification(tenant, &ada.id, "product_news", false),
    )
    .await;
    let mail = await_mails(&server, "ada@acme.example", "Mindmesh product news", 1)
        .await
        .remove(0);
    let url = unsubscribe_link(&mail);

    let driver = Chromedriver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let mut capabilities = fantoccini::wd::Capabilities::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }),
    );
    let browser =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .expect("a Chromium session");
    browser.goto(&url).await.unwrap();
    let button = browser
        .wait()
        .for_element(fantoccini::Locator::Id("unsubscribe"))
        .await
        .unwrap();
    assert!(
        marketing(&mut settings, &ada_token).await,
        "opening the page changes nothing"
    );
    button.click().await.unwrap();
    let done = browser
        .wait()
        .for_element(fantoccini::Locator::Id("done"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(done.contains("no longer receive product news"), "{done}");
    browser.close().await.unwrap();
    drop(driver);
    assert!(!marketing(&mut settings, &ada_token).await);
    server.stop().await;
}

both_modes!(
    p13_a_marketing_mail_unsubscribes_with_one_post_without_login_and_administrative_mail_still_goes_out,
    p15_a_declared_breach_notifies_every_affected_person_and_admin_once_each_and_tracks_the_72_hour_deadline,
);
