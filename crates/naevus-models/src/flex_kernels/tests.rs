use super::*;
use crate::activation::Activation;
use burn::module::Param;
use burn::nn::BatchNormConfig;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::{Distribution, Tolerance};

/// The same output and the same input and weight gradients as burn's grouped convolution.
fn check(channels: usize, kernel: usize, stride: usize, padding: PaddingConfig2d, size: [usize; 2]) {
    let device = Device::flex().autodiff();
    device.seed(7);
    let x = Tensor::<4>::random([3, channels, size[0], size[1]], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let conv = Conv2dConfig::new([channels, channels], [kernel, kernel])
        .with_stride([stride, stride])
        .with_groups(channels)
        .with_padding(padding)
        .with_bias(false)
        .init(&device);
    assert!(kernel_options(&conv, &x).is_some() && trains_on_flex(&x), "the test must run this module's kernels");
    let reference = conv.forward(x.clone());
    let ours = depthwise(&conv, x.clone());
    ours.to_data().assert_approx_eq::<f32>(&reference.to_data(), Tolerance::absolute(1e-5));

    // A loss whose output gradient differs at every position.
    let weights = Tensor::<4>::random(reference.dims(), Distribution::Normal(0.0, 1.0), &device);
    let grads_reference = (reference * weights.clone()).sum().backward();
    let grads_ours = (ours * weights).sum().backward();
    let close = Tolerance::absolute(1e-4);
    x.grad(&grads_ours).unwrap().to_data().assert_approx_eq::<f32>(&x.grad(&grads_reference).unwrap().to_data(), close);
    let weight = conv.weight.val();
    weight.grad(&grads_ours).unwrap().to_data().assert_approx_eq::<f32>(&weight.grad(&grads_reference).unwrap().to_data(), close);
}

#[test]
fn depthwise_matches_burns_grouped_convolution_and_its_gradients() {
    // EfficientNet-Lite's TensorFlow SAME padding: symmetric at stride 1, one less at the
    // top/left at stride 2.
    check(4, 3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1), [9, 11]);
    check(5, 5, 1, PaddingConfig2d::Explicit(2, 2, 2, 2), [8, 8]);
    check(4, 3, 2, PaddingConfig2d::Explicit(0, 0, 1, 1), [10, 12]);
    check(3, 5, 2, PaddingConfig2d::Explicit(1, 1, 2, 2), [12, 10]);
    // MobileNet-V2: padding 1 at stride 2; and no padding at all.
    check(6, 3, 2, PaddingConfig2d::Explicit(1, 1, 1, 1), [9, 9]);
    check(2, 3, 1, PaddingConfig2d::Valid, [7, 6]);
    // Maps smaller than the kernel (ChipNet's chips at small inputs): some kernel columns
    // see only padding.
    check(3, 3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1), [1, 1]);
    check(2, 5, 1, PaddingConfig2d::Explicit(2, 2, 2, 2), [2, 2]);
    check(2, 5, 1, PaddingConfig2d::Explicit(2, 2, 2, 2), [1, 1]);
    check(2, 5, 2, PaddingConfig2d::Explicit(1, 1, 2, 2), [2, 2]);
}

