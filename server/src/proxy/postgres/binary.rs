//! The text form of binary-format PostgreSQL values, by type OID: what a recording shows for a
//! parameter a client sent in binary (tokio-postgres, JDBC, pgx send ints and timestamps so).
//! The detectors then run on that text, as on a text-format parameter, so a card number sent as
//! a binary int8 is masked like one sent as text. A type not listed here has no text form and
//! is not recorded at all (the caller shows its length).
//!
//! Written by hand: the decoders in `postgres-types` need their whole type system (and a
//! `FromSql` impl per Rust type) to give text back, and numeric needs another crate again.

use std::fmt::Write;

use super::catalog::{BinaryKind, Catalog};
use crate::policy::masking::{MaskCounts, Masked, Masker, Shape};

/// How deep binary arrays and rows are followed; deeper values are withheld.
const MAX_DEPTH: usize = 16;

/// Masks binary-format values by type: text is scanned, numbers are decoded and withheld when
/// their digits hold what a detector finds, JSON is masked keeping its syntax, and arrays, rows
/// and hstores are taken apart, each element masked by its own type (a withheld element becomes
/// NULL) and put back together. A type that cannot be read is withheld whole.
pub struct BinaryMasker<'a> {
    /// The rules.
    pub masker: &'a Masker,
    /// Type information.
    pub catalog: &'a mut Catalog,
    /// What was masked.
    pub counts: &'a mut MaskCounts,
}

