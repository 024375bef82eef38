//! The HTTP API and the page: routes, what each request may hold, and the JSON answers.
//!
//! Nothing a client sends becomes a path: uploads are bytes in memory, decoded within the
//! pixel limit; form fields and query values are parsed into numbers and known words, and
//! quoted back only in short excerpts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use naevus_data::error::excerpt;
use naevus_data::{DecodeError, DecodeFailure, DecodeLimits, Metadata, Record, Sex};
use naevus_engine::{LoadedModel, ModelInput};
use naevus_engine::explain::Method;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::Limits;
use crate::batcher::{Batcher, Scored};
use crate::metrics::Metrics;
use crate::model::ModelDescription;
use crate::uploads::{PredictQuery, Upload, query_of, read_uploads};

/// The page at /, with its styles and script inline: nothing to fetch from elsewhere.
const PAGE: &str = include_str!("page.html");

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub model: Arc<ModelDescription>,
    /// The model itself, for decoding uploads and encoding metadata as its members do.
    loaded: Arc<LoadedModel>,
    batcher: Batcher,
    pub metrics: Arc<Metrics>,
    token: Option<Arc<str>>,
    pub(crate) limits: Limits,
    /// Requests being read, decoded or scored.
    in_flight: Arc<Semaphore>,
    /// Images being decoded: decoding takes memory in proportion to the image, so only as
    /// many at once as there are cores.
    decoding: Arc<Semaphore>,
    /// The one other origin whose pages may call the service (`--cors-origin`).
    pub(crate) cors_origin: Option<Arc<str>>,
}

impl AppState {
    pub fn new(
        model: ModelDescription,
        loaded: Arc<LoadedModel>,
        batcher: Batcher,
        metrics: Arc<Metrics>,
        token: Option<String>,
        limits: Limits,
        cors_origin: Option<String>,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            model: Arc::new(model),
            loaded,
            batcher,
            metrics,
            token: token.map(Arc::from),
            limits,
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight.max(1))),
            decoding: Arc::new(Semaphore::new(cores)),
            cors_origin: cors_origin.map(Arc::from),
        }
    }
}

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/v1/model", get(model))
        .route("/v1/predict", post(predict))
        .route("/v1/predict/batch", post(predict_batch))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .merge(protected)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), count_request))
        .layer(middleware::from_fn_with_state(state.clone(), crate::cors::cors))
        .with_state(state)
}

/// An error answer: a status and {"error": message, "code": code}.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn timed_out(seconds: u64) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", format!("the request was not sent within {seconds} s (the service's read timeout)"))
    }

    fn overloaded() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "the service is at capacity; retry in a second")
    }

    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("the request body is over the limit of {limit} bytes"))
    }

    /// The error for an image that did not decode, naming it.
    fn undecodable(what: &str, error: &DecodeError) -> Self {
        let (status, code) = match error.kind {
            DecodeFailure::NotAnImage => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_an_image"),
            DecodeFailure::OverLimit => (StatusCode::PAYLOAD_TOO_LARGE, "image_too_large"),
            DecodeFailure::Corrupt => (StatusCode::BAD_REQUEST, "invalid_image"),
        };
        Self::new(status, code, format!("{what}: {}", error.reason))
    }

    fn json(&self) -> Value {
        json!({ "error": self.message, "code": self.code })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.json())).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

