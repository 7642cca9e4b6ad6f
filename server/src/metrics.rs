//! Prometheus metrics served at `/metrics` (text exposition format).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The gateway's counters. Cheap to update from any task.
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route class and status.
    pub http_requests: Family<Labels, Counter>,
    /// Successful authentications by method.
    pub auth_success: Family<Labels, Counter>,
    /// Refused credentials by reason.
    pub auth_rejected: Family<Labels, Counter>,
    /// TLS handshakes that failed.
    pub tls_failures: Counter,
    /// Open client connections (TLS).
    pub open_connections: Gauge,
    /// Tunnel streams handed to a protocol adapter, by connection kind.
    pub tunnel_streams: Family<Labels, Counter>,
    /// Local logins (tunnel password or key) the adapters refused, by kind and reason.
    pub local_logins_refused: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hoop");
        let http_requests = Family::<Labels, Counter>::default();
        let auth_success = Family::<Labels, Counter>::default();
        let auth_rejected = Family::<Labels, Counter>::default();
        let tls_failures = Counter::default();
        let open_connections = Gauge::default();
        let tunnel_streams = Family::<Labels, Counter>::default();
        let local_logins_refused = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served",
            http_requests.clone(),
        );
        registry.register("auth_success", "Credentials accepted", auth_success.clone());
        registry.register(
            "auth_rejected",
            "Credentials refused, by reason",
            auth_rejected.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed",
            tls_failures.clone(),
        );
        registry.register(
            "open_connections",
            "Open client connections",
            open_connections.clone(),
        );
        registry.register(
            "tunnel_streams",
            "Tunnel streams handed to a protocol adapter",
            tunnel_streams.clone(),
        );
        registry.register(
            "local_logins_refused",
            "Local logins through a tunnel refused by the gateway (audited once per minute per user and connection)",
            local_logins_refused.clone(),
        );
        let sql = crate::policy::stats::sql();
        registry.register(
            "sql_cache_lookups",
            "SQL verdict cache lookups by result (text_hit, shape_hit, miss)",
            sql.lookups.clone(),
        );
        registry.register(
            "sql_analysis_seconds",
            "Time to analyze and judge one SQL text the verdict cache did not answer",
            sql.analysis_seconds.clone(),
        );
        Self {
            registry,
            http_requests,
            auth_success,
            auth_rejected,
            tls_failures,
            open_connections,
            tunnel_streams,
            local_logins_refused,
        }
    }
}

impl Metrics {
    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}
