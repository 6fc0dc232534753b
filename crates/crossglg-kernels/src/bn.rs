//! Batch normalisation over dim 1 fused with an optional residual add and ReLU:
//! `out = act(γ·(x − μ)/√(σ² + ε) + β [+ r])`, with batch statistics (training) or per-channel
//! scale/shift (inference). One read of `x` for the statistics and one fused pass for the output,
//! instead of candle_nn's transpose + copy + several element-wise passes and temporaries.

use std::sync::Mutex;

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::util::{check_cpu_f32, slice, tensor, with_all, with_data, zeroed_chunks, zeros};

const OP: &str = "batch_norm_act";
const OP_EVAL: &str = "channel_affine_act";

/// Per-channel statistics of one training batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStats {
    pub mean: Vec<f32>,
    /// Biased variance (divided by `count`), the one used for normalisation.
    pub var: Vec<f32>,
    /// Elements per channel (`N · Π trailing dims`).
    pub count: usize,
}

impl BatchStats {
    /// PyTorch-style running-statistics update on candle_nn-style buffers (e.g. the
    /// `running_mean` / `running_var` `Var`s a `VarMap` holds):
    /// `r ← (1 − m)·r + m·batch`, with the unbiased variance `var · n / (n − 1)` for `running_var`.
    pub fn update_running(
        &self,
        running_mean: &candle_core::Var,
        running_var: &candle_core::Var,
        momentum: f64,
    ) -> Result<()> {
        let c = self.mean.len();
        let unbias = self.count as f64 / (self.count.max(2) - 1) as f64;
        let dev = running_mean.device();
        let bm = Tensor::from_slice(&self.mean, c, dev)?.to_dtype(running_mean.dtype())?;
        let bv = (Tensor::from_slice(&self.var, c, dev)?.to_dtype(running_var.dtype())? * unbias)?;
        running_mean.set(&((running_mean.as_tensor() * (1.0 - momentum))? + (bm * momentum)?)?)?;
        running_var.set(&((running_var.as_tensor() * (1.0 - momentum))? + (bv * momentum)?)?)?;
        Ok(())
    }
}

/// Layout `(N, C, S)` of an input of rank ≥ 2, `S` being the product of the trailing dims.
fn ncs(dims: &[usize], op: &str) -> Result<(usize, usize, usize)> {
    if dims.len() < 2 {
        bail!("{op}: input must have at least 2 dims (N, C, ...), got {dims:?}")
    }
    Ok((dims[0], dims[1], dims[2..].iter().product()))
}

fn check_channel_vec(t: &Tensor, c: usize, op: &str, what: &str) -> Result<()> {
    check_cpu_f32(t, op, what)?;
    if t.dims() != [c] {
        bail!("{op}: {what} must have shape [{c}], got {:?}", t.dims())
    }
    Ok(())
}

fn check_residual(r: Option<&Tensor>, x: &Tensor, op: &str) -> Result<()> {
    if let Some(r) = r {
        check_cpu_f32(r, op, "residual")?;
        if r.dims() != x.dims() {
            bail!(
                "{op}: residual shape {:?} differs from input {:?}",
                r.dims(),
                x.dims()
            )
        }
    }
    Ok(())
}

fn batch_stats(x: &[f32], n: usize, c: usize, s: usize) -> BatchStats {
    let (mean, var): (Vec<f32>, Vec<f32>) = (0..c)
        .into_par_iter()
        .map(|ci| {
            let (mut sum, mut sq) = (0f64, 0f64);
            for ni in 0..n {
                let chunk = &x[(ni * c + ci) * s..(ni * c + ci + 1) * s];
                let (a, b) = sums::sum_sq(chunk);
                sum += a as f64;
                sq += b as f64;
            }
            let m = (n * s).max(1) as f64;
            let mean = sum / m;
            ((mean) as f32, (sq / m - mean * mean).max(0.0) as f32)
        })
        .unzip();
    BatchStats {
        mean,
        var,
        count: n * s,
    }
}

