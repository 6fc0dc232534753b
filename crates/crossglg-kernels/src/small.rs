//! A register-blocked product of a small strided matrix with a small zero-padded one, for the
//! graph aggregations whose adjacency differs per sample (CTR-GCN per channel, InfoGCN per
//! frame). They are thousands of 25×25 products per layer: too small for a `gemm` call to pay
//! off, large enough that a scalar loop (what the default x86-64 target gives) costs a fifth of
//! a CTR-GCN training step. On x86-64 CPUs with AVX2 and FMA an intrinsics version is picked at
//! run time; the portable version is the fallback.

use std::mem::MaybeUninit;

use crate::util::uninit_view;

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

/// The operands of one small product: `lhs(r, j)` (strided, [`Lhs`]) for `r < rows`, `j < k`,
/// times the `k × cols` matrix `rhs` with rows `rsb` floats apart.
#[derive(Clone, Copy)]
pub(crate) struct Mm<'a> {
    pub rows: usize,
    pub k: usize,
    pub cols: usize,
    pub lhs: &'a [f32],
    pub l: Lhs,
    pub rhs: &'a [f32],
    pub rsb: usize,
}

/// `out[off + r·os + l] += Σ_j lhs(r, j) · rhs[j·rsb + l]` for `r < rows`, `l < cols`,
/// `j < k`. The kernel reads whole blocks of `LANES` values from each row of `rhs` and drops
/// the lanes past `cols`, so a row stride `rsb ≥ cols` works without copying (lanes past the
/// end of the slice read as zero); [`pack`] makes a transposed or modified copy when needed.
///
/// Panics on an index outside a slice (an internal bug: callers size everything from
/// validated shapes).
pub(crate) fn small_mm(m: Mm, out: &mut [f32], off: usize, os: usize) {
    small_mm_with::<true>(m, uninit_view(out), off, os)
}

/// [`small_mm`] that writes `out` instead of adding to it, so `out` may be uninitialised:
/// callers whose every output element comes from one product skip zero-filling the buffer first
/// (the head aggregation's and the attention's zero fills were 4 % of InfoGCN's inference).
/// Initialises exactly the elements `out[off + r·os + l]`, `r < rows`, `l < cols`.
pub(crate) fn small_mm_set(m: Mm, out: &mut [MaybeUninit<f32>], off: usize, os: usize) {
    small_mm_with::<false>(m, out, off, os)
}

#[inline(always)]
fn small_mm_with<const ACC: bool>(m: Mm, out: &mut [MaybeUninit<f32>], off: usize, os: usize) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        #[allow(unsafe_code)]
        unsafe {
            avx2::small_mm::<ACC>(m, out, off, os)
        };
        return;
    }
    small_mm_impl::<ACC>(m, out, off, os)
}

/// The head aggregation's products for all heads of one frame:
/// `out[off + h·hs_out + r·os + u] = Σ_j lhs(r, j) · rhs[h·hs_map + j·rsb + u]` for
/// `h < heads`, `r < rows`, `u < cols`, `j < k` (head `h`'s map `hs_map` floats after head 0's
/// in `m.rhs`); map rows are zero past `cols` up to a whole block of [`LANES`] (as [`pack`]
/// leaves them). Writes (does not add to) exactly those elements.
///
/// With AVX-512 and `cols ≤ 32` one pass serves three heads: 4 rows × 3 heads × 2 vectors stay
/// in 24 registers, so each broadcast left-hand value feeds six 16-lane FMAs (the AVX2 kernel,
/// one head at a time, reloads the left values for every head and holds 8 accumulators).
/// Elsewhere, [`small_mm_set`] per head.
pub(crate) fn heads_mm_set(
    m: Mm,
    (heads, hs_map, hs_out): (usize, usize, usize),
    out: &mut [MaybeUninit<f32>],
    off: usize,
    os: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if m.cols <= LANES && has_avx512() {
        // SAFETY: the CPU supports AVX-512F (checked just above).
        #[allow(unsafe_code)]
        unsafe {
            avx512::heads_mm_set(m, (heads, hs_map, hs_out), out, off, os)
        };
        return;
    }
    heads_mm_set_each(m, (heads, hs_map, hs_out), out, off, os)
}

