//! Array literals (`{a,"b c",NULL}`, `[0:1]={{1,2},{3,4}}`) and row literals (`(1,"a b",)`):
//! decode each element or field, mask it by its own shape, and write it back quoted.
//!
//! The grammar is PostgreSQL's input syntax (`array_in`, `record_in`), which accepts more than
//! the output functions write (whitespace around elements, backslash escapes outside quotes,
//! quoted and unquoted stretches in one field), so whatever a server sends is read the way the
//! client's parser will read it. A value that does not parse is judged whole: withheld when
//! anything in it is detected, passed otherwise.
//!
//! Written by hand: no maintained crate parses PostgreSQL's array and row literals, and the
//! grammar is small (the drivers that read them, e.g. pgjdbc and psycopg, each carry their own).

use super::value::{Field, Masked, Rewriter, Shape, put_backslash_quoted};
use super::{MaskCounts, Masker};

/// `array_isspace`: the whitespace `array_in` skips around elements.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

fn skip_space(v: &[u8], mut i: usize) -> usize {
    while v.get(i).copied().is_some_and(is_space) {
        i += 1;
    }
    i
}

/// One element of an array literal: its raw span and what it holds.
struct Element {
    start: usize,
    end: usize,
    /// False for an unquoted `NULL`.
    present: bool,
    /// The decoded content lies in the scratch buffer (escapes were removed), not in the span.
    decoded: bool,
}

/// The parser's state over one array literal.
struct ArrayReader<'a> {
    v: &'a [u8],
    delim: u8,
}

impl ArrayReader<'_> {
    /// Reads the element at `i` (after whitespace). Its decoded content goes into `buf` when
    /// it had escapes. Returns the element and the position after it.
    fn element(&self, mut i: usize, buf: &mut Vec<u8>) -> Option<(Element, usize)> {
        let v = self.v;
        i = skip_space(v, i);
        let start = i;
        buf.clear();
        if v.get(i) == Some(&b'"') {
            i += 1;
            let mut decoded = false;
            let body = i;
            loop {
                match v.get(i)? {
                    b'"' => break,
                    b'\\' => {
                        if !decoded {
                            decoded = true;
                            buf.extend_from_slice(v.get(body..i)?);
                        }
                        buf.push(*v.get(i + 1)?);
                        i += 2;
                    }
                    b => {
                        if decoded {
                            buf.push(*b);
                        }
                        i += 1;
                    }
                }
            }
            if !decoded {
                buf.extend_from_slice(v.get(body..i)?);
            }
            let el = Element {
                start,
                end: i + 1,
                present: true,
                decoded: true,
            };
            return Some((el, i + 1));
        }
        // Unquoted: up to the delimiter or a closing brace; trailing whitespace is not part of
        // it unless escaped.
        let mut escaped = false;
        let mut last_kept = i;
        loop {
            match v.get(i)? {
                b if *b == self.delim || *b == b'}' => break,
                b'{' | b'"' => return None,
                b'\\' => {
                    escaped = true;
                    buf.push(*v.get(i + 1)?);
                    i += 2;
                    last_kept = i;
                }
                b => {
                    buf.push(*b);
                    i += 1;
                    if !is_space(*b) {
                        last_kept = i;
                    }
                }
            }
        }
        if last_kept == start {
            // An empty unquoted element is a syntax error in `array_in`.
            return None;
        }
        // Drop unescaped trailing whitespace from the decoded content.
        let trailing = i - last_kept;
        buf.truncate(buf.len().saturating_sub(trailing));
        let present = escaped || !buf.eq_ignore_ascii_case(b"NULL");
        let el = Element {
            start,
            end: last_kept,
            present,
            decoded: escaped,
        };
        Some((el, i))
    }
}

/// Masks an array literal element by element. See the module documentation.
pub(crate) fn mask_array(
    m: &Masker,
    elem: &Shape,
    delim: u8,
    v: &[u8],
    out: &mut Vec<u8>,
    counts: &mut MaskCounts,
    depth: usize,
) -> Masked {
    let mut w = Rewriter::new(v, out);
    let mut local = MaskCounts::default();
    match walk_array(m, elem, delim, v, &mut w, &mut local, depth) {
        Some(()) => {
            counts.merge(&local);
            w.finish()
        }
        None => m.mask_whole(v, counts),
    }
}