async fn page() -> Response {
    let mut response = axum::response::Html(PAGE).into_response();
    let headers = response.headers_mut();
    // The page may load nothing from elsewhere: its own script and styles, images from data: URLs.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// Batches failing in a row after which the service reports itself failing.
const FAILING_AFTER_BATCHES: usize = 3;

/// GET /healthz: 200 while the model answers; 503 once its last batches all failed.
async fn healthz(State(state): State<AppState>) -> Response {
    let failed = state.metrics.failed_batches_in_a_row.load(std::sync::atomic::Ordering::Relaxed);
    if failed >= FAILING_AFTER_BATCHES {
        let body = json!({ "status": "failing", "model": state.model.name, "failed_batches_in_a_row": failed });
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    axum::Json(json!({ "status": "ok", "model": state.model.name })).into_response()
}

/// GET /readyz: 200 when a prediction sent now would be taken; 503 while the service is at
/// capacity (every in-flight slot held, or the queue full) or failing.
async fn readyz(State(state): State<AppState>) -> Response {
    let failed = state.metrics.failed_batches_in_a_row.load(std::sync::atomic::Ordering::Relaxed);
    let queued = state.metrics.queue_depth.load(std::sync::atomic::Ordering::Relaxed);
    let status = if failed >= FAILING_AFTER_BATCHES {
        "failing"
    } else if state.in_flight.available_permits() == 0 || queued >= state.batcher.capacity() {
        "at_capacity"
    } else {
        "ready"
    };
    let body = json!({ "status": status, "in_flight_free": state.in_flight.available_permits(), "queue_depth": queued });
    let code = if status == "ready" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(body)).into_response()
}

/// The model's description, with the limits a client (the page) can check before sending.
async fn model(State(state): State<AppState>) -> axum::Json<Value> {
    let mut value = serde_json::to_value(&*state.model).unwrap_or_default();
    value["limits"] = json!(state.limits);
    axum::Json(value)
}

/// The OpenAPI 3 document of these routes.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint; see GET /openapi.json for them all: GET /v1/model, POST /v1/predict, POST /v1/predict/batch, GET /healthz, GET /readyz, GET /metrics")
}

/// Refuses a request without the service's bearer token, when it has one.
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = request.headers().get(header::AUTHORIZATION).and_then(|v| crate::token::bearer_token(v.as_bytes()));
        if !given.is_some_and(|given| crate::token::same_secret(given.as_bytes(), token.as_bytes())) {
            return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "this service needs an access token: send Authorization: Bearer TOKEN")
                .into_response();
        }
    }
    next.run(request).await
}

/// Counts every answer by route and status, with the latency of predictions; a request
/// whose client went away before its answer counts as 499.
async fn count_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or_else(|| "other".to_string(), |p| p.as_str().to_string());
    let mut count = Counted { metrics: state.metrics.clone(), route, start: Instant::now(), status: 499 };
    let response = next.run(request).await;
    count.status = response.status().as_u16();
    response
}

/// Records its request when dropped: after the answer, or when hyper drops the handler
/// because the client hung up.
struct Counted {
    metrics: Arc<Metrics>,
    route: String,
    start: Instant,
    status: u16,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.metrics.request(&self.route, self.status, self.start.elapsed());
    }
}

/// The explanation asked for, when the model (its first member, which explains) can give it.
fn explain_method(state: &AppState, query: &PredictQuery) -> Result<Option<Method>, ApiError> {
    let method = parse_explain(query)?;
    let spec = state.loaded.first().run.spec;
    if method == Some(Method::Attention) && spec.attention_layers().is_empty() {
        return Err(ApiError::bad_request(format!("explain: {} has no learned attention maps; ask for gradcam or gradcam++", spec.name)));
    }
    Ok(method)
}

/// The explanation method asked for. In a query string `+` means a space, so an unescaped
/// `gradcam++` arrives as `gradcam  `; both spellings are taken.
fn parse_explain(query: &PredictQuery) -> Result<Option<Method>, ApiError> {
    match query.explain.as_deref() {
        None | Some("") | Some("none") => Ok(None),
        Some(text) => text
            .replace(' ', "+")
            .parse::<Method>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("explain: expected gradcam, gradcam++ or attention, got \"{}\"", excerpt(text)))),
    }
}

/// POST /v1/predict: one image, as a multipart form (image, age, sex, site) or as the raw
/// body (image/jpeg, image/png or application/octet-stream, metadata in the query).
async fn predict(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let start = Instant::now();
    let permit = Arc::new(state.in_flight.clone().try_acquire_owned().map_err(|_| ApiError::overloaded())?);
    let query = query_of(&request)?;
    let explain = explain_method(&state, &query)?;
    let mut uploads = read_uploads(&state, request, &query, false).await?;
    if uploads.len() != 1 {
        return Err(ApiError::bad_request(format!("/v1/predict takes one image, got {}; send several to /v1/predict/batch", uploads.len())));
    }
    let upload = uploads.remove(0);
    let answer = score_upload(&state, upload, explain, "the image", permit).await?;
    Ok(axum::Json(answer.into_json(&state, start.elapsed())).into_response())
}

