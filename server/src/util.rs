//! Small helpers with no better home: time, randomness, hashing.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The current time as RFC 3339 (UTC, with fractional seconds).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Formats unix seconds as RFC 3339.
pub fn unix_to_rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// `n` random bytes from the OS generator, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// `n` characters drawn uniformly from `alphabet`.
pub fn random_chars(alphabet: &[u8], n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n)
        .filter_map(|_| {
            alphabet
                .get(rng.random_range(0..alphabet.len()))
                .map(|&b| b as char)
        })
        .collect()
}

/// Hex SHA-256, for storing high-entropy secrets (API keys, refresh tokens) hashed.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A URL as logs and error messages may show it: scheme, host, port and path. A user name or
/// password is dropped, a query is shown as `?…` and a fragment is dropped, since any of them
/// may carry a credential (`https://user:pw@idp`, `?sig=...`, `?access_token=...`). Text that
/// does not parse as a URL is not shown at all.
pub fn url_for_logs(text: &str) -> String {
    let Ok(u) = url::Url::parse(text) else {
        return "<not a URL>".into();
    };
    let query = if u.query().is_some() { "?…" } else { "" };
    format!("{}{}{query}", url_origin_of(&u), u.path())
}

/// Only where a URL goes: `scheme://host[:port]`, with `/…` when a path was left out. For URLs
/// whose path is the secret: a Slack or Teams incoming webhook is a bearer credential in full.
pub fn url_origin(text: &str) -> String {
    let Ok(u) = url::Url::parse(text) else {
        return "<not a URL>".into();
    };
    let rest = if u.path().trim_start_matches('/').is_empty() && u.query().is_none() {
        ""
    } else {
        "/…"
    };
    format!("{}{rest}", url_origin_of(&u))
}

/// `text` with every `http://` or `https://` URL in it cut down to [`url_origin`]: for stored
/// text written before URLs were kept out of it (delivery errors, webhook names).
pub fn scrub_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["https://", "http://"]
        .iter()
        .filter_map(|scheme| rest.find(scheme))
        .min()
    {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let end = from
            .find(|c: char| {
                c.is_whitespace() || matches!(c, ')' | '(' | '"' | '\'' | '<' | '>' | ',')
            })
            .unwrap_or(from.len());
        let (url, after) = from.split_at(end);
        out.push_str(&url_origin(url));
        rest = after;
    }
    out.push_str(rest);
    out
}

fn url_origin_of(u: &url::Url) -> String {
    let host = u.host_str().unwrap_or_default();
    match u.port() {
        Some(p) => format!("{}://{host}:{p}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn credentials_in_urls_never_reach_logs() {
        let cases = [
            (
                "https://alice:s3cret@idp.example.com/realms/x?client_secret=abc#frag",
                "https://idp.example.com/realms/x?…",
                "https://idp.example.com/…",
            ),
            (
                "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX",
                "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX",
                "https://hooks.slack.com/…",
            ),
            (
                "http://127.0.0.1:9000/",
                "http://127.0.0.1:9000/",
                "http://127.0.0.1:9000",
            ),
            ("not a url s3cret", "<not a URL>", "<not a URL>"),
        ];
        for (input, logs, origin) in cases {
            assert_eq!(url_for_logs(input), logs, "{input}");
            assert_eq!(url_origin(input), origin, "{input}");
            assert!(
                !url_origin(input).contains("s3cret") && !url_for_logs(input).contains("s3cret")
            );
        }
    }

    #[test]
    fn urls_inside_stored_text_are_cut_to_their_origin() {
        let old = "request failed: error sending request for url (https://hooks.slack.com/services/T0/B0/s3cret): connection refused; then http://127.0.0.1:9/x?token=s3cret.";
        let scrubbed = scrub_urls(old);
        assert!(!scrubbed.contains("s3cret"), "{scrubbed}");
        assert!(
            scrubbed.contains("(https://hooks.slack.com/…)"),
            "{scrubbed}"
        );
        assert_eq!(scrub_urls("no urls here"), "no urls here");
    }
}
