//! The content detectors: one table-driven pass over a value, and hand-written precise checks
//! that run only where that pass found a candidate.
//!
//! Why hand-written rather than `regex`: every detector needs a check a regular expression
//! cannot express (Luhn, IBAN mod-97 and per-country length, SSN area rules, one consistent
//! separator, group-aligned sub-ranges of a longer digit chain, priority of e-mail over the
//! digits inside its local part), so a regex would only locate candidates that are then parsed
//! again. The hot path is "no candidate at all" on a short cell, which a byte-class table decides
//! in about a cycle per byte with no per-call setup, where a regex search pays its own setup on
//! every cell. Each check is a few lines over bytes and is unit tested below.
//!
//! All access goes through [`byte`], which reads 0 outside the slice: 0 belongs to no class, so
//! looking before the start or past the end simply reads "boundary", and `i.wrapping_sub(k)`
//! before the start wraps to an index that is out of range.

use super::{Detector, SecretKind};

/// Class bit: an ASCII digit starts a digit chain (card, SSN, phone, IBAN check digits).
pub(crate) const DIGIT: u8 = 1;
/// Class bit: a byte that may anchor a secret (`A` for AKIA/ASIA/AIza, `_` for `gh?_`,
/// `github_pat_`, `sk_live_`, `-` for `xox?-` and `-----BEGIN`, `J` for `eyJ`). These anchors
/// were chosen because they are rare in prose, unlike the first letters of the prefixes.
pub(crate) const SECRET: u8 = 2;
/// Class bit: `@`, the anchor of an e-mail address.
pub(crate) const AT: u8 = 4;

/// Longest IBAN (Russia, 33; the standard allows 34).
const IBAN_MAX: usize = 34;
/// How far after `-----BEGIN ` the closing `-----` of a header may be: a label longer than
/// 64 bytes is not one we know.
pub(crate) const PEM_HEADER_TAIL: usize = 64 + 5;

/// Which detectors run, and the class table derived from them.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub class: [u8; 256],
    pub card: bool,
    pub ssn: bool,
    pub phone: bool,
    pub iban: bool,
    pub email: bool,
    pub secrets: bool,
    /// A custom e-mail replacement replaces the whole address; the default keeps the domain.
    pub email_whole: bool,
}

impl Plan {
    /// Builds the class table so that disabled detectors cost nothing in the scan.
    pub(crate) fn new(enabled: &[Detector], email_whole: bool) -> Self {
        let on = |d: Detector| enabled.contains(&d);
        let mut plan = Plan {
            class: [0; 256],
            card: on(Detector::CreditCard),
            ssn: on(Detector::Ssn),
            phone: on(Detector::Phone),
            iban: on(Detector::Iban),
            email: on(Detector::Email),
            secrets: on(Detector::Secret),
            email_whole,
        };
        if plan.card || plan.ssn || plan.phone || plan.iban {
            for b in b'0'..=b'9' {
                if let Some(c) = plan.class.get_mut(usize::from(b)) {
                    *c |= DIGIT;
                }
            }
        }
        if plan.secrets {
            for b in [b'A', b'_', b'-', b'J'] {
                if let Some(c) = plan.class.get_mut(usize::from(b)) {
                    *c |= SECRET;
                }
            }
        }
        if plan.email
            && let Some(c) = plan.class.get_mut(usize::from(b'@'))
        {
            *c |= AT;
        }
        plan
    }

    pub(crate) fn any(&self) -> bool {
        self.card || self.ssn || self.phone || self.iban || self.email || self.secrets
    }

    #[inline(always)]
    fn class_of(&self, b: u8) -> u8 {
        self.class.get(usize::from(b)).copied().unwrap_or(0)
    }
}

/// How a hit is rendered when its rule set has no custom replacement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Render {
    /// Every digit becomes `*`, separators stay; the last four digits stay when `keep_tail`.
    Digits { keep_tail: bool },
    /// The country code stays, other letters and digits become `*`, the last four stay when
    /// `keep_tail`.
    Iban { keep_tail: bool },
    /// The local part of an address becomes `***` (the span covers only the local part).
    EmailLocal,
    /// `[REDACTED:<kind>]`.
    Secret(SecretKind),
}

/// One match, `[start, end)` in the scanned value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hit {
    pub start: usize,
    pub end: usize,
    pub detector: Detector,
    pub render: Render,
}

/// Receives hits in order, never overlapping. Returns false to stop the scan.
pub(crate) trait Sink {
    fn hit(&mut self, hit: Hit) -> bool;
}

#[inline(always)]
pub(crate) fn byte(v: &[u8], i: usize) -> u8 {
    v.get(i).copied().unwrap_or(0)
}

#[inline(always)]
fn is_digit(b: u8) -> bool {
    b.is_ascii_digit()
}

#[inline(always)]
fn is_upper(b: u8) -> bool {
    b.is_ascii_uppercase()
}

#[inline(always)]
fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Bytes that may separate the digit groups of one chain (`4111 1111`, `(555) 123-4567`,
/// `555.123.4567`). Up to two of them in a row join groups.
#[inline(always)]
const fn is_chain_sep(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.' | b'(' | b')')
}

/// RFC 5322 `atext` plus `.`, except `*`: the masked local part is `***`, and leaving `*` out
/// is what makes a masked address unrecognisable (idempotence).
#[inline(always)]
pub(crate) fn is_local(b: u8) -> bool {
    is_alnum(b)
        || matches!(
            b,
            b'.' | b'!'
                | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'+'
                | b'-'
                | b'/'
                | b'='
                | b'?'
                | b'^'
                | b'_'
                | b'`'
                | b'{'
                | b'|'
                | b'}'
                | b'~'
        )
}

#[inline(always)]
fn is_domain(b: u8) -> bool {
    is_alnum(b) || b == b'.' || b == b'-'
}

#[inline(always)]
fn is_b64url(b: u8) -> bool {
    is_alnum(b) || b == b'-' || b == b'_'
}

fn digit_run(v: &[u8], from: usize) -> usize {
    v.get(from..)
        .map_or(0, |s| s.iter().take_while(|b| is_digit(**b)).count())
}

fn run_while(v: &[u8], from: usize, f: impl Fn(u8) -> bool) -> usize {
    v.get(from..)
        .map_or(0, |s| s.iter().take_while(|b| f(**b)).count())
}

/// True when the bytes at `end` continue the chain: up to two separators, then a digit (or,
/// for IBANs, an uppercase letter or digit: the groups an IBAN is made of). Kept trailing digits next to such a continuation could
/// combine with it into a new candidate on a second pass, so then nothing is kept.
fn continues(v: &[u8], end: usize, alnum: bool) -> bool {
    let mut q = end;
    let mut seps = 0;
    while seps < 2 && is_chain_sep(byte(v, q)) {
        q += 1;
        seps += 1;
    }
    let b = byte(v, q);
    if alnum {
        is_digit(b) || is_upper(b)
    } else {
        is_digit(b)
    }
}

/// The Luhn check over digit values 0–9.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, d) in digits.iter().rev().enumerate() {
        let mut x = u32::from(*d);
        if k % 2 == 1 {
            x *= 2;
            if x > 9 {
                x -= 9;
            }
        }
        sum += x;
    }
    sum.is_multiple_of(10)
}

/// The ISO 13616 check: move the first four characters to the end, letters count as 10–35,
/// and the number mod 97 must be 1. Computed piecewise so it never overflows.
pub(crate) fn iban_mod97(chars: &[u8]) -> bool {
    if chars.len() < 5 {
        return false;
    }
    let (head, tail) = chars.split_at(4);
    let mut r = 0u32;
    for &b in tail.iter().chain(head) {
        r = if is_digit(b) {
            (r * 10 + u32::from(b - b'0')) % 97
        } else if is_upper(b) {
            (r * 100 + u32::from(b - b'A') + 10) % 97
        } else {
            return false;
        };
    }
    r == 1
}

