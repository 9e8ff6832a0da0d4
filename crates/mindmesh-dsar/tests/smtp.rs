//! The SMTP mailer against a small fake relay that speaks RFC 5321 (EHLO, MAIL, RCPT,
//! DATA, QUIT): what it hands over, and a relay's refusal as a retryable error that says
//! nothing of the mail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use mindmesh_dsar::mail::{Mail, Mailer, Smtp};
use mindmesh_kit::config::{SmtpConfig, SmtpSecurity};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// What the relay received: the envelope and the message of each mail.
#[derive(Default)]
struct Received {
    from: Vec<String>,
    to: Vec<String>,
    messages: Vec<String>,
}

/// A relay on 127.0.0.1 answering `rcpt_reply` to RCPT (e.g. "250 OK", "451 try later").
async fn relay(rcpt_reply: &'static str) -> (u16, Arc<Mutex<Received>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Received::default()));
    let shared = received.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let received = shared.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 fake.relay ESMTP\r\n").await.unwrap();
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(message) = data.as_mut() {
                        if line == "." {
                            received.lock().unwrap().messages.push(data.take().unwrap());
                            write.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            message.push_str(&line);
                            message.push_str("\r\n");
                        }
                        continue;
                    }
                    let upper = line.to_ascii_uppercase();
                    let reply: &str = if upper.starts_with("EHLO") {
                        "250-fake.relay\r\n250 8BITMIME"
                    } else if let Some(from) = line.strip_prefix("MAIL FROM:") {
                        received.lock().unwrap().from.push(from.to_owned());
                        "250 OK"
                    } else if let Some(to) = line.strip_prefix("RCPT TO:") {
                        if rcpt_reply.starts_with('2') {
                            received.lock().unwrap().to.push(to.to_owned());
                        }
                        rcpt_reply
                    } else if upper == "DATA" {
                        data = Some(String::new());
                        "354 go ahead"
                    } else if upper == "QUIT" {
                        write.write_all(b"221 bye\r\n").await.unwrap();
                        return;
                    } else if upper == "RSET" || upper == "NOOP" {
                        "250 OK"
                    } else {
                        "502 not implemented"
                    };
                    write
                        .write_all(format!("{reply}\r\n").as_bytes())
                        .await
                        .unwrap();
                }
            });
        }
    });
    (port, received)
}

fn config(port: u16) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::None,
        username: None,
        password_file: None,
    }
}

#[tokio::test]
async fn a_mail_reaches_the_relay_with_its_envelope_headers_and_body() {
    let (port, received) = relay("250 OK").await;
    let smtp = Smtp::new(&config(port), "Acme Privacy <privacy@acme.example>".into()).unwrap();
    let mut mail = Mail::new(
        "ada@acme.example",
        "Mindmesh product news",
        "Search got faster.\n",
    );
    mail.unsubscribe_url = Some("https://privacy.acme.example/unsubscribe?token=abc".into());
    smtp.send(&mail).await.unwrap();

    let received = received.lock().unwrap();
    assert_eq!(received.from, vec!["<privacy@acme.example>"]);
    assert_eq!(received.to, vec!["<ada@acme.example>"]);
    let message = &received.messages[0];
    assert!(
        message.contains(&format!("Message-ID: <{}@mindmesh>", mail.id)),
        "{message}"
    );
    assert!(
        message.contains("List-Unsubscribe: <https://privacy.acme.example/unsubscribe?token=abc>"),
        "{message}"
    );
    assert!(message.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
    assert!(message.contains("Search got faster."), "{message}");
}

#[tokio::test]
async fn a_relay_that_refuses_for_now_is_a_retryable_error_that_names_no_address() {
    let (port, received) = relay("451 4.3.0 try again later").await;
    let smtp = Smtp::new(&config(port), "privacy@acme.example".into()).unwrap();
    let mail = Mail::new("ada@acme.example", "Your data request", "done\n");
    let error = smtp.send(&mail).await.unwrap_err();
    assert!(
        matches!(error, mindmesh_kit::Error::Unavailable(_)),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("for now"), "{text}");
    assert!(!text.contains("ada@"), "{text}");
    assert!(received.lock().unwrap().messages.is_empty());
}

#[tokio::test]
async fn a_login_without_a_password_file_is_refused_naming_the_setting() {
    let mut config = config(25);
    config.username = Some("mindmesh".into());
    let Err(error) = Smtp::new(&config, "privacy@acme.example".into()) else {
        panic!("a login without a password was accepted");
    };
    assert!(
        error.to_string().contains("dsar.smtp.password_file"),
        "{error}"
    );
}