impl BinaryMasker<'_> {
    /// Masks one binary value of type `oid` into `out`.
    pub fn mask(&mut self, oid: u32, v: &[u8], out: &mut Vec<u8>) -> Masked {
        self.mask_at(oid, v, out, 0)
    }

    fn withhold(&mut self) -> Masked {
        self.counts.record_withheld();
        Masked::Null
    }

    fn mask_at(&mut self, oid: u32, v: &[u8], out: &mut Vec<u8>, depth: usize) -> Masked {
        if depth > MAX_DEPTH {
            return self.withhold();
        }
        let m = self.masker;
        match self.catalog.binary_kind(oid) {
            BinaryKind::Harmless => Masked::Same,
            BinaryKind::Text => m.mask_as(&Shape::Text, v, out, self.counts),
            BinaryKind::Json => m.mask_as(&Shape::Json, v, out, self.counts),
            BinaryKind::Jsonb => match v.split_first() {
                Some((1, text)) => {
                    let mut inner = Vec::new();
                    match m.mask_as(&Shape::Json, text, &mut inner, self.counts) {
                        Masked::Changed => {
                            out.clear();
                            out.push(1);
                            out.extend_from_slice(&inner);
                            Masked::Changed
                        }
                        other => other,
                    }
                }
                _ => self.withhold(),
            },
            BinaryKind::Int8 => match <[u8; 8]>::try_from(v) {
                // Fewer than 13 digits: nothing a detector finds is that short.
                Ok(b) if i64::from_be_bytes(b).unsigned_abs() < 1_000_000_000_000 => Masked::Same,
                Ok(b) => self.number(&i64::from_be_bytes(b).to_string()),
                Err(_) => self.withhold(),
            },
            BinaryKind::Float4 => match <[u8; 4]>::try_from(v) {
                Ok(b) => self.float(f32::from_be_bytes(b).into()),
                Err(_) => self.withhold(),
            },
            BinaryKind::Float8 => match <[u8; 8]>::try_from(v) {
                Ok(b) => self.float(f64::from_be_bytes(b)),
                Err(_) => self.withhold(),
            },
            BinaryKind::Numeric => match numeric(v) {
                Some(t) => self.number(&t),
                None => self.withhold(),
            },
            BinaryKind::Array => self.array(v, out, depth),
            BinaryKind::Record(fields) => self.record(fields.as_deref(), v, out, depth),
            BinaryKind::Hstore => self.hstore(v, out),
            BinaryKind::Opaque => self.withhold(),
        }
    }

    /// A decoded number: withheld when its integer digits hold what a detector finds.
    fn number(&mut self, text: &str) -> Masked {
        if self.masker.number_detected(text.as_bytes()) {
            self.withhold()
        } else {
            Masked::Same
        }
    }

    /// A float carries a 16-digit card number exactly (`4111111111111111::float8`): judged by
    /// its integer digits, like `int8` and `numeric`.
    fn float(&mut self, f: f64) -> Masked {
        if !f.is_finite() || f.abs() < 1e12 {
            return Masked::Same;
        }
        self.number(&format!("{f:.0}"))
    }

    /// Binary array: ndim, has-nulls flag, element type, (dimension, lower bound) per
    /// dimension, then each element as a length (-1: NULL) and its bytes.
    fn array(&mut self, v: &[u8], out: &mut Vec<u8>, depth: usize) -> Masked {
        let Some(parsed) = read_array(v) else {
            return self.withhold();
        };
        let (elem, header, items) = parsed;
        let mut changed = false;
        let mut any_null = be_i32(v, 4) == Some(1);
        let mut body = Vec::with_capacity(v.len());
        let mut inner = Vec::new();
        for item in items {
            match item {
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(e) => {
                    inner.clear();
                    match self.mask_at(elem, e, &mut inner, depth + 1) {
                        Masked::Same => put_len_value(&mut body, e),
                        Masked::Changed => {
                            changed = true;
                            put_len_value(&mut body, &inner);
                        }
                        Masked::Null => {
                            changed = true;
                            any_null = true;
                            body.extend_from_slice(&(-1i32).to_be_bytes());
                        }
                    }
                }
            }
        }
        if !changed {
            return Masked::Same;
        }
        out.clear();
        out.extend_from_slice(header);
        if let Some(flag) = out.get_mut(4..8) {
            flag.copy_from_slice(&i32::from(any_null).to_be_bytes());
        }
        out.extend_from_slice(&body);
        Masked::Changed
    }

    /// Binary row: field count, then per field its type OID, a length (-1: NULL) and bytes.
    /// Fields of a relation's row type follow that relation's column rules.
    fn record(
        &mut self,
        fields: Option<&[crate::policy::masking::Field]>,
        v: &[u8],
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Masked {
        let Some(items) = read_record(v) else {
            return self.withhold();
        };
        let mut changed = false;
        let mut body = Vec::with_capacity(v.len());
        body.extend_from_slice(v.get(..4).unwrap_or(&[]));
        let mut inner = Vec::new();
        for (k, (oid, value)) in items.into_iter().enumerate() {
            body.extend_from_slice(&oid.to_be_bytes());
            let rule = fields.and_then(|f| f.get(k)).and_then(|f| f.rule.clone());
            let Some(value) = value else {
                body.extend_from_slice(&(-1i32).to_be_bytes());
                continue;
            };
            if let Some(r) = rule {
                changed = true;
                if self.catalog.binary_kind(oid) == BinaryKind::Text {
                    self.counts.record_column();
                    put_len_value(&mut body, &r);
                } else {
                    self.counts.record_withheld();
                    body.extend_from_slice(&(-1i32).to_be_bytes());
                }
                continue;
            }
            inner.clear();
            match self.mask_at(oid, value, &mut inner, depth + 1) {
                Masked::Same => put_len_value(&mut body, value),
                Masked::Changed => {
                    changed = true;
                    put_len_value(&mut body, &inner);
                }
                Masked::Null => {
                    changed = true;
                    body.extend_from_slice(&(-1i32).to_be_bytes());
                }
            }
        }
        if !changed {
            return Masked::Same;
        }
        out.clear();
        out.extend_from_slice(&body);
        Masked::Changed
    }

    /// Binary hstore: pair count, then per pair the key (length, bytes) and the value
    /// (length, -1 for NULL, bytes). Keys naming a ruled column have their value replaced.
    fn hstore(&mut self, v: &[u8], out: &mut Vec<u8>) -> Masked {
        let Some(pairs) = read_hstore(v) else {
            return self.withhold();
        };
        let m = self.masker;
        let mut changed = false;
        let mut body = v.get(..4).unwrap_or(&[]).to_vec();
        let mut masked = Vec::new();
        for (key, value) in pairs {
            masked.clear();
            if m.mask_into(key, &mut masked, self.counts) {
                changed = true;
                put_len_value(&mut body, &masked);
            } else {
                put_len_value(&mut body, key);
            }
            let rule = std::str::from_utf8(key)
                .ok()
                .and_then(|k| m.column_replacement(None, k));
            match (value, rule) {
                (None, _) => body.extend_from_slice(&(-1i32).to_be_bytes()),
                (Some(_), Some(r)) => {
                    changed = true;
                    self.counts.record_column();
                    put_len_value(&mut body, r);
                }
                (Some(val), None) => {
                    masked.clear();
                    if m.mask_into(val, &mut masked, self.counts) {
                        changed = true;
                        put_len_value(&mut body, &masked);
                    } else {
                        put_len_value(&mut body, val);
                    }
                }
            }
        }
        if !changed {
            return Masked::Same;
        }
        out.clear();
        out.extend_from_slice(&body);
        Masked::Changed
    }
}

