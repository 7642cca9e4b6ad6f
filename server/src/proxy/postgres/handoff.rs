//! The queue from a session's client direction to its target direction.
//!
//! Most of what the client direction queues (a statement in flight, a Sync, a Describe) only
//! matters once the target answers, and the target direction takes everything queued before
//! it reads the target's bytes. Waking that task for each such item would cost a task wake-up
//! (often a thread unpark) per statement for nothing, so the sender says which items need the
//! receiver now (the gateway's own answers, a kill) and only those wake it. Closing (every
//! sender dropped) wakes it too. tokio's mpsc channels wake the receiver on every send, hence
//! this small queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

struct Inner<T> {
    queue: Mutex<VecDeque<T>>,
    notify: Notify,
    senders: AtomicUsize,
    receiver_gone: AtomicBool,
}

impl<T> Inner<T> {
    fn queue(&self) -> MutexGuard<'_, VecDeque<T>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The receiver is gone.
#[derive(Debug)]
pub struct Closed;

/// Sending side; clone it for more senders.
pub struct HandoffTx<T>(Arc<Inner<T>>);

/// Receiving side.
pub struct HandoffRx<T>(Arc<Inner<T>>);

/// A new queue.
pub fn handoff<T>() -> (HandoffTx<T>, HandoffRx<T>) {
    let inner = Arc::new(Inner {
        queue: Mutex::new(VecDeque::new()),
        notify: Notify::new(),
        senders: AtomicUsize::new(1),
        receiver_gone: AtomicBool::new(false),
    });
    (HandoffTx(inner.clone()), HandoffRx(inner))
}

impl<T> HandoffTx<T> {
    /// Queues `item`; `wake` makes the receiver's [`HandoffRx::ready`] complete.
    pub fn push(&self, item: T, wake: bool) -> Result<(), Closed> {
        if self.0.receiver_gone.load(Ordering::Acquire) {
            return Err(Closed);
        }
        self.0.queue().push_back(item);
        if wake {
            self.0.notify.notify_one();
        }
        Ok(())
    }
}

impl<T> Clone for HandoffTx<T> {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::AcqRel);
        HandoffTx(self.0.clone())
    }
}

impl<T> Drop for HandoffTx<T> {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.notify.notify_one();
        }
    }
}

impl<T> HandoffRx<T> {
    /// The next queued item, without waiting.
    pub fn try_recv(&self) -> Option<T> {
        self.0.queue().pop_front()
    }

    /// True when every sender is gone (items may still be queued).
    pub fn closed(&self) -> bool {
        self.0.senders.load(Ordering::Acquire) == 0
    }

    /// Completes after a waking push or the last sender's drop (at once when closed). A wake
    /// that came while nobody waited is kept, so none is lost.
    pub async fn ready(&self) {
        if self.closed() {
            return;
        }
        self.0.notify.notified().await;
    }
}

impl<T> Drop for HandoffRx<T> {
    fn drop(&mut self) {
        self.0.receiver_gone.store(true, Ordering::Release);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn quiet_items_wait_for_a_wake_and_keep_their_order() {
        let (tx, rx) = handoff();
        tx.push(1, false).unwrap();
        tx.push(2, false).unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(50), rx.ready()).await;
        assert!(quiet.is_err(), "a quiet push must not wake the receiver");
        tx.push(3, true).unwrap();
        rx.ready().await;
        let got: Vec<i32> = std::iter::from_fn(|| rx.try_recv()).collect();
        assert_eq!(got, [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_wake_before_the_wait_is_not_lost() {
        let (tx, rx) = handoff();
        tx.push(1, true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.ready())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_last_sender_dropping_closes_and_wakes() {
        let (tx, rx) = handoff::<i32>();
        let tx2 = tx.clone();
        drop(tx);
        assert!(!rx.closed());
        let waiter = tokio::spawn(async move {
            rx.ready().await;
            rx.closed()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(tx2);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .unwrap()
                .unwrap()
        );
    }

    #[tokio::test]
    async fn pushing_after_the_receiver_left_fails() {
        let (tx, rx) = handoff();
        drop(rx);
        assert!(tx.push(1, false).is_err());
    }
}
