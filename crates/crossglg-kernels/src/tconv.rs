//! Temporal convolution with a `(kt, 1)` kernel, stride and zero padding along time:
//! `out[n, o, t', v] = Σ_c Σ_k w[o, c, k] · x[n, c, s·t' + k − p, v]`.
//!
//! No im2col: the input is split into `s` time phases (a no-op for stride 1), after which every
//! tap `k` is one gemm of `w[:, :, k]` with a time-shifted view of one phase. The backward pass
//! uses the same views, so no unfolded copy of the input is ever made.

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::mm::{gemm, View};
use crate::util::{
    add_into, build_chunks, check_bias, check_cpu_f32, check_untracked, group_size, slice, tensor,
    with_all, with_opt, zeroed_chunks, zeros, Epilogue,
};

const OP: &str = "temporal_conv";

/// `x`: `(N, C, T, V)`, `w`: `(C_out, C, kt)` → `(N, C_out, T_out, V)` with
/// `T_out = (T + 2·pad − kt) / stride + 1`. Differentiable in `x` and `w`.
pub fn temporal_conv(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    temporal_conv_dilated(x, w, stride, pad, 1)
}

/// [`temporal_conv`] with dilation `d` (tap `k` reads frame `s·t' + d·k − pad`):
/// `T_out = (T + 2·pad − d·(kt − 1) − 1) / stride + 1`.
pub fn temporal_conv_dilated(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    pad: usize,
    dilation: usize,
) -> Result<Tensor> {
    check(x, w, stride, pad, dilation)?;
    x.contiguous()?.apply_op2(
        &w.contiguous()?,
        TemporalConv {
            stride,
            pad,
            dilation,
        },
    )
}

/// [`temporal_conv_dilated`] plus an optional per-output-channel bias `b: (C_out)`, added in
/// the same pass (the output starts from the bias instead of zeros; its gradient is summed
/// alongside the weight gradient). Without a bias this is [`temporal_conv_dilated`].
pub fn temporal_conv_bias(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    pad: usize,
    dilation: usize,
) -> Result<Tensor> {
    let Some(b) = b else {
        return temporal_conv_dilated(x, w, stride, pad, dilation);
    };
    check_bias(b, w.dims3()?.0, OP)?;
    check(x, w, stride, pad, dilation)?;
    x.contiguous()?.apply_op3(
        &w.contiguous()?,
        &b.contiguous()?,
        TemporalConv {
            stride,
            pad,
            dilation,
        },
    )
}

fn check(x: &Tensor, w: &Tensor, stride: usize, pad: usize, dilation: usize) -> Result<()> {
    check_cpu_f32(x, OP, "input")?;
    check_cpu_f32(w, OP, "weight")?;
    let (_, c, t, _) = x.dims4()?;
    let (_, cw, kt) = w.dims3()?;
    if cw != c {
        bail!("{OP}: weight has {cw} input channels, input has {c}")
    }
    if stride == 0 || kt == 0 || dilation == 0 {
        bail!("{OP}: stride, dilation and kernel size must be positive")
    }
    let span = dilation * (kt - 1) + 1;
    if t + 2 * pad < span {
        bail!("{OP}: kernel span {span} is longer than the padded input ({t} + 2·{pad})")
    }
    Ok(())
}

struct TemporalConv {
    stride: usize,
    pad: usize,
    dilation: usize,
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
    p: usize,
    d: usize,
    t_out: usize,
}

/// One tap's placement: which phase it reads, and the output time range it contributes to.
struct Tap {
    k: usize,
    q: usize,
    /// input phase index = output time + e
    e: isize,
    t0: usize,
    t1: usize,
}

impl Geo {
    fn new(xs: &[usize], ws: &[usize], s: usize, p: usize, d: usize) -> Self {
        let (n, c, t, v) = (xs[0], xs[1], xs[2], xs[3]);
        let (co, kt) = (ws[0], ws[2]);
        let t_out = (t + 2 * p - d * (kt - 1) - 1) / s + 1;
        Self {
            n,
            c,
            t,
            v,
            co,
            kt,
            s,
            p,
            d,
            t_out,
        }
    }

    /// Length of phase `q` (input times `q, q + s, q + 2s, …`).
    fn tq(&self, q: usize) -> usize {
        if q >= self.t {
            0
        } else {
            (self.t - q).div_ceil(self.s)
        }
    }