/// [`heads_mm_set`] one head at a time through [`small_mm_set`]: the fallback and the reference.
fn heads_mm_set_each(
    m: Mm,
    (heads, hs_map, hs_out): (usize, usize, usize),
    out: &mut [MaybeUninit<f32>],
    off: usize,
    os: usize,
) {
    for h in 0..heads {
        let rhs = &m.rhs[h * hs_map..];
        small_mm_set(Mm { rhs, ..m }, out, off + h * hs_out, os);
    }
}

/// Whether this CPU has AVX-512F (the standard library caches the answer).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use super::{Lhs, Mm, LANES};
    use std::arch::x86_64::{
        __m512, __mmask16, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_set1_ps,
        _mm512_setzero_ps,
    };
    use std::mem::MaybeUninit;

    /// # Safety
    /// The CPU must support AVX-512F; `cols ≤ 32`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn heads_mm_set(
        m: Mm,
        (heads, hs_map, hs_out): (usize, usize, usize),
        out: &mut [MaybeUninit<f32>],
        off: usize,
        os: usize,
    ) {
        let Mm {
            rows,
            k,
            cols,
            lhs,
            l,
            rhs: maps,
            rsb,
        } = m;
        assert!(
            cols <= LANES,
            "heads_mm_set: {cols} columns, at most {LANES}"
        );
        if rows == 0 || k == 0 || cols == 0 || heads == 0 {
            // degenerate sizes (k = 0 writes zeros) as the reference does them
            return super::heads_mm_set_each(m, (heads, hs_map, hs_out), out, off, os);
        }
        // every read and write below stays inside these bounds
        assert!(
            (heads - 1) * hs_map + (k - 1) * rsb + LANES <= maps.len(),
            "heads_mm_set: maps"
        );
        assert!(
            l.off + (rows - 1) * l.rs + (k - 1) * l.cs < lhs.len(),
            "heads_mm_set: lhs"
        );
        assert!(
            off + (heads - 1) * hs_out + (rows - 1) * os + cols <= out.len(),
            "heads_mm_set: out"
        );
        let masks = [
            (((1u32 << cols.min(16)) - 1) & 0xFFFF) as __mmask16,
            (((1u32 << cols.saturating_sub(16)) - 1) & 0xFFFF) as __mmask16,
        ];
        let g = Geo {
            k,
            lhs,
            l,
            maps,
            hs_map,
            rsb,
            off,
            os,
            hs_out,
            masks,
        };
        let mut h0 = 0;
        while h0 < heads {
            let hg = (heads - h0).min(3);
            let mut r = 0;
            while r < rows {
                let rg = (rows - r).min(4);
                // SAFETY: heads h0..h0 + hg and rows r..r + rg are inside the checked bounds.
                unsafe {
                    match (hg, rg) {
                        (3, 4) => block::<3, 4>(&g, h0, r, out),
                        (3, _) => block::<3, 1>(&g, h0, r, out),
                        (2, 4) => block::<2, 4>(&g, h0, r, out),
                        (2, _) => block::<2, 1>(&g, h0, r, out),
                        (_, 4) => block::<1, 4>(&g, h0, r, out),
                        _ => block::<1, 1>(&g, h0, r, out),
                    }
                }
                r += if rg == 4 { 4 } else { 1 };
            }
            h0 += hg;
        }
    }

    struct Geo<'a> {
        k: usize,
        lhs: &'a [f32],
        l: Lhs,
        maps: &'a [f32],
        hs_map: usize,
        rsb: usize,
        off: usize,
        os: usize,
        hs_out: usize,
        masks: [__mmask16; 2],
    }

    /// Heads `h0..h0 + H`, rows `r..r + R`: `R·H·2` accumulators over the `k` loop.
    ///
    /// # Safety
    /// AVX-512F; the heads and rows lie inside the bounds checked by the caller.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const H: usize, const R: usize>(
        g: &Geo,
        h0: usize,
        r: usize,
        out: &mut [MaybeUninit<f32>],
    ) {
        let mut acc = [[[_mm512_setzero_ps(); 2]; H]; R];
        let (mp, lp) = (g.maps.as_ptr(), g.lhs.as_ptr());
        for j in 0..g.k {
            // SAFETY (whole loop): map rows j of heads h0.. and left values of rows r.. for
            // column j are inside the slices (the caller's bounds).
            let b: [[__m512; 2]; H] = std::array::from_fn(|h| unsafe {
                let p = mp.add((h0 + h) * g.hs_map + j * g.rsb);
                [_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16))]
            });
            for (i, acc_r) in acc.iter_mut().enumerate() {
                let a = _mm512_set1_ps(unsafe { *lp.add(g.l.off + (r + i) * g.l.rs + j * g.l.cs) });
                for (acc_h, bh) in acc_r.iter_mut().zip(&b) {
                    acc_h[0] = _mm512_fmadd_ps(a, bh[0], acc_h[0]);
                    acc_h[1] = _mm512_fmadd_ps(a, bh[1], acc_h[1]);
                }
            }
        }
        let op = out.as_mut_ptr().cast::<f32>();
        for (i, acc_r) in acc.iter().enumerate() {
            for (h, acc_h) in acc_r.iter().enumerate() {
                let o = g.off + (h0 + h) * g.hs_out + (r + i) * g.os;
                // SAFETY: the masks cover the `cols` lanes from `o`, inside `out`.
                unsafe {
                    _mm512_mask_storeu_ps(op.add(o), g.masks[0], acc_h[0]);
                    if g.masks[1] != 0 {
                        _mm512_mask_storeu_ps(op.add(o + 16), g.masks[1], acc_h[1]);
                    }
                }
            }
        }
    }
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

