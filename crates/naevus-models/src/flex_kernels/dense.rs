//! Dense convolutions (groups 1, no dilation) on NCHW f32 tensors, as matrix products.
//!
//! An image's patches form a matrix with one row per (input channel, kernel row, kernel
//! column) and one column per output position, so that with W the weight as
//! [channels_out, channels_in * kh * kw]:
//! - forward: Y = W * patches;
//! - input gradient: patch gradients = W^T * dY, added back where each patch value was read;
//! - weight gradient: dW = dY * patches^T summed over the batch, one partial per thread.
//! Images run in parallel, one product each; maps too small to fill a product put several
//! images side by side in one; a single image spreads its product over every thread. Results
//! are written in place in NCHW: no layout round trips. A 1x1 convolution with stride 1 and no
//! padding needs no patch matrix: the image is one.

use rayon::prelude::*;

use super::matmul::{Parallelism, View, multiply, with_scratch};
use super::valid_range;

/// Patch values built at once for the weight gradient (1 MiB of f32): a tile of output
/// positions whose patches stay in a core's L2 cache while the product reads them...
const PATCH_TILE_VALUES: usize = 256 << 10;
/// ...but never fewer positions than this, or the products get too short to run fast.
const MIN_PATCH_TILE: usize = 64;
/// Maps with fewer output positions than this are gathered several images at a time instead
/// (ResNet's 7x7 and 14x14 stages), up to this many patch and gradient values (32 MiB).
const SMALL_MAP_POSITIONS: usize = 256;
const SMALL_MAPS_CHUNK_VALUES: usize = 8 << 20;

/// Sizes of one dense convolution: input [batch, channels_in, height, width], weight
/// [channels_out, channels_in, kernel[0], kernel[1]], output [batch, channels_out, out_h, out_w].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DenseConv {
    pub batch: usize,
    pub channels_in: usize,
    pub height: usize,
    pub width: usize,
    pub channels_out: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Zero rows above and zero columns left of the image.
    pub padding: [usize; 2],
    pub out_h: usize,
    pub out_w: usize,
}

