//! The client's extended-protocol batch as the gateway holds it, IO-free.
//!
//! A batch is what the client sends up to Sync (or Flush, or a message that is not part of the
//! extended protocol, which ends it the way Flush does). It is held, and judged as a whole when
//! it ends: a blocked statement is answered by the gateway and none of the batch is sent; a
//! batch with statements that need review is sent only once one review covering all of them is
//! approved. Holding costs memory, so it is bounded in bytes and in messages (a flood of tiny
//! messages costs bookkeeping too). On connections whose statements may need review the bounds
//! are hard: a batch past them is refused whole. Elsewhere they are soft: what is held (all of
//! it checked) is sent and holding starts again.
//!
//! Once a batch is refused, what follows until its Sync is dropped unread (PostgreSQL too
//! ignores everything after an error until Sync), so a refused batch costs no memory however
//! long it goes on.

use std::sync::Arc;

use bytes::BytesMut;

/// Bytes a held batch may reach.
pub(super) const MAX_HELD_BYTES: usize = 8 << 20;
/// Messages a held batch may reach.
pub(super) const MAX_HELD_MESSAGES: usize = 10_000;

/// One execution that needs review: a Bind of a statement that needs review, with its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Execution {
    /// The statement text as sent (exact; only its digest is stored).
    pub text: Arc<str>,
    /// The text with the masking detectors applied, as the reviewer sees it.
    pub shown: String,
    /// Parameter values as the reviewer sees them (detectors applied, binary ones as text).
    pub params: Vec<Option<String>>,
    /// SHA-256 of the exact parameter values and formats.
    pub values_digest: [u8; 32],
    /// What else the reviewer should know (prepared statements it runs), detectors applied.
    pub note: Option<String>,
    /// The class or rule set that asked for review.
    pub rule: String,
    /// Why.
    pub reason: String,
}

/// Why a batch is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// A guardrail (or the protocol rules) blocked a statement of it.
    Blocked {
        /// The rule.
        rule: String,
        /// Why.
        reason: String,
    },
    /// It passed a bound while its statements may need review.
    TooLarge(Bound),
}

/// A bound a held batch passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bound {
    /// [`MAX_HELD_BYTES`].
    Bytes,
    /// [`MAX_HELD_MESSAGES`].
    Messages,
}

impl Bound {
    /// The bound in words.
    pub fn describe(self) -> String {
        match self {
            Bound::Bytes => format!("{} MiB", MAX_HELD_BYTES >> 20),
            Bound::Messages => format!("{MAX_HELD_MESSAGES} messages"),
        }
    }
}

/// Where the batch is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Phase {
    /// Collecting messages.
    Open,
    /// Refused: the rest until Sync (or Flush) is dropped, then the client gets the error.
    Refused(Refusal),
    /// Refused and answered at a Flush: the rest until Sync is dropped.
    Discarding,
}

/// What to do with the next message of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Hold it.
    Hold,
    /// Send what is held first (soft bounds), then hold it.
    SendHeldFirst,
    /// Refuse the batch (hard bounds).
    Refuse(Bound),
}

/// The held batch. `T` is what the target will answer for it (handed to the other direction
/// when the batch is sent).
pub(super) struct Batch<T> {
    /// The held messages, as they will be sent.
    pub bytes: BytesMut,
    /// What the target will answer for them, in order.
    pub items: Vec<T>,
    /// Held messages.
    messages: usize,
    /// Where the batch is.
    pub phase: Phase,
    /// Executions that need review.
    pub reviews: Vec<Execution>,
    /// Part of the current extended sequence (up to Sync) already reached the target.
    pub forwarded: bool,
    /// Hard bounds (statements on this connection may need review).
    hard: bool,
}

impl<T> Batch<T> {
    /// An empty batch; `hard`: refuse rather than send a batch that passes a bound.
    pub fn new(hard: bool) -> Self {
        Batch {
            bytes: BytesMut::new(),
            items: Vec::new(),
            messages: 0,
            phase: Phase::Open,
            reviews: Vec::new(),
            forwarded: false,
            hard,
        }
    }

