//! Masking a byte stream that arrives in arbitrary pieces (terminal output), where a card
//! number or a key may be split across two reads.
//!
//! The rule: everything up to the start of the trailing token is masked and sent at once; the
//! trailing token (bytes that could still grow into a match: letters, digits, the punctuation
//! of addresses and tokens, and digit or uppercase groups joined by spaces, dashes, dots or
//! parentheses) waits for the next read. Matches never cross such a cut, because every
//! detector's match and the context it looks at lie within one token. An unterminated
//! private-key block is held from its BEGIN line; one longer than the hold limit is replaced
//! and its body dropped until its END line arrives.

use super::detectors::{PEM_HEADER_TAIL, byte, is_local, is_private_label, pem_end, pem_header};
use super::{MaskCounts, Masker, SecretKind};

/// Most bytes held back waiting for a token to end.
const MAX_HOLD: usize = 8 * 1024;
/// Bytes kept while dropping a key body, so an END line split across reads is still seen.
const END_TAIL: usize = 80;

/// Per-stream state for masking output that arrives in pieces. One per stream (per SSH
/// channel); the [`Masker`] it uses is shared.
#[derive(Debug, Default)]
pub struct StreamMasker {
    held: Vec<u8>,
    /// Inside a private-key block whose beginning was already replaced: drop until its END.
    in_key: bool,
}

impl StreamMasker {
    /// A stream with nothing held.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many bytes are held back waiting for more input.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Feeds the next piece of the stream; appends to `out` what can be sent now.
    pub fn push(
        &mut self,
        masker: &Masker,
        input: &[u8],
        out: &mut Vec<u8>,
        counts: &mut MaskCounts,
    ) {
        if !masker.has_detectors() {
            out.extend_from_slice(input);
            return;
        }
        self.held.extend_from_slice(input);
        self.drain(masker, false, out, counts);
    }

    /// The stream ended: appends everything still held, masked.
    pub fn finish(&mut self, masker: &Masker, out: &mut Vec<u8>, counts: &mut MaskCounts) {
        self.drain(masker, true, out, counts);
        self.held.clear();
        self.in_key = false;
    }

    fn drain(&mut self, masker: &Masker, last: bool, out: &mut Vec<u8>, counts: &mut MaskCounts) {
        let buf = std::mem::take(&mut self.held);
        let mut pos = 0;
        loop {
            let rest = buf.get(pos..).unwrap_or(&[]);
            if self.in_key {
                if let Some(end) = pem_end(rest, 0) {
                    pos += end;
                    self.in_key = false;
                    continue;
                }
                if !last {
                    let keep = rest.len().saturating_sub(END_TAIL);
                    self.held = rest.get(keep..).unwrap_or(&[]).to_vec();
                }
                return;
            }
            if rest.is_empty() {
                return;
            }
            let mut cut = if last {
                rest.len()
            } else {
                masker.hold_from(rest)
            };
            if rest.len() - cut > MAX_HOLD {
                if masker.detects_secrets()
                    && let Some(b) = open_private_key(rest)
                    && let Some((_, header_end)) = pem_header(rest, b)
                {
                    // A key too long to hold: send what precedes it, the replacement, and
                    // drop its body until the END line.
                    emit(masker, rest.get(..b).unwrap_or(&[]), out, counts);
                    match masker.secret_replacement() {
                        Some(r) => out.extend_from_slice(r),
                        None => {
                            out.extend_from_slice(b"[REDACTED:");
                            out.extend_from_slice(SecretKind::PrivateKey.label().as_bytes());
                            out.push(b']');
                        }
                    }
                    counts.record(super::Detector::Secret);
                    pos += header_end;
                    self.in_key = true;
                    continue;
                }
                cut = rest.len() - MAX_HOLD;
            }
            emit(masker, rest.get(..cut).unwrap_or(&[]), out, counts);
            self.held = rest.get(cut..).unwrap_or(&[]).to_vec();
            return;
        }
    }
}

fn emit(masker: &Masker, piece: &[u8], out: &mut Vec<u8>, counts: &mut MaskCounts) {
    let mut masked = Vec::new();
    if masker.mask_into(piece, &mut masked, counts) {
        out.extend_from_slice(&masked);
    } else {
        out.extend_from_slice(piece);
    }
}

#[inline]
fn is_token(b: u8) -> bool {
    is_local(b) || b == b'@'
}

#[inline]
fn is_join(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.' | b'(' | b')')
}

#[inline]
fn is_group(b: u8) -> bool {
    b.is_ascii_digit() || b.is_ascii_uppercase()
}

/// Start of the trailing token of `buf` (see the module doc); `buf.len()` when `buf` ends in
/// a byte that no match can continue from.
pub(crate) fn trailing_token_start(buf: &[u8]) -> usize {
    let n = buf.len();
    let mut j = n;
    loop {
        while j > 0 && is_token(byte(buf, j - 1)) {
            j -= 1;
        }
        // Digit or uppercase groups joined by one or two separators are one token
        // (`4111 1111 `, `GB82 WEST`, `(555) 123`), including separators at the very end.
        let mut k = j;
        let mut seps = 0;
        while k > 0 && seps < 2 && is_join(byte(buf, k - 1)) {
            k -= 1;
            seps += 1;
        }
        // The token may itself start with separators that are token bytes (`.`, `-`).
        let mut f = j;
        while f < n && is_join(byte(buf, f)) {
            f += 1;
        }
        if seps > 0 && k > 0 && is_group(byte(buf, k - 1)) && (f == n || is_group(byte(buf, f))) {
            j = k;
            continue;
        }
        break;
    }
    // The `(` of `(555) 123-4567` belongs to the phone number.
    if j > 0 && byte(buf, j - 1) == b'(' {
        j -= 1;
    }
    j
}

