//! Downloading torchvision's published weight files (`https://download.pytorch.org/models/…`)
//! over HTTP: streamed to disk, resumed after an interruption, checked against the sha256
//! prefix that torchvision puts in each file name, and moved into place only once verified.
//!
//! A crash at any moment leaves either nothing, a resumable `<target>.partial`, or the
//! complete verified `<target>`. A partial damaged by a power cut is caught by the sha256
//! check, deleted, and downloaded afresh on the next call.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::sha256;

/// Where torchvision publishes its weights; the part of a URL a mirror replaces.
pub const PYTORCH_DOWNLOADS: &str = "https://download.pytorch.org";

/// The environment variable naming an internal mirror of [`PYTORCH_DOWNLOADS`], for sites
/// (hospitals, often) that cannot reach pytorch.org, e.g. `http://10.0.0.5/torch`.
pub const MIRROR_ENV: &str = "NAEVUS_TORCHVISION_MIRROR";

/// Giving up on a host that does not accept the connection within this, so that without
/// network a fetch fails at once instead of hanging.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Giving up on a connection that stays silent this long (per read, not for the whole file:
/// a large file on a slow line may take many minutes).
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Progress is printed at every tenth of the file, or every this many bytes when the server
/// does not say how large the file is.
const PROGRESS_STEP_UNSIZED: u64 = 50 * 1000 * 1000;
/// The most bytes a download may have: four times VGG16-BN's 553 MB, the largest weights
/// file naevus knows. An answer that grows past it is not a weights file, and left alone
/// it would fill the disk.
pub const MAX_DOWNLOAD_BYTES: u64 = 2 << 30;
/// The longest a download may take in all: VGG16-BN's 553 MB at 160 kB/s. The per-read
/// timeout alone lets a host that sends a byte now and then hold a fetch for ever; past
/// this the partial is kept, and the same command resumes it.
pub const DOWNLOAD_DEADLINE: Duration = Duration::from_secs(60 * 60);

/// `url` with its `https://download.pytorch.org` replaced by `$NAEVUS_TORCHVISION_MIRROR`
/// when that is set (and not empty); other URLs are returned unchanged.
pub fn mirror_url(url: &str) -> String {
    mirrored(url, std::env::var(MIRROR_ENV).ok().as_deref())
}

/// [`mirror_url`] with the mirror given rather than read from the environment.
pub fn mirrored(url: &str, mirror: Option<&str>) -> String {
    let mirror = mirror.map(|m| m.trim().trim_end_matches('/')).filter(|m| !m.is_empty());
    match (mirror, url.strip_prefix(PYTORCH_DOWNLOADS)) {
        // The prefix must end at a path boundary: `https://download.pytorch.org.evil/` is not it.
        (Some(mirror), Some(rest)) if rest.is_empty() || rest.starts_with('/') => format!("{mirror}{rest}"),
        _ => url.to_string(),
    }
}

/// The sha256 prefix in a torchvision file name: the hex digits after the last `-` and
/// before the extension (`f37072fd` in `…/resnet18-f37072fd.pth`), at least 8 of them.
pub fn sha256_prefix_in_url(url: &str) -> Option<&str> {
    let name = url.rsplit('/').next()?;
    let stem = name.split('.').next()?;
    let (_, prefix) = stem.rsplit_once('-')?;
    (prefix.len() >= 8 && prefix.chars().all(|c| c.is_ascii_hexdigit())).then_some(prefix)
}

/// Downloads `url` (through `$NAEVUS_TORCHVISION_MIRROR` when set, see [`mirror_url`]) to
/// `target`, checking that the file's sha256 starts with `sha256_prefix`.
pub fn download_checked(url: &str, sha256_prefix: &str, target: &Path) -> Result<()> {
    download_url_checked(&mirror_url(url), sha256_prefix, target)
}

/// [`download_checked`] from exactly `url`, with no mirror applied.
///
/// - Streams into `<target>.partial`, resuming an existing partial with `Range: bytes=N-`
///   (a 200 answer means the server ignores ranges: the partial is started over; 416 means
///   it is already complete, or bad, which the sha256 check then tells).
/// - On a sha256 mismatch the partial is deleted and the error names the URL, the expected
///   prefix and the digest got.
/// - A verified file is fsynced and renamed onto `target`.
/// - An exclusive lock on `<target>.lock` keeps two processes from writing the same partial;
///   the second one waits, then finds the file already there.
/// - A connection that breaks off leaves the partial for the next call to resume.
/// - An answer larger than [`MAX_DOWNLOAD_BYTES`] is refused and deleted.
/// - A download still going after [`DOWNLOAD_DEADLINE`] stops, keeping the partial.
pub fn download_url_checked(url: &str, sha256_prefix: &str, target: &Path) -> Result<()> {
    download_url_checked_within(url, sha256_prefix, target, MAX_DOWNLOAD_BYTES, DOWNLOAD_DEADLINE)
}

