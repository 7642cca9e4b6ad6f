//! The audit log's record format and its verification.
//!
//! Each record is stored as the exact bytes that were hashed: `hash = SHA-256(prev_hash || bytes)`.
//! Verification re-hashes the stored bytes and never re-serialises, so a verifier does not need to
//! agree with the writer on JSON formatting, only on these few lines.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record of a chain.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// `SHA-256(prev_hash || bytes)`.
pub fn chain_hash(prev_hash: &[u8; 32], bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(bytes);
    h.finalize().into()
}

/// The JSON body of one audit event (what `bytes` decode to).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEvent {
    /// RFC 3339 time the gateway recorded the event.
    pub time: String,
    /// Dotted event kind: `auth.login`, `auth.rejected`, `config.loaded`, `api.key_created`, ...
    pub kind: String,
    /// Who did it (subject), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Client address, when the event came from the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `success`, `denied`, `error` ...
    pub outcome: String,
    /// Event-specific details. Never secrets.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

/// One stored record: its position, the exact event bytes and the links of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// 1-based position in the chain.
    pub seq: i64,
    /// The exact serialised event.
    pub bytes: Vec<u8>,
    /// Hash of the previous record (GENESIS for seq 1).
    pub prev_hash: [u8; 32],
    /// `chain_hash(prev_hash, bytes)`.
    pub hash: [u8; 32],
    /// A tombstone: the retention purge removed the bytes (`bytes` is empty) and kept the
    /// hashes, so the chain still links through it.
    pub purged: bool,
}

/// Why a chain does not verify; always names the first bad record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The record's bytes do not hash to its stored hash: its content was changed.
    #[error("record {seq}: content does not match its hash (the record was altered)")]
    ContentAltered { seq: i64 },
    /// The record's prev_hash is not the previous record's hash.
    #[error(
        "record {seq}: prev_hash does not match record {prev}'s hash (a record was inserted, removed or reordered)"
    )]
    BrokenLink { seq: i64, prev: i64 },
    /// Sequence numbers are not consecutive.
    #[error("record {seq}: expected sequence {expected} (a record is missing or out of order)")]
    Gap { seq: i64, expected: i64 },
}

/// Verifies records in order. `start` is the (seq, hash) the first record must follow: `(0,
/// GENESIS)` for a whole chain. Returns the number of records checked and the last hash.
pub fn verify_chain<'a, I>(
    start: (i64, [u8; 32]),
    records: I,
) -> Result<(u64, [u8; 32]), ChainError>
where
    I: IntoIterator<Item = &'a StoredRecord>,
{
    let (mut prev_seq, mut prev_hash) = start;
    let mut count = 0u64;
    for r in records {
        let expected = prev_seq + 1;
        if r.seq != expected {
            return Err(ChainError::Gap {
                seq: r.seq,
                expected,
            });
        }
        if !r.purged && chain_hash(&r.prev_hash, &r.bytes) != r.hash {
            return Err(ChainError::ContentAltered { seq: r.seq });
        }
        if r.prev_hash != prev_hash {
            return Err(ChainError::BrokenLink {
                seq: r.seq,
                prev: prev_seq,
            });
        }
        prev_seq = r.seq;
        prev_hash = r.hash;
        count += 1;
    }
    Ok((count, prev_hash))
}

// ---------------------------------------------------------------------------------------------
// Signed checkpoints
// ---------------------------------------------------------------------------------------------

/// What a public key file starts with (`ed25519:<base64 of the 32-byte key>`).
pub const KEY_PREFIX: &str = "ed25519:";

/// The export format this module writes and verifies.
pub const EXPORT_FORMAT: &str = "hoop-audit-export/1";

/// A signed statement by the gateway: "record `seq` of my chain has hash `hash`" at `time`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The chain head's sequence number.
    pub seq: i64,
    /// The chain head's hash.
    pub hash: [u8; 32],
    /// RFC 3339 time of signing (signed as this exact string).
    pub time: String,
    /// Ed25519 signature over [`checkpoint_message`].
    pub signature: [u8; 64],
}

/// The exact bytes a checkpoint signs: fixed text lines, so no JSON canonicalisation is needed.
pub fn checkpoint_message(seq: i64, hash: &[u8; 32], time: &str) -> Vec<u8> {
    format!(
        "hoop-audit-checkpoint/1\nseq={seq}\nhash={}\ntime={time}\n",
        hex::encode(hash)
    )
    .into_bytes()
}

