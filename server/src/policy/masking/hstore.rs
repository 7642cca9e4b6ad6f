//! hstore text (`"a"=>"1", "b"=>NULL`): keys and values masked as text, and the value of a key
//! that names a column under a column rule replaced (`hstore(row)` keys a row's values by
//! their column names). Masked keys and values are written quoted.
//!
//! The grammar is the extension's input syntax (`hstore_in`): keys and values quoted with
//! backslash escapes or unquoted (up to whitespace, `=`, `,` or `>`), `NULL` unquoted as a null
//! value. Written by hand for the same reason as the array and row literals.

use super::value::{Masked, Rewriter, Shape, put_backslash_quoted};
use super::{MaskCounts, Masker};

fn skip_ws(v: &[u8], mut i: usize) -> usize {
    while v.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// A key or value token: its span, whether it was quoted, and its content in `buf`.
fn token(v: &[u8], i: usize, buf: &mut Vec<u8>) -> Option<(usize, usize, bool)> {
    buf.clear();
    if v.get(i) == Some(&b'"') {
        let mut k = i + 1;
        loop {
            match *v.get(k)? {
                b'"' => return Some((i, k + 1, true)),
                b'\\' => {
                    buf.push(*v.get(k + 1)?);
                    k += 2;
                }
                b => {
                    buf.push(b);
                    k += 1;
                }
            }
        }
    }
    let mut k = i;
    loop {
        match v.get(k) {
            None => break,
            Some(b) if b.is_ascii_whitespace() || matches!(b, b'=' | b',' | b'>') => break,
            Some(b'\\') => {
                buf.push(*v.get(k + 1)?);
                k += 2;
            }
            Some(b) => {
                buf.push(*b);
                k += 1;
            }
        }
    }
    (k > i).then_some((i, k, false))
}

/// Masks an hstore value. One that does not parse is judged whole.
pub(crate) fn mask(
    m: &Masker,
    v: &[u8],
    out: &mut Vec<u8>,
    counts: &mut MaskCounts,
    depth: usize,
) -> Masked {
    let mut w = Rewriter::new(v, out);
    let mut local = MaskCounts::default();
    if walk(m, v, &mut w, &mut local, depth).is_some() {
        counts.merge(&local);
        w.finish()
    } else {
        m.mask_whole(v, counts)
    }
}

fn walk(
    m: &Masker,
    v: &[u8],
    w: &mut Rewriter<'_>,
    counts: &mut MaskCounts,
    depth: usize,
) -> Option<()> {
    let rules = m.has_column_rules();
    let mut buf = Vec::new();
    let mut masked = Vec::new();
    let mut i = skip_ws(v, 0);
    while i < v.len() {
        let (ks, ke, _) = token(v, i, &mut buf)?;
        let rule = if rules {
            std::str::from_utf8(&buf)
                .ok()
                .and_then(|k| m.column_replacement(None, k))
        } else {
            None
        };
        masked.clear();
        if m.mask_shape(&Shape::Text, &buf, &mut masked, counts, depth + 1) == Masked::Changed {
            put_backslash_quoted(w.replace(ks, ke), &masked);
        }
        i = skip_ws(v, ke);
        if v.get(i..i + 2)? != b"=>" {
            return None;
        }
        i = skip_ws(v, i + 2);
        let (vs, ve, quoted) = token(v, i, &mut buf)?;
        let null = !quoted && buf.eq_ignore_ascii_case(b"NULL");
        if !null {
            if let Some(r) = rule {
                counts.record_column();
                put_backslash_quoted(w.replace(vs, ve), r);
            } else {
                masked.clear();
                match m.mask_shape(&Shape::Text, &buf, &mut masked, counts, depth + 1) {
                    Masked::Changed => put_backslash_quoted(w.replace(vs, ve), &masked),
                    Masked::Same | Masked::Null => {}
                }
            }
        }
        i = skip_ws(v, ve);
        match v.get(i) {
            None => break,
            Some(b',') => i = skip_ws(v, i + 1),
            Some(_) => return None,
        }
    }
    Some(())
}

/// One key and its value (None: NULL).
pub type HstorePair = (Vec<u8>, Option<Vec<u8>>);

/// Splits an hstore into its pairs. Test support.
pub fn parse_hstore(v: &[u8]) -> Option<Vec<HstorePair>> {
    let mut pairs = Vec::new();
    let mut buf = Vec::new();
    let mut i = skip_ws(v, 0);
    while i < v.len() {
        let (_, ke, _) = token(v, i, &mut buf)?;
        let key = buf.clone();
        i = skip_ws(v, ke);
        if v.get(i..i + 2)? != b"=>" {
            return None;
        }
        i = skip_ws(v, i + 2);
        let (_, ve, quoted) = token(v, i, &mut buf)?;
        let null = !quoted && buf.eq_ignore_ascii_case(b"NULL");
        pairs.push((key, (!null).then(|| buf.clone())));
        i = skip_ws(v, ve);
        match v.get(i) {
            None => break,
            Some(b',') => i = skip_ws(v, i + 1),
            Some(_) => return None,
        }
    }
    Some(pairs)
}
