//! JSON documents (`json` and `jsonb` text): strings and object keys are masked as text,
//! numbers as numbers (a withheld number becomes `null`), and a member whose key names a column
//! under a column rule has its value replaced by the rule's replacement, as a JSON string.
//! Everything else (whitespace, key order, literals) is copied as it came.
//!
//! Keys are masked too: `json_object_agg(email, ...)` puts data in keys. Masking two keys to the
//! same text can repeat a key, which JSON allows (`jsonb` keeps the last).
//!
//! Written by hand rather than with `serde_json`: masking must change only the strings and
//! numbers it masks and leave every other byte where it was, and a tokenizer that reports spans
//! is a few dozen lines, where a parse into a tree and a re-serialisation would change spacing
//! and number spellings (and allocate per value).

use super::value::{MAX_DEPTH, Masked, Rewriter, Shape};
use super::{MaskCounts, Masker};

fn skip_ws(v: &[u8], mut i: usize) -> usize {
    while matches!(v.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Masks a JSON document. One that does not parse is judged whole.
pub(crate) fn mask(
    m: &Masker,
    v: &[u8],
    out: &mut Vec<u8>,
    counts: &mut MaskCounts,
    depth: usize,
) -> Masked {
    let mut w = Rewriter::new(v, out);
    let mut local = MaskCounts::default();
    let mut j = Json {
        m,
        v,
        counts: &mut local,
        buf: Vec::new(),
        masked: Vec::new(),
        rules: m.has_column_rules(),
    };
    let ok = j
        .value(skip_ws(v, 0), Some(&mut w), depth)
        .is_some_and(|end| skip_ws(v, end) == v.len());
    if ok {
        counts.merge(&local);
        w.finish()
    } else {
        m.mask_whole(v, counts)
    }
}

struct Json<'a> {
    m: &'a Masker,
    v: &'a [u8],
    counts: &'a mut MaskCounts,
    /// A decoded string.
    buf: Vec<u8>,
    /// A masked string.
    masked: Vec<u8>,
    /// Column rules exist: keys are matched against them.
    rules: bool,
}

impl Json<'_> {
    /// Reads the value at `i`, masking what it holds into `w` (only reading it when `w` is
    /// None: a value about to be replaced whole); returns the position after it.
    fn value(&mut self, i: usize, mut w: Option<&mut Rewriter<'_>>, depth: usize) -> Option<usize> {
        if depth > MAX_DEPTH {
            return None;
        }
        match *self.v.get(i)? {
            b'{' => self.object(i, w, depth),
            b'[' => {
                let mut i = skip_ws(self.v, i + 1);
                if self.v.get(i) == Some(&b']') {
                    return Some(i + 1);
                }
                loop {
                    i = self.value(i, w.as_deref_mut(), depth + 1)?;
                    i = skip_ws(self.v, i);
                    match *self.v.get(i)? {
                        b',' => i = skip_ws(self.v, i + 1),
                        b']' => return Some(i + 1),
                        _ => return None,
                    }
                }
            }
            b'"' => {
                let end = self.string(i)?;
                if let Some(w) = w {
                    self.mask_string(i, end, w);
                }
                Some(end)
            }
            b'-' | b'0'..=b'9' => {
                let end = number_end(self.v, i)?;
                if let Some(w) = w
                    && self.m.number_detected(self.v.get(i..end)?)
                {
                    self.counts.record_withheld();
                    w.replace(i, end).extend_from_slice(b"null");
                }
                Some(end)
            }
            b't' => literal(self.v, i, b"true"),
            b'f' => literal(self.v, i, b"false"),
            b'n' => literal(self.v, i, b"null"),
            _ => None,
        }
    }

    fn object(
        &mut self,
        i: usize,
        mut w: Option<&mut Rewriter<'_>>,
        depth: usize,
    ) -> Option<usize> {
        let m = self.m;
        let mut i = skip_ws(self.v, i + 1);
        if self.v.get(i) == Some(&b'}') {
            return Some(i + 1);
        }
        loop {
            if self.v.get(i) != Some(&b'"') {
                return None;
            }
            let key_end = self.string(i)?;
            // A key naming a ruled column: its value is replaced whole.
            let rule = match (&w, self.rules) {
                (Some(_), true) => std::str::from_utf8(&self.buf)
                    .ok()
                    .and_then(|k| m.column_replacement(None, k)),
                _ => None,
            };
            if let Some(w) = w.as_deref_mut() {
                self.mask_string(i, key_end, w);
            }
            i = skip_ws(self.v, key_end);
            if self.v.get(i) != Some(&b':') {
                return None;
            }
            i = skip_ws(self.v, i + 1);
            let value_end = match rule {
                Some(r) => {
                    let end = self.value(i, None, depth + 1)?;
                    self.counts.record_column();
                    if let Some(w) = w.as_deref_mut() {
                        put_json_string(w.replace(i, end), r);
                    }
                    end
                }
                None => self.value(i, w.as_deref_mut(), depth + 1)?,
            };
            i = skip_ws(self.v, value_end);
            match *self.v.get(i)? {
                b',' => i = skip_ws(self.v, i + 1),
                b'}' => return Some(i + 1),
                _ => return None,
            }
        }
    }

    /// Decodes the string at `i` (its opening quote) into `buf`; returns the position after
    /// its closing quote.
    fn string(&mut self, i: usize) -> Option<usize> {
        let v = self.v;
        self.buf.clear();
        let mut k = i + 1;
        loop {
            match *v.get(k)? {
                b'"' => return Some(k + 1),
                b'\\' => {
                    let e = *v.get(k + 1)?;
                    k += 2;
                    match e {
                        b'"' | b'\\' | b'/' => self.buf.push(e),
                        b'b' => self.buf.push(0x08),
                        b'f' => self.buf.push(0x0c),
                        b'n' => self.buf.push(b'\n'),
                        b'r' => self.buf.push(b'\r'),
                        b't' => self.buf.push(b'\t'),
                        b'u' => {
                            let hi = hex4(v, k)?;
                            k += 4;
                            let c = if (0xD800..0xDC00).contains(&hi)
                                && v.get(k) == Some(&b'\\')
                                && v.get(k + 1) == Some(&b'u')
                                && let Some(lo) = hex4(v, k + 2)
                                && (0xDC00..0xE000).contains(&lo)
                            {
                                k += 6;
                                char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                            } else {
                                char::from_u32(hi)
                            };
                            let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
                            let mut utf8 = [0u8; 4];
                            self.buf
                                .extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                        }
                        _ => return None,
                    }
                }
                b if b < 0x20 => return None,
                b => {
                    self.buf.push(b);
                    k += 1;
                }
            }
        }
    }

    /// Masks the string just decoded (spanning `start..end` with its quotes).
    fn mask_string(&mut self, start: usize, end: usize, w: &mut Rewriter<'_>) {
        self.masked.clear();
        let masked = self
            .m
            .mask_shape(&Shape::Text, &self.buf, &mut self.masked, self.counts, 0);
        if masked == Masked::Changed {
            put_json_string(w.replace(start, end), &self.masked);
        }
    }
}

