//! A register-blocked product of a small strided matrix with a small zero-padded one, for the
//! graph aggregations whose adjacency differs per sample (CTR-GCN per channel, InfoGCN per
//! frame). They are thousands of 25×25 products per layer: too small for a `gemm` call to pay
//! off, large enough that a scalar loop (what the default x86-64 target gives) costs a fifth of
//! a CTR-GCN training step. On x86-64 CPUs with AVX2 and FMA an intrinsics version is picked at
//! run time; the portable version is the fallback.

/// Width of one register block of the right-hand matrix (four AVX vectors).
pub(crate) const LANES: usize = 32;

/// Row length of a right-hand matrix with `cols` columns once zero-padded to whole blocks.
pub(crate) fn padded(cols: usize) -> usize {
    cols.div_ceil(LANES) * LANES
}

/// The left operand: element `(r, j)` is `data[off + r * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lhs {
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

/// `out[off + r·os + l] += Σ_j lhs(r, j) · rhs[j·rsb + l]` for `r < rows`, `l < cols`,
/// `j < k`. The kernel reads whole blocks of `LANES` values from each row of `rhs` and drops
/// the lanes past `cols`, so a row stride `rsb ≥ cols` works without copying (lanes past the
/// end of the slice read as zero); [`pack`] makes a transposed or modified copy when needed.
///
/// Panics on an index outside a slice (an internal bug: callers size everything from
/// validated shapes).
#[allow(clippy::too_many_arguments)]
pub(crate) fn small_mm(
    rows: usize,
    k: usize,
    cols: usize,
    lhs: &[f32],
    l: Lhs,
    rhs: &[f32],
    rsb: usize,
    out: &mut [f32],
    off: usize,
    os: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        #[allow(unsafe_code)]
        unsafe {
            avx2::small_mm(rows, k, cols, lhs, l, rhs, rsb, out, off, os)
        };
        return;
    }
    small_mm_impl(rows, k, cols, lhs, l, rhs, rsb, out, off, os)
}

/// `dst (cols × rows) = srcᵀ` for a row-major `rows × cols` `src`. With AVX2, 8×8 blocks go
/// through registers: the scalar loop's strided single-float stores were most of the sparse
/// graph conv's own time.
pub(crate) fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    transpose_ld(src, rows, cols, dst, rows);
}

/// [`transpose`] into rows of `ld ≥ rows` floats (e.g. padded for [`small_mm`]); the lanes past
/// `rows` in each destination row are left as they were.
pub(crate) fn transpose_ld(src: &[f32], rows: usize, cols: usize, dst: &mut [f32], ld: usize) {
    assert!(ld >= rows, "transpose: row stride {ld} below {rows}");
    if rows == 0 || cols == 0 {
        return;
    }
    let (src, dst) = (&src[..rows * cols], &mut dst[..(cols - 1) * ld + rows]);
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 (checked just above).
        #[allow(unsafe_code)]
        unsafe {
            avx2::transpose(src, rows, cols, dst, ld)
        };
        return;
    }
    transpose_part(src, (rows, cols), dst, ld, (0, 0));
}

/// The part of a transpose not covered by whole 8×8 blocks from the top left: all rows from
/// `r0` on, and the columns from `c0` on in the rows above.
#[inline(always)]
fn transpose_part(
    src: &[f32],
    (rows, cols): (usize, usize),
    dst: &mut [f32],
    ld: usize,
    (r0, c0): (usize, usize),
) {
    for r in 0..rows {
        let from = if r < r0 { c0 } else { 0 };
        for c in from..cols {
            dst[c * ld + r] = src[r * cols + c];
        }
    }
}

/// The vector instruction set this crate's kernels run with on this CPU: `avx2+fma` or
/// `portable` (what the compiler makes of plain loops for the build's baseline target).
pub fn simd_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        return "avx2+fma";
    }
    "portable"
}