/// IBAN length by country (SWIFT IBAN registry). A country not listed is not matched: the
/// length is what lets a grouped IBAN stop at the right place (`BE68 5390 0754 7034 AND`).
pub(crate) fn iban_length(c0: u8, c1: u8) -> Option<usize> {
    let n = match [c0, c1] {
        [b'N', b'O'] => 15,
        [b'B', b'E'] => 16,
        [b'D', b'K' | b'F' | b'L'] | [b'F', b'I' | b'K' | b'O'] | [b'G', b'L'] => 18,
        [b'N', b'L'] | [b'S', b'D'] => 18,
        [b'M', b'K'] | [b'S', b'I'] => 19,
        [b'A', b'T'] | [b'B', b'A'] | [b'E', b'E'] | [b'K', b'Z'] | [b'L', b'T' | b'U'] => 20,
        [b'M', b'N'] | [b'X', b'K'] => 20,
        [b'C', b'H'] | [b'H', b'R'] | [b'L', b'I' | b'V'] => 21,
        [b'B', b'G' | b'H'] | [b'C', b'R'] | [b'D', b'E'] | [b'G', b'B' | b'E'] => 22,
        [b'I', b'E'] | [b'M', b'E'] | [b'R', b'S'] | [b'V', b'A'] => 22,
        [b'A', b'E'] | [b'G', b'I'] | [b'I', b'L' | b'Q'] | [b'O', b'M'] | [b'S', b'O'] => 23,
        [b'T', b'L'] => 23,
        [b'A', b'D'] | [b'C', b'Z'] | [b'E', b'S'] | [b'M', b'D'] | [b'P', b'K'] => 24,
        [b'R', b'O'] | [b'S', b'A' | b'E' | b'K'] | [b'T', b'N'] | [b'V', b'G'] => 24,
        [b'L', b'Y'] | [b'P', b'T'] | [b'S', b'T'] => 25,
        [b'I', b'S'] | [b'T', b'R'] => 26,
        [b'B', b'I'] | [b'D', b'J'] | [b'F', b'R'] | [b'G', b'R'] | [b'I', b'T'] => 27,
        [b'M', b'C' | b'R'] | [b'S', b'M'] => 27,
        [b'A', b'L' | b'Z'] | [b'B', b'Y'] | [b'C', b'Y'] | [b'D', b'O'] | [b'G', b'T'] => 28,
        [b'H', b'U'] | [b'L', b'B'] | [b'N', b'I'] | [b'P', b'L'] | [b'S', b'V'] => 28,
        [b'B', b'R'] | [b'E', b'G'] | [b'P', b'S'] | [b'Q', b'A'] | [b'U', b'A'] => 29,
        [b'J', b'O'] | [b'K', b'W'] | [b'M', b'U'] | [b'Y', b'E'] => 30,
        [b'M', b'T'] | [b'S', b'C'] => 31,
        [b'L', b'C'] => 32,
        [b'R', b'U'] => 33,
        _ => return None,
    };
    Some(n)
}

/// An e-mail address: `start..at` is the local part, `at` the `@`, `at+1..end` the domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Email {
    pub start: usize,
    pub at: usize,
    pub end: usize,
}

/// The longest quoted local part looked for (RFC 5321 allows 64 octets).
pub(crate) const QUOTED_LOCAL_MAX: usize = 64;

/// The opening quote of a quoted local part (`"john doe"@example.com`) that ends just before
/// the `@` at `at`: printable characters, `\` escapes, at least one character inside.
pub(crate) fn quoted_local_start(v: &[u8], at: usize, floor: usize) -> Option<usize> {
    if at < floor + 3 || byte(v, at - 1) != b'"' {
        return None;
    }
    let close = at - 1;
    let mut k = close;
    while k > floor && close - k < QUOTED_LOCAL_MAX {
        k -= 1;
        let b = byte(v, k);
        if b < 0x20 || b == 0x7f {
            return None;
        }
        // An escaped quote (an odd number of backslashes before it) is part of the string.
        if b == b'"' {
            let slashes = (floor..k)
                .rev()
                .take_while(|j| byte(v, *j) == b'\\')
                .count();
            if slashes % 2 == 0 {
                return (close - k > 1).then_some(k);
            }
        }
    }
    None
}

/// The address around the `@` at `at`, its local part starting no earlier than `floor`.
pub(crate) fn email_at(v: &[u8], at: usize, floor: usize) -> Option<Email> {
    if let Some(start) = quoted_local_start(v, at, floor) {
        return domain_end(v, at).map(|end| Email { start, at, end });
    }
    let mut start = at;
    while start > floor && is_local(byte(v, start - 1)) {
        start -= 1;
    }
    // Punctuation before the first letter, digit or `_` stays outside the address: it is
    // almost always the syntax around it (`{ada@example.com,...}` in an array, `'a@b.co'`
    // quoted), and masking it would break that syntax while hiding nothing.
    while start < at && !is_alnum(byte(v, start)) && byte(v, start) != b'_' {
        start += 1;
    }
    if start == at {
        return None;
    }
    domain_end(v, at).map(|end| Email { start, at, end })
}

/// The end of a valid domain after the `@` at `at`.
fn domain_end(v: &[u8], at: usize) -> Option<usize> {
    let mut end = at + 1 + run_while(v, at + 1, is_domain);
    // A sentence may end right after an address ("write to a@b.com.").
    while end > at + 1 && matches!(byte(v, end - 1), b'.' | b'-') {
        end -= 1;
    }
    valid_domain(v.get(at + 1..end)?).then_some(end)
}

/// At least two non-empty labels, and a top-level label of two or more letters.
fn valid_domain(d: &[u8]) -> bool {
    let mut labels = 0;
    let mut last: &[u8] = &[];
    for label in d.split(|b| *b == b'.') {
        if label.is_empty() {
            return false;
        }
        labels += 1;
        last = label;
    }
    labels >= 2 && last.len() >= 2 && last.iter().all(u8::is_ascii_alphabetic)
}

/// A digit chain starting at `cs`: digit groups joined by one or two separators. Returns its
/// end (after the last digit) and how many digits it holds.
fn chain(v: &[u8], cs: usize) -> (usize, usize) {
    let mut j = cs;
    let mut digits = 0;
    loop {
        let r = digit_run(v, j);
        j += r;
        digits += r;
        let mut k = j;
        let mut seps = 0;
        while seps < 2 && is_chain_sep(byte(v, k)) {
            k += 1;
            seps += 1;
        }
        if seps > 0 && is_digit(byte(v, k)) {
            j = k;
        } else {
            return (j, digits);
        }
    }
}

/// The start of the digit group that ends at `end`.
fn last_group_start(v: &[u8], end: usize) -> usize {
    let mut k = end;
    while k > 0 && is_digit(byte(v, k - 1)) {
        k -= 1;
    }
    k
}

/// The start of the next digit group after `end` inside the chain ending at `ce`.
fn next_group(v: &[u8], end: usize, ce: usize) -> usize {
    let mut q = end;
    while q < ce && !is_digit(byte(v, q)) {
        q += 1;
    }
    q.min(ce)
}

