//! Sending mail. The service renders plain-text mails ([`Mail`]) as RFC 5322 messages
//! with `lettre`'s builder and hands them to a [`Mailer`]:
//!
//! - [`Mailbox`] (embedded mode and tests) writes each as an `.eml` file into
//!   `dsar.mailbox_dir`, so a person — or a test, or a mail client, or a browser opening
//!   its unsubscribe link — reads exactly what would have been sent;
//! - [`Smtp`] (distributed mode, `[dsar.smtp]`) sends it to the configured relay over
//!   implicit TLS, STARTTLS or, for a relay on loopback, plaintext.
//!
//! A mail's `Message-ID` is its notification's id: a mail written twice overwrites the
//! same file, and a relay or a recipient's client can tell a resend from a new mail.

use std::path::PathBuf;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox as Address, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use mindmesh_kit::config::{SmtpConfig, SmtpSecurity};
use mindmesh_kit::{Error, Result};

/// A plain-text mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    /// Unique id, used as the `Message-ID` (and the `.eml` file's name).
    pub id: String,
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The body, plain text.
    pub body: String,
    /// Marketing mail only: the signed one-click unsubscribe link (RFC 2369, RFC 8058).
    pub unsubscribe_url: Option<String>,
}

impl Mail {
    /// A mail with a fresh id and no unsubscribe link.
    pub fn new(to: impl Into<String>, subject: impl Into<String>, body: impl Into<String>) -> Self {
        Mail {
            id: uuid::Uuid::now_v7().to_string(),
            to: to.into(),
            subject: subject.into(),
            body: body.into(),
            unsubscribe_url: None,
        }
    }
}

/// Where mails go.
#[async_trait::async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Sends `mail` (at least once).
    async fn send(&self, mail: &Mail) -> Result<()>;
}

const LIST_UNSUBSCRIBE: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe");
const LIST_UNSUBSCRIBE_POST: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe-Post");

/// `mail` from `from` as an RFC 5322 message dated `date`. Header values are encoded by
/// `lettre` (a line break in a subject cannot inject a header); an address that does
/// not parse is refused, naming the field.
pub fn message(mail: &Mail, from: &str, date: std::time::SystemTime) -> Result<Message> {
    let from: Address = from
        .parse()
        .map_err(|e| Error::Config(format!("dsar.mail_from is not a mail address: {e}")))?;
    let to: Address = mail
        .to
        .parse()
        .map_err(|_| Error::Internal("a mail's recipient is not a mail address".into()))?;
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(mail.subject.clone())
        .date(date)
        .message_id(Some(format!("<{}@mindmesh>", mail.id)))
        .header(ContentType::TEXT_PLAIN);
    if let Some(url) = &mail.unsubscribe_url {
        if url.chars().any(|c| c.is_whitespace() || c == '>') {
            return Err(Error::Internal(
                "an unsubscribe link with a space or '>'".into(),
            ));
        }
        builder = builder
            .raw_header(HeaderValue::new(LIST_UNSUBSCRIBE, format!("<{url}>")))
            .raw_header(HeaderValue::new(
                LIST_UNSUBSCRIBE_POST,
                "List-Unsubscribe=One-Click".to_owned(),
            ));
    }
    builder
        .body(mail.body.clone())
        .map_err(|e| Error::Internal(format!("a mail could not be built: {e}")))
}

/// Writes every mail as an `.eml` file into a directory.
pub struct Mailbox {
    dir: PathBuf,
    from: String,
}

impl Mailbox {
    /// A mailbox writing into `dir` (created if missing), mails sent from `from`.
    pub fn new(dir: PathBuf, from: String) -> Self {
        Mailbox { dir, from }
    }
}