impl DenseConv {
    /// `padding` as burn gives it: (before, after) per spatial axis.
    pub fn new(input: [usize; 4], weight: [usize; 4], stride: [usize; 2], padding: [(usize, usize); 2]) -> Self {
        let [batch, channels_in, height, width] = input;
        let [channels_out, weight_channels, kh, kw] = weight;
        assert_eq!(weight_channels, channels_in, "a dense convolution's weight must read every input channel");
        let out = |len: usize, (before, after): (usize, usize), k: usize, s: usize| (len + before + after).checked_sub(k).map_or(0, |span| span / s + 1);
        Self {
            batch,
            channels_in,
            height,
            width,
            channels_out,
            kernel: [kh, kw],
            stride,
            padding: [padding[0].0, padding[1].0],
            out_h: out(height, padding[0], kh, stride[0]),
            out_w: out(width, padding[1], kw, stride[1]),
        }
    }

    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.channels_out, self.out_h, self.out_w]
    }

    fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    /// Rows of the patch matrix.
    fn patch_len(&self) -> usize {
        self.channels_in * self.taps()
    }

    /// Columns of the patch matrix: output positions per image.
    fn positions(&self) -> usize {
        self.out_h * self.out_w
    }

    /// The image itself is its patch matrix.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0, 0]
    }

    fn image<'a>(&self, x: &'a [f32], b: usize) -> &'a [f32] {
        let len = self.channels_in * self.height * self.width;
        &x[b * len..(b + 1) * len]
    }

    fn plane<'a>(&self, image: &'a [f32], c: usize) -> &'a [f32] {
        let len = self.height * self.width;
        &image[c * len..(c + 1) * len]
    }

    /// Input row read by output row `oh` at kernel row `i`, if inside the image.
    fn input_row(&self, oh: usize, i: usize) -> Option<usize> {
        (oh * self.stride[0] + i).checked_sub(self.padding[0]).filter(|&row| row < self.height)
    }

    /// Part of one row of the patch matrix: what kernel tap `tap` read from `plane` at output
    /// positions `first..first + dst.len()` (zero where it read padding).
    fn patch_row(&self, plane: &[f32], tap: usize, first: usize, dst: &mut [f32]) {
        let (i, j) = (tap / self.kernel[1], tap % self.kernel[1]);
        let valid = valid_range(self.out_w, self.stride[1], j, self.padding[1], self.width);
        let mut position = first;
        for segment in split_at_row_ends(dst, first, self.out_w) {
            let (oh, ow_first) = (position / self.out_w, position % self.out_w);
            position += segment.len();
            let Some(row) = self.input_row(oh, i) else {
                segment.fill(0.0);
                continue;
            };
            let in_row = &plane[row * self.width..(row + 1) * self.width];
            // The segment's columns ow_first.. that read inside the image, as segment indices.
            let start = valid.start.clamp(ow_first, ow_first + segment.len()) - ow_first;
            let end = valid.end.clamp(ow_first, ow_first + segment.len()) - ow_first;
            segment[..start].fill(0.0);
            segment[end.max(start)..].fill(0.0);
            if start >= end {
                continue;
            }
            let column = |n: usize| (ow_first + n) * self.stride[1] + j - self.padding[1];
            if self.stride[1] == 1 {
                segment[start..end].copy_from_slice(&in_row[column(start)..column(start) + end - start]);
            } else {
                for n in start..end {
                    segment[n] = in_row[column(n)];
                }
            }
        }
    }

    /// The reverse of `patch_row`: adds each value of `src` to the input it was read from.
    fn add_patch_row(&self, src: &[f32], tap: usize, plane: &mut [f32]) {
        let (i, j) = (tap / self.kernel[1], tap % self.kernel[1]);
        let columns = valid_range(self.out_w, self.stride[1], j, self.padding[1], self.width);
        if columns.is_empty() {
            return;
        }
        for (oh, g_row) in src.chunks_exact(self.out_w).enumerate() {
            let Some(row) = self.input_row(oh, i) else { continue };
            let in_row = &mut plane[row * self.width..(row + 1) * self.width];
            if self.stride[1] == 1 {
                let start = columns.start + j - self.padding[1];
                for (d, &g) in in_row[start..start + columns.len()].iter_mut().zip(&g_row[columns.clone()]) {
                    *d += g;
                }
            } else {
                for ow in columns.clone() {
                    in_row[ow * self.stride[1] + j - self.padding[1]] += g_row[ow];
                }
            }
        }
    }

    /// The patch matrix of one image, [patch_len, positions], its rows built on `threads`.
    fn patches(&self, image: &[f32], dst: &mut [f32], threads: Parallelism) {
        let row = |(row, dst): (usize, &mut [f32])| self.patch_row(self.plane(image, row / self.taps()), row % self.taps(), 0, dst);
        match threads {
            Parallelism::None => dst.chunks_exact_mut(self.positions()).enumerate().for_each(row),
            _ => dst.par_chunks_exact_mut(self.positions()).enumerate().for_each(row),
        }
    }

    /// The patch matrices of `images` side by side, [patch_len, images.len() * positions].
    fn patches_side_by_side(&self, x: &[f32], images: &[usize], dst: &mut [f32]) {
        let p = self.positions();
        for (row, dst) in dst.chunks_exact_mut(images.len() * p).enumerate() {
            for (n, &b) in images.iter().enumerate() {
                self.patch_row(self.plane(self.image(x, b), row / self.taps()), row % self.taps(), 0, &mut dst[n * p..(n + 1) * p]);
            }
        }
    }

    /// The output gradients of `images` side by side, [channels_out, images.len() * positions].
    fn grads_side_by_side(&self, grad: &[f32], images: &[usize], dst: &mut [f32]) {
        let p = self.positions();
        for (co, dst) in dst.chunks_exact_mut(images.len() * p).enumerate() {
            for (n, &b) in images.iter().enumerate() {
                let start = (b * self.channels_out + co) * p;
                dst[n * p..(n + 1) * p].copy_from_slice(&grad[start..start + p]);
            }
        }
    }

    /// Columns `first..first + width` of the patch matrix of one image, [patch_len, width].
    fn patch_columns(&self, image: &[f32], first: usize, width: usize, dst: &mut [f32]) {
        let taps = self.taps();
        for (row, dst) in dst.chunks_exact_mut(width).enumerate() {
            self.patch_row(self.plane(image, row / taps), row % taps, first, dst);
        }
    }
}