/// True when the digits have a card network's prefix and length (ISO/IEC 7812 issuer ranges).
/// This is what keeps 14-digit timestamps (`20240315103000`), epoch milliseconds and most
/// long order numbers from being masked: Luhn alone passes one number in ten.
pub(crate) fn card_network(d: &[u8]) -> bool {
    let n = d.len();
    let at = |k: usize| u32::from(d.get(k).copied().unwrap_or(0));
    let p2 = at(0) * 10 + at(1);
    let p4 = p2 * 100 + at(2) * 10 + at(3);
    match at(0) {
        // Mastercard 2-series.
        2 => n == 16 && (2221..=2720).contains(&p4),
        3 => match p2 {
            34 | 37 => n == 15,                           // American Express
            30 | 36 | 38 | 39 => n >= 14,                 // Diners Club
            35 => n >= 16 && (3528..=3589).contains(&p4), // JCB
            _ => false,
        },
        // Visa.
        4 => n == 13 || n == 16 || n == 19,
        5 => match p2 {
            51..=55 => n == 16,   // Mastercard
            50 | 56..=59 => true, // Maestro
            _ => false,
        },
        // Discover, UnionPay, Maestro, RuPay and others: too many ranges to list.
        6 => true,
        _ => false,
    }
}

/// The longest card number that starts at group `p`: whole groups only, one consistent
/// separator (space or dash) or none, 13–19 digits, a card network's prefix and length,
/// Luhn-valid, and not the fraction or integer part of a decimal number.
fn card_at(v: &[u8], p: usize, ce: usize) -> Option<usize> {
    if byte(v, p.wrapping_sub(1)) == b'.' && is_digit(byte(v, p.wrapping_sub(2))) {
        return None;
    }
    if !(b'2'..=b'6').contains(&byte(v, p)) {
        return None;
    }
    let mut digits = [0u8; 19];
    let mut nd = 0;
    let mut q = p;
    let mut sep = None;
    let mut best = None;
    loop {
        while q < ce && is_digit(byte(v, q)) {
            // A group that does not fit whole ends the search: no candidate splits a group.
            let Some(slot) = digits.get_mut(nd) else {
                return best;
            };
            *slot = byte(v, q) - b'0';
            nd += 1;
            q += 1;
        }
        let decimal = byte(v, q) == b'.' && is_digit(byte(v, q + 1));
        let d = digits.get(..nd).unwrap_or(&[]);
        if nd >= 13 && !decimal && card_network(d) && luhn(d) {
            best = Some(q);
        }
        let s = byte(v, q);
        if q + 1 < ce
            && (s == b' ' || s == b'-')
            && is_digit(byte(v, q + 1))
            && sep.is_none_or(|x| x == s)
        {
            sep = Some(s);
            q += 1;
        } else {
            return best;
        }
    }
}

/// `AAA-GG-SSSS` (dashes or spaces, the same both times) with the SSA's rules: area not 000,
/// 666 or 9xx, group not 00, serial not 0000. Nine bare digits are not matched: too many other
/// numbers look like that (a column rule such as `*.ssn` covers such columns).
fn ssn_at(v: &[u8], p: usize, ce: usize) -> Option<usize> {
    let s = byte(v, p + 3);
    if digit_run(v, p) != 3 || !(s == b'-' || s == b' ') {
        return None;
    }
    if digit_run(v, p + 4) != 2 || byte(v, p + 6) != s || digit_run(v, p + 7) != 4 {
        return None;
    }
    let end = p + 11;
    if end > ce {
        return None;
    }
    // Part of a longer run with the same separator: some other identifier.
    if byte(v, p.wrapping_sub(1)) == s && is_digit(byte(v, p.wrapping_sub(2))) {
        return None;
    }
    if byte(v, end) == s && is_digit(byte(v, end + 1)) {
        return None;
    }
    let num = |from: usize, len: usize| {
        (from..from + len).fold(0u32, |acc, k| acc * 10 + u32::from(byte(v, k) - b'0'))
    };
    let area = num(p, 3);
    if area == 0 || area == 666 || area >= 900 || num(p + 4, 2) == 0 || num(p + 7, 4) == 0 {
        return None;
    }
    Some(end)
}

/// Words that name a Social Security number right before it (lowercase; compared without
/// case): `SSN: 536228457`, `ssn=536228457`, `social security number 536228457`.
const SSN_LABELS: &[&[u8]] = &[
    b"social security number",
    b"social security no",
    b"social security #",
    b"social security",
    b"ssn#",
    b"ssn",
    b"ss#",
];

/// Bytes that may stand between a label and its value (`SSN: `, `ssn=`, `"ssn": "`).
fn is_label_gap(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b':' | b'=' | b'#' | b'"' | b'\'' | b'-' | b'.'
    )
}

/// Where the label of a labelled value ends before `p`: `p` minus up to six gap bytes.
fn label_end(v: &[u8], p: usize, floor: usize) -> usize {
    let mut k = p;
    while k > floor && p - k < 6 && is_label_gap(byte(v, k - 1)) {
        k -= 1;
    }
    k
}

/// True when `v[..end]` ends with `label` (ignoring ASCII case) that starts a word at or
/// after `floor`; returns its start.
fn ends_with_word(v: &[u8], end: usize, label: &[u8], floor: usize) -> Option<usize> {
    let start = end.checked_sub(label.len())?;
    if start < floor {
        return None;
    }
    let w = v.get(start..end)?;
    (w.eq_ignore_ascii_case(label) && !is_alnum(byte(v, start.wrapping_sub(1)))).then_some(start)
}

/// The start of an SSN label right before the nine digits at `p`.
pub(crate) fn ssn_label_start(v: &[u8], p: usize, floor: usize) -> Option<usize> {
    let end = label_end(v, p, floor);
    SSN_LABELS
        .iter()
        .find_map(|l| ends_with_word(v, end, l, floor))
}

/// The start of the first words of a several-word SSN label (`social `, `social security `)
/// ending right before `p`: a stream must hold them while the rest may still arrive.
pub(crate) fn ssn_label_prefix_start(v: &[u8], p: usize, floor: usize) -> Option<usize> {
    let mut end = p;
    while end > floor && matches!(byte(v, end - 1), b' ' | b'\t') {
        end -= 1;
    }
    if end == p {
        return None;
    }
    [&b"social security"[..], &b"social"[..]]
        .iter()
        .find_map(|w| ends_with_word(v, end, w, floor))
}

/// Nine bare digits after an SSN label, passing the SSA's rules. None otherwise.
fn labelled_ssn_at(v: &[u8], p: usize, floor: usize) -> Option<usize> {
    if digit_run(v, p) != 9 || is_alnum(byte(v, p.wrapping_sub(1))) {
        return None;
    }
    // Not the start of a longer grouped number (`536228457-12`).
    if is_chain_sep(byte(v, p + 9)) && is_digit(byte(v, p + 10)) {
        return None;
    }
    ssn_label_start(v, p, floor)?;
    let num = |from: usize, len: usize| {
        (from..from + len).fold(0u32, |acc, k| acc * 10 + u32::from(byte(v, k) - b'0'))
    };
    let area = num(p, 3);
    if area == 0 || area == 666 || area >= 900 || num(p + 3, 2) == 0 || num(p + 5, 4) == 0 {
        return None;
    }
    Some(p + 9)
}

/// Labels of AWS secrets in credentials files, environment variables and JSON (compared
/// without case), with the offset of the byte that anchors the scan there (`_`, or the `A`
/// of `Access`), and whether the value is a session token (longer) or a secret access key
/// (40 characters).
const AWS_LABELS: &[(&[u8], usize, bool)] = &[
    (b"aws_secret_access_key", 3, false),
    (b"aws_secret_key", 3, false),
    (b"secret_access_key", 6, false),
    (b"secretaccesskey", 6, false),
    (b"aws_session_token", 3, true),
];

