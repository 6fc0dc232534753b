//! Temporal convolution through Winograd's minimal filtering: a 9-tap
//! stride-1 convolution with about a third of the multiplications of the direct form, and
//! strided or shorter kernels reduced to that.
//!
//! Why: ST-GCN's (9, 1) temporal convolutions are 70 % of its forward FLOPs and already run at
//! the gemm micro-kernel's speed, so inference only gets faster with fewer multiplications.
//!
//! How: a 9-tap correlation `y[o] = Σ_k w[k] · z[o + k]` is, with `k = 3j + r` and
//! `o = 9τ + 3a + s`, the 2-D correlation `Y[a][s] = Σ_{j,r} W[j][r] · D[a + j][s + r]` of the
//! 3×3 kernel `W[j][r] = w[3j + r]` with the 5×5 input tile `D[b][q] = z[9τ + 3b + q]`.
//! Winograd's F(3×3, 3×3) (points 0, 1, −1, 2, ∞) computes each 3×3 output tile from 25
//! products instead of 81; summed over input channels these become 25 gemms
//! `M_p = U_p · V_p` (per transform point `p`) of `(C_out × C_in) · (C_in × tiles·V)`:
//! 25 / 81 of the direct multiply-adds, plus the cheap input and output transforms.
//! A stride-`s` convolution is a stride-1 one over the `s` time phases of the input stacked as
//! channels (`s·C_in` channels, tap `k` on phase `k mod s`): for `s = 2` and 9 taps, 50 / 81.
//! Rounding: the transforms have small integer coefficients (the largest is 4); the result
//! matches the direct form to about 1e-6 relative in f32 (tested within 1e-4).
//!
//! `temporal_conv_winograd` has no backward pass: it returns an untracked tensor and refuses
//! inputs that track gradients. The differentiable `temporal_conv` uses this module's forward
//! for its output and for its input gradient (a 9-tap stride-1 convolution of the output
//! gradient with the flipped kernel), and the direct taps for the weight gradient.

use candle_core::{bail, Result, Tensor};

use crate::points::{self, Planes, Points};
use crate::util::{tensor, with_all, with_opt, Epilogue};

const OP: &str = "temporal_conv_winograd";

/// Output transform (3 × 5); `at_row` spells it out, the tests check both agree.
#[cfg_attr(not(test), allow(dead_code))]
const AT: [[f32; 5]; 3] = [
    [1., 1., 1., 1., 0.],
    [0., 1., -1., 2., 0.],
    [0., 1., 1., 4., 1.],
];
/// Kernel transform (5 × 3).
const G: [[f32; 3]; 5] = [
    [0.5, 0., 0.],
    [-0.5, -0.5, -0.5],
    [-1. / 6., 1. / 6., -1. / 6.],
    [1. / 6., 1. / 3., 2. / 3.],
    [0., 0., 1.],
];
/// Input transform (5 × 5); `bt_row` spells it out, the tests check both agree.
#[cfg_attr(not(test), allow(dead_code))]
const BT: [[f32; 5]; 5] = [
    [2., -1., -2., 1., 0.],
    [0., -2., -1., 1., 0.],
    [0., 2., -3., 1., 0.],
    [0., -1., 0., 1., 0.],
    [0., 2., -1., -2., 1.],
];
/// Transform points of the 2-D tile.
const P: usize = 25;

