//! InfoGCN's per-frame joint self-attention as one op:
//! `softmax(q_h k_hᵀ / √D)` with `[q | k] = LayerNorm_C(x[n, :, t, :]ᵀ) · Wᵀ + b`, for every
//! sample `n`, frame `t` and head `h`.
//!
//! As candle ops this is a permuted copy, nine LayerNorm passes, a projection, two split copies,
//! `N·T·H` tiny batched products and a softmax, each with its backward pass; together they were
//! 40 % of an InfoGCN training step. Here one task per sample normalises all its frames into a
//! buffer, projects them with one `gemm`, and computes the scores and softmax per frame and head.
//! The backward pass recomputes the normalised input and the projection (one `gemm`) instead
//! of keeping them alive, and uses the attention maps the forward pass returned.

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::mm::{gemm, View};
use crate::rel::fast_exp;
use crate::small::{pack, padded, small_mm, small_mm_set, transpose, with_avx2, Lhs, Mm};
use crate::util::{
    add_into, assume_written, check_cpu_f32, group_size, slice, tensor, with_all, written_chunks,
    zeros,
};

const OP: &str = "joint_attention";

/// `x: (N, C, T, V)`; LayerNorm over `C` with `ln_weight`, `ln_bias: (C)`; projection
/// `w: (2·H·D, C)`, `b: (2·H·D)` whose first `H·D` outputs are the queries and the rest the
/// keys, head-major → attention maps `(N, T, H, V, V)`, each row a softmax over the key joints.
/// Differentiable in every tensor; f32 on the CPU.
pub fn joint_attention(
    x: &Tensor,
    ln_weight: &Tensor,
    ln_bias: &Tensor,
    w: &Tensor,
    b: &Tensor,
    heads: usize,
    eps: f64,
) -> Result<Tensor> {
    for (t, what) in [
        (x, "input"),
        (ln_weight, "norm weight"),
        (ln_bias, "norm bias"),
        (w, "projection weight"),
        (b, "projection bias"),
    ] {
        check_cpu_f32(t, OP, what)?;
    }
    let (_, c, _, _) = x.dims4()?;
    let (o, cw) = w.dims2()?;
    if ln_weight.dims() != [c] || ln_bias.dims() != [c] || cw != c {
        bail!(
            "{OP}: input has {c} channels but norm {:?}/{:?}, projection {:?}",
            ln_weight.dims(),
            ln_bias.dims(),
            w.dims()
        )
    }
    if heads == 0 || o == 0 || o % (2 * heads) != 0 || b.dims() != [o] {
        bail!(
            "{OP}: projection {:?} with bias {:?} does not split into queries and keys for \
             {heads} heads",
            w.dims(),
            b.dims()
        )
    }
    // One parameter tensor: a CustomOp takes at most three inputs. `cat` routes the gradients
    // back to the four parameters.
    let params = Tensor::cat(&[ln_weight, ln_bias, &w.flatten_all()?, b], 0)?;
    x.contiguous()?.apply_op2(
        &params,
        JointAttention {
            heads,
            eps: eps as f32,
        },
    )
}

struct JointAttention {
    heads: usize,
    eps: f32,
}

#[derive(Clone, Copy)]
struct Geo {
    n: usize,
    c: usize,
    t: usize,
    v: usize,
    h: usize,
    /// per-head width D
    d: usize,
}

impl Geo {
    fn new(xs: &[usize], heads: usize, params: usize) -> Self {
        let c = xs[1];
        // params = 2C + o·C + o with o = 2·H·D
        let o = (params - 2 * c) / (c + 1);
        Self {
            n: xs[0],
            c,
            t: xs[2],
            v: xs[3],
            h: heads,
            d: o / (2 * heads),
        }
    }
    fn o(&self) -> usize {
        2 * self.h * self.d
    }
    fn maps(&self) -> usize {
        self.t * self.h * self.v * self.v
    }
}

/// Views into the packed parameters.
struct Params<'a> {
    gamma: &'a [f32],
    beta: &'a [f32],
    w: &'a [f32],
    b: &'a [f32],
}

impl<'a> Params<'a> {
    fn split(g: Geo, p: &'a [f32]) -> Self {
        let (gamma, rest) = p.split_at(g.c);
        let (beta, rest) = rest.split_at(g.c);
        let (w, b) = rest.split_at(g.o() * g.c);
        Self { gamma, beta, w, b }
    }
}

/// Per-sample scratch: normalised input, its affine image, the projection.
#[derive(Default)]
struct Scratch {
    xhat: Vec<f32>,
    y: Vec<f32>,
    rstd: Vec<f32>,
    qk: Vec<f32>,
    kt: Vec<f32>,
}