/// The exact bytes an export's `end` line signs.
pub fn export_end_message(end: &ExportEnd) -> Vec<u8> {
    format!(
        "{EXPORT_FORMAT}\nfirst_seq={}\nprev_hash={}\nlast_seq={}\nhash={}\nrecords={}\ncheckpoints={}\ntime={}\n",
        end.first_seq,
        end.prev_hash,
        end.last_seq,
        end.hash,
        end.records,
        end.checkpoints,
        end.time
    )
    .into_bytes()
}

/// An Ed25519 public key that verifies checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// From the 32 raw bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| KeyError("the 32 bytes are not an Ed25519 public key".into()))
    }

    /// Parses the text of a key file: `ed25519:<base64>`, or the JSON answer of
    /// `GET /api/v1/audit/key` (its `public_key` field).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let line = if text.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| KeyError(format!("the key file is not valid JSON: {e}")))?;
            v.get("public_key")
                .and_then(|k| k.as_str())
                .map(str::to_string)
                .ok_or_else(|| KeyError("the JSON has no \"public_key\" string".into()))?
        } else {
            text.to_string()
        };
        let b64 = line.strip_prefix(KEY_PREFIX).ok_or_else(|| {
            KeyError(format!(
                "a key looks like `{KEY_PREFIX}<base64>` (from `hoopd keys show` or `hoop audit key`)"
            ))
        })?;
        let raw = b64_decode(b64).map_err(|e| KeyError(format!("the key's base64: {e}")))?;
        let bytes: [u8; 32] = raw
            .try_into()
            .map_err(|_| KeyError("an Ed25519 public key has 32 bytes".into()))?;
        Self::from_bytes(&bytes)
    }

    /// `ed25519:<base64>`.
    pub fn to_text(&self) -> String {
        format!("{KEY_PREFIX}{}", b64_encode(self.0.as_bytes()))
    }

    /// A short id: the first 8 bytes of SHA-256 of the key, hex.
    pub fn key_id(&self) -> String {
        let d = Sha256::digest(self.0.as_bytes());
        hex::encode(d.get(..8).unwrap_or_default())
    }

    /// True when `signature` is a valid (strict) Ed25519 signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        self.0.verify_strict(message, &sig).is_ok()
    }

    /// True when the checkpoint's signature is valid.
    pub fn verify_checkpoint(&self, c: &Checkpoint) -> bool {
        self.verify(&checkpoint_message(c.seq, &c.hash, &c.time), &c.signature)
    }
}

/// The gateway's signing key (the server keeps it in its data dir; this type does no IO).
pub struct SecretKey(ed25519_dalek::SigningKey);

impl SecretKey {
    /// From a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.0.sign(message).to_bytes()
    }

    /// A signed checkpoint of (seq, hash) at `time`.
    pub fn checkpoint(&self, seq: i64, hash: [u8; 32], time: &str) -> Checkpoint {
        Checkpoint {
            seq,
            hash,
            time: time.to_string(),
            signature: self.sign(&checkpoint_message(seq, &hash, time)),
        }
    }

    /// Fills in the signature of an export's end line.
    pub fn sign_end(&self, end: &mut ExportEnd) {
        end.signature = b64_encode(&self.sign(&export_end_message(end)));
    }
}

/// A key file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad public key: {0}")]
pub struct KeyError(String);

fn b64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Canonical base64 only (padding required, no stray trailing bits), so one text has one value.
fn b64_decode(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| e.to_string())
}

/// Lower-case hex only, so one text has one value (an upper-cased digit is an edit).
fn hex32(text: &str, what: &str) -> Result<[u8; 32], String> {
    if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!("{what} must be 64 lower-case hex digits"));
    }
    let v = hex::decode(text).map_err(|e| format!("{what}: {e}"))?;
    v.try_into().map_err(|_| format!("{what} is not 32 bytes"))
}

fn sig64(text: &str) -> Result<[u8; 64], String> {
    let v = b64_decode(text).map_err(|e| format!("signature: {e}"))?;
    v.try_into()
        .map_err(|_| "signature must be 64 bytes".to_string())
}

// ---------------------------------------------------------------------------------------------
// Export lines
// ---------------------------------------------------------------------------------------------

