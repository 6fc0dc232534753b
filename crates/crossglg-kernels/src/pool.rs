//! Max pooling over time with kernel 3, padding 1 and stride `s` (the max-pool branch of the
//! multi-scale temporal convolution): `out[n,c,t',v] = max_{k∈{−1,0,1}} x[n,c,s·t'+k,v]` over
//! the frames that exist. As candle ops this was a padded copy, two element-wise maxima over
//! strided views and a subsampling copy, and a backward pass through all of them.

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::util::{check_cpu_f32, slice, tensor, with_all, zeroed_chunks, zeros};

const OP: &str = "max_pool_time3";

/// `x: (N, C, T, V)` → `(N, C, ceil(T / stride), V)`; the gradient goes to the first maximum
/// of each window. f32 on the CPU.
pub fn max_pool_time3(x: &Tensor, stride: usize) -> Result<Tensor> {
    check_cpu_f32(x, OP, "input")?;
    x.dims4()?;
    if stride == 0 {
        bail!("{OP}: stride must be positive")
    }
    x.contiguous()?.apply_op1(MaxPool { stride })
}

struct MaxPool {
    stride: usize,
}

/// Index (frame) of the first maximum in the window around frame `tc`, for joint `vi`.
#[inline]
fn argmax(plane: &[f32], t: usize, v: usize, tc: usize, vi: usize) -> usize {
    let lo = tc.saturating_sub(1);
    let hi = (tc + 1).min(t - 1);
    let mut best = lo;
    for ti in lo + 1..=hi {
        if plane[ti * v + vi] > plane[best * v + vi] {
            best = ti;
        }
    }
    best
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        OP
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, t, v) = l.shape().dims4()?;
        let x = slice(s, l, OP)?;
        let to = t.div_ceil(self.stride);
        // written once per plane (no zero pass first), row by row as element-wise maxima of
        // the up to three input rows (vectorises; the per-element argmax is for the backward)
        // (no output, hence no call, when T or V is 0)
        let out = zeroed_chunks(n * c * to * v, to * v, |nc, o| {
            let plane = &x[nc * t * v..][..t * v];
            for (j, orow) in o.chunks_exact_mut(v).enumerate() {
                let tc = j * self.stride;
                let (lo, hi) = (tc.saturating_sub(1), (tc + 1).min(t - 1));
                orow.copy_from_slice(&plane[lo * v..][..v]);
                for ti in lo + 1..=hi {
                    for (e, x) in orow.iter_mut().zip(&plane[ti * v..][..v]) {
                        if *x > *e {
                            *e = *x;
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c, to, v))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, t, v) = x.dims4()?;
        let to = t.div_ceil(self.stride);
        let dx = with_all([x, grad], OP, |[xd, gd]| {
            let mut dx = zeros(xd.len());
            if t > 0 {
                dx.par_chunks_mut(t * v)
                    .zip(xd.par_chunks(t * v))
                    .zip(gd.par_chunks((to * v).max(1)))
                    .for_each(|((d, plane), g)| {
                        for (j, grow) in g.chunks_exact(v).enumerate() {
                            let tc = j * self.stride;
                            for (vi, gv) in grow.iter().enumerate() {
                                d[argmax(plane, t, v, tc, vi) * v + vi] += gv;
                            }
                        }
                    });
            }
            Ok(dx)
        })?;
        Ok(Some(tensor(dx, x.shape())?))
    }
}
