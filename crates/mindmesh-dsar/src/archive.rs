//! The archive an access or portability request yields (GDPR Art. 15, 20): a zip with
//! one JSON file per service (every record it holds about the person, decrypted), a
//! human-readable summary of what Art. 15 asks to be told (purposes, categories,
//! recipients, retention, source), and a manifest with each file's SHA-256.

use std::io::Write as _;

use chrono::{DateTime, Utc};
use mindmesh_kit::{Error, Result, Service};
use serde_json::json;
use zip::write::SimpleFileOptions;

use crate::execution::ExportedRecord;

/// What Art. 15 asks to be told, per service: purposes, categories, recipients,
/// retention, source.
fn about(service: Service) -> [&'static str; 5] {
    match service {
        Service::Ingest => [
            "to read the tools your organisation connected, as the account named in a connector's settings",
            "your email address, where an administrator entered it in a connector's settings",
            "nobody outside Mindmesh",
            "until the integration is disconnected",
            "your organisation's administrator",
        ],
        Service::Permissions => [
            "to show you exactly what the source tools let you see",
            "your account (name, email, picture), your identities in the connected tools, your group memberships",
            "nobody outside Mindmesh",
            "while your account exists; identities until their tool is disconnected",
            "you, your organisation's administrator, and the connected tools",
        ],
        Service::Storage => [
            "to keep the documents you wrote in Mindmesh",
            "the documents you wrote (titles and content)",
            "nobody outside Mindmesh; the analytics processor, where your organisation allows it, receives only pseudonymous usage events (a search run, a document opened) without names, titles or content",
            "until you or your organisation delete them; archived ones 30 days unless policy says otherwise",
            "you",
        ],
        Service::Retention => [
            "to keep your organisation from expiring for inactivity, and to prove deletions",
            "when your account was last active; the deletions made about you (by a keyed hash of your email)",
            "nobody outside Mindmesh",
            "activity while your account exists; deletion records indefinitely (they hold no personal data)",
            "your use of Mindmesh",
        ],
        Service::Dsar => [
            "to handle your data protection requests, and to send you the mails you are owed or asked for",
            "your requests (their kind, dates and status), the consents you gave or withdrew, your mail preferences, the mails sent to you (what and when)",
            "the mail provider that delivers Mindmesh's mails to you",
            "requests as long as needed to show they were handled; the rest while your account exists",
            "you, your organisation's administrator, or the person who filed a request for you",
        ],
    }
}

/// Builds the archive of request `request_id` about `subject`, from what each service
/// exported, at `now`.
pub fn build(
    request_id: &str,
    subject: &str,
    exported: &[(Service, Vec<ExportedRecord>)],
    now: DateTime<Utc>,
) -> Result<Vec<u8>> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut summary = format!(
        "Your data in Mindmesh\n=====================\n\nRequest {request_id}, for {subject}, \
         assembled {}.\nEach service's records are in <service>.json; manifest.json lists \
         every file's SHA-256.\n",
        now.to_rfc3339()
    );
    for (service, records) in exported {
        let body = json!({
            "service": service.as_str(),
            "records": records.iter().map(|r| json!({
                "kind": r.kind,
                "id": r.id,
                "updated_at": r.updated_at.to_rfc3339(),
                "data": r.json,
            })).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec_pretty(&body).map_err(|e| Error::Internal(e.to_string()))?;
        files.push((format!("{}.json", service.as_str()), bytes));
        let [purpose, categories, recipients, retention, source] = about(*service);
        summary.push_str(&format!(
            "\n{service} ({} records)\n  purpose: {purpose}\n  categories: {categories}\n  \
             recipients: {recipients}\n  kept: {retention}\n  source: {source}\n",
            records.len()
        ));
    }
    files.push(("summary.txt".to_owned(), summary.into_bytes()));
    let manifest = json!({
        "request_id": request_id,
        "created_at": now.to_rfc3339(),
        "files": files.iter().map(|(name, bytes)| json!({
            "name": name,
            "sha256": mindmesh_kit::crypto::hex(&mindmesh_kit::crypto::sha256(bytes)),
            "bytes": bytes.len(),
        })).collect::<Vec<_>>(),
    });
    files.push((
        "manifest.json".to_owned(),
        serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?,
    ));
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let failed = |e: &dyn std::fmt::Display| Error::Internal(format!("building the archive: {e}"));
    for (name, bytes) in &files {
        zip.start_file(name.as_str(), options)
            .map_err(|e| failed(&e))?;
        zip.write_all(bytes).map_err(|e| failed(&e))?;
    }
    Ok(zip.finish().map_err(|e| failed(&e))?.into_inner())
}