/// POST /v1/predict/batch: several images, as a multipart form with one `image` part each
/// (age, sex and site parts describe the image before them), or as JSON
/// {"images": [{"image": BASE64, "name", "age", "sex", "site"}]}. Each image gets its own
/// answer or its own error; the request fails only as a whole (bad form, too many images).
async fn predict_batch(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let start = Instant::now();
    let permit = Arc::new(state.in_flight.clone().try_acquire_owned().map_err(|_| ApiError::overloaded())?);
    let query = query_of(&request)?;
    let explain = explain_method(&state, &query)?;
    let uploads = read_uploads(&state, request, &query, true).await?;
    if uploads.is_empty() {
        return Err(ApiError::bad_request("no images in the request"));
    }
    // The images are scored side by side; when the client goes away this handler is dropped
    // and the set with it, which cancels every image not yet decoded or queued.
    let mut tasks = JoinSet::new();
    for (index, upload) in uploads.into_iter().enumerate() {
        let (state, permit) = (state.clone(), permit.clone());
        tasks.spawn(async move {
            let name = upload.name.clone();
            let what = format!("image {} ({})", index + 1, name.as_deref().map_or("unnamed".into(), excerpt));
            (index, name, score_upload(&state, upload, explain, &what, permit).await)
        });
    }
    let mut answers = Vec::with_capacity(tasks.len());
    while let Some(task) = tasks.join_next().await {
        answers.push(task.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?);
    }
    answers.sort_by_key(|(index, _, _)| *index);
    let mut predictions = Vec::with_capacity(answers.len());
    let mut overloaded = 0;
    for (_, name, answer) in answers {
        predictions.push(match answer {
            Ok(answer) => answer.into_json(&state, start.elapsed()),
            Err(error) => {
                overloaded += usize::from(error.status == StatusCode::SERVICE_UNAVAILABLE);
                let mut value = error.json();
                value["name"] = json!(name.map(|n| excerpt(&n)));
                value["status"] = json!(error.status.as_u16());
                value
            }
        });
    }
    // Every image turned away for load: the whole request is, so that clients retry it.
    if overloaded == predictions.len() {
        return Err(ApiError::overloaded());
    }
    Ok(axum::Json(json!({ "predictions": predictions, "timings_ms": { "total": ms(start.elapsed()) } })).into_response())
}

/// One image's answer before it becomes JSON.
struct Answer {
    name: Option<String>,
    metadata: Metadata,
    warnings: Vec<String>,
    decode: Duration,
    scored: Scored,
}

/// Decodes an upload (within the limits, a few at a time), queues it and waits for its scores.
/// `request` is the request's in-flight slot: each decode holds it too, so that the slot is
/// free only when no work of the request is left, even after its client went away.
async fn score_upload(state: &AppState, upload: Upload, explain: Option<Method>, what: &str, request: Arc<OwnedSemaphorePermit>) -> Result<Answer, ApiError> {
    let metadata = upload.metadata.parse(what)?;
    let decode_start = Instant::now();
    let permit = state.decoding.clone().acquire_owned().await.map_err(|_| ApiError::overloaded())?;
    let loaded = state.loaded.clone();
    let limits = DecodeLimits { max_pixels: state.limits.max_pixels };
    let bytes = upload.bytes;
    let decoded = tokio::task::spawn_blocking(move || {
        let _permits = (permit, request);
        loaded.decode_image(&bytes, &limits)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("decoding: {e}")))?;
    let pixels = decoded.map_err(|error| match error.downcast_ref::<DecodeError>() {
        Some(decode) => ApiError::undecodable(what, decode),
        None => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("{error:#}")),
    })?;
    let decode = decode_start.elapsed();

    let record = Record { id: "upload".into(), metadata: metadata.clone(), ..Record::default() };
    let mut warnings = state.loaded.metadata_warnings(std::iter::once(&record));
    for encoder in state.loaded.members.iter().filter_map(|m| m.run.info.metadata.as_ref()) {
        if let Some(site) = &metadata.site
            && !encoder.sites.contains(site)
        {
            let warning = format!("site \"{site}\" is not one this model knows ({}); it was read as unknown", encoder.sites.join(", "));
            if !warnings.contains(&warning) {
                warnings.push(warning);
            }
        }
    }
    let input = ModelInput { pixels, metadata: state.loaded.metadata_of(Some(&record)) };
    let receiver = state.batcher.submit(input, explain).map_err(|_| ApiError::overloaded())?;
    let scored = receiver
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the inference thread stopped"))?
        .map_err(|message| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "model_failed", message))?;
    Ok(Answer { name: upload.name, metadata, warnings, decode, scored })
}

