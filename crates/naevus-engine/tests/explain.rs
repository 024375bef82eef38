//! Explanations: every registered model gives Grad-CAM and Grad-CAM++ maps (and attention
//! maps where it has them) of the input's size in [0, 1], and Grad-CAM on a network trained
//! to detect a bright square points at the square.

use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use naevus_engine::explain::{Method, explain};
use naevus_engine::loss::{LossKind, Target, loss};
use naevus_models::{MODELS, spec};

/// Small deterministic pseudo-random numbers (xorshift64*), enough for test images.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
    }

    fn below(&mut self, n: usize) -> usize {
        ((self.next() * n as f32) as usize).min(n - 1)
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn every_model_gives_maps_of_the_image_size_in_zero_to_one() {
    let device = Device::flex();
    let mut noise = Noise(11);
    let (batch, side) = (2, 64);
    let pixels: Vec<f32> = (0..batch * 3 * side * side).map(|_| noise.next() * 2.0 - 1.0).collect();
    let images = Tensor::<4>::from_data(TensorData::new(pixels, [batch, 3, side, side]), &device);

    for model in MODELS {
        device.seed(3);
        let network = model.build(1, &device).valid();
        let plain = values(Target::binary(LossKind::Bce).melanoma_probability(network.forward(images.clone()).logits));
        let mut methods = vec![Method::GradCam, Method::GradCamPlusPlus];
        if !model.attention_layers().is_empty() {
            methods.push(Method::Attention);
        }
        for method in methods {
            let explanations = explain(&network, model, Target::binary(LossKind::Bce), None, images.clone(), method, None).unwrap();
            assert_eq!(explanations.len(), batch, "{} {method}", model.name);
            for (explanation, p) in explanations.iter().zip(&plain) {
                // Cutting the network at a layer changes nothing in what it computes.
                assert!((explanation.probability - p).abs() < 1e-5, "{} {method}: {} vs {p}", model.name, explanation.probability);
                let expected_maps = if method == Method::Attention { model.attention_layers().len() } else { 1 };
                assert_eq!(explanation.maps.len(), expected_maps, "{} {method}", model.name);
                for map in &explanation.maps {
                    assert_eq!((map.height, map.width, map.values.len()), (side, side, side * side), "{} {method}", model.name);
                    assert!(map.values.iter().all(|v| (0.0..=1.0).contains(v)), "{} {method} {}", model.name, map.layer);
                }
            }
        }
    }
}

#[test]
fn every_named_layer_can_be_explained_and_others_are_refused() {
    let device = Device::flex();
    let images = Tensor::<4>::ones([1, 3, 64, 64], &device);
    for name in ["small-cnn", "resnet18", "mobilenet-v2", "attn-vgg16-bn", "chipnet"] {
        let model = spec(name).unwrap();
        let network = model.build(2, &device).valid();
        for layer in model.layer_names() {
            let explanations = explain(&network, model, Target::binary(LossKind::CrossEntropy), None, images.clone(), Method::GradCam, Some(layer)).unwrap();
            assert_eq!(explanations[0].maps[0].layer, layer);
            assert_eq!(explanations[0].maps[0].values.len(), 64 * 64);
        }
        let error = explain(&network, model, Target::binary(LossKind::CrossEntropy), None, images.clone(), Method::GradCam, Some("conv9")).unwrap_err();
        assert!(error.to_string().contains(&model.layer_names().join(", ")), "{error}");
    }
    let model = spec("resnet18").unwrap();
    let network = model.build(1, &device).valid();
    let error = explain(&network, model, Target::binary(LossKind::Bce), None, images, Method::Attention, None).unwrap_err().to_string();
    assert!(error.contains("attn-vgg16-bn") && error.contains("chipnet") && error.contains("gradcam"), "{error}");
}

/// Synthetic images with or without a bright square.
struct SquareImages {
    /// Normalised, [count, 3, side, side].
    pixels: Vec<f32>,
    /// 1 where the image has a square.
    labels: Vec<u8>,
    /// The square's top-left corner (row, column), if any.
    corners: Vec<Option<(usize, usize)>>,
}

/// `count` images of `side` px: grey noise, and for the positives (every other image) a
/// bright `square`-pixel square at a random place.
fn square_images(count: usize, side: usize, square: usize, noise: &mut Noise) -> SquareImages {
    let mut pixels = Vec::with_capacity(count * 3 * side * side);
    let (mut labels, mut corners) = (Vec::new(), Vec::new());
    for i in 0..count {
        let corner = (i % 2 == 1).then(|| (noise.below(side - square + 1), noise.below(side - square + 1)));
        let mut image: Vec<f32> = (0..side * side).map(|_| noise.next() * 0.8 - 0.4).collect();
        if let Some((top, left)) = corner {
            for y in top..top + square {
                for x in left..left + square {
                    image[y * side + x] = 1.5;
                }
            }
        }
        for _ in 0..3 {
            pixels.extend_from_slice(&image);
        }
        labels.push(u8::from(corner.is_some()));
        corners.push(corner);
    }
    SquareImages { pixels, labels, corners }
}

#[test]
fn grad_cam_points_at_the_bright_square_a_trained_network_detects() {
    let (side, square, train_count, batch) = (48, 8, 192, 16);
    let mut noise = Noise(2024);
    let SquareImages { pixels, labels, .. } = square_images(train_count, side, square, &mut noise);
    let device = Device::flex();
    let train_device = device.clone().autodiff();
    train_device.seed(5);
    let model = spec("small-cnn").unwrap();
    let mut network = model.build(1, &train_device);
    let mut optimizer = AdamConfig::new().init();
    let image_len = 3 * side * side;
    for _epoch in 0..6 {
        for start in (0..train_count).step_by(batch) {
            let images = Tensor::<4>::from_data(
                TensorData::new(pixels[start * image_len..(start + batch) * image_len].to_vec(), [batch, 3, side, side]),
                &train_device,
            );
            let value = loss(LossKind::Bce, network.forward(images).logits, &labels[start..start + batch], 0.25, 2.0);
            let grads = GradientsParams::from_grads(value.backward(), &network);
            network = optimizer.step(2e-3, network, grads);
        }
    }

    let test_count = 40;
    let SquareImages { pixels, labels, corners } = square_images(test_count, side, square, &mut noise);
    let images = Tensor::<4>::from_data(TensorData::new(pixels, [test_count, 3, side, side]), &device);
    let explanations = explain(&network, model, Target::binary(LossKind::Bce), None, images, Method::GradCam, None).unwrap();

    let correct = explanations.iter().zip(&labels).filter(|(e, label)| (e.probability > 0.5) == (**label == 1)).count();
    assert!(correct >= test_count * 9 / 10, "the network did not learn the task: {correct}/{test_count} correct");
    // The peak of each positive's map lies on its square or within 4 px of it (half a cell
    // of block3's stride-8 grid).
    let margin = 4;
    let (mut hits, mut positives) = (0, 0);
    for (explanation, corner) in explanations.iter().zip(&corners) {
        let Some((top, left)) = *corner else { continue };
        positives += 1;
        let map = &explanation.maps[0].values;
        let peak = (0..map.len()).max_by(|&a, &b| map[a].total_cmp(&map[b])).unwrap();
        let (y, x) = (peak / side, peak % side);
        let near = |p: usize, start: usize| p + margin >= start && p < start + square + margin;
        if near(y, top) && near(x, left) {
            hits += 1;
        }
    }
    assert!(hits * 10 >= positives * 8, "Grad-CAM peaked on the square in only {hits} of {positives} positive images");
    eprintln!("accuracy {correct}/{test_count}; Grad-CAM peak on the square in {hits}/{positives} positives");
}

/// The time to explain one 256 px image with Grad-CAM on EfficientNet-Lite0, from the
/// decoded file to the normalised map (weights do not change the work, so fresh ones do).
/// A benchmark, not a check: `cargo test --release -p naevus-engine --test explain -- --ignored --nocapture`.
#[test]
#[ignore]
fn benchmark_grad_cam_on_efficientnet_lite0_at_256_px() {
    let side = 256;
    let model = spec("efficientnet-lite0").unwrap();
    let device = Device::flex();
    let network = model.build(1, &device).valid();
    let normalize = naevus_data::Normalize { mean: model.mean, std: model.std };
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/isic2017/images/ISIC_0000000.jpg");

    for method in [Method::GradCam, Method::GradCamPlusPlus] {
        let mut seconds = Vec::new();
        for _ in 0..6 {
            let start = std::time::Instant::now();
            let pixels = naevus_data::center_crop_resize(&naevus_data::load_rgb(&file).unwrap(), side);
            let input = naevus_engine::input::InputSpec { image_size: side, colour: naevus_data::ColourConstancy::None, normalize: normalize.clone(), target: Target::binary(LossKind::Bce), metadata: None };
            let explanations = naevus_engine::explain::explain_images(&network, model, &input, None, &[&pixels], &device, method, None).unwrap();
            assert_eq!(explanations[0].maps[0].values.len(), (side * side) as usize);
            seconds.push(start.elapsed().as_secs_f64());
        }
        // The first run pays for allocation warm-up; report it apart.
        let warm = &mut seconds[1..].to_vec();
        warm.sort_by(f64::total_cmp);
        eprintln!(
            "{method} on efficientnet-lite0, one {side} px image (decode + resize + explain): first {:.3} s, then median {:.3} s (min {:.3}, max {:.3}) on {} threads",
            seconds[0],
            warm[warm.len() / 2],
            warm[0],
            warm[warm.len() - 1],
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
    }
}