/// `values`, holding positions `first..` of rows `row_len` long, cut where each row ends.
fn split_at_row_ends(values: &mut [f32], first: usize, row_len: usize) -> impl Iterator<Item = &mut [f32]> {
    let mut rest = values;
    let mut position = first;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let len = (row_len - position % row_len).min(rest.len());
        let (segment, tail) = std::mem::take(&mut rest).split_at_mut(len);
        rest = tail;
        position += len;
        Some(segment)
    })
}

/// Images in parallel, each product on one thread; a single image spreads its product over
/// every thread instead.
fn per_image(s: &DenseConv, out: &mut [f32], out_len: usize, f: impl Fn(usize, &mut [f32], Parallelism) + Sync) {
    if s.batch == 1 {
        f(0, out, Parallelism::Rayon(0));
    } else {
        out.par_chunks_mut(out_len).enumerate().for_each(|(b, out)| f(b, out, Parallelism::None));
    }
}

/// What is applied to each output value as an image's output is written, while it is still in
/// cache: a per-channel bias, then a clamp (ReLU: [0, inf), ReLU6: [0, 6]).
pub struct Epilogue<'a> {
    pub bias: &'a [f32],
    pub lower: f32,
    pub upper: f32,
}

impl Epilogue<'_> {
    fn apply(&self, y: &mut [f32], positions: usize) {
        for (plane, &bias) in y.chunks_exact_mut(positions).zip(self.bias) {
            for v in plane {
                *v = (*v + bias).max(self.lower).min(self.upper);
            }
        }
    }
}

/// y = conv(x, weight), [batch, channels_out, out_h, out_w], with `epilogue` applied if given.
pub fn forward(s: &DenseConv, x: &[f32], weight: &[f32], epilogue: Option<&Epilogue>) -> Vec<f32> {
    let (k, p) = (s.patch_len(), s.positions());
    let w = View::row_major(weight, s.channels_out, k);
    let mut y = vec![0.0f32; s.batch * s.channels_out * p];
    if let Some(group) = small_map_group(s) {
        y.par_chunks_mut(group * s.channels_out * p).enumerate().for_each(|(g, y)| {
            let images: Vec<usize> = (g * group..(g * group + group).min(s.batch)).collect();
            forward_side_by_side(s, x, w, &images, y, epilogue);
        });
        return y;
    }
    per_image(s, &mut y, s.channels_out * p, |b, y, threads| {
        let image = s.image(x, b);
        if s.is_pointwise() {
            multiply(y, p, w, View::row_major(image, k, p), false, threads);
        } else {
            with_scratch(k * p, |patches| {
                s.patches(image, patches, threads);
                multiply(y, p, w, View::row_major(patches, k, p), false, threads);
            });
        }
        if let Some(epilogue) = epilogue {
            epilogue.apply(y, p);
        }
    });
    y
}

/// For maps under SMALL_MAP_POSITIONS, how many images go side by side into one product (a
/// thread's share at most, within SMALL_MAPS_CHUNK_VALUES); None for larger maps, which fill
/// a product alone.
fn small_map_group(s: &DenseConv) -> Option<usize> {
    let p = s.positions();
    if p >= SMALL_MAP_POSITIONS || s.batch < 2 {
        return None;
    }
    let share = s.batch.div_ceil(rayon::current_num_threads());
    Some((SMALL_MAPS_CHUNK_VALUES / ((s.patch_len() + s.channels_out) * p).max(1)).clamp(1, share.max(1)))
}