/// LayerNorm of every (t, v) row of sample `n` and the projection `qk = y · Wᵀ + b`.
#[inline(always)]
fn project(g: Geo, eps: f32, x: &[f32], p: &Params, n: usize, s: &mut Scratch) {
    let (tv, c, o) = (g.t * g.v, g.c, g.o());
    s.xhat.resize(tv * c, 0.0);
    s.y.resize(tv * c, 0.0);
    s.rstd.resize(tv, 0.0);
    s.qk.resize(tv * o, 0.0);
    let xn = &x[n * c * tv..(n + 1) * c * tv];
    // (C, T·V) -> (T·V, C), in 8×8 register blocks
    transpose(xn, c, tv, &mut s.xhat);
    for ((row, yrow), rstd) in s
        .xhat
        .chunks_exact_mut(c)
        .zip(s.y.chunks_exact_mut(c))
        .zip(s.rstd.iter_mut())
    {
        let mean = row.iter().sum::<f32>() / c as f32;
        let var = row.iter().map(|a| (a - mean) * (a - mean)).sum::<f32>() / c as f32;
        *rstd = 1.0 / (var + eps).sqrt();
        for (((a, yv), gm), bt) in row.iter_mut().zip(yrow).zip(p.gamma).zip(p.beta) {
            *a = (*a - mean) * *rstd;
            *yv = *a * gm + bt;
        }
    }
    gemm(
        tv,
        o,
        c,
        &mut s.qk,
        View::new(0, o, 1),
        false,
        &s.y,
        View::new(0, c, 1),
        p.w,
        View::new(0, 1, c),
    );
    for row in s.qk.chunks_exact_mut(o) {
        for (a, bv) in row.iter_mut().zip(p.b) {
            *a += bv;
        }
    }
}

/// In-place softmax of `row · scale` (`scale > 0`).
///
/// The maximum and the sum are kept in eight lanes: a single running `f32` sum or maximum is a
/// serial dependency the compiler may not reorder, which kept the whole loop, `fast_exp`
/// included, scalar (the softmax was half of the attention op's time in inference).
#[inline(always)]
fn softmax_scaled(row: &mut [f32], scale: f32) {
    const L: usize = 8;
    let mut lanes = [f32::NEG_INFINITY; L];
    let mut chunks = row.chunks_exact(L);
    for ch in &mut chunks {
        for (m, &a) in lanes.iter_mut().zip(ch) {
            *m = if a > *m { a } else { *m };
        }
    }
    let m = chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &a| if a > m { a } else { m })
        * scale;
    for a in row.iter_mut() {
        *a = fast_exp(*a * scale - m);
    }
    let mut lanes = [0f32; L];
    let mut chunks = row.chunks_exact(L);
    for ch in &mut chunks {
        for (s, &a) in lanes.iter_mut().zip(ch) {
            *s += a;
        }
    }
    let sum: f32 = lanes.iter().chain(chunks.remainder()).sum();
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|a| *a *= inv);
}

fn forward(g: Geo, eps: f32, x: &[f32], params: &[f32]) -> Vec<f32> {
    let p = Params::split(g, params);
    let (v, d, o, hd) = (g.v, g.d, g.o(), g.h * g.d);
    let scale = 1.0 / (d as f32).sqrt();
    let work = |s: &mut Scratch, n: usize, on: &mut [std::mem::MaybeUninit<f32>]| {
        with_avx2(
            #[inline(always)]
            || project(g, eps, x, &p, n, s),
        );
        for t in 0..g.t {
            for h in 0..g.h {
                // kᵀ (D × V) of this frame and head
                let koff = t * v * o + hd + h * d;
                pack(&mut s.kt, d, v, &s.qk, koff, 1, o, |_, _, val| val);
                let l = Lhs {
                    off: t * v * o + h * d,
                    rs: o,
                    cs: 1,
                };
                let moff = (t * g.h + h) * v * v;
                small_mm_set(
                    Mm {
                        rows: v,
                        k: d,
                        cols: v,
                        lhs: &s.qk,
                        l,
                        rhs: &s.kt,
                        rsb: padded(v),
                    },
                    on,
                    moff,
                    v,
                );
                // SAFETY: the product just above wrote all V × V values of this map.
                #[allow(unsafe_code)]
                let map = unsafe { assume_written(&mut on[moff..moff + v * v]) };
                with_avx2(
                    #[inline(always)]
                    || {
                        for row in map.chunks_exact_mut(v) {
                            softmax_scaled(row, scale);
                        }
                    },
                );
            }
        }
    };
    // SAFETY: the (t, h) maps tile the sample's T·H·V·V chunk, and each is written whole by its
    // product.
    #[allow(unsafe_code)]
    unsafe {
        written_chunks(g.n * g.maps(), g.maps(), Scratch::default, work)
    }
}