    fn taps(&self) -> Vec<Tap> {
        let s = self.s as isize;
        (0..self.kt)
            .filter_map(|k| {
                let d = (self.d * k) as isize - self.p as isize;
                let q = d.rem_euclid(s) as usize;
                let e = d.div_euclid(s);
                let tq = self.tq(q) as isize;
                let t0 = (-e).max(0);
                let t1 = (self.t_out as isize).min(tq - e);
                (t1 > t0).then_some(Tap {
                    k,
                    q,
                    e,
                    t0: t0 as usize,
                    t1: t1 as usize,
                })
            })
            .collect()
    }

    /// Splits `x` (N, C, T, V) into `s` phase buffers of shape (N, C, tq, V); stride 1 borrows.
    fn phases<'a>(&self, x: &'a [f32]) -> Vec<std::borrow::Cow<'a, [f32]>> {
        if self.s == 1 {
            return vec![std::borrow::Cow::Borrowed(x)];
        }
        (0..self.s)
            .map(|q| {
                let tq = self.tq(q);
                // filled plane by plane right before the copy (no buffer-wide zero pass)
                let buf = zeroed_chunks(self.n * self.c * tq * self.v, tq * self.v, |nc, dst| {
                    let src = &x[nc * self.t * self.v..(nc + 1) * self.t * self.v];
                    for (j, row) in dst.chunks_exact_mut(self.v).enumerate() {
                        let ti = q + j * self.s;
                        row.copy_from_slice(&src[ti * self.v..(ti + 1) * self.v]);
                    }
                });
                std::borrow::Cow::Owned(buf)
            })
            .collect()
    }
}

/// The direct-taps forward pass, with `ep` applied to each sample's output right after its
/// gemms.
fn forward_with(g: Geo, x: &[f32], w: &[f32], bias: Option<&[f32]>, ep: &Epilogue) -> Vec<f32> {
    let phases = g.phases(x);
    let taps = g.taps();
    let plane = g.t_out * g.v;
    // A task per sample, or per block of output channels when the batch is smaller than the
    // thread pool (batch 1 when streaming): `nb` blocks of `cb` channels, `nb` dividing C_out.
    let want = (2 * rayon::current_num_threads()).div_ceil(g.n.max(1));
    let nb = (want.min(g.co)..=g.co)
        .find(|d| g.co.is_multiple_of(*d))
        .unwrap_or(1)
        .max(1);
    let cb = g.co / nb;
    // each block starts from the bias (or zeros), written just before its gemms
    build_chunks(
        g.n * g.co * plane,
        cb * plane,
        plane,
        |i, p| bias.map_or(0.0, |b| b[(i % nb) * cb + p]),
        |i, dst| {
            let (n, o0) = (i / nb, (i % nb) * cb);
            for (k, tap) in taps.iter().enumerate() {
                let tq = g.tq(tap.q);
                let src = (tap.t0 as isize + tap.e) as usize;
                let overwrite = k == 0 && bias.is_none() && tap.t0 == 0 && tap.t1 == g.t_out;
                gemm(
                    cb,
                    (tap.t1 - tap.t0) * g.v,
                    g.c,
                    dst,
                    View::new(tap.t0 * g.v, plane, 1),
                    !overwrite,
                    w,
                    View::new(o0 * g.c * g.kt + tap.k, g.c * g.kt, g.kt),
                    &phases[tap.q],
                    View::new(n * g.c * tq * g.v + src * g.v, tq * g.v, 1),
                );
            }
            for (p, row) in dst.chunks_exact_mut(plane.max(1)).enumerate() {
                ep.apply_row(n, o0 + p, row);
            }
        },
    )
}

/// The forward pass with the fewest multiplications for this geometry: 9 taps at stride 1
/// through Winograd (see [`crate::temporal_conv_winograd`]), 9 taps at stride 2 through
/// Toom-Cook F(4, 5) per time phase (see [`crate::temporal_conv_toom`]), the direct taps
/// otherwise. Used in training as well: the backward pass needs only `x` and `w`, not how the
/// output was computed.
fn forward_fast(g: Geo, x: &[f32], w: &[f32], b: Option<&[f32]>, ep: &Epilogue) -> Vec<f32> {
    let (xs, ws) = ([g.n, g.c, g.t, g.v], [g.co, g.c, g.kt]);
    match (g.kt, g.s, g.d) {
        (9, 1, 1) => crate::winograd::forward_raw(&xs, &ws, g.p, x, w, b, ep),
        (9, 2, 1) => crate::toom::forward_raw(&xs, &ws, (g.s, g.p), (x, w, b), ep),
        _ => forward_with(g, x, w, b, ep),
    }
}

