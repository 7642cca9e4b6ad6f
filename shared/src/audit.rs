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
        if chain_hash(&r.prev_hash, &r.bytes) != r.hash {
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
}