/// Returns (dx, dparams).
fn backward(
    g: Geo,
    eps: f32,
    x: &[f32],
    params: &[f32],
    maps: &[f32],
    dmaps: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let p = Params::split(g, params);
    let (tv, c, v, d, o, hd) = (g.t * g.v, g.c, g.v, g.d, g.o(), g.h * g.d);
    let scale = 1.0 / (d as f32).sqrt();
    let np = params.len();
    let mut dx = zeros(g.n * c * tv);
    // one sample's contribution to the parameter gradient, added to `acc`
    let sample =
        |n: usize, dxn: &mut [f32], acc: &mut Vec<f32>, s: &mut Scratch, ds: &mut Vec<f32>| {
            with_avx2(
                #[inline(always)]
                || project(g, eps, x, &p, n, s),
            );
            let mut dqk = vec![0f32; tv * o];
            ds.resize(v * v, 0.0);
            for t in 0..g.t {
                for h in 0..g.h {
                    let moff = n * g.maps() + (t * g.h + h) * v * v;
                    let (pm, dpm) = (&maps[moff..moff + v * v], &dmaps[moff..moff + v * v]);
                    // dS = P ⊙ (dP − Σ_w dP·P) · scale
                    for ((dsr, pr), dpr) in ds
                        .chunks_exact_mut(v)
                        .zip(pm.chunks_exact(v))
                        .zip(dpm.chunks_exact(v))
                    {
                        let dot: f32 = pr.iter().zip(dpr).map(|(a, b)| a * b).sum();
                        for ((e, pv), dpv) in dsr.iter_mut().zip(pr).zip(dpr) {
                            *e = pv * (dpv - dot) * scale;
                        }
                    }
                    let qoff = t * v * o + h * d;
                    let koff = qoff + hd;
                    // dq (V × D) = dS · k;  dk (V × D) = dSᵀ · q   (k, q read in place)
                    let m = |rs, cs, from: usize| Mm {
                        rows: v,
                        k: v,
                        cols: d,
                        lhs: ds,
                        l: Lhs { off: 0, rs, cs },
                        rhs: &s.qk[from..],
                        rsb: o,
                    };
                    small_mm(m(v, 1, koff), &mut dqk, qoff, o);
                    small_mm(m(1, v, qoff), &mut dqk, koff, o);
                }
            }
            let (dgamma, rest) = acc.split_at_mut(c);
            let (dbeta, rest) = rest.split_at_mut(c);
            let (dw, db) = rest.split_at_mut(o * c);
            for row in dqk.chunks_exact(o) {
                for (a, bv) in db.iter_mut().zip(row) {
                    *a += bv;
                }
            }
            // dW (O × C) += dqkᵀ · y
            gemm(
                o,
                c,
                tv,
                dw,
                View::new(0, c, 1),
                true,
                &dqk,
                View::new(0, 1, o),
                &s.y,
                View::new(0, c, 1),
            );
            // dy (T·V × C) = dqk · W, into the no longer needed `y`
            gemm(
                tv,
                c,
                o,
                &mut s.y,
                View::new(0, c, 1),
                false,
                &dqk,
                View::new(0, o, 1),
                p.w,
                View::new(0, c, 1),
            );
            for (r, ((dy, xh), rstd)) in
                s.y.chunks_exact(c)
                    .zip(s.xhat.chunks_exact(c))
                    .zip(&s.rstd)
                    .enumerate()
            {
                let mut m1 = 0.0;
                let mut m2 = 0.0;
                for ci in 0..c {
                    dbeta[ci] += dy[ci];
                    dgamma[ci] += dy[ci] * xh[ci];
                    let gh = dy[ci] * p.gamma[ci];
                    m1 += gh;
                    m2 += gh * xh[ci];
                }
                let (m1, m2) = (m1 / c as f32, m2 / c as f32);
                for ci in 0..c {
                    let gh = dy[ci] * p.gamma[ci];
                    dxn[ci * tv + r] = rstd * (gh - m1 - xh[ci] * m2);
                }
            }
        };
    // Fixed sample groups, summed in order: bit-identical gradients whatever the scheduling.
    let chunk = (c * tv).max(1);
    let gs = group_size(g.n);
    let parts: Vec<Vec<f32>> = dx
        .par_chunks_mut(gs * chunk)
        .enumerate()
        .map(|(gi, dxg)| {
            let mut acc = vec![0f32; np];
            let mut s = Scratch::default();
            let mut ds = Vec::new();
            for (j, dxn) in dxg.chunks_mut(chunk).enumerate() {
                sample(gi * gs + j, dxn, &mut acc, &mut s, &mut ds);
            }
            acc
        })
        .collect();
    let dparams = parts.into_iter().fold(vec![0f32; np], add_into);
    (dx, dparams)
}

impl CustomOp2 for JointAttention {
    fn name(&self) -> &'static str {
        OP
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geo::new(l1.dims(), self.heads, l2.dims()[0]);
        let out = forward(g, self.eps, slice(s1, l1, OP)?, slice(s2, l2, OP)?);
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.t, g.h, g.v, g.v))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = Geo::new(x.dims(), self.heads, params.dims()[0]);
        let (dx, dp) = with_all([x, params, res, grad], OP, |[xd, pd, md, gd]| {
            Ok(backward(g, self.eps, xd, pd, md, gd))
        })?;
        Ok((
            Some(tensor(dx, x.shape())?),
            Some(tensor(dp, params.shape())?),
        ))
    }
}
