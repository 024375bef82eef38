//! What a prediction request may hold, read and checked: the query string, the body (a
//! multipart form, a raw image or a JSON batch) within the body limit and the read timeout,
//! and the metadata given with each image.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Query, Request};
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use naevus_data::Metadata;
use naevus_data::error::excerpt;
use naevus_data::metadata::{parse_age, parse_sex, parse_site};
use serde::Deserialize;
use serde_json::Value;

use crate::api::{ApiError, AppState};

/// Query parameters of the prediction routes.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PredictQuery {
    /// gradcam, gradcam++ or attention: adds the overlay.
    pub(crate) explain: Option<String>,
    pub(crate) age: Option<String>,
    pub(crate) sex: Option<String>,
    pub(crate) site: Option<String>,
}

/// Metadata as the client gave it, before it is checked.
#[derive(Debug, Default, Clone)]
pub(crate) struct MetadataText {
    age: Option<String>,
    sex: Option<String>,
    site: Option<String>,
}

impl MetadataText {
    pub(crate) fn set(&mut self, field: &str, value: String) -> Result<(), ApiError> {
        match field {
            "age" => self.age = Some(value),
            "sex" => self.sex = Some(value),
            "site" => self.site = Some(value),
            other => return Err(ApiError::bad_request(format!("unknown field \"{}\"; expected image, age, sex or site", excerpt(other)))),
        }
        Ok(())
    }

    /// The metadata, or a 400 naming the field that is wrong, by the rule prepare reads
    /// metadata cells with (naevus_data::metadata).
    pub(crate) fn parse(&self, what: &str) -> Result<Metadata, ApiError> {
        let field = |name: &str, value: &Option<String>| value.as_deref().map(|text| (name.to_string(), text.to_string()));
        let refuse = |(name, _): (String, String), reason: String| ApiError::bad_request(format!("{what}, field {name}: {reason}"));
        let age = match field("age", &self.age) {
            None => None,
            Some(given) => parse_age(&given.1).map_err(|reason| refuse(given, reason))?,
        };
        let sex = match field("sex", &self.sex) {
            None => None,
            Some(given) => parse_sex(&given.1).map_err(|reason| refuse(given, reason))?,
        };
        let site = match field("site", &self.site) {
            None => None,
            Some(given) => parse_site(&given.1).map_err(|reason| refuse(given, reason))?,
        };
        Ok(Metadata { age, sex, site })
    }
}

/// One uploaded image and what came with it.
pub(crate) struct Upload {
    /// Its file name, as the client said (only ever echoed back, shortened).
    pub(crate) name: Option<String>,
    pub(crate) bytes: Bytes,
    pub(crate) metadata: MetadataText,
}

pub(crate) fn query_of(request: &Request) -> Result<PredictQuery, ApiError> {
    Query::<PredictQuery>::try_from_uri(request.uri())
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("query string: {}", excerpt(&e.body_text()))))
}

/// The images of a request, read within the read timeout: a client that stalls part-way
/// through its body gets 408 and frees its in-flight slot.
pub(crate) async fn read_uploads(state: &AppState, request: Request, query: &PredictQuery, batch: bool) -> Result<Vec<Upload>, ApiError> {
    let seconds = state.limits.read_timeout_secs;
    tokio::time::timeout(Duration::from_secs(seconds), read_uploads_now(state, request, query, batch)).await.map_err(|_| ApiError::timed_out(seconds))?
}

/// The images of a request, by its Content-Type.
async fn read_uploads_now(state: &AppState, request: Request, query: &PredictQuery, batch: bool) -> Result<Vec<Upload>, ApiError> {
    let limit = state.limits.max_body_bytes;
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    let content_type = content_type(request.headers());
    let uploads = match content_type.as_str() {
        "multipart/form-data" => read_multipart(state, request, batch).await?,
        "image/jpeg" | "image/png" | "application/octet-stream" if !batch => {
            let bytes = read_body(request.into_body(), limit).await?;
            let metadata = MetadataText { age: query.age.clone(), sex: query.sex.clone(), site: query.site.clone() };
            vec![Upload { name: None, bytes, metadata }]
        }
        "application/json" if batch => read_json_batch(read_body(request.into_body(), limit).await?)?,
        "" => return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "no Content-Type; send multipart/form-data or an image")),
        other => {
            let expected = if batch { "multipart/form-data or application/json" } else { "multipart/form-data, image/jpeg, image/png or application/octet-stream" };
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Content-Type \"{}\" is not taken here; send {expected}", excerpt(other)),
            ));
        }
    };
    if uploads.len() > state.limits.max_images_per_request {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_images",
            format!("{} images in one request; at most {} are taken", uploads.len(), state.limits.max_images_per_request),
        ));
    }
    Ok(uploads)
}

