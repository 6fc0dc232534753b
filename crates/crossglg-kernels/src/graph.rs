//! Spatial graph convolution of ST-GCN: a 1×1 convolution to `K·C_out` channels followed by
//! aggregation with `K` adjacency matrices,
//! `out[n, o, t, w] = Σ_k Σ_v (Σ_c W[k·C_out + o, c] · x[n, c, t, v]) · A[k, v, w]`.
//!
//! Per sample this is one gemm for the 1×1 convolution into a scratch buffer plus `K` gemms for
//! the aggregation; the `(N, K·C_out, T, V)` intermediate never becomes a tensor. The backward pass
//! recomputes the scratch product (one gemm) instead of keeping it alive.

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::mm::{gemm, View};
use crate::util::{
    add_into, build_chunks, check_cpu_f32, check_untracked, group_size, slice, tensor, with_all,
    with_scratch, zeros,
};

const OP: &str = "graph_conv";

/// `x`: `(N, C, T, V)`, `w`: `(K·C_out, C)`, `a`: `(K, V, V_out)` → `(N, C_out, T, V_out)`.
/// Differentiable in all three (so learnable or masked adjacencies work).
pub fn graph_conv(x: &Tensor, w: &Tensor, a: &Tensor) -> Result<Tensor> {
    check(x, w, a, OP)?;
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &a.contiguous()?, GraphConv)
}

/// Checks the three operands of a graph conv named `op`.
fn check(x: &Tensor, w: &Tensor, a: &Tensor, op: &str) -> Result<()> {
    for (t, what) in [(x, "input"), (w, "weight"), (a, "adjacency")] {
        check_cpu_f32(t, op, what)?;
    }
    let (_, c, _, v) = x.dims4()?;
    let (kco, cw) = w.dims2()?;
    let (k, va, _) = a.dims3()?;
    if cw != c {
        bail!("{op}: weight has {cw} input channels, input has {c}")
    }
    if va != v {
        bail!("{op}: adjacency is for {va} joints, input has {v}")
    }
    if k == 0 || kco % k != 0 {
        bail!("{op}: weight rows {kco} are not a multiple of the {k} adjacency partitions")
    }
    Ok(())
}

struct GraphConv;

#[derive(Clone, Copy)]
struct Geo {
    n: usize,
    c: usize,
    t: usize,
    v: usize,
    k: usize,
    co: usize,
    vo: usize,
}

impl Geo {
    fn new(xs: &[usize], ws: &[usize], as_: &[usize]) -> Self {
        let k = as_[0];
        Self {
            n: xs[0],
            c: xs[1],
            t: xs[2],
            v: xs[3],
            k,
            co: ws[0] / k,
            vo: as_[2],
        }
    }
}

/// scratch (K·C_out × T·V) = W · x[n]
fn conv1x1(g: Geo, x: &[f32], w: &[f32], n: usize, scratch: &mut [f32]) {
    let tv = g.t * g.v;
    gemm(
        g.k * g.co,
        tv,
        g.c,
        scratch,
        View::new(0, tv, 1),
        false,
        w,
        View::new(0, g.c, 1),
        x,
        View::new(n * g.c * tv, tv, 1),
    );
}

fn forward(g: Geo, x: &[f32], w: &[f32], a: &[f32]) -> Vec<f32> {
    forward_with(g, x, w, a, |_| {})
}

/// [`forward`] with `ep` applied to each sample's `(C_out, T, V_out)` output after its gemms.
fn forward_with(
    g: Geo,
    x: &[f32],
    w: &[f32],
    a: &[f32],
    ep: impl Fn(&mut [f32]) + Sync,
) -> Vec<f32> {
    let out_n = g.co * g.t * g.vo;
    build_chunks(
        g.n * out_n,
        out_n,
        out_n,
        |_, _| 0.0,
        |n, dst| {
            with_scratch([g.k * g.co * g.t * g.v], |[scratch]| {
                conv1x1(g, x, w, n, scratch);
                for k in 0..g.k {
                    // (C_out·T × V) · (V × V_out), the k-th block of the scratch is contiguous.
                    gemm(
                        g.co * g.t,
                        g.vo,
                        g.v,
                        dst,
                        View::new(0, g.vo, 1),
                        k > 0,
                        scratch,
                        View::new(k * g.co * g.t * g.v, g.v, 1),
                        a,
                        View::new(k * g.v * g.vo, g.vo, 1),
                    );
                }
            });
            ep(dst);
        },
    )
}