fn is_aws_key_char(b: u8) -> bool {
    is_alnum(b) || matches!(b, b'/' | b'+' | b'=')
}

/// An AWS secret access key (or session token) after its label, anchored at `i` inside the
/// label. Returns the value's span: the label stays.
fn aws_labelled_at(v: &[u8], i: usize, floor: usize) -> Option<(usize, usize)> {
    // Every label's anchor follows `s` (aws_) or `t` (secret_, secretAccess) and precedes
    // `s`, `a` or `c` (_secret, _session, _access, Access): one look at the neighbours rules
    // out nearly every `_` and `A` in ordinary text before any label is compared.
    let before = byte(v, i.wrapping_sub(1)).to_ascii_lowercase();
    let after = byte(v, i + 1).to_ascii_lowercase();
    if !matches!(before, b's' | b't') || !matches!(after, b's' | b'a' | b'c') {
        return None;
    }
    for (label, anchor, token) in AWS_LABELS {
        let Some(s) = i.checked_sub(*anchor) else {
            continue;
        };
        if s < floor
            || !v
                .get(s..s + label.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(label))
            || is_alnum(byte(v, s.wrapping_sub(1)))
        {
            continue;
        }
        // `=` or `:` between label and value, with spaces and quotes around it.
        let mut q = s + label.len();
        let gap_start = q;
        let mut assigned = false;
        while q - gap_start < 8 && matches!(byte(v, q), b' ' | b'\t' | b'"' | b'\'' | b'=' | b':') {
            assigned |= matches!(byte(v, q), b'=' | b':');
            q += 1;
        }
        if !assigned {
            continue;
        }
        let n = run_while(v, q, is_aws_key_char);
        let fits = if *token { n >= 100 } else { n == 40 };
        if fits {
            return Some((q, q + n));
        }
    }
    None
}

/// The start of an AWS secret label right before a value starting at `p` (for streaming,
/// which must hold the label back with a value that has not fully arrived).
pub(crate) fn aws_label_start(v: &[u8], p: usize, floor: usize) -> Option<usize> {
    let mut k = p;
    while k > floor
        && p - k < 8
        && matches!(byte(v, k - 1), b' ' | b'\t' | b'"' | b'\'' | b'=' | b':')
    {
        k -= 1;
    }
    AWS_LABELS
        .iter()
        .find_map(|(l, _, _)| ends_with_word(v, k, l, floor))
}

/// A North American number: `555-123-4567`, `555.123.4567`, `555 123 4567`, `(555) 123-4567`,
/// `(555)123-4567`, `1-555-123-4567`. The numbering plan's rule that area code and exchange
/// start with 2–9 is not applied: made-up numbers such as `555-123-4567` are common in real
/// data, and the 3-3-4 shape with one consistent separator is signal enough. Returns the span
/// (it starts at the `(` when there is one).
fn nanp_at(v: &[u8], p: usize, ce: usize, floor: usize) -> Option<(usize, usize)> {
    let paren = p > floor && byte(v, p - 1) == b'(';
    let (area, lead) = if digit_run(v, p) == 1 && byte(v, p) == b'1' && !paren {
        let s = byte(v, p + 1);
        if !matches!(s, b'-' | b'.' | b' ') {
            return None;
        }
        (p + 2, Some(s))
    } else {
        (p, None)
    };
    if digit_run(v, area) != 3 {
        return None;
    }
    let after_area = area + 3;
    let (exchange, sep1) = if paren {
        if byte(v, after_area) != b')' {
            return None;
        }
        let q = after_area + 1;
        if matches!(byte(v, q), b' ' | b'-') {
            (q + 1, None)
        } else {
            (q, None)
        }
    } else {
        let s = byte(v, after_area);
        if !matches!(s, b'-' | b'.' | b' ') || lead.is_some_and(|l| l != s) {
            return None;
        }
        (after_area + 1, Some(s))
    };
    if digit_run(v, exchange) != 3 {
        return None;
    }
    let s2 = byte(v, exchange + 3);
    if !matches!(s2, b'-' | b'.' | b' ') || sep1.is_some_and(|s| s != s2) {
        return None;
    }
    let line = exchange + 4;
    if digit_run(v, line) != 4 {
        return None;
    }
    let end = line + 4;
    if end > ce || (byte(v, end) == s2 && is_digit(byte(v, end + 1))) {
        return None;
    }
    Some((if paren { p - 1 } else { p }, end))
}

/// An international number after a `+`: the chain's leading groups, 8–15 digits (E.164).
fn plus_phone(v: &[u8], cs: usize, ce: usize) -> Option<usize> {
    let mut q = cs;
    let mut nd = 0;
    let mut best = None;
    while q < ce {
        let r = digit_run(v, q);
        if nd + r > 15 {
            break;
        }
        nd += r;
        q += r;
        if nd >= 8 {
            best = Some(q);
        }
        q = next_group(v, q, ce);
    }
    best
}

/// An IBAN starting at `s` (the country code): compact, or grouped by four with single spaces;
/// exactly the country's length; uppercase; mod-97 valid; not followed by a letter or digit.
fn iban_at(v: &[u8], s: usize) -> Option<usize> {
    let len = iban_length(byte(v, s), byte(v, s + 1))?;
    let grouped = byte(v, s + 4) == b' ';
    let mut chars = [0u8; IBAN_MAX];
    let mut q = s;
    for k in 0..len {
        if grouped && k > 0 && k.is_multiple_of(4) {
            if byte(v, q) != b' ' {
                return None;
            }
            q += 1;
        }
        let b = byte(v, q);
        if !(is_upper(b) || is_digit(b)) {
            return None;
        }
        *chars.get_mut(k)? = b;
        q += 1;
    }
    if is_alnum(byte(v, q)) {
        return None;
    }
    iban_mod97(chars.get(..len)?).then_some(q)
}

/// True when a token may start at `s`: at or after `floor`, and not glued to a letter or digit.
fn word_start(v: &[u8], s: usize, floor: usize) -> bool {
    s >= floor && !is_alnum(byte(v, s.wrapping_sub(1)))
}

fn starts_with(v: &[u8], at: usize, pat: &[u8]) -> bool {
    v.get(at..).is_some_and(|s| s.starts_with(pat))
}

