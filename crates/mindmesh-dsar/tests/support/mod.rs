//! What the dsar crate's tests share: a mailer that keeps every mail, to read the
//! verification codes back.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Mutex;

use mindmesh_dsar::mail::{Mail, Mailer};

/// Keeps every mail sent.
#[derive(Default)]
pub struct Outbox(pub Mutex<Vec<Mail>>);

#[async_trait::async_trait]
impl Mailer for Outbox {
    async fn send(&self, mail: &Mail) -> mindmesh_kit::Result<()> {
        self.0.lock().unwrap().push(mail.clone());
        Ok(())
    }
}

impl Outbox {
    /// The code in the last mail sent to `to`.
    pub fn code_for(&self, to: &str) -> String {
        let mails = self.0.lock().unwrap();
        let mail = mails.iter().rev().find(|m| m.to == to).expect("a mail");
        mail.body
            .lines()
            .map(str::trim)
            .find(|l| l.len() == 8 && l.chars().all(|c| c.is_ascii_digit()))
            .expect("a code in the mail")
            .to_owned()
    }
}
