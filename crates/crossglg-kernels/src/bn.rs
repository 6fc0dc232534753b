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
                let (mut a, mut b) = (0f32, 0f32);
                for &v in chunk {
                    a += v;
                    b += v * v;
                }
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
                    let (mut a, mut b) = (0f32, 0f32);
                    for (&gv, &xv) in g[o..o + s].iter().zip(&x[o..o + s]) {
                        a += gv;
                        b += gv * (xv - m) * is;
                    }
                    sg += a as f64;
                    sgx += b as f64;
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
