//! Checks of what callers send that people will later read or follow: names and titles
//! (no character that hides, reorders or breaks text), MIME types, URLs, and times.
//! Every refusal is INVALID_ARGUMENT naming the field. Text that arrives from a source
//! tool rather than a caller is cleaned with [`clean_line`] instead, so that one odd
//! file name does not stop a sync.

use std::net::IpAddr;

use crate::error::{Error, Result};

/// True for characters that make a line of text say something other than it shows:
/// controls (NUL, line breaks, ESC…), bidirectional overrides, embeddings, isolates and
/// marks, zero-width and other invisible characters, line and paragraph separators,
/// interlinear annotations and tag characters. The zero-width joiner and non-joiner
/// are not among them: scripts (Persian, Indic) and emoji sequences need them.
pub fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'                      // Arabic letter mark
            | '\u{115F}' | '\u{1160}'       // Hangul fillers
            | '\u{180E}'                    // Mongolian vowel separator
            | '\u{200B}'                    // zero-width space
            | '\u{200E}' | '\u{200F}'       // left-to-right / right-to-left marks
            | '\u{2028}' | '\u{2029}'       // line and paragraph separators
            | '\u{202A}'..='\u{202E}'       // embeddings and overrides
            | '\u{2060}'..='\u{2064}'       // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}'       // isolates
            | '\u{3164}' | '\u{FFA0}'       // Hangul fillers
            | '\u{FEFF}'                    // zero-width no-break space (BOM)
            | '\u{FFF9}'..='\u{FFFB}'       // interlinear annotations
            | '\u{E0000}'..='\u{E007F}' // tag characters
        )
}

/// `value` trimmed, checked as one line of text a person reads: at most `max_chars`
/// characters, none of them [deceptive](is_deceptive), and not empty if `required`.
pub fn line(field: &'static str, value: &str, max_chars: usize, required: bool) -> Result<String> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.chars().count() > max_chars {
        return Err(Error::invalid(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if value.chars().any(is_deceptive) {
        return Err(Error::invalid(
            field,
            "must not contain control, bidirectional-override, zero-width or tag characters",
        ));
    }
    Ok(value.to_owned())
}

/// A line of text from a source tool made safe to show: controls and line breaks become
/// spaces, other [deceptive](is_deceptive) characters are dropped, and the ends trimmed.
pub fn clean_line(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .filter_map(|c| match c {
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => Some(' '),
            c if is_deceptive(c) => None,
            c => Some(c),
        })
        .collect();
    cleaned.trim().to_owned()
}

/// Longest MIME type, with its parameters.
pub const MAX_MIME_TYPE: usize = 255;

/// Checks a MIME type: `type/subtype` of RFC 6838's restricted names, optionally
/// followed by `;` parameters of printable ASCII (`text/markdown; charset=utf-8`).
pub fn mime_type(field: &'static str, value: &str) -> Result<()> {
    let bad = || {
        Err(Error::invalid(
            field,
            "must be a MIME type such as text/plain (type/subtype, optional ; parameters)",
        ))
    };
    if value.len() > MAX_MIME_TYPE {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_MIME_TYPE} bytes"),
        ));
    }
    let (essence, parameters) = value.split_once(';').unwrap_or((value, ""));
    let Some((kind, subtype)) = essence.trim_end_matches(' ').split_once('/') else {
        return bad();
    };
    let restricted = |name: &str| {
        name.len() <= 127
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    };
    let printable = parameters.chars().all(|c| (' '..='~').contains(&c));
    if !(restricted(kind) && restricted(subtype) && printable) {
        return bad();
    }
    Ok(())
}

/// Which URLs a field takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlRule {
    /// A link to a source tool's page: `https` or `http`, any host.
    SourceLink,
    /// Something a client fetches by itself (a profile picture): `https` only, and a
    /// public host — no loopback, private, link-local or unspecified address, no
    /// `localhost` — so that a URL cannot aim clients at their own network.
    PublicHttps,
}

