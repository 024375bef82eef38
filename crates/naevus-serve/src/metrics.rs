//! The service's counters, and GET /metrics in Prometheus's text format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Upper bounds of the request-latency buckets, in seconds.
const LATENCY_BOUNDS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Upper bounds of the batch-size buckets, in images.
const BATCH_BOUNDS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// Counts of observations at or below each bound, their sum and their number.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative); the last one is above every bound.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, counts: vec![0; bounds.len() + 1], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, value: f64) {
        let bucket = self.bounds.iter().position(|&b| value <= b).unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Debug)]
struct Counters {
    /// Requests by (route, status).
    requests: BTreeMap<(String, u16), u64>,
    /// Latency of the prediction routes, by route.
    latency: BTreeMap<String, Histogram>,
    batch_sizes: Histogram,
    images_scored: u64,
}

/// Everything /metrics reports; shared by the HTTP threads and the inference thread.
#[derive(Debug)]
pub struct Metrics {
    counters: Mutex<Counters>,
    /// Images waiting in the queue for the inference thread.
    pub queue_depth: AtomicUsize,
    /// Batches that failed in a row, up to the last one (0: the last batch was scored).
    pub failed_batches_in_a_row: AtomicUsize,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            counters: Mutex::new(Counters {
                requests: BTreeMap::new(),
                latency: BTreeMap::new(),
                batch_sizes: Histogram::new(&BATCH_BOUNDS),
                images_scored: 0,
            }),
            queue_depth: AtomicUsize::new(0),
            failed_batches_in_a_row: AtomicUsize::new(0),
        }
    }
}

impl Metrics {
    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        // A panic elsewhere while holding the lock leaves counts that are still counts.
        self.counters.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One answered request (status 499 when its client went away first, as nginx counts
    /// them); the latency of prediction routes goes into their histogram.
    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
        let mut counters = self.counters();
        *counters.requests.entry((route.to_string(), status)).or_default() += 1;
        if route.starts_with("/v1/predict") {
            counters.latency.entry(route.to_string()).or_insert_with(|| Histogram::new(&LATENCY_BOUNDS)).observe(elapsed.as_secs_f64());
        }
    }

    /// One batch run by the inference thread.
    pub fn batch(&self, size: usize) {
        let mut counters = self.counters();
        counters.batch_sizes.observe(size as f64);
        counters.images_scored += size as u64;
    }

    /// Requests answered so far, whatever their status.
    pub fn requests_served(&self) -> u64 {
        self.counters().requests.values().sum()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let counters = self.counters();
        let mut out = String::new();
        out += "# HELP naevus_requests_total HTTP requests answered, by route and status (499: the client went away first).\n# TYPE naevus_requests_total counter\n";
        for ((route, status), count) in &counters.requests {
            let _ = writeln!(out, "naevus_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}");
        }
        out += "# HELP naevus_request_duration_seconds Time from a prediction request's arrival to its answer.\n";
        out += "# TYPE naevus_request_duration_seconds histogram\n";
        for (route, histogram) in &counters.latency {
            histogram.render(&mut out, "naevus_request_duration_seconds", &format!("route=\"{route}\""));
        }
        out += "# HELP naevus_queue_depth Images waiting for the inference thread.\n# TYPE naevus_queue_depth gauge\n";
        let _ = writeln!(out, "naevus_queue_depth {}", self.queue_depth.load(Ordering::Relaxed));
        out += "# HELP naevus_batch_size Images per batch run by the inference thread.\n# TYPE naevus_batch_size histogram\n";
        counters.batch_sizes.render(&mut out, "naevus_batch_size", "");
        out += "# HELP naevus_images_scored_total Images scored.\n# TYPE naevus_images_scored_total counter\n";
        let _ = writeln!(out, "naevus_images_scored_total {}", counters.images_scored);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counts_add_up() {
        let metrics = Metrics::default();
        for size in [1, 1, 3, 16, 200] {
            metrics.batch(size);
        }
        metrics.request("/v1/predict", 200, Duration::from_millis(7));
        metrics.request("/v1/predict", 503, Duration::from_millis(1));
        metrics.request("/healthz", 200, Duration::from_millis(1));
        let text = metrics.render();
        assert!(text.contains("naevus_batch_size_bucket{le=\"1\"} 2\n"), "{text}");
        assert!(text.contains("naevus_batch_size_bucket{le=\"4\"} 3\n"), "{text}");
        assert!(text.contains("naevus_batch_size_bucket{le=\"16\"} 4\n"), "{text}");
        assert!(text.contains("naevus_batch_size_bucket{le=\"+Inf\"} 5\n"), "{text}");
        assert!(text.contains("naevus_batch_size_sum 221\n"), "{text}");
        assert!(text.contains("naevus_images_scored_total 221\n"), "{text}");
        assert!(text.contains("naevus_requests_total{route=\"/v1/predict\",status=\"503\"} 1\n"), "{text}");
        assert!(text.contains("naevus_request_duration_seconds_bucket{route=\"/v1/predict\",le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("naevus_request_duration_seconds_count{route=\"/v1/predict\"} 2\n"), "{text}");
        assert!(!text.contains("naevus_request_duration_seconds_count{route=\"/healthz\"}"), "{text}");
        assert_eq!(metrics.requests_served(), 3);
    }
}