/// `x`: `(N, C, T, V)`, `w`: `(C_out, C, kt)`, `b`: `(C_out)` →
/// `(N, C_out, (T + 2·pad − kt) / stride + 1, V)`: the same values as
/// `temporal_conv_bias(x, w, b, stride, pad, 1)` up to rounding, for kernels of at most
/// `9·stride` taps. A strided convolution is computed as a stride-1 one over the input's
/// `stride` time phases stacked as channels (tap `k` of phase `k mod stride`); shorter kernels are
/// zero-padded to 9 taps per phase. Inference only: fails when any input tracks gradients.
pub fn temporal_conv_winograd(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let kt = points::check(OP, (x, w, b), stride, pad)?;
    if kt > 9 * stride {
        bail!("{OP}: needs 1 to 9·stride taps, got {kt} taps, stride {stride}")
    }
    let g = Geo::new(x.dims(), w.dims(), stride, pad);
    let out = with_all([x, w], OP, |[xd, wd]| {
        with_opt(b, OP, |bd| Ok(forward(g, xd, wd, bd, &Epilogue::NONE)))
    })?;
    tensor(out, (g.n, g.co, g.t_out, g.v))
}

#[derive(Clone, Copy)]
struct Geo {
    n: usize,
    c: usize,
    t: usize,
    v: usize,
    co: usize,
    kt: usize,
    s: usize,
    pad: usize,
    t_out: usize,
    tiles: usize,
}

impl Geo {
    /// Shapes already checked by the caller.
    fn new(xs: &[usize], ws: &[usize], s: usize, pad: usize) -> Self {
        let (t, kt) = (xs[2], ws[2]);
        let t_out = (t + 2 * pad - kt) / s + 1;
        Self {
            n: xs[0],
            c: xs[1],
            t,
            v: xs[3],
            co: ws[0],
            kt,
            s,
            pad,
            t_out,
            tiles: t_out.div_ceil(9),
        }
    }

    /// Channels of the stride-1 problem: `c` per time phase.
    fn cs(&self) -> usize {
        self.s * self.c
    }
}

/// `U[p][o][c'] = (G · W · Gᵀ)[p]` with `W[j][r] = w9[o][c'][3j + r]`, where the 9-tap
/// stride-1 kernel of stacked channel `c' = φ·C + c` is `w9[o][c'][m] = w[o][c][s·m + φ]`
/// (zero past the last tap).
fn transform_kernel(g: Geo, w: &[f32]) -> Vec<f32> {
    let (co, c, cs) = (g.co, g.c, g.cs());
    let mut u = vec![0f32; P * co * cs];
    for o in 0..co {
        for cp in 0..cs {
            let (phi, ci) = (cp / c, cp % c);
            let taps = &w[(o * c + ci) * g.kt..][..g.kt];
            let k: [f32; 9] =
                std::array::from_fn(|m| taps.get(g.s * m + phi).copied().unwrap_or(0.0));
            // gw[β][r] = Σ_j G[β][j] · W[j][r]
            let mut gw = [[0f32; 3]; 5];
            for (beta, row) in gw.iter_mut().enumerate() {
                for (r, e) in row.iter_mut().enumerate() {
                    *e = (0..3).map(|j| G[beta][j] * k[3 * j + r]).sum();
                }
            }
            for (beta, row) in gw.iter().enumerate() {
                for (rho, grow) in G.iter().enumerate() {
                    let val: f32 = (0..3).map(|r| row[r] * grow[r]).sum();
                    u[((beta * 5 + rho) * co + o) * cs + cp] = val;
                }
            }
        }
    }
    u
}

/// The Winograd forward pass on raw data, for the temporal convolution's forward passes in
/// training and inference and its input gradient (shapes already checked by the caller): stride 1, `w` of 9 taps, optional bias, epilogue per output row.
pub(crate) fn forward_raw(
    xs: &[usize],
    ws: &[usize],
    pad: usize,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    ep: &Epilogue,
) -> Vec<f32> {
    forward(Geo::new(xs, ws, 1, pad), x, w, b, ep)
}