/// Training-mode batch norm + optional residual + optional ReLU over dim 1 of `x` (rank ≥ 2).
/// Returns the output and the batch statistics (for running-average updates).
/// Differentiable in `x`, `gamma`, `beta` and `residual`.
pub fn batch_norm_act(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    residual: Option<&Tensor>,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, BatchStats)> {
    check_cpu_f32(x, OP, "input")?;
    let (n, c, s) = ncs(x.dims(), OP)?;
    check_channel_vec(gamma, c, OP, "gamma")?;
    check_channel_vec(beta, c, OP, "beta")?;
    check_residual(residual, x, OP)?;
    let x = x.contiguous()?;
    let stats = with_data(&x, OP, |xd| Ok(batch_stats(xd, n, c, s)))?;
    let invstd = stats
        .var
        .iter()
        .map(|v| 1.0 / (*v as f64 + eps).sqrt() as f32)
        .collect();
    let op = BnAct {
        mean: stats.mean.clone(),
        invstd,
        relu,
    };
    let gb = Tensor::stack(&[gamma, beta], 0)?;
    let out = match residual {
        None => x.apply_op2(&gb, op)?,
        Some(r) => x.apply_op3(&gb, &r.contiguous()?, op)?,
    };
    Ok((out, stats))
}

struct BnAct {
    mean: Vec<f32>,
    invstd: Vec<f32>,
    relu: bool,
}

impl BnAct {
    fn forward(&self, dims: &[usize], x: &[f32], gb: &[f32], r: Option<&[f32]>) -> Vec<f32> {
        let c = dims[1];
        let s: usize = dims[2..].iter().product();
        let scale: Vec<f32> = (0..c).map(|ci| gb[ci] * self.invstd[ci]).collect();
        let shift: Vec<f32> = (0..c)
            .map(|ci| gb[c + ci] - self.mean[ci] * scale[ci])
            .collect();
        affine_act(x, &scale, &shift, r, self.relu, s)
    }

    /// Returns (dx, dgb, dresidual).
    fn backward(
        &self,
        dims: &[usize],
        x: &[f32],
        gb: &[f32],
        res: &[f32],
        dout: &[f32],
    ) -> [Vec<f32>; 3] {
        let (n, c) = (dims[0], dims[1]);
        let s: usize = dims[2..].iter().product();
        // Gradient after the activation; it is also the residual's gradient.
        let g: Vec<f32> = if self.relu {
            res.par_iter()
                .zip(dout.par_iter())
                .map(|(&y, &d)| if y > 0.0 { d } else { 0.0 })
                .collect()
        } else {
            dout.to_vec()
        };
        let sums: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ci| {
                let (m, is) = (self.mean[ci], self.invstd[ci]);
                let (mut sg, mut sgx) = (0f64, 0f64);
                for ni in 0..n {
                    let o = (ni * c + ci) * s;
                    let (a, b) = sums::grad_sums(&g[o..o + s], &x[o..o + s], m);
                    sg += a as f64;
                    sgx += (b * is) as f64;
                }
                (sg as f32, sgx as f32)
            })
            .collect();
        let cnt = (n * s).max(1) as f32;
        let mut dx = zeros(x.len());
        dx.par_chunks_mut(s.max(1))
            .enumerate()
            .for_each(|(i, dst)| {
                let ci = i % c;
                let (m, is) = (self.mean[ci], self.invstd[ci]);
                let (sg, sgx) = (sums[ci].0 / cnt, sums[ci].1 / cnt);
                let k = gb[ci] * is;
                let o = i * s;
                for ((d, &gv), &xv) in dst.iter_mut().zip(&g[o..o + s]).zip(&x[o..o + s]) {
                    *d = k * (gv - sg - (xv - m) * is * sgx);
                }
            });
        let mut dgb = vec![0f32; 2 * c];
        for (ci, (sg, sgx)) in sums.into_iter().enumerate() {
            dgb[ci] = sgx;
            dgb[c + ci] = sg;
        }
        [dx, dgb, g]
    }
}

