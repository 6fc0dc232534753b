//! Inference-only temporal convolution through one-dimensional Winograd / Toom-Cook filtering
//! F(m, r): `m` outputs of an `r`-tap correlation from `α = m + r − 1` products instead of
//! `m·r`, for the short or strided kernels that the nested 9-tap scheme of
//! [`crate::winograd`] does not fit.
//!
//! Why: ST-GCN's stride-2 (9, 1) convolutions are a fifth of its forward FLOPs and ran direct
//! (the nested scheme at stride 2 pads each phase's 5 taps to 9 and measured no faster).
//!
//! How: a stride-`s` convolution `y[t] = Σ_k w[k] · x[s·t + k − pad]` splits by
//! `k − pad = s·e + φ` into `s` stride-1 correlations over the time phases
//! `z_φ[u] = x[s·u + φ]`: `y[t] = Σ_φ Σ_j w_φ[j] · z_φ[t + e₀ + j]`, `r` taps per phase (9 taps
//! at stride 2: 5 and 4). The phases are stacked as `s·C_in` channels. Per tile of `m` outputs,
//! `Y = Aᵀ · ((G · w) ⊙ (Bᵀ · d))` over `α` transform points, and summed over the stacked
//! channels these are `α` gemms `M_p = U_p · V_p` of `(C_out × s·C_in) · (s·C_in × tiles·V)`:
//! at stride 2 with F(4, 5), `8·2 / 4 = 4` multiply-adds per output and input channel instead
//! of 9 (against the direct kernel at the ST-GCN shapes: 0.55× at 128 channels × 64 frames,
//! 0.64× at 256 × 32; F(3, 5) 0.57× / 0.84×, F(2, 5) 0.70× / 0.88×). The points include ±½;
//! the result matches the direct form to about 3e-6 relative at those shapes.
//!
//! The matrices come from the points (Lavin & Gray's construction): with `A'` and `G'` the
//! evaluation matrices of `m`- and `r`-coefficient polynomials at the points and `V` that of
//! `α`-coefficient ones (the point ∞ evaluates the leading coefficient), the linear
//! convolution is `c = V⁻¹ · ((A'·a) ⊙ (G'·g))`, and its transpose in `a` is the correlation:
//! `Aᵀ = A'ᵀ`, `G = G'`, `Bᵀ = V⁻ᵀ`, computed in f64 once per call.
//!
//! No backward pass: this returns an untracked tensor and refuses inputs that track gradients.

use candle_core::{bail, Result, Tensor};

use crate::points::{self, Planes, Points};
use crate::util::{tensor, with_all, with_opt, Epilogue};

const OP: &str = "temporal_conv_toom";

/// Finite points in the order they are used; the last point is always ∞. Small integers and
/// halves keep the transforms well conditioned in f32.
const POINTS: [f64; 7] = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5];

/// Outputs per tile that [`temporal_conv_infer`](crate::temporal_conv_infer) uses: F(4, 5)
/// for 9 taps at stride 2.
pub(crate) const TILE: usize = 4;

/// `x`: `(N, C, T, V)`, `w`: `(C_out, C, kt)`, `b`: `(C_out)` →
/// `(N, C_out, (T + 2·pad − kt) / stride + 1, V)`: the same values as
/// `temporal_conv_bias(x, w, b, stride, pad, 1)` up to rounding, through F(`m`, r) with `r`
/// taps per time phase (about `kt / stride`). `m + r − 1` (the transform points) must be at
/// most 8.
/// Inference only: fails when any input tracks gradients.
pub fn temporal_conv_toom(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    pad: usize,
    m: usize,
) -> Result<Tensor> {
    points::check(OP, (x, w, b), stride, pad)?;
    if m == 0 {
        bail!("{OP}: the tile must be positive")
    }
    let g = Geo::new(x.dims(), w.dims(), stride, pad, m);
    if g.alpha > POINTS.len() + 1 {
        bail!(
            "{OP}: F({m}, {}) needs {} transform points, at most {} are defined",
            g.r,
            g.alpha,
            POINTS.len() + 1
        )
    }
    let out = with_all([x, w], OP, |[xd, wd]| {
        with_opt(b, OP, |bd| Ok(forward(g, xd, wd, bd, &Epilogue::NONE)))
    })?;
    tensor(out, (g.n, g.co, g.t_out, g.v))
}

