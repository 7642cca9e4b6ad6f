//! PostgreSQL wire framing, sans IO: find message boundaries in a buffer, build the few
//! messages the gateway writes itself, and parse the few it must read. Everything else is
//! forwarded as the exact bytes that arrived.
//!
//! Written by hand rather than with `pgwire`: the proxy needs zero-copy framing over one
//! buffer plus a handful of field readers, not a typed model of every message; a decoded
//! message would cost an allocation per row on the hot path. Fuzzed in `fuzz/` and
//! property-tested below.

use bytes::{BufMut, BytesMut};

/// Protocol version 3.0 in a StartupMessage.
pub const PROTOCOL_V3: i32 = 196_608;
/// SSLRequest code.
pub const SSL_REQUEST: i32 = 80_877_103;
/// GSSENCRequest code.
pub const GSSENC_REQUEST: i32 = 80_877_104;
/// CancelRequest code.
pub const CANCEL_REQUEST: i32 = 80_877_102;

/// Limits on declared lengths: a message claiming more ends the session instead of making the
/// gateway buffer it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message accepted.
    pub max_message: usize,
}

/// A framing error: the peer sent something that is not the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Length field below the minimum.
    #[error("message length {0} is invalid")]
    BadLength(i64),
    /// Length above the limit.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A message body that does not parse.
    #[error("malformed {0} message")]
    Malformed(&'static str),
}

fn be_i32(b: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn be_i16(b: &[u8]) -> Option<i16> {
    Some(i16::from_be_bytes(b.get(..2)?.try_into().ok()?))
}

/// Length of the untagged startup-phase packet at the front of `buf`, if complete.
pub fn startup_frame_len(buf: &[u8], limits: Limits) -> Result<Option<usize>, FrameError> {
    let Some(len) = be_i32(buf) else {
        return Ok(None);
    };
    if len < 8 {
        return Err(FrameError::BadLength(len.into()));
    }
    let len = len as usize;
    if len > limits.max_message {
        return Err(FrameError::TooLarge {
            len,
            max: limits.max_message,
        });
    }
    Ok((buf.len() >= len).then_some(len))
}

/// Total length (tag + length + body) of the tagged message at the front of `buf`, if complete.
#[inline]
pub fn frame_len(buf: &[u8], limits: Limits) -> Result<Option<usize>, FrameError> {
    let Some(len) = buf.get(1..5).and_then(be_i32) else {
        return Ok(None);
    };
    if len < 4 {
        return Err(FrameError::BadLength(len.into()));
    }
    let total = len as usize + 1;
    if total > limits.max_message {
        return Err(FrameError::TooLarge {
            len: total,
            max: limits.max_message,
        });
    }
    Ok((buf.len() >= total).then_some(total))
}

/// A parsed startup packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// SSLRequest.
    Ssl,
    /// GSSENCRequest.
    GssEnc,
    /// CancelRequest with the key the client got.
    Cancel {
        /// Backend process id (as the client knows it).
        pid: i32,
        /// Secret key (as the client knows it).
        key: i32,
    },
    /// StartupMessage v3 with its parameters.
    Startup(Vec<(String, String)>),
}

/// Parses a complete startup packet (including its length prefix).
pub fn parse_startup(packet: &[u8]) -> Result<Startup, FrameError> {
    let code = packet
        .get(4..)
        .and_then(be_i32)
        .ok_or(FrameError::Malformed("startup"))?;
    match code {
        SSL_REQUEST => Ok(Startup::Ssl),
        GSSENC_REQUEST => Ok(Startup::GssEnc),
        CANCEL_REQUEST => {
            let pid = packet
                .get(8..)
                .and_then(be_i32)
                .ok_or(FrameError::Malformed("CancelRequest"))?;
            let key = packet
                .get(12..)
                .and_then(be_i32)
                .ok_or(FrameError::Malformed("CancelRequest"))?;
            Ok(Startup::Cancel { pid, key })
        }
        PROTOCOL_V3 => {
            let body = packet
                .get(8..)
                .ok_or(FrameError::Malformed("StartupMessage"))?;
            let mut params = Vec::new();
            let mut parts = body.split(|b| *b == 0);
            while let Some(k) = parts.next() {
                if k.is_empty() {
                    break;
                }
                let v = parts
                    .next()
                    .ok_or(FrameError::Malformed("StartupMessage"))?;
                params.push((
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                ));
            }
            Ok(Startup::Startup(params))
        }
        _ => Err(FrameError::Malformed(
            "startup (unsupported protocol version)",
        )),
    }
}