/// Checks an absolute URL by `rule`: no whitespace or control characters anywhere (the
/// URL parser would silently drop CR, LF and tabs), no credentials, a host.
pub fn url(field: &'static str, value: &str, rule: UrlRule) -> Result<url::Url> {
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            field,
            "must not contain spaces, line breaks or control characters",
        ));
    }
    let url = url::Url::parse(value).map_err(|_| Error::invalid(field, "is not a URL"))?;
    let scheme_ok = match rule {
        UrlRule::SourceLink => matches!(url.scheme(), "https" | "http"),
        UrlRule::PublicHttps => url.scheme() == "https",
    };
    if !scheme_ok {
        return Err(Error::invalid(
            field,
            match rule {
                UrlRule::SourceLink => "must be an https:// or http:// link",
                UrlRule::PublicHttps => "must use https",
            },
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::invalid(field, "must not carry credentials"));
    }
    let Some(host) = url.host() else {
        return Err(Error::invalid(field, "must name a host"));
    };
    if rule == UrlRule::PublicHttps {
        let public = match host {
            url::Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                !(name == "localhost" || name.ends_with(".localhost") || name.is_empty())
            }
            url::Host::Ipv4(ip) => is_public(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => is_public(IpAddr::V6(ip)),
        };
        if !public {
            return Err(Error::invalid(
                field,
                "must name a public host (not localhost, a loopback, private or link-local address)",
            ));
        }
    }
    Ok(url)
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1])) // CGNAT
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80) // link-local
        }
    }
}

/// The earliest time a caller may state for something that happened (activity, a
/// modification), in seconds since the epoch: 2000-01-01T00:00:00Z. Earlier ones are
/// mistakes (year 0, the epoch itself).
pub const EARLIEST_SECS: i64 = 946_684_800;

/// Checks that `t` is not before [`EARLIEST_SECS`].
pub fn not_too_early(field: &'static str, t: chrono::DateTime<chrono::Utc>) -> Result<()> {
    if t.timestamp() < EARLIEST_SECS {
        return Err(Error::invalid(field, "must not be before 2000-01-01"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn lines() {
        assert_eq!(line("name", "  Ada ", 10, true).unwrap(), "Ada");
        assert!(line("name", " ", 10, true).is_err());
        assert_eq!(line("name", "", 10, false).unwrap(), "");
        assert!(
            line("name", &"é".repeat(10), 10, true).is_ok(),
            "characters, not bytes"
        );
        assert!(line("name", &"é".repeat(11), 10, true).is_err());
        for bad in [
            "a\u{0}b",
            "a\nb",
            "a\u{1b}b",
            "a\u{202e}b",
            "a\u{200b}b",
            "a\u{e0041}b",
        ] {
            let err = line("name", bad, 100, true).unwrap_err().to_string();
            assert!(err.contains("name"), "{bad:?}: {err}");
        }
        assert!(line("name", "\u{645}\u{200c}\u{6cc} 👩\u{200d}💻", 100, true).is_ok());
        assert_eq!(clean_line(" a\nb\u{202e}c\u{200b}d "), "a bcd");
    }

    #[test]
    fn mime_types() {
        for ok in [
            "text/plain",
            "application/vnd.google-apps.document",
            "text/markdown; charset=utf-8",
            "image/svg+xml",
        ] {
            assert!(mime_type("mime_type", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "text",
            "text/",
            "/plain",
            "text plain",
            "text/plain\n",
            "<script>",
            "text/pl\u{0}ain",
            "text/plain; a=\u{1b}",
        ] {
            assert!(mime_type("mime_type", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls() {
        assert!(url("u", "https://cdn.example.com/a.png", UrlRule::PublicHttps).is_ok());
        assert!(url("u", "http://intranet/page", UrlRule::SourceLink).is_ok());
        assert!(url("u", "https://10.0.0.1/x", UrlRule::SourceLink).is_ok());
        for bad in [
            "javascript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "https://a.example/\r\nx",
            "https://u:p@a.example/",
        ] {
            assert!(url("u", bad, UrlRule::SourceLink).is_err(), "{bad}");
        }
        for bad in [
            "http://cdn.example.com/a.png",
            "https://127.0.0.1/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[fe80::1]/",
            "https://[fd00::1]/",
            "https://169.254.169.254/",
            "https://172.16.0.1/",
            "https://100.64.0.1/",
            "https://LOCALHOST./",
            "https://0.0.0.0/",
        ] {
            let err = url("picture_url", bad, UrlRule::PublicHttps).unwrap_err();
            assert!(err.to_string().contains("picture_url"), "{bad}");
        }
    }

    #[test]
    fn times() {
        assert!(not_too_early("at", chrono::Utc::now()).is_ok());
        assert!(not_too_early("at", chrono::DateTime::from_timestamp(0, 0).unwrap()).is_err());
        assert!(
            not_too_early(
                "at",
                chrono::DateTime::from_timestamp(-62_167_219_200, 0).unwrap()
            )
            .is_err()
        );
    }
}
