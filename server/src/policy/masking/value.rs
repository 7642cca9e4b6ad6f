//! Masking a value by its type, so that what comes out still parses as that type: every element
//! of an array, every field of a row, every string (and key) of a JSON document, every key and
//! value of an hstore is masked on its own, and the syntax around them is kept.
//!
//! The adapter describes each column's type as a [`Shape`] once per result description (for
//! PostgreSQL from `pg_type`, loaded once per session) and calls [`Masker::mask_as`] per value.
//! A plain [`Shape::Text`] value costs exactly what [`Masker::mask_into`] costs: the structured
//! shapes are only paid for by the columns that have them.
//!
//! Why the structure matters: detectors scan text, and the text of a structured value mixes
//! data with syntax. An address's local part may hold `{` (it is RFC 5322 `atext`), so masking
//! the text of `{ada@example.com,bob@example.org}` as a whole ate the array's opening brace and
//! left a value no client could parse. A number masked to `************1111` is no longer a
//! number. Here each element is decoded, masked by its own shape and re-encoded, and a number
//! that holds something a detector finds becomes NULL (JSON `null`), which every client parses.

use std::sync::Arc;

use super::{MaskCounts, Masker};

/// How deep structured values are followed (arrays in records in JSON ...). Deeper values are
/// judged whole: withheld when anything in them is detected.
pub(crate) const MAX_DEPTH: usize = 32;

/// The syntax of a value, as far as masking needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Free text: the detectors run over all of it.
    Text,
    /// A number written in decimal (or scientific) notation: withheld (NULL) when its integer
    /// digits hold something a detector finds, since a number masked with `*` is not a number.
    Number,
    /// A value whose syntax masking cannot keep (a range, a geometric value): withheld when a
    /// detector finds anything in its text.
    Whole,
    /// The text of a value of unknown type (a field of an anonymous record): read as an array
    /// or a row when it is written like one, as a number when it is one, else as text.
    Unknown,
    /// A JSON document: strings and keys masked as text, numbers as [`Shape::Number`] (a
    /// withheld number becomes `null`), and the value of a member whose key is the name of a
    /// column under a column rule replaced by that rule's replacement.
    Json,
    /// An hstore: keys and values masked as text; a value whose key names a column under a
    /// column rule is replaced.
    Hstore,
    /// An array literal (`{a,"b c",NULL}`, any number of dimensions, optional bounds
    /// decoration `[0:1]={...}`), elements of `elem` separated by `delim`.
    Array {
        /// The elements' shape.
        elem: Arc<Shape>,
        /// The separator between elements (`,` for every type but `box`, which uses `;`).
        delim: u8,
    },
    /// A row literal (`(1,"a b",)`): each field by its own shape and column rule. None: an
    /// anonymous record, whose fields are [`Shape::Unknown`].
    Record(Option<Arc<[Field]>>),
}

/// One field of a row type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The field's shape.
    pub shape: Shape,
    /// The replacement when the field is a column under a column rule (the row type of a
    /// table whose column is ruled): the whole field is replaced.
    pub rule: Option<Arc<[u8]>>,
}

impl Field {
    /// A field with no column rule.
    pub fn plain(shape: Shape) -> Self {
        Field { shape, rule: None }
    }
}

/// What masking did to one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Masked {
    /// Nothing to mask: send the value as it came.
    Same,
    /// The masked value is in the output buffer.
    Changed,
    /// Withhold the value: send NULL.
    Null,
}

impl Shape {
    /// True when values of this shape need [`Masker::mask_as`] rather than the plain text path.
    pub fn is_structured(&self) -> bool {
        !matches!(self, Shape::Text)
    }

    /// True when this shape, or one inside it, carries a column rule of its own.
    pub fn has_rules(&self) -> bool {
        match self {
            Shape::Array { elem, .. } => elem.has_rules(),
            Shape::Record(Some(fields)) => fields
                .iter()
                .any(|f| f.rule.is_some() || f.shape.has_rules()),
            _ => false,
        }
    }
}

impl Masker {
    /// Masks one text-format value of the given shape into `out` (cleared first when the
    /// value changes). The result keeps the value's syntax: see the module documentation.
    pub fn mask_as(
        &self,
        shape: &Shape,
        value: &[u8],
        out: &mut Vec<u8>,
        counts: &mut MaskCounts,
    ) -> Masked {
        self.mask_shape(shape, value, out, counts, 0)
    }