fn walk_array(
    m: &Masker,
    elem: &Shape,
    delim: u8,
    v: &[u8],
    w: &mut Rewriter<'_>,
    counts: &mut MaskCounts,
    depth: usize,
) -> Option<()> {
    let r = ArrayReader { v, delim };
    let mut i = skip_space(v, 0);
    if v.get(i) == Some(&b'[') {
        // Bounds decoration: `[lo:hi]...=` before the braces.
        i += memchr::memchr(b'=', v.get(i..)?)? + 1;
        i = skip_space(v, i);
    }
    if v.get(i) != Some(&b'{') {
        return None;
    }
    let mut buf = Vec::new();
    let mut masked = Vec::new();
    // Open braces; each level holds elements or sub-arrays.
    let mut level = 0usize;
    let mut expect_value = true;
    loop {
        i = skip_space(v, i);
        let b = *v.get(i)?;
        match b {
            b'{' if expect_value => {
                level += 1;
                if level > super::value::MAX_DEPTH {
                    return None;
                }
                i += 1;
                // `{}` is an empty array (or sub-array).
                let j = skip_space(v, i);
                if v.get(j) == Some(&b'}') {
                    expect_value = false;
                }
            }
            b'}' if !expect_value => {
                level = level.checked_sub(1)?;
                i += 1;
                if level == 0 {
                    return (skip_space(v, i) == v.len()).then_some(());
                }
            }
            b if b == delim && !expect_value && level > 0 => {
                i += 1;
                expect_value = true;
            }
            _ if expect_value => {
                let (el, next) = r.element(i, &mut buf)?;
                i = next;
                expect_value = false;
                if !el.present {
                    continue;
                }
                let content: &[u8] = if el.decoded {
                    &buf
                } else {
                    v.get(el.start..el.end)?
                };
                masked.clear();
                match m.mask_shape(elem, content, &mut masked, counts, depth + 1) {
                    Masked::Same => {}
                    Masked::Changed => put_backslash_quoted(w.replace(el.start, el.end), &masked),
                    Masked::Null => w.replace(el.start, el.end).extend_from_slice(b"NULL"),
                }
            }
            _ => return None,
        }
    }
}

/// Masks a row literal field by field. See the module documentation.
pub(crate) fn mask_record(
    m: &Masker,
    fields: Option<&[Field]>,
    v: &[u8],
    out: &mut Vec<u8>,
    counts: &mut MaskCounts,
    depth: usize,
) -> Masked {
    let mut w = Rewriter::new(v, out);
    let mut local = MaskCounts::default();
    match walk_record(m, fields, v, &mut w, &mut local, depth) {
        Some(()) => {
            counts.merge(&local);
            w.finish()
        }
        None => m.mask_whole(v, counts),
    }
}

fn walk_record(
    m: &Masker,
    fields: Option<&[Field]>,
    v: &[u8],
    w: &mut Rewriter<'_>,
    counts: &mut MaskCounts,
    depth: usize,
) -> Option<()> {
    let mut i = skip_space(v, 0);
    if v.get(i) != Some(&b'(') {
        return None;
    }
    i += 1;
    let mut buf = Vec::new();
    let mut masked = Vec::new();
    let unknown = Field::plain(Shape::Unknown);
    for k in 0usize.. {
        // One field: up to an unquoted `,` or `)`. Empty (nothing at all) is NULL.
        let start = i;
        let mut quoted = false;
        let mut decoded = false;
        buf.clear();
        loop {
            let b = *v.get(i)?;
            match b {
                b'"' if quoted && v.get(i + 1) == Some(&b'"') => {
                    decoded = true;
                    buf.push(b'"');
                    i += 2;
                }
                b'"' => {
                    decoded = true;
                    quoted = !quoted;
                    i += 1;
                }
                b'\\' => {
                    decoded = true;
                    buf.push(*v.get(i + 1)?);
                    i += 2;
                }
                b',' | b')' if !quoted => break,
                _ => {
                    buf.push(b);
                    i += 1;
                }
            }
        }
        let end = i;
        let field = match fields {
            Some(fs) => fs.get(k)?,
            None => &unknown,
        };
        if end > start {
            let content: &[u8] = if decoded { &buf } else { v.get(start..end)? };
            if let Some(r) = &field.rule {
                counts.record_column();
                put_record_quoted(w.replace(start, end), r);
            } else {
                masked.clear();
                match m.mask_shape(&field.shape, content, &mut masked, counts, depth + 1) {
                    Masked::Same => {}
                    Masked::Changed => put_record_quoted(w.replace(start, end), &masked),
                    Masked::Null => {
                        w.replace(start, end);
                    }
                }
            }
        }
        let sep = *v.get(i)?;
        i += 1;
        if sep == b')' {
            // Every declared field must be there (`record_in` insists on the count).
            if fields.is_some_and(|fs| fs.len() != k + 1) {
                return None;
            }
            return (skip_space(v, i) == v.len()).then_some(());
        }
    }
    None
}

