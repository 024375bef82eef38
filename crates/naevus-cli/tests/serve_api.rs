//! `naevus serve` over loopback (issue 19): every endpoint, the probabilities against
//! `naevus predict --images`, every bad input a stranger may send, the token, the
//! loopback-only default, the in-flight limit's 503 and a graceful SIGTERM.

mod common;
#[allow(dead_code)]
#[path = "../../naevus-data/tests/hostile_images/mod.rs"]
mod hostile_images;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::http::{self, Response, get, multipart, post_json, request};
use common::serve::{Server, trained_bundle};
use common::{fixtures, naevus, text};
use hostile_images::{jpeg_claiming, png_bomb};
use serde_json::json;

fn fixture_image(name: &str) -> PathBuf {
    fixtures().join("isic2017/images").join(name)
}

fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures().join("isic2017/images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jpg"))
        .collect();
    names.sort();
    names
}

fn post_image(addr: &str, path: &str, bytes: &[u8], fields: &[(&str, &str)]) -> Response {
    let mut parts: Vec<(&str, Option<&str>, &[u8])> = vec![("image", Some("lesion.jpg"), bytes)];
    parts.extend(fields.iter().map(|(name, value)| (*name, None, value.as_bytes())));
    let (content_type, body) = multipart(&parts);
    request(addr, "POST", path, &[("Content-Type", &content_type)], &body)
}

/// `naevus predict --images` of `files` (`--uncalibrated` unless the service calibrates): id -> probability.
fn predicted_by_cli(bundle: &Path, files: &[PathBuf], calibrated: bool, dir: &Path) -> Vec<(String, f64)> {
    let out = dir.join("cli.csv");
    let mut args = vec!["predict", "--run", bundle.to_str().unwrap(), "--out", out.to_str().unwrap()];
    if !calibrated {
        args.push("--uncalibrated");
    }
    args.push("--images");
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let result = naevus(&args);
    assert!(result.status.success(), "{}", text(&result));
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| {
            // image_name,target,...
            let mut fields = line.split(',');
            let (id, p) = (fields.next().unwrap(), fields.next().unwrap());
            (id.to_string(), p.parse().unwrap())
        })
        .collect()
}

fn error_code(response: &Response) -> String {
    response.json()["code"].as_str().unwrap_or_else(|| panic!("no error code: {}", response.text())).to_string()
}