    pub(crate) fn mask_shape(
        &self,
        shape: &Shape,
        value: &[u8],
        out: &mut Vec<u8>,
        counts: &mut MaskCounts,
        depth: usize,
    ) -> Masked {
        if depth > MAX_DEPTH {
            return self.mask_whole(value, counts);
        }
        match shape {
            Shape::Text => {
                if self.mask_into(value, out, counts) {
                    Masked::Changed
                } else {
                    Masked::Same
                }
            }
            Shape::Number => {
                if self.number_detected(value) {
                    counts.record_withheld();
                    Masked::Null
                } else {
                    Masked::Same
                }
            }
            Shape::Whole => self.mask_whole(value, counts),
            Shape::Unknown => self.mask_unknown(value, out, counts, depth),
            Shape::Json => super::json::mask(self, value, out, counts, depth),
            Shape::Hstore => super::hstore::mask(self, value, out, counts, depth),
            Shape::Array { elem, delim } => {
                super::literal::mask_array(self, elem, *delim, value, out, counts, depth)
            }
            Shape::Record(fields) => {
                super::literal::mask_record(self, fields.as_deref(), value, out, counts, depth)
            }
        }
    }

    /// A value judged as a whole: withheld when anything in it is detected.
    pub(crate) fn mask_whole(&self, value: &[u8], counts: &mut MaskCounts) -> Masked {
        if self.detects(value) {
            counts.record_withheld();
            Masked::Null
        } else {
            Masked::Same
        }
    }

    fn mask_unknown(
        &self,
        value: &[u8],
        out: &mut Vec<u8>,
        counts: &mut MaskCounts,
        depth: usize,
    ) -> Masked {
        let trimmed = value.trim_ascii();
        let shape = match (trimmed.first(), trimmed.last()) {
            (Some(b'{'), Some(b'}')) => Shape::Array {
                elem: Arc::new(Shape::Unknown),
                delim: b',',
            },
            (Some(b'('), Some(b')')) => Shape::Record(None),
            _ if number_parts(value).is_some() => Shape::Number,
            _ => Shape::Text,
        };
        self.mask_shape(&shape, value, out, counts, depth + 1)
    }

    /// True when a number's integer digits (scientific notation expanded) hold something a
    /// detector finds: a card number stored in an `int8`, a `numeric` or a `float8`.
    pub fn number_detected(&self, value: &[u8]) -> bool {
        let Some(parts) = number_parts(value) else {
            // Not a plain number (NaN, Infinity, or text in a number's place): as text.
            return self.detects(value);
        };
        // Fewer than 13 integer digits cannot hold a card number, and nothing else a detector
        // finds is written as a bare number: the cheap exit nearly every number takes.
        if parts.int_digits() < 13 {
            return false;
        }
        let mut digits = [0u8; MAX_NUMBER_DIGITS];
        let n = parts.write_integer(&mut digits);
        self.detects(digits.get(..n).unwrap_or(&[]))
    }
}

/// Integer digits looked at, at most (a card number has 19; a float can print 300).
const MAX_NUMBER_DIGITS: usize = 40;

/// A number in text: `[+-]digits[.digits][e[+-]digits]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NumberParts<'a> {
    int: &'a [u8],
    frac: &'a [u8],
    exp: i32,
}

impl NumberParts<'_> {
    /// How many digits the integer part has once the exponent is applied.
    fn int_digits(&self) -> usize {
        let lead = self.int.iter().take_while(|b| **b == b'0').count();
        let int = self.int.len() - lead;
        let pos = i64::try_from(int).unwrap_or(i64::MAX) + i64::from(self.exp);
        if int == 0 {
            // All of it is in the fraction: `0.0041e5` is 410.
            let zeros = self.frac.iter().take_while(|b| **b == b'0').count();
            let pos = i64::from(self.exp) - i64::try_from(zeros).unwrap_or(i64::MAX);
            return usize::try_from(pos).unwrap_or(0);
        }
        usize::try_from(pos).unwrap_or(0)
    }

    /// Writes the integer digits (at most `out.len()`, leading zeros dropped) and returns how
    /// many were written.
    fn write_integer(&self, out: &mut [u8]) -> usize {
        let n = self.int_digits().min(out.len());
        let mut written = 0;
        let mut mantissa = self.int.iter().chain(self.frac.iter()).copied();
        // Skip leading zeros of the mantissa.
        let mut first = mantissa.next();
        while first == Some(b'0') {
            first = mantissa.next();
        }
        let mut next = first;
        for slot in out.iter_mut().take(n) {
            *slot = next.unwrap_or(b'0');
            next = mantissa.next();
            written += 1;
        }
        written
    }
}