    /// Whether messages are being dropped until the next Sync (`sync`) or terminator.
    pub fn dropping(&self, tag: u8) -> bool {
        match self.phase {
            Phase::Open => false,
            Phase::Refused(_) => tag != b'S' && tag != b'H',
            Phase::Discarding => tag != b'S',
        }
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.messages == 0 && self.bytes.is_empty()
    }

    /// Decides about the next message of `len` bytes.
    pub fn admit(&self, len: usize) -> Admit {
        let bound = if self.bytes.len() + len > MAX_HELD_BYTES {
            Some(Bound::Bytes)
        } else if self.messages + 1 > MAX_HELD_MESSAGES {
            Some(Bound::Messages)
        } else {
            None
        };
        match bound {
            None => Admit::Hold,
            Some(b) if self.hard => Admit::Refuse(b),
            Some(_) if self.is_empty() => Admit::Hold,
            Some(_) => Admit::SendHeldFirst,
        }
    }

    /// Counts one held message (its bytes are in `bytes` already).
    pub fn held(&mut self) {
        self.messages += 1;
    }

    /// Refuses the batch: what is held is dropped, and so is the rest until Sync.
    pub fn refuse(&mut self, why: Refusal) {
        if matches!(self.phase, Phase::Open) {
            self.phase = Phase::Refused(why);
        }
        self.clear();
    }

    /// Empties the batch (what was held is sent or dropped), keeping its buffers.
    pub fn clear(&mut self) {
        self.messages = 0;
        self.bytes.clear();
        self.items.clear();
        self.reviews.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn hold(b: &mut Batch<()>, len: usize) -> Admit {
        let a = b.admit(len);
        if a == Admit::Hold {
            b.bytes.extend_from_slice(&vec![0u8; len]);
            b.held();
        }
        a
    }

    #[test]
    fn hard_bounds_refuse_by_bytes_and_by_count() {
        let mut b = Batch::<()>::new(true);
        assert_eq!(hold(&mut b, MAX_HELD_BYTES - 10), Admit::Hold);
        assert_eq!(hold(&mut b, 11), Admit::Refuse(Bound::Bytes));
        let mut b = Batch::<()>::new(true);
        for _ in 0..MAX_HELD_MESSAGES {
            assert_eq!(hold(&mut b, 5), Admit::Hold);
        }
        assert_eq!(hold(&mut b, 5), Admit::Refuse(Bound::Messages));
    }

    #[test]
    fn soft_bounds_send_what_is_held() {
        let mut b = Batch::<()>::new(false);
        assert_eq!(hold(&mut b, MAX_HELD_BYTES), Admit::Hold);
        assert_eq!(b.admit(1), Admit::SendHeldFirst);
        b.clear();
        assert_eq!(hold(&mut b, 1), Admit::Hold);
        // One message larger than the bound is still held when nothing else is.
        let b = Batch::<()>::new(false);
        assert_eq!(b.admit(MAX_HELD_BYTES + 1), Admit::Hold);
    }

    #[test]
    fn a_refused_batch_drops_until_its_terminator() {
        let mut b = Batch::<()>::new(true);
        hold(&mut b, 100);
        b.refuse(Refusal::TooLarge(Bound::Bytes));
        assert!(b.is_empty());
        assert!(b.dropping(b'P') && b.dropping(b'Q') && !b.dropping(b'H'));
        assert!(!b.dropping(b'S'));
        b.phase = Phase::Discarding;
        assert!(b.dropping(b'H') && !b.dropping(b'S'));
        // A later refusal does not replace the first reason.
        let mut b = Batch::<()>::new(true);
        b.refuse(Refusal::TooLarge(Bound::Messages));
        b.refuse(Refusal::TooLarge(Bound::Bytes));
        assert_eq!(b.phase, Phase::Refused(Refusal::TooLarge(Bound::Messages)));
    }
}