#[test]
fn every_endpoint_answers_and_probabilities_match_predict_images() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = trained_bundle(dir.path(), &[]);
    let server = Server::start(&bundle, &[]);
    let addr = server.addr.as_str();

    let health = get(addr, "/healthz");
    assert_eq!((health.status, health.json()["status"].as_str()), (200, Some("ok")));

    let model = get(addr, "/v1/model").json();
    assert_eq!(model["name"], "small-cnn");
    assert_eq!(model["folds"], json!(["fold-0", "fold-1"]));
    assert!(model["card"]["intended_use"].as_str().unwrap().contains("not a diagnosis"), "{model}");
    assert_eq!(model["operating_point"]["name"], "sensitivity 90%");
    let threshold = model["operating_point"]["threshold"].as_f64().unwrap();

    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(page.header("content-security-policy").unwrap().contains("default-src 'none'"));
    assert!(!page.text().contains("http://") && !page.text().contains("https://"), "the page must load nothing from elsewhere");

    // The same probabilities as `predict --images`, by multipart form, raw body and batch.
    let names = fixture_names();
    let files: Vec<PathBuf> = names.iter().take(3).map(|n| fixture_image(n)).collect();
    // Training fits a temperature on the out-of-fold predictions; the service applies it.
    assert_eq!(model["calibrated"], true, "{model}");
    let expected = predicted_by_cli(&bundle, &files, true, dir.path());
    for (file, (id, p)) in files.iter().zip(&expected) {
        let bytes = std::fs::read(file).unwrap();
        let form = post_image(addr, "/v1/predict", &bytes, &[]);
        assert_eq!(form.status, 200, "{}", form.text());
        let answer = form.json();
        let served = answer["melanoma_probability"].as_f64().unwrap();
        assert!((served - p).abs() < 1e-5, "{id}: served {served}, predict --images {p}");
        assert_eq!(answer["decision"]["positive"].as_bool().unwrap(), served >= threshold);
        assert_eq!(answer["decision"]["operating_point"], "sensitivity 90%");
        assert_eq!(answer["model"]["name"], "small-cnn");
        for timing in ["decode", "queue", "inference", "total"] {
            assert!(answer["timings_ms"][timing].as_f64().unwrap() >= 0.0, "{answer}");
        }
        let raw = request(addr, "POST", "/v1/predict", &[("Content-Type", "image/jpeg")], &bytes);
        assert_eq!(raw.status, 200, "{}", raw.text());
        assert!((raw.json()["melanoma_probability"].as_f64().unwrap() - p).abs() < 1e-5);
    }

    // Grad-CAM++ as an overlay the size of the model's input, beside the input itself.
    let bytes = std::fs::read(&files[0]).unwrap();
    for query in ["explain=gradcam%2B%2B", "explain=gradcam++"] {
        let explained = post_image(addr, &format!("/v1/predict?{query}"), &bytes, &[]);
        assert_eq!(explained.status, 200, "{}", explained.text());
        let answer = explained.json();
        assert_eq!(answer["explanation"]["method"], "gradcam++");
        for key in ["overlay_png", "input_png"] {
            let png = BASE64.decode(answer["explanation"][key].as_str().unwrap()).unwrap();
            let picture = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap();
            assert_eq!((picture.width(), picture.height()), (32, 32));
        }
        assert!(answer["timings_ms"]["explain"].as_f64().is_some());
    }

    // A batch as a form and as JSON: one answer per image, in order.
    let images: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let parts: Vec<(&str, Option<&str>, &[u8])> = images.iter().zip(&names).map(|(b, n)| ("image", Some(n.as_str()), b.as_slice())).collect();
    let (content_type, body) = multipart(&parts);
    let batch = request(addr, "POST", "/v1/predict/batch", &[("Content-Type", &content_type)], &body);
    assert_eq!(batch.status, 200, "{}", batch.text());
    let predictions = batch.json()["predictions"].as_array().unwrap().clone();
    assert_eq!(predictions.len(), 3);
    for (prediction, (_, p)) in predictions.iter().zip(&expected) {
        assert!((prediction["melanoma_probability"].as_f64().unwrap() - p).abs() < 1e-5, "{prediction}");
    }
    assert_eq!(predictions[1]["name"], names[1]);
    let json_batch = json!({ "images": images.iter().map(|b| json!({ "image": BASE64.encode(b), "age": 50, "sex": "female" })).collect::<Vec<_>>() });
    let batch = post_json(addr, "/v1/predict/batch", &json_batch);
    assert_eq!(batch.status, 200, "{}", batch.text());
    assert_eq!(batch.json()["predictions"].as_array().unwrap().len(), 3);

    let metrics = get(addr, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let metrics = metrics.text();
    assert!(metrics.contains("naevus_requests_total{route=\"/v1/predict\",status=\"200\"} 8\n"), "{metrics}");
    assert!(metrics.contains("naevus_request_duration_seconds_count{route=\"/v1/predict\"} 8\n"), "{metrics}");
    assert!(metrics.contains("naevus_queue_depth 0\n"), "{metrics}");
    assert!(metrics.contains("naevus_images_scored_total 14\n"), "{metrics}");
    assert!(metrics.contains("naevus_batch_size_bucket{le=\"+Inf\"}"), "{metrics}");
}

/// A request whose Content-Length is over the 1 MB limit, sent without its body: the service
/// answers 413 from the header alone. (Sending the 2 MB too would race the answer: a socket
/// closed with unread data is reset, and the reset may discard the answer not yet sent.)
fn declared_over_the_limit(addr: &str) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!("POST /v1/predict HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n", 2 << 20);
    stream.write_all(head.as_bytes()).unwrap();
    http::read_response(&mut stream)
}