/// Appends a StartupMessage.
pub fn put_startup(out: &mut BytesMut, params: &[(&str, &str)]) {
    let start = out.len();
    out.put_i32(0);
    out.put_i32(PROTOCOL_V3);
    for (k, v) in params {
        put_cstr(out, k);
        put_cstr(out, v);
    }
    out.put_u8(0);
    patch_len(out, start, 0);
}

/// Appends a CancelRequest.
pub fn put_cancel(out: &mut BytesMut, pid: i32, key: i32) {
    out.put_i32(16);
    out.put_i32(CANCEL_REQUEST);
    out.put_i32(pid);
    out.put_i32(key);
}

fn put_cstr(out: &mut BytesMut, s: &str) {
    // A NUL inside would end the string early on the other side; drop it.
    out.extend(s.bytes().filter(|b| *b != 0));
    out.put_u8(0);
}

/// Writes the length of the message that starts at `start` (its tag is `tag_len` bytes).
fn patch_len(out: &mut BytesMut, start: usize, tag_len: usize) {
    let len = (out.len() - start - tag_len) as i32;
    if let Some(slot) = out.get_mut(start + tag_len..start + tag_len + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

/// Begins a tagged message; finish it with [`end`].
fn begin(out: &mut BytesMut, tag: u8) -> usize {
    let start = out.len();
    out.put_u8(tag);
    out.put_i32(0);
    start
}

fn end(out: &mut BytesMut, start: usize) {
    patch_len(out, start, 1);
}

/// Appends a tagged message with the given body.
pub fn put_message(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.put_u8(tag);
    out.put_i32(body.len() as i32 + 4);
    out.put_slice(body);
}

/// Appends `msg` (a Parse, Bind, Describe or Close) with the statement name that starts `at`
/// bytes into it replaced by `name`; `old` is the length of the name it replaces. False (and
/// nothing written) when `msg` is too short for that.
pub fn put_renamed(out: &mut BytesMut, msg: &[u8], at: usize, old: usize, name: &[u8]) -> bool {
    let (Some(&tag), Some(head), Some(tail)) = (
        msg.first(),
        msg.get(5..at),
        msg.get(at.saturating_add(old)..),
    ) else {
        return false;
    };
    out.put_u8(tag);
    out.put_i32((4 + head.len() + name.len() + tail.len()) as i32);
    out.put_slice(head);
    out.put_slice(name);
    out.put_slice(tail);
    true
}

/// Appends an ErrorResponse (or NoticeResponse with `tag = b'N'`).
pub fn put_error(
    out: &mut BytesMut,
    tag: u8,
    severity: &str,
    sqlstate: &str,
    message: &str,
    hint: Option<&str>,
) {
    let start = begin(out, tag);
    out.put_u8(b'S');
    put_cstr(out, severity);
    out.put_u8(b'V');
    put_cstr(out, severity);
    out.put_u8(b'C');
    put_cstr(out, sqlstate);
    out.put_u8(b'M');
    put_cstr(out, message);
    if let Some(h) = hint {
        out.put_u8(b'H');
        put_cstr(out, h);
    }
    out.put_u8(0);
    end(out, start);
}

/// Appends ReadyForQuery.
pub fn put_ready(out: &mut BytesMut, status: u8) {
    out.put_u8(b'Z');
    out.put_i32(5);
    out.put_u8(status);
}

/// Appends an Authentication request (`R`) with a code and extra body.
pub fn put_auth(out: &mut BytesMut, code: i32, extra: &[u8]) {
    out.put_u8(b'R');
    out.put_i32(8 + extra.len() as i32);
    out.put_i32(code);
    out.put_slice(extra);
}

/// Appends BackendKeyData.
pub fn put_backend_key(out: &mut BytesMut, pid: i32, key: i32) {
    out.put_u8(b'K');
    out.put_i32(12);
    out.put_i32(pid);
    out.put_i32(key);
}

/// Reads a NUL-terminated string at the front of `b`; returns it and the rest.
pub fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = b.iter().position(|c| *c == 0)?;
    Some((b.get(..nul)?, b.get(nul + 1..)?))
}

/// The body of a complete message (after tag and length).
#[inline]
pub fn body(msg: &[u8]) -> &[u8] {
    msg.get(5..).unwrap_or_default()
}

/// Query ('Q'): the SQL text.
pub fn query_text(msg: &[u8]) -> Result<&[u8], FrameError> {
    cstr(body(msg))
        .map(|(q, _)| q)
        .ok_or(FrameError::Malformed("Query"))
}

/// Parse ('P'): statement name, SQL text.
pub fn parse_msg(msg: &[u8]) -> Result<(&[u8], &[u8]), FrameError> {
    let (name, rest) = cstr(body(msg)).ok_or(FrameError::Malformed("Parse"))?;
    let (q, _) = cstr(rest).ok_or(FrameError::Malformed("Parse"))?;
    Ok((name, q))
}

/// The parameter type OIDs a Parse names (0 = left to the server; often none at all).
pub fn parse_param_types(msg: &[u8]) -> Result<Vec<u32>, FrameError> {
    let err = FrameError::Malformed("Parse");
    let (_, rest) = cstr(body(msg)).ok_or(err.clone())?;
    let (_, rest) = cstr(rest).ok_or(err.clone())?;
    oids(rest).ok_or(err)
}

/// ParameterDescription ('t'): the type OID of each parameter of a described statement.
pub fn param_description(msg: &[u8]) -> Result<Vec<u32>, FrameError> {
    oids(body(msg)).ok_or(FrameError::Malformed("ParameterDescription"))
}

/// An int16 count, then that many int32 OIDs.
fn oids(b: &[u8]) -> Option<Vec<u32>> {
    let n = be_i16(b)?.max(0) as usize;
    let raw = b.get(2..2 + 4 * n)?;
    Some(
        raw.chunks_exact(4)
            .filter_map(|c| c.try_into().ok().map(u32::from_be_bytes))
            .collect(),
    )
}

/// Bind ('B'): portal name, statement name, and the result-column format codes.
pub fn bind_msg(msg: &[u8]) -> Result<Bind<'_>, FrameError> {
    let err = FrameError::Malformed("Bind");
    let (portal, rest) = cstr(body(msg)).ok_or(err.clone())?;
    let (statement, mut rest) = cstr(rest).ok_or(err.clone())?;
    let nfmt = be_i16(rest).ok_or(err.clone())?.max(0) as usize;
    let param_formats = rest.get(2..2 + 2 * nfmt).ok_or(err.clone())?;
    rest = rest.get(2 + 2 * nfmt..).ok_or(err.clone())?;
    let nparams = be_i16(rest).ok_or(err.clone())?.max(0) as usize;
    rest = rest.get(2..).ok_or(err.clone())?;
    let mut params = Vec::with_capacity(nparams.min(1024));
    for _ in 0..nparams {
        let len = be_i32(rest).ok_or(err.clone())?;
        rest = rest.get(4..).ok_or(err.clone())?;
        if len < 0 {
            params.push(None);
        } else {
            let (v, r) = rest.split_at_checked(len as usize).ok_or(err.clone())?;
            params.push(Some(v));
            rest = r;
        }
    }
    let nres = be_i16(rest).ok_or(err.clone())?.max(0) as usize;
    let formats = rest.get(2..2 + 2 * nres).ok_or(err)?;
    Ok(Bind {
        portal,
        statement,
        params,
        param_formats,
        result_formats: formats,
    })
}

