//! Depthwise convolution's gradients: direct loops over each channel's planes, in place of
//! burn's one convolution per channel on sliced copies.

use burn::backend::flex::FlexTensor;
use burn::tensor::ops::ConvOptions;
use rayon::prelude::*;

use super::{Planes, sum_pairs, valid_range};

/// Sizes of one depthwise convolution, input [batch, channels, height, width] to output
/// [batch, channels, out_h, out_w].
pub(super) struct Shapes {
    pub(super) input: Planes,
    pub(super) kernel_h: usize,
    pub(super) kernel_w: usize,
    out_h: usize,
    out_w: usize,
    stride: [usize; 2],
    pad_top: usize,
    pad_left: usize,
    /// Per kernel column `j`: the output columns `ow` whose input column
    /// `ow * stride + j - pad_left` lies inside the image; none when the column sees only
    /// padding (maps smaller than the kernel). Computed once, not per row in the kernels.
    valid_columns: Vec<Option<std::ops::Range<usize>>>,
}

impl Shapes {
    pub(super) fn new(x: &FlexTensor, weight: &FlexTensor, grad: &FlexTensor, options: &ConvOptions<2>) -> Self {
        let w_dims = weight.layout().shape().clone();
        let g_dims = grad.layout().shape().clone();
        let [pad_top, pad_left] = options.padding_begin();
        let input = Planes::of(x);
        let (kernel_w, out_w) = (w_dims[3], g_dims[3]);
        let valid_columns = (0..kernel_w)
            .map(|j| Some(valid_range(out_w, options.stride[1], j, pad_left, input.width)).filter(|columns| !columns.is_empty()))
            .collect();
        Self {
            input,
            kernel_h: w_dims[2],
            kernel_w,
            out_h: g_dims[2],
            out_w,
            stride: options.stride,
            pad_top,
            pad_left,
            valid_columns,
        }
    }

    /// Input row of output row `oh` and kernel row `i`, if inside the image.
    fn input_row(&self, oh: usize, i: usize) -> Option<usize> {
        (oh * self.stride[0] + i).checked_sub(self.pad_top).filter(|&row| row < self.input.height)
    }
}

/// d loss / d x: each output gradient spread back over the inputs its kernel window read.
pub(super) fn input_gradient(s: &Shapes, grad: &[f32], weight: &[f32]) -> Vec<f32> {
    let plane = s.input.size();
    let out_plane = s.out_h * s.out_w;
    let kernel = s.kernel_h * s.kernel_w;
    let mut dx = vec![0.0f32; s.input.batch * s.input.channels * plane];
    dx.par_chunks_mut(plane).enumerate().for_each(|(index, dx)| {
        let channel = index % s.input.channels;
        let g = &grad[index * out_plane..(index + 1) * out_plane];
        let w = &weight[channel * kernel..(channel + 1) * kernel];
        for oh in 0..s.out_h {
            let g_row = &g[oh * s.out_w..(oh + 1) * s.out_w];
            for i in 0..s.kernel_h {
                let Some(row) = s.input_row(oh, i) else { continue };
                let dx_row = &mut dx[row * s.input.width..(row + 1) * s.input.width];
                for j in 0..s.kernel_w {
                    let Some(columns) = s.valid_columns[j].clone() else { continue };
                    let wv = w[i * s.kernel_w + j];
                    if s.stride[1] == 1 {
                        let start = columns.start + j - s.pad_left;
                        let dst = &mut dx_row[start..start + columns.len()];
                        for (d, &gv) in dst.iter_mut().zip(&g_row[columns]) {
                            *d += wv * gv;
                        }
                    } else {
                        for ow in columns {
                            dx_row[ow * s.stride[1] + j - s.pad_left] += wv * g_row[ow];
                        }
                    }
                }
            }
        }
    });
    dx
}

/// d loss / d weight: for each channel and kernel tap, the sum over the batch and the output
/// positions of output gradient times the input the tap read.
pub(super) fn weight_gradient(s: &Shapes, grad: &[f32], x: &[f32]) -> Vec<f32> {
    let plane = s.input.size();
    let out_plane = s.out_h * s.out_w;
    let kernel = s.kernel_h * s.kernel_w;
    let mut dw = vec![0.0f32; s.input.channels * kernel];
    dw.par_chunks_mut(kernel).enumerate().for_each(|(channel, dw)| {
        let mut totals = vec![0.0f64; kernel];
        for b in 0..s.input.batch {
            let index = b * s.input.channels + channel;
            let g = &grad[index * out_plane..(index + 1) * out_plane];
            let xp = &x[index * plane..(index + 1) * plane];
            for oh in 0..s.out_h {
                let g_row = &g[oh * s.out_w..(oh + 1) * s.out_w];
                for i in 0..s.kernel_h {
                    let Some(row) = s.input_row(oh, i) else { continue };
                    let x_row = &xp[row * s.input.width..(row + 1) * s.input.width];
                    for j in 0..s.kernel_w {
                        let Some(columns) = s.valid_columns[j].clone() else { continue };
                        totals[i * s.kernel_w + j] += if s.stride[1] == 1 {
                            let start = columns.start + j - s.pad_left;
                            sum_pairs(&g_row[columns.clone()], &x_row[start..start + columns.len()], |g, x| g * x)
                        } else {
                            columns.map(|ow| (g_row[ow] * x_row[ow * s.stride[1] + j - s.pad_left]) as f64).sum()
                        };
                    }
                }
            }
        }
        for (d, t) in dw.iter_mut().zip(totals) {
            *d = t as f32;
        }
    });
    dw
}
