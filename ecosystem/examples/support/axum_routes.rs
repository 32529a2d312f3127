//! The axum app that `axum_app`, `axum_pool` and `tokio_axum_app` serve: one `Router`, whatever
//! runtime runs it.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | `Hello, world!` |
//! | `GET /users/{id}` | `{"id": id}` (path extractor, JSON) |
//! | `POST /users` | the JSON body `{"name": ...}` back with an id, status 201 (JSON extractor) |
//! | `GET /search?q=..&limit=..` | the query as JSON (query extractor) |
//! | `GET /hits` | how many requests this app has served (shared state) |
//! | `GET /stream/{n}` | `n` lines, streamed chunk by chunk |
//! | `POST /echo` | the body back (at most 1 MiB: request body limit) |
//! | `GET /slow/{ms}` | answers after `ms` ms of sleep on the serving runtime's timers |
//!
//! Middleware (tower-http): request tracing, gzip compression for clients that ask for it, a
//! request body limit, and, when `timeout` is given, a request timeout answering 408.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// What the handlers share.
#[derive(Default)]
pub struct AppState {
    hits: AtomicU64,
    next_id: AtomicU64,
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
}

#[derive(Serialize)]
struct User {
    id: u64,
    name: String,
}

#[derive(Deserialize, Serialize)]
struct Search {
    q: String,
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    10
}

/// The largest request body `/echo` takes.
pub const BODY_LIMIT: usize = 1 << 20;

/// A sleep on the runtime that serves the request, so `/slow` works on ringloop and on tokio.
pub type Sleeper = fn(Duration) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The app. `sleeper` makes `/slow` wait; `timeout` adds tower-http's request timeout (it needs
/// a tokio time context: on ringloop, the `tokio-compat` feature).
pub fn app(sleeper: Sleeper, timeout: Option<Duration>) -> Router {
    let state = Arc::new(AppState::default());
    let router = Router::new()
        .route("/", get(|| async { "Hello, world!" }))
        .route(
            "/users/{id}",
            get(|Path(id): Path<u64>| async move { Json(serde_json::json!({ "id": id })) }),
        )
        .route("/users", post(create_user))
        .route(
            "/search",
            get(|Query(q): Query<Search>| async move { Json(q) }),
        )
        .route(
            "/hits",
            get(|State(s): State<Arc<AppState>>| async move {
                s.hits.load(Ordering::Relaxed).to_string()
            }),
        )
        .route("/stream/{n}", get(stream_lines))
        .route("/echo", post(|body: axum::body::Bytes| async move { body }))
        .route(
            "/slow/{ms}",
            get(move |Path(ms): Path<u64>| async move {
                sleeper(Duration::from_millis(ms)).await;
                format!("slept {ms} ms")
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_hits,
        ))
        .with_state(state)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(tower_http::trace::TraceLayer::new_for_http());
    match timeout {
        Some(t) => router.layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            t,
        )),
        None => router,
    }
}

async fn count_hits(
    State(s): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    s.hits.fetch_add(1, Ordering::Relaxed);
    next.run(req).await
}

async fn create_user(
    State(s): State<Arc<AppState>>,
    Json(new): Json<NewUser>,
) -> impl IntoResponse {
    let id = s.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    (StatusCode::CREATED, Json(User { id, name: new.name }))
}

/// `n` lines (at most 100,000), one chunk each, made as the client reads them.
async fn stream_lines(Path(n): Path<u32>) -> impl IntoResponse {
    let n = n.min(100_000);
    let lines = futures::stream::iter(0..n)
        .map(|i| Ok::<_, std::convert::Infallible>(format!("line {i}\n")));
    axum::body::Body::from_stream(lines)
}

use futures::StreamExt as _;
