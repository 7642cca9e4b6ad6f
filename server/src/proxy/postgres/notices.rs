//! Masking the target's messages that carry text other than result rows: ErrorResponse and
//! NoticeResponse fields, NotificationResponse channels and payloads, ParameterStatus values.
//!
//! - Every text field of an error or notice goes through the detectors, except those that are
//!   the server's own vocabulary: severity (`S`, `V`), SQLSTATE (`C`), source file, line and
//!   routine (`F`, `L`, `R`).
//! - When column rules are active, values the server quotes back are replaced, because a
//!   column rule hides values no detector recognises (a name): a data exception (class 22:
//!   `invalid input syntax for type integer: "Ada"`) has everything from the message's first
//!   `"` to its last replaced (the server does not escape a `"` inside the value), and its
//!   detail, context, hint and internal query withheld whole; an integrity violation (class 23) has the values of its
//!   detail replaced (`Key (email)=(***) already exists.`, `Failing row contains (***).`); an
//!   "undefined object" error without a statement position (classes 42 and 3F: a value cast to
//!   `regclass`, `regproc`, `regrole`, ... at run time, `relation "Ada" does not exist`) has its
//!   quoted names replaced. An error about the statement's own text carries a position and
//!   keeps its names.
//! - Notifications and parameter values go through the detectors. What server-side code
//!   computes (`RAISE NOTICE '%', name`, `pg_notify('c', name)`) is only masked as far as the
//!   detectors recognise it: a column rule cannot follow a value into such text.

use bytes::{BufMut, BytesMut};

use super::codec;
use crate::policy::masking::{MaskCounts, Masker};

/// What replaces a value quoted back in an error under column rules.
const QUOTED_VALUE: &[u8] = b"***";

/// What replaces a data exception's detail, context, hint and internal query under column
/// rules.
const WITHHELD: &[u8] = b"(withheld by hoop: it may quote a value under a column rule)";

/// Masks an ErrorResponse (`E`) or NoticeResponse (`N`) into `out`. Returns false (and writes
/// nothing) when nothing changed: the caller then forwards the message as it came.
pub fn mask_error(
    m: &Masker,
    msg: &[u8],
    out: &mut BytesMut,
    counts: &mut MaskCounts,
    scratch: &mut Vec<u8>,
) -> bool {
    let fields = error_field_list(codec::body(msg));
    let code = fields
        .iter()
        .find(|(f, _)| *f == b'C')
        .map_or(&[][..], |(_, v)| v);
    let has_position = fields.iter().any(|(f, _)| *f == b'P');
    let rules = m.has_column_rules();
    let quoted = rules && quotes_values(code, has_position);
    let mut changed: Vec<Option<Vec<u8>>> = Vec::with_capacity(fields.len());
    for (field, value) in &fields {
        if matches!(field, b'S' | b'V' | b'C' | b'F' | b'L' | b'R') {
            changed.push(None);
            continue;
        }
        let mut current: Option<Vec<u8>> = None;
        if rules {
            let hidden = hide_values(code, *field, value, quoted);
            if hidden.as_deref().is_some_and(|h| h != *value) {
                counts.record_column();
                current = hidden;
            }
        }
        scratch.clear();
        let base = current.as_deref().unwrap_or(value);
        if m.mask_into(base, scratch, counts) {
            current = Some(scratch.clone());
        }
        changed.push(current);
    }
    if changed.iter().all(Option::is_none) {
        return false;
    }
    let start = out.len();
    out.put_u8(msg.first().copied().unwrap_or(b'E'));
    out.put_i32(0);
    for ((field, value), new) in fields.iter().zip(&changed) {
        out.put_u8(*field);
        put_cstr(out, new.as_deref().unwrap_or(value));
    }
    out.put_u8(0);
    patch_len(out, start);
    true
}

/// True when an error of this SQLSTATE quotes names that may be values (see the module doc).
fn quotes_values(code: &[u8], has_position: bool) -> bool {
    match code.get(..2) {
        Some(b"22") => true,
        Some(b"42" | b"3F") => !has_position,
        _ => false,
    }
}