/// [`download_url_checked`] accepting at most `max_bytes`, and giving up once `deadline` has
/// passed since it started (waiting for another process's lock not counted).
pub fn download_url_checked_within(url: &str, sha256_prefix: &str, target: &Path, max_bytes: u64, deadline: Duration) -> Result<()> {
    let expected = sha256_prefix.to_ascii_lowercase();
    if expected.len() < 8 || expected.len() > 64 || !expected.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("{sha256_prefix:?} is not a sha256 prefix (8 to 64 hex digits) to check {url} against");
    }
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let _lock = lock(&sibling(target, "lock"), url)?;

    // Another process may have completed the file while we waited for the lock.
    if target.exists() && sha256::of_file(target, |_| Ok(()))?.starts_with(&expected) {
        return Ok(());
    }

    let partial = sibling(target, "partial");
    let agent = agent();
    let deadline = Deadline { end: Instant::now() + deadline, limit: deadline };
    // A partial the server cannot resume (416 and a wrong digest, or a 206 from the wrong
    // offset) is deleted and fetched afresh, once.
    let mut started_over = false;
    loop {
        let have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        let Some(left) = deadline.left() else {
            bail!("{}", deadline.passed(url, have, &partial));
        };
        let mut request = agent.get(url);
        if have > 0 {
            request = request.header("Range", format!("bytes={have}-"));
        }
        // ureq's own overall timeout, so that a read blocked on a trickling host wakes up.
        let request = request.config().timeout_global(Some(left)).build();
        let mut response = request.call().map_err(|e| match deadline.left() {
            None => anyhow!("{}", deadline.passed(url, have, &partial)),
            Some(_) => unreachable(url, &e),
        })?;
        let status = response.status().as_u16();
        let length = response.body().content_length();
        let resumed = match status {
            200 => {
                if have > 0 {
                    eprintln!("{url}: the server does not resume downloads; starting over");
                }
                false
            }
            206 if have > 0 => match content_range_start(&response) {
                Some(start) if start == have => true,
                _ if !started_over => {
                    eprintln!("{url}: the server resumed from another offset than {have}; starting over");
                    remove(&partial)?;
                    started_over = true;
                    continue;
                }
                _ => bail!("{url}: the server answers requests for a part of the file with the wrong part"),
            },
            416 if have > 0 => {
                // Nothing to transfer: the partial is either whole or not this file.
                drop(response);
                let digest = sha256::of_file(&partial, |_| Ok(()))?;
                if digest.starts_with(&expected) {
                    return install(&partial, target);
                }
                if started_over {
                    return Err(refuse(&partial, mismatch(url, &expected, &digest)));
                }
                eprintln!("{url}: the partial download is not the file expected; starting over");
                remove(&partial)?;
                started_over = true;
                continue;
            }
            _ => bail!("{url} answered HTTP {status}.\n{}", offline_hint(url)),
        };

        let start = if resumed { have } else { 0 };
        let total = length.map(|l| l + start);
        if let Some(total) = total.filter(|&t| t > max_bytes) {
            return Err(refuse(&partial, too_large(url, &format!("is {} long", megabytes(total)), max_bytes)));
        }
        let mut file = if resumed {
            OpenOptions::new().append(true).open(&partial)
        } else {
            File::create(&partial)
        }
        .with_context(|| format!("opening {}", partial.display()))?;
        match total {
            Some(total) if resumed => eprintln!("{url}: resuming at {} of {}", megabytes(start), megabytes(total)),
            Some(total) => eprintln!("{url}: downloading {}", megabytes(total)),
            None => eprintln!("{url}: downloading"),
        }
        let mut reader = response.body_mut().as_reader();
        let body = stream(&mut reader, &mut file, (start, total), (max_bytes, &deadline), url, &partial)?;
        drop(file);
        if body == Body::TooLarge {
            return Err(refuse(&partial, too_large(url, &format!("grew past {}", megabytes(max_bytes)), max_bytes)));
        }

        let digest = sha256::of_file(&partial, |_| Ok(()))?;
        if !digest.starts_with(&expected) {
            return Err(refuse(&partial, mismatch(url, &expected, &digest)));
        }
        return install(&partial, target);
    }
}