fn affine_act(
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    r: Option<&[f32]>,
    relu: bool,
    s: usize,
) -> Vec<f32> {
    let c = scale.len();
    zeroed_chunks(x.len(), s, |i, dst| {
        let ci = i % c;
        let (a, b) = (scale[ci], shift[ci]);
        let src = &x[i * s..(i + 1) * s];
        match r {
            Some(r) => {
                let rr = &r[i * s..(i + 1) * s];
                for ((d, &xv), &rv) in dst.iter_mut().zip(src).zip(rr) {
                    *d = xv * a + b + rv;
                }
            }
            None => {
                for (d, &xv) in dst.iter_mut().zip(src) {
                    *d = xv * a + b;
                }
            }
        }
        if relu {
            for d in dst.iter_mut() {
                *d = d.max(0.0);
            }
        }
    })
}

impl CustomOp2 for BnAct {
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
        let out = self.forward(l1.dims(), slice(s1, l1, OP)?, slice(s2, l2, OP)?, None);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gb: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let [dx, dgb, _] = self.bwd_data(x, gb, res, grad)?;
        Ok((Some(tensor(dx, x.shape())?), Some(tensor(dgb, gb.shape())?)))
    }
}

impl CustomOp3 for BnAct {
    fn name(&self) -> &'static str {
        OP
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = self.forward(
            l1.dims(),
            slice(s1, l1, OP)?,
            slice(s2, l2, OP)?,
            Some(slice(s3, l3, OP)?),
        );
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gb: &Tensor,
        r: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let [dx, dgb, dr] = self.bwd_data(x, gb, res, grad)?;
        Ok((
            Some(tensor(dx, x.shape())?),
            Some(tensor(dgb, gb.shape())?),
            Some(tensor(dr, r.shape())?),
        ))
    }
}

impl BnAct {
    fn bwd_data(
        &self,
        x: &Tensor,
        gb: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<[Vec<f32>; 3]> {
        with_all([x, gb, res, grad], OP, |[xd, gbd, rd, gd]| {
            Ok(self.backward(x.dims(), xd, gbd, rd, gd))
        })
    }
}

/// Inference-mode fused op: `act(scale[c]·x + shift[c] [+ r])` over dim 1. Forward only (use it
/// on detached tensors; it has no backward).
pub fn channel_affine_act(
    x: &Tensor,
    scale: &Tensor,
    shift: &Tensor,
    residual: Option<&Tensor>,
    relu: bool,
) -> Result<Tensor> {
    check_cpu_f32(x, OP_EVAL, "input")?;
    let (_, c, s) = ncs(x.dims(), OP_EVAL)?;
    check_channel_vec(scale, c, OP_EVAL, "scale")?;
    check_channel_vec(shift, c, OP_EVAL, "shift")?;
    check_residual(residual, x, OP_EVAL)?;
    let sc = with_data(scale, OP_EVAL, |d| Ok(d.to_vec()))?;
    let sh = with_data(shift, OP_EVAL, |d| Ok(d.to_vec()))?;
    let out = with_data(x, OP_EVAL, |xd| match residual {
        None => Ok(affine_act(xd, &sc, &sh, None, relu, s)),
        Some(r) => with_data(r, OP_EVAL, |rd| {
            Ok(affine_act(xd, &sc, &sh, Some(rd), relu, s))
        }),
    })?;
    tensor(out, x.shape())
}

/// A batch-norm layer (over dim 1) that uses the fused ops, with PyTorch's running-statistics
/// semantics (momentum update with the unbiased batch variance).
pub struct FusedBatchNorm {
    pub gamma: Tensor,
    pub beta: Tensor,
    pub eps: f64,
    pub momentum: f64,
    running: Mutex<(Vec<f32>, Vec<f32>)>,
}

impl FusedBatchNorm {
    /// `gamma`, `beta`: `[C]` (pass `Var`s' tensors to train them). Running mean 0, variance 1.
    pub fn new(gamma: Tensor, beta: Tensor, eps: f64, momentum: f64) -> Result<Self> {
        check_cpu_f32(&gamma, "FusedBatchNorm", "gamma")?;
        let c = gamma.dims1()?;
        check_channel_vec(&beta, c, "FusedBatchNorm", "beta")?;
        Ok(Self {
            gamma,
            beta,
            eps,
            momentum,
            running: Mutex::new((vec![0.0; c], vec![1.0; c])),
        })
    }