/// The microkernels the gemm crate (candle's matrix products) picks on this CPU. This crate turns
/// on gemm's `x86-v4` feature, so AVX-512 machines (pulp's V4 level: F, BW, CD, DQ, VL) get its
/// AVX-512 kernels; candle alone would leave them at AVX2.
pub fn gemm_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        use std::is_x86_feature_detected as has;
        if has!("avx512f")
            && has!("avx512bw")
            && has!("avx512cd")
            && has!("avx512dq")
            && has!("avx512vl")
        {
            return "avx512 (gemm x86-v4)";
        }
        if has_avx2_fma() {
            return "avx2+fma (gemm x86-v3)";
        }
    }
    #[cfg(target_arch = "aarch64")]
    return "neon";
    #[allow(unreachable_code)]
    "scalar"
}

/// The CPU's vector features that matter here, as detected at run time.
pub fn cpu_features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut v = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! check {
            ($($f:tt),*) => {$(if std::is_x86_feature_detected!($f) { v.push($f); })*};
        }
        check!(
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avx512bf16",
            "avx2",
            "fma"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            v.push("neon");
        }
    }
    v
}

/// Whether this CPU has AVX2 and FMA (the standard library caches the answer).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// Runs `f` inside a function compiled with AVX2 + FMA when the CPU has them, so that loops
/// inlined into it use 256-bit vectors; the release build otherwise targets baseline x86-64
/// (SSE2). Mark the closure and the functions it calls `#[inline(always)]`: LLVM otherwise may
/// keep a large closure out of line, compiled for SSE2, and `run` becomes a bare jump to it
/// (the attention kernel's score loop was built that way).
#[inline(always)]
pub(crate) fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        #[allow(unsafe_code)]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn run<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        #[allow(unsafe_code)]
        return unsafe { run(f) };
    }
    f()
}