/// The forward pass on raw data, for the temporal convolution's forward passes in training and
/// inference (shapes checked by the caller),
/// with [`TILE`] outputs per tile.
pub(crate) fn forward_raw(
    xs: &[usize],
    ws: &[usize],
    (stride, pad): (usize, usize),
    (x, w, b): (&[f32], &[f32], Option<&[f32]>),
    ep: &Epilogue,
) -> Vec<f32> {
    forward(Geo::new(xs, ws, stride, pad, TILE), x, w, b, ep)
}

#[derive(Clone, Copy, Debug)]
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
    /// taps per phase and the offset of the first: tap `j` of phase `φ` is `k = s·(e0 + j) + φ + pad`
    r: usize,
    e0: isize,
    /// outputs per tile, transform points, tiles per sequence
    m: usize,
    alpha: usize,
    tiles: usize,
}

impl Geo {
    /// Shapes already checked by the caller.
    fn new(xs: &[usize], ws: &[usize], s: usize, pad: usize, m: usize) -> Self {
        let (t, kt) = (xs[2], ws[2]);
        let t_out = (t + 2 * pad - kt) / s + 1;
        let (si, p) = (s as isize, pad as isize);
        let e0 = (-p).div_euclid(si);
        let e1 = (kt as isize - 1 - p).div_euclid(si);
        let r = (e1 - e0 + 1) as usize;
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
            r,
            e0,
            m,
            alpha: m + r - 1,
            tiles: t_out.div_ceil(m),
        }
    }

    /// Channels of the stride-1 problem: `c` per time phase.
    fn cs(&self) -> usize {
        self.s * self.c
    }

    /// Tap `j` of phase `phi`, if the kernel has it.
    fn tap(&self, phi: usize, j: usize) -> Option<usize> {
        let k = self.s as isize * (self.e0 + j as isize) + (phi + self.pad) as isize;
        (0..self.kt as isize).contains(&k).then_some(k as usize)
    }
}

/// The transform matrices of F(m, r) as f32, row-major: `Aᵀ` (m × α), `G` (α × r),
/// `Bᵀ` (α × α).
struct Matrices {
    at: Vec<f32>,
    g: Vec<f32>,
    bt: Vec<f32>,
}

/// Powers `p^0 .. p^(n−1)` of a finite point, or the leading-coefficient row for ∞.
fn eval_row(point: Option<f64>, n: usize) -> Vec<f64> {
    match point {
        Some(p) => (0..n).map(|j| p.powi(j as i32)).collect(),
        None => (0..n).map(|j| f64::from(u8::from(j + 1 == n))).collect(),
    }
}

fn matrices(m: usize, r: usize) -> Matrices {
    let alpha = m + r - 1;
    let points: Vec<Option<f64>> = POINTS[..alpha - 1]
        .iter()
        .map(|p| Some(*p))
        .chain([None])
        .collect();
    let a: Vec<Vec<f64>> = points.iter().map(|p| eval_row(*p, m)).collect();
    let gm: Vec<Vec<f64>> = points.iter().map(|p| eval_row(*p, r)).collect();
    let vinv = invert(points.iter().map(|p| eval_row(*p, alpha)).collect());
    Matrices {
        // Aᵀ[i][p] = A'[p][i]
        at: (0..m)
            .flat_map(|i| a.iter().map(move |row| row[i] as f32))
            .collect(),
        g: gm.iter().flatten().map(|v| *v as f32).collect(),
        // Bᵀ[p][q] = V⁻¹[q][p]
        bt: (0..alpha)
            .flat_map(|p| vinv.iter().map(move |row| row[p] as f32))
            .collect(),
    }
}