    /// Running mean and (unbiased) variance.
    pub fn running_stats(&self) -> (Vec<f32>, Vec<f32>) {
        match self.running.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// `act(bn(x) [+ residual])`; batch statistics (and a running-stats update) when `train`,
    /// running statistics otherwise (then the result carries no gradient).
    pub fn forward_t(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        relu: bool,
        train: bool,
    ) -> Result<Tensor> {
        let mut guard = match self.running.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if train {
            let (out, st) = batch_norm_act(x, &self.gamma, &self.beta, residual, self.eps, relu)?;
            let m = self.momentum as f32;
            let unbias = st.count as f32 / (st.count.max(2) - 1) as f32;
            let (rm, rv) = &mut *guard;
            for ci in 0..rm.len() {
                rm[ci] = (1.0 - m) * rm[ci] + m * st.mean[ci];
                rv[ci] = (1.0 - m) * rv[ci] + m * st.var[ci] * unbias;
            }
            Ok(out)
        } else {
            let g = with_data(&self.gamma, "FusedBatchNorm", |d| Ok(d.to_vec()))?;
            let b = with_data(&self.beta, "FusedBatchNorm", |d| Ok(d.to_vec()))?;
            let (rm, rv) = &*guard;
            let scale: Vec<f32> = (0..g.len())
                .map(|i| g[i] / (rv[i] as f64 + self.eps).sqrt() as f32)
                .collect();
            let shift: Vec<f32> = (0..g.len()).map(|i| b[i] - rm[i] * scale[i]).collect();
            let c = g.len();
            channel_affine_act(
                &x.detach(),
                &tensor(scale, c)?,
                &tensor(shift, c)?,
                residual.map(|r| r.detach()).as_ref(),
                relu,
            )
        }
    }
}

/// The per-channel reductions of the batch norm: `(Σ x, Σ x²)` and `(Σ g, Σ g·(x − m))`.
/// A running `f32` sum is a serial dependency the compiler may not reorder, so the plain loops
/// stay scalar (about 5 % of an InfoGCN training step); with AVX2 + FMA they run in two
/// 8-lane accumulators each. The plain loops stay as the fallback and the reference
/// (`tests::avx2_sums_match_the_plain_loops`).
mod sums {
    pub(super) fn sum_sq(x: &[f32]) -> (f32, f32) {
        #[cfg(target_arch = "x86_64")]
        if crate::small::has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            #[allow(unsafe_code)]
            return unsafe { avx2::sum_sq(x) };
        }
        plain_sum_sq(x)
    }

    pub(super) fn grad_sums(g: &[f32], x: &[f32], m: f32) -> (f32, f32) {
        #[cfg(target_arch = "x86_64")]
        if crate::small::has_avx2_fma() {
            // SAFETY: as above.
            #[allow(unsafe_code)]
            return unsafe { avx2::grad_sums(g, x, m) };
        }
        plain_grad_sums(g, x, m)
    }

    pub(super) fn plain_sum_sq(x: &[f32]) -> (f32, f32) {
        x.iter().fold((0f32, 0f32), |(a, b), &v| (a + v, b + v * v))
    }