fn be_i32(v: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(v.get(at..at + 4)?.try_into().ok()?))
}

fn put_len_value(out: &mut Vec<u8>, v: &[u8]) {
    out.extend_from_slice(&(v.len() as i32).to_be_bytes());
    out.extend_from_slice(v);
}

/// Reads a length-prefixed value at `at`: the value (None: NULL) and the position after it.
fn read_value(v: &[u8], at: usize) -> Option<(Option<&[u8]>, usize)> {
    let len = be_i32(v, at)?;
    if len < 0 {
        return Some((None, at + 4));
    }
    let len = usize::try_from(len).ok()?;
    Some((Some(v.get(at + 4..at + 4 + len)?), at + 4 + len))
}

/// One binary array value split up (element type, header bytes, elements).
type ArrayParts<'a> = (u32, &'a [u8], Vec<Option<&'a [u8]>>);

/// Splits a binary array: element type, header bytes, elements in order. None when it does
/// not hold together.
pub fn read_array(v: &[u8]) -> Option<ArrayParts<'_>> {
    let ndim = usize::try_from(be_i32(v, 0)?).ok()?;
    if ndim > 6 {
        return None;
    }
    let elem = u32::try_from(be_i32(v, 8)?).unwrap_or(0);
    let header_len = 12 + 8 * ndim;
    let header = v.get(..header_len)?;
    let mut count: usize = if ndim == 0 { 0 } else { 1 };
    for d in 0..ndim {
        let n = usize::try_from(be_i32(v, 12 + 8 * d)?).ok()?;
        count = count.checked_mul(n)?;
    }
    if count > v.len() / 4 {
        return None;
    }
    let mut items = Vec::with_capacity(count);
    let mut at = header_len;
    for _ in 0..count {
        let (item, next) = read_value(v, at)?;
        items.push(item);
        at = next;
    }
    (at == v.len()).then_some((elem, header, items))
}

/// One field of a binary row: its type OID and value (None: NULL).
type RecordField<'a> = (u32, Option<&'a [u8]>);

/// Splits a binary row: each field's type OID and value.
pub fn read_record(v: &[u8]) -> Option<Vec<RecordField<'_>>> {
    let n = usize::try_from(be_i32(v, 0)?).ok()?;
    if n > v.len() / 8 {
        return None;
    }
    let mut fields = Vec::with_capacity(n);
    let mut at = 4;
    for _ in 0..n {
        let oid = u32::try_from(be_i32(v, at)?).unwrap_or(0);
        let (value, next) = read_value(v, at + 4)?;
        fields.push((oid, value));
        at = next;
    }
    (at == v.len()).then_some(fields)
}

/// One key and value of a binary hstore.
type HstorePair<'a> = (&'a [u8], Option<&'a [u8]>);

/// Splits a binary hstore into its pairs.
pub fn read_hstore(v: &[u8]) -> Option<Vec<HstorePair<'_>>> {
    let n = usize::try_from(be_i32(v, 0)?).ok()?;
    if n > v.len() / 8 {
        return None;
    }
    let mut pairs = Vec::with_capacity(n);
    let mut at = 4;
    for _ in 0..n {
        let (key, next) = read_value(v, at)?;
        let (value, next) = read_value(v, next)?;
        pairs.push((key?, value));
        at = next;
    }
    (at == v.len()).then_some(pairs)
}

/// The text of a binary value of type `oid`, as PostgreSQL would print it; None if the type
/// has no text form here or the bytes do not decode as that type.
pub fn text(oid: u32, v: &[u8]) -> Option<String> {
    match oid {
        16 => match v {
            [0] => Some("f".into()),
            [1] => Some("t".into()),
            _ => None,
        },
        21 => Some(i16::from_be_bytes(v.try_into().ok()?).to_string()),
        23 => Some(i32::from_be_bytes(v.try_into().ok()?).to_string()),
        20 => Some(i64::from_be_bytes(v.try_into().ok()?).to_string()),
        26 => Some(u32::from_be_bytes(v.try_into().ok()?).to_string()),
        700 => Some(float(f32::from_be_bytes(v.try_into().ok()?).into())),
        701 => Some(float(f64::from_be_bytes(v.try_into().ok()?))),
        // text, varchar, bpchar, name, json, unknown, xml: the binary form is the text itself.
        25 | 1043 | 1042 | 19 | 114 | 705 | 142 => std::str::from_utf8(v).ok().map(String::from),
        // jsonb: a version byte, then the text.
        3802 => match v.split_first() {
            Some((1, rest)) => std::str::from_utf8(rest).ok().map(String::from),
            _ => None,
        },
        1700 => numeric(v),
        2950 => uuid(v),
        1082 => date(i32::from_be_bytes(v.try_into().ok()?)),
        1083 => Some(clock(i64::from_be_bytes(v.try_into().ok()?))),
        1114 | 1184 => timestamp(i64::from_be_bytes(v.try_into().ok()?), oid == 1184),
        _ => None,
    }
}

