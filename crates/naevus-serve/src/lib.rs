//! `naevus serve`: a trained run or exported model behind an HTTP API and a web page, in one
//! process with the model loaded once.
//!
//! Requests are decoded on the HTTP threads (a bounded number at a time), then queued for the
//! one inference thread, which batches what has arrived within a short wait ([`batcher`]). A
//! full queue answers 503 at once: memory is bounded by the queue, the in-flight limit and the
//! upload limit, never by the load.

pub mod api;
pub mod batcher;
pub mod connections;
pub mod cors;
mod loading;
pub mod metrics;
pub mod model;
pub mod token;
mod uploads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use naevus_run::Checkpoint;

pub use batcher::Batching;
pub use model::{OperatingPointChoice, ServedModel};

/// What requests may cost.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Limits {
    /// Largest request body, in bytes (an upload, or a batch of them).
    pub max_body_bytes: usize,
    /// Largest image, in pixels (width x height), checked from its header before decoding.
    pub max_pixels: u64,
    /// Most images in one batch request.
    pub max_images_per_request: usize,
    /// Requests being read, decoded or scored at once; more get 503.
    pub max_in_flight: usize,
    /// Longest a client may take to send a request's headers, and then its body (each);
    /// also how long an idle keep-alive connection stays open.
    pub read_timeout_secs: u64,
}

/// Everything `naevus serve` is told.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// A run directory (from `naevus train`) or an exported model (from `naevus export`).
    pub model: PathBuf,
    pub addr: SocketAddr,
    /// Listening on an address other than loopback must be asked for.
    pub allow_remote: bool,
    /// When set, every /v1 and /metrics request must carry `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    pub checkpoint: Checkpoint,
    pub device: Option<String>,
    pub operating_point: OperatingPointChoice,
    pub batching: Batching,
    pub limits: Limits,
    /// The one other origin whose pages may call the service (CORS); None: same origin only.
    pub cors_origin: Option<String>,
}

/// Listens, loads the model (answering /healthz and /readyz meanwhile, see [`loading`]), and
/// serves until SIGTERM or Ctrl-C, then finishes the requests in flight and returns. A model
/// that cannot be loaded ends it with the reason.
pub fn serve(options: ServeOptions) -> Result<()> {
    if !options.addr.ip().is_loopback() && !options.allow_remote {
        bail!(
            "{} is not a loopback address: anyone who can reach it could send images to this model; \
             pass --allow-remote to listen there (and consider --token-file)",
            options.addr
        );
    }
    if let Some(token) = &options.token {
        token::check_token(token).map_err(anyhow::Error::msg)?;
    }
    if let Some(origin) = &options.cors_origin {
        cors::check_origin(origin).map_err(anyhow::Error::msg)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the HTTP runtime")?;
    let result = runtime.block_on(run(options));
    // Decodes still running for clients that went away (or a load cut short by a stop
    // signal) are not waited for long.
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

async fn run(options: ServeOptions) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(options.addr).await.with_context(|| format!("listening on {}", options.addr))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() && options.token.is_none() {
        eprintln!("warning: listening on {addr} without an access token: anyone who can reach it can use the model");
    }
    // Tests and scripts read this line to find the port; /readyz says when the model answers.
    println!("listening on http://{addr}");
    let read_timeout = Duration::from_secs(options.limits.read_timeout_secs);
    // Requests under way get the time a client may take to send one, and a few seconds to
    // be scored; connections still open then are dropped.
    let grace = read_timeout + SHUTDOWN_SCORING_GRACE;

    // While the model loads, the port answers that it is loading (see [`loading`]).
    let (stop_signal, mut stopped_by_signal) = tokio::sync::oneshot::channel::<()>();
    let signals = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_signal.send(());
    });
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel::<()>();
    let loading_app = loading::router(options.model.display().to_string());
    let load_options = options.clone();
    let loading = tokio::task::spawn_blocking(move || {
        loading::test_delay();
        let model = ServedModel::load(&load_options.model, load_options.checkpoint, load_options.device.as_deref(), &load_options.operating_point);
        let _ = loaded_tx.send(());
        model
    });
    let signalled = std::sync::atomic::AtomicBool::new(false);
    let stop_loading = async {
        tokio::select! {
            _ = loaded_rx => {}
            _ = &mut stopped_by_signal => signalled.store(true, std::sync::atomic::Ordering::Relaxed),
        }
    };
    connections::serve_one_request_each(&listener, loading_app, read_timeout, stop_loading).await;
    if signalled.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("stopped while loading the model");
        return Ok(());
    }
    let model = loading.await.context("loading the model")??;

    let metrics = Arc::new(metrics::Metrics::default());
    let description = model.describe();
    let loaded = model.model.clone();
    let (batcher, worker) = batcher::start(model, options.batching, metrics.clone()).context("starting the inference thread")?;
    let state = api::AppState::new(description, loaded, batcher, metrics, options.token.clone(), options.limits, options.cors_origin.clone());
    let app = api::router(state.clone());
    eprintln!(
        "serving {} ({}); batches of up to {} images, {} ms wait; queue of {}; Ctrl-C or SIGTERM stops",
        state.model.name,
        match &state.model.members {
            Some(members) => members.iter().map(|m| format!("{}: {} fold(s)", m.name, m.folds)).collect::<Vec<_>>().join(", "),
            None => format!("{} fold(s)", state.model.folds.len()),
        },
        options.batching.max_batch,
        options.batching.max_wait.as_millis(),
        options.batching.queue
    );
    let stop = async move {
        let _ = stopped_by_signal.await;
    };
    let dropped = connections::serve_connections(&listener, app, read_timeout, grace, stop).await;
    drop(listener);
    signals.abort();
    if dropped > 0 {
        eprintln!("dropped {dropped} connection(s) still open {} s after the stop signal", grace.as_secs());
    }

    // The router and its state are gone: the queue's last sender goes with this, and the
    // inference thread ends once it has answered what it holds.
    let served = state.metrics.requests_served();
    drop(state);
    let _ = tokio::task::spawn_blocking(move || worker.join()).await;
    eprintln!("stopped after {served} request(s)");
    Ok(())
}

/// Time for the requests being scored to be answered at shutdown, beyond the read timeout.
const SHUTDOWN_SCORING_GRACE: Duration = Duration::from_secs(5);

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    eprintln!("stopping: finishing the requests in flight");
}

/// Default dynamic-batching settings.
pub const DEFAULT_BATCHING: Batching = Batching { max_batch: 16, max_wait: Duration::from_millis(5), queue: 64 };