/// The field with the values it quotes back replaced, when the rules say so. A data
/// exception's detail, context, hint and internal query are withheld whole: they quote the
/// offending value unquoted (`xmlparse`'s DETAIL, `JSON data, line 1: ...`) or in the server's
/// own words no pattern can follow.
fn hide_values(code: &[u8], field: u8, value: &[u8], quoted: bool) -> Option<Vec<u8>> {
    let class22 = code.starts_with(b"22");
    match field {
        b'D' if code.starts_with(b"23") => Some(hide_parenthesised(value)),
        b'D' | b'W' | b'H' | b'q' if quoted && class22 => Some(WITHHELD.to_vec()),
        b'M' | b'D' | b'W' | b'H' | b'q' if quoted => Some(hide_quoted(value, class22)),
        _ => None,
    }
}

/// Replaces everything from the first `"` to the last with `"***"` (the rest after an unclosed
/// one). One span, not pair by pair: the server does not escape a `"` inside the value it
/// quotes, so `"x" Ada "y"` is one value. For a data exception (`data_tail`), what follows
/// `: ` after the span is hidden too (`invalid byte sequence for encoding "UTF8": 0x41 0x64`).
fn hide_quoted(v: &[u8], data_tail: bool) -> Vec<u8> {
    let (Some(first), Some(last)) = (memchr::memchr(b'"', v), memchr::memrchr(b'"', v)) else {
        return v.to_vec();
    };
    let mut out = Vec::with_capacity(v.len());
    out.extend_from_slice(v.get(..first).unwrap_or(&[]));
    out.push(b'"');
    out.extend_from_slice(QUOTED_VALUE);
    if last == first {
        return out;
    }
    out.push(b'"');
    let tail = v.get(last + 1..).unwrap_or(&[]);
    match memchr::memmem::find(tail, b": ").filter(|_| data_tail) {
        Some(p) => {
            out.extend_from_slice(tail.get(..p + 2).unwrap_or(&[]));
            out.extend_from_slice(QUOTED_VALUE);
        }
        None => out.extend_from_slice(tail),
    }
    out
}

/// `Key (email)=(ada@example.com) already exists.` → `Key (email)=(***) already exists.`;
/// `Failing row contains (1, Ada).` → `Failing row contains (***).`: from the first value
/// list's opening parenthesis to the last closing one, since values may hold parentheses.
fn hide_parenthesised(v: &[u8]) -> Vec<u8> {
    let open = memchr::memmem::find(v, b")=(")
        .map(|p| p + 3)
        .or_else(|| memchr::memmem::find(v, b"contains (").map(|p| p + 10));
    let close = memchr::memrchr(b')', v);
    match (open, close) {
        (Some(o), Some(c)) if c >= o => {
            let mut out = v.get(..o).unwrap_or(&[]).to_vec();
            out.extend_from_slice(QUOTED_VALUE);
            out.extend_from_slice(v.get(c..).unwrap_or(&[]));
            out
        }
        _ => v.to_vec(),
    }
}

/// Masks a NotificationResponse (`A`): channel and payload through the detectors.
pub fn mask_notification(
    m: &Masker,
    msg: &[u8],
    out: &mut BytesMut,
    counts: &mut MaskCounts,
) -> bool {
    let body = codec::body(msg);
    let (Some(pid), Some(rest)) = (body.get(..4), body.get(4..)) else {
        return false;
    };
    let Some((channel, rest)) = codec::cstr(rest) else {
        return false;
    };
    let Some((payload, _)) = codec::cstr(rest) else {
        return false;
    };
    let (mut ch, mut pl) = (Vec::new(), Vec::new());
    let ch_changed = m.mask_into(channel, &mut ch, counts);
    let pl_changed = m.mask_into(payload, &mut pl, counts);
    if !ch_changed && !pl_changed {
        return false;
    }
    let start = out.len();
    out.put_u8(b'A');
    out.put_i32(0);
    out.put_slice(pid);
    put_cstr(out, if ch_changed { &ch } else { channel });
    put_cstr(out, if pl_changed { &pl } else { payload });
    patch_len(out, start);
    true
}

/// Masks a ParameterStatus (`S`) value through the detectors (a session can set
/// `application_name` to anything, and the server reports it back).
pub fn mask_parameter(m: &Masker, msg: &[u8], out: &mut BytesMut, counts: &mut MaskCounts) -> bool {
    let Some((name, rest)) = codec::cstr(codec::body(msg)) else {
        return false;
    };
    let Some((value, _)) = codec::cstr(rest) else {
        return false;
    };
    let mut v = Vec::new();
    if !m.mask_into(value, &mut v, counts) {
        return false;
    }
    let start = out.len();
    out.put_u8(b'S');
    out.put_i32(0);
    put_cstr(out, name);
    put_cstr(out, &v);
    patch_len(out, start);
    true
}

