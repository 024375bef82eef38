//! download.rs against a small HTTP/1.1 server on the loopback: normal, wrong hash,
//! interrupted and resumed, a server without Range support, two downloads at once, no
//! server at all, answers too large to be weights, and a host too slow to finish in time.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use naevus_engine::download::{DOWNLOAD_DEADLINE, download_url_checked, download_url_checked_within};
use sha2::{Digest, Sha256};

const FILE_LEN: usize = 3 * 1024 * 1024;
const CUT_AFTER: usize = 1024 * 1024;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Honours `Range`.
    Normal,
    /// Like Normal, but the first answer closes the connection after CUT_AFTER bytes.
    CutFirst,
    /// Always answers 200 with the whole file.
    IgnoreRange,
}

struct Server {
    url: String,
    /// The `Range` header of each request, in order (None: no Range).
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

/// Serves `data` at `/models/<name>` on 127.0.0.1, one connection at a time, each closed
/// after its answer (keeps the server simple; the client must cope with that anyway).
fn serve(data: Arc<Vec<u8>>, mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&ranges);
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let cut = mode == Mode::CutFirst && i == 0;
            answer(stream, &data, mode, cut, &seen);
        }
    });
    Server { url: format!("http://127.0.0.1:{port}/models/weights-00000000.pth"), ranges }
}

fn answer(mut stream: TcpStream, data: &[u8], mode: Mode, cut: bool, seen: &Mutex<Vec<Option<String>>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_string());
        }
    }
    seen.lock().unwrap().push(range.clone());

    let start: Option<usize> =
        range.as_deref().and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.strip_suffix('-')).and_then(|n| n.parse().ok());
    let len = data.len();
    let (head, body): (String, &[u8]) = match start {
        Some(start) if mode != Mode::IgnoreRange && start >= len => {
            (format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\n"), &[])
        }
        Some(start) if mode != Mode::IgnoreRange => (
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\nContent-Length: {}\r\n",
                len - 1,
                len - start
            ),
            &data[start..],
        ),
        _ => (format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n"), data),
    };
    let body = if cut { &body[..CUT_AFTER.min(body.len())] } else { body };
    let _ = stream.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// FILE_LEN pseudo-random bytes (xorshift), and the first 16 hex digits of their sha256.
fn file_and_prefix() -> (Arc<Vec<u8>>, String) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..FILE_LEN)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let digest: String = Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect();
    (Arc::new(data), digest[..16].to_string())
}

fn partial_of(target: &Path) -> std::path::PathBuf {
    target.with_file_name(format!("{}.partial", target.file_name().unwrap().to_string_lossy()))
}

#[test]
fn a_download_is_cached_whole() {
    let (data, prefix) = file_and_prefix();
    let server = serve(Arc::clone(&data), Mode::Normal);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("weights/w.pth");
    download_url_checked(&server.url, &prefix, &target).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), *data);
    assert!(!partial_of(&target).exists());
    assert_eq!(*server.ranges.lock().unwrap(), vec![None]);

    // A second call finds the file verified in place and asks nothing.
    download_url_checked(&server.url, &prefix, &target).unwrap();
    assert_eq!(server.ranges.lock().unwrap().len(), 1);
}

#[test]
fn a_wrong_hash_is_refused_and_nothing_kept() {
    let (data, _) = file_and_prefix();
    let server = serve(data, Mode::Normal);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("w.pth");
    let error = download_url_checked(&server.url, "deadbeef", &target).unwrap_err().to_string();
    eprintln!("{error}");
    assert!(error.contains("deadbeef"), "{error}");
    assert!(error.contains(&server.url), "{error}");
    assert!(!target.exists());
    assert!(!partial_of(&target).exists());
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let (data, prefix) = file_and_prefix();
    let server = serve(Arc::clone(&data), Mode::CutFirst);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("w.pth");

    let error = download_url_checked(&server.url, &prefix, &target).unwrap_err().to_string();
    eprintln!("{error}");
    assert!(error.contains("again"), "{error}");
    assert!(!target.exists());
    let kept = std::fs::metadata(partial_of(&target)).unwrap().len();
    assert!(kept > 0 && kept <= CUT_AFTER as u64, "{kept} bytes kept");

    download_url_checked(&server.url, &prefix, &target).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), *data);
    assert!(!partial_of(&target).exists());
    assert_eq!(*server.ranges.lock().unwrap(), vec![None, Some(format!("bytes={kept}-"))]);
}

#[test]
fn a_complete_partial_is_verified_after_416() {
    let (data, prefix) = file_and_prefix();
    let server = serve(Arc::clone(&data), Mode::Normal);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("w.pth");
    std::fs::write(partial_of(&target), &*data).unwrap();
    download_url_checked(&server.url, &prefix, &target).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), *data);
    assert!(!partial_of(&target).exists());
    assert_eq!(*server.ranges.lock().unwrap(), vec![Some(format!("bytes={FILE_LEN}-"))]);
}

