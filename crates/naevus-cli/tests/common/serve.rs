//! A trained, exported model of the fixtures and a `naevus serve` process on a free loopback
//! port, for the service's tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{fixtures, naevus, text};

/// Prepares the ISIC 2017 fixtures at 32 px, trains a two-fold small CNN on them for one
/// epoch and exports it to `dir/model`: a model bundle as a clinic gets it (with its card).
pub fn trained_bundle(dir: &Path, extra_train_args: &[&str]) -> PathBuf {
    let cache = fixture_cache(dir);
    let mut args = vec!["--folds", "2"];
    args.extend_from_slice(extra_train_args);
    let run = fixture_run(dir, &cache, "run", &args);
    let bundle = dir.join("model");
    let out = naevus(&["export", "--run", run.to_str().unwrap(), "--out", bundle.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    bundle
}

/// The ISIC 2017 fixtures (8 images) prepared at 32 px into `dir/cache`.
pub fn fixture_cache(dir: &Path) -> PathBuf {
    let source = fixtures().join("isic2017");
    let cache = dir.join("cache");
    let out = naevus(&[
        "prepare", "--source", "isic2017", "--csv", source.join("labels.csv").to_str().unwrap(), "--images",
        source.join("images").to_str().unwrap(), "--size", "32", "--out", cache.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    cache
}

/// A small CNN trained for one epoch on `cache` into `dir/name`, with `extra` flags.
pub fn fixture_run(dir: &Path, cache: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let run = dir.join(name);
    let mut args = vec!["train", "--data", cache.to_str().unwrap(), "--out", run.to_str().unwrap(), "--batch-size", "4", "--epochs", "1"];
    args.extend_from_slice(extra);
    let out = naevus(&args);
    assert!(out.status.success(), "{}", text(&out));
    run
}

/// Two small CNNs on the fixtures (two folds each, the same seed; 32 px and 24 px input)
/// exported as one ensemble bundle, `dir/ensemble`, their weights 1 and 3.
pub fn trained_ensemble(dir: &Path) -> PathBuf {
    let cache = fixture_cache(dir);
    let alpha = fixture_run(dir, &cache, "alpha", &["--folds", "2"]);
    let beta = fixture_run(dir, &cache, "beta", &["--folds", "2", "--image-size", "24", "--lr", "0.003"]);
    let ensemble = dir.join("ensemble");
    let out = naevus(&[
        "export", "--run", alpha.to_str().unwrap(), "--run", beta.to_str().unwrap(), "--weights", "1,3", "--out", ensemble.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    ensemble
}

/// The bundled sample (all 2,150 ISIC 2017 images, CC0) prepared at 48 px, a small CNN
/// trained for one epoch on its train split (validated on its val split, seed 1), so that
/// its out-of-domain guard has 2,000 training images to be fitted on. Returns the run.
pub fn guarded_run(dir: &Path) -> PathBuf {
    let sample = sample();
    let cache = dir.join("sample-cache");
    let out = naevus(&[
        "prepare", "--source", "isic2017", "--csv", sample.join("labels.csv").to_str().unwrap(), "--images",
        sample.join("images").to_str().unwrap(), "--size", "48", "--out", cache.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let run = dir.join("guarded-run");
    let out = naevus(&[
        "train", "--data", cache.to_str().unwrap(), "--out", run.to_str().unwrap(), "--model", "small-cnn", "--epochs", "1",
        "--batch-size", "32", "--seed", "1",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("out-of-domain guard at the 99th percentile of 2000 training images"), "{}", text(&out));
    run
}

/// The bundled sample's folder (data/sample).
pub fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample")
}

/// Ids of the sample's validation images, in its labels.csv order.
pub fn sample_validation_ids() -> Vec<String> {
    let labels = std::fs::read_to_string(sample().join("labels.csv")).unwrap();
    labels.lines().filter_map(|line| line.split_once(",val,").map(|(id, _)| id.to_string())).collect()
}

/// A running `naevus serve`; killed when dropped.
pub struct Server {
    /// host:port it listens on.
    pub addr: String,
    child: Child,
}

impl Server {
    /// Starts `naevus serve --model MODEL --addr 127.0.0.1:0 EXTRA...` and waits until it
    /// says where it listens and its model is ready.
    pub fn start(model: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(model, extra, &[])
    }

    pub fn start_with_env(model: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut server = Self::spawn(model, extra, env);
        server.wait_until_ready();
        server
    }

    /// Starts the server and waits only until it says where it listens: its model may still
    /// be loading.
    pub fn spawn(model: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_naevus"));
        command.args(["serve", "--model", model.to_str().unwrap(), "--addr", "127.0.0.1:0"]).args(extra);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("naevus serve starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("listening on http://") {
                        break url.trim().trim_end_matches('/').to_string();
                    }
                }
                _ => panic!("naevus serve ended before listening: {:?}", child.wait()),
            }
        };
        // Keep reading stdout so that the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { addr, child }
    }

    /// Waits until /readyz answers 200 (the port opens before the model has loaded). Panics
    /// when the process ends first or two minutes pass.
    pub fn wait_until_ready(&mut self) {
        let started = std::time::Instant::now();
        while super::http::get(&self.addr, "/readyz").status != 200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("naevus serve ended ({status}) before its model was ready");
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(120), "naevus serve was not ready within 120 s");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the process to end; returns its exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