/// The (code, value) fields of an error or notice body.
fn error_field_list(mut rest: &[u8]) -> Vec<(u8, &[u8])> {
    let mut fields = Vec::new();
    while let Some((&field, r)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let Some((v, r2)) = codec::cstr(r) else { break };
        fields.push((field, v));
        rest = r2;
    }
    fields
}

fn put_cstr(out: &mut BytesMut, v: &[u8]) {
    out.extend(v.iter().copied().filter(|b| *b != 0));
    out.put_u8(0);
}

fn patch_len(out: &mut BytesMut, start: usize) {
    let len = (out.len() - start - 1) as i32;
    if let Some(slot) = out.get_mut(start + 1..start + 5) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::policy::masking::MaskingConfig;

    fn masker(columns: &[&str]) -> Masker {
        Masker::compile(&[MaskingConfig {
            name: "pii".into(),
            detectors: vec!["email".into(), "credit_card".into()],
            columns: columns.iter().map(|s| s.to_string()).collect(),
            replacement: None,
        }])
        .unwrap()
    }

    fn error(fields: &[(u8, &str)]) -> BytesMut {
        let mut body = Vec::new();
        for (f, v) in fields {
            body.push(*f);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut out = BytesMut::new();
        codec::put_message(&mut out, b'E', &body);
        out
    }

    fn masked(m: &Masker, fields: &[(u8, &str)]) -> Vec<(u8, String)> {
        let msg = error(fields);
        let mut out = BytesMut::new();
        let (mut c, mut s) = (MaskCounts::default(), Vec::new());
        let msg = if mask_error(m, &msg, &mut out, &mut c, &mut s) {
            out
        } else {
            msg
        };
        assert_eq!(
            codec::frame_len(&msg, super::super::SERVER_LIMITS),
            Ok(Some(msg.len()))
        );
        error_field_list(codec::body(&msg))
            .into_iter()
            .map(|(f, v)| (f, String::from_utf8_lossy(v).into_owned()))
            .collect()
    }

    fn field(fields: &[(u8, String)], f: u8) -> String {
        fields
            .iter()
            .find(|(k, _)| *k == f)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    #[test]
    fn detectors_run_over_every_text_field() {
        let m = masker(&[]);
        let f = masked(
            &m,
            &[
                (b'S', "ERROR"),
                (b'C', "P0001"),
                (b'M', "customer ada@example.com"),
                (b'D', "card 4111 1111 1111 1111"),
                (b'W', "PL/pgSQL function f() line 3 at RAISE"),
                (b'F', "pl_exec.c"),
            ],
        );
        assert_eq!(field(&f, b'M'), "customer ***@example.com");
        assert_eq!(field(&f, b'D'), "card **** **** **** 1111");
        assert_eq!(field(&f, b'W'), "PL/pgSQL function f() line 3 at RAISE");
        assert_eq!(field(&f, b'F'), "pl_exec.c");
    }

    #[test]
    fn quoted_values_are_hidden_under_column_rules() {
        let m = masker(&["customers.name"]);
        let f = masked(
            &m,
            &[
                (b'C', "22P02"),
                (b'M', "invalid input syntax for type integer: \"Ada\""),
            ],
        );
        assert_eq!(
            field(&f, b'M'),
            "invalid input syntax for type integer: \"***\""
        );
        let f = masked(
            &m,
            &[
                (b'C', "23505"),
                (
                    b'M',
                    "duplicate key value violates unique constraint \"c_email_key\"",
                ),
                (b'D', "Key (email)=(ada (home)) already exists."),
            ],
        );
        assert_eq!(
            field(&f, b'M'),
            "duplicate key value violates unique constraint \"c_email_key\""
        );
        assert_eq!(field(&f, b'D'), "Key (email)=(***) already exists.");
        let f = masked(
            &m,
            &[(b'C', "23514"), (b'D', "Failing row contains (1, Ada, x).")],
        );
        assert_eq!(field(&f, b'D'), "Failing row contains (***).");
        let f = masked(
            &m,
            &[
                (b'C', "22P02"),
                (b'D', "Token \"Ada\" is invalid."),
                (b'W', "JSON data, line 1: Ada"),
            ],
        );
        assert_eq!(field(&f, b'D'), std::str::from_utf8(WITHHELD).unwrap());
        assert_eq!(field(&f, b'W'), std::str::from_utf8(WITHHELD).unwrap());
        // A run-time lookup of a value (no position) hides the name; a typo in the
        // statement (with a position) keeps it.
        let f = masked(
            &m,
            &[(b'C', "42P01"), (b'M', "relation \"Ada\" does not exist")],
        );
        assert_eq!(field(&f, b'M'), "relation \"***\" does not exist");
        let f = masked(
            &m,
            &[
                (b'C', "42P01"),
                (b'M', "relation \"custmers\" does not exist"),
                (b'P', "15"),
            ],
        );
        assert_eq!(field(&f, b'M'), "relation \"custmers\" does not exist");
        // Without column rules only the detectors apply.
        let f = masked(
            &masker(&[]),
            &[(b'C', "22P02"), (b'M', "invalid input syntax: \"Ada\"")],
        );
        assert_eq!(field(&f, b'M'), "invalid input syntax: \"Ada\"");
    }

    #[test]
    fn quotes_inside_a_value_do_not_split_it() {
        let m = masker(&["customers.name"]);
        let withheld = std::str::from_utf8(WITHHELD).unwrap();
        for (code, msg, want) in [
            (
                "22P02",
                "invalid input syntax for type integer: \"x\" Ada \"y\"",
                "invalid input syntax for type integer: \"***\"",
            ),
            (
                "22P02",
                "value \"12\"3\" is out of range for type integer",
                "value \"***\" is out of range for type integer",
            ),
            (
                "22021",
                "invalid byte sequence for encoding \"UTF8\": 0x41 0x64 0xff",
                "invalid byte sequence for encoding \"***\": ***",
            ),
            ("22P02", "unterminated \"Ada", "unterminated \"***"),
            ("2200N", "invalid XML content", "invalid XML content"),
            (
                "42P01",
                "relation \"x\" Ada \"y\" does not exist",
                "relation \"***\" does not exist",
            ),
        ] {
            let f = masked(&m, &[(b'C', code), (b'M', msg)]);
            assert_eq!(field(&f, b'M'), want, "{msg}");
        }
        // XML errors put the value unquoted in DETAIL; every class 22 detail, context and
        // hint is withheld, SQLSTATE and message kept.
        let f = masked(
            &m,
            &[
                (b'C', "2200M"),
                (b'M', "invalid XML document"),
                (b'D', "line 1: Start tag expected, '<' not found\nAda\n^"),
                (b'H', "Ada"),
                (b'W', "SQL function \"f\" statement 1"),
            ],
        );
        assert_eq!(field(&f, b'C'), "2200M");
        assert_eq!(field(&f, b'M'), "invalid XML document");
        for k in [b'D', b'H', b'W'] {
            assert_eq!(field(&f, k), withheld);
        }
        // Other classes keep their detail (detectors only).
        let f = masked(&m, &[(b'C', "P0001"), (b'D', "Ada")]);
        assert_eq!(field(&f, b'D'), "Ada");
    }

    #[test]
    fn notifications_and_parameters_are_masked() {
        let m = masker(&[]);
        let mut body = vec![0, 0, 0, 7];
        body.extend_from_slice(b"ch\0ada@example.com,bob@example.org\0");
        let mut msg = BytesMut::new();
        codec::put_message(&mut msg, b'A', &body);
        let mut out = BytesMut::new();
        let mut c = MaskCounts::default();
        assert!(mask_notification(&m, &msg, &mut out, &mut c));
        assert_eq!(
            codec::body(&out),
            b"\0\0\0\x07ch\0***@example.com,***@example.org\0"
        );
        let mut msg = BytesMut::new();
        codec::put_message(&mut msg, b'S', b"application_name\0ada@example.com\0");
        let mut out = BytesMut::new();
        assert!(mask_parameter(&m, &msg, &mut out, &mut c));
        assert_eq!(codec::body(&out), b"application_name\0***@example.com\0");
        let mut msg = BytesMut::new();
        codec::put_message(&mut msg, b'S', b"server_version\x0015.4\0");
        assert!(!mask_parameter(&m, &msg, &mut BytesMut::new(), &mut c));
    }
}