#[test]
fn a_server_ignoring_ranges_still_gives_the_right_file() {
    let (data, prefix) = file_and_prefix();
    let server = serve(Arc::clone(&data), Mode::IgnoreRange);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("w.pth");
    // A partial whose bytes are wrong: appending to it would give a wrong file.
    std::fs::write(partial_of(&target), vec![0u8; 1000]).unwrap();
    download_url_checked(&server.url, &prefix, &target).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), *data);
    assert!(!partial_of(&target).exists());
    assert_eq!(*server.ranges.lock().unwrap(), vec![Some("bytes=1000-".to_string())]);
}

#[test]
fn two_downloads_of_one_file_at_once_do_not_corrupt_it() {
    let (data, prefix) = file_and_prefix();
    let server = serve(Arc::clone(&data), Mode::Normal);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("w.pth");
    std::thread::scope(|s| {
        let a = s.spawn(|| download_url_checked(&server.url, &prefix, &target));
        let b = s.spawn(|| download_url_checked(&server.url, &prefix, &target));
        a.join().unwrap().unwrap();
        b.join().unwrap().unwrap();
    });
    assert_eq!(std::fs::read(&target).unwrap(), *data);
    assert!(!partial_of(&target).exists());
    // The one waiting for the lock found the file done and did not fetch it again.
    assert_eq!(server.ranges.lock().unwrap().len(), 1);
}

#[test]
fn no_server_fails_at_once_with_the_offline_hint() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/models/weights-00000000.pth");
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("w.pth");
    let began = Instant::now();
    let error = download_url_checked(&url, "00000000", &target).unwrap_err().to_string();
    eprintln!("{error}");
    assert!(began.elapsed() < Duration::from_secs(5), "took {:?}", began.elapsed());
    assert!(error.contains("--from"), "{error}");
    assert!(error.contains("cannot be reached"), "{error}");
    assert!(!target.exists());
    assert!(!partial_of(&target).exists());
}

/// Answers one request with a 200 (with a Content-Length when `length` is given), then sends
/// `piece` after `piece`, pausing `pause` between them, until the client hangs up.
fn serve_endless(length: Option<u64>, piece: Vec<u8>, pause: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else { return };
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
            line.clear();
        }
        let header = length.map(|l| format!("Content-Length: {l}\r\n")).unwrap_or_default();
        let _ = stream.write_all(format!("HTTP/1.1 200 OK\r\n{header}Connection: close\r\n\r\n").as_bytes());
        while stream.write_all(&piece).and_then(|_| stream.flush()).is_ok() {
            std::thread::sleep(pause);
        }
    });
    format!("http://127.0.0.1:{port}/models/weights-00000000.pth")
}

/// A body `length` bytes long by its Content-Length, or without one endless, sent at once.
fn serve_large(length: Option<u64>) -> String {
    serve_endless(length, vec![0x5a; 64 * 1024], Duration::ZERO)
}

#[test]
fn an_answer_too_large_for_a_weights_file_is_refused_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("w.pth");
    let max = 1 << 20;
    // A body without a length that never ends stops at the limit.
    let url = serve_large(None);
    let error = download_url_checked_within(&url, "00000000", &target, max, DOWNLOAD_DEADLINE).unwrap_err().to_string();
    assert!(error.contains("grew past 1.0 MB") && error.contains("refusing it"), "{error}");
    assert!(!target.exists() && !partial_of(&target).exists());
    // One that says it is too long is refused before a byte is written.
    let url = serve_large(Some(5 << 30));
    let error = download_url_checked_within(&url, "00000000", &target, max, DOWNLOAD_DEADLINE).unwrap_err().to_string();
    assert!(error.contains("is 5368.7 MB long") && error.contains("refusing it"), "{error}");
    assert!(!target.exists() && !partial_of(&target).exists());
}

/// A body of `length` bytes by its Content-Length, trickled one byte every `every`.
fn serve_trickle(length: u64, every: Duration) -> String {
    serve_endless(Some(length), b"x".to_vec(), every)
}

#[test]
fn a_mirror_trickling_bytes_fails_at_the_overall_deadline_and_keeps_the_partial() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("w.pth");
    // A byte every 300 ms never trips the 30 s per-read timeout; only the deadline stops it.
    let url = serve_trickle(1000, Duration::from_millis(300));
    let began = Instant::now();
    let error = download_url_checked_within(&url, "00000000", &target, 1 << 20, Duration::from_secs(2)).unwrap_err().to_string();
    let took = began.elapsed();
    eprintln!("{error}");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(5), "took {took:?}");
    assert!(error.contains("did not finish within 2 s") && error.contains("run the same command again"), "{error}");
    assert!(!target.exists());
    // What came in is kept for the next call to resume.
    let kept = std::fs::metadata(partial_of(&target)).unwrap().len();
    assert!(kept > 0 && kept < 1000, "{kept} bytes kept");
}
