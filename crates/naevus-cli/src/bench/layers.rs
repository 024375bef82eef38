//! `naevus bench --layers`: every distinct layer shape of a model at the bench's size and
//! training batch, each pass (forward, input gradient, weight gradient) timed alone through
//! the flex kernels a training step uses, beside the machine's f32 GEMM peak and the whole
//! training step. bench/pytorch_reference.py --layers times the same passes in PyTorch.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::prelude::*;
use naevus_models::{LayerShape, Pass, SquareGemm, record_layers};
use serde::Serialize;

use super::{Timing, random_images, train_row};

/// What --out receives.
#[derive(Serialize)]
pub struct LayerMap {
    threads: usize,
    gemm_peak_gflops: f64,
    steps: usize,
    models: Vec<ModelStep>,
    layers: Vec<LayerRow>,
}

#[derive(Serialize)]
struct ModelStep {
    model: String,
    size: usize,
    batch: usize,
    train_step_ms: f64,
}

#[derive(Serialize)]
struct LayerRow {
    model: String,
    layer: String,
    kind: &'static str,
    input: [usize; 4],
    weight: Option<[usize; 4]>,
    stride: Option<[usize; 2]>,
    padding: Option<[(usize, usize); 2]>,
    groups: Option<usize>,
    /// Occurrences of this shape in one forward pass.
    count: usize,
    /// Per pass, GFLOP (each gradient of a convolution costs the forward's).
    gflop: f64,
    forward_ms: f64,
    input_grad_ms: Option<f64>,
    weight_grad_ms: Option<f64>,
}

pub fn run(models: &[String], size: usize, batch: usize, timing: Timing) -> Result<LayerMap> {
    let mut gemm = SquareGemm::new(2048);
    let gemm_seconds = median_seconds(timing, || gemm.run());
    let gemm_peak_gflops = gemm.flops() / gemm_seconds / 1e9;
    let threads = rayon::current_num_threads();
    println!("f32 GEMM peak (2048^3, {threads} threads): {gemm_peak_gflops:.0} GFLOP/s");
    let mut map = LayerMap { threads, gemm_peak_gflops, steps: timing.steps, models: Vec::new(), layers: Vec::new() };
    let device = Device::flex();
    for name in models {
        let spec = naevus_models::spec(name)?;
        let model = spec.build(1, &device);
        let (_, recorded) = record_layers(|| model.forward(random_images(batch, size, &device)));
        if recorded.is_empty() {
            bail!("{name} ran no layer through the flex kernels");
        }
        let step = train_row(spec, &device, "flex", size, batch, timing)?;
        let train_step_ms = 1000.0 * batch as f64 / step.images_per_second;
        println!("\n{name} {size}px batch {batch}: training step {train_step_ms:.0} ms");
        println!("| layer | count | fwd ms | dx ms | dw ms | fwd GFLOP/s | dx GFLOP/s | dw GFLOP/s |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        let mut layers_ms = 0.0;
        for (shape, count) in distinct(recorded) {
            let row = time_layer(name, &shape, count, timing);
            let passes = [Some(row.forward_ms), row.input_grad_ms, row.weight_grad_ms];
            layers_ms += count as f64 * passes.iter().flatten().sum::<f64>();
            let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
            let rate = |v: Option<f64>| match (v, row.gflop > 0.0) {
                (Some(v), true) => format!("{:.0}", row.gflop / (v / 1000.0)),
                _ => "-".into(),
            };
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                row.layer,
                count,
                ms(passes[0]),
                ms(passes[1]),
                ms(passes[2]),
                rate(passes[0]),
                rate(passes[1]),
                rate(passes[2])
            );
            map.layers.push(row);
        }
        println!("layers {layers_ms:.0} ms of the {train_step_ms:.0} ms step; the rest (elementwise ops, pooling, head, loss, optimizer) {:.0} ms", train_step_ms - layers_ms);
        map.models.push(ModelStep { model: name.clone(), size, batch, train_step_ms });
    }
    Ok(map)
}

/// Each shape once, in order of first use, with how often it ran.
fn distinct(recorded: Vec<LayerShape>) -> Vec<(LayerShape, usize)> {
    let mut shapes: Vec<(LayerShape, usize)> = Vec::new();
    for shape in recorded {
        match shapes.iter_mut().find(|(seen, _)| *seen == shape) {
            Some((_, count)) => *count += 1,
            None => shapes.push((shape, 1)),
        }
    }
    shapes
}

fn time_layer(model: &str, shape: &LayerShape, count: usize, timing: Timing) -> LayerRow {
    let operands = shape.operands();
    let time = |pass: Pass| shape.has(pass).then(|| 1000.0 * median_seconds(timing, || { std::hint::black_box(operands.run(pass)); }));
    let (kind, weight, stride, padding, groups) = match shape {
        LayerShape::Conv { weight, stride, padding, groups, .. } => {
            (if *groups > 1 { "depthwise" } else { "conv" }, Some(*weight), Some(*stride), Some(*padding), Some(*groups))
        }
        LayerShape::BatchNorm { .. } => ("batch_norm", None, None, None, None),
    };
    let input = match shape {
        LayerShape::Conv { input, .. } | LayerShape::BatchNorm { input } => *input,
    };
    LayerRow {
        model: model.to_string(),
        layer: shape.describe(),
        kind,
        input,
        weight,
        stride,
        padding,
        groups,
        count,
        gflop: shape.flops() / 1e9,
        forward_ms: time(Pass::Forward).unwrap_or_default(),
        input_grad_ms: time(Pass::InputGradient),
        weight_grad_ms: time(Pass::WeightGradient),
    }
}

/// Median seconds of `timing.steps` calls after `timing.warmup` untimed ones.
fn median_seconds(timing: Timing, mut f: impl FnMut()) -> f64 {
    for _ in 0..timing.warmup {
        f();
    }
    let mut seconds: Vec<f64> = (0..timing.steps)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed().as_secs_f64()
        })
        .collect();
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}
