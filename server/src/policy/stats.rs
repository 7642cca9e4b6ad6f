//! Process-wide counters of SQL analysis, served at `/metrics`: how often the verdict cache
//! answers (by exact text or by shape) and how long an analysis takes when it does not.

use std::sync::LazyLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Label set of the cache lookup counter.
pub type Labels = Vec<(&'static str, &'static str)>;

/// Counters of `Policy::check_sql`.
pub struct SqlStats {
    /// Lookups by result (`text_hit`, `shape_hit`, `miss`), for registration.
    pub lookups: Family<Labels, Counter>,
    /// Answered by the exact text.
    pub text_hits: Counter,
    /// Answered by the shape (same tokens, other numbers).
    pub shape_hits: Counter,
    /// Analyzed.
    pub misses: Counter,
    /// Seconds per analysis (parse, walk and guardrail verdict) on a miss.
    pub analysis_seconds: Histogram,
}

/// The counters (one set per process).
pub fn sql() -> &'static SqlStats {
    static STATS: LazyLock<SqlStats> = LazyLock::new(|| {
        let lookups = Family::<Labels, Counter>::default();
        let get = |result: &'static str| lookups.get_or_create(&vec![("result", result)]).clone();
        let (text_hits, shape_hits, misses) = (get("text_hit"), get("shape_hit"), get("miss"));
        SqlStats {
            lookups,
            text_hits,
            shape_hits,
            misses,
            // 2 µs to about 4 s.
            analysis_seconds: Histogram::new(exponential_buckets(2e-6, 2.0, 22)),
        }
    });
    &STATS
}
