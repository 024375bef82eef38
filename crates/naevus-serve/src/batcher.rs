//! Dynamic batching: one inference thread owns the model and scores queued images in
//! batches. It takes the first image waiting, then whatever else arrives until the batch is
//! full or the first image has waited `max_wait`, so that under load many images share one
//! forward pass and alone an image waits at most `max_wait`. The queue is bounded: when it
//! is full, `submit` fails at once and the caller answers 503.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use naevus_engine::ModelInput;
use naevus_engine::explain::Method;
use tokio::sync::oneshot;

use crate::metrics::Metrics;
use crate::model::{Explained, Scores, ServedModel};

/// How images are batched.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Most images per forward pass.
    pub max_batch: usize,
    /// Longest the first image of a batch waits for others.
    pub max_wait: Duration,
    /// Most images waiting; more are refused (503).
    pub queue: usize,
}

/// One image to score.
pub struct Job {
    /// The image (and metadata features) as every member of the model takes it.
    pub input: ModelInput,
    pub explain: Option<Method>,
    pub reply: oneshot::Sender<Result<Scored, String>>,
    pub enqueued: Instant,
}

/// What the inference thread answers for one image.
#[derive(Debug)]
pub struct Scored {
    pub scores: Scores,
    /// Images in the batch it was scored in.
    pub batch_size: usize,
    /// From entering the queue to its batch starting.
    pub queued: Duration,
    /// The batch's forward pass.
    pub inference: Duration,
    pub explanation: Option<(Explained, Duration)>,
}

/// The queue is full.
#[derive(Debug)]
pub struct Overloaded;

/// The sending end of the queue.
#[derive(Clone)]
pub struct Batcher {
    sender: SyncSender<Job>,
    metrics: Arc<Metrics>,
    capacity: usize,
}

impl Batcher {
    /// Most images the queue holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Queues an image; the receiver gets its scores. Fails at once when the queue is full.
    pub fn submit(&self, input: ModelInput, explain: Option<Method>) -> Result<oneshot::Receiver<Result<Scored, String>>, Overloaded> {
        let (reply, receiver) = oneshot::channel();
        let job = Job { input, explain, reply, enqueued: Instant::now() };
        // Counted before sending: the inference thread may take the job at once.
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        match self.sender.try_send(job) {
            Ok(()) => Ok(receiver),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                Err(Overloaded)
            }
        }
    }
}

/// Starts the inference thread with `model`; it ends when every [`Batcher`] is dropped and
/// the queue is empty.
pub fn start(model: ServedModel, batching: Batching, metrics: Arc<Metrics>) -> std::io::Result<(Batcher, JoinHandle<()>)> {
    let capacity = batching.queue.max(1);
    let (sender, receiver) = sync_channel(capacity);
    let worker_metrics = metrics.clone();
    let worker = std::thread::Builder::new()
        .name("naevus-inference".into())
        .spawn(move || {
            while let Some(batch) = collect_batch(&receiver, batching.max_batch.max(1), batching.max_wait) {
                worker_metrics.queue_depth.fetch_sub(batch.len(), Ordering::Relaxed);
                score_batch(&model, batch, &worker_metrics);
            }
        })
        ?;
    Ok((Batcher { sender, metrics, capacity }, worker))
}