/// One line of an export (JSON, one object per line, `\n`-terminated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExportLine {
    /// A record with its exact stored bytes (base64).
    Record {
        /// Position in the chain.
        seq: i64,
        /// Hex hash of the previous record.
        prev_hash: String,
        /// Hex `SHA-256(prev_hash || bytes)`.
        hash: String,
        /// Base64 of the exact stored bytes (a JSON [`AuditEvent`]).
        bytes: String,
    },
    /// A record whose bytes the retention purge removed; the hashes remain.
    Tombstone {
        /// Position in the chain.
        seq: i64,
        /// Hex hash of the previous record.
        prev_hash: String,
        /// Hex hash the record had.
        hash: String,
    },
    /// A checkpoint the gateway signed while writing; follows the record it names.
    Checkpoint {
        /// The record it names.
        seq: i64,
        /// Hex hash of that record.
        hash: String,
        /// RFC 3339 time of signing.
        time: String,
        /// Base64 Ed25519 signature over [`checkpoint_message`].
        signature: String,
    },
    /// The last line: the gateway's signature over the whole range it exported.
    End(ExportEnd),
}

/// The signed last line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportEnd {
    /// Always [`EXPORT_FORMAT`].
    pub format: String,
    /// Sequence number of the first record exported.
    pub first_seq: i64,
    /// Hex prev_hash of the first record (the chain before the range).
    pub prev_hash: String,
    /// Sequence number of the last record exported (`first_seq - 1` when none).
    pub last_seq: i64,
    /// Hex hash of the last record exported (`prev_hash` when none).
    pub hash: String,
    /// Records and tombstones exported.
    pub records: u64,
    /// Checkpoint lines exported.
    pub checkpoints: u64,
    /// RFC 3339 time of the export.
    pub time: String,
    /// Base64 Ed25519 signature over [`export_end_message`].
    pub signature: String,
}

impl ExportLine {
    /// The line for a stored record (a tombstone when purged).
    pub fn from_record(r: &StoredRecord) -> Self {
        if r.purged {
            ExportLine::Tombstone {
                seq: r.seq,
                prev_hash: hex::encode(r.prev_hash),
                hash: hex::encode(r.hash),
            }
        } else {
            ExportLine::Record {
                seq: r.seq,
                prev_hash: hex::encode(r.prev_hash),
                hash: hex::encode(r.hash),
                bytes: b64_encode(&r.bytes),
            }
        }
    }

    /// The line for a checkpoint.
    pub fn from_checkpoint(c: &Checkpoint) -> Self {
        ExportLine::Checkpoint {
            seq: c.seq,
            hash: hex::encode(c.hash),
            time: c.time.clone(),
            signature: b64_encode(&c.signature),
        }
    }

    /// Compact JSON plus `\n`.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Builds the unsigned `end` line of a range; the caller signs [`export_end_message`] of it and
/// sets `signature`.
pub fn export_end(
    first_seq: i64,
    prev_hash: &[u8; 32],
    last_seq: i64,
    hash: &[u8; 32],
    records: u64,
    checkpoints: u64,
    time: &str,
) -> ExportEnd {
    ExportEnd {
        format: EXPORT_FORMAT.to_string(),
        first_seq,
        prev_hash: hex::encode(prev_hash),
        last_seq,
        hash: hex::encode(hash),
        records,
        checkpoints,
        time: time.to_string(),
        signature: String::new(),
    }
}

/// Why an export does not verify. Chain failures name the first bad record by sequence number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// A line is not a valid export line.
    #[error("line {line}: not a valid export line ({reason}); the file was altered or damaged")]
    Malformed { line: u64, reason: String },
    /// A record or tombstone does not follow the chain.
    #[error("{0}")]
    Chain(ChainError),
    /// A checkpoint names another hash than the chain has at that record.
    #[error(
        "record {seq}: the signed checkpoint names another hash (a record up to {seq} was altered)"
    )]
    CheckpointMismatch { seq: i64 },
    /// A checkpoint's signature does not verify with the key.
    #[error(
        "record {seq}: the checkpoint's signature is not valid for this key (forged, altered, or another gateway's key)"
    )]
    BadCheckpointSignature { seq: i64 },
    /// A checkpoint is not right after the record it names.
    #[error("line {line}: checkpoint for record {seq} is out of place (lines were moved)")]
    CheckpointOutOfPlace { line: u64, seq: i64 },
    /// Lines follow the `end` line.
    #[error("line {line}: lines after the end of the export (something was appended)")]
    AfterEnd { line: u64 },
    /// No `end` line: the file stops early.
    #[error(
        "the export is truncated: it stops after record {last_seq} without its signed end line"
    )]
    Truncated { last_seq: i64 },
    /// The `end` line's signature does not verify.
    #[error(
        "the export's end line has an invalid signature (forged, altered, or another gateway's key)"
    )]
    BadEndSignature,
    /// The records do not match the signed range.
    #[error(
        "record {seq}: the signed end line covers records {first}..={last} with another hash; records are missing, added or altered"
    )]
    RangeMismatch { seq: i64, first: i64, last: i64 },
    /// Checkpoint lines were removed or added.
    #[error(
        "the export holds {found} checkpoints but its end line signed {signed} (checkpoint lines were removed or added)"
    )]
    CheckpointCount { signed: u64, found: u64 },
    /// A tombstone that no `audit.purged` record in the export accounts for.
    #[error("record {seq}: a tombstone (content removed) that no later audit.purged record covers")]
    UnaccountedTombstone { seq: i64 },
}

