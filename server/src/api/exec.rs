//! `POST /api/v1/connections/{name}/exec`: run input on a connection without a tunnel (`hoop
//! exec`, for CI, scripts and agents).
//!
//! Authorisation is the tunnel's own ([`crate::tunnel::authorize`]: group allow-list, access
//! grant). The input then goes to the connection's protocol adapter through the same code a
//! tunnel stream takes, so guardrails, reviews, masking, recording and audit apply unchanged.
//! This file is protocol-neutral: it dispatches on the connection kind and streams the
//! adapter's [`ExecEvent`]s as NDJSON with backpressure (a bounded channel of chunks), so a
//! large result never sits in the gateway's memory.

use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Extension, Path, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use bytes::{BufMut, BytesMut};
use hoop_shared::exec::{EXEC_CONTENT_TYPE, ExecEvent, ExecRequest};
use serde_json::json;
use tokio::sync::mpsc;

use super::{ApiFailure, AppState, Caller, ClientAddr};
use crate::audit::event;
use crate::config::ConnectionKind;
use crate::tunnel::TunnelContext;

/// The largest input accepted (a migration file fits; the PostgreSQL adapter's own message
/// limit is higher).
const MAX_INPUT: usize = 16 << 20;
/// A chunk of NDJSON is sent once it is this large (or when the adapter has nothing more
/// ready).
const CHUNK: usize = 32 * 1024;
/// Chunks in flight between the adapter and the HTTP connection.
const CHUNKS_IN_FLIGHT: usize = 4;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/connections/{name}/exec", post(exec))
        .layer(DefaultBodyLimit::max(MAX_INPUT + 4096))
}

/// The HTTP client went away (or the body was dropped).
#[derive(Debug)]
pub struct SinkClosed;

/// Where an adapter writes its events: NDJSON lines, batched into chunks, sent over a bounded
/// channel, so the adapter waits when the client reads slowly.
pub struct ExecSink {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: BytesMut,
}

impl ExecSink {
    fn new(tx: mpsc::Sender<Result<Bytes, std::io::Error>>) -> Self {
        Self {
            tx,
            buf: BytesMut::with_capacity(CHUNK * 2),
        }
    }

    /// Appends one event (a line); sends the chunk once it is large enough.
    pub async fn send(&mut self, ev: &ExecEvent) -> Result<(), SinkClosed> {
        let mut w = (&mut self.buf).writer();
        if serde_json::to_writer(&mut w, ev).is_err() {
            // Our own types always serialise; never send half a line.
            return Err(SinkClosed);
        }
        self.buf.put_u8(b'\n');
        if self.buf.len() >= CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    /// Completes once the HTTP client has gone (the answer's body was dropped): an adapter
    /// waiting on a held statement then gives it up.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Sends what is buffered now.
    pub async fn flush(&mut self) -> Result<(), SinkClosed> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.tx.send(Ok(chunk)).await.map_err(|_| SinkClosed)
    }
}

async fn exec(
    State(state): State<AppState>,
    Caller(identity): Caller,
    addr: Option<Extension<ClientAddr>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiFailure> {
    let peer = addr
        .map(|Extension(ClientAddr(a))| a)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let req: ExecRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiFailure::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the exec request is not valid JSON of the expected shape: {e}"),
        )
    })?;
    if req.input.trim().is_empty() {
        return Err(ApiFailure::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the input is empty: give a statement, -f FILE, or pipe it on stdin",
        ));
    }
    let (connection, grant_ended) = crate::tunnel::authorize(&state, &identity, &name, peer)
        .await
        .map_err(|d| ApiFailure::new(d.status, d.code, d.message))?;
    let ev = event(
        "exec.requested",
        Some(&identity.subject),
        Some(peer.to_string()),
        "success",
        json!({"connection": connection.name, "input_bytes": req.input.len(),
               "review": req.review, "timeout_secs": req.timeout_secs}),
    );
    state
        .audit
        .record(ev)
        .await
        .map_err(|e| ApiFailure::internal(format!("cannot audit an exec request: {e}")))?;
    let (answers, answers_rx) = crate::tunnel::Answers::new();
    let ctx = TunnelContext {
        identity,
        connection,
        // The adapter checks it like the password `hoop connect` prints; here both ends are ours.
        secret: crate::util::random_token(24),
        client_key: None,
        peer,
        state,
        grant_ended,
        review_mode: req.review,
        answers: Some(answers),
    };
    let (tx, mut rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    tokio::spawn(async move {
        let sink = ExecSink::new(tx);
        // A new kind adds its adapter's `exec::run` here.
        match ctx.connection.kind {
            ConnectionKind::Postgres => {
                crate::proxy::postgres::exec::run(ctx, req, sink, answers_rx).await
            }
            ConnectionKind::Ssh => crate::proxy::ssh::exec::run(ctx, req, sink, answers_rx).await,
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, EXEC_CONTENT_TYPE)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(stream))
        .map_err(ApiFailure::internal)
}