/// Gauss–Jordan inverse with partial pivoting (the Vandermonde-like matrices here are at most
/// 8 × 8 and well conditioned for the points used).
fn invert(mut a: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    let n = a.len();
    let mut inv: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    for col in 0..n {
        let piv = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        a.swap(col, piv);
        inv.swap(col, piv);
        let d = a[col][col];
        for j in 0..n {
            a[col][j] /= d;
            inv[col][j] /= d;
        }
        for i in 0..n {
            if i != col {
                let f = a[i][col];
                if f != 0.0 {
                    for j in 0..n {
                        a[i][j] -= f * a[col][j];
                        inv[i][j] -= f * inv[col][j];
                    }
                }
            }
        }
    }
    inv
}

/// `U[p][o][c'] = Σ_j G[p][j] · w_φ[o][c][j]` for stacked channel `c' = φ·C + c`.
fn transform_kernel(g: Geo, mats: &Matrices, w: &[f32]) -> Vec<f32> {
    let (co, c, cs, r) = (g.co, g.c, g.cs(), g.r);
    let mut u = vec![0f32; g.alpha * co * cs];
    for o in 0..co {
        for cp in 0..cs {
            let (phi, ci) = (cp / c, cp % c);
            let taps = &w[(o * c + ci) * g.kt..][..g.kt];
            let wj: Vec<f32> = (0..r)
                .map(|j| g.tap(phi, j).map_or(0.0, |k| taps[k]))
                .collect();
            for p in 0..g.alpha {
                let grow = &mats.g[p * r..][..r];
                u[(p * co + o) * cs + cp] = grow.iter().zip(&wj).map(|(a, b)| a * b).sum();
            }
        }
    }
    u
}

fn forward(g: Geo, x: &[f32], w: &[f32], bias: Option<&[f32]>, ep: &Epilogue) -> Vec<f32> {
    let mats = matrices(g.m, g.r);
    let u = transform_kernel(g, &mats, w);
    let tv = g.tiles * g.v;
    let sizes = Points {
        n: g.n,
        cs: g.cs(),
        co: g.co,
        p: g.alpha,
        tv,
        in_n: g.c * g.t * g.v,
        out_n: g.co * g.t_out * g.v,
        scratch: g.alpha.max(g.m) * tv,
    };
    let plane = g.t * g.v;
    points::run(
        sizes,
        &u,
        x,
        #[inline(always)]
        |xn, cp, sc, vb, at| {
            let (phi, ci) = (cp / g.c, cp % g.c);
            input_channel(g, &mats, (&xn[ci * plane..][..plane], phi), sc, vb, at);
        },
        #[inline(always)]
        |o, mb, at, sc, oc| {
            let b = bias.map_or(0.0, |b| b[o]);
            output_channel(g, &mats, (mb, at), b, sc, oc);
        },
        ep,
    )
}

/// `out = bias + Σ_q coef[q] · rows[at + q·stride..][..len]`, skipping zero coefficients.
#[inline(always)]
fn combine(coef: &[f32], (rows, at, stride): (&[f32], usize, usize), bias: f32, out: &mut [f32]) {
    let len = out.len();
    out.fill(bias);
    for (q, &a) in coef.iter().enumerate() {
        if a != 0.0 {
            let row = &rows[at + q * stride..][..len];
            for (o, r) in out.iter_mut().zip(row) {
                *o += a * r;
            }
        }
    }
}

