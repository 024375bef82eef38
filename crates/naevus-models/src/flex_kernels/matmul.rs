//! Single-precision matrix products for the convolution kernels, through the gemm crate
//! (its AVX-512 kernels where the CPU has them), and the scratch buffers they reuse.

use std::cell::RefCell;

pub(super) use gemm::Parallelism;

/// A read-only matrix over a slice: element (r, c) at `data[r * row_stride + c * col_stride]`,
/// so a transpose or a band of columns is a view, not a copy.
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// `rows` x `cols` values stored row after row.
    pub(super) fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    /// `rows` x `cols` values whose rows start `row_stride` apart.
    pub(super) fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        let view = Self { data, rows, cols, row_stride, col_stride: 1 };
        assert!(view.fits(data.len()), "a {rows}x{cols} matrix with row stride {row_stride} needs more than {} values", data.len());
        view
    }

    pub(super) fn transposed(self) -> Self {
        Self { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    /// Whether the last element lies inside a slice of `len` values.
    fn fits(&self, len: usize) -> bool {
        self.rows == 0 || self.cols == 0 || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride < len
    }
}

/// out = a * b, or out += a * b with `accumulate`; `out` holds a.rows x b.cols values row
/// after row, rows `out_row_stride` apart.
pub(super) fn multiply(out: &mut [f32], out_row_stride: usize, a: View, b: View, accumulate: bool, threads: Parallelism) {
    assert_eq!(a.cols, b.rows, "inner sizes of a matrix product");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let out_view = View { data: out, rows: m, cols: n, row_stride: out_row_stride, col_stride: 1 };
    assert!(out_view.fits(out.len()), "a {m}x{n} product does not fit {} values", out.len());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in out.chunks_mut(out_row_stride).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: the three views were checked above to lie inside their slices, and `out` is
    // borrowed mutably, so it overlaps neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            out_row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            threads,
        );
    }
}

thread_local! {
    /// Each thread's scratch, kept between calls: patch matrices are large (ResNet-18's first
    /// layer, 7 MB per image) and fresh pages cost a page fault each.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The most scratch a thread keeps after a call (256 MiB of f32). A patch matrix at a large
/// input (ResNet's stem at 2048 px: 600 MB per image) is used and then given back, so one such
/// call does not hold its memory for the life of the process.
const KEPT_SCRATCH_VALUES: usize = 64 << 20;

/// Runs `f` on `len` scratch values of this thread (contents unspecified). A nested call on
/// the same thread (rayon may run another task while this one waits) gets a fresh buffer.
pub(super) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            if buffer.len() < len {
                buffer.resize(len, 0.0);
            }
            let result = f(&mut buffer[..len]);
            if buffer.len() > KEPT_SCRATCH_VALUES {
                *buffer = Vec::new();
            }
            result
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}