/// The next batch: the first job waiting (None when the queue is closed and empty), then
/// whatever arrives until `max_batch` jobs or until the first has waited `max_wait`.
fn collect_batch(receiver: &Receiver<Job>, max_batch: usize, max_wait: Duration) -> Option<Vec<Job>> {
    let first = receiver.recv().ok()?;
    let deadline = first.enqueued + max_wait;
    let mut batch = vec![first];
    while batch.len() < max_batch {
        // Jobs already queued join at once, even past the deadline.
        if let Ok(job) = receiver.try_recv() {
            batch.push(job);
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match receiver.recv_timeout(left) {
            Ok(job) => batch.push(job),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    Some(batch)
}

/// Scores a batch in one forward pass, explains the images that asked for it, and answers
/// each job. A failure (or a panic inside the backend) answers every job of the batch with
/// the error, and the thread goes on with the next batch.
fn score_batch(model: &ServedModel, batch: Vec<Job>, metrics: &Metrics) {
    // Images whose clients went away are not scored.
    let batch: Vec<Job> = batch.into_iter().filter(|job| !job.reply.is_closed()).collect();
    if batch.is_empty() {
        return;
    }
    metrics.batch(batch.len());
    let started = Instant::now();
    let inputs: Vec<ModelInput> = batch.iter().map(|job| job.input.clone()).collect();
    let scored = std::panic::catch_unwind(AssertUnwindSafe(|| model.score(&inputs)));
    let inference = started.elapsed();
    let scores = match scored {
        Ok(Ok(scores)) => scores,
        Ok(Err(error)) => return answer_all(batch, &format!("{error:#}"), metrics),
        Err(_) => return answer_all(batch, "the model failed on this batch (a panic in the backend); see the service's log", metrics),
    };
    metrics.failed_batches_in_a_row.store(0, Ordering::Relaxed);
    let size = batch.len();
    for (job, scores) in batch.into_iter().zip(scores) {
        let explanation = match job.explain {
            None => None,
            Some(method) => {
                let start = Instant::now();
                let explained = std::panic::catch_unwind(AssertUnwindSafe(|| model.explain(&job.input, method)));
                match explained {
                    Ok(Ok(explained)) => Some((explained, start.elapsed())),
                    Ok(Err(error)) => {
                        let _ = job.reply.send(Err(format!("explaining the image: {error:#}")));
                        continue;
                    }
                    Err(_) => {
                        let _ = job.reply.send(Err("explaining the image failed (a panic in the backend)".into()));
                        continue;
                    }
                }
            }
        };
        let queued = started.saturating_duration_since(job.enqueued);
        // A client that went away no longer waits for its answer.
        let _ = job.reply.send(Ok(Scored { scores, batch_size: size, queued, inference, explanation }));
    }
}

fn answer_all(batch: Vec<Job>, error: &str, metrics: &Metrics) {
    metrics.failed_batches_in_a_row.fetch_add(1, Ordering::Relaxed);
    eprintln!("error: scoring a batch of {}: {error}", batch.len());
    for job in batch {
        let _ = job.reply.send(Err(error.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> (Job, oneshot::Receiver<Result<Scored, String>>) {
        let (reply, receiver) = oneshot::channel();
        (Job { input: ModelInput { pixels: Vec::new(), metadata: Vec::new() }, explain: None, reply, enqueued: Instant::now() }, receiver)
    }

    #[test]
    fn queued_jobs_form_one_batch_up_to_its_size() {
        let (sender, receiver) = sync_channel(16);
        let mut replies = Vec::new();
        for _ in 0..10 {
            let (job, reply) = job();
            sender.send(job).unwrap();
            replies.push(reply);
        }
        assert_eq!(collect_batch(&receiver, 4, Duration::from_millis(50)).unwrap().len(), 4);
        assert_eq!(collect_batch(&receiver, 4, Duration::from_millis(50)).unwrap().len(), 4);
        assert_eq!(collect_batch(&receiver, 4, Duration::ZERO).unwrap().len(), 2);
        drop(sender);
        assert!(collect_batch(&receiver, 4, Duration::ZERO).is_none());
    }

    #[test]
    fn a_lone_job_waits_for_company_at_most_max_wait() {
        let (sender, receiver) = sync_channel(16);
        let (first, _reply) = job();
        sender.send(first).unwrap();
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let (second, reply) = job();
            sender.send(second).unwrap();
            std::thread::sleep(Duration::from_millis(500));
            reply
        });
        let start = Instant::now();
        // The second job arrives within the wait and joins; the batch then waits out the rest.
        let batch = collect_batch(&receiver, 8, Duration::from_millis(200)).unwrap();
        assert_eq!(batch.len(), 2);
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(150) && waited < Duration::from_millis(450), "{waited:?}");
        drop(late);
    }
}
