//! The service while its model loads. The port opens first, so that an orchestrator sees a
//! live process (/healthz 200, "loading") that is not ready yet (/readyz 503) while a large
//! model or an ensemble loads and is warmed, and a client gets 503 with Retry-After rather
//! than a refused connection. Once the model answers, the full router takes the port over.

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::api::{ApiError, OPENAPI};

/// The routes served while the model at `model` (its path, for /healthz) loads.
pub fn router(model: String) -> Router {
    Router::new()
        .route("/healthz", get(move || async move { axum::Json(json!({ "status": "loading", "model": model })) }))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(|| async { ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI).into_response() }))
        .fallback(|| async { ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "loading", "the model is still loading; retry in a few seconds") })
}

async fn readyz() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({ "status": "loading", "in_flight_free": 0, "queue_depth": 0 }))).into_response()
}

/// Holds the load back by NAEVUS_SERVE_LOAD_DELAY_MS milliseconds (at most a minute): the
/// tests' way to see the loading state, which a small model passes through too fast to catch.
pub fn test_delay() {
    let delay = std::env::var("NAEVUS_SERVE_LOAD_DELAY_MS").ok().and_then(|ms| ms.parse::<u64>().ok()).unwrap_or(0);
    if delay > 0 {
        std::thread::sleep(std::time::Duration::from_millis(delay.min(60_000)));
    }
}