/// The forward pass of `images`, their patches side by side in one product, into `y` (their
/// outputs, NCHW).
fn forward_side_by_side(s: &DenseConv, x: &[f32], w: View, images: &[usize], y: &mut [f32], epilogue: Option<&Epilogue>) {
    let (k, p, c_out) = (s.patch_len(), s.positions(), s.channels_out);
    let width = images.len() * p;
    with_scratch((k + c_out) * width, |scratch| {
        let (patches, products) = scratch.split_at_mut(k * width);
        s.patches_side_by_side(x, images, patches);
        multiply(products, width, w, View::row_major(patches, k, width), false, Parallelism::None);
        for (n, y) in y.chunks_exact_mut(c_out * p).enumerate() {
            for (co, y) in y.chunks_exact_mut(p).enumerate() {
                y.copy_from_slice(&products[co * width + n * p..co * width + (n + 1) * p]);
            }
            if let Some(epilogue) = epilogue {
                epilogue.apply(y, p);
            }
        }
    });
}

/// The input gradient of `images`, their output gradients side by side in one product, into
/// `dx` (their input gradients, NCHW, zero on entry).
fn input_gradient_side_by_side(s: &DenseConv, grad: &[f32], w_t: View, images: &[usize], dx: &mut [f32]) {
    let (k, p, c_out) = (s.patch_len(), s.positions(), s.channels_out);
    let width = images.len() * p;
    with_scratch((k + c_out) * width, |scratch| {
        let (patch_grads, dy) = scratch.split_at_mut(k * width);
        s.grads_side_by_side(grad, images, dy);
        multiply(patch_grads, width, w_t, View::row_major(dy, c_out, width), false, Parallelism::None);
        let plane_len = s.height * s.width;
        for (n, dx) in dx.chunks_exact_mut(s.channels_in * plane_len).enumerate() {
            for row in 0..k {
                let c = row / s.taps();
                let src = &patch_grads[row * width + n * p..row * width + (n + 1) * p];
                s.add_patch_row(src, row % s.taps(), &mut dx[c * plane_len..(c + 1) * plane_len]);
            }
        }
    });
}

/// d loss / d x from the output gradient `grad` [batch, channels_out, out_h, out_w].
pub fn input_gradient(s: &DenseConv, grad: &[f32], weight: &[f32]) -> Vec<f32> {
    let (k, p) = (s.patch_len(), s.positions());
    let w_t = View::row_major(weight, s.channels_out, k).transposed();
    let image_len = s.channels_in * s.height * s.width;
    let mut dx = vec![0.0f32; s.batch * image_len];
    if let Some(group) = small_map_group(s) {
        dx.par_chunks_mut(group * image_len).enumerate().for_each(|(g, dx)| {
            let images: Vec<usize> = (g * group..(g * group + group).min(s.batch)).collect();
            input_gradient_side_by_side(s, grad, w_t, &images, dx);
        });
        return dx;
    }
    per_image(s, &mut dx, image_len, |b, dx, threads| {
        let dy = View::row_major(&grad[b * s.channels_out * p..(b + 1) * s.channels_out * p], s.channels_out, p);
        if s.is_pointwise() {
            multiply(dx, p, w_t, dy, false, threads);
        } else {
            with_scratch(k * p, |patch_grads| {
                multiply(patch_grads, p, w_t, dy, false, threads);
                // Channel c's plane takes patch rows c * taps.. (c + 1) * taps.
                let add_channel = |(c, plane): (usize, &mut [f32])| {
                    for (tap, src) in patch_grads[c * s.taps() * p..(c + 1) * s.taps() * p].chunks_exact(p).enumerate() {
                        s.add_patch_row(src, tap, plane);
                    }
                };
                let plane_len = s.height * s.width;
                match threads {
                    Parallelism::None => dx.chunks_exact_mut(plane_len).enumerate().for_each(add_channel),
                    _ => dx.par_chunks_exact_mut(plane_len).enumerate().for_each(add_channel),
                }
            });
        }
    });
    dx
}

