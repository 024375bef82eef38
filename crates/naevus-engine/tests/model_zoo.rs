//! Every registered model trains: a few Adam steps on the fixture images lower its loss,
//! and the trained network predicts a probability for every image through the same path
//! `naevus predict` uses.

use std::path::Path;
use std::sync::Arc;

use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use naevus_data::{Cache, PrepareOptions, SourceKind, SourceSpec, prepare, read_source};
use naevus_engine::loss::{LossKind, loss};
use naevus_engine::predict::{InputSpec, batch_tensor, probabilities};
use naevus_data::{LoaderConfig, Normalize, batches};

const SIZE: u32 = 64;
const STEPS: usize = 12;

fn fixture_cache(dir: &Path) -> Arc<Cache> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/isic2017");
    let spec = SourceSpec { kind: SourceKind::Isic2017, csv: Some(fixtures.join("labels.csv")), images: fixtures.join("images"), metadata_csv: None };
    let data = read_source(&spec).unwrap();
    prepare(data, dir, &PrepareOptions { size: SIZE, threads: Some(1), progress: false }).unwrap();
    Arc::new(Cache::open(dir).unwrap())
}

#[test]
fn every_model_learns_the_fixtures_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let cache = fixture_cache(dir.path());
    let items: Vec<usize> = (0..cache.len()).collect();
    let labels: Vec<u8> = items.iter().map(|&i| u8::from(cache.records()[i].melanoma == Some(true))).collect();
    let device = Device::flex();
    let train_device = device.clone().autodiff();

    for spec in naevus_models::MODELS {
        let normalize = Normalize { mean: spec.mean, std: spec.std };
        let loader = LoaderConfig { batch_size: items.len(), augment: None, normalize: normalize.clone(), seed: 0, prefetch: 1, output_size: None, dihedral: 0 };
        let batch = batches(cache.clone(), items.clone(), loader).next().unwrap();
        let images = batch_tensor(batch, &train_device);

        train_device.seed(7);
        let mut model = spec.build(1, &train_device);
        let mut optimizer = AdamConfig::new().init();
        let mut losses = Vec::new();
        for _ in 0..STEPS {
            let value = loss(LossKind::Bce, model.forward(images.clone()).logits, &labels, 0.25, 2.0);
            losses.push(value.clone().into_scalar::<f32>());
            let grads = GradientsParams::from_grads(value.backward(), &model);
            model = optimizer.step(1e-3, model, grads);
        }
        let first = (losses[0] + losses[1]) / 2.0;
        let last = (losses[STEPS - 2] + losses[STEPS - 1]) / 2.0;
        assert!(losses.iter().all(|l| l.is_finite()), "{}: {losses:?}", spec.name);
        assert!(last < first, "{}: loss did not fall: {losses:?}", spec.name);

        let input = InputSpec { image_size: SIZE, normalize, loss: LossKind::Bce };
        let probs = probabilities(&model.valid(), &cache, &items, &input, &device, 1).unwrap();
        assert_eq!(probs.len(), items.len(), "{}", spec.name);
        assert!(probs.iter().all(|p| (0.0..=1.0).contains(p)), "{}: {probs:?}", spec.name);
        eprintln!("{}: loss {first:.3} -> {last:.3}", spec.name);
    }
}