/// The dense kernels give burn's convolution output and gradients (input, weight, bias) within
/// 1e-4 relative, with gradients recorded and (the forward) without.
fn check_dense(batch: usize, channels: [usize; 2], kernel: [usize; 2], stride: usize, padding: PaddingConfig2d, size: [usize; 2], bias: bool) {
    let device = Device::flex().autodiff();
    device.seed(5);
    let x = Tensor::<4>::random([batch, channels[0], size[0], size[1]], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let layer = Conv2dConfig::new(channels, kernel).with_stride([stride, stride]).with_padding(padding.clone()).with_bias(bias).init(&device);
    assert!(layer.groups == 1 && kernel_options(&layer, &x).is_some() && trains_on_flex(&x), "the test must run this module's kernels");
    let case = format!("batch {batch}, channels {channels:?}, kernel {kernel:?}, stride {stride}, {padding:?}, size {size:?}");
    let close = Tolerance::rel_abs(1e-4, 1e-4);
    let reference = layer.forward(x.clone());
    let ours = conv(&layer, x.clone());
    assert_eq!(ours.dims(), reference.dims(), "{case}");
    ours.to_data().assert_approx_eq::<f32>(&reference.to_data(), close);

    let weights = Tensor::<4>::random(reference.dims(), Distribution::Normal(0.0, 1.0), &device);
    let grads_reference = (reference * weights.clone()).sum().backward();
    let grads_ours = (ours * weights).sum().backward();
    x.grad(&grads_ours).unwrap().to_data().assert_approx_eq::<f32>(&x.grad(&grads_reference).unwrap().to_data(), close);
    let weight = layer.weight.val();
    weight.grad(&grads_ours).unwrap().to_data().assert_approx_eq::<f32>(&weight.grad(&grads_reference).unwrap().to_data(), close);
    if let Some(bias) = &layer.bias {
        let bias = bias.val();
        bias.grad(&grads_ours).unwrap().to_data().assert_approx_eq::<f32>(&bias.grad(&grads_reference).unwrap().to_data(), close);
    }

    // Inference: the forward kernel on plain flex.
    let plain = Device::flex();
    let layer = layer.valid();
    let x = x.inner();
    assert!(on_flex_f32(&x) && !trains_on_flex(&x) && x.device() == plain);
    conv(&layer, x.clone()).to_data().assert_approx_eq::<f32>(&layer.forward(x).to_data(), close);
}

#[test]
fn dense_convolution_matches_burns_forward_and_gradients_on_awkward_shapes() {
    let pad = |p| PaddingConfig2d::Explicit(p, p, p, p);
    // ResNet's stem (7x7, stride 2, padding 3) at an odd size, one image.
    check_dense(1, [3, 8], [7, 7], 2, pad(3), [15, 13], false);
    // 3x3 stride 1 and stride 2 with odd sizes; channel counts not multiples of 16.
    check_dense(3, [5, 7], [3, 3], 1, pad(1), [9, 11], false);
    check_dense(2, [6, 17], [3, 3], 2, pad(1), [11, 9], true);
    // 1x1: stride 1 (the image is its own patch matrix) and stride 2 (ResNet's shortcut).
    check_dense(4, [19, 5], [1, 1], 1, PaddingConfig2d::Valid, [6, 7], true);
    check_dense(2, [9, 12], [1, 1], 2, PaddingConfig2d::Valid, [7, 5], false);
    // 1x1 spatial maps, padding larger than 1, asymmetric padding (TensorFlow SAME at stride 2).
    check_dense(3, [4, 6], [3, 3], 1, pad(1), [1, 1], false);
    check_dense(2, [3, 4], [5, 5], 1, pad(2), [1, 1], true);
    check_dense(2, [4, 5], [5, 5], 2, PaddingConfig2d::Explicit(1, 1, 2, 2), [8, 10], false);
    check_dense(1, [3, 4], [3, 3], 2, PaddingConfig2d::Explicit(0, 0, 1, 1), [7, 7], false);
    // A rectangular kernel, no padding.
    check_dense(2, [3, 3], [3, 2], 1, PaddingConfig2d::Valid, [5, 6], true);
    // Enough patch values that the weight gradient builds them in tiles of positions that
    // start and end inside output rows (576 patch rows, 600 positions per image).
    check_dense(2, [64, 8], [3, 3], 1, pad(1), [24, 25], false);
    check_dense(1, [64, 5], [3, 3], 2, pad(1), [50, 47], true);
}

/// With each activation fused in: the output, the gradients for x, gamma and beta, and the
/// running statistics, as burn's BatchNorm followed by the activation gives them.
#[test]
fn batch_norm_with_its_activation_matches_burns_in_output_gradients_and_running_statistics() {
    for activation in [Activation::Identity, Activation::Relu, Activation::Relu6] {
        let device = Device::flex().autodiff();
        device.seed(11);
        // An offset mean and a spread, as activations have; momentum and epsilon not burn's
        // defaults; gamma wide enough that ReLU6 clamps at both ends.
        let x = (Tensor::<4>::random([4, 5, 6, 7], Distribution::Normal(0.0, 1.0), &device) * 3.0 + 2.0).require_grad();
        let config = BatchNormConfig::new(5).with_epsilon(1e-3).with_momentum(0.01);
        let ours = config.init(&device);
        let reference = config.init(&device);
        let gamma = Tensor::<1>::random([5], Distribution::Normal(3.0, 0.5), &device);
        let beta = Tensor::<1>::random([5], Distribution::Normal(0.0, 0.3), &device);
        let (ours, reference) = [ours, reference].map(|bn| BatchNorm { gamma: Param::from_tensor(gamma.clone()), beta: Param::from_tensor(beta.clone()), ..bn }).into();
        assert!(trains_on_flex(&x), "the test must run this module's kernels");

        let expected = activation.apply(reference.forward(x.clone()));
        let got = batch_norm(&ours, activation, x.clone());
        got.to_data().assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-4));
        let close = Tolerance::absolute(1e-5);
        ours.running_mean.value().to_data().assert_approx_eq::<f32>(&reference.running_mean.value().to_data(), close);
        ours.running_var.value().to_data().assert_approx_eq::<f32>(&reference.running_var.value().to_data(), close);

        let weights = Tensor::<4>::random(expected.dims(), Distribution::Normal(0.0, 1.0), &device);
        let grads_expected = (expected * weights.clone()).sum().backward();
        let grads_got = (got * weights).sum().backward();
        let close = Tolerance::absolute(1e-4);
        x.grad(&grads_got).unwrap().to_data().assert_approx_eq::<f32>(&x.grad(&grads_expected).unwrap().to_data(), close);
        for (param_ours, param_reference) in [(&ours.gamma, &reference.gamma), (&ours.beta, &reference.beta)] {
            let (got, expected) = (param_ours.val().grad(&grads_got).unwrap(), param_reference.val().grad(&grads_expected).unwrap());
            got.to_data().assert_approx_eq::<f32>(&expected.to_data(), close);
        }

        // Inference: the running statistics (set far from the identity) folded into one pass.
        let plain = Device::flex();
        let bn = ours.valid();
        bn.running_mean.update(Tensor::random([5], Distribution::Normal(1.0, 0.5), &plain));
        bn.running_var.update(Tensor::random([5], Distribution::Uniform(0.2, 3.0), &plain));
        let x = x.inner();
        assert!(on_flex_f32(&x) && !x.device().is_autodiff());
        let expected = activation.apply(bn.forward(x.clone()));
        batch_norm(&bn, activation, x).to_data().assert_approx_eq::<f32>(&expected.to_data(), Tolerance::rel_abs(1e-5, 1e-5));
    }
}