/// What a verified export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// First sequence number.
    pub first_seq: i64,
    /// Last sequence number.
    pub last_seq: i64,
    /// Records with content.
    pub records: u64,
    /// Tombstones.
    pub tombstones: u64,
    /// Checkpoints whose signatures verified (the end line not included).
    pub checkpoints: u64,
    /// Hex hash of the last record.
    pub head: String,
    /// When the gateway signed the export.
    pub exported_at: String,
}

/// Verifies an export line by line, without IO: feed every line (with its `\n`) to
/// [`ExportVerifier::line`], then call [`ExportVerifier::finish`].
///
/// Checks: every line parses strictly; records are consecutive and each re-hashes from its exact
/// bytes and links to the previous one; every checkpoint follows the record it names, names its
/// hash and carries a valid signature; every tombstone is covered by a later `audit.purged`
/// record; the file ends with a signed `end` line naming the first and last record and their
/// hashes (so a truncated, extended or re-cut file fails).
pub struct ExportVerifier {
    key: PublicKey,
    line_no: u64,
    /// (seq, hash) of the last record seen; `None` before the first.
    last: Option<(i64, [u8; 32])>,
    first: Option<(i64, [u8; 32])>,
    records: u64,
    tombstones: u64,
    checkpoints: u64,
    /// Highest tombstone seq seen.
    max_tombstone: Option<i64>,
    /// Highest seq an `audit.purged` record said it purged.
    purged_through: i64,
    end: Option<ExportEnd>,
}

fn malformed(line: u64, reason: impl Into<String>) -> ExportError {
    ExportError::Malformed {
        line,
        reason: reason.into(),
    }
}

impl ExportVerifier {
    /// A verifier for exports signed with `key`.
    pub fn new(key: PublicKey) -> Self {
        Self {
            key,
            line_no: 0,
            last: None,
            first: None,
            records: 0,
            tombstones: 0,
            checkpoints: 0,
            max_tombstone: None,
            purged_through: 0,
            end: None,
        }
    }

