//! Per-joint scaling of `(N, C, T, V)` features by `(N, 1, 1, V)` weights: CrossGLG's joint
//! importance applied inside every encoder block.
//!
//! Why: candle's broadcast multiply takes its strided path, and its backward pass multiplies
//! again and reduces the weight gradient over `C` and `T` with a strided sum; with the guided
//! heads on, that was most of the gap between the full CrossGLG training step and the bare
//! encoder's. Here each direction is one pass.

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::util::{check_cpu_f32, slice, tensor, with_all, zeroed_chunks};

const OP: &str = "joint_scale";

/// `x: (N, C, T, V)`, `w: (N, 1, 1, V)` → `x · w` (broadcast over `C` and `T`); f32 on the CPU,
/// differentiable in both.
pub fn joint_scale(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    check_cpu_f32(x, OP, "input")?;
    check_cpu_f32(w, OP, "weights")?;
    let (n, _, _, v) = x.dims4()?;
    if w.dims() != [n, 1, 1, v] {
        bail!(
            "{OP}: weights {:?} are not (N, 1, 1, V) for input {:?}",
            w.dims(),
            x.dims()
        )
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, JointScale)
}

struct JointScale;

/// `out[n, c, t, v] = f(x[n, c, t, v], p[row(n, c) + v])`: every frame of an `(N, C, T, V)`
/// tensor combined with a per-joint row of `p` picked by sample and channel, a plane per task
/// (no task at all for an empty tensor).
fn per_joint(
    x: &[f32],
    (n, c, t, v): (usize, usize, usize, usize),
    p: &[f32],
    row: impl Fn(usize, usize) -> usize + Sync,
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> Vec<f32> {
    let plane = t * v;
    zeroed_chunks(n * c * plane, plane, |nc, dst| {
        let (xs, pr) = (&x[nc * plane..][..plane], &p[row(nc / c, nc % c)..][..v]);
        for (d, xr) in dst.chunks_exact_mut(v).zip(xs.chunks_exact(v)) {
            for ((d, a), b) in d.iter_mut().zip(xr).zip(pr) {
                *d = f(*a, *b);
            }
        }
    })
}

/// `out[n, c, t, v] = x[n, c, t, v] · w[n, v]`
fn scale(x: &[f32], w: &[f32], dims: (usize, usize, usize, usize)) -> Vec<f32> {
    let v = dims.3;
    per_joint(x, dims, w, |n, _| n * v, |a, b| a * b)
}

impl CustomOp2 for JointScale {
    fn name(&self) -> &'static str {
        OP
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = xl.shape().dims4()?;
        let out = scale(slice(xs, xl, OP)?, slice(ws, wl, OP)?, dims);
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dims = x.dims4()?;
        let (n, c, t, v) = dims;
        let (dx, dw) = with_all([x, w, grad], OP, |[xd, wd, gd]| {
            let dx = scale(gd, wd, dims);
            // dw[n, v] = Σ_{c, t} g · x, one sample per task (summed in a fixed order)
            let per = c * t * v;
            let mut dw = vec![0f32; n * v];
            dw.par_chunks_mut(v.max(1))
                .enumerate()
                .for_each(|(ni, acc)| {
                    let (g, xs) = (&gd[ni * per..][..per], &xd[ni * per..][..per]);
                    for (gr, xr) in g.chunks_exact(v).zip(xs.chunks_exact(v)) {
                        for ((a, gv), xv) in acc.iter_mut().zip(gr).zip(xr) {
                            *a += gv * xv;
                        }
                    }
                });
            Ok((dx, dw))
        })?;
        Ok((Some(tensor(dx, x.shape())?), Some(tensor(dw, w.shape())?)))
    }
}

const BIAS_OP: &str = "channel_joint_bias";

/// `x: (N, C, T, V)`, `b: (C, V)` → `x + b` (broadcast over `N` and `T`): ST-GCN's graph-conv
/// bias as it comes out of the aggregation. f32 on the CPU, differentiable in both. Candle's
/// broadcast add reduces the bias gradient with a single-threaded strided sum over `N` and `T`
/// (4 % of an ST-GCN training step); here it is one pass, a channel per task.
pub fn channel_joint_bias(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    check_cpu_f32(x, BIAS_OP, "input")?;
    check_cpu_f32(b, BIAS_OP, "bias")?;
    let (_, c, _, v) = x.dims4()?;
    if b.dims() != [c, v] {
        bail!(
            "{BIAS_OP}: bias {:?} is not (C, V) for input {:?}",
            b.dims(),
            x.dims()
        )
    }
    x.contiguous()?
        .apply_op2(&b.contiguous()?, ChannelJointBias)
}

struct ChannelJointBias;

impl CustomOp2 for ChannelJointBias {
    fn name(&self) -> &'static str {
        BIAS_OP
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = xl.shape().dims4()?;
        let (x, b) = (slice(xs, xl, BIAS_OP)?, slice(bs, bl, BIAS_OP)?);
        let v = dims.3;
        let out = per_joint(x, dims, b, |_, c| c * v, |a, b| a + b);
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, c, t, v) = x.dims4()?;
        let db = with_all([grad], BIAS_OP, |[gd]| {
            // db[c, v] = Σ_{n, t} g[n, c, t, v], one channel per task, summed in a fixed order
            let plane = t * v;
            let mut db = vec![0f32; c * v];
            db.par_chunks_mut(v.max(1))
                .enumerate()
                .for_each(|(ci, acc)| {
                    for ni in 0..n {
                        let g = &gd[(ni * c + ci) * plane..][..plane];
                        for gr in g.chunks_exact(v) {
                            for (a, gv) in acc.iter_mut().zip(gr) {
                                *a += gv;
                            }
                        }
                    }
                });
            Ok(db)
        })?;
        Ok((Some(grad.clone()), Some(tensor(db, b.shape())?)))
    }
}
