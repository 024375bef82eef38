//! The service's conventions: GET /openapi.json documents every route, and real answers of
//! each route validate against its schemas; `--cors-origin` lets one other origin call the
//! service (preflight answered), and without it no cross-origin header is sent.

mod common;

use common::http::{Response, get, multipart, request};
use common::serve::{Server, trained_bundle};
use common::fixtures;
use serde_json::Value;

const ORIGIN: &str = "https://clinic.example";

/// Follows a local `$ref` ("#/components/...") of `doc`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let target = doc.pointer(reference.trim_start_matches('#')).unwrap_or_else(|| panic!("dangling $ref {reference}"));
            resolve(doc, target)
        }
        None => schema,
    }
}

/// Checks `value` against an OpenAPI 3.0 `schema` (the parts this document uses: type,
/// nullable, required, properties, additionalProperties, items, enum, minimum, maximum).
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if value.is_null() {
        return if schema["nullable"] == true || schema.get("type").is_none() { Ok(()) } else { Err(format!("{at}: null, not nullable")) };
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {options:?}"));
    }
    let kind = schema["type"].as_str().unwrap_or("");
    let fits = match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !fits {
        return Err(format!("{at}: {value} is not of type {kind}"));
    }
    if let Some(number) = value.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|low| number < low) || schema["maximum"].as_f64().is_some_and(|high| number > high) {
            return Err(format!("{at}: {number} is out of range"));
        }
    }
    if let Some(object) = value.as_object() {
        for key in schema["required"].as_array().into_iter().flatten() {
            let key = key.as_str().unwrap();
            if !object.contains_key(key) {
                return Err(format!("{at}: no {key}"));
            }
        }
        for (key, field) in object {
            match (schema["properties"].get(key), schema.get("additionalProperties")) {
                (Some(property), _) => validate(doc, property, field, &format!("{at}.{key}"))?,
                (None, Some(extra)) if extra.is_object() => validate(doc, extra, field, &format!("{at}.{key}"))?,
                _ => {}
            }
        }
    }
    if let (Some(items), Some(elements)) = (schema.get("items"), value.as_array()) {
        for (i, element) in elements.iter().enumerate() {
            validate(doc, items, element, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Validates a JSON answer of `method path` against the document's schema for its status.
fn check(doc: &Value, method: &str, path: &str, response: &Response) {
    let operation = &doc["paths"][path][method.to_lowercase()];
    assert!(operation.is_object(), "{method} {path} is not documented");
    let documented = resolve(doc, &operation["responses"][response.status.to_string()]);
    assert!(documented.is_object(), "{method} {path} answered {}, which is not documented: {}", response.status, response.text());
    let schema = &documented["content"]["application/json"]["schema"];
    if schema.is_object() {
        if let Err(problem) = validate(doc, schema, &response.json(), "answer") {
            panic!("{method} {path} ({}): {problem}", response.status);
        }
    }
}

/// A minimal answer of POST /v1/predict as documented.
fn predicted_shape() -> Value {
    serde_json::json!({
        "melanoma_probability": 0.5, "calibrated": true, "decision": null, "domain": null,
        "model": { "name": "m", "naevus_version": "0" }, "metadata": {}, "warnings": [], "batch_size": 1,
        "timings_ms": { "decode": 1.0, "queue": 1.0, "inference": 1.0, "total": 3.0 }
    })
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

#[test]
fn every_route_is_documented_and_answers_as_documented_and_cors_is_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = trained_bundle(dir.path(), &[]);
    let server = Server::start(&bundle, &["--cors-origin", ORIGIN]);
    let addr = server.addr.clone();

    let doc = get(&addr, "/openapi.json");
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut paths: Vec<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    paths.sort();
    assert_eq!(paths, ["/", "/healthz", "/metrics", "/openapi.json", "/readyz", "/v1/model", "/v1/predict", "/v1/predict/batch"]);
    // What is not documented is not there.
    for missing in ["/v1", "/v2/predict", "/admin", "/v1/predict/one"] {
        assert_eq!(get(&addr, missing).status, 404, "{missing}");
    }

    // The checker does check: a wrong answer fails it.
    let prediction = serde_json::json!({ "$ref": "#/components/schemas/Prediction" });
    assert!(validate(&doc, &prediction, &serde_json::json!({ "melanoma_probability": 0.5 }), "answer").unwrap_err().contains("no calibrated"));
    let mut wrong = predicted_shape();
    wrong["melanoma_probability"] = serde_json::json!(1.5);
    assert!(validate(&doc, &prediction, &wrong, "answer").unwrap_err().contains("out of range"));
    wrong["melanoma_probability"] = serde_json::json!(0.5);
    assert!(validate(&doc, &prediction, &wrong, "answer").is_ok());
    wrong["decision"] = serde_json::json!({ "operating_point": "x", "threshold": 0.1 });
    assert!(validate(&doc, &prediction, &wrong, "answer").unwrap_err().contains("no positive"));

    let image = std::fs::read(fixtures().join("isic2017/images/ISIC_0000000.jpg")).unwrap();
    let other = std::fs::read(fixtures().join("isic2017/images/ISIC_0000002.jpg")).unwrap();
    let (content_type, body) = multipart(&[("image", Some("a.jpg"), &image), ("age", None, b"55"), ("site", None, b"back")]);
    let predicted = request(&addr, "POST", "/v1/predict?explain=gradcam%2B%2B", &[("Content-Type", &content_type)], &body);
    assert_eq!(predicted.status, 200, "{}", predicted.text());
    check(&doc, "POST", "/v1/predict", &predicted);
    assert!(predicted.json()["explanation"]["grid"].is_array());
    let raw = request(&addr, "POST", "/v1/predict", &[("Content-Type", "image/jpeg")], &image);
    check(&doc, "POST", "/v1/predict", &raw);
    let not_an_image = request(&addr, "POST", "/v1/predict", &[("Content-Type", "image/jpeg")], b"not a jpeg");
    assert_eq!(not_an_image.status, 415);
    check(&doc, "POST", "/v1/predict", &not_an_image);
    let (content_type, body) = multipart(&[("image", Some("a.jpg"), &image), ("site", None, b"moon")]);
    let unknown_site = request(&addr, "POST", "/v1/predict", &[("Content-Type", &content_type)], &body);
    assert_eq!(unknown_site.status, 400);
    assert!(unknown_site.text().contains("torso"), "the refusal names the sites: {}", unknown_site.text());
    check(&doc, "POST", "/v1/predict", &unknown_site);

    let (content_type, body) = multipart(&[("image", Some("a.jpg"), &image), ("image", Some("b.jpg"), &other), ("image", Some("c.jpg"), b"broken")]);
    let batch = request(&addr, "POST", "/v1/predict/batch", &[("Content-Type", &content_type)], &body);
    assert_eq!(batch.status, 200, "{}", batch.text());
    check(&doc, "POST", "/v1/predict/batch", &batch);
    for path in ["/v1/model", "/healthz", "/readyz", "/openapi.json", "/metrics", "/"] {
        let answer = get(&addr, path);
        assert_eq!(answer.status, 200, "{path}");
        check(&doc, "GET", path, &answer);
    }

    // CORS: the named origin may call; a preflight is answered without a token.
    let preflight = request(
        &addr,
        "OPTIONS",
        "/v1/predict",
        &[("Origin", ORIGIN), ("Access-Control-Request-Method", "POST"), ("Access-Control-Request-Headers", "authorization, content-type")],
        b"",
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(header(&preflight, "access-control-allow-origin"), Some(ORIGIN));
    assert!(header(&preflight, "access-control-allow-methods").is_some_and(|m| m.contains("POST")));
    assert!(header(&preflight, "access-control-allow-headers").is_some_and(|h| h.contains("Authorization")));
    assert_eq!(header(&get(&addr, "/v1/model"), "access-control-allow-origin"), Some(ORIGIN));
    server.terminate();

    let plain = Server::start(&bundle, &[]);
    assert_eq!(header(&get(&plain.addr, "/v1/model"), "access-control-allow-origin"), None);
    assert_ne!(request(&plain.addr, "OPTIONS", "/v1/predict", &[("Origin", ORIGIN)], b"").status, 204);
    plain.terminate();

    let refused = common::naevus(&["serve", "--model", bundle.to_str().unwrap(), "--cors-origin", "*"]);
    assert!(!refused.status.success() && common::text(&refused).contains("--cors-origin takes one origin"), "{}", common::text(&refused));
}

#[test]
fn while_the_model_loads_the_port_answers_that_it_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = trained_bundle(dir.path(), &[]);
    // The load held back 3 s: long enough to look at the service meanwhile.
    let mut server = Server::spawn(&bundle, &[], &[("NAEVUS_SERVE_LOAD_DELAY_MS", "3000")]);
    let addr = server.addr.clone();
    let doc: Value = serde_json::from_str(naevus_serve::api::OPENAPI).unwrap();
    let health = get(&addr, "/healthz");
    assert_eq!((health.status, health.json()["status"].as_str()), (200, Some("loading")), "{}", health.text());
    check(&doc, "GET", "/healthz", &health);
    let ready = get(&addr, "/readyz");
    assert_eq!((ready.status, ready.json()["status"].as_str()), (503, Some("loading")), "{}", ready.text());
    check(&doc, "GET", "/readyz", &ready);
    let image = std::fs::read(fixtures().join("isic2017/images/ISIC_0000000.jpg")).unwrap();
    let early = request(&addr, "POST", "/v1/predict", &[("Content-Type", "image/jpeg")], &image);
    assert_eq!((early.status, early.json()["code"].as_str()), (503, Some("loading")), "{}", early.text());
    assert_eq!(header(&early, "retry-after"), Some("1"));
    check(&doc, "POST", "/v1/predict", &early);
    check(&doc, "GET", "/v1/model", &get(&addr, "/v1/model"));
    assert_eq!(get(&addr, "/openapi.json").status, 200, "the document is there from the start");

    // Loaded: ready, and the same port answers predictions.
    server.wait_until_ready();
    assert_eq!(get(&addr, "/healthz").json()["status"], "ok");
    let answer = request(&addr, "POST", "/v1/predict", &[("Content-Type", "image/jpeg")], &image);
    assert_eq!(answer.status, 200, "{}", answer.text());
    check(&doc, "POST", "/v1/predict", &answer);
    server.terminate();
}

/// Clients that connect while the model's router takes the port over from the loading one
/// all get an answer (503 loading, then 200): none finds its connection closed unanswered.
#[test]
fn every_request_across_the_handover_gets_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = trained_bundle(dir.path(), &[]);
    let mut server = Server::spawn(&bundle, &[], &[("NAEVUS_SERVE_LOAD_DELAY_MS", "400")]);
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let addr = server.addr.clone();
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                // Fresh connections back to back until the model answers, and a few after.
                while statuses.iter().filter(|&&s| s == 200).count() < 20 {
                    statuses.push(get(&addr, "/readyz").status);
                }
                statuses
            })
        })
        .collect();
    for client in clients {
        let statuses = client.join().expect("every request got an HTTP answer");
        assert!(statuses.iter().all(|&s| s == 503 || s == 200), "{statuses:?}");
        assert!(statuses.contains(&503), "the loading state was seen");
    }
    server.wait_until_ready();
    server.terminate();
}