#[derive(Serialize)]
struct Decision {
    operating_point: String,
    threshold: f64,
    positive: bool,
}

impl Answer {
    fn into_json(self, state: &AppState, total: Duration) -> Value {
        let model = &state.model;
        let scores = &self.scored.scores;
        let class_probabilities = model.classes.as_ref().map(|classes| classes.iter().cloned().zip(scores.outputs.iter().copied()).collect::<BTreeMap<String, f64>>());
        // Outside the model's domain its probability means little: no decision is made on it.
        let outside = scores.domain.is_some_and(|domain| !domain.within);
        let decision = model
            .operating_point
            .as_ref()
            .filter(|_| !outside)
            .map(|point| Decision { operating_point: point.name.clone(), threshold: point.threshold, positive: scores.melanoma >= point.threshold });
        let mut warnings = self.warnings;
        if let Some(domain) = scores.domain.filter(|_| outside) {
            warnings.insert(0, format!(
                "outside the model's domain: this image's features lie {:.1} times as far from the training images' as the guard allows, so it is probably not a \
                 dermoscopic image of a skin lesion like those the model learnt from (or is damaged, greyscale or strongly tinted). No decision is given; \
                 the probability is shown for reference only",
                domain.distance
            ));
        }
        let mut timings = json!({
            "decode": ms(self.decode),
            "queue": ms(self.scored.queued),
            "inference": ms(self.scored.inference),
            "total": ms(total),
        });
        let mut value = json!({
            "name": self.name,
            "melanoma_probability": scores.melanoma,
            "calibrated": model.calibrated,
            "class_probabilities": class_probabilities,
            "decision": decision,
            "domain": scores.domain.map(|domain| json!({ "within": domain.within, "distance": domain.distance })),
            "model": { "name": model.name, "naevus_version": model.naevus_version },
            "metadata": {
                "age": self.metadata.age,
                "sex": self.metadata.sex.map(|s| if s == Sex::Male { "male" } else { "female" }),
                "site": self.metadata.site,
            },
            "warnings": warnings,
            "batch_size": self.scored.batch_size,
        });
        // An ensemble's members, and how far apart they lie: a wide spread is a reason for care.
        if let Some(members) = &model.members {
            value["members"] = json!({
                "probabilities": members.iter().zip(&scores.members).map(|(m, p)| json!({ "name": m.name, "probability": p })).collect::<Vec<_>>(),
                "spread": naevus_run::ensemble::spread(&scores.members),
            });
        }
        if let Some((explained, took)) = &self.scored.explanation {
            timings["explain"] = json!(ms(*took));
            value["explanation"] = json!({
                "method": explained.method.name(),
                "layer": explained.layer,
                "grid": [explained.grid.0, explained.grid.1],
                "overlay_png": BASE64.encode(&explained.overlay_png),
                "input_png": BASE64.encode(&explained.input_png),
            });
        }
        value["timings_ms"] = timings;
        value
    }
}

/// Milliseconds, to a microsecond.
fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_takes_both_spellings_of_gradcam_plus_plus() {
        let query = |text: &str| PredictQuery { explain: Some(text.into()), ..Default::default() };
        assert_eq!(parse_explain(&query("gradcam  ")).unwrap(), Some(Method::GradCamPlusPlus));
        assert_eq!(parse_explain(&query("gradcam++")).unwrap(), Some(Method::GradCamPlusPlus));
        assert_eq!(parse_explain(&query("gradcam")).unwrap(), Some(Method::GradCam));
        assert!(parse_explain(&query("lime")).is_err());
    }
}