fn float(f: f64) -> String {
    match f {
        f if f.is_nan() => "NaN".into(),
        f64::INFINITY => "Infinity".into(),
        f64::NEG_INFINITY => "-Infinity".into(),
        f => f.to_string(),
    }
}

/// numeric: ndigits, weight, sign, dscale (int16 each), then ndigits base-10000 digits; the
/// value is the digits with the first one at 10000^weight, printed with dscale decimals.
fn numeric(v: &[u8]) -> Option<String> {
    let word = |i: usize| {
        v.get(i..i + 2)
            .and_then(|b| b.try_into().ok())
            .map(i16::from_be_bytes)
    };
    let ndigits = usize::try_from(word(0)?).ok()?;
    let weight = i32::from(word(2)?);
    let sign = word(4)? as u16;
    let dscale = usize::try_from(word(6)?).ok()?;
    if v.len() != 8 + 2 * ndigits {
        return None;
    }
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => return None,
    };
    // Digit `i` (0 = the first stored one); those not stored are zeros.
    let digit = |i: i32| -> i16 {
        usize::try_from(i)
            .ok()
            .filter(|i| *i < ndigits)
            .and_then(|i| word(8 + 2 * i))
            .unwrap_or(0)
    };
    if digit_range_bad(v, ndigits) {
        return None;
    }
    let mut s = String::new();
    if negative {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for d in 0..=weight {
            let _ = if d == 0 {
                write!(s, "{}", digit(d))
            } else {
                write!(s, "{:04}", digit(d))
            };
        }
    }
    if dscale > 0 {
        s.push('.');
        let start = s.len();
        let mut d = weight + 1;
        while s.len() - start < dscale {
            let _ = write!(s, "{:04}", digit(d));
            d += 1;
        }
        s.truncate(start + dscale);
    }
    Some(s)
}

/// True when a stored numeric digit is outside 0..=9999 (not a value PostgreSQL sends).
fn digit_range_bad(v: &[u8], ndigits: usize) -> bool {
    v.get(8..8 + 2 * ndigits).is_none_or(|d| {
        d.chunks_exact(2).any(|c| {
            <[u8; 2]>::try_from(c).map_or(true, |b| !(0..=9999).contains(&i16::from_be_bytes(b)))
        })
    })
}

fn uuid(v: &[u8]) -> Option<String> {
    if v.len() != 16 {
        return None;
    }
    let mut s = String::with_capacity(36);
    for (i, b) in v.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{b:02x}");
    }
    Some(s)
}

/// PostgreSQL's dates and timestamps count from 2000-01-01 (Julian day 2451545).
const PG_EPOCH_JULIAN_DAY: i32 = 2_451_545;

fn date(days: i32) -> Option<String> {
    match days {
        i32::MAX => Some("infinity".into()),
        i32::MIN => Some("-infinity".into()),
        d => {
            let date = time::Date::from_julian_day(PG_EPOCH_JULIAN_DAY.checked_add(d)?).ok()?;
            date.format(time::macros::format_description!("[year]-[month]-[day]"))
                .ok()
        }
    }
}

/// A time of day in microseconds since midnight.
fn clock(us: i64) -> String {
    let (secs, frac) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if frac == 0 {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}.{frac:06}")
    }
}