/// The vector instruction sets this crate's kernels run with on this CPU: `avx2+fma`, plus
/// `avx512f` for InfoGCN's head aggregation where the CPU has it, or `portable` (what the
/// compiler makes of plain loops for the build's baseline target).
pub fn simd_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        if has_avx512() {
            return "avx2+fma, avx512f (head aggregation)";
        }
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
    use super::{column_blocks, tail_block, Block, Mm, LANES};
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };
    use std::mem::MaybeUninit;

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn small_mm<const ACC: bool>(
        m: Mm,
        out: &mut [MaybeUninit<f32>],
        off: usize,
        os: usize,
    ) {
        for b in column_blocks(m.rows, m.k, m.cols) {
            match b.width {
                32 => block::<4, 2, ACC>(b, &m, out, off, os),
                16 => block::<2, 4, ACC>(b, &m, out, off, os),
                _ => block::<1, 8, ACC>(b, &m, out, off, os),
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
    fn add_tail(dst: &mut [MaybeUninit<f32>], src: &[f32]) {
        for (d, c) in dst.iter_mut().zip(src) {
            // SAFETY: accumulating kernels get an initialised `out`.
            let old = unsafe { d.assume_init_read() };
            d.write(old + c);
        }
    }

    /// Stores the first `dst.len()` (1 to 7) lanes of `v` straight from the register, 4, 2 and
    /// 1 at a time. Through a stack buffer, LLVM made the copy a `memcpy` call per row (2 % of
    /// InfoGCN's inference, whose 25-wide rows end in one lane).
    #[inline(always)]
    fn store_tail(dst: &mut [MaybeUninit<f32>], v: __m256) {
        use std::arch::x86_64::{
            _mm256_castps256_ps128, _mm256_extractf128_ps, _mm_castps_pd, _mm_movehl_ps,
            _mm_store_sd, _mm_store_ss, _mm_storeu_ps,
        };
        let mut m = dst.len();
        debug_assert!((1..8).contains(&m), "a partial vector has 1 to 7 lanes");
        let mut q = dst.as_mut_ptr().cast::<f32>();
        // SAFETY: each store writes only lanes below `m`, inside `dst`; the intrinsics need SSE2
        // and AVX, which every caller's AVX2 context has.
        unsafe {
            let mut x = _mm256_castps256_ps128(v);
            if m >= 4 {
                _mm_storeu_ps(q, x);
                x = _mm256_extractf128_ps::<1>(v);
                q = q.add(4);
                m -= 4;
            }
            if m >= 2 {
                _mm_store_sd(q.cast::<f64>(), _mm_castps_pd(x));
                x = _mm_movehl_ps(x, x);
                q = q.add(2);
                m -= 2;
            }
            if m == 1 {
                _mm_store_ss(q, x);
            }
        }
    }

    /// One column block of `8·NV` lanes, `R` rows at a time.
    #[target_feature(enable = "avx2,fma")]
    fn block<const NV: usize, const R: usize, const ACC: bool>(
        b: Block,
        m: &Mm,
        out: &mut [MaybeUninit<f32>],
        off: usize,
        os: usize,
    ) {
        let (lhs, l, rhs, rsb) = (m.lhs, m.l, m.rhs, m.rsb);
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
                // Written out for q < 4 rather than as a loop: as a loop over the accumulator
                // array, the overwriting form became a `memcpy` call per row.
                let store = |q: usize, dst: &mut [MaybeUninit<f32>]| {
                    if q < NV && q < full {
                        // SAFETY: `dst` holds `nl ≥ 8·full` floats, so lanes 8q..8q+8 are in
                        // it; when accumulating they are initialised (the caller's contract).
                        unsafe {
                            let p = dst.as_mut_ptr().add(8 * q).cast::<f32>();
                            let v = if ACC {
                                _mm256_add_ps(_mm256_loadu_ps(p), acc_r[q])
                            } else {
                                acc_r[q]
                            };
                            _mm256_storeu_ps(p, v);
                        }
                    }
                };
                const { assert!(NV <= 4) };
                store(0, dst);
                store(1, dst);
                store(2, dst);
                store(3, dst);
                if full < NV && !nl.is_multiple_of(8) {
                    let rest = &mut dst[8 * full..];
                    if ACC {
                        let mut tmp = [0f32; 8];
                        // SAFETY: `tmp` holds 8 floats.
                        unsafe { _mm256_storeu_ps(tmp.as_mut_ptr(), acc_r[full]) };
                        add_tail(rest, &tmp);
                    } else {
                        store_tail(rest, acc_r[full]);
                    }
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
fn small_mm_impl<const ACC: bool>(m: Mm, out: &mut [MaybeUninit<f32>], off: usize, os: usize) {
    for b in column_blocks(m.rows, m.k, m.cols) {
        match b.width {
            32 => block::<32, 2, ACC>(b, &m, out, off, os),
            16 => block::<16, 4, ACC>(b, &m, out, off, os),
            _ => block::<8, 8, ACC>(b, &m, out, off, os),
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
fn block<const W: usize, const R: usize, const ACC: bool>(
    b: Block,
    m: &Mm,
    out: &mut [MaybeUninit<f32>],
    off: usize,
    os: usize,
) {
    let (lhs, l, rhs, rsb) = (m.lhs, m.l, m.rhs, m.rsb);
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
                // SAFETY: accumulating kernels get an initialised `out`.
                #[allow(unsafe_code)]
                let v = if ACC {
                    (unsafe { dst.assume_init_read() }) + c
                } else {
                    *c
                };
                dst.write(v);
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

    /// The AVX-512 all-heads kernel (where the CPU has it) and the dispatched one against one
    /// `small_mm_set` per head, with gaps between rows and heads that must stay untouched.
    #[test]
    fn heads_mm_set_matches_one_product_per_head() {
        for &(rows, k, cols, heads) in &[
            (16, 25, 25, 3),
            (5, 25, 25, 3),
            (17, 7, 20, 2),
            (3, 1, 1, 1),
            (4, 3, 16, 4),
            (6, 9, 17, 5),
            (1, 25, 32, 3),
            (9, 0, 5, 2),
        ] {
            let l = Lhs {
                off: 2,
                rs: k + 3,
                cs: 1,
            };
            let a: Vec<f32> = (0..2 + rows * (k + 3))
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            // maps padded to LANES per row, zeros past `cols`; heads 5 rows apart
            let hs_map = (k + 5) * LANES;
            let maps: Vec<f32> = (0..heads * hs_map)
                .map(|i| match (i % hs_map) / LANES < k && i % LANES < cols {
                    true => ((i * 53 % 97) as f32 - 48.0) / 24.0,
                    false => 0.0,
                })
                .collect();
            let (off, os) = (3, cols + 2);
            let hs_out = rows * os + 4;
            let len = off + heads * hs_out;
            let run = |f: &dyn Fn(&mut [MaybeUninit<f32>])| -> Vec<f32> {
                let mut out = vec![MaybeUninit::new(-7f32); len];
                f(&mut out);
                // SAFETY: initialised above.
                #[allow(unsafe_code)]
                out.iter().map(|v| unsafe { v.assume_init() }).collect()
            };
            let m = Mm {
                rows,
                k,
                cols,
                lhs: &a,
                l,
                rhs: &maps,
                rsb: LANES,
            };
            let hs = (heads, hs_map, hs_out);
            let want = run(&|o| heads_mm_set_each(m, hs, o, off, os));
            let written = |i: usize| {
                i >= off && {
                    let (h, rest) = ((i - off) / hs_out, (i - off) % hs_out);
                    h < heads && rest < rows * os && rest % os < cols
                }
            };
            for (i, w) in want.iter().enumerate() {
                assert_eq!(*w == -7.0, !written(i), "reference at {i}");
            }
            let mut paths: Vec<(&str, Vec<f32>)> =
                vec![("dispatched", run(&|o| heads_mm_set(m, hs, o, off, os)))];
            #[cfg(target_arch = "x86_64")]
            if has_avx512() {
                // SAFETY: the CPU has AVX-512F.
                #[allow(unsafe_code)]
                let got = run(&|o| unsafe { avx512::heads_mm_set(m, hs, o, off, os) });
                paths.push(("avx512", got));
            }
            for (path, got) in paths {
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                        "{path} {rows}x{k}x{cols} heads {heads} at {i}: {g} vs {w}"
                    );
                }
            }
        }
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
            // partial last vectors of 3, 7, 5 and 2 lanes
            (4, 6, 19),
            (3, 5, 23),
            (5, 9, 29),
            (2, 3, 26),
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
                // names the path it checks), and the portable one; each adding to `out` (true)
                // and overwriting it (false)
                type Kernel = fn(Mm, &mut [MaybeUninit<f32>], usize, usize);
                #[allow(unsafe_code)]
                fn dispatched(m: Mm, out: &mut [MaybeUninit<f32>], off: usize, os: usize) {
                    // SAFETY: the test's buffer is initialised.
                    small_mm(m, unsafe { crate::util::assume_written(out) }, off, os)
                }
                #[allow(unused_mut)]
                let mut kernels = vec![
                    (dispatched as Kernel, true),
                    (small_mm_set as Kernel, false),
                    (small_mm_impl::<true> as Kernel, true),
                    (small_mm_impl::<false> as Kernel, false),
                ];
                #[cfg(target_arch = "x86_64")]
                {
                    #[allow(unsafe_code)]
                    fn avx2_path<const ACC: bool>(
                        m: Mm,
                        out: &mut [MaybeUninit<f32>],
                        off: usize,
                        os: usize,
                    ) {
                        // SAFETY: only pushed when the CPU has AVX2 and FMA.
                        unsafe { avx2::small_mm::<ACC>(m, out, off, os) }
                    }
                    if has_avx2_fma() {
                        kernels.push((avx2_path::<true> as Kernel, true));
                        kernels.push((avx2_path::<false> as Kernel, false));
                    }
                }
                for (kernel, acc) in kernels {
                    // rows of `cols` values with a gap of 2 between them, which must stay as is
                    let os = cols + 2;
                    let mut out = vec![MaybeUninit::new(1f32); rows * os];
                    let m = Mm {
                        rows,
                        k,
                        cols,
                        lhs: &a,
                        l,
                        rhs,
                        rsb,
                    };
                    kernel(m, &mut out, 0, os);
                    // SAFETY: initialised above (and only written since).
                    #[allow(unsafe_code)]
                    let out: Vec<f32> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
                    let base = if acc { 1.0 } else { 0.0 };
                    for (r, row) in out.chunks_exact(os).enumerate() {
                        for (o, w) in row[..cols].iter().zip(&want[r * cols..]) {
                            let e = (o - base - w).abs();
                            assert!(e < 1e-4, "{rows}x{k}x{cols} acc {acc}: {o} vs {w} + {base}");
                        }
                        assert!(row[cols..].iter().all(|v| *v == 1.0), "gap written");
                    }
                }
            }
        }
    }
}