fn forward(g: Geo, x: &[f32], w: &[f32], bias: Option<&[f32]>, ep: &Epilogue) -> Vec<f32> {
    let u = transform_kernel(g, w);
    let tv = g.tiles * g.v;
    let sizes = Points {
        n: g.n,
        cs: g.cs(),
        co: g.co,
        p: P,
        tv,
        in_n: g.c * g.t * g.v,
        out_n: g.co * g.t_out * g.v,
        scratch: 42 * tv,
    };
    let plane = g.t * g.v;
    points::run(
        sizes,
        &u,
        x,
        #[inline(always)]
        |xn, cp, sc, vb, at| {
            let (phi, ci) = (cp / g.c, cp % g.c);
            input_channel(g, &xn[ci * plane..][..plane], phi, sc, vb, at);
        },
        #[inline(always)]
        |o, mb, at, sc, oc| {
            let b = bias.map_or(0.0, |b| b[o]);
            output_channel(g, mb, at, b, sc, oc);
        },
        ep,
    )
}

/// `out = Bᵀ[row] · d` on rows of the same length.
#[inline(always)]
fn bt_row(d: [&[f32]; 5], row: usize, out: &mut [f32]) {
    let n = out.len();
    let [d0, d1, d2, d3, d4] = d.map(|r| &r[..n]);
    match row {
        0 => (0..n).for_each(|j| out[j] = 2.0 * (d0[j] - d2[j]) - d1[j] + d3[j]),
        1 => (0..n).for_each(|j| out[j] = d3[j] - 2.0 * d1[j] - d2[j]),
        2 => (0..n).for_each(|j| out[j] = 2.0 * d1[j] - 3.0 * d2[j] + d3[j]),
        3 => (0..n).for_each(|j| out[j] = d3[j] - d1[j]),
        _ => (0..n).for_each(|j| out[j] = 2.0 * (d1[j] - d3[j]) - d2[j] + d4[j]),
    }
}

/// `out = Aᵀ[row] · m + bias` on rows of the same length.
#[inline(always)]
fn at_row(m: [&[f32]; 5], row: usize, bias: f32, out: &mut [f32]) {
    let n = out.len();
    let [m0, m1, m2, m3, m4] = m.map(|r| &r[..n]);
    match row {
        0 => (0..n).for_each(|j| out[j] = m0[j] + m1[j] + m2[j] + m3[j] + bias),
        1 => (0..n).for_each(|j| out[j] = m1[j] - m2[j] + 2.0 * m3[j] + bias),
        _ => (0..n).for_each(|j| out[j] = m1[j] + m2[j] + 4.0 * m3[j] + m4[j] + bias),
    }
}

/// Transforms every input tile of one stacked channel (time phase `phi` of one channel of one
/// sample): with `D_τ[b][q] = z[9τ + 3b + q]`, `z[u] = x[s·u + phi − pad]` (zero outside the
/// sequence), writes
/// `vb[p·plane + at + τ·V..][..V] = (Bᵀ · D_τ · B)[p]` for the 25 points `p`. Rows are gathered
/// tile-major first (`r[i][τ] = z[9τ + i]`), so every transform step runs on rows of
/// `tiles·V` contiguous values instead of `V`. `sc` is scratch for 42 such rows.
#[inline(always)]
fn input_channel(g: Geo, xc: &[f32], phi: usize, sc: &mut [f32], vb: &mut [f32], to: Planes) {
    let Planes { at, plane } = to;
    let v = g.v;
    let tv = g.tiles * v;
    let (r, h) = sc.split_at_mut(17 * tv);
    for i in 0..17 {
        for tau in 0..g.tiles {
            let dst = &mut r[i * tv + tau * v..][..v];
            match (g.s * (9 * tau + i) + phi).checked_sub(g.pad) {
                Some(t) if t < g.t => dst.copy_from_slice(&xc[t * v..][..v]),
                _ => dst.fill(0.0),
            }
        }
    }
    // along q for each b: h[b][ρ] = Σ_q Bᵀ[ρ][q] · D[b][q]
    for b in 0..5 {
        let d = [0, 1, 2, 3, 4].map(|q| &r[(3 * b + q) * tv..][..tv]);
        for rho in 0..5 {
            bt_row(d, rho, &mut h[(b * 5 + rho) * tv..][..tv]);
        }
    }
    // along b: V[β][ρ] = Σ_b Bᵀ[β][b] · h[b][ρ]
    for rho in 0..5 {
        let d = [0, 1, 2, 3, 4].map(|b| &h[(b * 5 + rho) * tv..][..tv]);
        for beta in 0..5 {
            bt_row(d, beta, &mut vb[(beta * 5 + rho) * plane + at..][..tv]);
        }
    }
}