/// The same product with AVX2 + FMA intrinsics. Plain Rust compiled with these features kept
/// the accumulators in registers but assembled each right-hand block from pieces with
/// shuffles and blends (about 40 instructions per 8 FMAs); explicit loads keep it at 8 FMAs,
/// 4 loads and 2 broadcasts per step.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use super::{column_blocks, tail_block, Block, Lhs, LANES};
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn small_mm(
        rows: usize,
        k: usize,
        cols: usize,
        lhs: &[f32],
        l: Lhs,
        rhs: &[f32],
        rsb: usize,
        out: &mut [f32],
        off: usize,
        os: usize,
    ) {
        for b in column_blocks(rows, k, cols) {
            match b.width {
                32 => block::<4, 2>(b, lhs, l, rhs, rsb, out, off, os),
                16 => block::<2, 4>(b, lhs, l, rhs, rsb, out, off, os),
                _ => block::<1, 8>(b, lhs, l, rhs, rsb, out, off, os),
            }
        }
    }

    /// [`super::transpose`] in 8×8 register blocks (unpack, shuffle, lane permute), the ragged
    /// edges scalar.
    ///
    /// # Safety
    /// The CPU must support AVX2; `src` holds `rows · cols` floats, `dst` `(cols − 1)·ld + rows`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn transpose(
        src: &[f32],
        rows: usize,
        cols: usize,
        dst: &mut [f32],
        ld: usize,
    ) {
        use std::arch::x86_64::{
            _mm256_permute2f128_ps, _mm256_shuffle_ps, _mm256_unpackhi_ps, _mm256_unpacklo_ps,
        };
        let (rb, cb) = (rows / 8 * 8, cols / 8 * 8);
        for r in (0..rb).step_by(8) {
            for c in (0..cb).step_by(8) {
                // SAFETY: rows r..r+8 and columns c..c+8 lie inside the rows × cols source, and
                // the transposed block inside the cols × rows destination.
                unsafe {
                    let p = src.as_ptr().add(r * cols + c);
                    let x: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(p.add(i * cols)));
                    let (t0, t1) = (
                        _mm256_unpacklo_ps(x[0], x[1]),
                        _mm256_unpackhi_ps(x[0], x[1]),
                    );
                    let (t2, t3) = (
                        _mm256_unpacklo_ps(x[2], x[3]),
                        _mm256_unpackhi_ps(x[2], x[3]),
                    );
                    let (t4, t5) = (
                        _mm256_unpacklo_ps(x[4], x[5]),
                        _mm256_unpackhi_ps(x[4], x[5]),
                    );
                    let (t6, t7) = (
                        _mm256_unpacklo_ps(x[6], x[7]),
                        _mm256_unpackhi_ps(x[6], x[7]),
                    );
                    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                    let y = [
                        _mm256_permute2f128_ps::<0x20>(s0, s4),
                        _mm256_permute2f128_ps::<0x20>(s1, s5),
                        _mm256_permute2f128_ps::<0x20>(s2, s6),
                        _mm256_permute2f128_ps::<0x20>(s3, s7),
                        _mm256_permute2f128_ps::<0x31>(s0, s4),
                        _mm256_permute2f128_ps::<0x31>(s1, s5),
                        _mm256_permute2f128_ps::<0x31>(s2, s6),
                        _mm256_permute2f128_ps::<0x31>(s3, s7),
                    ];
                    let q = dst.as_mut_ptr().add(c * ld + r);
                    for (i, yi) in y.iter().enumerate() {
                        _mm256_storeu_ps(q.add(i * ld), *yi);
                    }
                }
            }
        }
        super::transpose_part(src, (rows, cols), dst, ld, (rb, cb));
    }

    /// `dst += src` for the few lanes of a partial vector. Kept out of line and out of the
    /// AVX2 context: there LLVM turns this loop into `vmaskmovps`, whose masked store is
    /// microcoded on AMD Zen and was a tenth of this kernel's time.
    #[inline(never)]
    fn add_tail(dst: &mut [f32], src: &[f32]) {
        for (d, c) in dst.iter_mut().zip(src) {
            *d += c;
        }
    }

    /// One column block of `8·NV` lanes, `R` rows at a time.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    fn block<const NV: usize, const R: usize>(
        b: Block,
        lhs: &[f32],
        l: Lhs,
        rhs: &[f32],
        rsb: usize,
        out: &mut [f32],
        off: usize,
        os: usize,
    ) {
        let (w, nl) = (8 * NV, b.nl);
        let mut r = 0;
        while r < b.rows {
            let live = (b.rows - r).min(R);
            // rows past the end repeat the last row; their sums are not written
            let roff: [usize; R] = std::array::from_fn(|i| l.off + (r + i).min(b.rows - 1) * l.rs);
            let mut acc = [[_mm256_setzero_ps(); NV]; R];
            for j in 0..b.k {
                let start = j * rsb + b.lb;
                let tail;
                let src: &[f32] = if start + w <= rhs.len() {
                    &rhs[start..start + w]
                } else {
                    tail = tail_block::<LANES>(rhs, start);
                    &tail[..w]
                };
                // SAFETY: `src` holds `w = 8·NV` floats, so every 8-float load is in bounds.
                let bv: [__m256; NV] =
                    std::array::from_fn(|q| unsafe { _mm256_loadu_ps(src.as_ptr().add(8 * q)) });
                for (acc_r, ro) in acc.iter_mut().zip(&roff) {
                    let a = _mm256_set1_ps(lhs[ro + j * l.cs]);
                    for (c, bq) in acc_r.iter_mut().zip(&bv) {
                        *c = _mm256_fmadd_ps(a, *bq, *c);
                    }
                }
            }
            for (i, acc_r) in acc.iter().enumerate().take(live) {
                let o = off + (r + i) * os + b.lb;
                let dst = &mut out[o..o + nl];
                // whole vectors straight into `out`, the last partial one through a buffer
                let full = nl / 8;
                for (q, c) in acc_r.iter().enumerate().take(full) {
                    // SAFETY: `dst` holds `nl ≥ 8·full` floats, so lanes 8q..8q+8 are in it.
                    unsafe {
                        let p = dst.as_mut_ptr().add(8 * q);
                        _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), *c));
                    }
                }
                if full < NV && !nl.is_multiple_of(8) {
                    let mut tmp = [0f32; 8];
                    // SAFETY: `tmp` holds 8 floats.
                    unsafe { _mm256_storeu_ps(tmp.as_mut_ptr(), acc_r[full]) };
                    add_tail(&mut dst[8 * full..], &tmp);
                }
            }
            r += R;
        }
    }
}