/// The fields of a Bind the gateway needs.
#[derive(Debug)]
pub struct Bind<'a> {
    /// Portal name.
    pub portal: &'a [u8],
    /// Statement name.
    pub statement: &'a [u8],
    /// Parameter values (None = NULL).
    pub params: Vec<Option<&'a [u8]>>,
    /// Raw parameter format codes (2 bytes each).
    pub param_formats: &'a [u8],
    /// Raw result format codes (2 bytes each).
    pub result_formats: &'a [u8],
}

impl Bind<'_> {
    /// Format code of parameter `i` (0 text, 1 binary) per the Bind rules.
    pub fn param_format(&self, i: usize) -> i16 {
        format_at(self.param_formats, i)
    }

    /// Format code of result column `i` (0 text, 1 binary) per the Bind rules.
    pub fn result_format(&self, i: usize) -> i16 {
        format_at(self.result_formats, i)
    }
}

/// Bind's rule for format codes: none means all text, one applies to all, else one each.
fn format_at(codes: &[u8], i: usize) -> i16 {
    let at = match codes.len() / 2 {
        0 => return 0,
        1 => 0,
        _ => i,
    };
    codes.get(at * 2..).and_then(be_i16).unwrap_or(0)
}

/// Execute ('E') / Describe ('D') / Close ('C') target name.
pub fn name_after_kind(msg: &[u8]) -> Option<&[u8]> {
    cstr(body(msg).get(1..)?).map(|(n, _)| n)
}