    /// Checks one line, which must end with `\n`.
    pub fn line(&mut self, raw: &[u8]) -> Result<(), ExportError> {
        self.line_no += 1;
        let n = self.line_no;
        if self.end.is_some() {
            return Err(ExportError::AfterEnd { line: n });
        }
        let Some(body) = raw.strip_suffix(b"\n") else {
            return Err(malformed(n, "the line does not end with a newline"));
        };
        let parsed: ExportLine =
            serde_json::from_slice(body).map_err(|e| malformed(n, e.to_string()))?;
        // Serialising back must give the same bytes: one export has exactly one spelling.
        let canonical = serde_json::to_vec(&parsed).map_err(|e| malformed(n, e.to_string()))?;
        if canonical != body {
            return Err(malformed(n, "not in the canonical spelling"));
        }
        match parsed {
            ExportLine::Record {
                seq,
                prev_hash,
                hash,
                bytes,
            } => {
                let rec = StoredRecord {
                    seq,
                    bytes: b64_decode(&bytes).map_err(|e| malformed(n, format!("bytes: {e}")))?,
                    prev_hash: hex32(&prev_hash, "prev_hash").map_err(|e| malformed(n, e))?,
                    hash: hex32(&hash, "hash").map_err(|e| malformed(n, e))?,
                    purged: false,
                };
                self.chain(&rec)?;
                self.records += 1;
                if let Ok(ev) = serde_json::from_slice::<AuditEvent>(&rec.bytes)
                    && ev.kind == PURGE_KIND
                    && let Some(t) = ev
                        .details
                        .get("audit_through_seq")
                        .and_then(serde_json::Value::as_i64)
                {
                    self.purged_through = self.purged_through.max(t);
                }
            }
            ExportLine::Tombstone {
                seq,
                prev_hash,
                hash,
            } => {
                let rec = StoredRecord {
                    seq,
                    bytes: Vec::new(),
                    prev_hash: hex32(&prev_hash, "prev_hash").map_err(|e| malformed(n, e))?,
                    hash: hex32(&hash, "hash").map_err(|e| malformed(n, e))?,
                    purged: true,
                };
                self.chain(&rec)?;
                self.tombstones += 1;
                self.max_tombstone = Some(seq);
            }
            ExportLine::Checkpoint {
                seq,
                hash,
                time,
                signature,
            } => {
                let c = Checkpoint {
                    seq,
                    hash: hex32(&hash, "hash").map_err(|e| malformed(n, e))?,
                    time,
                    signature: sig64(&signature).map_err(|e| malformed(n, e))?,
                };
                let Some((last_seq, last_hash)) = self.last else {
                    return Err(ExportError::CheckpointOutOfPlace { line: n, seq });
                };
                if last_seq != seq {
                    return Err(ExportError::CheckpointOutOfPlace { line: n, seq });
                }
                if last_hash != c.hash {
                    return Err(ExportError::CheckpointMismatch { seq });
                }
                if !self.key.verify_checkpoint(&c) {
                    return Err(ExportError::BadCheckpointSignature { seq });
                }
                self.checkpoints += 1;
            }
            ExportLine::End(end) => {
                if end.format != EXPORT_FORMAT {
                    return Err(malformed(
                        n,
                        format!(
                            "unknown format {:?} (this verifier reads {EXPORT_FORMAT})",
                            end.format
                        ),
                    ));
                }
                let sig = sig64(&end.signature).map_err(|e| malformed(n, e))?;
                if !self.key.verify(&export_end_message(&end), &sig) {
                    return Err(ExportError::BadEndSignature);
                }
                let prev = hex32(&end.prev_hash, "prev_hash").map_err(|e| malformed(n, e))?;
                let head = hex32(&end.hash, "hash").map_err(|e| malformed(n, e))?;
                let mismatch = |seq| ExportError::RangeMismatch {
                    seq,
                    first: end.first_seq,
                    last: end.last_seq,
                };
                match (self.first, self.last) {
                    (Some((first_seq, first_prev)), Some((last_seq, last_hash))) => {
                        if first_seq != end.first_seq || first_prev != prev {
                            return Err(mismatch(first_seq));
                        }
                        if last_seq != end.last_seq || last_hash != head {
                            return Err(mismatch(last_seq.min(end.last_seq)));
                        }
                    }
                    _ => {
                        if end.last_seq != end.first_seq - 1 || prev != head {
                            return Err(mismatch(end.first_seq));
                        }
                    }
                }
                if end.records != self.records + self.tombstones {
                    return Err(mismatch(end.last_seq));
                }
                if end.checkpoints != self.checkpoints {
                    return Err(ExportError::CheckpointCount {
                        signed: end.checkpoints,
                        found: self.checkpoints,
                    });
                }
                self.end = Some(end);
            }
        }
        Ok(())
    }

    fn chain(&mut self, r: &StoredRecord) -> Result<(), ExportError> {
        let start = match self.last {
            Some(l) => l,
            // The first record of a range is trusted to follow its own prev_hash; the signed end
            // line pins both.
            None => (r.seq - 1, r.prev_hash),
        };
        verify_chain(start, std::iter::once(r)).map_err(ExportError::Chain)?;
        if self.first.is_none() {
            self.first = Some((r.seq, r.prev_hash));
        }
        self.last = Some((r.seq, r.hash));
        Ok(())
    }

    /// Ends the check: the export must have had its signed end line.
    pub fn finish(self) -> Result<ExportSummary, ExportError> {
        let Some(end) = self.end else {
            return Err(ExportError::Truncated {
                last_seq: self.last.map(|l| l.0).unwrap_or(0),
            });
        };
        if let Some(t) = self.max_tombstone
            && t > self.purged_through
        {
            return Err(ExportError::UnaccountedTombstone { seq: t });
        }
        Ok(ExportSummary {
            first_seq: end.first_seq,
            last_seq: end.last_seq,
            records: self.records,
            tombstones: self.tombstones,
            checkpoints: self.checkpoints,
            head: end.hash,
            exported_at: end.time,
        })
    }
}

