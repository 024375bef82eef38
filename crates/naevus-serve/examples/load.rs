//! A load benchmark for `naevus serve`, over loopback only: N clients post one image each,
//! again and again, for a fixed time (a client told 503 waits the Retry-After seconds, as a
//! polite client does); prints requests/s, latency percentiles, answers by status, and the
//! batch sizes the service formed meanwhile (from its /metrics).
//!
//!     cargo run --release -p naevus-serve --example load -- \
//!         --addr 127.0.0.1:8080 --image lesion.jpg --clients 50 --seconds 30 [--token T]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

struct Options {
    addr: SocketAddr,
    image: Vec<u8>,
    clients: usize,
    seconds: f64,
    token: Option<String>,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let (mut addr, mut image, mut clients, mut seconds, mut token) = (None, None, 50, 30.0, None);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = Some(value()?.parse::<SocketAddr>().map_err(|e| format!("--addr: {e}"))?),
            "--image" => {
                let path = value()?;
                image = Some(std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?);
            }
            "--clients" => clients = value()?.parse().map_err(|e| format!("--clients: {e}"))?,
            "--seconds" => seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--token" => token = Some(value()?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let addr = addr.ok_or("--addr is required")?;
    // A benchmark that can be pointed anywhere is a denial of service tool.
    if !addr.ip().is_loopback() {
        return Err(format!("{addr} is not a loopback address; this benchmark only loads a local service"));
    }
    Ok(Options { addr, image: image.ok_or("--image is required")?, clients: clients.max(1), seconds, token })
}

/// One POST of the image: the status (0 when the connection failed) and the Retry-After seconds.
fn post(options: &Options) -> (u16, Option<u64>) {
    let Ok(mut stream) = TcpStream::connect(options.addr) else { return (0, None) };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let auth = options.token.as_ref().map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "POST /v1/predict HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: image/jpeg\r\n{auth}Content-Length: {}\r\n\r\n",
        options.addr,
        options.image.len()
    );
    if stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&options.image)).is_err() {
        return (0, None);
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let retry_after = head
        .lines()
        .find_map(|line| line.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("retry-after")))
        .and_then(|(_, value)| value.trim().parse().ok());
    (status, retry_after)
}

/// The service's batch-size histogram: cumulative count at each bound, and the sum and count.
fn batch_histogram(options: &Options) -> (Vec<(String, u64)>, f64, u64) {
    let Ok(mut stream) = TcpStream::connect(options.addr) else { return (Vec::new(), 0.0, 0) };
    let auth = options.token.as_ref().map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let _ = stream.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{auth}\r\n", options.addr).as_bytes());
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let (mut buckets, mut sum, mut count) = (Vec::new(), 0.0, 0);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("naevus_batch_size_bucket{le=\"") {
            let (bound, value) = rest.split_once("\"} ").unwrap_or(("?", "0"));
            buckets.push((bound.to_string(), value.trim().parse().unwrap_or(0)));
        } else if let Some(value) = line.strip_prefix("naevus_batch_size_sum ") {
            sum = value.trim().parse().unwrap_or(0.0);
        } else if let Some(value) = line.strip_prefix("naevus_batch_size_count ") {
            count = value.trim().parse().unwrap_or(0);
        }
    }
    (buckets, sum, count)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}

fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::exit(2);
        }
    };
    let before = batch_histogram(&options);
    let deadline = Instant::now() + Duration::from_secs_f64(options.seconds);
    let start = Instant::now();
    let results: Vec<(u16, f64)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..options.clients)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    while Instant::now() < deadline {
                        let sent = Instant::now();
                        let (status, retry_after) = post(&options);
                        mine.push((status, sent.elapsed().as_secs_f64() * 1e3));
                        if let Some(seconds) = retry_after {
                            std::thread::sleep(Duration::from_secs(seconds.min(5)));
                        }
                    }
                    mine
                })
            })
            .collect();
        clients.into_iter().flat_map(|c| c.join().unwrap()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let after = batch_histogram(&options);

    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for (status, _) in &results {
        *by_status.entry(*status).or_default() += 1;
    }
    let mut ok: Vec<f64> = results.iter().filter(|(s, _)| *s == 200).map(|(_, ms)| *ms).collect();
    ok.sort_by(f64::total_cmp);
    println!("{} clients for {elapsed:.1} s: {} requests, {:.1} answered 200/s", options.clients, results.len(), ok.len() as f64 / elapsed);
    println!(
        "latency of 200s (ms): p50 {:.1}, p95 {:.1}, p99 {:.1}, max {:.1}",
        percentile(&ok, 50.0),
        percentile(&ok, 95.0),
        percentile(&ok, 99.0),
        ok.last().copied().unwrap_or(f64::NAN)
    );
    let statuses: Vec<String> = by_status.iter().map(|(s, n)| if *s == 0 { format!("connection failed: {n}") } else { format!("{s}: {n}") }).collect();
    println!("answers by status: {}", statuses.join(", "));
    let batches = after.2.saturating_sub(before.2);
    if batches > 0 {
        println!("batches formed: {batches}, mean size {:.2}", (after.1 - before.1) / batches as f64);
        let mut previous = 0;
        let mut shares = Vec::new();
        for ((bound, total), (_, earlier)) in after.0.iter().zip(before.0.iter().chain(std::iter::repeat(&(String::new(), 0)))) {
            let cumulative = total - earlier;
            if cumulative > previous {
                shares.push(format!("<= {bound}: {}", cumulative - previous));
            }
            previous = cumulative;
        }
        println!("batch sizes: {}", shares.join(", "));
    }
}