/// Execute ('E'): portal name.
pub fn execute_portal(msg: &[u8]) -> Option<&[u8]> {
    cstr(body(msg)).map(|(n, _)| n)
}

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Table OID (0 if not a table column).
    pub table_oid: u32,
    /// The column's attribute number in that table (0 if not a table column).
    pub attnum: i16,
    /// Type OID.
    pub type_oid: u32,
    /// 0 text, 1 binary.
    pub format: i16,
}

/// RowDescription ('T').
pub fn row_description(msg: &[u8]) -> Result<Vec<Column>, FrameError> {
    let err = FrameError::Malformed("RowDescription");
    let b = body(msg);
    let n = be_i16(b).ok_or(err.clone())?.max(0) as usize;
    let mut rest = b.get(2..).ok_or(err.clone())?;
    let mut cols = Vec::with_capacity(n.min(1600));
    for _ in 0..n {
        let (name, r) = cstr(rest).ok_or(err.clone())?;
        let f = r.get(..18).ok_or(err.clone())?;
        let table_oid = be_i32(f).ok_or(err.clone())? as u32;
        let attnum = f.get(4..).and_then(be_i16).ok_or(err.clone())?;
        let type_oid = f.get(6..).and_then(be_i32).ok_or(err.clone())? as u32;
        let format = f.get(16..).and_then(be_i16).ok_or(err.clone())?;
        cols.push(Column {
            name: String::from_utf8_lossy(name).into_owned(),
            table_oid,
            attnum,
            type_oid,
            format,
        });
        rest = r.get(18..).ok_or(err.clone())?;
    }
    Ok(cols)
}

/// Iterates the values of a DataRow ('D'): `None` is NULL.
pub fn data_row_values(msg: &[u8]) -> Result<DataRowIter<'_>, FrameError> {
    let b = body(msg);
    let n = be_i16(b).ok_or(FrameError::Malformed("DataRow"))?;
    Ok(DataRowIter {
        rest: b.get(2..).unwrap_or_default(),
        left: n.max(0) as usize,
    })
}

/// Iterator over DataRow values.
pub struct DataRowIter<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for DataRowIter<'a> {
    type Item = Result<Option<&'a [u8]>, FrameError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let Some(len) = be_i32(self.rest) else {
            return Some(Err(FrameError::Malformed("DataRow")));
        };
        self.rest = self.rest.get(4..).unwrap_or_default();
        if len < 0 {
            return Some(Ok(None));
        }
        match self.rest.split_at_checked(len as usize) {
            Some((v, r)) => {
                self.rest = r;
                Some(Ok(Some(v)))
            }
            None => Some(Err(FrameError::Malformed("DataRow"))),
        }
    }
}