/// Verifies a whole export held in memory (tests, small files).
pub fn verify_export(data: &[u8], key: &PublicKey) -> Result<ExportSummary, ExportError> {
    let mut v = ExportVerifier::new(key.clone());
    for line in data.split_inclusive(|b| *b == b'\n') {
        v.line(line)?;
    }
    v.finish()
}

/// The audit kind of the retention purge's own record. Its `details.audit_through_seq` names
/// the last record it may turn into a tombstone.
pub const PURGE_KIND: &str = "retention.purged";

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<StoredRecord> {
        let mut prev = GENESIS;
        (1..=n as i64)
            .map(|seq| {
                let bytes = format!("{{\"n\":{seq}}}").into_bytes();
                let hash = chain_hash(&prev, &bytes);
                let r = StoredRecord {
                    seq,
                    bytes,
                    prev_hash: prev,
                    hash,
                    purged: false,
                };
                prev = hash;
                r
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        let (n, last) = verify_chain((0, GENESIS), &c).unwrap();
        assert_eq!(n, 5);
        assert_eq!(last, c[4].hash);
    }

    #[test]
    fn edited_byte_names_the_record() {
        let mut c = chain(5);
        c[2].bytes[3] ^= 1;
        assert_eq!(
            verify_chain((0, GENESIS), &c),
            Err(ChainError::ContentAltered { seq: 3 })
        );
    }

    #[test]
    fn removed_record_is_a_gap() {
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(
            verify_chain((0, GENESIS), &c),
            Err(ChainError::Gap {
                seq: 3,
                expected: 2
            })
        );
    }

    #[test]
    fn rehashed_forgery_breaks_the_link() {
        let mut c = chain(5);
        c[2].bytes = b"{\"n\":99}".to_vec();
        c[2].hash = chain_hash(&c[2].prev_hash, &c[2].bytes);
        assert_eq!(
            verify_chain((0, GENESIS), &c),
            Err(ChainError::BrokenLink { seq: 4, prev: 3 })
        );
    }

    // ---- exports -------------------------------------------------------------------------

    fn key() -> SecretKey {
        SecretKey::from_seed(&[7u8; 32])
    }

    fn event_bytes(seq: i64) -> Vec<u8> {
        serde_json::to_vec(&AuditEvent {
            time: format!("2026-01-01T00:00:{:02}Z", seq % 60),
            kind: "test.event".into(),
            actor: Some("ada".into()),
            source: None,
            outcome: "success".into(),
            details: serde_json::json!({ "n": seq }),
        })
        .unwrap()
    }

    /// A chain of `n` records, optionally with the first `purged` ones tombstoned.
    fn records(n: i64) -> Vec<StoredRecord> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let bytes = event_bytes(seq);
                let hash = chain_hash(&prev, &bytes);
                let r = StoredRecord {
                    seq,
                    bytes,
                    prev_hash: prev,
                    hash,
                    purged: false,
                };
                prev = hash;
                r
            })
            .collect()
    }

    /// An export of `recs`, with a checkpoint after every `every`-th record.
    fn export(recs: &[StoredRecord], every: i64) -> Vec<u8> {
        let k = key();
        let mut out = String::new();
        let mut cps = 0;
        for r in recs {
            out.push_str(&ExportLine::from_record(r).to_line());
            if r.seq % every == 0 {
                let c = k.checkpoint(r.seq, r.hash, "2026-01-01T00:01:00Z");
                out.push_str(&ExportLine::from_checkpoint(&c).to_line());
                cps += 1;
            }
        }
        let (first, prev) = recs
            .first()
            .map(|r| (r.seq, r.prev_hash))
            .unwrap_or((1, GENESIS));
        let (last, head) = recs.last().map(|r| (r.seq, r.hash)).unwrap_or((0, GENESIS));
        let mut end = export_end(
            first,
            &prev,
            last,
            &head,
            recs.len() as u64,
            cps,
            "2026-01-01T00:02:00Z",
        );
        k.sign_end(&mut end);
        out.push_str(&ExportLine::End(end).to_line());
        out.into_bytes()
    }

    fn lines(data: &[u8]) -> Vec<Vec<u8>> {
        data.split_inclusive(|b| *b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    #[test]
    fn export_round_trips() {
        let data = export(&records(10), 3);
        let s = verify_export(&data, &key().public()).unwrap();
        assert_eq!(
            (s.first_seq, s.last_seq, s.records, s.checkpoints),
            (1, 10, 10, 3)
        );
    }

    #[test]
    fn key_text_round_trips_and_json_is_accepted() {
        let p = key().public();
        assert_eq!(PublicKey::parse(&p.to_text()).unwrap(), p);
        let json = format!(
            "{{\"algorithm\":\"ed25519\",\"public_key\":\"{}\"}}",
            p.to_text()
        );
        assert_eq!(PublicKey::parse(&json).unwrap(), p);
        assert!(PublicKey::parse("ssh-ed25519 AAAA").is_err());
    }

    #[test]
    fn another_key_fails() {
        let data = export(&records(4), 2);
        let other = SecretKey::from_seed(&[8u8; 32]).public();
        assert_eq!(
            verify_export(&data, &other),
            Err(ExportError::BadCheckpointSignature { seq: 2 })
        );
    }

    #[test]
    fn edited_record_is_named() {
        let recs = records(6);
        let data = export(&recs, 100);
        let mut ls = lines(&data);
        let forged = {
            let mut r = recs[3].clone();
            r.bytes = b"{\"forged\":true}".to_vec();
            ExportLine::from_record(&r).to_line()
        };
        ls[3] = forged.into_bytes();
        assert_eq!(
            verify_export(&ls.concat(), &key().public()),
            Err(ExportError::Chain(ChainError::ContentAltered { seq: 4 }))
        );
    }

    #[test]
    fn rehashed_forgery_is_caught_by_the_next_link() {
        let recs = records(6);
        let mut ls = lines(&export(&recs, 100));
        let mut r = recs[2].clone();
        r.bytes = b"{\"forged\":true}".to_vec();
        r.hash = chain_hash(&r.prev_hash, &r.bytes);
        ls[2] = ExportLine::from_record(&r).to_line().into_bytes();
        assert_eq!(
            verify_export(&ls.concat(), &key().public()),
            Err(ExportError::Chain(ChainError::BrokenLink {
                seq: 4,
                prev: 3
            }))
        );
    }

    #[test]
    fn deleted_inserted_and_reordered_records_are_named() {
        let recs = records(6);
        let ls = lines(&export(&recs, 100));
        let mut del = ls.clone();
        del.remove(2);
        assert_eq!(
            verify_export(&del.concat(), &key().public()),
            Err(ExportError::Chain(ChainError::Gap {
                seq: 4,
                expected: 3
            }))
        );
        let mut swap = ls.clone();
        swap.swap(1, 2);
        assert_eq!(
            verify_export(&swap.concat(), &key().public()),
            Err(ExportError::Chain(ChainError::Gap {
                seq: 3,
                expected: 2
            }))
        );
        let mut ins = ls.clone();
        ins.insert(2, ls[1].clone());
        assert_eq!(
            verify_export(&ins.concat(), &key().public()),
            Err(ExportError::Chain(ChainError::Gap {
                seq: 2,
                expected: 3
            }))
        );
    }

    #[test]
    fn truncation_is_detected() {
        let recs = records(6);
        let ls = lines(&export(&recs, 2));
        // Cut right after a checkpoint: every remaining line verifies, but the end line is gone.
        let cut = ls[..6].concat();
        assert_eq!(
            verify_export(&cut, &key().public()),
            Err(ExportError::Truncated { last_seq: 4 })
        );
        // The last records dropped and the end line kept: the signed range does not match.
        let mut short = ls[..6].to_vec();
        short.push(ls.last().unwrap().clone());
        assert_eq!(
            verify_export(&short.concat(), &key().public()),
            Err(ExportError::RangeMismatch {
                seq: 4,
                first: 1,
                last: 6
            })
        );
    }

    #[test]
    fn tombstones_need_a_purge_record() {
        let mut recs = records(6);
        for r in recs.iter_mut().take(3) {
            r.purged = true;
            r.bytes.clear();
        }
        let data = export(&recs, 100);
        assert_eq!(
            verify_export(&data, &key().public()),
            Err(ExportError::UnaccountedTombstone { seq: 3 })
        );
        // Now append a purge record that covers them.
        let mut prev = recs[5].hash;
        let bytes = serde_json::to_vec(&AuditEvent {
            time: "2026-01-02T00:00:00Z".into(),
            kind: PURGE_KIND.into(),
            actor: None,
            source: None,
            outcome: "success".into(),
            details: serde_json::json!({"audit_through_seq": 3}),
        })
        .unwrap();
        let hash = chain_hash(&prev, &bytes);
        recs.push(StoredRecord {
            seq: 7,
            bytes,
            prev_hash: prev,
            hash,
            purged: false,
        });
        prev = hash;
        let _ = prev;
        let s = verify_export(&export(&recs, 100), &key().public()).unwrap();
        assert_eq!((s.records, s.tombstones), (4, 3));
    }

    #[test]
    fn empty_export_verifies() {
        let data = export(&[], 1);
        let s = verify_export(&data, &key().public()).unwrap();
        assert_eq!(s.records, 0);
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        /// Replace the byte at this position (modulo the length) with another value.
        Edit(usize, u8),
        /// Delete the byte at this position.
        DeleteByte(usize),
        /// Delete this line.
        DeleteLine(usize),
        /// Swap two different lines.
        Swap(usize, usize),
        /// Duplicate a line in place.
        Duplicate(usize),
        /// Cut the file at this byte.
        Truncate(usize),
    }

    fn mutation() -> impl proptest::strategy::Strategy<Value = Mutation> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (any::<usize>(), 1u8..=255).prop_map(|(p, x)| Mutation::Edit(p, x)),
            1 => any::<usize>().prop_map(Mutation::DeleteByte),
            2 => any::<usize>().prop_map(Mutation::DeleteLine),
            2 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
            1 => any::<usize>().prop_map(Mutation::Duplicate),
            1 => any::<usize>().prop_map(Mutation::Truncate),
        ]
    }

    fn apply(data: &[u8], m: &Mutation) -> Vec<u8> {
        let mut ls = lines(data);
        let n = ls.len();
        match *m {
            Mutation::Edit(p, x) => {
                let mut d = data.to_vec();
                let p = p % d.len();
                // XOR with a non-zero value: always a different byte.
                d[p] ^= x;
                d
            }
            Mutation::DeleteByte(p) => {
                let mut d = data.to_vec();
                d.remove(p % data.len());
                d
            }
            Mutation::DeleteLine(i) => {
                ls.remove(i % n);
                ls.concat()
            }
            Mutation::Swap(a, b) => {
                let (a, b) = (a % n, b % n);
                let b = if a == b { (b + 1) % n } else { b };
                ls.swap(a, b);
                ls.concat()
            }
            Mutation::Duplicate(i) => {
                let i = i % n;
                let l = ls[i].clone();
                ls.insert(i, l);
                ls.concat()
            }
            Mutation::Truncate(p) => data[..p % data.len()].to_vec(),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 10_000, ..Default::default() })]

        /// 10,000 random single-byte edits, byte and line deletions, swaps, duplications and
        /// truncations of a real-shaped export (records, checkpoints, tombstones covered by a
        /// purge record, end line): every one fails verification.
        #[test]
        fn every_mutation_is_detected(m in mutation()) {
            let data = fixture();
            let mutated = apply(data, &m);
            proptest::prop_assert_ne!(&mutated[..], data);
            let r = verify_export(&mutated, &key().public());
            proptest::prop_assert!(r.is_err(), "{:?} went undetected", m);
        }
    }

    fn fixture() -> &'static [u8] {
        static DATA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        DATA.get_or_init(|| {
            let mut recs = records(12);
            for r in recs.iter_mut().take(2) {
                r.purged = true;
                r.bytes.clear();
            }
            let prev = recs[11].hash;
            let bytes = serde_json::to_vec(&AuditEvent {
                time: "2026-01-02T00:00:00Z".into(),
                kind: PURGE_KIND.into(),
                actor: None,
                source: None,
                outcome: "success".into(),
                details: serde_json::json!({"audit_through_seq": 2}),
            })
            .unwrap();
            let hash = chain_hash(&prev, &bytes);
            recs.push(StoredRecord {
                seq: 13,
                bytes,
                prev_hash: prev,
                hash,
                purged: false,
            });
            let data = export(&recs, 4);
            verify_export(&data, &key().public()).unwrap();
            data
        })
    }
}