/// Inference-only temporal convolution with a fused epilogue:
/// `act(conv(x) + b [+ residual[:, offset..offset + C_out]])`, `act` = ReLU when `relu`, in the
/// same pass as the convolution (a batch norm in front of the epilogue folds into `w` and `b`).
/// 9-tap, stride-1, undilated kernels go through Winograd (see
/// [`temporal_conv_winograd`](crate::temporal_conv_winograd)), 9-tap stride-2 ones through
/// Toom-Cook F(4, 5) per time phase ([`temporal_conv_toom`](crate::temporal_conv_toom)), others
/// through the direct kernel. `residual` is `(N, C_res, T_out, V)` with
/// `offset + C_out ≤ C_res`, so a branch can read its channels of a shared residual without a
/// copy. Fails when any input tracks gradients.
#[allow(clippy::too_many_arguments)]
pub fn temporal_conv_infer(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    pad: usize,
    dilation: usize,
    residual: Option<(&Tensor, usize)>,
    relu: bool,
) -> Result<Tensor> {
    const INF: &str = "temporal_conv_infer";
    check(x, w, stride, pad, dilation)?;
    let inputs = [Some(x), Some(w), b, residual.map(|r| r.0)];
    check_untracked(inputs.into_iter().flatten(), INF)?;
    let g = Geo::new(x.dims(), w.dims(), stride, pad, dilation);
    if let Some(b) = b {
        check_bias(b, g.co, INF)?;
    }
    let res = match residual {
        Some((r, off)) => {
            check_cpu_f32(r, INF, "residual")?;
            let (rn, rc, rt, rv) = r.dims4()?;
            if (rn, rt, rv) != (g.n, g.t_out, g.v) || off + g.co > rc {
                bail!(
                    "{INF}: residual {:?} at channel {off} does not fit the output {:?}",
                    r.dims(),
                    [g.n, g.co, g.t_out, g.v]
                )
            }
            Some((r.contiguous()?, rc, off))
        }
        None => None,
    };
    let out = with_all([x, w], INF, |[xd, wd]| {
        with_opt(b, INF, |bd| {
            with_opt(res.as_ref().map(|r| &r.0), INF, |rd| {
                let ep = Epilogue {
                    residual: rd.zip(res.as_ref()).map(|(d, r)| (d, r.1, r.2)),
                    relu,
                    plane: g.t_out * g.v,
                };
                Ok(forward_fast(g, xd, wd, bd, &ep))
            })
        })
    })?;
    tensor(out, (g.n, g.co, g.t_out, g.v))
}