#[async_trait::async_trait]
impl Mailer for Mailbox {
    async fn send(&self, mail: &Mail) -> Result<()> {
        let text = message(mail, &self.from, std::time::SystemTime::now())?.formatted();
        tokio::fs::create_dir_all(&self.dir).await.map_err(|e| {
            Error::Config(format!(
                "dsar.mailbox_dir {} cannot be created: {e}",
                self.dir.display()
            ))
        })?;
        // Written under a temporary name, then renamed: a reader never sees half a mail.
        let path = self.dir.join(format!("{}.eml", mail.id));
        let partial = self.dir.join(format!(".{}.eml.partial", mail.id));
        tokio::fs::write(&partial, text)
            .await
            .map_err(|e| Error::Internal(format!("cannot write {}: {e}", partial.display())))?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))?;
        tracing::info!(message_id = %mail.id, "mail written to the mailbox");
        Ok(())
    }
}

/// Sends every mail to an SMTP relay.
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: String,
}

impl Smtp {
    /// A sender through the relay `config` names, mails sent from `from`.
    pub fn new(config: &SmtpConfig, from: String) -> Result<Self> {
        let builder = match config.security {
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host),
            SmtpSecurity::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host)
            }
            SmtpSecurity::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                &config.host,
            )),
        }
        .map_err(|e| Error::Config(format!("dsar.smtp.host {}: {e}", config.host)))?;
        let mut builder = builder.port(config.port);
        if let Some(username) = &config.username {
            let password = config.password()?;
            builder = builder.credentials(Credentials::new(username.clone(), password));
        }
        Ok(Smtp {
            transport: builder.build(),
            from,
        })
    }
}

#[async_trait::async_trait]
impl Mailer for Smtp {
    async fn send(&self, mail: &Mail) -> Result<()> {
        let message = message(mail, &self.from, std::time::SystemTime::now())?;
        // The relay's answer can quote the envelope: it is not logged or returned.
        self.transport.send(message).await.map_err(|e| {
            let kind = if e.is_permanent() {
                "refused it permanently"
            } else if e.is_transient() {
                "refused it for now"
            } else {
                "could not be reached"
            };
            Error::Unavailable(format!("the SMTP relay {kind}"))
        })?;
        tracing::info!(message_id = %mail.id, "mail handed to the SMTP relay");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formatted(mail: &Mail) -> String {
        let message = message(mail, "Privacy <p@x.example>", std::time::SystemTime::now());
        String::from_utf8(message.unwrap().formatted()).unwrap()
    }

    #[test]
    fn mails_render_as_rfc_5322_and_a_subject_cannot_inject_a_header() {
        let mail = Mail::new("ada@acme.example", "Confirm", "line one\nline two");
        let text = formatted(&mail);
        assert!(text.contains("From: Privacy <p@x.example>\r\n"), "{text}");
        assert!(text.contains("To: ada@acme.example\r\n"), "{text}");
        assert!(text.contains(&format!("Message-ID: <{}@mindmesh>\r\n", mail.id)));
        assert!(text.contains("line one\r\nline two"), "{text}");
        assert!(!text.contains("List-Unsubscribe"), "{text}");
        let bad = Mail::new("ada@acme.example", "Hi\r\nBcc: eve@x.example", "body");
        let text = formatted(&bad);
        assert!(!text.contains("\r\nBcc:"), "{text}");
    }

    #[test]
    fn marketing_mail_carries_a_one_click_unsubscribe_header() {
        let mut mail = Mail::new("ada@acme.example", "News", "hello");
        mail.unsubscribe_url = Some("http://127.0.0.1:8480/unsubscribe?token=abc.def".into());
        let text = formatted(&mail);
        assert!(
            text.contains(
                "List-Unsubscribe: <http://127.0.0.1:8480/unsubscribe?token=abc.def>\r\n"
            ),
            "{text}"
        );
        assert!(text.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
        mail.unsubscribe_url = Some("http://x/u?t=a> <mailto:eve@x".into());
        assert!(message(&mail, "p@x.example", std::time::SystemTime::now()).is_err());
    }
}