fn timestamp(us: i64, with_zone: bool) -> Option<String> {
    const DAY_US: i64 = 86_400_000_000;
    match us {
        i64::MAX => return Some("infinity".into()),
        i64::MIN => return Some("-infinity".into()),
        _ => {}
    }
    let mut s = date(i32::try_from(us.div_euclid(DAY_US)).ok()?)?;
    s.push(' ');
    s.push_str(&clock(us.rem_euclid(DAY_US)));
    if with_zone {
        s.push_str("+00");
    }
    Some(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::text;
    use proptest::prelude::*;

    proptest! {
        /// No bytes make a decoder panic; integers print as Rust prints them.
        #[test]
        fn arbitrary_values_never_panic(
            oid in prop::sample::select(vec![16u32, 20, 21, 23, 25, 26, 700, 701, 1082, 1083, 1114, 1184, 1700, 2950, 3802, 17]),
            v in proptest::collection::vec(any::<u8>(), 0..40),
            n in any::<i64>(),
        ) {
            let _ = text(oid, &v);
            prop_assert_eq!(text(20, &n.to_be_bytes()), Some(n.to_string()));
            let _ = text(1082, &(n as i32).to_be_bytes());
            let _ = text(1114, &n.to_be_bytes());
            let _ = text(1083, &n.to_be_bytes());
        }
    }

    /// numeric's binary form: ndigits, weight, sign, dscale, digits.
    fn num(weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [digits.len() as i16, weight, sign as i16, dscale] {
            v.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn integers_floats_and_bools() {
        assert_eq!(text(23, &1i32.to_be_bytes()).unwrap(), "1");
        assert_eq!(text(21, &(-7i16).to_be_bytes()).unwrap(), "-7");
        assert_eq!(
            text(20, &4_111_111_111_111_111i64.to_be_bytes()).unwrap(),
            "4111111111111111"
        );
        assert_eq!(
            text(26, &4_000_000_000u32.to_be_bytes()).unwrap(),
            "4000000000"
        );
        assert_eq!(text(701, &0.5f64.to_be_bytes()).unwrap(), "0.5");
        assert_eq!(text(700, &f32::INFINITY.to_be_bytes()).unwrap(), "Infinity");
        assert_eq!(text(16, &[1]).unwrap(), "t");
        assert_eq!(text(23, &[0, 1]), None, "wrong length");
        assert_eq!(text(16, &[2]), None);
    }

    #[test]
    fn numerics_print_as_postgres_does() {
        // 4111111111111111 = 4111 1111 1111 1111 (weight 3).
        assert_eq!(
            text(1700, &num(3, 0, 0, &[4111, 1111, 1111, 1111])).unwrap(),
            "4111111111111111"
        );
        // -12.5 = 12 . 5000, dscale 1.
        assert_eq!(
            text(1700, &num(0, 0x4000, 1, &[12, 5000])).unwrap(),
            "-12.5"
        );
        // 0.0042, dscale 4: the first digit is at 10000^-1.
        assert_eq!(text(1700, &num(-1, 0, 4, &[42])).unwrap(), "0.0042");
        // 20000 stored as one digit 2 at weight 1 (trailing zeros are not stored).
        assert_eq!(text(1700, &num(1, 0, 0, &[2])).unwrap(), "20000");
        assert_eq!(text(1700, &num(0, 0, 2, &[])).unwrap(), "0.00");
        assert_eq!(text(1700, &num(0, 0xC000, 0, &[])).unwrap(), "NaN");
        assert_eq!(
            text(1700, &num(0, 0, 0, &[10000])),
            None,
            "digit out of range"
        );
        assert_eq!(text(1700, &num(0, 0x1234, 0, &[1])), None, "unknown sign");
        let mut short = num(0, 0, 0, &[1, 2]);
        short.pop();
        assert_eq!(text(1700, &short), None);
    }

    #[test]
    fn text_json_uuid_and_times() {
        assert_eq!(text(25, b"ada@example.com").unwrap(), "ada@example.com");
        assert_eq!(text(25, &[0xff]), None, "not UTF-8");
        assert_eq!(text(3802, b"\x01{\"a\":1}").unwrap(), "{\"a\":1}");
        assert_eq!(text(3802, b"\x02{}"), None, "unknown jsonb version");
        let u: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            text(2950, &u).unwrap(),
            "00010203-0405-0607-0809-0a0b0c0d0e0f"
        );
        assert_eq!(text(1082, &0i32.to_be_bytes()).unwrap(), "2000-01-01");
        assert_eq!(text(1082, &(-1i32).to_be_bytes()).unwrap(), "1999-12-31");
        assert_eq!(text(1082, &i32::MAX.to_be_bytes()).unwrap(), "infinity");
        let noon = 12 * 3_600_000_000i64 + 1;
        assert_eq!(text(1083, &noon.to_be_bytes()).unwrap(), "12:00:00.000001");
        // 2026-12-03 10:20:30 UTC.
        let us = (1_796_293_230i64 - 946_684_800) * 1_000_000;
        assert_eq!(
            text(1184, &us.to_be_bytes()).unwrap(),
            "2026-12-03 10:20:30+00"
        );
        assert_eq!(
            text(1114, &us.to_be_bytes()).unwrap(),
            "2026-12-03 10:20:30"
        );
        assert_eq!(text(17, b"bytes"), None, "bytea has no text form here");
        assert_eq!(text(1186, &[0; 16]), None);
    }
}
