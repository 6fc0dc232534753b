//! CTR-GCN's channel-wise aggregation `out[b, t, u] = Σ_v x[b, t, v] · m[b, u, v]` as one f32 CPU
//! op with its backward pass. candle runs it as `b = N·C` tiny batched matmuls (25×25 per
//! channel), whose per-call dispatch and the transposed copies of the backward pass dominated the
//! CTR-GCN training step; here every batch is a few dot products and axpys.

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

const OP: &str = "channel_aggregate";

/// `x: (B, T, V)`, `m: (B, U, V)` -> `(B, T, U)`, f32 on the CPU (differentiable in both).
pub fn channel_aggregate(x: &Tensor, m: &Tensor) -> Result<Tensor> {
    let (b, _, v) = x.dims3()?;
    let (bm, _, vm) = m.dims3()?;
    if b != bm || v != vm {
        bail!(
            "{OP}: shapes {:?} and {:?} do not match",
            x.dims(),
            m.dims()
        )
    }
    x.contiguous()?
        .apply_op2(&m.contiguous()?, ChannelAggregate)
}

struct ChannelAggregate;

fn data<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(d) = s else {
        bail!("{OP}: only f32 is supported")
    };
    match l.contiguous_offsets() {
        Some((a, z)) => Ok(&d[a..z]),
        None => bail!("{OP}: input must be contiguous"),
    }
}

fn host(t: &Tensor) -> Result<Vec<f32>> {
    t.contiguous()?.flatten_all()?.to_vec1::<f32>()
}

impl CustomOp2 for ChannelAggregate {
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
        let (b, t, v) = l1.shape().dims3()?;
        let (_, u, _) = l2.shape().dims3()?;
        let (x, m) = (data(s1, l1)?, data(s2, l2)?);
        let mut out = vec![0f32; b * t * u];
        out.par_chunks_mut(t * u).enumerate().for_each(|(bi, o)| {
            let xb = &x[bi * t * v..(bi + 1) * t * v];
            let mb = &m[bi * u * v..(bi + 1) * u * v];
            // mᵀ (V, U) so the inner loop is a contiguous axpy (a serial f32 dot product does
            // not vectorise)
            let mut mt = vec![0f32; v * u];
            for (ui, mr) in mb.chunks_exact(v).enumerate() {
                for (vi, mv) in mr.iter().enumerate() {
                    mt[vi * u + ui] = *mv;
                }
            }
            for (xr, or) in xb.chunks_exact(v).zip(o.chunks_exact_mut(u)) {
                for (xv, mtr) in xr.iter().zip(mt.chunks_exact(u)) {
                    for (oe, mv) in or.iter_mut().zip(mtr) {
                        *oe += xv * mv;
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, t, u))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        m: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, t, v) = x.dims3()?;
        let u = m.dim(1)?;
        let (xd, md, gd) = (host(x)?, host(m)?, host(grad)?);
        let mut dx = vec![0f32; b * t * v];
        let mut dm = vec![0f32; b * u * v];
        dx.par_chunks_mut(t * v)
            .zip(dm.par_chunks_mut(u * v))
            .enumerate()
            .for_each(|(bi, (dxb, dmb))| {
                let xb = &xd[bi * t * v..(bi + 1) * t * v];
                let mb = &md[bi * u * v..(bi + 1) * u * v];
                let gb = &gd[bi * t * u..(bi + 1) * t * u];
                for ((gr, xr), dxr) in gb
                    .chunks_exact(u)
                    .zip(xb.chunks_exact(v))
                    .zip(dxb.chunks_exact_mut(v))
                {
                    // dx[t, :] += g[t, u] · m[u, :];  dm[u, :] += g[t, u] · x[t, :]
                    for ((g, mr), dmr) in gr
                        .iter()
                        .zip(mb.chunks_exact(v))
                        .zip(dmb.chunks_exact_mut(v))
                    {
                        for ((d, mv), (dmv, xv)) in
                            dxr.iter_mut().zip(mr).zip(dmr.iter_mut().zip(xr))
                        {
                            *d += g * mv;
                            *dmv += g * xv;
                        }
                    }
                }
            });
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, (b, t, v), dev)?),
            Some(Tensor::from_vec(dm, (b, u, v), dev)?),
        ))
    }
}

const BIAS_OP: &str = "add_channel_bias";

/// `x + b` with `x: (N, C, ...)` and `b: (C)`, f32 on the CPU. candle's broadcast add reduces
/// the bias gradient over dims 0, 2, 3 with its generic strided reduction, which was about a
/// third of a CTR-GCN training step; here it is one contiguous pass.
pub fn add_channel_bias(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    if dims.len() < 2 || b.dims() != [dims[1]] {
        bail!(
            "{BIAS_OP}: bias {:?} does not match input {dims:?}",
            b.dims()
        )
    }
    x.contiguous()?.apply_op2(&b.contiguous()?, AddChannelBias)
}

struct AddChannelBias;

impl CustomOp2 for AddChannelBias {
    fn name(&self) -> &'static str {
        BIAS_OP
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, b) = (data(s1, l1)?, data(s2, l2)?);
        let c = b.len();
        let s: usize = l1.shape().dims()[2..].iter().product();
        let mut out = x.to_vec();
        out.par_chunks_mut(c * s).for_each(|o| {
            for (oc, bv) in o.chunks_exact_mut(s.max(1)).zip(b) {
                oc.iter_mut().for_each(|e| *e += bv);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let c = b.dim(0)?;
        let s: usize = grad.dims()[2..].iter().product();
        let g = host(grad)?;
        let mut gb = vec![0f64; c];
        for gn in g.chunks_exact(c * s) {
            for (acc, gc) in gb.iter_mut().zip(gn.chunks_exact(s.max(1))) {
                *acc += gc.iter().map(|v| *v as f64).sum::<f64>();
            }
        }
        let gb: Vec<f32> = gb.into_iter().map(|v| v as f32).collect();
        Ok((
            Some(grad.clone()),
            Some(Tensor::from_vec(gb, c, b.device())?),
        ))
    }
}