#[test]
fn bad_input_gets_a_json_error_naming_what_was_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = trained_bundle(dir.path(), &[]);
    let server = Server::start(&bundle, &["--max-body-mb", "1", "--max-pixels", "1000000", "--max-images", "4"]);
    let addr = server.addr.as_str();
    let good = std::fs::read(fixture_image(&fixture_names()[0])).unwrap();

    let cases: Vec<(&str, Response, u16, &str)> = vec![
        ("text", post_image(addr, "/v1/predict", b"this is not an image at all", &[]), 415, "not_an_image"),
        ("empty", post_image(addr, "/v1/predict", b"", &[]), 415, "not_an_image"),
        ("truncated", post_image(addr, "/v1/predict", &std::fs::read(fixtures().join("bad/truncated.jpg")).unwrap(), &[]), 400, "invalid_image"),
        ("truncated half", post_image(addr, "/v1/predict", &good[..good.len() / 2], &[]), 400, "invalid_image"),
        ("claims 65000x65000", post_image(addr, "/v1/predict", &jpeg_claiming(65000, 65000), &[]), 413, "image_too_large"),
        ("PNG bomb", post_image(addr, "/v1/predict", &png_bomb(2000), &[]), 413, "image_too_large"),
        ("body over 1 MB", declared_over_the_limit(addr), 413, "payload_too_large"),
        ("wrong type", request(addr, "POST", "/v1/predict", &[("Content-Type", "text/plain")], &good), 415, "unsupported_media_type"),
        ("no type", request(addr, "POST", "/v1/predict", &[], &good), 415, "unsupported_media_type"),
        ("field path", post_image(addr, "/v1/predict", &good, &[("path", "/etc/passwd")]), 400, "bad_request"),
        ("age", post_image(addr, "/v1/predict", &good, &[("age", "very old")]), 400, "bad_request"),
        ("sex", post_image(addr, "/v1/predict", &good, &[("sex", "x".repeat(5000).as_str())]), 400, "bad_request"),
        ("explain", post_image(addr, "/v1/predict?explain=lime", &good, &[]), 400, "bad_request"),
        ("not multipart", request(addr, "POST", "/v1/predict", &[("Content-Type", "multipart/form-data; boundary=x")], b"garbage"), 400, "bad_request"),
        ("no route", get(addr, "/v1/../../etc/passwd"), 404, "not_found"),
        ("bad JSON", request(addr, "POST", "/v1/predict/batch", &[("Content-Type", "application/json")], b"{\"images\": [1, 2"), 400, "bad_request"),
        ("bad base64", post_json(addr, "/v1/predict/batch", &json!({ "images": [{ "image": "***" }] })), 400, "bad_request"),
        ("too many", post_json(addr, "/v1/predict/batch", &json!({ "images": vec![json!({ "image": BASE64.encode(&good) }); 5] })), 413, "too_many_images"),
    ];
    for (what, response, status, code) in &cases {
        assert_eq!(response.status, *status, "{what}: {}", response.text());
        assert_eq!(error_code(response), *code, "{what}: {}", response.text());
        let message = response.json()["error"].as_str().unwrap().to_string();
        assert!(!message.is_empty() && message.len() < 400, "{what}: {message}");
    }
    let two = {
        let (content_type, body) = multipart(&[("image", Some("a.jpg"), &good), ("image", Some("b.jpg"), &good)]);
        request(addr, "POST", "/v1/predict", &[("Content-Type", &content_type)], &body)
    };
    assert_eq!((two.status, error_code(&two).as_str()), (400, "bad_request"), "{}", two.text());
    assert!(two.json()["error"].as_str().unwrap().contains("/v1/predict/batch"));

    // In a batch, a bad image gets its own error beside the others' answers.
    let (content_type, body) = multipart(&[("image", Some("good.jpg"), &good), ("image", Some("bad.jpg"), b"nope"), ("age", None, b"200")]);
    let batch = request(addr, "POST", "/v1/predict/batch", &[("Content-Type", &content_type)], &body);
    assert_eq!(batch.status, 200, "{}", batch.text());
    let predictions = batch.json()["predictions"].as_array().unwrap().clone();
    assert!(predictions[0]["melanoma_probability"].is_number());
    assert_eq!((predictions[1]["status"].as_u64(), predictions[1]["name"].as_str()), (Some(400), Some("bad.jpg")), "{}", predictions[1]);
    assert!(predictions[1]["error"].as_str().unwrap().contains("image 2 (bad.jpg), field age"), "{}", predictions[1]);

    // Nothing of it hurt the service.
    assert_eq!(get(addr, "/healthz").status, 200);
    assert_eq!(post_image(addr, "/v1/predict", &good, &[("age", "40"), ("sex", "male"), ("site", "torso")]).status, 200);
}