/// Returns (dx, dw, db); db is all zeros when there is no bias.
fn backward(
    g: Geo,
    x: &[f32],
    w: &[f32],
    dout: &[f32],
    bias: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let phases = g.phases(x);
    let taps = g.taps();
    let out_n = g.co * g.t_out * g.v;
    let in_n = g.c * g.t * g.v;

    // dW[:, :, k] += dout[n][:, t0..t1] · phase_q[n][:, t0+e..]^T, accumulated per rayon task.
    // Fixed sample groups, summed in order: bit-identical gradients whatever the scheduling.
    let gs = group_size(g.n);
    let nw = g.co * g.c * g.kt;
    let plane = g.t_out * g.v;
    let dwb = (0..g.n.div_ceil(gs))
        .into_par_iter()
        .map(|gi| {
            // weight gradient, then the bias gradient in the last `co` entries
            let mut dw = vec![0f32; nw + g.co];
            for n in gi * gs..((gi + 1) * gs).min(g.n) {
                for (o, db) in dw[nw..].iter_mut().enumerate().filter(|_| bias) {
                    *db += dout[n * out_n + o * plane..][..plane].iter().sum::<f32>();
                }
                for tap in &taps {
                    let tq = g.tq(tap.q);
                    let src = (tap.t0 as isize + tap.e) as usize;
                    gemm(
                        g.co,
                        g.c,
                        (tap.t1 - tap.t0) * g.v,
                        &mut dw[..nw],
                        View::new(tap.k, g.c * g.kt, g.kt),
                        true,
                        dout,
                        View::new(n * out_n + tap.t0 * g.v, g.t_out * g.v, 1),
                        &phases[tap.q],
                        View::new(n * g.c * tq * g.v + src * g.v, 1, tq * g.v),
                    );
                }
            }
            dw
        })
        .collect::<Vec<_>>()
        .into_iter()
        .fold(vec![0f32; nw + g.co], add_into);
    let (dw, db) = dwb.split_at(nw);
    let (dw, db) = (dw.to_vec(), db.to_vec());

    // 9 taps at stride 1: dx is dout correlated with the flipped, transposed kernel, a 9-tap
    // stride-1 convolution again, through Winograd
    if (g.kt, g.s, g.d) == (9, 1, 1) && g.p < g.kt {
        let mut wf = vec![0f32; nw];
        for (o, wo) in w.chunks_exact(g.c * g.kt).enumerate() {
            for (c, wc) in wo.chunks_exact(g.kt).enumerate() {
                for (k, &val) in wc.iter().enumerate() {
                    wf[(c * g.co + o) * g.kt + (g.kt - 1 - k)] = val;
                }
            }
        }
        let (xs, ws) = ([g.n, g.co, g.t_out, g.v], [g.c, g.co, g.kt]);
        let pad = g.kt - 1 - g.p;
        let dx = crate::winograd::forward_raw(&xs, &ws, pad, dout, &wf, None, &Epilogue::NONE);
        return (dx, dw, db);
    }
    // dphase_q[n][:, t0+e..] += w[:, :, k]^T · dout[n][:, t0..t1], then re-interleave.
    let mut dx = zeros(g.n * in_n);
    dx.par_chunks_mut(in_n.max(1))
        .enumerate()
        .for_each(|(n, dxn)| {
            let mut local: Vec<Vec<f32>> = if g.s == 1 {
                Vec::new()
            } else {
                (0..g.s).map(|q| vec![0f32; g.c * g.tq(q) * g.v]).collect()
            };
            for tap in &taps {
                let tq = g.tq(tap.q);
                let src = (tap.t0 as isize + tap.e) as usize;
                let dst: &mut [f32] = if g.s == 1 {
                    &mut *dxn
                } else {
                    &mut local[tap.q]
                };
                gemm(
                    g.c,
                    (tap.t1 - tap.t0) * g.v,
                    g.co,
                    dst,
                    View::new(src * g.v, tq * g.v, 1),
                    true,
                    w,
                    View::new(tap.k, g.kt, g.c * g.kt),
                    dout,
                    View::new(n * out_n + tap.t0 * g.v, g.t_out * g.v, 1),
                );
            }
            if g.s > 1 {
                for (q, buf) in local.iter().enumerate() {
                    let tq = g.tq(q);
                    for c in 0..g.c {
                        for j in 0..tq {
                            let ti = q + j * g.s;
                            let d = c * g.t * g.v + ti * g.v;
                            let sidx = c * tq * g.v + j * g.v;
                            dxn[d..d + g.v].copy_from_slice(&buf[sidx..sidx + g.v]);
                        }
                    }
                }
            }
        });
    (dx, dw, db)
}

impl TemporalConv {
    fn fwd(
        &self,
        x: (&CpuStorage, &Layout),
        w: (&CpuStorage, &Layout),
        b: Option<&[f32]>,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geo::new(x.1.dims(), w.1.dims(), self.stride, self.pad, self.dilation);
        let (xd, wd) = (slice(x.0, x.1, OP)?, slice(w.0, w.1, OP)?);
        let out = forward_fast(g, xd, wd, b, &Epilogue::NONE);
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.co, g.t_out, g.v))))
    }

    fn grads(&self, x: &Tensor, w: &Tensor, grad: &Tensor, bias: bool) -> Result<[Tensor; 3]> {
        let g = Geo::new(x.dims(), w.dims(), self.stride, self.pad, self.dilation);
        let (dx, dw, db) = with_all([x, w, grad], OP, |[xd, wd, gd]| {
            Ok(backward(g, xd, wd, gd, bias))
        })?;
        Ok([
            tensor(dx, x.shape())?,
            tensor(dw, w.shape())?,
            tensor(db, g.co)?,
        ])
    }
}

impl CustomOp2 for TemporalConv {
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
        self.fwd((s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let [dx, dw, _] = self.grads(x, w, grad, false)?;
        Ok((Some(dx), Some(dw)))
    }
}

impl CustomOp3 for TemporalConv {
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
        self.fwd((s1, l1), (s2, l2), Some(slice(s3, l3, OP)?))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let [dx, dw, db] = self.grads(x, w, grad, true)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}