/// An agent that answers every HTTP status itself (206 and 416 are part of the protocol
/// here), follows redirects (the CDN may use them) and gives up on silent hosts.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(10)
        .timeout_resolve(Some(CONNECT_TIMEOUT))
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(READ_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        .build()
        .new_agent()
}

/// When a download must have finished.
struct Deadline {
    end: Instant,
    limit: Duration,
}

impl Deadline {
    /// The time left, or None once it has passed.
    fn left(&self) -> Option<Duration> {
        self.end.checked_duration_since(Instant::now()).filter(|left| !left.is_zero())
    }

    /// The message for a download stopped by the deadline with `done` bytes in `partial`.
    fn passed(&self, url: &str, done: u64, partial: &Path) -> String {
        format!(
            "the download of {url} did not finish within {} s, the most a download may take ({} received, kept in {}): \
             the host is too slow; run the same command again to resume it.\n{}",
            self.limit.as_secs_f64(),
            megabytes(done),
            partial.display(),
            offline_hint(url)
        )
    }
}

/// How a body ended.
#[derive(Debug, PartialEq)]
enum Body {
    Complete,
    /// It grew past the most bytes allowed; copying stopped there.
    TooLarge,
}

/// Copies the body into `file` from byte `start` of the file (of `total`, when known),
/// printing progress every tenth of `total` (or every 50 MB), and stopping once the file
/// would exceed `max_bytes` or the deadline has passed.
fn stream(
    reader: &mut impl Read,
    file: &mut File,
    (start, total): (u64, Option<u64>),
    (max_bytes, deadline): (u64, &Deadline),
    url: &str,
    partial: &Path,
) -> Result<Body> {
    let step = total.map(|t| (t / 10).max(1)).unwrap_or(PROGRESS_STEP_UNSIZED);
    let mut done = start;
    let mut next_report = (start / step + 1) * step;
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            // ureq's overall timeout ends a read blocked at the deadline.
            Err(_) if deadline.left().is_none() => bail!("{}", deadline.passed(url, done, partial)),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => bail!(
                "the download of {url} broke off after {} ({e}); run the same command again to resume it from {}.\n{}",
                megabytes(done),
                partial.display(),
                offline_hint(url)
            ),
        };
        // Checked on every read too: a host may send just enough never to time out. The bytes
        // just read are dropped; resuming asks for them again.
        if deadline.left().is_none() {
            bail!("{}", deadline.passed(url, done, partial));
        }
        if done + n as u64 > max_bytes {
            return Ok(Body::TooLarge);
        }
        file.write_all(&buffer[..n]).with_context(|| format!("writing {} (is the disk full?)", partial.display()))?;
        done += n as u64;
        if done >= next_report {
            match total {
                Some(total) => eprintln!("  {}% ({} of {})", done * 100 / total.max(1), megabytes(done), megabytes(total)),
                None => eprintln!("  {}", megabytes(done)),
            }
            next_report = (done / step + 1) * step;
        }
    }
    if let Some(total) = total
        && done != total
    {
        bail!("the download of {url} ended at {done} bytes of {total}; run the same command again to resume it");
    }
    Ok(Body::Complete)
}

/// Makes the verified `partial` durable, then renames it onto `target`, so that `target`
/// never names an incomplete file, even after a power cut.
fn install(partial: &Path, target: &Path) -> Result<()> {
    // Opened for writing because flushing a read-only handle fails on some systems.
    OpenOptions::new()
        .write(true)
        .open(partial)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("flushing {} to disk", partial.display()))?;
    std::fs::rename(partial, target).with_context(|| format!("renaming {} to {}", partial.display(), target.display()))?;
    // The rename itself is durable once the directory is flushed; where directories cannot
    // be opened (Windows), the rename is still atomic, only maybe not yet on disk.
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// An exclusive advisory lock on `path`, held until the file is dropped; waits (saying so)
/// while another process holds it. The lock file is left in place: deleting it while
/// another process waits on it would let a third one lock a new file beside them.
fn lock(path: &Path, url: &str) -> Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() { "unknown" } else { holder };
            eprintln!("{url}: another naevus process (pid {holder}) is downloading it; waiting for it");
            file.lock().with_context(|| format!("locking {}", path.display()))?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
    }
    // Recorded for the message above, in whoever waits next.
    let _ = file.set_len(0).and_then(|_| file.rewind()).and_then(|_| write!(file, "{}", std::process::id()));
    Ok(file)
}

