//! A bounds-checked wrapper around the `gemm` crate (the same kernel candle uses for matmul),
//! so the fused ops can multiply strided sub-matrices in place without copies.

/// A strided matrix inside a flat slice: element (i, j) is at `off + i * rs + j * cs`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View {
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

impl View {
    pub fn new(off: usize, rs: usize, cs: usize) -> Self {
        Self { off, rs, cs }
    }

    /// Index one past the last element of a `rows × cols` view (0 for an empty one).
    fn end(&self, rows: usize, cols: usize) -> usize {
        if rows == 0 || cols == 0 {
            return 0;
        }
        self.off + (rows - 1) * self.rs + (cols - 1) * self.cs + 1
    }
}

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]`; accumulates when `acc`, overwrites otherwise.
/// Single-threaded: callers parallelise over the batch.
///
/// Panics if a view reaches outside its slice (an internal bug, never caused by user input:
/// shapes are validated before any kernel runs).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    d: View,
    acc: bool,
    lhs: &[f32],
    l: View,
    rhs: &[f32],
    r: View,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(d.end(m, n) <= dst.len(), "gemm: dst view out of bounds");
    if k == 0 {
        if !acc {
            for i in 0..m {
                for j in 0..n {
                    dst[d.off + i * d.rs + j * d.cs] = 0.0;
                }
            }
        }
        return;
    }
    assert!(l.end(m, k) <= lhs.len(), "gemm: lhs view out of bounds");
    assert!(r.end(k, n) <= rhs.len(), "gemm: rhs view out of bounds");
    // SAFETY: the three views were checked above to lie inside their slices; `dst` is borrowed
    // mutably so it cannot alias `lhs` or `rhs`; all strides are non-negative and fit isize
    // because the slices' lengths do.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().add(d.off),
            d.cs as isize,
            d.rs as isize,
            acc,
            lhs.as_ptr().add(l.off),
            l.cs as isize,
            l.rs as isize,
            rhs.as_ptr().add(r.off),
            r.cs as isize,
            r.rs as isize,
            if acc { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