    pub(super) fn plain_grad_sums(g: &[f32], x: &[f32], m: f32) -> (f32, f32) {
        g.iter().zip(x).fold((0f32, 0f32), |(a, b), (&gv, &xv)| {
            (a + gv, b + gv * (xv - m))
        })
    }

    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    pub(super) mod avx2 {
        use std::arch::x86_64::*;

        /// Sum of the eight lanes.
        #[target_feature(enable = "avx2,fma")]
        unsafe fn hsum(v: __m256) -> f32 {
            let mut lanes = [0f32; 8];
            // SAFETY: `lanes` holds 8 floats.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
            lanes.iter().sum()
        }

        /// # Safety
        /// The CPU must support AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        pub(in super::super) unsafe fn sum_sq(x: &[f32]) -> (f32, f32) {
            let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let (mut b0, mut b1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut ch = x.chunks_exact(16);
            for c in &mut ch {
                // SAFETY: `c` holds 16 floats.
                let (v0, v1) = unsafe {
                    (
                        _mm256_loadu_ps(c.as_ptr()),
                        _mm256_loadu_ps(c.as_ptr().add(8)),
                    )
                };
                a0 = _mm256_add_ps(a0, v0);
                a1 = _mm256_add_ps(a1, v1);
                b0 = _mm256_fmadd_ps(v0, v0, b0);
                b1 = _mm256_fmadd_ps(v1, v1, b1);
            }
            let (ta, tb) = super::plain_sum_sq(ch.remainder());
            // SAFETY: the CPU supports AVX2 (this function's contract).
            unsafe {
                (
                    hsum(_mm256_add_ps(a0, a1)) + ta,
                    hsum(_mm256_add_ps(b0, b1)) + tb,
                )
            }
        }

        /// # Safety
        /// The CPU must support AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        pub(in super::super) unsafe fn grad_sums(g: &[f32], x: &[f32], m: f32) -> (f32, f32) {
            let n = g.len().min(x.len());
            let (g, x) = (&g[..n], &x[..n]);
            let mv = _mm256_set1_ps(m);
            let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let (mut b0, mut b1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let (mut cg, mut cx) = (g.chunks_exact(16), x.chunks_exact(16));
            for (gc, xc) in (&mut cg).zip(&mut cx) {
                // SAFETY: `gc` and `xc` hold 16 floats each.
                let (g0, g1, x0, x1) = unsafe {
                    (
                        _mm256_loadu_ps(gc.as_ptr()),
                        _mm256_loadu_ps(gc.as_ptr().add(8)),
                        _mm256_loadu_ps(xc.as_ptr()),
                        _mm256_loadu_ps(xc.as_ptr().add(8)),
                    )
                };
                a0 = _mm256_add_ps(a0, g0);
                a1 = _mm256_add_ps(a1, g1);
                b0 = _mm256_fmadd_ps(g0, _mm256_sub_ps(x0, mv), b0);
                b1 = _mm256_fmadd_ps(g1, _mm256_sub_ps(x1, mv), b1);
            }
            let (ta, tb) = super::plain_grad_sums(cg.remainder(), cx.remainder(), m);
            // SAFETY: the CPU supports AVX2 (this function's contract).
            unsafe {
                (
                    hsum(_mm256_add_ps(a0, a1)) + ta,
                    hsum(_mm256_add_ps(b0, b1)) + tb,
                )
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The AVX2 sums against the plain loops, at lengths around the 16-lane blocks (forced:
        /// the AVX2 functions are called directly where the CPU has them).
        #[test]
        fn avx2_sums_match_the_plain_loops() {
            for len in [0usize, 1, 7, 15, 16, 17, 33, 100, 1600] {
                let x: Vec<f32> = (0..len)
                    .map(|i| ((i * 37 % 101) as f32) / 50.0 - 1.0)
                    .collect();
                let g: Vec<f32> = (0..len)
                    .map(|i| ((i * 53 % 89) as f32) / 40.0 - 1.1)
                    .collect();
                let close = |a: (f32, f32), b: (f32, f32)| {
                    let tol = |r: f32| 1e-4 * (1.0 + r.abs());
                    assert!(
                        (a.0 - b.0).abs() <= tol(b.0) && (a.1 - b.1).abs() <= tol(b.1),
                        "len {len}: {a:?} vs {b:?}"
                    );
                };
                close(sum_sq(&x), plain_sum_sq(&x));
                close(grad_sums(&g, &x, 0.3), plain_grad_sums(&g, &x, 0.3));
                #[cfg(target_arch = "x86_64")]
                if crate::small::has_avx2_fma() {
                    // SAFETY: checked just above.
                    #[allow(unsafe_code)]
                    unsafe {
                        close(avx2::sum_sq(&x), plain_sum_sq(&x));
                        close(avx2::grad_sums(&g, &x, 0.3), plain_grad_sums(&g, &x, 0.3));
                    }
                }
            }
        }
    }
}
