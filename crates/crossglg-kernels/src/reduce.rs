//! Mean over the time axis of `(N, C, T, V)`. candle reduces a middle axis with its generic
//! strided reduction and back-propagates through a broadcast add; here both directions are one
//! contiguous pass.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::util::{check_cpu_f32, slice, tensor, with_data, zeros};

const OP: &str = "time_mean";

/// `x: (N, C, T, V)` → `(N, C, 1, V)`, the mean over `T`; f32 on the CPU, differentiable.
pub fn time_mean(x: &Tensor) -> Result<Tensor> {
    check_cpu_f32(x, OP, "input")?;
    x.dims4()?;
    x.contiguous()?.apply_op1(TimeMean)
}

struct TimeMean;

impl CustomOp1 for TimeMean {
    fn name(&self) -> &'static str {
        OP
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, t, v) = l.shape().dims4()?;
        let x = slice(s, l, OP)?;
        let mut out = vec![0f32; n * c * v];
        let scale = 1.0 / t.max(1) as f32;
        out.par_chunks_mut(v.max(1))
            .zip(x.par_chunks(t * v).take(n * c))
            .for_each(|(o, xb)| {
                for row in xb.chunks_exact(v) {
                    for (a, b) in o.iter_mut().zip(row) {
                        *a += b;
                    }
                }
                o.iter_mut().for_each(|a| *a *= scale);
            });
        Ok((CpuStorage::F32(out), Shape::from((n, c, 1, v))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (n, c, t, v) = x.dims4()?;
        let scale = 1.0 / t.max(1) as f32;
        let dx = with_data(grad, OP, |g| {
            let mut dx = zeros(n * c * t * v);
            dx.par_chunks_mut((t * v).max(1))
                .zip(g.par_chunks(v.max(1)))
                .for_each(|(d, gb)| {
                    for row in d.chunks_exact_mut(v) {
                        for (a, b) in row.iter_mut().zip(gb) {
                            *a = b * scale;
                        }
                    }
                });
            Ok(dx)
        })?;
        Ok(Some(tensor(dx, x.shape())?))
    }
}
