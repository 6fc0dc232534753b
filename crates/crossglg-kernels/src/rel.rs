//! CTR-GCN's channel-wise topology refinement before the aggregation: the pairwise relations
//! `tanh(φ(x)ᵤ − ψ(x)ᵥ)` and their per-subset 1×1 convolution `conv4`.
//!
//! Why: in candle these were a broadcast subtraction (strided slow path), a scalar libm `tanh`
//! per element, a concatenation with a row of ones (the bias trick) and a broadcast batched
//! matmul that copies the weights per sample; together 10-30 ms per block at the bench shapes
//! for a few million multiply-adds. Here: one pass with a vectorisable `tanh` that writes the
//! ones row in place, and one `gemm` per (sample, subset) against the shared weights.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::mm::{gemm, View};
use crate::small::with_avx2;
use crate::util::{
    add_into, build_chunks, check_cpu_f32, group_size, slice, tensor, with_all, zeroed_chunks,
    zeros,
};

const REL: &str = "pairwise_tanh";
const MM: &str = "subset_weight_mm";

/// `exp(x)` to about 2e-7 relative, as straight-line arithmetic the compiler vectorises (the
/// libm call is not): `2^k · p(r)` for `x = k·ln 2 + r`, `|r| ≤ ln 2 / 2`, `p` the degree-6
/// Taylor polynomial, `ln 2` split in two so the reduction stays exact. Inputs are clamped to [-87, 88] (the normal f32 range).
#[inline(always)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    let y = x.clamp(-87.0, 88.0);
    // k = round(y / ln 2) by adding 1.5·2^23: the sum's low mantissa bits hold k + 2^22 as an
    // integer. `f32::round` and `as i32` (saturating) do not map to single vector
    // instructions, and the conversion was done lane by lane.
    const SHIFT: f32 = 12_582_912.0;
    let kf = y * std::f32::consts::LOG2_E + SHIFT;
    let k = kf - SHIFT;
    // ln 2 in two parts (Cody-Waite): k·LN2_HI is exact, so r keeps its precision for large k
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let r = (y - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r / 720.0)))));
    // 2^k through the exponent bits; k is in [-126, 127], so k + 127 is the biased exponent
    let biased = kf.to_bits().wrapping_sub(SHIFT.to_bits()).wrapping_add(127);
    p * f32::from_bits(biased << 23)
}

/// `tanh(x)` to about 2e-7 absolute, vectorisable: `(e − 1) / (e + 1)` with `e = exp(2x)`.
/// Beyond |x| = 9 tanh is ±1 in f32.
#[inline(always)]
pub(crate) fn fast_tanh(x: f32) -> f32 {
    let e = fast_exp(2.0 * x.clamp(-9.0, 9.0));
    (e - 1.0) / (e + 1.0)
}

/// `q: (N, 2·S·R, V)` (rows `s·R + r` are `φ` of subset `s`, rows `S·R + s·R + r` its `ψ`) →
/// `(N, S, R + 1, V·V)` with `out[n, s, r, u·V + v] = tanh(q[n, s·R + r, u] − q[n, S·R + s·R + r, v])`
/// for `r < R` and a last row of ones per subset (so `conv4`'s bias is a weight column).
/// Differentiable in `q`.
pub fn pairwise_tanh(q: &Tensor, subsets: usize) -> Result<Tensor> {
    check_cpu_f32(q, REL, "input")?;
    let (_, rows, _) = q.dims3()?;
    if subsets == 0 || !rows.is_multiple_of(2 * subsets) {
        bail!("{REL}: {rows} rows do not split into 2 × {subsets} subsets")
    }
    q.contiguous()?.apply_op1(PairwiseTanh { s: subsets })
}

struct PairwiseTanh {
    s: usize,
}

impl CustomOp1 for PairwiseTanh {
    fn name(&self) -> &'static str {
        REL
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, rows, v) = l.shape().dims3()?;
        let q = slice(st, l, REL)?;
        let (s, r) = (self.s, rows / (2 * self.s));
        let (vv, plane) = (v * v, (r + 1) * v * v);
        // one chunk per (sample, subset); its last row (the ones) is written by the fill
        let out = build_chunks(
            n * s * plane,
            plane,
            vv,
            |_, row| if row == r { 1.0 } else { 0.0 },
            |ns, o| {
                let (ni, si) = (ns / s, ns % s);
                let qn = &q[ni * rows * v..][..rows * v];
                with_avx2(
                    #[inline(always)]
                    || {
                        for ri in 0..r {
                            let a = &qn[(si * r + ri) * v..][..v];
                            let b = &qn[((s + si) * r + ri) * v..][..v];
                            for (u, orow) in
                                o[ri * v * v..][..v * v].chunks_exact_mut(v).enumerate()
                            {
                                let au = a[u];
                                for (e, bv) in orow.iter_mut().zip(b) {
                                    *e = fast_tanh(au - bv);
                                }
                            }
                        }
                    },
                );
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((n, s, r + 1, v * v))))
    }

    fn bwd(&self, q: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (n, rows, v) = q.dims3()?;
        let (s, r) = (self.s, rows / (2 * self.s));
        let plane = (r + 1) * v * v;
        let dq = with_all([res, grad], REL, |[t, g]| {
            let mut dq = zeros(n * rows * v);
            dq.par_chunks_mut((rows * v).max(1))
                .enumerate()
                .for_each(|(ni, dqn)| {
                    let mut col = vec![0f32; v];
                    for si in 0..s {
                        let base = (ni * s + si) * plane;
                        for ri in 0..r {
                            let (da, db) = (si * r + ri, (s + si) * r + ri);
                            col.fill(0.0);
                            for u in 0..v {
                                let off = base + (ri * v + u) * v;
                                let mut row = 0f32;
                                for ((c, tv), gv) in
                                    col.iter_mut().zip(&t[off..off + v]).zip(&g[off..off + v])
                                {
                                    let d = gv * (1.0 - tv * tv);
                                    row += d;
                                    *c += d;
                                }
                                dqn[da * v + u] = row;
                            }
                            for (e, c) in dqn[db * v..][..v].iter_mut().zip(&col) {
                                *e = -c;
                            }
                        }
                    }
                });
            Ok(dq)
        })?;
        Ok(Some(tensor(dq, q.shape())?))
    }
}