/// The first byte offset of a 206 answer's `Content-Range: bytes START-END/TOTAL`.
fn content_range_start<B>(response: &ureq::http::Response<B>) -> Option<u64> {
    let value = response.headers().get("content-range")?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

/// Explains a failed connection: no network (or no route to the host), and what to do.
fn unreachable(url: &str, error: &ureq::Error) -> anyhow::Error {
    let host = host_of(url);
    let why = match error {
        ureq::Error::HostNotFound => format!("cannot find the host {host}: there is no network, or no name server that knows it"),
        ureq::Error::Timeout(_) => format!("{host} did not answer in time: there is no network, or the host cannot be reached"),
        ureq::Error::ConnectionFailed => format!("cannot connect to {host}: there is no network, or the host cannot be reached"),
        // Any I/O failure before an answer is a connection failure: refused, unreachable,
        // or a name lookup that failed (which the system resolver reports as plain I/O).
        ureq::Error::Io(e) => format!("cannot reach {host} ({e}): there is no network, or the host cannot be reached"),
        other => format!("cannot download {url}: {other}"),
    };
    anyhow!("{why}.\n{}", offline_hint(url))
}

fn offline_hint(url: &str) -> String {
    format!(
        "Without access to it, download {url} on another machine and run `naevus weights fetch MODEL --from FILE` here, \
         or set {MIRROR_ENV} to an internal mirror of {PYTORCH_DOWNLOADS}."
    )
}

/// Deletes the partial of a refused download; `why` is the error, with the deletion's own
/// failure added when there is one.
fn refuse(partial: &Path, why: String) -> anyhow::Error {
    match remove(partial) {
        Ok(()) => anyhow!(why),
        Err(e) => e.context(why),
    }
}

/// `size`: how large the answer is, e.g. "is 3000.0 MB long".
fn too_large(url: &str, size: &str, max_bytes: u64) -> String {
    format!("{url} {size}, more than the {} a weights file may have: refusing it (the download was deleted)", megabytes(max_bytes))
}

fn mismatch(url: &str, expected: &str, digest: &str) -> String {
    format!("{url} gave a file with sha256 {digest}, expected one starting with {expected}: refusing it (the download was deleted)")
}

/// `scheme://HOST[:port]/…` → `HOST[:port]`.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// `<target>.<suffix>` beside `target`.
fn sibling(target: &Path, suffix: &str) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e).with_context(|| format!("deleting {}", path.display())),
        _ => Ok(()),
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirror_replaces_the_pytorch_host_only() {
        let url = "https://download.pytorch.org/models/resnet18-f37072fd.pth";
        assert_eq!(mirrored(url, None), url);
        assert_eq!(mirrored(url, Some("")), url);
        assert_eq!(mirrored(url, Some("http://10.0.0.5/torch")), "http://10.0.0.5/torch/models/resnet18-f37072fd.pth");
        assert_eq!(mirrored(url, Some("http://10.0.0.5/torch/")), "http://10.0.0.5/torch/models/resnet18-f37072fd.pth");
        let other = "https://example.org/models/resnet18-f37072fd.pth";
        assert_eq!(mirrored(other, Some("http://10.0.0.5/torch")), other);
        let lookalike = "https://download.pytorch.org.example/models/x.pth";
        assert_eq!(mirrored(lookalike, Some("http://10.0.0.5/torch")), lookalike);
    }

    #[test]
    fn the_sha256_prefix_comes_from_the_file_name() {
        assert_eq!(sha256_prefix_in_url("https://download.pytorch.org/models/resnet18-f37072fd.pth"), Some("f37072fd"));
        assert_eq!(
            sha256_prefix_in_url("https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth"),
            Some("7f5810bc")
        );
        assert_eq!(sha256_prefix_in_url("https://example.org/models/resnet18.pth"), None);
        assert_eq!(sha256_prefix_in_url("https://example.org/models/vgg16-bn.pth"), None);
    }

    #[test]
    fn hosts_and_siblings() {
        assert_eq!(host_of("https://download.pytorch.org/models/a.pth"), "download.pytorch.org");
        assert_eq!(host_of("http://127.0.0.1:8080/a.pth"), "127.0.0.1:8080");
        assert_eq!(sibling(Path::new("/c/w/a.pth"), "partial"), PathBuf::from("/c/w/a.pth.partial"));
    }
}