#[test]
fn a_token_guards_the_api_and_other_addresses_must_be_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = trained_bundle(dir.path(), &[]);
    let token = "0123456789abcdef0123456789abcdef";
    let server = Server::start_with_env(&bundle, &[], &[("NAEVUS_TOKEN", token)]);
    let addr = server.addr.as_str();
    let refused = get(addr, "/v1/model");
    assert_eq!((refused.status, error_code(&refused).as_str()), (401, "unauthorized"));
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    assert_eq!(request(addr, "GET", "/v1/model", &[("Authorization", "Bearer wrong-token-wrong-token-wrong-tok")], &[]).status, 401);
    assert_eq!(request(addr, "GET", "/metrics", &[], &[]).status, 401);
    let bearer = format!("Bearer {token}");
    assert_eq!(request(addr, "GET", "/v1/model", &[("Authorization", &bearer)], &[]).status, 200);
    let good = std::fs::read(fixture_image(&fixture_names()[0])).unwrap();
    assert_eq!(request(addr, "POST", "/v1/predict", &[("Content-Type", "image/jpeg")], &good).status, 401);
    assert_eq!(request(addr, "POST", "/v1/predict", &[("Content-Type", "image/jpeg"), ("Authorization", &bearer)], &good).status, 200);
    // The page and the health check stay open: they hold nothing of the model's.
    assert_eq!(get(addr, "/").status, 200);
    assert_eq!(get(addr, "/healthz").status, 200);
    drop(server);

    let out = naevus(&["serve", "--model", bundle.to_str().unwrap(), "--addr", "0.0.0.0:0"]);
    assert!(!out.status.success() && text(&out).contains("--allow-remote"), "{}", text(&out));
    let short = dir.path().join("token");
    std::fs::write(&short, "secret\n").unwrap();
    let out = naevus(&["serve", "--model", bundle.to_str().unwrap(), "--addr", "127.0.0.1:0", "--token-file", short.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("shorter than 16"), "{}", text(&out));
    let out = naevus(&["serve", "--model", dir.path().join("nothing").to_str().unwrap(), "--addr", "127.0.0.1:0"]);
    assert!(!out.status.success() && text(&out).contains("nothing"), "{}", text(&out));
}

/// Opens a connection and sends a request's head and half its body: the request is in
/// flight until the rest is sent.
fn half_sent(addr: &str, body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!("POST /v1/predict HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..body.len() / 2]).unwrap();
    stream
}

fn finish(mut stream: TcpStream, body: &[u8]) -> u16 {
    stream.write_all(&body[body.len() / 2..]).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let status = String::from_utf8_lossy(&response).split_whitespace().nth(1).and_then(|s| s.parse().ok());
    status.unwrap_or_else(|| panic!("no answer: {:?}", String::from_utf8_lossy(&response)))
}

#[test]
fn past_the_in_flight_limit_requests_get_503_and_sigterm_finishes_those_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = trained_bundle(dir.path(), &[]);
    // --queue 1 --max-batch 1: at most 2 * 1 + 1 = 3 requests in flight.
    let server = Server::start(&bundle, &["--queue", "1", "--max-batch", "1"]);
    let addr = server.addr.clone();
    let good = std::fs::read(fixture_image(&fixture_names()[0])).unwrap();

    let held: Vec<TcpStream> = (0..3).map(|_| half_sent(&addr, &good)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let refused = request(&addr, "POST", "/v1/predict", &[("Content-Type", "image/jpeg")], &good);
    assert_eq!((refused.status, error_code(&refused).as_str()), (503, "overloaded"), "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("1"));
    // The health check is not a prediction: it still answers.
    assert_eq!(http::get(&addr, "/healthz").status, 200);

    // SIGTERM while the three are in flight: each is answered, then the process ends.
    let pid = server.pid();
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    std::thread::sleep(Duration::from_millis(300));
    let statuses: Vec<u16> = held.into_iter().map(|stream| finish(stream, &good)).collect();
    assert_eq!(statuses, vec![200, 200, 200]);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(TcpStream::connect(&addr).is_err(), "still listening after SIGTERM");
}