/// Inference-only [`graph_conv`] with a fused epilogue: `act(graph_conv(x, w, a) + offset)`,
/// `offset: (C_out, V_out)` added to every frame, `act` = ReLU when `relu`. A batch norm after
/// the graph convolution folds into `w` (scale) and `offset` (shift, plus the convolution's
/// bias carried through the aggregation). Fails when any input tracks gradients.
pub fn graph_conv_infer(
    x: &Tensor,
    w: &Tensor,
    a: &Tensor,
    offset: &Tensor,
    relu: bool,
) -> Result<Tensor> {
    const INF: &str = "graph_conv_infer";
    check(x, w, a, INF)?;
    check_cpu_f32(offset, INF, "offset")?;
    check_untracked([x, w, a, offset], INF)?;
    let (n, _, t, _) = x.dims4()?;
    let (k, _, vo) = a.dims3()?;
    let co = w.dim(0)? / k;
    if offset.dims() != [co, vo] {
        bail!("{INF}: offset {:?} is not ({co}, {vo})", offset.dims())
    }
    let g = Geo::new(x.dims(), w.dims(), a.dims());
    let out = with_all([x, w, a, offset], INF, |[xd, wd, ad, od]| {
        Ok(forward_with(g, xd, wd, ad, |dst| {
            for (frame, off) in dst.chunks_exact_mut(vo.max(1)).zip(
                od.chunks_exact(vo.max(1))
                    .flat_map(|o| std::iter::repeat_n(o, t)),
            ) {
                for (y, b) in frame.iter_mut().zip(off) {
                    *y += b;
                    if relu {
                        *y = y.max(0.0);
                    }
                }
            }
        }))
    })?;
    tensor(out, (n, co, t, vo))
}

/// Returns (dx, dw, da).
fn backward(g: Geo, x: &[f32], w: &[f32], a: &[f32], dout: &[f32]) -> [Vec<f32>; 3] {
    let tv = g.t * g.v;
    let out_n = g.co * g.t * g.vo;
    let (nw, na) = (g.k * g.co * g.c, g.k * g.v * g.vo);
    let mut dx = zeros(g.n * g.c * tv);
    type Acc = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);
    let init = || {
        (
            vec![0f32; nw],
            vec![0f32; na],
            vec![0f32; g.k * g.co * tv],
            vec![0f32; g.k * g.co * tv],
        )
    };
    let step = |(mut dw, mut da, mut scratch, mut dscratch): Acc, (n, dxn): (usize, &mut [f32])| {
        conv1x1(g, x, w, n, &mut scratch);
        for k in 0..g.k {
            let blk = k * g.co * tv;
            // dscratch_k (C_out·T × V) = dout[n] (C_out·T × V_out) · A_k^T
            gemm(
                g.co * g.t,
                g.v,
                g.vo,
                &mut dscratch,
                View::new(blk, g.v, 1),
                false,
                dout,
                View::new(n * out_n, g.vo, 1),
                a,
                View::new(k * g.v * g.vo, 1, g.vo),
            );
            // dA_k (V × V_out) += scratch_k^T · dout[n]
            gemm(
                g.v,
                g.vo,
                g.co * g.t,
                &mut da,
                View::new(k * g.v * g.vo, g.vo, 1),
                true,
                &scratch,
                View::new(blk, 1, g.v),
                dout,
                View::new(n * out_n, g.vo, 1),
            );
        }
        // dW (K·C_out × C) += dscratch · x[n]^T
        gemm(
            g.k * g.co,
            g.c,
            tv,
            &mut dw,
            View::new(0, g.c, 1),
            true,
            &dscratch,
            View::new(0, tv, 1),
            x,
            View::new(n * g.c * tv, 1, tv),
        );
        // dx[n] (C × T·V) = W^T · dscratch
        gemm(
            g.c,
            tv,
            g.k * g.co,
            dxn,
            View::new(0, tv, 1),
            false,
            w,
            View::new(0, 1, g.c),
            &dscratch,
            View::new(0, tv, 1),
        );
        (dw, da, scratch, dscratch)
    };
    // Fixed sample groups, summed in order: bit-identical gradients whatever the scheduling.
    let chunk = (g.c * tv).max(1);
    let gs = group_size(g.n);
    let parts: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(gs * chunk)
        .enumerate()
        .map(|(gi, dxg)| {
            let (dw, da, _, _) = dxg
                .chunks_mut(chunk)
                .enumerate()
                .fold(init(), |acc, (j, dxn)| step(acc, (gi * gs + j, dxn)));
            (dw, da)
        })
        .collect();
    let (dw, da) = parts
        .into_iter()
        .fold((vec![0f32; nw], vec![0f32; na]), |(w1, a1), (w2, a2)| {
            (add_into(w1, w2), add_into(a1, a2))
        });
    [dx, dw, da]
}

impl CustomOp3 for GraphConv {
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
        let g = Geo::new(l1.dims(), l2.dims(), l3.dims());
        let out = forward(
            g,
            slice(s1, l1, OP)?,
            slice(s2, l2, OP)?,
            slice(s3, l3, OP)?,
        );
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.co, g.t, g.vo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        a: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = Geo::new(x.dims(), w.dims(), a.dims());
        let [dx, dw, da] = with_all([x, w, a, grad], OP, |[xd, wd, ad, gd]| {
            Ok(backward(g, xd, wd, ad, gd))
        })?;
        Ok((
            Some(tensor(dx, x.shape())?),
            Some(tensor(dw, w.shape())?),
            Some(tensor(da, a.shape())?),
        ))
    }
}