/// Appends a row field inside double quotes, `"` and `\` doubled (as `record_out` writes it).
fn put_record_quoted(out: &mut Vec<u8>, v: &[u8]) {
    out.reserve(v.len() + 2);
    out.push(b'"');
    for &b in v {
        if b == b'"' || b == b'\\' {
            out.push(b);
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Splits an array literal into its elements' decoded contents (None for NULL), flattened over
/// dimensions, with the number of dimensions: what a client's parser reads. Test support (and
/// the fuzz target's oracle).
pub fn parse_array(v: &[u8], delim: u8) -> Option<(Vec<Option<Vec<u8>>>, usize)> {
    let r = ArrayReader { v, delim };
    let mut i = skip_space(v, 0);
    if v.get(i) == Some(&b'[') {
        i += memchr::memchr(b'=', v.get(i..)?)? + 1;
        i = skip_space(v, i);
    }
    if v.get(i) != Some(&b'{') {
        return None;
    }
    let (mut level, mut dims, mut expect_value) = (0usize, 0usize, true);
    let mut items = Vec::new();
    let mut buf = Vec::new();
    loop {
        i = skip_space(v, i);
        match *v.get(i)? {
            b'{' if expect_value => {
                level += 1;
                dims = dims.max(level);
                if level > super::value::MAX_DEPTH {
                    return None;
                }
                i += 1;
                if v.get(skip_space(v, i)) == Some(&b'}') {
                    expect_value = false;
                }
            }
            b'}' if !expect_value => {
                level = level.checked_sub(1)?;
                i += 1;
                if level == 0 {
                    return (skip_space(v, i) == v.len()).then_some((items, dims));
                }
            }
            b if b == delim && !expect_value && level > 0 => {
                i += 1;
                expect_value = true;
            }
            _ if expect_value => {
                let (el, next) = r.element(i, &mut buf)?;
                i = next;
                expect_value = false;
                items.push(el.present.then(|| {
                    if el.decoded {
                        buf.clone()
                    } else {
                        v.get(el.start..el.end).unwrap_or(&[]).to_vec()
                    }
                }));
            }
            _ => return None,
        }
    }
}

/// Splits a row literal into its fields' decoded contents (None for NULL). Test support.
pub fn parse_record(v: &[u8]) -> Option<Vec<Option<Vec<u8>>>> {
    let mut i = skip_space(v, 0);
    if v.get(i) != Some(&b'(') {
        return None;
    }
    i += 1;
    let mut fields = Vec::new();
    loop {
        let start = i;
        let mut quoted = false;
        let mut buf = Vec::new();
        loop {
            let b = *v.get(i)?;
            match b {
                b'"' if quoted && v.get(i + 1) == Some(&b'"') => {
                    buf.push(b'"');
                    i += 2;
                }
                b'"' => {
                    quoted = !quoted;
                    i += 1;
                }
                b'\\' => {
                    buf.push(*v.get(i + 1)?);
                    i += 2;
                }
                b',' | b')' if !quoted => break,
                _ => {
                    buf.push(b);
                    i += 1;
                }
            }
        }
        fields.push((i > start).then_some(buf));
        let sep = *v.get(i)?;
        i += 1;
        if sep == b')' {
            return (skip_space(v, i) == v.len()).then_some(fields);
        }
    }
}