/// Begins a DataRow with `n` columns; add values with [`put_value`], finish with [`end_row`].
pub fn begin_row(out: &mut BytesMut, n: i16) -> usize {
    let start = begin(out, b'D');
    out.put_i16(n);
    start
}

/// Appends one DataRow value.
pub fn put_value(out: &mut BytesMut, v: Option<&[u8]>) {
    match v {
        None => out.put_i32(-1),
        Some(v) => {
            out.put_i32(v.len() as i32);
            out.put_slice(v);
        }
    }
}

/// Finishes a DataRow begun at `start`.
pub fn end_row(out: &mut BytesMut, start: usize) {
    end(out, start);
}

/// ErrorResponse / NoticeResponse fields: SQLSTATE and message.
pub fn error_fields(msg: &[u8]) -> (String, String) {
    let (mut code, mut text) = (String::new(), String::new());
    let mut rest = body(msg);
    while let Some((&field, r)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let Some((v, r2)) = cstr(r) else { break };
        match field {
            b'C' => code = String::from_utf8_lossy(v).into_owned(),
            b'M' => text = String::from_utf8_lossy(v).into_owned(),
            _ => {}
        }
        rest = r2;
    }
    (code, text)
}

/// CommandComplete ('C'): the tag, e.g. `SELECT 3`.
pub fn command_tag(msg: &[u8]) -> String {
    cstr(body(msg))
        .map(|(t, _)| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_default()
}

/// Authentication request ('R'): the code and the rest.
pub fn auth_request(msg: &[u8]) -> Result<(i32, &[u8]), FrameError> {
    let b = body(msg);
    Ok((
        be_i32(b).ok_or(FrameError::Malformed("Authentication"))?,
        b.get(4..).unwrap_or_default(),
    ))
}

/// BackendKeyData ('K').
pub fn backend_key(msg: &[u8]) -> Result<(i32, i32), FrameError> {
    let b = body(msg);
    let pid = be_i32(b).ok_or(FrameError::Malformed("BackendKeyData"))?;
    let key = b
        .get(4..)
        .and_then(be_i32)
        .ok_or(FrameError::Malformed("BackendKeyData"))?;
    Ok((pid, key))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const L: Limits = Limits {
        max_message: 1 << 20,
    };

    #[test]
    fn frames_are_found_only_when_complete() {
        let mut b = BytesMut::new();
        put_ready(&mut b, b'I');
        assert_eq!(frame_len(&b[..3], L), Ok(None));
        assert_eq!(frame_len(&b, L), Ok(Some(6)));
    }

    #[test]
    fn oversized_and_negative_lengths_are_errors() {
        let huge = [b'Q', 0x40, 0, 0, 0];
        assert!(matches!(
            frame_len(&huge, L),
            Err(FrameError::TooLarge { .. })
        ));
        let neg = [b'Q', 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(frame_len(&neg, L), Err(FrameError::BadLength(_))));
        assert!(startup_frame_len(&[0, 0, 0, 3], L).is_err());
    }

    #[test]
    fn startup_round_trip() {
        let mut b = BytesMut::new();
        put_startup(&mut b, &[("user", "u"), ("database", "d")]);
        let n = startup_frame_len(&b, L).unwrap().unwrap();
        assert_eq!(
            parse_startup(&b[..n]).unwrap(),
            Startup::Startup(vec![
                ("user".into(), "u".into()),
                ("database".into(), "d".into())
            ])
        );
        let mut c = BytesMut::new();
        put_cancel(&mut c, 7, 9);
        assert_eq!(
            parse_startup(&c).unwrap(),
            Startup::Cancel { pid: 7, key: 9 }
        );
    }

    #[test]
    fn data_rows_round_trip() {
        let mut b = BytesMut::new();
        let s = begin_row(&mut b, 3);
        put_value(&mut b, Some(b"a"));
        put_value(&mut b, None);
        put_value(&mut b, Some(b""));
        end_row(&mut b, s);
        assert_eq!(frame_len(&b, L), Ok(Some(b.len())));
        let v: Vec<_> = data_row_values(&b)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(v, vec![Some(&b"a"[..]), None, Some(&b""[..])]);
    }

    #[test]
    fn errors_carry_code_and_message() {
        let mut b = BytesMut::new();
        put_error(&mut b, b'E', "ERROR", "42501", "blocked", Some("ask"));
        assert_eq!(error_fields(&b), ("42501".into(), "blocked".into()));
    }

    #[test]
    fn bind_formats_and_parameter_types() {
        let mut b = BytesMut::new();
        // Portal "", statement "s1", formats [0, 1], two params, one result format (binary).
        let mut body = b"\0s1\0".to_vec();
        body.extend_from_slice(&[0, 2, 0, 0, 0, 1, 0, 2]);
        body.extend_from_slice(&[0, 0, 0, 1, b'7', 0xff, 0xff, 0xff, 0xff]);
        body.extend_from_slice(&[0, 1, 0, 1]);
        put_message(&mut b, b'B', &body);
        let bind = bind_msg(&b).unwrap();
        assert_eq!(bind.statement, b"s1");
        assert_eq!(bind.params, vec![Some(&b"7"[..]), None]);
        assert_eq!((bind.param_format(0), bind.param_format(1)), (0, 1));
        assert_eq!((bind.result_format(0), bind.result_format(5)), (1, 1));

        let mut p = BytesMut::new();
        put_message(&mut p, b'P', b"s1\0select $1, $2\0\0\x02\0\0\0\x14\0\0\0\0");
        assert_eq!(parse_msg(&p).unwrap(), (&b"s1"[..], &b"select $1, $2"[..]));
        assert_eq!(parse_param_types(&p).unwrap(), vec![20, 0]);
        let mut t = BytesMut::new();
        put_message(&mut t, b't', &[0, 1, 0, 0, 0x06, 0xa4]);
        assert_eq!(param_description(&t).unwrap(), vec![1700]);
        let mut short = BytesMut::new();
        put_message(&mut short, b't', &[0, 2, 0, 0, 0, 23]);
        assert!(
            param_description(&short).is_err(),
            "count beyond the message"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// No input makes a reader panic or read past its buffer.
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = frame_len(&data, L);
            let _ = startup_frame_len(&data, L);
            let _ = parse_startup(&data);
            let _ = query_text(&data);
            let _ = parse_msg(&data);
            if let Ok(b) = bind_msg(&data) { let _ = (b.param_format(3), b.result_format(3)); }
            let _ = parse_param_types(&data);
            let _ = param_description(&data);
            let _ = row_description(&data);
            if let Ok(it) = data_row_values(&data) { for v in it { let _ = v; } }
            let _ = error_fields(&data);
            let _ = auth_request(&data);
            let _ = backend_key(&data);
            let _ = execute_portal(&data);
            let _ = name_after_kind(&data);
            let _ = command_tag(&data);
        }
    }

    #[test]
    fn a_renamed_message_is_the_same_message_with_another_name() {
        let mut bind = BytesMut::new();
        put_message(&mut bind, b'B', b"p1\0s1\0\0\0\0\x01\0\0\0\x015\0\0");
        let mut out = BytesMut::new();
        assert!(put_renamed(&mut out, &bind, 5 + 3, 2, b"__hoop_x_1"));
        let b = bind_msg(&out).unwrap();
        assert_eq!((b.portal, b.statement), (&b"p1"[..], &b"__hoop_x_1"[..]));
        assert_eq!(b.params, vec![Some(&b"5"[..])]);
        assert_eq!(
            frame_len(
                &out,
                Limits {
                    max_message: 1 << 20
                }
            ),
            Ok(Some(out.len()))
        );
        let mut parse = BytesMut::new();
        put_message(&mut parse, b'P', b"\0select 1\0\0\0");
        out.clear();
        assert!(put_renamed(&mut out, &parse, 5, 0, b"h"));
        assert_eq!(parse_msg(&out).unwrap(), (&b"h"[..], &b"select 1"[..]));
        assert!(!put_renamed(&mut out, b"P\0", 5, 0, b"h"));
    }
}