/// A secret anchored at `i` (whose byte is in the SECRET class). Returns its span and kind.
fn secret_at(v: &[u8], i: usize, floor: usize) -> Option<(usize, usize, SecretKind)> {
    match byte(v, i) {
        b'A' => {
            if let Some((s, e)) = aws_labelled_at(v, i, floor) {
                return Some((s, e, SecretKind::AwsSecretKey));
            }
            if !word_start(v, i, floor) {
                return None;
            }
            if starts_with(v, i, b"AKIA") || starts_with(v, i, b"ASIA") {
                // AWS access key id: 4-letter prefix and 16 of [A-Z0-7] (we allow [A-Z0-9]).
                let n = run_while(v, i + 4, |b| is_upper(b) || is_digit(b));
                if n == 16 && !is_alnum(byte(v, i + 20)) {
                    return Some((i, i + 20, SecretKind::AwsAccessKey));
                }
            } else if starts_with(v, i, b"AIza") {
                // Google API key: "AIza" and 35 URL-safe characters.
                let n = run_while(v, i + 4, is_b64url);
                if n == 35 {
                    return Some((i, i + 39, SecretKind::GoogleApiKey));
                }
            }
            None
        }
        b'_' => {
            if let Some((s, e)) = aws_labelled_at(v, i, floor) {
                return Some((s, e, SecretKind::AwsSecretKey));
            }
            // gh[pousr]_ + at least 30 alphanumerics (classic tokens carry 36).
            if let Some(s) = i.checked_sub(3)
                && byte(v, s) == b'g'
                && byte(v, s + 1) == b'h'
                && matches!(byte(v, s + 2), b'p' | b'o' | b'u' | b's' | b'r')
                && word_start(v, s, floor)
            {
                let n = run_while(v, i + 1, is_alnum);
                return (n >= 30).then_some((s, i + 1 + n, SecretKind::GithubToken));
            }
            // github_pat_ + at least 22 of [A-Za-z0-9_] (fine-grained tokens carry 82).
            if let Some(s) = i.checked_sub(6)
                && starts_with(v, s, b"github_pat_")
                && word_start(v, s, floor)
            {
                let n = run_while(v, i + 5, |b| is_alnum(b) || b == b'_');
                return (n >= 22).then_some((s, i + 5 + n, SecretKind::GithubToken));
            }
            // Stripe-style secret and restricted keys: (sk|rk)_(live|test)_ + 10 or more.
            if let Some(s) = i.checked_sub(2)
                && matches!(byte(v, s), b's' | b'r')
                && byte(v, s + 1) == b'k'
                && (starts_with(v, i, b"_live_") || starts_with(v, i, b"_test_"))
                && word_start(v, s, floor)
            {
                let n = run_while(v, i + 6, is_alnum);
                return (n >= 10).then_some((s, i + 6 + n, SecretKind::StripeKey));
            }
            None
        }
        b'-' => {
            if let Some(s) = i.checked_sub(4)
                && starts_with(v, s, b"xox")
                && matches!(byte(v, s + 3), b'b' | b'a' | b'p' | b'r' | b's')
                && word_start(v, s, floor)
            {
                let n = run_while(v, i + 1, |b| is_alnum(b) || b == b'-');
                return (n >= 10).then_some((s, i + 1 + n, SecretKind::SlackToken));
            }
            if i >= floor && starts_with(v, i, b"-----BEGIN ") {
                return pem_at(v, i).map(|end| (i, end, SecretKind::PrivateKey));
            }
            None
        }
        b'J' => {
            let s = i.checked_sub(2)?;
            if byte(v, s) != b'e' || byte(v, s + 1) != b'y' || s < floor {
                return None;
            }
            let before = byte(v, s.wrapping_sub(1));
            if is_b64url(before) || before == b'.' {
                return None;
            }
            jwt_at(v, s).map(|end| (s, end, SecretKind::Jwt))
        }
        _ => None,
    }
}

/// The label of a PEM header at `i` (`-----BEGIN <label>-----`) and the header's end, when the
/// header is complete.
pub(crate) fn pem_header(v: &[u8], i: usize) -> Option<(&[u8], usize)> {
    pem_label(v, i + 11)
}

/// The label starting at `label_start` and the end of the `-----` that closes it.
fn pem_label(v: &[u8], label_start: usize) -> Option<(&[u8], usize)> {
    let window = v.get(label_start..)?;
    let window = window.get(..window.len().min(PEM_HEADER_TAIL))?;
    let close = memchr::memmem::find(window, b"-----")?;
    Some((window.get(..close)?, label_start + close + 5))
}

/// True when a PEM label names private key material (`PRIVATE KEY`, `RSA PRIVATE KEY`,
/// `OPENSSH PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`, `PGP PRIVATE KEY BLOCK`, ...).
pub(crate) fn is_private_label(label: &[u8]) -> bool {
    memchr::memmem::find(label, b"PRIVATE KEY").is_some()
}

/// Where the block that starts after `from` ends: after the `-----END <label>-----` line's
/// closing dashes. None when that trailer has not (fully) arrived.
pub(crate) fn pem_end(v: &[u8], from: usize) -> Option<usize> {
    let rest = v.get(from..)?;
    let end_at = from + memchr::memmem::find(rest, b"-----END ")?;
    let (_, end) = pem_label(v, end_at + 9)?;
    Some(end)
}

/// A private-key block starting at `i`: through its END line, or to the end of the value
/// when the value was cut short (a truncated key is still a key).
fn pem_at(v: &[u8], i: usize) -> Option<usize> {
    let (label, header_end) = pem_header(v, i)?;
    if !is_private_label(label) {
        return None;
    }
    Some(pem_end(v, header_end).unwrap_or(v.len()))
}

/// A JWT (or JWE) at `s`: `eyJ` header of 10+ URL-safe characters, then two to four more
/// dot-separated segments (the payload non-empty; an unsigned token's signature may be empty).
fn jwt_at(v: &[u8], s: usize) -> Option<usize> {
    let header = run_while(v, s, is_b64url);
    if header < 10 {
        return None;
    }
    let mut q = s + header;
    let mut dots = 0;
    while dots < 4 && byte(v, q) == b'.' {
        let seg = run_while(v, q + 1, is_b64url);
        if dots == 0 && seg < 2 {
            return None;
        }
        dots += 1;
        q += 1 + seg;
    }
    (dots >= 2).then_some(q)
}

/// Drives the scan: finds every hit in `v`, left to right, without overlap.
struct Scanner<'a, S: Sink> {
    plan: &'a Plan,
    v: &'a [u8],
    sink: &'a mut S,
    /// No hit may start before this (the end of the previous hit).
    floor: usize,
    stopped: bool,
    /// The last probe for an address after a hit: from `.0`, local-part bytes run to `.1`,
    /// and `.2` says whether a valid `@domain` is there. Reused for every hit in the same run,
    /// so a long run of candidates (`4111…1111.4111…1111.…`) is probed once, not once per
    /// candidate (which would be quadratic).
    probe: Option<(usize, usize, bool)>,
}