/// `w: (S, C, K)`, `x: (N, S, K, L)` → `(N, S, C, L)` with `out[n, s] = w[s] · x[n, s]`: one
/// gemm per (sample, subset) against the shared weights. Differentiable in both.
pub fn subset_weight_mm(w: &Tensor, x: &Tensor) -> Result<Tensor> {
    check_cpu_f32(w, MM, "weight")?;
    check_cpu_f32(x, MM, "input")?;
    let (s, _, k) = w.dims3()?;
    let (_, sx, kx, _) = x.dims4()?;
    if (sx, kx) != (s, k) {
        bail!(
            "{MM}: weight {:?} does not fit input {:?} (needs (S, C, K) and (N, S, K, L))",
            w.dims(),
            x.dims()
        )
    }
    w.contiguous()?.apply_op2(&x.contiguous()?, SubsetWeightMm)
}

struct SubsetWeightMm;

#[derive(Clone, Copy)]
struct Geo {
    n: usize,
    s: usize,
    c: usize,
    k: usize,
    l: usize,
}

impl Geo {
    fn new(w: &[usize], x: &[usize]) -> Self {
        Self {
            n: x[0],
            s: w[0],
            c: w[1],
            k: w[2],
            l: x[3],
        }
    }
}

impl CustomOp2 for SubsetWeightMm {
    fn name(&self) -> &'static str {
        MM
    }

    fn cpu_fwd(
        &self,
        ws: &CpuStorage,
        wl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geo::new(wl.dims(), xl.dims());
        let (w, x) = (slice(ws, wl, MM)?, slice(xs, xl, MM)?);
        let plane = g.c * g.l;
        // each (sample, subset) block is written by its gemm right after its fill, in cache
        // (a buffer-wide zero pass first cost 15 MB of cold writes per CTR-GCN block)
        let out = zeroed_chunks(g.n * g.s * plane, plane, |ns, o| {
            let si = ns % g.s;
            gemm(
                g.c,
                g.l,
                g.k,
                o,
                View::new(0, g.l, 1),
                false,
                w,
                View::new(si * g.c * g.k, g.k, 1),
                x,
                View::new(ns * g.k * g.l, g.l, 1),
            );
        });
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.s, g.c, g.l))))
    }

    fn bwd(
        &self,
        w: &Tensor,
        x: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = Geo::new(w.dims(), x.dims());
        let (dw, dx) = with_all([w, x, grad], MM, |[wd, xd, gd]| {
            let (xp, op) = (g.k * g.l, g.c * g.l);
            // dx[n, s] = w[s]ᵀ · grad[n, s]
            let mut dx = zeros(g.n * g.s * xp);
            dx.par_chunks_mut(xp.max(1))
                .enumerate()
                .for_each(|(ns, d)| {
                    let si = ns % g.s;
                    gemm(
                        g.k,
                        g.l,
                        g.c,
                        d,
                        View::new(0, g.l, 1),
                        false,
                        wd,
                        View::new(si * g.c * g.k, 1, g.k),
                        gd,
                        View::new(ns * op, g.l, 1),
                    );
                });
            // dw[s] = Σ_n grad[n, s] · x[n, s]ᵀ, in fixed sample groups (bit-identical sums
            // whatever the thread count)
            let gs = group_size(g.n);
            let nw = g.s * g.c * g.k;
            let dw = (0..g.n.div_ceil(gs))
                .into_par_iter()
                .map(|gi| {
                    let mut acc = vec![0f32; nw];
                    for ni in gi * gs..((gi + 1) * gs).min(g.n) {
                        for si in 0..g.s {
                            let ns = ni * g.s + si;
                            gemm(
                                g.c,
                                g.k,
                                g.l,
                                &mut acc,
                                View::new(si * g.c * g.k, g.k, 1),
                                true,
                                gd,
                                View::new(ns * op, g.l, 1),
                                xd,
                                View::new(ns * xp, 1, g.l),
                            );
                        }
                    }
                    acc
                })
                .collect::<Vec<_>>()
                .into_iter()
                .fold(vec![0f32; nw], add_into);
            Ok((dw, dx))
        })?;
        Ok((Some(tensor(dw, w.shape())?), Some(tensor(dx, x.shape())?)))
    }
}

#[cfg(test)]
mod tests {
    use super::{fast_exp, fast_tanh};

    #[test]
    fn fast_exp_is_within_3e_7_relative_of_exp() {
        let mut worst = 0f32;
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4;
            worst = worst.max((fast_exp(x) - x.exp()).abs() / x.exp());
        }
        assert!(worst < 3e-7, "max relative error {worst}");
        let low = (-87f32).exp();
        assert!((fast_exp(-1e4) - low).abs() / low < 3e-7, "clamped below");
    }

    #[test]
    fn fast_tanh_is_within_3e_7_of_tanh() {
        let mut worst = 0f32;
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4;
            worst = worst.max((fast_tanh(x) - x.tanh()).abs());
        }
        for x in [-1e4f32, -30.0, -9.5, 9.5, 30.0, 1e4, 0.0, -0.0, 1e-8] {
            worst = worst.max((fast_tanh(x) - x.tanh()).abs());
        }
        assert!(worst < 3e-7, "max error {worst}");
    }
}