/// Column blocks of 32, 16 or 8 lanes (the narrowest that covers what is left, so an 8-wide
/// right-hand side wastes no lanes), each with eight vector accumulators (2 rows × 4 vectors,
/// 4 × 2 or 8 × 1) that stay in registers over the `k` loop.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn small_mm_impl(
    rows: usize,
    k: usize,
    cols: usize,
    lhs: &[f32],
    l: Lhs,
    rhs: &[f32],
    rsb: usize,
    out: &mut [f32],
    off: usize,
    os: usize,
) {
    for b in column_blocks(rows, k, cols) {
        match b.width {
            32 => block::<32, 2>(b, lhs, l, rhs, rsb, out, off, os),
            16 => block::<16, 4>(b, lhs, l, rhs, rsb, out, off, os),
            _ => block::<8, 8>(b, lhs, l, rhs, rsb, out, off, os),
        }
    }
}

#[derive(Clone, Copy)]
struct Block {
    rows: usize,
    k: usize,
    /// first column
    lb: usize,
    /// lanes: 32, 16 or 8
    width: usize,
    /// columns to write (at most the width)
    nl: usize,
}

/// The column blocks covering `cols` columns, each the narrowest of 32, 16 or 8 lanes that
/// covers what is left.
fn column_blocks(rows: usize, k: usize, cols: usize) -> impl Iterator<Item = Block> {
    let mut lb = 0;
    std::iter::from_fn(move || {
        (lb < cols).then(|| {
            let rest = cols - lb;
            let width = match rest {
                17.. => 32,
                9..=16 => 16,
                _ => 8,
            };
            let b = Block {
                rows,
                k,
                lb,
                width,
                nl: rest.min(width),
            };
            lb += width;
            b
        })
    })
}

/// One column block of width `W`, `R` rows at a time.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block<const W: usize, const R: usize>(
    b: Block,
    lhs: &[f32],
    l: Lhs,
    rhs: &[f32],
    rsb: usize,
    out: &mut [f32],
    off: usize,
    os: usize,
) {
    let nl = b.nl;
    let mut r = 0;
    while r < b.rows {
        let live = (b.rows - r).min(R);
        // rows past the end repeat the last row; their sums are not written
        let roff: [usize; R] = std::array::from_fn(|i| l.off + (r + i).min(b.rows - 1) * l.rs);
        let mut acc = [[0f32; W]; R];
        for j in 0..b.k {
            let start = j * rsb + b.lb;
            let tail;
            let bv: &[f32; W] = if start + W <= rhs.len() {
                rhs[start..start + W].try_into().expect("block of W")
            } else {
                tail = tail_block::<W>(rhs, start);
                &tail
            };
            for (accr, ro) in acc.iter_mut().zip(&roff) {
                let a = lhs[ro + j * l.cs];
                for q in 0..W {
                    accr[q] += a * bv[q];
                }
            }
        }
        for (i, accr) in acc.iter().enumerate().take(live) {
            let o = off + (r + i) * os + b.lb;
            for (dst, c) in out[o..o + nl].iter_mut().zip(accr) {
                *dst += c;
            }
        }
        r += R;
    }
}

