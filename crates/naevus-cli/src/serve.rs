//! `naevus serve`: the model behind an HTTP API and a web page (crate naevus-serve).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use naevus_data::DecodeLimits;
use naevus_run::Checkpoint;
use naevus_serve::{Batching, Limits, OperatingPointChoice, ServeOptions};

use crate::bounded::whole;
use crate::run_args::WeightsArgs;

/// Serve a trained run or exported model over HTTP, with a web page at /.
///
/// POST /v1/predict takes one image (a multipart form with an `image` part and optional age,
/// sex and site, or the image as the body) and answers JSON: the melanoma probability
/// (calibrated when the model has a calibration), the decision at the operating point, and
/// with ?explain=gradcam++ an overlay. POST /v1/predict/batch takes several; GET /v1/model
/// gives the model card, GET /healthz (503 once batches keep failing), GET /readyz (503 while
/// the model loads or the service is at capacity), GET /openapi.json the API and GET /metrics
/// (Prometheus) the service's state. The port opens before the model has loaded: until /readyz
/// says ready, other requests get 503 with Retry-After. An ensemble bundle (`naevus export`
/// of several runs) is served as one model, each answer with its members' probabilities.
/// Concurrent images are batched (up to --max-batch, waiting at most --batch-wait-ms); when
/// --queue images wait already, requests get 503 with Retry-After. A client gets
/// --read-timeout-secs to send its request. SIGTERM or Ctrl-C stops after the requests in
/// flight are answered; connections still open after the read timeout and 5 s are dropped.
#[derive(clap::Args)]
pub struct Args {
    /// Run directory (from `naevus train`) or exported model (from `naevus export`, one run
    /// or an ensemble, served as one model).
    #[arg(long)]
    model: PathBuf,
    /// Address to listen on (port 0: any free port; the one taken is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Allow an address other than loopback (anyone who can reach it can use the model).
    #[arg(long)]
    allow_remote: bool,
    /// Let pages of this one other origin call the service from a browser (CORS), e.g.
    /// https://clinic.example; without it, only the service's own page can.
    #[arg(long)]
    cors_origin: Option<String>,
    /// File holding an access token: /v1 and /metrics then need `Authorization: Bearer TOKEN`.
    /// NAEVUS_TOKEN in the environment does the same.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Where decisions are made: sensitivity-90 or sensitivity-95 (the threshold that reached
    /// it on the out-of-fold predictions, from the model card), or threshold-T.
    #[arg(long, default_value = "sensitivity-90")]
    operating_point: OperatingPointChoice,
    #[command(flatten)]
    weights: WeightsArgs,
    /// Most images per forward pass (1 to 256).
    #[arg(long, default_value_t = naevus_serve::DEFAULT_BATCHING.max_batch as u64, value_parser = whole(1u64, 256))]
    max_batch: u64,
    /// Longest an image waits for others to share its batch, in milliseconds (0 to 1000).
    #[arg(long, default_value_t = naevus_serve::DEFAULT_BATCHING.max_wait.as_millis() as u64, value_parser = whole(0u64, 1000))]
    batch_wait_ms: u64,
    /// Most images waiting to be scored; beyond it requests get 503 (1 to 4096).
    #[arg(long, default_value_t = naevus_serve::DEFAULT_BATCHING.queue as u64, value_parser = whole(1u64, 4096))]
    queue: u64,
    /// Largest request body, in megabytes (1 to 1024).
    #[arg(long, default_value_t = 32, value_parser = whole(1u64, 1024))]
    max_body_mb: u64,
    /// Largest image, in pixels (width x height), checked before it is decoded (1 to
    /// 1,000,000,000).
    #[arg(long, default_value_t = DecodeLimits::DEFAULT_MAX_PIXELS, value_parser = whole(1, DecodeLimits::HIGHEST_MAX_PIXELS))]
    max_pixels: u64,
    /// Most images in one batch request (1 to 1024).
    #[arg(long, default_value_t = 64, value_parser = whole(1u64, 1024))]
    max_images: u64,
    /// Longest a client may take to send a request's headers, and then its body, in seconds
    /// (1 to 3600); an idle keep-alive connection is closed after it too. A client slower
    /// than this gets 408, and at shutdown a request still being sent is dropped after it.
    #[arg(long, default_value_t = 30, value_parser = whole(1u64, 3600))]
    read_timeout_secs: u64,
}

pub fn run(args: Args) -> Result<()> {
    let checkpoint = args.weights.checkpoint;
    if checkpoint == Checkpoint::Final {
        bail!("serve takes the best, best_primary or best_ema checkpoint");
    }
    let token = match &args.token_file {
        // A file ends with a newline more often than not; that is not part of the token.
        Some(path) => Some(std::fs::read_to_string(path).with_context(|| format!("reading the token file {}", path.display()))?.trim().to_string()),
        None => match std::env::var_os("NAEVUS_TOKEN") {
            None => None,
            Some(value) => {
                let token = value.to_str().context("NAEVUS_TOKEN is not valid UTF-8; use visible ASCII characters, e.g. `openssl rand -hex 32`")?.trim();
                if token.is_empty() {
                    bail!("NAEVUS_TOKEN is set but empty: unset it to serve without an access token, or set a token of at least {} characters", naevus_serve::token::MIN_TOKEN_CHARS);
                }
                Some(token.to_string())
            }
        },
    };
    // The parser bounds every value, so none of these conversions can overflow.
    let (max_batch, queue) = (args.max_batch as usize, args.queue as usize);
    let batching = Batching { max_batch, max_wait: Duration::from_millis(args.batch_wait_ms), queue };
    let limits = Limits {
        max_body_bytes: args.max_body_mb as usize * (1 << 20),
        max_pixels: args.max_pixels,
        max_images_per_request: args.max_images as usize,
        // Enough for a full queue and a batch being scored, with room for requests still
        // being read; beyond it a request is refused before its body is read.
        max_in_flight: 2 * queue + max_batch,
        read_timeout_secs: args.read_timeout_secs,
    };
    naevus_serve::serve(ServeOptions {
        model: args.model,
        addr: args.addr,
        allow_remote: args.allow_remote,
        token,
        checkpoint,
        device: args.weights.device.device,
        operating_point: args.operating_point,
        batching,
        limits,
        cors_origin: args.cors_origin,
    })
}
