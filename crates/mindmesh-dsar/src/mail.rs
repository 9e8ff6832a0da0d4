//! Sending mail. The service renders plain-text mails ([`Mail`]) and hands them to a
//! [`Mailer`]: in embedded mode and tests the [`Mailbox`], which writes each as an
//! `.eml` file (RFC 5322) into `dsar.mailbox_dir`, so a person — or a test, or a mail
//! client — reads exactly what would have been sent. (SMTP for distributed mode comes
//! with the notifier, issue 14.)

use std::path::PathBuf;

use mindmesh_kit::{Error, Result};

/// A plain-text mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The body, plain text.
    pub body: String,
}

/// Where mails go.
#[async_trait::async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Sends `mail` (at least once).
    async fn send(&self, mail: &Mail) -> Result<()>;
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

/// `value` as a header value: no line breaks (no header injection).
fn header(name: &str, value: &str) -> Result<String> {
    if value.chars().any(|c| c == '\r' || c == '\n') {
        return Err(Error::Internal(format!(
            "a mail's {name} header would hold a line break"
        )));
    }
    Ok(format!("{name}: {value}\r\n"))
}

/// `mail` from `from` as an RFC 5322 message with id `id`.
pub fn render(
    mail: &Mail,
    from: &str,
    id: &str,
    date: chrono::DateTime<chrono::Utc>,
) -> Result<String> {
    let mut out = String::new();
    out.push_str(&header("From", from)?);
    out.push_str(&header("To", &mail.to)?);
    out.push_str(&header("Subject", &mail.subject)?);
    out.push_str(&header("Date", &date.to_rfc2822())?);
    out.push_str(&header("Message-ID", &format!("<{id}@mindmesh>"))?);
    out.push_str("MIME-Version: 1.0\r\n");
    out.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    out.push_str("Content-Transfer-Encoding: 8bit\r\n\r\n");
    out.push_str(&mail.body.replace("\r\n", "\n").replace('\n', "\r\n"));
    if !out.ends_with("\r\n") {
        out.push_str("\r\n");
    }
    Ok(out)
}

#[async_trait::async_trait]
impl Mailer for Mailbox {
    async fn send(&self, mail: &Mail) -> Result<()> {
        let id = uuid::Uuid::now_v7();
        let text = render(mail, &self.from, &id.to_string(), chrono::Utc::now())?;
        tokio::fs::create_dir_all(&self.dir).await.map_err(|e| {
            Error::Config(format!(
                "dsar.mailbox_dir {} cannot be created: {e}",
                self.dir.display()
            ))
        })?;
        // Written under a temporary name, then renamed: a reader never sees half a mail.
        let path = self.dir.join(format!("{id}.eml"));
        let partial = self.dir.join(format!(".{id}.eml.partial"));
        tokio::fs::write(&partial, text)
            .await
            .map_err(|e| Error::Internal(format!("cannot write {}: {e}", partial.display())))?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))?;
        tracing::info!(message_id = %id, "mail written to the mailbox");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mails_render_as_rfc_5322_and_refuse_header_injection() {
        let mail = Mail {
            to: "ada@acme.example".into(),
            subject: "Confirm".into(),
            body: "line one\nline two".into(),
        };
        let text = render(&mail, "Privacy <p@x.example>", "m1", chrono::Utc::now()).unwrap();
        assert!(text.starts_with("From: Privacy <p@x.example>\r\nTo: ada@acme.example\r\n"));
        assert!(text.contains("\r\n\r\nline one\r\nline two\r\n"));
        let bad = Mail {
            subject: "Hi\r\nBcc: eve@x.example".into(),
            ..mail
        };
        assert!(render(&bad, "p@x.example", "m2", chrono::Utc::now()).is_err());
    }
}