/// The values of `rhs` from `start` on, zero-filled to one block.
#[cold]
fn tail_block<const W: usize>(rhs: &[f32], start: usize) -> [f32; W] {
    let mut b = [0f32; W];
    let have = rhs.len().saturating_sub(start).min(W);
    b[..have].copy_from_slice(&rhs[start..start + have]);
    b
}

/// Copies the `rows × cols` matrix `src[off + r·rs + c·cs]` into `dst` as `rows × padded(cols)`
/// (zeros in the padding), applying `f(r, c, value)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack(
    dst: &mut Vec<f32>,
    rows: usize,
    cols: usize,
    src: &[f32],
    off: usize,
    rs: usize,
    cs: usize,
    f: impl Fn(usize, usize, f32) -> f32,
) {
    let w = padded(cols);
    dst.clear();
    dst.resize(rows * w, 0.0);
    for r in 0..rows {
        for c in 0..cols {
            dst[r * w + c] = f(r, c, src[off + r * rs + c * cs]);
        }
    }
}

/// How [`pack_pair`] combines its two matrices.
#[derive(Clone, Copy)]
pub(crate) enum Combine {
    Add,
    Mul,
}

/// `dst = a ∘ b` (element-wise, both contiguous `r × c`), or its transpose when `transpose`,
/// with rows zero-padded to whole blocks. Written with row iterators so the bounds checks
/// disappear and the non-transposed case vectorises: this runs once per small product.
pub(crate) fn pack_pair(
    dst: &mut Vec<f32>,
    r: usize,
    c: usize,
    a: &[f32],
    b: &[f32],
    op: Combine,
    transpose: bool,
) {
    let rows = if transpose { c } else { r };
    let w = padded(if transpose { r } else { c });
    dst.clear();
    dst.resize(rows * w, 0.0);
    pack_pair_into(dst, r, c, a, b, op, transpose);
}