/// Transforms every input tile of one stacked channel (time phase `phi` of one channel of one
/// sample): with `d_τ[q] = z[m·τ + e0 + q]`, `z[u] = x[s·u + phi]` (zero outside the
/// sequence), writes `vb[p·plane + at + τ·V..][..V] = (Bᵀ · d_τ)[p]`. Rows are gathered
/// tile-major (`row q` holds `d_τ[q]` for every tile), so each transform step runs on
/// `tiles·V` contiguous values. `sc` holds at least `α` such rows.
#[inline(always)]
fn input_channel(
    g: Geo,
    mats: &Matrices,
    (xc, phi): (&[f32], usize),
    sc: &mut [f32],
    vb: &mut [f32],
    to: Planes,
) {
    let Planes { at, plane } = to;
    let (v, tv, alpha) = (g.v, g.tiles * g.v, g.alpha);
    for q in 0..alpha {
        for tau in 0..g.tiles {
            let dst = &mut sc[q * tv + tau * v..][..v];
            let u = (g.m * tau) as isize + g.e0 + q as isize;
            let frame: Option<usize> = (g.s as isize * u + phi as isize).try_into().ok();
            match frame {
                Some(t) if t < g.t => dst.copy_from_slice(&xc[t * v..][..v]),
                _ => dst.fill(0.0),
            }
        }
    }
    for p in 0..alpha {
        let coef = &mats.bt[p * alpha..][..alpha];
        combine(coef, (sc, 0, tv), 0.0, &mut vb[p * plane + at..][..tv]);
    }
}

/// Writes one output channel of one sample: `y_τ = Aᵀ · M_τ` plus the bias for every tile,
/// with `M_τ[p] = mb[p·plane + at + τ·V..][..V]`; frames past `t_out` are dropped. `sc` holds
/// at least `m` rows of `tiles·V`.
#[inline(always)]
fn output_channel(
    g: Geo,
    mats: &Matrices,
    (mb, from): (&[f32], Planes),
    bias: f32,
    sc: &mut [f32],
    oc: &mut [f32],
) {
    let Planes { at, plane } = from;
    let (v, tv, alpha) = (g.v, g.tiles * g.v, g.alpha);
    let y = &mut sc[..g.m * tv];
    for i in 0..g.m {
        let coef = &mats.at[i * alpha..][..alpha];
        combine(coef, (mb, at, plane), bias, &mut y[i * tv..][..tv]);
    }
    points::untile(y, g.m, g.tiles, v, oc);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// F(m, r) in one dimension: `Aᵀ · ((G · g) ⊙ (Bᵀ · d))` is the correlation of `d` with `g`.
    #[test]
    fn matrices_compute_a_correlation() {
        for (m, r) in [(2, 3), (3, 5), (4, 5), (2, 5), (3, 4), (1, 1), (6, 1)] {
            let mats = matrices(m, r);
            let alpha = m + r - 1;
            let gk: Vec<f32> = (0..r).map(|j| 0.3 - 0.7 * j as f32).collect();
            let d: Vec<f32> = (0..alpha).map(|q| ((q * 5 % 7) as f32) - 2.5).collect();
            let gg: Vec<f32> = (0..alpha)
                .map(|p| (0..r).map(|j| mats.g[p * r + j] * gk[j]).sum())
                .collect();
            let bd: Vec<f32> = (0..alpha)
                .map(|p| (0..alpha).map(|q| mats.bt[p * alpha + q] * d[q]).sum())
                .collect();
            for i in 0..m {
                let y: f32 = (0..alpha)
                    .map(|p| mats.at[i * alpha + p] * gg[p] * bd[p])
                    .sum();
                let want: f32 = (0..r).map(|j| gk[j] * d[i + j]).sum();
                assert!(
                    (y - want).abs() < 1e-4,
                    "F({m},{r}) output {i}: {y} vs {want}"
                );
            }
        }
    }

    #[test]
    fn taps_split_by_phase() {
        // 9 taps, stride 2, pad 4: phase 0 has taps 0, 2, .., 8, phase 1 taps 1, 3, 5, 7
        let g = Geo::new(&[1, 1, 20, 1], &[1, 1, 9], 2, 4, 3);
        assert_eq!((g.r, g.e0, g.alpha, g.t_out), (5, -2, 7, 10));
        let ph = |phi| (0..g.r).map(|j| g.tap(phi, j)).collect::<Vec<_>>();
        assert_eq!(ph(0), [Some(0), Some(2), Some(4), Some(6), Some(8)]);
        assert_eq!(ph(1), [Some(1), Some(3), Some(5), Some(7), None]);
    }
}