#[test]
fn valid_range_keeps_input_columns_inside_the_image() {
    for (out_len, stride, offset, pad, len) in [(5, 1, 0, 1, 5), (5, 1, 2, 1, 5), (6, 2, 0, 0, 12), (6, 2, 2, 1, 12), (3, 2, 4, 2, 6), (1, 1, 0, 1, 1), (1, 1, 2, 1, 1), (1, 2, 4, 1, 2), (1, 1, 0, 2, 1)] {
        let range = valid_range(out_len, stride, offset, pad, len);
        for o in 0..out_len {
            let inside = (o * stride + offset).checked_sub(pad).is_some_and(|column| column < len);
            assert_eq!(range.contains(&o), inside, "o {o} in {range:?} for {out_len} {stride} {offset} {pad} {len}");
        }
    }
}

#[test]
fn folded_batch_norm_with_bias_and_activation_matches_the_three_layers_in_inference() {
    let device = Device::flex();
    device.seed(13);
    for (bias, activation, kernel, stride, padding) in [
        (false, Activation::Relu, 3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1)),
        (true, Activation::Relu6, 1, 1, PaddingConfig2d::Valid),
        (false, Activation::Identity, 3, 2, PaddingConfig2d::Explicit(0, 0, 1, 1)),
    ] {
        let conv = Conv2dConfig::new([5, 7], [kernel, kernel]).with_stride([stride, stride]).with_padding(padding).with_bias(bias).init(&device);
        // Running statistics and affine parameters far from the identity, as after training.
        let bn = BatchNormConfig::new(7).with_epsilon(1e-3).init(&device);
        let random = |mean: f64, spread: f64| Param::from_tensor(Tensor::<1>::random([7], Distribution::Normal(mean, spread), &device));
        let bn = BatchNorm { gamma: random(1.0, 0.5), beta: random(0.0, 0.5), ..bn };
        bn.running_mean.update(Tensor::random([7], Distribution::Normal(0.3, 0.5), &device));
        bn.running_var.update(Tensor::random([7], Distribution::Uniform(0.2, 3.0), &device));
        let x = Tensor::<4>::random([3, 5, 9, 8], Distribution::Normal(0.0, 2.0), &device) * 3.0;
        assert!(kernel_options(&conv, &x).is_some() && on_flex_f32(&x) && !x.device().is_autodiff(), "the test must run the fused kernel");
        let expected = activation.apply(bn.forward(conv.forward(x.clone())));
        let got = conv_bn(&conv, &bn, activation, x);
        got.to_data().assert_approx_eq::<f32>(&expected.to_data(), Tolerance::rel_abs(1e-4, 1e-4));
    }
}
