//! `naevus serve` against clients that stall, hang up or hold requests half-sent, and
//! against damaged model folders (issue 29, items 1 to 5, 11's serve flags, 13 and 14's
//! explain): each over loopback, bounded in time.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::http::{get, multipart, request};
use common::serve::{Server, trained_bundle};
use common::{fixtures, naevus, text};

fn lesion() -> Vec<u8> {
    let images = fixtures().join("isic2017/images");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&images).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "jpg")).collect();
    names.sort();
    std::fs::read(&names[0]).unwrap()
}

fn predict(addr: &str, image: &[u8]) -> u16 {
    request(addr, "POST", "/v1/predict", &[("Content-Type", "image/jpeg")], image).status
}

/// Sends a request's head promising `length` body bytes, then only `sent` of them.
fn stalled_upload(addr: &str, length: usize, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!("POST /v1/predict HTTP/1.1\r\nHost: {addr}\r\nContent-Type: image/jpeg\r\nContent-Length: {length}\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&vec![0xFF; sent]).unwrap();
    stream
}

/// What the server sent before closing (or before 20 s passed).
fn read_all(mut stream: TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The value of a line of /metrics that starts with `series`, or 0 when there is none.
fn metric(addr: &str, series: &str) -> f64 {
    let text = get(addr, "/metrics").text();
    text.lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

/// Runs `naevus ARGS` with `env`, killing it after 30 s (a service that starts when it should
/// have refused to would otherwise never return): its output, and whether it ended by itself.
fn run_briefly(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_naevus"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("still running after 30 s: {}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (out.status, text(&out))
}

/// Waits for `child` to end, up to `limit`; true when it did.
fn ends_within(pid: u32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        // SAFETY: signal 0 only asks whether the process still exists (a zombie still does,
        // so the status is reaped by waitpid with WNOHANG).
        let mut status = 0;
        let reaped = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
        if reaped == pid as i32 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn uploads_that_stall_time_out_and_free_their_slots() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = trained_bundle(dir.path(), &[]);
    // At most 2 * 1 + 1 = 3 requests in flight; clients get 2 s to send one.
    let server = Server::start(&bundle, &["--queue", "1", "--max-batch", "1", "--read-timeout-secs", "2"]);
    let addr = server.addr.as_str();
    let image = lesion();

    let stalled: Vec<TcpStream> = (0..10).map(|_| stalled_upload(addr, 100_000, 2)).collect();
    let mut half_header = TcpStream::connect(addr).unwrap();
    half_header.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    half_header.write_all(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Le").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // Every slot is held by a stalled upload: the service says so.
    assert_eq!(predict(addr, &image), 503);
    let ready = get(addr, "/readyz");
    assert_eq!((ready.status, ready.json()["status"].as_str()), (503, Some("at_capacity")), "{}", ready.text());

    // The three that took the slots get 408 from the read timeout; the others were turned
    // away at once. The half-sent header is closed.
    let started = Instant::now();
    let answers: Vec<String> = stalled.into_iter().map(read_all).collect();
    let timed_out: Vec<&String> = answers.iter().filter(|a| a.starts_with("HTTP/1.1 408")).collect();
    assert_eq!(timed_out.len(), 3, "{answers:?}");
    assert!(timed_out.iter().all(|a| a.contains("read timeout")), "{timed_out:?}");
    assert_eq!(answers.iter().filter(|a| a.starts_with("HTTP/1.1 503")).count(), 7, "{answers:?}");
    assert_eq!(read_all(half_header), "", "a connection that never finished its headers is closed without an answer");
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    assert_eq!(predict(addr, &image), 200);
    let ready = get(addr, "/readyz");
    assert_eq!((ready.status, ready.json()["status"].as_str()), (200, Some("ready")), "{}", ready.text());
    assert_eq!(metric(addr, "naevus_requests_total{route=\"/v1/predict\",status=\"408\"}"), 3.0);
}

/// A PNG of `side` x `side` pixels that is small to send and slow to decode.
fn large_flat_png(side: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(side, side, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

#[test]
fn a_batch_whose_client_hangs_up_stops_being_decoded_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = trained_bundle(dir.path(), &[]);
    let server = Server::start(&bundle, &["--queue", "1", "--max-batch", "1"]);
    let addr = server.addr.clone();
    let png = large_flat_png(4000);
    let parts: Vec<(&str, Option<&str>, &[u8])> = (0..64).map(|_| ("image", Some("big.png"), png.as_slice())).collect();
    let (content_type, body) = multipart(&parts);
    assert!(body.len() < 32 << 20, "{} bytes", body.len());

    let mut stream = TcpStream::connect(&addr).unwrap();
    let head = format!("POST /v1/predict/batch HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body).unwrap();
    // The images are being decoded (64 of 16 megapixels take seconds); the client goes away.
    std::thread::sleep(Duration::from_millis(400));
    drop(stream);
    std::thread::sleep(Duration::from_millis(600));

    assert_eq!(metric(&addr, "naevus_requests_total{route=\"/v1/predict/batch\",status=\"499\"}"), 1.0, "{}", get(&addr, "/metrics").text());
    // Images of the batch scored before the hang-up count; after it, none of the rest is
    // (decoding them all takes seconds): only the one image sent now.
    let before = metric(&addr, "naevus_images_scored_total");
    assert_eq!(predict(&addr, &lesion()), 200);
    std::thread::sleep(Duration::from_millis(2000));
    let after = metric(&addr, "naevus_images_scored_total");
    assert_eq!(after - before, 1.0, "{before} images scored at the hang-up, {after} two seconds later");
    assert!(before < 32.0, "{before} of the 64 images scored within 0.4 s: the test's images decode too fast to tell");
}

#[test]
fn an_upload_over_the_limit_gets_its_413_and_the_connection_is_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = trained_bundle(dir.path(), &[]);
    let server = Server::start(&bundle, &["--max-body-mb", "1"]);
    // The answer comes at the header. The service then reads and drops what the client still
    // sends, rather than closing on unread bytes: that resets the connection, which fails the
    // client's upload and can discard the answer before the client reads it.
    for round in 0..3 {
        let mut stream = TcpStream::connect(&server.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let head = format!("POST /v1/predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n", 8 << 20);
        stream.write_all(head.as_bytes()).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let sending = std::thread::spawn(move || writer.write_all(&vec![0xFF; 8 << 20]));
        let answer = read_all(stream);
        assert!(answer.starts_with("HTTP/1.1 413"), "round {round}: {answer}");
        let sent = sending.join().unwrap();
        assert!(sent.is_ok(), "round {round}: the upload was cut off: {sent:?}");
    }
}

#[test]
fn sigterm_ends_the_service_while_clients_hold_half_sent_requests() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = trained_bundle(dir.path(), &[]);
    let server = Server::start(&bundle, &["--read-timeout-secs", "1"]);
    let addr = server.addr.clone();
    let _body = stalled_upload(&addr, 100_000, 10);
    let mut header = TcpStream::connect(&addr).unwrap();
    header.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
    let idle = TcpStream::connect(&addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid = server.pid();
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    // 1 s of read timeout and 5 s for scoring are the most it may wait.
    assert!(ends_within(pid, Duration::from_secs(8)), "still running 8 s after SIGTERM");
    drop((header, idle));
}

#[test]
fn tokens_no_client_could_send_are_refused_and_the_scheme_is_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = trained_bundle(dir.path(), &[]);
    let model = bundle.to_str().unwrap();
    let serve = |token: &str| run_briefly(&["serve", "--model", model, "--addr", "127.0.0.1:0"], &[("NAEVUS_TOKEN", token)]);
    for blank in ["", "   "] {
        let (status, message) = serve(blank);
        assert!(!status.success() && message.contains("NAEVUS_TOKEN is set but empty"), "{message}");
    }
    for unusable in ["ünïcödé-token-of-enough-length", "token with spaces in the middle"] {
        let (status, message) = serve(unusable);
        assert!(!status.success() && message.contains("visible ASCII"), "{message}");
    }

    let token = "0123456789abcdef0123456789abcdef";
    let server = Server::start_with_env(&bundle, &[], &[("NAEVUS_TOKEN", token)]);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let header = format!("{scheme} {token}");
        assert_eq!(request(&server.addr, "GET", "/v1/model", &[("Authorization", &header)], &[]).status, 200, "{scheme}");
    }
    assert_eq!(request(&server.addr, "GET", "/v1/model", &[("Authorization", &format!("Basic {token}"))], &[]).status, 401);
}

#[test]
fn attention_on_a_model_without_it_is_a_bad_request() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = trained_bundle(dir.path(), &[]);
    let server = Server::start(&bundle, &[]);
    let answer = request(&server.addr, "POST", "/v1/predict?explain=attention", &[("Content-Type", "image/jpeg")], &lesion());
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(answer.json()["error"].as_str().unwrap().contains("no learned attention"), "{}", answer.text());
}

#[test]
fn serve_flags_past_their_bounds_are_refused_naming_the_bound() {
    for (flag, value) in [("--queue", "18446744073709551615"), ("--queue", "100000000000"), ("--batch-wait-ms", "100000000000000000"), ("--max-batch", "0"), ("--read-timeout-secs", "0")] {
        let out = naevus(&["serve", "--model", "nothing", flag, value]);
        let message = text(&out);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {message}");
        assert!(message.contains(flag) && message.contains("expected a whole number from"), "{flag} {value}: {message}");
        assert!(message.len() < 400, "{message}");
    }
}

/// Copies the exported model in `from` to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Sets `pointer` (a JSON pointer) of the JSON file `path` to `value`.
fn edit_json(path: &Path, pointer: &str, value: serde_json::Value) {
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    *json.pointer_mut(pointer).unwrap_or_else(|| panic!("{} has no {pointer}", path.display())) = value;
    std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
}

#[test]
fn damaged_model_folders_are_refused_at_start_naming_the_file_and_field() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let bundle = trained_bundle(dir.path(), &[]);
    let image = fixtures().join("isic2017/images");
    let first_image = std::fs::read_dir(&image).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|e| e == "jpg")).unwrap();
    let cases: [(&str, &str, serde_json::Value, &str); 12] = [
        ("run.json", "/folds", json!([]), "folds"),
        ("run.json", "/std/0", json!(0.0), "std[0]"),
        ("run.json", "/mean/1", json!(-3.0), "mean[1]"),
        ("run.json", "/image_size", json!(0), "image_size"),
        ("run.json", "/image_size", json!(1), "image_size"),
        ("run.json", "/image_size", json!(100000), "image_size"),
        ("run.json", "/cache_size", json!(0), "cache_size"),
        ("calibration.json", "/temperature", json!(1e-300), "temperature"),
        ("model_card.json", "/operating_points/0/threshold", json!(5.0), "threshold"),
        ("model_card.json", "/operating_points/0/threshold", json!(1e308), "threshold"),
        ("model_card.json", "/operating_points/0/threshold", json!(-1.0), "threshold"),
        ("model_card.json", "/calibration/temperature", json!(1e300), "temperature"),
    ];
    for (i, (file, pointer, value, field)) in cases.into_iter().enumerate() {
        let damaged = dir.path().join(format!("damaged-{i}"));
        copy_dir(&bundle, &damaged);
        edit_json(&damaged.join(file), pointer, value.clone());
        let what = format!("{file} {pointer} = {value}");
        let (status, message) = run_briefly(&["serve", "--model", damaged.to_str().unwrap(), "--addr", "127.0.0.1:0"], &[]);
        assert!(!status.success(), "{what}: served: {message}");
        // The port opens while the model loads; a model that cannot load never serves.
        assert!(!message.contains("serving "), "{what}: {message}");
        assert!(message.contains(file) && message.contains(field), "{what}: {message}");
        // predict and explain open the folder the same way.
        let csv = dir.path().join(format!("predicted-{i}.csv"));
        let out = naevus(&["predict", "--run", damaged.to_str().unwrap(), "--out", csv.to_str().unwrap(), "--images", first_image.to_str().unwrap()]);
        if file != "model_card.json" {
            assert!(!out.status.success() && text(&out).contains(field), "{what}: predict: {}", text(&out));
        }
    }
    // A fold folder that run.json lists but is gone.
    let damaged = dir.path().join("no-fold");
    copy_dir(&bundle, &damaged);
    std::fs::remove_dir_all(damaged.join("fold-1")).unwrap();
    let (status, message) = run_briefly(&["serve", "--model", damaged.to_str().unwrap(), "--addr", "127.0.0.1:0"], &[]);
    assert!(!status.success() && message.contains("fold-1"), "{message}");
}
