//! Assembles the gateway from a config and serves it on a bound listener until shutdown.
//!
//! The caller binds the listener and passes a shutdown future, so tests can bind `127.0.0.1:0`
//! and run the gateway in-process.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::api::{self, AppState, ClientAddr};
use crate::audit::{AuditLog, event};
use crate::auth::Authenticator;
use crate::auth::issuer::{BuiltinIssuer, IssuerSettings};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{SqliteStore, Store};
use crate::tls::{self, TlsMaterial};

/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 receive window per tunnel stream.
pub const TUNNEL_STREAM_WINDOW: u32 = 4 << 20;
/// HTTP/2 receive window per TLS connection (all its tunnels).
pub const TUNNEL_CONNECTION_WINDOW: u32 = 32 << 20;
/// In-flight requests get this long to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A gateway ready to serve.
pub struct Gateway {
    state: AppState,
    tls: TlsMaterial,
    public_url: String,
}

/// Creates the data dir (0700) if it does not exist.
pub fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    }
    Ok(())
}

/// Opens the store of a data dir.
pub async fn open_store(data_dir: &Path) -> anyhow::Result<Arc<dyn Store>> {
    ensure_data_dir(data_dir)?;
    let store = SqliteStore::open(data_dir)
        .await
        .with_context(|| format!("cannot open the database in {}", data_dir.display()))?;
    Ok(Arc::new(store))
}

/// An HTTP client for talking to the IdP: no redirects, bounded time, optional extra CA.
fn idp_http_client(config: &Config) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("hoopd/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &config.auth.ca_file {
        let pem = std::fs::read(ca)
            .with_context(|| format!("cannot read auth.ca_file {}", ca.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("auth.ca_file {} is not a PEM bundle", ca.display()))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().context("cannot build the HTTP client")
}

impl Gateway {
    /// Opens the store, starts the audit writer, loads keys and certificate. `bound` is the
    /// listener's real address (it gives the default public URL when the config has none).
    pub async fn build(mut config: Config, bound: SocketAddr) -> anyhow::Result<Gateway> {
        let problems = config.validate();
        if !problems.is_empty() {
            anyhow::bail!("invalid configuration: {}", problems.join("; "));
        }
        config.server.listen = bound;
        let public_url = config.public_url();
        let data_dir = config.server.data_dir.clone();
        let store = open_store(&data_dir).await?;
        let audit_key = Arc::new(crate::audit::keys::load_or_create(&data_dir)?);
        let audit = AuditLog::start_with(
            store.clone(),
            crate::audit::WriterOptions {
                key: Some(audit_key.clone()),
                routes: config
                    .webhooks
                    .iter()
                    .map(|w| crate::audit::Route {
                        webhook: w.name().to_string(),
                        events: w.events.clone(),
                    })
                    .collect(),
                file_sink: config.audit.jsonl_file.clone(),
            },
        );
        let host = url::Url::parse(&public_url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()))
            .into_iter()
            .collect::<Vec<_>>();
        let tls = tls::load_or_create(
            config.server.tls_cert.as_deref(),
            config.server.tls_key.as_deref(),
            &data_dir,
            &host,
        )
        .map_err(anyhow::Error::msg)?;
        let http = idp_http_client(&config)?;
        let auth = match &config.auth.issuer {
            Some(iss) => Authenticator::external(&config.auth, iss, store.clone(), http),
            None => {
                let a = &config.auth;
                let issuer = BuiltinIssuer::new(
                    IssuerSettings {
                        issuer: public_url.clone(),
                        audience: a.audience.clone(),
                        client_id: a.client_id.clone(),
                        access_ttl: a.access_token_ttl,
                        refresh_ttl: a.refresh_token_ttl,
                        poll_interval: a.device_poll_interval,
                    },
                    &data_dir,
                    store.clone(),
                )
                .map_err(anyhow::Error::msg)?;
                Authenticator::builtin(a, Arc::new(issuer), store.clone(), http)
            }
        };
        let connections: Vec<&str> = config.connections.iter().map(|c| c.name.as_str()).collect();
        audit
            .record(event(
                "config.loaded",
                None,
                None,
                "success",
                json!({
                    "issuer": auth.issuer_url(),
                    "builtin_issuer": config.auth.issuer.is_none(),
                    "connections": connections,
                    "admins": config.auth.admins,
                    "auditors": config.auth.auditors,
                    "version": env!("CARGO_PKG_VERSION"),
                }),
            ))
            .await
            .context("the audit log cannot be written; refusing to start")?;
        let policies = crate::policy::compile_all(&config).map_err(anyhow::Error::msg)?;
        if config
            .connections
            .iter()
            .any(|c| c.kind == crate::config::ConnectionKind::Ssh)
        {
            let fp = crate::proxy::ssh::prepare(&data_dir).map_err(anyhow::Error::msg)?;
            tracing::info!(fingerprint = %fp, "SSH host key of the gateway");
        }
        crate::webhooks::start(store.clone(), &config.webhooks)?;
        crate::audit::retention::start(store.clone(), audit.clone(), config.retention.clone());
        let recorder = crate::recording::Recorder::start_with(
            store.clone(),
            config.recording.on_failure == crate::config::OnRecordingFailure::Continue,
        );
        let reviews =
            crate::reviews::Reviews::new(store.clone(), audit.clone(), config.auth.admins.clone());
        let state = AppState {
            config: Arc::new(config),
            auth: Arc::new(auth),
            store,
            audit,
            metrics: Arc::new(Metrics::default()),
            recorder,
            policies: Arc::new(policies),
            reviews,
            audit_key,
        };
        Ok(Gateway {
            state,
            tls,
            public_url,
        })
    }

    /// `SHA256:<hex>` of the served certificate.
    pub fn fingerprint(&self) -> &str {
        &self.tls.fingerprint
    }

    /// True when the certificate was created by hoopd (clients must pin it).
    pub fn self_signed(&self) -> bool {
        self.tls.self_signed
    }

    /// The URL clients use.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The shared state (store, audit log), for admin commands run in-process.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let router = api::router(self.state.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.config.clone());
        let graceful = GracefulShutdown::new();
        let metrics = self.state.metrics.clone();
        tracing::info!(url = %self.public_url, fingerprint = %self.tls.fingerprint, "gateway listening");
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let router = router.clone();
            let state = self.state.clone();
            let metrics = metrics.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        metrics.tls_failures.inc();
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        metrics.tls_failures.inc();
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                metrics.open_connections.inc();
                let svc = hyper::service::service_fn(
                    move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(ClientAddr(peer));
                        let router = router.clone();
                        let state = state.clone();
                        async move {
                            // Tunnels: CONNECT has no path, so it is dispatched before the router.
                            if req.method() == http::Method::CONNECT {
                                Ok::<_, std::convert::Infallible>(
                                    crate::tunnel::handle_connect(req, state, peer).await,
                                )
                            } else {
                                router.oneshot(req).await
                            }
                        }
                    },
                );
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                // Large flow-control windows: one TLS connection carries many busy tunnels.
                builder
                    .http2()
                    .initial_stream_window_size(TUNNEL_STREAM_WINDOW)
                    .initial_connection_window_size(TUNNEL_CONNECTION_WINDOW)
                    .max_frame_size(256 * 1024)
                    .timer(hyper_util::rt::TokioTimer::new())
                    .keep_alive_interval(Some(Duration::from_secs(30)));
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
                if let Err(e) = watcher.watch(conn.into_owned()).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                metrics.open_connections.dec();
            });
        }
        drop(listener);
        tracing::info!("shutting down: draining connections");
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish in time");
        }
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