impl<S: Sink> Scanner<'_, S> {
    /// Hands a hit to the sink, unless it lies inside an address's local part: the address
    /// wins there (it is found when the scan reaches its `@`, and covers the span).
    fn emit(&mut self, start: usize, end: usize, detector: Detector, render: Render) -> bool {
        if self.stopped || start < self.floor || end <= start {
            return false;
        }
        if self.plan.email && detector != Detector::Email && self.inside_email(start, end) {
            return false;
        }
        self.floor = end;
        if !self.sink.hit(Hit {
            start,
            end,
            detector,
            render,
        }) {
            self.stopped = true;
        }
        true
    }

    /// True when the span `[s, e)` lies inside the local part of an address: all of it is
    /// local-part bytes and local-part bytes continue to a valid `@domain`. The address then
    /// wins, and masks the span with it (its local part reaches back over the whole span).
    fn inside_email(&mut self, s: usize, e: usize) -> bool {
        let v = self.v;
        if !v
            .get(s..e)
            .is_some_and(|span| span.iter().all(|b| is_local(*b)))
        {
            return false;
        }
        match self.probe {
            Some((from, at, valid)) if from <= e && e <= at => valid,
            _ => {
                let at = e + run_while(v, e, is_local);
                let valid = byte(v, at) == b'@' && domain_end(v, at).is_some();
                self.probe = Some((e, at, valid));
                valid
            }
        }
    }

    /// Handles the digit chain starting at `cs`; returns where the scan resumes.
    fn digits(&mut self, cs: usize) -> usize {
        let v = self.v;
        let (ce, nd) = chain(v, cs);
        let plus = self.plan.phone && cs > self.floor && byte(v, cs - 1) == b'+';
        let iban = self.plan.iban
            && cs >= self.floor + 2
            && is_upper(byte(v, cs.wrapping_sub(2)))
            && is_upper(byte(v, cs.wrapping_sub(1)))
            && !is_alnum(byte(v, cs.wrapping_sub(3)))
            && is_digit(byte(v, cs + 1));
        // The cheap exit that nearly every cell takes: ids, dates, amounts have < 9 digits.
        if nd < 9 && !iban && !(plus && nd >= 8) {
            return ce;
        }
        if iban && let Some(end) = iban_at(v, cs - 2) {
            let keep_tail = !continues(v, end, true);
            if self.emit(cs - 2, end, Detector::Iban, Render::Iban { keep_tail }) {
                return end;
            }
        }
        let mut p = cs;
        if plus
            && nd >= 8
            && let Some(end) = plus_phone(v, cs, ce)
        {
            let keep_tail = !continues(v, end, false);
            if self.emit(cs - 1, end, Detector::Phone, Render::Digits { keep_tail }) {
                p = next_group(v, end, ce);
            }
        }
        while p < ce && !self.stopped {
            // SSNs and North American numbers start with a group of three (or the `1` of a
            // country code): skip their checks for any other group.
            let g = digit_run(v, p);
            let three = g == 3;
            let found = if let Some(end) = self.plan.card.then(|| card_at(v, p, ce)).flatten() {
                Some((p, end, Detector::CreditCard))
            } else if let Some(end) = (g == 9 && self.plan.ssn)
                .then(|| labelled_ssn_at(v, p, self.floor))
                .flatten()
            {
                Some((p, end, Detector::Ssn))
            } else if let Some(end) = (three && self.plan.ssn).then(|| ssn_at(v, p, ce)).flatten() {
                Some((p, end, Detector::Ssn))
            } else if let Some((s, e)) = ((three || (g == 1 && byte(v, p) == b'1'))
                && self.plan.phone)
                .then(|| nanp_at(v, p, ce, self.floor))
                .flatten()
            {
                Some((s, e, Detector::Phone))
            } else {
                None
            };
            // A shorter match whose last group starts a card number gives way to the card
            // (`000 000 3528-0000-0000-0007`: the card, not a phone number, is what to hide).
            let found = found.filter(|(_, e, d)| {
                *d == Detector::CreditCard
                    || !self.plan.card
                    || card_at(v, last_group_start(v, *e), ce).is_none()
            });
            match found {
                Some((s, e, d))
                    if self.emit(
                        s,
                        e,
                        d,
                        Render::Digits {
                            keep_tail: !continues(v, e, false),
                        },
                    ) =>
                {
                    p = next_group(v, e, ce);
                }
                _ => p = next_group(v, p + g, ce),
            }
        }
        ce
    }

    /// Handles the byte at `i`, of class `c` (not 0); returns where the scan resumes.
    #[inline(always)]
    fn stop(&mut self, i: usize, c: u8) -> usize {
        if c & DIGIT != 0 {
            self.digits(i)
        } else if c & AT != 0 {
            self.email(i)
        } else {
            self.secret(i)
        }
    }

    /// Handles the secret anchor at `i`; returns where the scan resumes.
    fn secret(&mut self, i: usize) -> usize {
        match secret_at(self.v, i, self.floor) {
            Some((s, e, kind)) if self.emit(s, e, Detector::Secret, Render::Secret(kind)) => e,
            _ => i + 1,
        }
    }

    /// Handles the `@` at `at`; returns where the scan resumes.
    fn email(&mut self, at: usize) -> usize {
        let Some(e) = email_at(self.v, at, self.floor) else {
            return at + 1;
        };
        if self.plan.email_whole {
            self.emit(e.start, e.end, Detector::Email, Render::EmailLocal);
            e.end
        } else {
            // The domain stays, and is scanned like any other text.
            self.emit(e.start, e.at, Detector::Email, Render::EmailLocal);
            e.at + 1
        }
    }
}

/// Finds every hit in `v` and hands it to `sink`, in order and without overlap.
///
/// One pass: a byte-class table stops the scan only at digits, `@` and the secret anchors;
/// everything else is skipped in a tight loop. An address wins over anything inside its
/// local part (a card number used as a local part is masked as part of the address).
pub(crate) fn scan<S: Sink>(plan: &Plan, v: &[u8], sink: &mut S) {
    scan_from(plan, v, sink, true);
}

/// [`scan`]; `masked: false` never switches to [`scan_masked`] (the tests compare both).
fn scan_from<S: Sink>(plan: &Plan, v: &[u8], sink: &mut S, masked: bool) {
    let mut sc = Scanner {
        plan,
        v,
        sink,
        floor: 0,
        stopped: false,
        probe: None,
    };
    let mut i = 0;
    let mut digit_stops = 0;
    while !sc.stopped {
        let Some(rest) = v.get(i..) else { return };
        let Some(skip) = rest.iter().position(|b| plan.class_of(*b) != 0) else {
            return;
        };
        i += skip;
        let c = plan.class_of(byte(v, i));
        if c & DIGIT != 0 {
            // A second digit run in a short value (a hash, a uuid, a hex id, a timestamp):
            // the rest of it is scanned by bit masks.
            digit_stops += 1;
            if masked && digit_stops > 1 && v.len() <= 64 {
                return scan_masked(&mut sc, i);
            }
        }
        i = sc.stop(i, c);
    }
}