/// [`pack_pair`] into a slice of exactly the packed size, already zero in the padding.
pub(crate) fn pack_pair_into(
    dst: &mut [f32],
    r: usize,
    c: usize,
    a: &[f32],
    b: &[f32],
    op: Combine,
    transpose: bool,
) {
    let f = |x: f32, y: f32| match op {
        Combine::Add => x + y,
        Combine::Mul => x * y,
    };
    let (a, b) = (&a[..r * c], &b[..r * c]);
    let w = padded(if transpose { r } else { c });
    if c == 0 {
        return;
    }
    if transpose {
        for (i, (ar, br)) in a.chunks_exact(c).zip(b.chunks_exact(c)).enumerate() {
            for (dcol, (x, y)) in dst[i..].iter_mut().step_by(w).zip(ar.iter().zip(br)) {
                *dcol = f(*x, *y);
            }
        }
    } else {
        for (drow, (ar, br)) in dst
            .chunks_exact_mut(w)
            .zip(a.chunks_exact(c).zip(b.chunks_exact(c)))
        {
            for (d, (x, y)) in drow.iter_mut().zip(ar.iter().zip(br)) {
                *d = f(*x, *y);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(rows: usize, k: usize, cols: usize, a: &[f32], l: Lhs, b: &[f32]) -> Vec<f32> {
        let w = padded(cols);
        let mut o = vec![0f32; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                o[r * cols + c] = (0..k)
                    .map(|j| a[l.off + r * l.rs + j * l.cs] * b[j * w + c])
                    .sum();
            }
        }
        o
    }

    #[test]
    fn transpose_matches_the_scalar_loop_at_ragged_sizes() {
        for (rows, cols) in [
            (1, 1),
            (8, 8),
            (64, 25),
            (25, 64),
            (9, 17),
            (16, 3),
            (3, 16),
            (0, 5),
        ] {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let mut got = vec![-1f32; rows * cols];
            transpose(&src, rows, cols, &mut got);
            let mut want = vec![-1f32; rows * cols];
            transpose_part(&src, (rows, cols), &mut want, rows, (0, 0));
            assert_eq!(got, want, "{rows}x{cols}");
            // into padded rows: the padding is left alone
            let ld = rows + 3;
            let mut padded = vec![-1f32; cols * ld];
            transpose_ld(&src, rows, cols, &mut padded, ld);
            for (c, row) in padded.chunks_exact(ld).enumerate() {
                assert_eq!(
                    row[..rows],
                    want[c * rows..][..rows],
                    "{rows}x{cols} ld {ld}"
                );
                assert!(row[rows..].iter().all(|v| *v == -1.0));
            }
            assert!(want
                .iter()
                .enumerate()
                .all(|(i, v)| *v == src[(i % rows.max(1)) * cols + i / rows.max(1)]));
        }
    }

    #[test]
    fn pack_pair_combines_and_transposes() {
        let (r, c) = (3, 5);
        let a: Vec<f32> = (0..r * c).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..r * c).map(|i| 0.5 + i as f32).collect();
        let mut d = Vec::new();
        pack_pair(&mut d, r, c, &a, &b, Combine::Add, false);
        let mut want = Vec::new();
        pack(&mut want, r, c, &a, 0, c, 1, |i, j, v| v + b[i * c + j]);
        assert_eq!(d, want);
        pack_pair(&mut d, r, c, &a, &b, Combine::Mul, true);
        pack(&mut want, c, r, &a, 0, 1, c, |j, i, v| v * b[i * c + j]);
        assert_eq!(d, want);
    }

    #[test]
    fn matches_a_naive_product_for_odd_shapes_and_strides() {
        for &(rows, k, cols) in &[
            (1, 1, 1),
            (7, 25, 25),
            (64, 25, 20),
            (5, 3, 33),
            (2, 40, 70),
            (9, 25, 8),
            (11, 4, 12),
            (3, 7, 41),
            (13, 25, 25),
            (25, 25, 16),
            (6, 2, 48),
        ] {
            let l = Lhs {
                off: 3,
                rs: 1,
                cs: rows + 2,
            };
            let a: Vec<f32> = (0..3 + rows + k * (rows + 2))
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let src: Vec<f32> = (0..k * cols)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 24.0)
                .collect();
            let mut b = Vec::new();
            pack(&mut b, k, cols, &src, 0, cols, 1, |_, _, v| v);
            let want = naive(rows, k, cols, &a, l, &b);
            // packed, and read in place with the unpadded row stride
            for (rhs, rsb) in [(&b, padded(cols)), (&src, cols)] {
                // the dispatched kernel, the AVX2 one forced where the CPU has it (so the test
                // names the path it checks), and the portable one
                type Kernel =
                    fn(usize, usize, usize, &[f32], Lhs, &[f32], usize, &mut [f32], usize, usize);
                #[allow(unused_mut)]
                let mut kernels = vec![small_mm as Kernel, small_mm_impl as Kernel];
                #[cfg(target_arch = "x86_64")]
                {
                    #[allow(clippy::too_many_arguments, unsafe_code)]
                    fn avx2_path(
                        rows: usize,
                        k: usize,
                        cols: usize,
                        lhs: &[f32],
                        l: Lhs,
                        rhs: &[f32],
                        rsb: usize,
                        out: &mut [f32],
                        off: usize,
                        os: usize,
                    ) {
                        // SAFETY: only pushed when the CPU has AVX2 and FMA.
                        unsafe { avx2::small_mm(rows, k, cols, lhs, l, rhs, rsb, out, off, os) }
                    }
                    if has_avx2_fma() {
                        kernels.push(avx2_path as Kernel);
                    }
                }
                for kernel in kernels {
                    let mut out = vec![1f32; rows * cols];
                    kernel(rows, k, cols, &a, l, rhs, rsb, &mut out, 0, cols);
                    for (o, w) in out.iter().zip(&want) {
                        let e = (o - 1.0 - w).abs();
                        assert!(e < 1e-4, "{rows}x{k}x{cols}: {o} vs {w} + 1");
                    }
                }
            }
        }
    }
}
