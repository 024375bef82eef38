//! Cross-origin requests, for a page served from elsewhere that calls this service: off unless
//! `--cors-origin ORIGIN` names the one origin allowed. Preflight (OPTIONS) requests are then
//! answered before any token is asked for, as browsers send them without one.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::AppState;

/// Whether `origin` is one origin as browsers send it: `http://` or `https://`, a host and
/// an optional port, nothing after (no path, no trailing slash).
pub fn check_origin(origin: &str) -> Result<(), String> {
    let rest = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
    let host = rest.filter(|host| !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c)));
    match host {
        Some(_) => Ok(()),
        None => Err(format!(
            "--cors-origin takes one origin such as https://clinic.example or http://localhost:3000 (scheme, host and port, no path), got \"{}\"",
            naevus_data::error::excerpt(origin)
        )),
    }
}

/// Adds the allowed origin to every answer, and answers preflight requests.
pub(crate) async fn cors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(origin) = state.cors_origin.as_deref().and_then(|o| HeaderValue::from_str(o).ok()) else {
        return next.run(request).await;
    };
    let mut response = if request.method() == Method::OPTIONS {
        let mut preflight = StatusCode::NO_CONTENT.into_response();
        let headers = preflight.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type"));
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        preflight
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Retry-After"));
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bare_origin_is_taken() {
        for good in ["https://clinic.example", "http://localhost:3000", "http://[::1]:8080"] {
            assert!(check_origin(good).is_ok(), "{good}");
        }
        for bad in ["*", "clinic.example", "https://clinic.example/", "https://a.example/path", "ftp://a.example", "https://", "https://a b"] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }
}
