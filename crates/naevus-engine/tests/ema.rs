//! The weight average (`ema_decay`): each update moves every weight and BatchNorm statistic
//! of the average by the decay towards the trained network's, the decay is small for the
//! first steps, and a network of another shape is an error.

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::Distribution;
use naevus_engine::ema::WeightAverage;
use naevus_models::Network;

/// Every float tensor of a network with the name of its field (e.g. "running_mean").
fn tensors(model: &Network) -> Vec<(String, Vec<f32>)> {
    struct Collect {
        path: Vec<String>,
        found: Vec<(String, Vec<f32>)>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let values = param.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            self.found.push((self.path.last().cloned().unwrap_or_default(), values));
        }
    }
    let mut collect = Collect { path: Vec::new(), found: Vec::new() };
    model.visit(&mut collect);
    collect.found
}

#[test]
fn an_update_moves_every_weight_and_statistic_by_the_decay() {
    let train_device = Device::flex().autodiff();
    let spec = naevus_models::spec("small-cnn").unwrap();
    train_device.seed(1);
    let start = spec.build(1, &train_device);
    train_device.seed(2);
    let trained = spec.build(1, &train_device);
    // A forward pass in training mode moves the trained network's BatchNorm statistics.
    let images = Tensor::<4>::random([4, 3, 32, 32], Distribution::Normal(0.0, 1.0), &train_device);
    let _ = trained.forward_with_metadata(images, None);

    let mut average = WeightAverage::new(&start, 0.75);
    average.update(&trained, 1_000).unwrap();
    let (a, b, m) = (tensors(&start.valid()), tensors(&trained.valid()), tensors(&average.model));
    assert_eq!((a.len(), b.len()), (m.len(), m.len()));
    let mut statistics_moved = 0;
    for ((name, a), ((_, b), (_, m))) in a.iter().zip(b.iter().zip(&m)) {
        assert_eq!((a.len(), b.len()), (m.len(), m.len()), "{name}");
        for ((a, b), m) in a.iter().zip(b).zip(m) {
            let expected = 0.75 * a + 0.25 * b;
            assert!((m - expected).abs() <= 1e-5 * (1.0 + expected.abs()), "{name}: {m} against {expected}");
        }
        if name == "running_mean" && a != b {
            statistics_moved += 1;
        }
    }
    assert!(statistics_moved > 0, "the forward pass moved no running mean, so the test proves nothing about them");
    // The average is a network of its own: the trained network is untouched.
    assert_eq!(tensors(&trained.valid()), b);
}

#[test]
fn the_first_steps_average_with_less_memory() {
    let network = naevus_models::spec("small-cnn").unwrap().build(1, &Device::flex());
    let average = WeightAverage::new(&network, 0.999);
    assert!((average.decay_at(0) - 0.1).abs() < 1e-12);
    assert!((average.decay_at(90) - 0.91).abs() < 1e-12);
    assert_eq!(average.decay_at(1_000_000), 0.999);
    assert_eq!(WeightAverage::new(&network, 0.5).decay_at(100), 0.5);
}

#[test]
fn a_network_of_another_shape_is_an_error() {
    let device = Device::flex();
    let small = naevus_models::spec("small-cnn").unwrap().build(1, &device);
    let other = naevus_models::spec("resnet18").unwrap().build(1, &device);
    let mut average = WeightAverage::new(&small, 0.9);
    let error = average.update(&other, 10).unwrap_err().to_string();
    assert!(error.contains("no longer fits"), "{error}");
}