fn literal(v: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    v.get(i..)?.starts_with(word).then_some(i + word.len())
}

fn hex4(v: &[u8], i: usize) -> Option<u32> {
    let s = std::str::from_utf8(v.get(i..i + 4)?).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// The end of the JSON number at `i`.
fn number_end(v: &[u8], i: usize) -> Option<usize> {
    let mut k = i;
    if v.get(k) == Some(&b'-') {
        k += 1;
    }
    let digits = |k: usize| {
        v.get(k..)
            .map_or(0, |s| s.iter().take_while(|b| b.is_ascii_digit()).count())
    };
    let n = digits(k);
    if n == 0 {
        return None;
    }
    k += n;
    if v.get(k) == Some(&b'.') {
        let n = digits(k + 1);
        if n == 0 {
            return None;
        }
        k += 1 + n;
    }
    if matches!(v.get(k), Some(b'e' | b'E')) {
        k += 1;
        if matches!(v.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        let n = digits(k);
        if n == 0 {
            return None;
        }
        k += n;
    }
    Some(k)
}

/// Appends `s` as a JSON string.
pub(crate) fn put_json_string(out: &mut Vec<u8>, s: &[u8]) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b if b < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'));
                out.push(HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0'));
            }
            b => out.push(b),
        }
    }
    out.push(b'"');
}
