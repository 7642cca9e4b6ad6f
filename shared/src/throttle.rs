//! Reporting a repeated event at most once per interval without losing count of it.
//!
//! Refused local logins are the case in point: another user on the client machine can try the
//! tunnel's port in a loop, and each refusal must neither write its own audit record nor its
//! own log line, yet an investigator must learn how many there were. The first event after a
//! quiet interval is reported at once (so a single refusal shows up promptly); events inside
//! the interval are counted, and one report carries the count when the interval ends. The
//! caller owns the clock and the timer, so this is tested without sleeping.

use std::time::{Duration, Instant};

/// What the caller does with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Report now: `count` events (this one and any held back before it).
    Report {
        /// Events covered by this report.
        count: u64,
    },
    /// Held back and counted. `flush_at` is set for the first event held in an interval:
    /// the caller arranges to call [`Throttle::flush`] then (later ones get `None`).
    Held {
        /// When to flush, if the caller must arrange it.
        flush_at: Option<Instant>,
    },
}

/// One stream of events (one tunnel, one user and connection) reported at most once per
/// interval.
#[derive(Debug, Clone)]
pub struct Throttle {
    interval: Duration,
    last_report: Option<Instant>,
    held: u64,
    flush_pending: bool,
}

impl Throttle {
    /// A throttle that reports at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_report: None,
            held: 0,
            flush_pending: false,
        }
    }

    /// Counts one event at `now`.
    pub fn hit(&mut self, now: Instant) -> Tick {
        let due = self
            .last_report
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if due && !self.flush_pending {
            self.last_report = Some(now);
            let count = self.held.saturating_add(1);
            self.held = 0;
            return Tick::Report { count };
        }
        self.held = self.held.saturating_add(1);
        if self.flush_pending {
            return Tick::Held { flush_at: None };
        }
        self.flush_pending = true;
        let at = self
            .last_report
            .map_or(now, |last| last.checked_add(self.interval).unwrap_or(now));
        Tick::Held { flush_at: Some(at) }
    }

    /// At the flush time a [`Tick::Held`] named: the count to report, if any was held.
    pub fn flush(&mut self, now: Instant) -> Option<u64> {
        self.flush_pending = false;
        if self.held == 0 {
            return None;
        }
        self.last_report = Some(now);
        Some(std::mem::take(&mut self.held))
    }

    /// True when nothing is held and the last report is older than the interval: the caller
    /// may forget this throttle (a fresh one behaves the same).
    pub fn idle(&self, now: Instant) -> bool {
        self.held == 0
            && !self.flush_pending
            && self
                .last_report
                .is_none_or(|last| now.saturating_duration_since(last) >= self.interval)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn the_first_event_is_reported_at_once() {
        let mut t = Throttle::new(MIN);
        assert_eq!(t.hit(Instant::now()), Tick::Report { count: 1 });
    }

    #[test]
    fn a_flood_is_one_report_then_one_flush_with_the_count() {
        let t0 = Instant::now();
        let mut t = Throttle::new(MIN);
        assert_eq!(t.hit(t0), Tick::Report { count: 1 });
        let mut flush_at = None;
        for i in 1..200u64 {
            match t.hit(t0 + Duration::from_millis(i)) {
                Tick::Held { flush_at: Some(at) } => {
                    assert!(flush_at.is_none(), "one flush per interval");
                    flush_at = Some(at);
                }
                Tick::Held { flush_at: None } => {}
                Tick::Report { .. } => panic!("reported inside the interval"),
            }
        }
        assert_eq!(flush_at, Some(t0 + MIN));
        assert_eq!(t.flush(t0 + MIN), Some(199));
        // Nothing held: a second flush reports nothing.
        assert_eq!(t.flush(t0 + MIN), None);
    }

    #[test]
    fn events_after_a_flush_wait_for_the_next_interval() {
        let t0 = Instant::now();
        let mut t = Throttle::new(MIN);
        t.hit(t0);
        t.hit(t0 + Duration::from_secs(1));
        assert_eq!(t.flush(t0 + MIN), Some(1));
        // The flush was a report: the next event is held until a minute after it.
        assert_eq!(
            t.hit(t0 + MIN + Duration::from_secs(1)),
            Tick::Held {
                flush_at: Some(t0 + MIN + MIN)
            }
        );
    }

    #[test]
    fn a_late_event_while_a_flush_is_pending_is_held_not_reported() {
        let t0 = Instant::now();
        let mut t = Throttle::new(MIN);
        t.hit(t0);
        t.hit(t0 + Duration::from_secs(1));
        // The timer is late; an event arrives after the interval but before the flush: it
        // joins the pending flush instead of reporting the held count twice.
        assert_eq!(
            t.hit(t0 + MIN + Duration::from_secs(5)),
            Tick::Held { flush_at: None }
        );
        assert_eq!(t.flush(t0 + MIN + Duration::from_secs(6)), Some(2));
    }

    #[test]
    fn every_event_is_counted_exactly_once() {
        // Whatever the spacing, reports and flushes add up to the number of events.
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(10));
        let mut reported = 0u64;
        let mut flushes: Vec<Instant> = Vec::new();
        let gaps = [0u64, 1, 1, 3, 12, 0, 0, 25, 9, 9, 1, 40, 2];
        let mut now = t0;
        for g in gaps {
            now += Duration::from_secs(g);
            while let Some(at) = flushes.first().copied().filter(|at| *at <= now) {
                flushes.remove(0);
                reported += t.flush(at).unwrap_or(0);
            }
            match t.hit(now) {
                Tick::Report { count } => reported += count,
                Tick::Held { flush_at: Some(at) } => flushes.push(at),
                Tick::Held { flush_at: None } => {}
            }
        }
        for at in flushes {
            reported += t.flush(at).unwrap_or(0);
        }
        assert_eq!(reported, gaps.len() as u64);
        assert!(t.idle(now + Duration::from_secs(100)));
    }
}