/// Writes one output channel of one sample: `Y_τ = Aᵀ · M_τ · A` plus the bias for every tile,
/// with `M_τ[p] = mb[p·plane + at + τ·V..][..V]`; frames past `t_out` are dropped. `sc` is
/// scratch for 24 rows of `tiles·V`.
#[inline(always)]
fn output_channel(g: Geo, mb: &[f32], from: Planes, bias: f32, sc: &mut [f32], oc: &mut [f32]) {
    let Planes { at, plane } = from;
    let v = g.v;
    let tv = g.tiles * v;
    let (z, y) = sc.split_at_mut(15 * tv);
    // along ρ: z[β][s] = Σ_ρ Aᵀ[s][ρ] · M[β][ρ]
    for beta in 0..5 {
        let m = [0, 1, 2, 3, 4].map(|rho| &mb[(beta * 5 + rho) * plane + at..][..tv]);
        for s in 0..3 {
            at_row(m, s, 0.0, &mut z[(beta * 3 + s) * tv..][..tv]);
        }
    }
    // along β: Y[a][s] = Σ_β Aᵀ[a][β] · z[β][s]
    for s in 0..3 {
        let m = [0, 1, 2, 3, 4].map(|beta| &z[(beta * 3 + s) * tv..][..tv]);
        for a in 0..3 {
            at_row(m, a, bias, &mut y[(a * 3 + s) * tv..][..tv]);
        }
    }
    points::untile(y, 9, g.tiles, v, oc);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// F(3, 3) in one dimension: `Aᵀ · ((G · g) ⊙ (Bᵀ · d))` is the correlation of `d` with `g`.
    #[test]
    fn matrices_compute_a_3_tap_correlation() {
        let gk = [0.3f32, -1.2, 0.7];
        let d = [1.0f32, -0.5, 2.0, 0.25, -1.5];
        let gg: Vec<f32> = G
            .iter()
            .map(|r| (0..3).map(|k| r[k] * gk[k]).sum())
            .collect();
        let bd: Vec<f32> = BT
            .iter()
            .map(|r| (0..5).map(|q| r[q] * d[q]).sum())
            .collect();
        for (i, row) in AT.iter().enumerate() {
            let y: f32 = (0..5).map(|p| row[p] * gg[p] * bd[p]).sum();
            let want: f32 = (0..3).map(|k| gk[k] * d[i + k]).sum();
            assert!((y - want).abs() < 1e-5, "output {i}: {y} vs {want}");
        }
    }

    /// The unrolled rows equal the matrices they spell out.
    #[test]
    fn unrolled_rows_match_the_matrices() {
        let e: Vec<Vec<f32>> = (0..5)
            .map(|i| (0..5).map(|j| f32::from(u8::from(i == j))).collect())
            .collect();
        let unit = |i: usize| -> [&[f32]; 5] { [0, 1, 2, 3, 4].map(|k| &e[k][i..i + 1]) };
        for q in 0..5 {
            for (row, bt) in BT.iter().enumerate() {
                let mut out = [0f32];
                bt_row(unit(q), row, &mut out);
                assert_eq!(out[0], bt[q], "Bᵀ[{row}][{q}]");
            }
            for (row, at) in AT.iter().enumerate() {
                let mut out = [0f32];
                at_row(unit(q), row, 0.5, &mut out);
                assert_eq!(out[0], at[q] + 0.5, "Aᵀ[{row}][{q}]");
            }
        }
    }
}