/// Splits a plain decimal number; None for anything else.
pub(crate) fn number_parts(v: &[u8]) -> Option<NumberParts<'_>> {
    let v = v.trim_ascii();
    let v = match v.first() {
        Some(b'-' | b'+') => v.get(1..)?,
        _ => v,
    };
    let int_len = v.iter().take_while(|b| b.is_ascii_digit()).count();
    let (int, mut rest) = v.split_at(int_len);
    let mut frac: &[u8] = &[];
    if let Some((b'.', r)) = rest.split_first() {
        let n = r.iter().take_while(|b| b.is_ascii_digit()).count();
        frac = r.get(..n)?;
        rest = r.get(n..)?;
    }
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut exp = 0i32;
    if let Some((b'e' | b'E', r)) = rest.split_first() {
        let (neg, r) = match r.split_first() {
            Some((b'-', r)) => (true, r),
            Some((b'+', r)) => (false, r),
            _ => (false, r),
        };
        if r.is_empty() || !r.iter().all(u8::is_ascii_digit) {
            return None;
        }
        // Clamp: an exponent of thousands only means "very large" or "zero" here.
        let mut e = 0i32;
        for d in r {
            e = (e * 10 + i32::from(d - b'0')).min(10_000);
        }
        exp = if neg { -e } else { e };
        rest = &[];
    }
    rest.is_empty().then_some(NumberParts { int, frac, exp })
}

/// Appends `v` to `out` inside double quotes, with `"` and `\` escaped by a backslash (the
/// quoting of array elements and hstore keys and values).
pub(crate) fn put_backslash_quoted(out: &mut Vec<u8>, v: &[u8]) {
    out.reserve(v.len() + 2);
    out.push(b'"');
    for &b in v {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Builds a masked copy of `src` lazily: nothing is written until the first change, then the
/// unchanged stretch before each change is copied once.
pub(crate) struct Rewriter<'a> {
    src: &'a [u8],
    out: &'a mut Vec<u8>,
    copied: usize,
    started: bool,
}

impl<'a> Rewriter<'a> {
    pub(crate) fn new(src: &'a [u8], out: &'a mut Vec<u8>) -> Self {
        Rewriter {
            src,
            out,
            copied: 0,
            started: false,
        }
    }

    /// Starts replacing `src[start..end]`: copies what precedes it and returns the output to
    /// write the replacement into.
    pub(crate) fn replace(&mut self, start: usize, end: usize) -> &mut Vec<u8> {
        if !self.started {
            self.started = true;
            self.out.clear();
            self.out.reserve(self.src.len() + 16);
        }
        let from = self.copied.min(start);
        self.out
            .extend_from_slice(self.src.get(from..start).unwrap_or(&[]));
        self.copied = end.max(self.copied);
        self.out
    }

    /// Finishes: the result, with the rest of `src` copied when anything changed.
    pub(crate) fn finish(self) -> Masked {
        if !self.started {
            return Masked::Same;
        }
        self.out
            .extend_from_slice(self.src.get(self.copied..).unwrap_or(&[]));
        Masked::Changed
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn int_of(s: &str) -> String {
        let p = number_parts(s.as_bytes()).unwrap();
        let mut buf = [0u8; MAX_NUMBER_DIGITS];
        let n = p.write_integer(&mut buf);
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn integer_digits_of_numbers() {
        assert_eq!(int_of("4111111111111111"), "4111111111111111");
        assert_eq!(int_of("-4111111111111111.00"), "4111111111111111");
        assert_eq!(int_of("4.111111111111111e+15"), "4111111111111111");
        assert_eq!(int_of("4.111111111111111E15"), "4111111111111111");
        assert_eq!(int_of("41111111111111.11e2"), "4111111111111111");
        assert_eq!(int_of("0.4111111111111111e16"), "4111111111111111");
        assert_eq!(int_of("0.004111111111111111e18"), "4111111111111111");
        assert_eq!(int_of("4.1e20"), "410000000000000000000");
        assert_eq!(int_of("0.5"), "");
        assert_eq!(int_of("12e-1"), "1");
        assert_eq!(int_of("007"), "7");
        assert!(number_parts(b"NaN").is_none());
        assert!(number_parts(b"1e").is_none());
        assert!(number_parts(b"1.2.3").is_none());
        assert!(number_parts(b".").is_none());
        assert!(number_parts(b"").is_none());
        assert!(number_parts(b"1e99999999999999").is_some());
    }
}
