//! End-to-end test of the page of `naevus serve` in a real headless Chromium, driven through
//! chromedriver's W3C WebDriver API (JSON over HTTP).
//! It uploads a fixture image, waits for the result and compares it with the API's answer,
//! and leaves screenshots at desktop and phone size for a person to look at.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::fixtures;
use common::http;
use common::serve::{Server, trained_bundle, trained_ensemble};
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The key a W3C WebDriver element reference is given under.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session in it; both end when dropped.
struct Browser {
    /// host:port chromedriver listens on.
    addr: String,
    session: String,
    driver: Child,
}

impl Browser {
    fn start() -> Browser {
        // A port free now; chromedriver takes it a moment later (nothing else here binds ports).
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CHROMEDRIVER}: {e}"));
        let mut browser = Browser { addr: format!("127.0.0.1:{port}"), session: String::new(), driver };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&browser.addr).is_err() || !browser.call("GET", "/status", None)["ready"].as_bool().unwrap_or(false) {
            assert!(Instant::now() < deadline, "chromedriver did not become ready on {} within 30 s", browser.addr);
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1400"],
        }}}});
        let session = browser.call("POST", "/session", Some(&capabilities));
        browser.session = session["sessionId"].as_str().unwrap_or_else(|| panic!("no session id in {session}")).to_string();
        browser
    }

    /// Sends one WebDriver command and returns its `value`; a WebDriver error fails the test.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let body = body.map(Value::to_string).unwrap_or_default();
        let (status, mut answer) = webdriver_request(&self.addr, method, path, &body);
        assert_eq!(status, 200, "WebDriver {method} {path} failed: {answer}");
        answer["value"].take()
    }

    /// A command on this session: `path` is relative to /session/{id}.
    fn session(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn navigate(&self, url: &str) {
        self.session("POST", "/url", Some(&json!({"url": url})));
    }

    /// The element `css` selects (the first one).
    fn find(&self, css: &str) -> String {
        let found = self.session("POST", "/element", Some(&json!({"using": "css selector", "value": css})));
        found[ELEMENT_KEY].as_str().unwrap_or_else(|| panic!("{css}: no element reference in {found}")).to_string()
    }

    fn send_keys(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.session("POST", &format!("/element/{element}/value"), Some(&json!({"text": text})));
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.session("POST", &format!("/element/{element}/click"), Some(&json!({})));
    }

    /// The element's rendered text: what a person sees, so empty when it is hidden.
    fn text(&self, css: &str) -> String {
        let element = self.find(css);
        self.session("GET", &format!("/element/{element}/text"), None).as_str().unwrap_or_default().to_string()
    }

    fn displayed(&self, css: &str) -> bool {
        let element = self.find(css);
        self.session("GET", &format!("/element/{element}/displayed"), None).as_bool().unwrap_or(false)
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    fn script(&self, script: &str) -> Value {
        self.session("POST", "/execute/sync", Some(&json!({"script": script, "args": []})))
    }

    fn resize(&self, width: u32, height: u32) {
        self.session("POST", "/window/rect", Some(&json!({"width": width, "height": height})));
    }

    /// Saves a PNG of the viewport to `path` and prints where it is.
    fn screenshot(&self, path: &Path) {
        let encoded = self.session("GET", "/screenshot", None);
        let png = BASE64.decode(encoded.as_str().expect("a base64 screenshot")).expect("base64");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        std::fs::write(path, &png).unwrap();
        println!("screenshot: {}", path.display());
    }

    /// Ends the session (closing the browser) before chromedriver is stopped.
    fn quit(&mut self) {
        if !self.session.is_empty() {
            self.session("DELETE", "", None);
            self.session.clear();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After a failure: close the browser if chromedriver still answers, without panicking again.
        if !self.session.is_empty() && TcpStream::connect(&self.addr).is_ok() {
            let (addr, path) = (self.addr.clone(), format!("/session/{}", self.session));
            let _ = std::panic::catch_unwind(move || webdriver_request(&addr, "DELETE", &path, ""));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One WebDriver request: its status and JSON answer.
fn webdriver_request(addr: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let response = http::request(addr, method, path, &[("Content-Type", "application/json")], body.as_bytes());
    (response.status, response.json())
}

fn screenshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

#[test]
fn the_page_scores_an_upload_in_a_real_browser() {
    let started = Instant::now();
    // CI installs both; a missing browser must fail here, never pass by skipping.
    for program in [CHROMEDRIVER, CHROMIUM] {
        assert!(
            Path::new(program).exists(),
            "{program} is missing: this test drives a real headless Chromium; install Debian's chromium and \
             chromium-driver (apt-get install chromium chromium-driver)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let bundle = trained_bundle(dir.path(), &[]);
    let server = Server::start(&bundle, &[]);
    let image = fixtures().join("isic2017/images/ISIC_0000000.jpg").canonicalize().unwrap();

    // What the API answers for the same file, to hold the page to.
    let bytes = std::fs::read(&image).unwrap();
    let (content_type, body) = http::multipart(&[("image", Some("ISIC_0000000.jpg"), &bytes)]);
    let direct = http::request(&server.addr, "POST", "/v1/predict", &[("Content-Type", &content_type)], &body);
    assert_eq!(direct.status, 200, "{}", direct.text());
    let direct = direct.json();
    let expected = direct["melanoma_probability"].as_f64().unwrap();
    let model = http::get(&server.addr, "/v1/model").json();

    let mut browser = Browser::start();
    browser.navigate(&format!("http://{}/", server.addr));
    browser.send_keys("#file", image.to_str().unwrap());
    browser.click("#submit");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = browser.script(
            "const overlay = document.getElementById('overlay');
             return { probability: document.getElementById('probability').textContent,
                      overlay: (overlay.getAttribute('src') || '').startsWith('data:image/png'),
                      error: document.getElementById('error').textContent };",
        );
        let error = state["error"].as_str().unwrap_or_default();
        assert!(error.is_empty(), "the page shows an error: {error}");
        if !state["probability"].as_str().unwrap_or_default().is_empty() && state["overlay"] == true {
            break;
        }
        if Instant::now() > deadline {
            browser.screenshot(&screenshot_path("serve-page-timeout.png"));
            panic!("no result on the page within 60 s: {state}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // The percentage shown is the API's probability, to the page's one decimal.
    let shown = browser.text("#probability");
    let percent: f64 = shown.trim().trim_end_matches('%').parse().unwrap_or_else(|_| panic!("#probability reads {shown:?}"));
    assert!((percent - expected * 100.0).abs() <= 0.05 + 1e-9, "the page shows {shown}, the API answered {expected}");

    // The decision says what the API decided, at the point it names.
    let decision = browser.text("#decision");
    match direct["decision"].as_object() {
        Some(d) => {
            let side = if d["positive"] == true { "Above" } else { "Below" };
            assert!(decision.starts_with(side), "decision {decision:?} for {d:?}");
            assert!(decision.contains(d["operating_point"].as_str().unwrap()), "decision {decision:?} names no operating point");
        }
        None => assert!(decision.contains("No operating point"), "decision {decision:?} without an operating point"),
    }

    assert!(browser.displayed("#disclaimer"), "the disclaimer is not visible");
    assert!(browser.text("#disclaimer").contains("not a diagnosis"), "disclaimer reads {:?}", browser.text("#disclaimer"));
    assert!(!browser.displayed("#error"), "an error box is shown: {}", browser.text("#error"));
    if let Some(intended) = model["card"]["intended_use"].as_str() {
        assert_eq!(browser.text("#intended-use"), intended, "the page shows another intended use than the card's");
    }
    let widths = browser.script(
        "return [document.getElementById('overlay').naturalWidth, document.getElementById('input-image').naturalWidth];",
    );
    assert!(widths[0].as_u64().unwrap_or(0) > 0 && widths[1].as_u64().unwrap_or(0) > 0, "the pictures did not load: naturalWidth {widths}");

    browser.screenshot(&screenshot_path("serve-page.png"));

    // A phone: the result scrolled into view, nothing wider than the screen.
    browser.resize(390, 844);
    browser.script("document.getElementById('result-title').scrollIntoView({block: 'start'});");
    let overflow = browser.script("return document.documentElement.scrollWidth - document.documentElement.clientWidth;");
    assert_eq!(overflow.as_i64(), Some(0), "at phone width the page is wider than the screen");
    assert!(browser.displayed("#disclaimer") && browser.displayed("#probability"));
    browser.screenshot(&screenshot_path("serve-page-phone.png"));

    browser.quit();
    drop(browser);
    server.terminate();
    println!("serve_browser: {:.1} s", started.elapsed().as_secs_f64());
}

/// Uploads `image` on the page and waits (up to 60 s) until its result is shown.
fn upload_and_wait(browser: &Browser, image: &Path) {
    browser.script("document.getElementById('probability').textContent = '';");
    browser.send_keys("#file", image.to_str().unwrap());
    browser.click("#submit");
    let deadline = Instant::now() + Duration::from_secs(60);
    while browser.text("#probability").is_empty() {
        assert!(Instant::now() < deadline, "no result for {} within 60 s", image.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_page_shows_an_image_outside_the_domain_without_a_decision() {
    for program in [CHROMEDRIVER, CHROMIUM] {
        assert!(Path::new(program).exists(), "{program} is missing: install Debian's chromium and chromium-driver");
    }
    let dir = tempfile::tempdir().unwrap();
    let run = common::serve::guarded_run(dir.path());
    let server = Server::start(&run, &[]);
    let mut browser = Browser::start();
    browser.navigate(&format!("http://{}/", server.addr));

    // Rendered text: the out-of-domain state replaces the decision, the score is struck through.
    upload_and_wait(&browser, &fixtures().join("out-of-domain/text/text-00.png").canonicalize().unwrap());
    let decision = browser.text("#decision");
    assert!(decision.starts_with("Outside this model's domain: no decision."), "decision reads {decision:?}");
    assert!(!decision.contains("Above") && !decision.contains("Below"), "{decision:?}");
    let state = browser.script("return [document.getElementById('decision').className, document.getElementById('probability').className];");
    assert_eq!(state, json!(["outside", "withheld"]));
    assert!(browser.text("#warning-list").contains("outside the model's domain"), "{}", browser.text("#warning-list"));
    browser.screenshot(&screenshot_path("serve-page-outside.png"));

    // A held-out dermoscopic image: a decision again, nothing struck through.
    let id = common::serve::sample_validation_ids()[5].clone();
    upload_and_wait(&browser, &common::serve::sample().join(format!("images/{id}.jpg")).canonicalize().unwrap());
    let decision = browser.text("#decision");
    assert!(decision.starts_with("Above") || decision.starts_with("Below"), "decision reads {decision:?}");
    let state = browser.script("return [document.getElementById('decision').className, document.getElementById('probability').className];");
    assert_ne!(state[0], "outside");
    assert_eq!(state[1], "");
    // The map says what it is: its layer and grid, what its colours mean.
    let caption = browser.text("#overlay-caption");
    assert!(caption.contains("regions that raised the score most") && caption.contains("6 × 6 grid"), "caption reads {caption:?}");
    assert!(browser.text(".legend-note").contains("relative to this image"));
    browser.screenshot(&screenshot_path("serve-page-inside.png"));

    // The result's record: the file, when, what was given, which model, at which point; the
    // full site list although this model reads no site; downloads that hold all of it.
    let record = browser.text("#record-list");
    let bundle = http::get(&server.addr, "/v1/model").json()["bundle_sha256"].as_str().unwrap().to_string();
    for expected in [format!("{id}.jpg"), bundle.clone(), "Operating point".into(), "sensitivity 90%".into(), "Age given".into()] {
        assert!(record.contains(&expected), "the record lacks {expected:?}: {record}");
    }
    let sites = browser.script("return document.getElementById('site').options.length;");
    assert_eq!(sites, json!(7), "not given and the 6 sites");
    let saved: Value = serde_json::from_str(browser.script("return JSON.stringify(lastResult);").as_str().unwrap()).unwrap();
    assert_eq!(saved["record"]["file"], format!("{id}.jpg"));
    assert_eq!(saved["record"]["bundle_sha256"], bundle.as_str());
    assert!(saved["result"]["melanoma_probability"].is_number());
    let page = browser.script("return resultPage(lastResult);");
    let page = page.as_str().unwrap();
    assert!(page.contains("data:image/png;base64,") && page.contains("Model card summary") && page.contains("not a diagnosis"), "{page}");

    // Printed: one page, the result and its record without the form.
    browser.session("POST", "/goog/cdp/execute", Some(&json!({"cmd": "Emulation.setEmulatedMedia", "params": {"media": "print"}})));
    let shown = browser.script(
        "return ['form-panel', 'card-panel', 'result-panel', 'record'].map((id) => getComputedStyle(document.getElementById(id)).display);",
    );
    assert_eq!(shown[0], "none");
    assert_eq!(shown[1], "none");
    assert_ne!(shown[2], "none");
    assert_ne!(shown[3], "none");
    browser.screenshot(&screenshot_path("serve-page-print.png"));
    let pdf = BASE64.decode(browser.session("POST", "/print", Some(&json!({"background": true}))).as_str().unwrap()).unwrap();
    std::fs::write(screenshot_path("serve-page-print.pdf"), &pdf).unwrap();
    assert_eq!(pdf_pages(&pdf), 1, "the printed result takes {} pages", pdf_pages(&pdf));

    browser.quit();
    drop(browser);
    server.terminate();
}

#[test]
fn the_page_shows_an_ensemble_as_one_model_with_its_members() {
    for program in [CHROMEDRIVER, CHROMIUM] {
        assert!(Path::new(program).exists(), "{program} is missing: install Debian's chromium and chromium-driver");
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&trained_ensemble(dir.path()), &[]);
    let mut browser = Browser::start();
    browser.navigate(&format!("http://{}/", server.addr));
    upload_and_wait(&browser, &fixtures().join("isic2017/images/ISIC_0000002.jpg").canonicalize().unwrap());
    let line = browser.text("#model-line");
    assert!(line.contains("members alpha (small-cnn, 32 px, 2 folds), beta (small-cnn, 24 px, 2 folds)"), "the model line reads {line:?}");
    let members = browser.text("#members-note");
    assert!(members.starts_with("Ensemble of 2 models: alpha ") && members.contains(", beta ") && members.contains("(spread "), "{members:?}");
    assert!(browser.text("#record-list").contains("Members"), "{}", browser.text("#record-list"));
    browser.screenshot(&screenshot_path("serve-page-ensemble.png"));
    browser.quit();
    drop(browser);
    server.terminate();
}

/// Pages of a PDF: its `/Type /Page` objects (not `/Pages`), spaced either way.
fn pdf_pages(pdf: &[u8]) -> usize {
    let text = String::from_utf8_lossy(pdf);
    ["/Type /Page", "/Type/Page"]
        .iter()
        .map(|marker| text.match_indices(marker).filter(|(at, _)| !text[at + marker.len()..].starts_with('s')).count())
        .sum()
}