/// The media type of a request, lower-cased, without parameters.
fn content_type(headers: &HeaderMap) -> String {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    value.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::too_large(limit))
}

/// A multipart form: `image` parts (files) and age, sex and site parts, which describe the
/// image before them (in a single-image form they may come first).
async fn read_multipart(state: &AppState, request: Request, batch: bool) -> Result<Vec<Upload>, ApiError> {
    let limit = state.limits.max_body_bytes;
    let mut form = Multipart::from_request(request, state).await.map_err(|e| ApiError::bad_request(format!("multipart form: {}", excerpt(&e.body_text()))))?;
    let form_error = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE { ApiError::too_large(limit) } else { ApiError::bad_request(format!("multipart form: {}", excerpt(&e.body_text()))) }
    };
    let mut uploads: Vec<Upload> = Vec::new();
    let mut before_image = MetadataText::default();
    while let Some(field) = form.next_field().await.map_err(form_error)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "image" || name == "file" {
            let file_name = field.file_name().map(excerpt);
            let bytes = field.bytes().await.map_err(form_error)?;
            uploads.push(Upload { name: file_name, bytes, metadata: if batch { MetadataText::default() } else { before_image.clone() } });
            continue;
        }
        let value = field.text().await.map_err(form_error)?;
        match uploads.last_mut() {
            Some(upload) => upload.metadata.set(&name, value)?,
            None if !batch => before_image.set(&name, value)?,
            None => return Err(ApiError::bad_request(format!("field \"{}\" comes before any image; put it after the image it describes", excerpt(&name)))),
        }
    }
    if uploads.is_empty() {
        return Err(ApiError::bad_request("the form has no image part (a part named \"image\" holding the file)"));
    }
    Ok(uploads)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBatch {
    images: Vec<JsonImage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonImage {
    /// The image file, base64-encoded.
    image: String,
    name: Option<String>,
    age: Option<Value>,
    sex: Option<String>,
    site: Option<String>,
}

fn read_json_batch(body: Bytes) -> Result<Vec<Upload>, ApiError> {
    let batch: JsonBatch = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("JSON body (line {}, column {}): {}; expected {{\"images\": [{{\"image\": BASE64, ...}}]}}", e.line(), e.column(), excerpt(&e.to_string())))
    })?;
    batch
        .images
        .into_iter()
        .enumerate()
        .map(|(index, image)| {
            let bytes = BASE64.decode(image.image.trim()).map_err(|e| ApiError::bad_request(format!("image {}: not base64: {e}", index + 1)))?;
            let age = image.age.map(|age| match age {
                Value::String(text) => text,
                other => other.to_string(),
            });
            let metadata = MetadataText { age, sex: image.sex, site: image.site };
            Ok(Upload { name: image.name.map(|n| excerpt(&n)), bytes: Bytes::from(bytes), metadata })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use naevus_data::Sex;

    use super::*;

    #[test]
    fn metadata_is_parsed_or_refused_by_field() {
        let text = MetadataText { age: Some(" 55 ".into()), sex: Some("Female".into()), site: Some("Torso".into()) };
        let metadata = text.parse("the image").unwrap();
        assert_eq!((metadata.age, metadata.sex, metadata.site.as_deref()), (Some(55.0), Some(Sex::Female), Some("torso")));
        let unknown = MetadataText { age: Some("unknown".into()), sex: Some("".into()), site: None }.parse("x").unwrap();
        assert_eq!((unknown.age, unknown.sex), (None, None));
        let error = MetadataText { age: Some("x".repeat(10_000)), ..Default::default() }.parse("image 2").unwrap_err();
        assert!(error.message.starts_with("image 2, field age") && error.message.len() < 200, "{}", error.message);
        assert!(MetadataText { age: Some("NaN".into()), ..Default::default() }.parse("x").is_err());
        assert!(MetadataText { sex: Some("yes".into()), ..Default::default() }.parse("x").is_err());
        assert!(MetadataText::default().set("path", "/etc/passwd".into()).is_err());
        // The vocabulary prepare reads metadata cells with: NA is unknown, sites are ISIC 2020's.
        let same_rule = MetadataText { age: Some("NA".into()), sex: Some("N/A".into()), site: Some("Back".into()) }.parse("x").unwrap();
        assert_eq!((same_rule.age, same_rule.sex, same_rule.site.as_deref()), (None, None, Some("torso")));
        let error = MetadataText { site: Some("moon".into()), ..Default::default() }.parse("x").unwrap_err();
        assert!(error.message.contains("field site") && error.message.contains("anatomical site"), "{}", error.message);
    }
}
