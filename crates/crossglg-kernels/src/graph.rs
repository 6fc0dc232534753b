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
use crate::small::{transpose, with_avx2};
use crate::util::{
    add_into, check_cpu_f32, check_untracked, group_size, slice, tensor, with_all, with_scratch,
    zeroed_chunks, zeros,
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
    zeroed_chunks(g.n * out_n, out_n, |n, dst| {
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
    })
}

/// The sparse inference order of the same product: aggregate the input first, then one gemm
/// of depth `K·C_in`. Per sample:
/// 1. `xt[c, v, :] = x[c, :, v]` (frames contiguous);
/// 2. `y[k, c, u, :] = Σ_v A[k, v, u] · xt[c, v, :]`, skipping the zeros of `A` (ST-GCN's
///    partitions hold 73 non-zeros of 1875 for NTU-25, so this is a few frame-long
///    multiply-adds per output joint instead of a 25-deep product, and it runs on the `C_in`
///    input channels rather than the `C_out` output ones);
/// 3. `z = W' · y` with `W'[o, k·C_in + c] = W[k·C_out + o, c]`: one gemm of depth `K·C_in`
///    whose output is written once, not `K + 1` times;
/// 4. the epilogue writes `z[o, u, t]` back as `out[o, t, u]`.
fn forward_sparse(
    g: Geo,
    (x, w, a): (&[f32], &[f32], &[f32]),
    offset: &[f32],
    ep: impl Fn(&mut f32, f32) + Sync,
) -> Vec<f32> {
    let (kc, tv, t) = (g.k * g.c, g.t * g.v, g.t);
    let mut wr = vec![0f32; g.co * kc];
    for (row, wo) in wr.chunks_exact_mut(kc.max(1)).enumerate() {
        for (k, dst) in wo.chunks_exact_mut(g.c.max(1)).enumerate() {
            dst.copy_from_slice(&w[(k * g.co + row) * g.c..][..g.c]);
        }
    }
    // the non-zeros of A grouped by output (k, u)
    let taps: Vec<Vec<(usize, f32)>> = (0..g.k * g.vo)
        .map(|ku| {
            let (k, u) = (ku / g.vo, ku % g.vo);
            (0..g.v)
                .map(|v| (v, a[(k * g.v + v) * g.vo + u]))
                .filter(|&(_, av)| av != 0.0)
                .collect()
        })
        .collect();
    let out_n = g.co * t * g.vo;
    zeroed_chunks(g.n * out_n, out_n, |n, dst| {
        with_scratch([g.c * tv, kc * g.vo * t, g.co * g.vo * t], |[xt, y, z]| {
            let xn = &x[n * g.c * tv..][..g.c * tv];
            with_avx2(
                #[inline(always)]
                || aggregate_sparse(g, xn, &taps, xt, y),
            );
            let vt = g.vo * t;
            gemm(
                g.co,
                vt,
                kc,
                z,
                View::new(0, vt, 1),
                false,
                &wr,
                View::new(0, kc, 1),
                y,
                View::new(0, vt, 1),
            );
            with_avx2(
                #[inline(always)]
                || transpose_epilogue(g, z, offset, &ep, dst),
            );
        });
    })
}

/// Steps 1 and 2 of [`forward_sparse`] for one sample.
#[inline(always)]
fn aggregate_sparse(g: Geo, xn: &[f32], taps: &[Vec<(usize, f32)>], xt: &mut [f32], y: &mut [f32]) {
    let (t, tv) = (g.t, g.t * g.v);
    for (xc, xtc) in xn.chunks_exact(tv).zip(xt.chunks_exact_mut(tv)) {
        transpose(xc, t, g.v, xtc);
    }
    for (yk, taps_k) in y.chunks_exact_mut(g.c * g.vo * t).zip(taps.chunks(g.vo)) {
        for (yc, xtc) in yk.chunks_exact_mut(g.vo * t).zip(xt.chunks_exact(tv)) {
            for (yu, tu) in yc.chunks_exact_mut(t).zip(taps_k) {
                match tu.split_first() {
                    None => yu.fill(0.0),
                    Some((&(v0, a0), rest)) => {
                        for (o, xi) in yu.iter_mut().zip(&xtc[v0 * t..][..t]) {
                            *o = a0 * xi;
                        }
                        for &(v, av) in rest {
                            for (o, xi) in yu.iter_mut().zip(&xtc[v * t..][..t]) {
                                *o += av * xi;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Step 4 of [`forward_sparse`]: `dst[o, t, u] = act(z[o, u, t] + offset[o, u])`.
#[inline(always)]
fn transpose_epilogue(
    g: Geo,
    z: &[f32],
    offset: &[f32],
    ep: &impl Fn(&mut f32, f32),
    dst: &mut [f32],
) {
    let vt = g.vo * g.t;
    for ((zo, dsto), off) in z
        .chunks_exact(vt)
        .zip(dst.chunks_exact_mut(vt))
        .zip(offset.chunks_exact(g.vo))
    {
        transpose(zo, g.vo, g.t, dsto);
        for frame in dsto.chunks_exact_mut(g.vo) {
            frame.iter_mut().zip(off).for_each(|(y, b)| ep(y, *b));
        }
    }
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
        let ep = |y: &mut f32, b: f32| {
            *y += b;
            if relu {
                *y = y.max(0.0);
            }
        };
        // A quarter of the entries or fewer: the sparse path's tap loops beat a dense 25-deep
        // product (ST-GCN's NTU partitions hold 4%); a dense (learned) adjacency keeps the
        // conv-then-aggregate order.
        let nonzero = ad.iter().filter(|v| **v != 0.0).count();
        Ok(if g.t * g.v > 0 && 4 * nonzero <= ad.len() {
            forward_sparse(g, (xd, wd, ad), od, ep)
        } else {
            forward_with(g, xd, wd, ad, |dst| {
                let frames = dst.chunks_exact_mut(vo.max(1));
                let offsets = od
                    .chunks_exact(vo.max(1))
                    .flat_map(|o| std::iter::repeat_n(o, t));
                for (frame, off) in frames.zip(offsets) {
                    frame.iter_mut().zip(off).for_each(|(y, b)| ep(y, *b));
                }
            })
        })
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