/// d loss / d weight, [channels_out, channels_in, kh, kw]: dY * patches^T summed over the
/// batch. Each thread takes a share of the images and sums its own partial gradient, the
/// patches built a tile of output positions at a time so that they stay in cache for the
/// product; the output gradient is read in place. The partials are added at the end. (One
/// product split across threads parallelises poorly here: its output is small and its
/// reduction long.)
pub fn weight_gradient(s: &DenseConv, grad: &[f32], x: &[f32]) -> Vec<f32> {
    let (k, c_out) = (s.patch_len(), s.channels_out);
    let tasks = rayon::current_num_threads().min(s.batch).max(1);
    let per_task = s.batch.div_ceil(tasks).max(1);
    let threads = if tasks == 1 { Parallelism::Rayon(0) } else { Parallelism::None };
    let images: Vec<usize> = (0..s.batch).collect();
    images
        .par_chunks(per_task)
        .map(|images| {
            let mut dw = vec![0.0f32; c_out * k];
            if s.positions() >= SMALL_MAP_POSITIONS || s.is_pointwise() {
                for (n, &b) in images.iter().enumerate() {
                    image_weight_gradient(s, grad, x, b, &mut dw, n > 0, threads);
                }
            } else {
                small_maps_weight_gradient(s, grad, x, images, &mut dw, threads);
            }
            dw
        })
        .reduce_with(|mut total, part| {
            total.iter_mut().zip(&part).for_each(|(t, p)| *t += p);
            total
        })
        .unwrap_or_else(|| vec![0.0; c_out * k])
}

/// Writes `images`' weight gradient to `dw` for maps too small to fill a product alone: the
/// patches and output gradients of several images side by side, so that each product's
/// reduction is long enough to pay for writing `dw`.
fn small_maps_weight_gradient(s: &DenseConv, grad: &[f32], x: &[f32], images: &[usize], dw: &mut [f32], threads: Parallelism) {
    let (k, p, c_out) = (s.patch_len(), s.positions(), s.channels_out);
    let images_per_chunk = (SMALL_MAPS_CHUNK_VALUES / ((k + c_out) * p).max(1)).clamp(1, images.len().max(1));
    for (chunk, images) in images.chunks(images_per_chunk).enumerate() {
        let width = images.len() * p;
        with_scratch((k + c_out) * width, |scratch| {
            let (patches, grads) = scratch.split_at_mut(k * width);
            s.patches_side_by_side(x, images, patches);
            s.grads_side_by_side(grad, images, grads);
            let patches_t = View::row_major(patches, k, width).transposed();
            multiply(dw, k, View::row_major(grads, c_out, width), patches_t, chunk > 0, threads);
        });
    }
}

/// Writes (or, with `accumulate`, adds) image `b`'s weight gradient to `dw`.
fn image_weight_gradient(s: &DenseConv, grad: &[f32], x: &[f32], b: usize, dw: &mut [f32], accumulate: bool, threads: Parallelism) {
    let (k, p, c_out) = (s.patch_len(), s.positions(), s.channels_out);
    let dy = &grad[b * c_out * p..(b + 1) * c_out * p];
    if s.is_pointwise() {
        let image = View::row_major(s.image(x, b), k, p).transposed();
        multiply(dw, k, View::row_major(dy, c_out, p), image, accumulate, threads);
        return;
    }
    let tile = (PATCH_TILE_VALUES / k).max(MIN_PATCH_TILE).min(p).max(1);
    for (t, first) in (0..p).step_by(tile).enumerate() {
        let width = tile.min(p - first);
        with_scratch(k * width, |patches| {
            s.patch_columns(s.image(x, b), first, width, patches);
            let dy = View::strided(&dy[first..], c_out, width, p);
            let patches_t = View::row_major(patches, k, width).transposed();
            multiply(dw, k, dy, patches_t, accumulate || t > 0, threads);
        });
    }
}