/// The start of a private-key block that has not ended yet, or of a BEGIN header that has not
/// fully arrived.
pub(crate) fn open_private_key(buf: &[u8]) -> Option<usize> {
    let finder = memchr::memmem::Finder::new(b"-----BEGIN ");
    let mut from = 0;
    while let Some(off) = finder.find(buf.get(from..)?) {
        let pos = from + off;
        match pem_header(buf, pos) {
            None => {
                if buf.len().saturating_sub(pos + 11) <= PEM_HEADER_TAIL {
                    return Some(pos);
                }
                from = pos + 11;
            }
            Some((label, header_end)) => {
                if is_private_label(label) {
                    match pem_end(buf, header_end) {
                        Some(end) => from = end,
                        None => return Some(pos),
                    }
                } else {
                    from = header_end;
                }
            }
        }
    }
    None
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
    use crate::policy::masking::MaskingConfig;

    fn masker() -> Masker {
        Masker::compile(&[MaskingConfig {
            name: "all".into(),
            detectors: ["credit_card", "email", "ssn", "phone", "iban", "secrets"]
                .map(String::from)
                .to_vec(),
            columns: vec![],
            replacement: None,
        }])
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn stream(m: &Masker, pieces: &[&[u8]]) -> Vec<u8> {
        let mut s = StreamMasker::new();
        let mut out = Vec::new();
        let mut counts = MaskCounts::default();
        for p in pieces {
            s.push(m, p, &mut out, &mut counts);
        }
        s.finish(m, &mut out, &mut counts);
        out
    }

    #[test]
    fn card_split_across_reads() {
        let m = masker();
        let out = stream(&m, &[b"pay 4111 1111 ", b"1111 1111 now\n"]);
        assert_eq!(out, b"pay **** **** **** 1111 now\n");
    }

    #[test]
    fn trailing_tokens() {
        assert_eq!(trailing_token_start(b"hello world"), 6);
        assert_eq!(trailing_token_start(b"hello world "), 12);
        assert_eq!(trailing_token_start(b"pay 4111 1111 "), 4);
        assert_eq!(trailing_token_start(b"call (555) 12"), 5);
        assert_eq!(trailing_token_start(b"x GB82 WEST 12"), 2);
        assert_eq!(trailing_token_start(b"mail john@exa"), 5);
    }

    #[test]
    fn private_key_split_and_long() {
        let m = masker();
        let body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n".repeat(400); // > 8 KiB
        let text = format!(
            "before\n-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\nafter\n"
        );
        let whole = {
            let mut c = MaskCounts::default();
            m.mask_value(text.as_bytes(), &mut c).unwrap_or_default()
        };
        assert_eq!(whole, b"before\n[REDACTED:private_key]\nafter\n");
        let pieces: Vec<&[u8]> = text.as_bytes().chunks(7).collect();
        assert_eq!(stream(&m, &pieces), whole);
        // A BEGIN header split mid-label.
        let pieces: Vec<&[u8]> = vec![
            b"x -----BEGIN RSA PRI",
            b"VATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        ];
        assert_eq!(stream(&m, &pieces), b"x [REDACTED:private_key]\n");
    }

    /// Inputs the property test once found wrong, streamed in two pieces at every cut.
    #[test]
    fn every_two_piece_split_matches_whole() {
        let m = masker();
        let key = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----";
        let cases = [
            format!("2000000000008-%H1Q9%.355+9c2%.6@i.co.b1sk4-et52.HaE-{key}"),
            format!("ghu_p0U5dTYGjc0gTI16Ir1A16KxNBYVdzObGB82WEST12345698765432AKIAJN4WY12T3D45IJBX+Rd+5V-_28d@m60-5.s.a.pFCix-{key}"),
            format!("{key}_+U.-0Ge*.25zin6XTIAKIA413KX7I4W62EPN1K AKIADA3758WD72MR37L0--+-++%_wng.mJ2-11v@5.Jth-{key}4370 5837 8929 2132*9-n..z+.*-21(157) 144-5598"),
            "+1694596 9807y%%u-q%_y.568QnLe%.p-@4.1.vBm-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----".to_string(),
            "DE89 3704 0044 0532 0130 00(ghr_A0aaa0A0aaAaaAaaA0A00aaa0AaA00".to_string(),
            "eyJr_5ERb--f_VKx_9.f7qa8SYnPv.-_y3_-a-+1-885).971 5753".to_string(),
        ];
        for text in &cases {
            let v = text.as_bytes();
            let mut c = MaskCounts::default();
            let whole = m.mask_value(v, &mut c).unwrap_or_else(|| v.to_vec());
            for cut in 0..=v.len() {
                let out = stream(&m, &[&v[..cut], &v[cut..]]);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&whole),
                    "{text:?} cut at {cut}"
                );
            }
        }
    }
}