/// Eight bytes at a time in a `u64` ("SWAR"): the byte-class questions [`scan_masked`] asks
/// of every byte, answered for a whole word with a few additions. Written here because the
/// alternatives are `unsafe` intrinsics or nightly `std::simd`; a test checks every byte value
/// against the class table.
const LANE_LO: u64 = 0x0101_0101_0101_0101;
const LANE_HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte lane of `w` set where that byte is in `lo..=hi` (ASCII bounds,
/// `1 <= lo <= hi < 0x7f`). Bytes of 0x80 and above are never in range.
#[inline(always)]
const fn lanes_in(w: u64, lo: u8, hi: u8) -> u64 {
    let x = w & !LANE_HI;
    // Each lane of `x` is below 0x80, so neither addition carries into the next lane.
    let ge_lo = x.wrapping_add(LANE_LO * (0x80 - lo as u64));
    let gt_hi = x.wrapping_add(LANE_LO * (0x7f - hi as u64));
    ge_lo & !gt_hi & !w & LANE_HI
}

/// The lane high bits of `m` packed into the low eight bits, lane 0 (the first byte) lowest.
#[inline(always)]
const fn pack_lanes(m: u64) -> u64 {
    (m >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// Bit masks over a value of at most 64 bytes: bit i is set when byte i is, in turn, a digit
/// the plan scans, a stop of another class (`@`, a secret anchor), a chain separator, an
/// uppercase letter.
#[inline(always)]
fn shape_masks(plan: &Plan, v: &[u8]) -> [u64; 4] {
    let digits_on = plan.class_of(b'0') & DIGIT != 0;
    let n = v.len().min(64);
    let mut padded = [0u8; 64];
    if let (Some(d), Some(s)) = (padded.get_mut(..n), v.get(..n)) {
        d.copy_from_slice(s);
    }
    let mut m = [0u64; 4];
    for (j, word) in padded.chunks_exact(8).take(n.div_ceil(8)).enumerate() {
        let w = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        let at = 8 * j;
        let mut other = 0;
        if plan.email {
            other |= lanes_in(w, b'@', b'@');
        }
        if plan.secrets {
            other |= lanes_in(w, b'A', b'A')
                | lanes_in(w, b'J', b'J')
                | lanes_in(w, b'_', b'_')
                | lanes_in(w, b'-', b'-');
        }
        let sep = lanes_in(w, b' ', b' ') | lanes_in(w, b'(', b')') | lanes_in(w, b'-', b'.');
        let [digit_m, other_m, sep_m, upper_m] = &mut m;
        if digits_on {
            *digit_m |= pack_lanes(lanes_in(w, b'0', b'9')) << at;
        }
        *other_m |= pack_lanes(other) << at;
        *sep_m |= pack_lanes(sep) << at;
        *upper_m |= pack_lanes(lanes_in(w, b'A', b'Z')) << at;
    }
    m
}

/// The rest of the scan of a value of at most 64 bytes, from `from`, driven by bit masks
/// instead of a branch per byte.
///
/// It stops at a digit only where a digit detector could match: where eight or more digits and
/// separators follow (every digit detector needs at least eight digits in one chain, and
/// [`Scanner::digits`] returns at once below that), or at two digits after two capitals (a
/// possible IBAN). In hex, hashes and ids about every other byte is a digit, and the byte-wise
/// scan stops at each run and mispredicts a branch doing it. Every other stop is kept, so the
/// hits are exactly those of the byte-wise scan (a test compares the two).
fn scan_masked<S: Sink>(sc: &mut Scanner<'_, S>, from: usize) {
    let (plan, v) = (sc.plan, sc.v);
    let [digit, other, sep, upper] = shape_masks(plan, v);
    // Bit p of `run8`: bytes p..p+8 are all digits or separators. A chain of eight or more
    // digits starting at p has that, so its first digit is a stop; a chain starting anywhere
    // else has fewer than eight digits.
    let chain = digit | sep;
    let run2 = chain & (chain >> 1);
    let run4 = run2 & (run2 >> 2);
    let run8 = run4 & (run4 >> 4);
    let mut stops = other | (run8 & digit);
    if plan.iban {
        stops |= digit & (digit >> 1) & (upper << 1) & (upper << 2);
    }
    let mut i = from;
    while !sc.stopped && i < 64 {
        let rest = stops & (!0u64 << i);
        if rest == 0 {
            return;
        }
        i = rest.trailing_zeros() as usize;
        i = sc.stop(i, plan.class_of(byte(v, i)));
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    fn all() -> Plan {
        Plan::new(
            &[
                Detector::CreditCard,
                Detector::Email,
                Detector::Ssn,
                Detector::Phone,
                Detector::Iban,
                Detector::Secret,
            ],
            false,
        )
    }

    struct Spans<'a>(&'a [u8], Vec<(String, Detector)>);
    impl Sink for Spans<'_> {
        fn hit(&mut self, h: Hit) -> bool {
            let s = String::from_utf8_lossy(&self.0[h.start..h.end]).into_owned();
            self.1.push((s, h.detector));
            true
        }
    }

    fn hits(text: &str) -> Vec<(String, Detector)> {
        let plan = all();
        let mut s = Spans(text.as_bytes(), Vec::new());
        scan(&plan, text.as_bytes(), &mut s);
        s.1
    }

    fn one(text: &str, want: &str, d: Detector) {
        assert_eq!(hits(text), vec![(want.to_string(), d)], "in {text:?}");
    }

    fn none(text: &str) {
        assert_eq!(hits(text), vec![], "in {text:?}");
    }

    #[test]
    fn luhn_known_values() {
        let d = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<_>>();
        assert!(luhn(&d("4111111111111111")));
        assert!(luhn(&d("5555555555554444")));
        assert!(luhn(&d("378282246310005")));
        assert!(luhn(&d("79927398713")));
        assert!(!luhn(&d("4111111111111112")));
        assert!(!luhn(&d("79927398710")));
    }

    #[test]
    fn iban_mod97_known_values() {
        assert!(iban_mod97(b"GB82WEST12345698765432"));
        assert!(iban_mod97(b"DE89370400440532013000"));
        assert!(iban_mod97(b"NO9386011117947"));
        assert!(!iban_mod97(b"GB82WEST12345698765433"));
        assert!(!iban_mod97(b"GB82"));
        assert_eq!(iban_length(b'G', b'B'), Some(22));
        assert_eq!(iban_length(b'U', b'S'), None);
    }

    #[test]
    fn cards_with_separators() {
        use Detector::CreditCard as C;
        one("4111111111111111", "4111111111111111", C);
        one(
            "card 4111 1111 1111 1111 exp 12/29",
            "4111 1111 1111 1111",
            C,
        );
        one("4111-1111-1111-1111.", "4111-1111-1111-1111", C);
        one("amex 3782 822463 10005", "3782 822463 10005", C);
        one("x5555555555554444y", "5555555555554444", C);
        // Card then CVV with the same separator: the card still found.
        one("4111 1111 1111 1111 123", "4111 1111 1111 1111", C);
        // 19 digits.
        one("6011000990139424", "6011000990139424", C);
        one("4000 0000 0000 0000 006", "4000 0000 0000 0000 006", C);
    }

    #[test]
    fn card_false_positives() {
        none("4111111111111112"); // Luhn-invalid
        none("4111-1111 1111-1111"); // mixed separators
        none("order 12345678901234567890"); // 20 digits, one group
        none("1700000000000"); // epoch milliseconds: industry 1
        none("9111111111111111"); // not a card network
        none("20240315103000"); // a timestamp, Luhn-valid: 2-series is 2221-2720, 16 digits
        none("41111111111111113"); // Luhn-valid, but Visa has 13, 16 or 19 digits
        none("2024-01-01 2024-01-02"); // two dates
        none("0.4111111111111111"); // a fraction
        none("4111111111111111.5"); // a decimal number
        none("v1.2.3.4 build 20240101");
        none("2024-01-01T10:30:00Z");
    }

    #[test]
    fn ssn() {
        use Detector::Ssn as S;
        one("ssn 123-45-6789", "123-45-6789", S);
        one("123 45 6789", "123 45 6789", S);
        none("000-12-3456");
        none("666-12-3456");
        none("900-12-3456");
        none("123-00-4567");
        none("123-45-0000");
        none("123-45-67890");
        none("1-123-45-6789");
        none("123456789");
        none("123-45 6789");
    }

    #[test]
    fn phones() {
        use Detector::Phone as P;
        one("call 555-123-4567 now", "555-123-4567", P);
        one("(555) 123-4567", "(555) 123-4567", P);
        one("(555)123-4567", "(555)123-4567", P);
        one("555.123.4567", "555.123.4567", P);
        one("1-555-123-4567", "1-555-123-4567", P);
        one("+44 20 7946 0958", "+44 20 7946 0958", P);
        one("+4915112345678", "+4915112345678", P);
        one("+1 (555) 123-4567", "+1 (555) 123-4567", P);
        none("555-123-456");
        none("2024-01-15");
        none("12-31-2024 10:30");
        none("555-123.4567");
        none("+123 45");
    }

    #[test]
    fn iban() {
        use Detector::Iban as I;
        one("GB82WEST12345698765432", "GB82WEST12345698765432", I);
        one(
            "iban: DE89 3704 0044 0532 0130 00.",
            "DE89 3704 0044 0532 0130 00",
            I,
        );
        one("NO93 8601 1117 947", "NO93 8601 1117 947", I);
        one("BE68 5390 0754 7034 AND MORE", "BE68 5390 0754 7034", I);
        none("GB82WEST12345698765433"); // bad check digits
        none("XGB82WEST12345698765432"); // glued to a letter
        none("US82WEST12345698765432"); // no such country
        none("GB82WEST123456987654321"); // too long
    }

    #[test]
    fn emails() {
        use Detector::Email as E;
        one("mail john.doe+x@example.com.", "john.doe+x", E);
        one("<a_b@sub.example.co.uk>", "a_b", E);
        one("4111111111111111@example.com", "4111111111111111", E);
        none("user@localhost");
        none("a@b.c");
        none("@example.com");
        none("***@example.com");
        none("x@example..com");
        none("x@example.c0m");
    }

    #[test]
    fn secrets() {
        use Detector::Secret as S;
        one("key=AKIAIOSFODNN7EXAMPLE;", "AKIAIOSFODNN7EXAMPLE", S);
        one("ASIAIOSFODNN7EXAMPLE", "ASIAIOSFODNN7EXAMPLE", S);
        none("XAKIAIOSFODNN7EXAMPLE");
        none("AKIAIOSFODNN7EXAMPL");
        one(
            "AIzaSyA-1234567890abcdefghijklmnopqrstu",
            "AIzaSyA-1234567890abcdefghijklmnopqrstu",
            S,
        );
        let gh = format!("ghp_{}", "a1B2c3D4e5".repeat(4).get(..36).unwrap_or(""));
        one(&format!("token {gh} ok"), &gh, S);
        none("ghp_short");
        let pat = format!("github_pat_{}", "A1b2_".repeat(10));
        one(&pat, &pat, S);
        one("xoxb-1234567890-abcdef", "xoxb-1234567890-abcdef", S);
        none("xoxz-1234567890-abcdef");
        one(
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            S,
        );
        none("task_live_4eC39HqLyjWDarjtT1zdp7dc");
        let jwt =
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        one(&format!("Bearer {jwt}"), jwt, S);
        none("eyJhbGciOiJIUzI1NiJ9 only a header");
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----";
        one(&format!("x\n{pem}\ny"), pem, S);
        one(
            "-----BEGIN PRIVATE KEY-----\nMIIB",
            "-----BEGIN PRIVATE KEY-----\nMIIB",
            S,
        );
        none("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----");
    }

    #[test]
    fn several_in_one_value() {
        let h = hits("a 4111111111111111 b j@x.io c 123-45-6789 d AKIAIOSFODNN7EXAMPLE");
        let kinds: Vec<Detector> = h.iter().map(|x| x.1).collect();
        assert_eq!(
            kinds,
            vec![
                Detector::CreditCard,
                Detector::Email,
                Detector::Ssn,
                Detector::Secret
            ]
        );
    }

    /// Long runs of candidates stay linear (each of these would take minutes if quadratic).
    #[test]
    fn long_runs_are_linear() {
        let plan = all();
        for unit in [
            "4111111111111111.",
            "4111111111111111_",
            "4111 1111 1111 1111 ",
            "a@",
            "x.",
            "eyJ",
            "ghp_",
            "-----BEGIN PRIVATE KEY-----",
            "-----BEGIN CERTIFICATE-----",
            "AKIAIOSFODNN7EXAMPLE_",
            "1-",
            "GB82 ",
        ] {
            let text = unit.repeat(1_000_000 / unit.len());
            let mut s = Spans(text.as_bytes(), Vec::new());
            scan(&plan, text.as_bytes(), &mut s);
        }
    }

    #[test]
    fn typical_cells_have_no_hits() {
        for v in [
            "12345",
            "Alice Johnson",
            "2024-03-15",
            "1234.56",
            "active",
            "São Paulo",
            "Order #A-2024-000123 shipped on 2024-03-15 10:30:00, 3 items, total 149.90 EUR",
            "Java 17.0.2+8 on Linux 6.1.0-18-amd64",
            "192.168.100.254",
            "",
        ] {
            none(v);
        }
    }

    /// Every hit of a scan, and the first hit of a scan its sink stops after one.
    fn both_ways(plan: &Plan, v: &[u8], masked: bool) -> (Vec<Hit>, Vec<Hit>) {
        struct All(Vec<Hit>, bool);
        impl Sink for All {
            fn hit(&mut self, hit: Hit) -> bool {
                self.0.push(hit);
                self.1
            }
        }
        let mut every = All(Vec::new(), true);
        scan_from(plan, v, &mut every, masked);
        let mut first = All(Vec::new(), false);
        scan_from(plan, v, &mut first, masked);
        (every.0, first.0)
    }

    #[test]
    fn hex_values_scan_by_masks_with_the_same_hits() {
        for v in [
            "5d41402abc4b2a76b9719d911017c592",
            "4111111111111111a0b1",
            "9b1d 4111 1111 1111 1111 ff",
            "e3b0c442 123-45-6789 98fc",
            "1a2bGB82WEST12345698765432",
            "7f0-1-2 +14155552671",
            "00ff a.b@example.com 1234",
        ] {
            assert_eq!(
                both_ways(&all(), v.as_bytes(), true),
                both_ways(&all(), v.as_bytes(), false),
                "{v}"
            );
        }
    }

    /// The plan of the detectors whose bits (in [`Detector::ALL`] order) are set in `set`.
    fn plan_of_set(set: u8, email_whole: bool) -> Plan {
        let enabled: Vec<Detector> = Detector::ALL
            .iter()
            .enumerate()
            .filter(|(k, _)| set & (1 << k) != 0)
            .map(|(_, d)| *d)
            .collect();
        Plan::new(&enabled, email_whole)
    }

    /// [`shape_masks`] answers, for every byte value at every position of a word and for every
    /// detector set, what the class table and the separator and capital checks answer.
    #[test]
    fn shape_masks_agree_with_the_class_table() {
        for set in 0u8..64 {
            let plan = plan_of_set(set, false);
            for b in 0..=255u8 {
                for len in [1usize, 7, 8, 9, 33, 64] {
                    let mut v = vec![b'x'; len];
                    let at = (usize::from(b) * 7) % len;
                    v[at] = b;
                    let [digit, other, sep, upper] = shape_masks(&plan, &v);
                    let (mut want_d, mut want_o, mut want_s, mut want_u) = (0u64, 0u64, 0u64, 0u64);
                    for (i, &c) in v.iter().enumerate() {
                        let class = plan.class_of(c);
                        want_d |= u64::from(class & DIGIT != 0) << i;
                        want_o |= u64::from(class & (AT | SECRET) != 0) << i;
                        want_s |= u64::from(is_chain_sep(c)) << i;
                        want_u |= u64::from(c.is_ascii_uppercase()) << i;
                    }
                    assert_eq!(
                        (digit, other, sep, upper),
                        (want_d, want_o, want_s, want_u),
                        "byte {b:#04x} at {at} of {len}, detector set {set:#b}"
                    );
                }
            }
        }
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 20_000,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// The mask-driven scan of short values finds exactly what the byte-wise scan finds,
        /// for every detector set, on values dense with digits, separators, capitals and the
        /// anchors of every detector.
        #[test]
        fn masked_scan_matches_bytewise_scan(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec![
                        "4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005",
                        "GB82WEST12345698765432", "DE89 3704 0044 0532 0130 00", "123-45-6789",
                        "+14155552671", "(415) 555-2671", "a.b@example.com", "x@y",
                        "AKIAIOSFODNN7EXAMPLE", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
                        "xoxb-1234567890-abc", "-----BEGIN PRIVATE KEY-----", "sk_live_0123456789",
                        "ghp_0123456789abcdefghijklmnopqrstuvwxyz",
                    ]).prop_map(|s| s.as_bytes().to_vec()),
                    proptest::collection::vec(
                        proptest::sample::select(
                            b"0123456789012345678901234567890123456789 -.()+@AJ_GBDEXYabfkoxy\x00\xff"
                                .to_vec(),
                        ),
                        1..12,
                    ),
                ],
                0..8,
            ),
            set in 1u8..64,
            whole in proptest::bool::ANY,
        ) {
            let v: Vec<u8> = parts.concat();
            let plan = plan_of_set(set, whole);
            proptest::prop_assert_eq!(both_ways(&plan, &v, true), both_ways(&plan, &v, false));
        }
    }
}
